"""Setting up (or resuming) a research session on a domain folder: the git repository, the
driver lock, the tag and branch, and cleaning up after a driver that died."""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from autoresearch._config import ResearchConfig
from autoresearch._errors import SessionError, WorkspaceError
from autoresearch._git import find_repo_root, init_repo
from autoresearch._layout import Layout
from autoresearch._ledger import Ledger
from autoresearch._trusted import TrustedFiles
from autoresearch._types import ExperimentKind, Status
from autoresearch._workspace import Workspace
from autoresearch.execution._proc import remove_stale_cgroups
from autoresearch.execution._sandbox import end_strays

# Package versions saved with every run (those that are installed).
_VERSIONED = (
    "autoresearch",
    "pydantic",
    "optuna",
    "torch",
    "transformers",
    "trl",
    "vectorbt",
    "numpy",
    "pandas",
    "openai",
    "numba",
)


class DriverLock:
    """One driver per domain folder: an exclusive flock, released when the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")  # noqa: SIM115 - held open for the life of the driver
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise SessionError(
                f"another autoresearch driver is running on {self.path.parent.parent} "
                f"(pid {holder}); wait for it or stop it first"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def marker_prefix(domain_dir: Path) -> str:
    """The run-marker prefix of every process started for this folder (found again on resume)."""
    return "ar-" + hashlib.sha1(str(domain_dir.resolve()).encode()).hexdigest()[:12]


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def ensure_repo(domain_dir: Path) -> bool:
    """Make sure ``domain_dir`` is in a git repository; returns True if one was created."""
    if find_repo_root(domain_dir) is not None:
        return False
    init_repo(domain_dir)
    return True


# A tag names a branch, refs and folders: one path component, no git-special spelling.
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_tag(tag: str) -> None:
    if not _TAG.fullmatch(tag) or tag.endswith(".lock") or ".." in tag:
        raise SessionError(
            f"--tag {tag!r}: a tag is 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit (it names a git branch and folders), e.g. 'dec01' or 'lr-sweep'"
        )


def default_tag(ledger: Ledger, taken: Callable[[str], bool] = lambda tag: False) -> str:
    """Today's date (``dec01``), then ``dec01-2``…: the first that neither this ledger nor the
    repository (``taken``: a branch or candidate refs of another folder) uses."""
    base = dt.datetime.now().strftime("%b%d").lower()
    tag, n = base, 1
    while ledger.tag_info(tag) is not None or taken(tag):
        n += 1
        tag = f"{base}-{n}"
    return tag


def _tag_in_repo(domain_dir: Path, config: ResearchConfig) -> Callable[[str], bool]:
    def taken(tag: str) -> bool:
        ws = Workspace(domain_dir, tag, config.editable, config.fixed, config.program)
        return ws.branch_commit() is not None or bool(ws.candidate_ref_ids())

    return taken


def _check_candidate_refs(ws: Workspace, ledger: Ledger, tag: str, resume: bool) -> None:
    """Candidate refs are repository-wide: refs of this tag that this ledger did not make
    belong to another run (another folder of the repository), whose commits they keep."""
    ids = {str(r.id) for r in ledger.records(tag)} if resume else set()
    foreign = [name for name in ws.candidate_ref_ids() if name not in ids]
    if foreign:
        raise SessionError(
            f"refs/autoresearch/{tag}/ already holds {len(foreign)} ref(s) this run did not "
            f"make (e.g. refs/autoresearch/{tag}/{foreign[0]}): another run, perhaps in another "
            f"folder of {ws.repo_root}, uses tag {tag!r}. Choose another --tag"
        )


@dataclass
class Session:
    """A started session: what the loop needs to run experiments."""

    tag: str
    workspace: Workspace
    ledger: Ledger
    lock: DriverLock
    base_commit: str
    resumed: bool
    messages: list[str]

    def close(self) -> None:
        self.ledger.close()
        self.lock.release()

    def drop_unmeasured_branch(self) -> bool:
        """Remove the research branch of a run that never measured anything (a failed
        baseline, an error before it): a rerun's ``git log`` shows no empty branch. A resume
        of the tag creates it again. Returns whether it was removed."""
        if self.ledger.values_by_commit(self.tag):
            return False
        ws = self.workspace
        ws.forget_branch()  # read the ref afresh: someone may have committed to it meanwhile
        at = ws.branch_commit()
        if at is None or at != self.base_commit or ws.checked_out_at() is not None:
            return False
        try:
            ws.delete_branch(at)
        except WorkspaceError:  # moved between the read and the delete: it holds work now
            return False
        return True


def open_session(
    domain_dir: Path,
    config: ResearchConfig,
    config_dump: dict[str, object],
    preset: str | None,
    tag: str | None,
    resume: bool,
    trusted: TrustedFiles | None = None,
    metric: str | None = None,
) -> Session:
    """Lock the folder, pick or check the tag, create the branch or clean up for a resume.
    ``trusted``: the files the loop read its config, program and objective from; they are
    tied to the session's base commit here (see ``TrustedFiles.bind``). ``metric``: what the
    primary value is called (default: the config's ``objective.metric``, or "value")."""
    trusted = trusted or TrustedFiles.for_run(domain_dir, resume, tag)
    messages = []
    if ensure_repo(domain_dir):
        messages.append(f"{domain_dir} was not in a git repository: created one with its files")
    layout = Layout(domain_dir)
    # A session that fails before its first row leaves no state folder it created behind.
    fresh = not layout.state_dir.exists()
    lock = DriverLock(layout.lock)
    lock.acquire()
    ledger = None
    try:
        ledger = Ledger(layout.ledger)
        if resume:
            tag = tag or ledger.latest_tag()
            if tag is None or ledger.tag_info(tag) is None:
                raise SessionError(
                    f"nothing to resume in {domain_dir}"
                    + (f" under tag {tag!r}" if tag else "")
                    + "; start a run without --resume"
                )
        else:
            if tag is not None and ledger.tag_info(tag) is not None:
                raise SessionError(
                    f"tag {tag!r} already exists in {domain_dir}; pass --resume to continue it "
                    "or choose another --tag"
                )
            if tag is not None:
                check_tag(tag)
            tag = tag or default_tag(ledger, _tag_in_repo(domain_dir, config))
        ws = Workspace(domain_dir, tag, config.editable, config.fixed, config.program)
        ws.exclude_state()
        dirty = ws.dirty_files(also=trusted.paths())
        if dirty:
            raise SessionError(
                "uncommitted changes to editable or fixed files would not be in the experiments' "
                f"worktrees, nor used by the driver: {', '.join(dirty[:10])}. Commit them (or "
                "stash them) and run again"
            )
        # Whatever a driver that died left behind (processes, worktrees, cgroups) is ended
        # before this one starts, resumed run or not: we hold the folder's lock now.
        ended = end_strays(marker_prefix(domain_dir))
        removed = ws.remove_all_worktrees()
        ws.empty_trash()
        remove_stale_cgroups(marker_prefix(domain_dir))
        if ended or removed:
            messages.append(
                f"ended {ended} stray process(es) and removed {len(removed)} worktree(s) "
                "left by a driver that stopped"
            )
        where = ws.checked_out_at()
        if where is not None:
            raise SessionError(
                f"branch {ws.branch} is checked out at {where}; the loop moves it as it keeps "
                "candidates. Check out another branch there first"
            )
        if resume:
            info = ledger.tag_info(tag)
            assert info is not None
            base = info.base_commit
            trusted.bind(base)
            lost = ledger.interrupt_running(tag, "the driver stopped during this experiment")
            if lost:
                messages.append(f"resume: marked {len(lost)} experiment(s) interrupted")
            _check_candidate_refs(ws, ledger, tag, resume=True)
            _reconcile_branch(ws, ledger, tag, base, messages)
            ledger.set_tag_state(tag, "running")
        else:
            if ws.branch_commit() is not None:
                raise SessionError(
                    f"branch {ws.branch} already exists in {ws.repo_root}; pick another --tag "
                    f"or delete it (git branch -D {ws.branch})"
                )
            _check_candidate_refs(ws, ledger, tag, resume=False)
            base = ws.head_commit()
            trusted.bind(base)
            ws.create_branch(base)
            ledger.create_tag(
                tag,
                ws.branch,
                base,
                preset,
                metric or config.objective.metric or "value",
                config.objective.direction,
                config_dump,
                package_versions(),
            )
        ignored = trusted.differing()
        if ignored:
            messages.append(
                f"{', '.join(ignored)}: the folder's copy differs from {trusted.where}; this "
                "run uses the base's (start a new run to use the folder's)"
            )
        # The resolved config, preset and package versions, saved with every run.
        info = ledger.tag_info(tag)
        assert info is not None
        # One file per session: a resume may run with another preset or overrides.
        saved = layout.new_config_json(tag)
        saved.write_text(
            json.dumps(
                {"preset": preset, "config": config_dump, "versions": dict(info.versions)},
                indent=2,
            )
        )
        return Session(tag, ws, ledger, lock, base, resume, messages)
    except BaseException:
        if ledger is not None:
            ledger.close()
        lock.release()
        if fresh:
            shutil.rmtree(layout.state_dir, ignore_errors=True)
        raise


def _reconcile_branch(
    ws: Workspace, ledger: Ledger, tag: str, base: str, messages: list[str]
) -> None:
    """The branch only moves after a keep row is written; if the driver died in between,
    finish the move now."""
    all_keeps = [r for r in ledger.records(tag) if r.status is Status.KEEP and r.commit]
    # The ledger is checked against git before anything is trusted: every candidate keep's
    # commit descends from the base through commits that change only editable files, and a
    # keep of any other kind (the baseline) is the base itself. Only the checked rows may move
    # the branch.
    keeps = [r for r in all_keeps if r.kind is ExperimentKind.CANDIDATE]
    kept = [r.commit for r in keeps if r.commit]
    problem = ws.check_kept_chain(base, kept)
    stray = [r for r in all_keeps if r.kind is not ExperimentKind.CANDIDATE and r.commit != base]
    if stray and not problem:
        problem = (
            f"experiment {stray[0].id} is a kept {stray[0].kind.value} row at "
            f"{(stray[0].commit or '')[:7]}, which is not the run's base {base[:7]}"
        )
    if problem:
        raise SessionError(
            f"the ledger of run {tag!r} does not match git: {problem}. It was changed outside "
            "this engine (a candidate with access to .autoresearch/, or by hand); nothing was "
            "resumed. Start a new run with another --tag"
        )
    want = keeps[-1].commit if keeps else base
    assert want is not None
    have = ws.branch_commit()
    known = {base, *(r.commit for r in keeps)}
    if have is not None and have not in known:
        # Someone committed to the research branch: never throw their work away.
        raise SessionError(
            f"branch {ws.branch} points at {have[:7]}, a commit this run never kept (was it "
            "committed to by hand?). Move that work to another branch and reset "
            f"{ws.branch} to {want[:7]}, or start a new run with another --tag"
        )
    if have is None:
        ws.create_branch(want)
        messages.append(f"resume: branch {ws.branch} was missing; recreated at {want[:7]}")
    elif have != want:
        ws.move_branch(want, have)
        messages.append(f"resume: moved {ws.branch} to the last kept commit {want[:7]}")

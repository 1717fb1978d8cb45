"""Workspace: the git side. A research branch, one worktree per candidate, scope checks,
candidate commits under ``refs/autoresearch/<tag>/<id>``.

The user's checkout, index, HEAD and other branches are never touched: every write goes to a
worktree of its own (which has its own index) or to refs under ``autoresearch/``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import posixpath
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autoresearch._config import CONFIG_NAME
from autoresearch._errors import WorkspaceError
from autoresearch._git import (
    _COMMIT_OPTS,
    _run_git,
    engine_env,
    find_repo_root,
    git,
)
from autoresearch._git import (
    diff as git_diff,
)
from autoresearch._layout import RESULTS_NAME, STATE_DIRNAME, Layout
from autoresearch._scope import apply_edits, check_path, glob_match
from autoresearch._types import Edit

# Commits whose changes `files_at` remembers (the candidates just committed).
_DELTAS_KEPT = 8
_FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class _Delta:
    """What a candidate commit changed against its parent (domain-relative paths)."""

    parent: str
    written: tuple[str, ...]
    removed: tuple[str, ...]


class Workspace:
    """Git operations for one research tag of one domain folder."""

    def __init__(
        self,
        domain_dir: Path,
        tag: str,
        editable: Sequence[str],
        fixed: Sequence[str],
        program: str = "program.md",
    ) -> None:
        self.domain_dir = domain_dir.resolve()
        root = find_repo_root(self.domain_dir)
        if root is None:
            raise WorkspaceError(f"{self.domain_dir} is not in a git repository")
        self.repo_root = root
        rel = self.domain_dir.relative_to(root).as_posix()
        self.rel = "" if rel == "." else rel
        self.tag = tag
        self.branch = f"autoresearch/{tag}"
        self.editable = tuple(editable)
        # The config and the research program are part of the harness: never editable.
        self.fixed = (*fixed, CONFIG_NAME, program)
        self.layout = Layout(self.domain_dir)
        self.state_dir = self.layout.state_dir
        self.worktrees_dir = self.layout.worktrees
        self._env = engine_env(self.repo_root)
        self._branch_sha: str | None = None
        self._files_cache: dict[tuple[str, tuple[str, ...]], dict[str, str]] = {}
        self._deltas: dict[str, _Delta] = {}

    # -- paths -------------------------------------------------------------------------------
    def repo_path(self, rel_to_domain: str) -> str:
        return posixpath.join(self.rel, rel_to_domain) if self.rel else rel_to_domain

    def worktree_domain(self, worktree: Path) -> Path:
        return worktree / self.rel if self.rel else worktree

    @functools.cached_property
    def git_common_dir(self) -> Path:
        """The repository's own ``.git`` (shared by all its worktrees)."""
        common = Path(
            git("rev-parse", "--git-common-dir", cwd=self.repo_root, env=self._env).strip()
        )
        return (common if common.is_absolute() else self.repo_root / common).resolve()

    # -- set-up ------------------------------------------------------------------------------
    def refresh_git_env(self, worktree: Path | None = None) -> None:
        """Re-read the repository's driver commands (filter, textconv, merge) to override:
        called after every run, since a candidate without isolation can write .git/config.
        Read from the worktree too: an includeIf may add drivers only there."""
        self._env = engine_env(self.repo_root, worktree)

    def exclude_state(self) -> None:
        """List the engine's own files in ``.git/info/exclude`` (never in a tracked file)."""
        exclude = self.git_common_dir / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        prefix = f"/{self.rel}" if self.rel else ""
        wanted = [f"{prefix}/{STATE_DIRNAME}/", f"{prefix}/{RESULTS_NAME}"]
        have = exclude.read_text().splitlines() if exclude.exists() else []
        missing = [w for w in wanted if w not in have]
        if missing:
            with open(exclude, "a") as f:
                f.write("".join(f"{m}\n" for m in missing))

    def dirty_files(self, also: Sequence[str] = ()) -> list[str]:
        """Editable or fixed files, and the files ``also`` names (the objective's modules),
        relative to the domain, that differ from HEAD or are untracked: the worktrees, and
        the driver (which reads the committed bytes), would not use them as they are.
        Git-ignored files and the engine's own files do not count."""
        out = git(
            "status",
            "--porcelain",
            "-z",
            "--untracked-files=all",
            "--",
            ".",
            cwd=self.domain_dir,
            env=self._env,
        )
        engine = {RESULTS_NAME, f".{RESULTS_NAME}.tmp"}
        dirty = set()
        for entry in out.split("\0"):
            if len(entry) >= 4:
                rel = self._domain_rel(entry[3:])
                if rel not in engine and not rel.startswith(STATE_DIRNAME + "/"):
                    dirty.add(rel)
        watched = (*self.editable, *self.fixed)
        return sorted(d for d in dirty if glob_match(d, watched) or d in also)

    def _domain_rel(self, repo_path: str) -> str:
        prefix = self.rel + "/" if self.rel else ""
        return repo_path[len(prefix) :] if prefix and repo_path.startswith(prefix) else repo_path

    def head_commit(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.repo_root, env=self._env).strip()

    def branch_commit(self) -> str | None:
        """The research branch's commit. Cached: only this driver moves the branch (it holds
        the folder's lock), and a git call per read would dominate the harness overhead."""
        if self._branch_sha is None:
            out = git(
                "rev-parse",
                "--verify",
                "-q",
                f"refs/heads/{self.branch}",
                cwd=self.repo_root,
                check=False,
                env=self._env,
            ).strip()
            self._branch_sha = out or None
        return self._branch_sha

    def forget_branch(self) -> None:
        """Drop the cached branch commit: the next ``branch_commit`` reads the ref."""
        self._branch_sha = None

    def create_branch(self, commit: str) -> None:
        git(
            "update-ref", f"refs/heads/{self.branch}", commit, "", cwd=self.repo_root, env=self._env
        )
        self._branch_sha = commit

    def check_kept_chain(self, base: str, kept: Sequence[str]) -> str | None:
        """Why the kept commits are not what this engine could have kept (None: they are):
        each must have the one before it (the base first) as its only parent, and change
        only editable files of this folder. A forged keep row, or a commit that touched a
        fixed file, fails here."""
        prev = base
        for commit in kept:
            parents = git(
                "rev-parse",
                "--verify",
                "-q",
                "--end-of-options",
                f"{commit}^@",
                cwd=self.repo_root,
                check=False,
                env=self._env,
            ).split()
            if parents != [prev]:
                return f"{commit[:7]} is not a child of the commit kept before it ({prev[:7]})"
            changed = git_diff(
                prev, commit, [], cwd=self.repo_root, env=self._env, name_only=True
            ).split("\0")
            for path in filter(None, changed):
                prefix = self.rel + "/" if self.rel else ""
                rel = path[len(prefix) :] if path.startswith(prefix) else None
                if rel is None or not glob_match(rel, self.editable) or glob_match(rel, self.fixed):
                    return f"{commit[:7]} changes {path}, which no candidate may change"
            prev = commit
        return None

    def move_branch(self, new: str, old: str) -> None:
        """Compare-and-swap: the branch moves only if it still points at ``old``, and never
        under a checkout of it (that would leave the user's worktree looking modified)."""
        where = self.checked_out_at()
        if where is not None:
            raise WorkspaceError(
                f"branch {self.branch} is checked out at {where}; check out another branch "
                f"there, then continue with `autoresearch run {self.domain_dir} --resume`"
            )
        git("update-ref", f"refs/heads/{self.branch}", new, old, cwd=self.repo_root, env=self._env)
        self._branch_sha = new

    def delete_branch(self, expected: str) -> None:
        """Remove the research branch, only if it still points at ``expected`` (else a
        ``WorkspaceError``)."""
        self._branch_sha = None
        git(
            "update-ref",
            "-d",
            f"refs/heads/{self.branch}",
            expected,
            cwd=self.repo_root,
            env=self._env,
        )
        self._branch_sha = None

    def checked_out_at(self) -> str | None:
        """The worktree (the user's or another) that has the research branch checked out."""
        common = self.git_common_dir
        # Read from the HEAD files (saves a git process per kept candidate) where their layout
        # is the plain one; a bare or separate git dir, or a reftable (its HEAD files are
        # stubs), asks git.
        if common.name == ".git" and not (common / "reftable").exists():
            return self._checked_out_from_files(common)
        listing = git("worktree", "list", "--porcelain", cwd=self.repo_root, env=self._env)
        path = None
        for line in listing.splitlines():
            if line.startswith("worktree "):
                path = line.removeprefix("worktree ")
            elif line == f"branch refs/heads/{self.branch}":
                return path
        return None

    def _checked_out_from_files(self, common: Path) -> str | None:
        want = f"ref: refs/heads/{self.branch}"
        heads = [(common / "HEAD", common.parent)]
        admin = common / "worktrees"
        for entry in sorted(admin.iterdir()) if admin.is_dir() else []:
            try:  # an absolute path, or (git 2.48+) one relative to the entry
                where = (entry / (entry / "gitdir").read_text().strip()).resolve().parent
            except OSError:
                where = entry
            heads.append((entry / "HEAD", where))
        for head, where in heads:
            try:
                if head.read_text().strip() == want:
                    return str(where)
            except OSError:
                continue
        return None

    def reset_worktree(self, worktree: Path) -> None:
        """Back to its commit, with every file a run left removed (caches, outputs): each run
        of a candidate starts from the same files."""
        # The git dir and work tree are named, never read from the worktree's .git file (a run
        # may have pointed it at another repository, whose core.worktree is somewhere else).
        where = (f"--git-dir={self._admin_dir(worktree)}", f"--work-tree={worktree}")
        git(*where, "reset", "-q", "--hard", cwd=worktree, env=self._env)
        git(*where, "clean", "-q", "-ffdx", cwd=worktree, env=self._env)

    def candidate_ref(self, experiment_id: int) -> str:
        return f"refs/autoresearch/{self.tag}/{experiment_id}"

    def candidate_ref_ids(self) -> list[str]:
        """The names under ``refs/autoresearch/<tag>/`` in the repository (experiment ids, if
        this engine made them): another folder of the same repository may use the tag too."""
        prefix = f"refs/autoresearch/{self.tag}/"
        out = git("for-each-ref", "--format=%(refname)", prefix, cwd=self.repo_root, env=self._env)
        return [line[len(prefix) :] for line in out.splitlines() if line.startswith(prefix)]

    # -- worktrees ---------------------------------------------------------------------------
    def add_worktree(self, name: str, commit: str) -> Path:
        """A worktree with ``commit`` checked out (detached) at ``worktrees/<name>``.

        Registered the way `git worktree add` does it (gitrepository-layout(5): ``<wt>/.git``
        names ``<common>/worktrees/<id>``, which holds ``gitdir``, ``commondir`` and ``HEAD``),
        then filled by one `git read-tree -u`: `git worktree add` takes three git processes,
        the largest share of the engine's overhead per experiment.
        """
        self._real_worktrees_dir()
        path = self.worktrees_dir / name
        if path.exists() or path.is_symlink():
            self.remove_worktree(path)
        if not _FULL_SHA.fullmatch(commit):
            commit = git(
                "rev-parse", "--verify", f"{commit}^{{commit}}", cwd=self.repo_root, env=self._env
            )
            commit = commit.strip()
        admin = self._admin_dir(path)
        # One left by a driver that died between removing the worktree and removing this.
        shutil.rmtree(admin, ignore_errors=True)
        path.mkdir(parents=True)
        try:
            # The worktree's .git first: `git worktree prune` drops an entry whose gitdir is
            # missing, so it never sees a half-made one as stale.
            (path / ".git").write_text(f"gitdir: {admin}\n")
            admin.mkdir(parents=True)
            (admin / "gitdir").write_text(f"{path / '.git'}\n")
            (admin / "commondir").write_text("../..\n")
            (admin / "HEAD").write_text(f"{commit}\n")
            git("read-tree", "--reset", "-u", commit, cwd=path, env=self._env)
        except BaseException:
            self.remove_worktree(path)
            raise
        return path

    def _real_worktrees_dir(self) -> None:
        """The state folder and its worktrees folder are real folders, never links a run
        planted (the engine writes and deletes whole trees in there)."""
        for folder in (self.state_dir, self.worktrees_dir):
            if folder.is_symlink():
                folder.unlink()
        self.worktrees_dir.mkdir(parents=True, exist_ok=True)

    def remove_worktree(self, path: Path) -> None:
        admin = self._admin_dir(path)
        if path.is_symlink() or path.resolve().parent != self.worktrees_dir.resolve():
            # Planted in place of a worktree: the link goes, never what it points at.
            with contextlib.suppress(OSError):
                path.unlink()
            shutil.rmtree(admin, ignore_errors=True)
            return
        if not admin.is_dir():  # not one of add_worktree's (an older version's, or half-made)
            git(
                "worktree",
                "remove",
                "--force",
                str(path),
                cwd=self.repo_root,
                check=False,
                env=self._env,
            )
        # Never follows the worktree's .git file: a run may have rewritten it.
        if path.is_symlink():
            path.unlink()
        _discard_tree(path, self.state_dir / TRASH_DIR)
        if path.exists():
            git("worktree", "prune", cwd=self.repo_root, check=False, env=self._env)
        else:
            shutil.rmtree(admin, ignore_errors=True)

    def empty_trash(self) -> None:
        """Delete what earlier runs left in the trash (in the background, at idle priority)."""
        trash = self.state_dir / TRASH_DIR
        if trash.is_dir() and not trash.is_symlink():
            for entry in trash.iterdir():
                _delete_in_background(entry)

    def _admin_dir(self, worktree: Path) -> Path:
        # The path's digest keeps two domain folders of one repository (same tag, same
        # experiment id) apart; the readable part keeps `ls .git/worktrees` useful.
        digest = hashlib.sha256(str(worktree).encode()).hexdigest()[:8]
        readable = re.sub(r"[^A-Za-z0-9_-]", "-", worktree.name)
        return self.git_common_dir / "worktrees" / f"autoresearch-{readable}-{digest}"

    def remove_all_worktrees(self) -> list[str]:
        """Remove worktrees left by a driver that died; returns their names."""
        names = []
        if self.worktrees_dir.exists():
            for child in sorted(self.worktrees_dir.iterdir()):
                self.remove_worktree(child)
                names.append(child.name)
        git("worktree", "prune", cwd=self.repo_root, check=False, env=self._env)
        return names

    # -- candidates --------------------------------------------------------------------------
    def check_path(self, raw: str) -> str:
        """The normalized domain-relative path of an edit, or ScopeError."""
        return check_path(raw, self.editable, self.fixed)

    def apply(self, worktree: Path, edits: Sequence[Edit]) -> tuple[list[str], list[str]]:
        """Apply a candidate's edits in a worktree, all or nothing (see ``apply_edits``)."""
        return apply_edits(self.worktree_domain(worktree), edits, self.editable, self.fixed)

    def commit(
        self,
        worktree: Path,
        changed: Sequence[str],
        message: str,
        experiment_id: int,
        new_files: Sequence[str] = (),
    ) -> str:
        """Commit exactly ``changed`` in the worktree; keep it under the candidate ref."""
        paths = [self.repo_path(p) for p in changed]
        created = [self.repo_path(p) for p in changed if p in new_files]
        parent = _worktree_head(worktree)
        if created:
            git("add", "--", *created, cwd=worktree, env=self._env)
        # A pathspec commit takes exactly these paths (modified, deleted or just added).
        git(
            *_COMMIT_OPTS,
            "commit",
            "-q",
            "--no-verify",
            "-m",
            message,
            "--",
            *paths,
            cwd=worktree,
            env=self._env,
        )
        sha = (
            _worktree_head(worktree)
            or git("rev-parse", "HEAD", cwd=worktree, env=self._env).strip()
        )
        git("update-ref", self.candidate_ref(experiment_id), sha, cwd=self.repo_root, env=self._env)
        if parent is not None:
            domain = self.worktree_domain(worktree)
            removed = tuple(p for p in changed if not (domain / p).exists())
            written = tuple(p for p in changed if p not in removed)
            self._deltas[sha] = _Delta(parent, written, removed)
            while len(self._deltas) > _DELTAS_KEPT:
                del self._deltas[next(iter(self._deltas))]
        return sha

    def reword(self, commit: str, message: str, experiment_id: int) -> str:
        """A commit with ``commit``'s tree and parent and another message (what was measured,
        once it is known), kept under the candidate ref in place of ``commit``."""
        tree = git("rev-parse", f"{commit}^{{tree}}", cwd=self.repo_root, env=self._env).strip()
        parents = git("rev-parse", f"{commit}^@", cwd=self.repo_root, env=self._env).split()
        args = [a for p in parents for a in ("-p", p)]
        new = git(
            *_COMMIT_OPTS,
            "commit-tree",
            tree,
            *args,
            "-m",
            message,
            cwd=self.repo_root,
            env=self._env,
        ).strip()
        ref = self.candidate_ref(experiment_id)
        git("update-ref", ref, new, commit, cwd=self.repo_root, env=self._env)
        if commit in self._deltas:
            self._deltas[new] = self._deltas[commit]
        return new

    def diff(self, old: str, new: str) -> str:
        spec = [self.rel] if self.rel else []
        return git_diff(old, new, spec, cwd=self.repo_root, env=self._env)

    def files_at(self, commit: str, patterns: Sequence[str]) -> dict[str, str]:
        """Text of the files matching ``patterns`` at ``commit`` (domain-relative paths).
        Cached per commit: commits never change."""
        key = (commit, tuple(patterns))
        if key in self._files_cache:
            return dict(self._files_cache[key])
        delta = self._deltas.get(commit)
        base = self._files_cache.get((delta.parent, key[1])) if delta else None
        if delta is not None and base is not None:
            # A candidate just committed: its parent's files, with only what it wrote read
            # back from git (a `git ls-tree` saved per kept candidate).
            out = {p: t for p, t in base.items() if p not in delta.removed}
            paths = [self.repo_path(p) for p in delta.written if glob_match(p, patterns)]
        else:
            spec = [self.rel] if self.rel else []
            listing = git(
                "ls-tree",
                "-r",
                "--name-only",
                "-z",
                commit,
                "--",
                *spec,
                cwd=self.repo_root,
                env=self._env,
            )
            out = {}
            paths = [
                p for p in listing.split("\0") if p and glob_match(self._domain_rel(p), patterns)
            ]
        if paths:
            # One `git cat-file --batch` for all blobs: "<sha> blob <size>\n<data>\n" each.
            query = "".join(f"{commit}:{p}\n" for p in paths).encode()
            batch = _run_git(["cat-file", "--batch"], self.repo_root, self._env, data=query).stdout
            pos = 0
            for p in paths:
                header_end = batch.index(b"\n", pos)
                size = int(batch[pos:header_end].split()[2])
                data = batch[header_end + 1 : header_end + 1 + size]
                out[self._domain_rel(p)] = data.decode("utf-8", errors="replace")
                pos = header_end + 1 + size + 1
        if base is not None:  # git's order (a new file would come last otherwise)
            out = dict(sorted(out.items()))
        self._files_cache[key] = out
        return dict(out)

    def snapshot(self, domain: Path) -> dict[str, str]:
        """Hashes of every editable and fixed file under ``domain`` (to detect changes made
        while a run was going)."""
        out = {}
        patterns = (*self.editable, *self.fixed)
        for dirpath, dirnames, filenames in os.walk(domain):
            dirnames[:] = [d for d in dirnames if d not in (".git", STATE_DIRNAME, "__pycache__")]
            for name in filenames:
                full = Path(dirpath) / name
                rel = full.relative_to(domain).as_posix()
                if not glob_match(rel, patterns):
                    continue
                mode = full.lstat().st_mode
                if stat.S_ISLNK(mode):
                    continue
                # A FIFO or device in place of a file would block the read: it is recorded
                # as changed, never opened.
                out[rel] = sha256_file(full) if stat.S_ISREG(mode) else f"not a file ({mode:o})"
        return out


def _worktree_head(worktree: Path) -> str | None:
    """The detached HEAD of a worktree read from its files (saves a git process)."""
    try:
        gitdir = (worktree / ".git").read_text().strip().removeprefix("gitdir: ")
        head = (Path(gitdir) / "HEAD").read_text().strip()
    except OSError:
        return None
    return head if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", head) else None


def changed_files(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


# Worktrees are moved here and deleted in the background: a huge one a candidate left costs the
# loop a rename, never the next run's time.
TRASH_DIR = "trash"


def _discard_tree(path: Path, trash: Path) -> None:
    """Move ``path`` into ``trash`` (same file system: one rename) and delete it there at idle
    priority; where the rename cannot be done, delete it in place."""
    try:
        trash.mkdir(parents=True, exist_ok=True)
        target = trash / f"{path.name}-{os.getpid()}-{time.monotonic_ns()}"
        os.rename(path, target)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
        return
    _delete_in_background(target)


def _delete_in_background(path: Path) -> None:
    argv = ["rm", "-rf", "--one-file-system", "--", str(path)]
    for wrapper in (["ionice", "-c", "3"], ["nice", "-n", "19"]):
        if shutil.which(wrapper[0]):
            argv = [*wrapper, *argv]
    try:
        subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        shutil.rmtree(path, ignore_errors=True)

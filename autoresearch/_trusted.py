"""The driver's own files of a domain: ``autoresearch.toml``, ``program.md`` and the objective's
modules. They are read from the commit a run starts from (its recorded base), never from the
live checkout: a candidate that runs without isolation can write the checkout, and whatever
the driver read from there would run with the driver's rights for the rest of the run, its
resumes and every ``status``."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoresearch._config import ResearchConfig, load_config
from autoresearch._errors import ConfigError, SessionError
from autoresearch._git import _run_git, find_repo_root
from autoresearch._layout import CONFIG_NAME, Layout
from autoresearch._ledger import Ledger


@dataclass
class TrustedFiles:
    """The files of one domain folder as of one commit, each read once and kept in memory.

    ``commit`` is None only for a folder in no git repository yet: its files are read from
    disk before anything runs (they become the first commit when the session starts), and
    ``bind`` then checks the commit holds those very bytes.
    """

    domain_dir: Path
    commit: str | None
    repo_root: Path | None = None
    resumed: bool = False  # a resume's base may be older than the folder's committed files
    _read: dict[str, bytes | None] = field(default_factory=dict, repr=False)

    # -- where from --------------------------------------------------------------------------
    @classmethod
    def for_run(
        cls, domain_dir: Path, resume: bool = False, tag: str | None = None
    ) -> TrustedFiles:
        """The files a run on ``domain_dir`` will use: a resume's recorded base commit, a new
        run's HEAD (the base ``open_session`` records), or the folder itself when it is in
        no repository yet."""
        domain_dir = domain_dir.resolve()
        root = find_repo_root(domain_dir)
        if root is None:
            return cls(domain_dir, None)
        commit = _resumed_base(domain_dir, tag) if resume else None
        return cls(domain_dir, commit or _head(root), root, resumed=resume)

    @property
    def where(self) -> str:
        """Where the files come from, for messages."""
        if self.commit is None:
            return f"the folder {self.domain_dir} (read when the loop was built)"
        return f"commit {self.commit[:10]} (the run's base)"

    # -- reading -----------------------------------------------------------------------------
    def read(self, path: str) -> bytes | None:
        """The bytes of ``path`` (relative to the domain folder), None where there is no such
        file. Read once: later calls return the same bytes whatever the checkout holds."""
        key = posixpath.normpath(path)
        if key not in self._read:
            self._read[key] = self._fetch(key)
        return self._read[key]

    def paths(self) -> list[str]:
        """The files read so far (that exist): what the driver uses of the folder."""
        return sorted(p for p, data in self._read.items() if data is not None)

    def text(self, path: str) -> str | None:
        data = self.read(path)
        return None if data is None else data.decode("utf-8", errors="replace")

    def file_name(self, path: str) -> Path:
        """The path a file would have in the checkout (for tracebacks and messages only)."""
        return self.domain_dir / posixpath.normpath(path)

    def _fetch(self, key: str) -> bytes | None:
        if key.startswith("../") or key == ".." or key.startswith("/"):
            return None  # outside the folder: not one of the domain's files
        if self.commit is None:
            file = self.domain_dir / key
            try:
                return file.read_bytes() if file.is_file() else None
            except OSError:
                return None
        assert self.repo_root is not None
        rel = self.domain_dir.relative_to(self.repo_root).as_posix()
        repo_path = key if rel == "." else f"{rel}/{key}"
        # `cat-file blob` runs no filter or textconv: the committed bytes as they are.
        res = _run_git(["cat-file", "blob", f"{self.commit}:{repo_path}"], self.repo_root)
        return res.stdout if res.returncode == 0 else None

    def config(
        self, preset: str | None = None, overrides: dict[str, Any] | None = None
    ) -> tuple[ResearchConfig, str | None]:
        """``load_config`` on these files' ``autoresearch.toml``; the checkout's is not read."""
        text = self.text(CONFIG_NAME)
        path = self.file_name(CONFIG_NAME)
        if text is None and self.commit is not None and path.is_file():
            raise ConfigError(
                f"{path}: not in {self.where}. The loop reads its config only from committed "
                f"files: commit it (git -C {self.domain_dir} add {CONFIG_NAME} && git commit)"
            )
        if text is None:
            raise ConfigError(
                f"{path}: no such file. Create one with `autoresearch init {self.domain_dir}`."
            )
        if not self.resumed:
            self._check_uncommitted_config(text, preset, overrides)
        return load_config(self.domain_dir, preset, overrides, text=text)

    def _check_uncommitted_config(
        self, committed: str, preset: str | None, overrides: dict[str, Any] | None
    ) -> None:
        """A new run refuses an uncommitted config anyway (``open_session``); if that copy
        does not even validate, its errors come first: they are what the user must fix.
        Only validated (TOML and settings, no module of the folder imported), never used."""
        try:
            live = self.file_name(CONFIG_NAME).read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return
        if live != committed:
            load_config(self.domain_dir, preset, overrides, text=live)

    def program(self, config: ResearchConfig) -> str:
        """The research program the proposer is shown ("" where there is none)."""
        return self.text(config.program) or ""

    # -- the session -------------------------------------------------------------------------
    def bind(self, base: str) -> None:
        """Tie these files to the session's base commit. A folder read before it had a
        repository must hold, at that commit, the bytes that were read; a loop built on
        another commit than the session's base is refused (HEAD moved in between)."""
        if self.commit is None:
            self.repo_root = find_repo_root(self.domain_dir)
            seen = dict(self._read)
            self.commit, self._read = base, {}
            changed = sorted(p for p, data in seen.items() if self.read(p) != data)
            self._read.update(seen)
            if changed:
                raise SessionError(
                    f"{', '.join(changed)} in {self.domain_dir}: the new repository's first "
                    "commit does not hold the bytes the loop read (changed meanwhile, or "
                    "git-ignored); nothing was run. Commit them as they should be and start "
                    "the run again"
                )
        elif self.commit != base:
            raise SessionError(
                f"the loop read its config, program and objective from commit "
                f"{self.commit[:10]}, but the run starts from {base[:10]} (HEAD moved, or "
                "the ledger changed, after the loop was built). Build the loop again"
            )

    def differing(self) -> list[str]:
        """Files read here whose copy in the checkout now holds other bytes: the run ignores
        those copies (a resume reads its base's, never the checkout's)."""
        out = []
        for path, data in sorted(self._read.items()):
            file = self.domain_dir / path
            try:
                live = file.read_bytes() if file.is_file() else None
            except OSError:
                live = None
            if live != data:
                out.append(path)
        return out


def _head(repo_root: Path) -> str | None:
    res = _run_git(["rev-parse", "--verify", "-q", "HEAD^{commit}"], repo_root)
    return res.stdout.decode().strip() or None if res.returncode == 0 else None


def _resumed_base(domain_dir: Path, tag: str | None) -> str | None:
    """The base commit the ledger records for the run a resume continues (None: there is no
    such run; the session then says so)."""
    path = Layout(domain_dir).ledger
    if not path.is_file():
        return None
    ledger = Ledger.open_readonly(path)
    try:
        tag = tag or ledger.latest_tag()
        info = ledger.tag_info(tag) if tag else None
        return info.base_commit if info else None
    finally:
        ledger.close()


__all__ = ["TrustedFiles"]

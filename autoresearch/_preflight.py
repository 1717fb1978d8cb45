"""Mistakes caught when the loop is built, before anything runs or is created: every one of
them would otherwise surface only after the baseline, as a run of ``invalid`` experiments."""

from __future__ import annotations

import os
from pathlib import Path

from autoresearch._config import ResearchConfig
from autoresearch._errors import ConfigError
from autoresearch._git import git
from autoresearch._layout import CONFIG_NAME, STATE_DIRNAME
from autoresearch._scope import glob_match
from autoresearch._trusted import TrustedFiles
from autoresearch.proposers._base import Proposer


def check_startup(trusted: TrustedFiles, config: ResearchConfig, proposer: Proposer | None) -> None:
    """ConfigError (naming the file and the field) for an ``editable`` pattern that matches
    no file of the domain at the run's base, or files the proposer cannot work with."""
    files = base_files(trusted)
    for i, pattern in enumerate(config.editable):
        if not any(glob_match(f, [pattern]) for f in files):
            raise ConfigError(
                f"{trusted.file_name(CONFIG_NAME)}: editable[{i}] = {pattern!r} matches "
                f"no file of {trusted.domain_dir} in {trusted.where}; fix the pattern, or "
                "create and commit the file it names"
            )
    if proposer is not None:
        proposer.check_files(config, trusted.text)


def base_files(trusted: TrustedFiles) -> list[str]:
    """The domain's files (relative to it) at the run's base; the folder's own files when it
    is in no repository yet (they become the first commit)."""
    if trusted.commit is None:
        out: list[str] = []
        for root, dirs, names in os.walk(trusted.domain_dir):
            dirs[:] = [d for d in dirs if d not in (".git", STATE_DIRNAME)]
            here = Path(root).relative_to(trusted.domain_dir)
            out.extend((here / n).as_posix() for n in names)
        return out
    assert trusted.repo_root is not None
    rel = trusted.domain_dir.relative_to(trusted.repo_root).as_posix()
    spec = [] if rel == "." else [rel]
    listing = git(
        "ls-tree", "-r", "--name-only", "-z", trusted.commit, "--", *spec, cwd=trusted.repo_root
    )
    prefix = "" if rel == "." else rel + "/"
    return [p[len(prefix) :] for p in listing.split("\0") if p]


__all__ = ["base_files", "check_startup"]

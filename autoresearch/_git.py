"""Every git call of the engine goes through here: no system or global config, none of the
caller's GIT_* variables, the engine's own identity, and every setting that runs a program
(hooks, fsmonitor, external diff, pager, the repository's filter/textconv/merge drivers)
overridden, so a repository a candidate wrote to gets no code run in the driver."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from autoresearch._errors import WorkspaceError
from autoresearch._layout import RESULTS_NAME, STATE_DIRNAME

# The identity of every commit the engine makes (none of the user's config is read).
_ENGINE_IDENTITY = {
    "GIT_AUTHOR_NAME": "autoresearch",
    "GIT_AUTHOR_EMAIL": "autoresearch@localhost",
    "GIT_COMMITTER_NAME": "autoresearch",
    "GIT_COMMITTER_EMAIL": "autoresearch@localhost",
}


# Every git call of the engine runs no user hooks, and starts no automatic maintenance (a
# `git commit` would run `git maintenance run --auto` in the user's repository: a process per
# candidate, and now and then a gc in the middle of a loop).
_GIT_OPTS = ("-c", "core.hooksPath=/dev/null", "-c", "maintenance.auto=false")
# Candidate commits need no signing key (nobody is at the terminal).
_COMMIT_OPTS = ("-c", "commit.gpgsign=false")


# Settings that make git run a program, overridden in every engine call (as command-line
# config, which beats the repository's own): a candidate that wrote .git/config or a hook
# must not get code run in the driver. Filter, textconv and merge drivers named in the
# repository's config are emptied too (see _program_settings).
_NO_PROGRAMS = {
    "core.hooksPath": "/dev/null",
    "core.fsmonitor": "false",
    "core.pager": "cat",
    "core.sshCommand": "false",
    "core.askPass": "",
    "core.editor": "false",
    "diff.external": "",
    "gpg.program": "false",
    "credential.helper": "",
    "protocol.ext.allow": "never",
}
# Keys of the repository's config whose values are commands (the drivers' names vary).
_PROGRAM_KEYS = (
    r"^(filter\..*\.(clean|smudge|process)|diff\..*\.(textconv|command)|merge\..*\.driver)$"
)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of an engine git call: none of the caller's GIT_* variables (a
    GIT_DIR or GIT_EXTERNAL_DIFF of the user's shell must not steer it), no system or global
    config, and every setting that runs a program overridden."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    out["GIT_CONFIG_NOSYSTEM"] = "1"
    out["GIT_CONFIG_GLOBAL"] = os.devnull
    out["GIT_TERMINAL_PROMPT"] = "0"
    out["GIT_NO_REPLACE_OBJECTS"] = "1"  # refs/replace must not swap a fixed file's blob
    settings = {**_NO_PROGRAMS, **(extra or {})}
    out["GIT_CONFIG_COUNT"] = str(len(settings))
    for i, (key, value) in enumerate(settings.items()):
        out[f"GIT_CONFIG_KEY_{i}"] = key
        out[f"GIT_CONFIG_VALUE_{i}"] = value
    return out


def _program_settings(repo_root: Path) -> dict[str, str]:
    """Every driver command the repository's config names (filter/textconv/merge), emptied."""
    res = subprocess.run(
        ["git", "config", "--includes", "--get-regexp", _PROGRAM_KEYS],
        cwd=repo_root,
        capture_output=True,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
    )
    out = {}
    for line in res.stdout.decode(errors="replace").splitlines():
        key = line.split(" ", 1)[0]
        out[key] = ""
        if key.startswith("filter."):
            out[key.rsplit(".", 1)[0] + ".required"] = "false"
    return out


def _run_git(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, data: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    # Its own process group: a Ctrl-C in the terminal reaches the driver (which then ends the
    # experiment in order), not a git command halfway through writing a worktree.
    return subprocess.run(
        ["git", *_GIT_OPTS, *args],
        cwd=cwd,
        capture_output=True,
        env=env if env is not None else clean_env(),
        process_group=0,
        input=data,
        stdin=None if data is not None else subprocess.DEVNULL,
    )


def git(*args: str, cwd: Path, check: bool = True, env: dict[str, str] | None = None) -> str:
    res = _run_git(list(args), cwd, env)
    if check and res.returncode != 0:
        stderr = res.stderr.decode(errors="replace").strip()
        raise WorkspaceError(f"git {' '.join(args)} failed in {cwd}: {stderr}")
    return res.stdout.decode(errors="replace")


def find_repo_root(path: Path) -> Path | None:
    res = _run_git(["rev-parse", "--show-toplevel"], path)
    return Path(res.stdout.decode().strip()).resolve() if res.returncode == 0 else None


def init_repo(domain_dir: Path) -> None:
    """Make ``domain_dir`` a git repository with one commit holding its files."""
    git("init", "-q", cwd=domain_dir)
    # The engine's files and byte-code stay out of the first commit, without adding a
    # .gitignore to the user's folder.
    exclude = domain_dir / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    with open(exclude, "a") as f:
        f.write(f"/{STATE_DIRNAME}/\n/{RESULTS_NAME}\n__pycache__/\n")
    git("add", "--", ".", cwd=domain_dir)
    git(
        *_COMMIT_OPTS,
        "commit",
        "-q",
        "--no-verify",
        "-m",
        "autoresearch: initial commit",
        cwd=domain_dir,
        env=engine_env(domain_dir),
    )


def engine_env(repo_root: Path, worktree: Path | None = None) -> dict[str, str]:
    """The environment of the engine's git calls in one repository: ``clean_env`` with the
    repository's own driver commands emptied (as read from the repository and, if given, a
    worktree of it), and the engine's commit identity."""
    settings = _program_settings(repo_root)
    if worktree is not None and worktree.is_dir():
        settings.update(_program_settings(worktree))
    env = clean_env(extra=settings)
    env.update(_ENGINE_IDENTITY)
    return env


def diff(
    old: str,
    new: str,
    paths: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    name_only: bool = False,
) -> str:
    """``git diff old new -- paths`` that runs no external diff or textconv and never reads a
    revision as an option."""
    form = ["--name-only", "-z"] if name_only else ["--no-color"]
    return git(
        "diff",
        *form,
        "--no-ext-diff",
        "--no-textconv",
        "--end-of-options",
        old,
        new,
        "--",
        *paths,
        cwd=cwd,
        env=env,
    )


__all__ = ["clean_env", "diff", "engine_env", "find_repo_root", "git", "init_repo"]

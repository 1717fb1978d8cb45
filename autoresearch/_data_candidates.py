"""Data candidates: editable files that are data (a prompt, a few-shot set), never run.

DESIGN.md's one exception to "no key reaches the sandbox": when every editable file is data,
the fixed evaluator may hold named API keys (``eval_secrets``), because no candidate code runs.
Those keys reach ``eval_command`` only, never ``command``. The declaration is refused when an
editable file could be code: a script extension, or the executable bit.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from autoresearch._errors import ConfigError
from autoresearch._scope import glob_match
from autoresearch.execution._proc import is_credential

# Extensions of files something may run or import (a candidate's "data" must be none of them).
CODE_SUFFIXES = frozenset(
    [
        ".py",
        ".pyw",
        ".pyx",
        ".pxd",
        ".pyi",
        ".pth",
        ".ipynb",
        ".sh",
        ".bash",
        ".zsh",
        ".fish",
        ".ksh",
        ".csh",
        ".ps1",
        ".bat",
        ".cmd",
        ".js",
        ".mjs",
        ".cjs",
        ".ts",
        ".tsx",
        ".jsx",
        ".rb",
        ".pl",
        ".pm",
        ".php",
        ".lua",
        ".r",
        ".jl",
        ".go",
        ".rs",
        ".c",
        ".cc",
        ".cpp",
        ".cxx",
        ".h",
        ".hpp",
        ".java",
        ".kt",
        ".scala",
        ".swift",
        ".so",
        ".dylib",
        ".dll",
        ".exe",
        ".bin",
        ".jar",
        ".class",
        ".wasm",
        ".mk",
        ".cmake",
        ".toml",
        ".cfg",
        ".ini",
    ]
)


def pattern_problems(editable: Iterable[str], eval_secrets: Iterable[str]) -> list[str]:
    """What is wrong with declaring these editable globs data and passing these keys."""
    problems = []
    for pattern in editable:
        suffix = Path(pattern).suffix.lower()
        if not suffix or "*" in suffix:
            problems.append(
                f"editable {pattern!r} does not end in one data extension (e.g. '.txt', '.md', "
                "'.json'): data candidates need every editable file to be plainly data"
            )
        elif suffix in CODE_SUFFIXES:
            problems.append(f"editable {pattern!r} is code ({suffix}), not data")
    for name in eval_secrets:
        if not is_credential(name):
            problems.append(
                f"eval_secrets {name!r} does not look like a credential name (…_KEY, …_TOKEN, "
                "…_SECRET): only keys belong there, and only those are scrubbed from logs"
            )
    return problems


def check_files(domain: Path, editable: Iterable[str]) -> None:
    """The editable files as they are on disk: none may be executable or a link. Raises
    ConfigError naming the file."""
    patterns = list(editable)
    for dirpath, dirs, files in os.walk(domain):
        dirs[:] = [d for d in dirs if d not in (".git", ".autoresearch")]
        for name in files:
            path = Path(dirpath) / name
            rel = path.relative_to(domain).as_posix()
            if not glob_match(rel, patterns):
                continue
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode) or st.st_mode & 0o111:
                raise ConfigError(
                    f"{domain}/{rel}: editable_are_data is set, but this editable file is "
                    "executable or a link; data candidates must be plain data files "
                    f"(chmod -x {rel}, or remove editable_are_data)"
                )


def eval_secret_values(names: Iterable[str]) -> dict[str, str]:
    """The keys for eval_command, from the driver's environment (missing ones are errors)."""
    out = {}
    for name in names:
        value = os.environ.get(name)
        if not value:
            raise ConfigError(
                f"eval_secrets names {name}, which is not set in this environment: export it "
                "before the run (the evaluator needs it)"
            )
        out[name] = value
    return out

"""Scope: which paths a candidate may change, and applying its edits all or nothing."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

from autoresearch._errors import ScopeError
from autoresearch._layout import STATE_DIRNAME
from autoresearch._types import Edit

# Linux limits: a longer name fails with ENAMETOOLONG when written.
NAME_MAX = 255
PATH_MAX = 4096


@cache
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def glob_match(path: str, patterns: Iterable[str]) -> bool:
    """Whether a relative posix ``path`` matches any glob (``*`` within a segment, ``**``
    across segments)."""
    return any(_glob_regex(p.removeprefix("./")).match(path) for p in patterns)


def check_path(raw: str, editable: Sequence[str], fixed: Sequence[str]) -> str:
    """The normalized domain-relative path of an edit, or ScopeError."""
    if not raw or raw.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", raw) or "\0" in raw:
        raise ScopeError(
            f"{raw!r}: absolute paths are not allowed; use paths relative to the folder"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise ScopeError(f"{raw!r}: control characters are not allowed in a path")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise ScopeError(f"{raw!r}: a path must be valid UTF-8 text") from None
    norm = posixpath.normpath(raw.replace("\\", "/"))
    if norm == ".." or norm.startswith("../") or norm == ".":
        raise ScopeError(f"{raw!r}: path escapes the research folder")
    too_long = [s for s in norm.split("/") if len(s.encode("utf-8", "surrogatepass")) > NAME_MAX]
    if too_long or len(norm.encode("utf-8", "surrogatepass")) > PATH_MAX:
        raise ScopeError(f"{raw[:80]!r}...: a file name is limited to {NAME_MAX} bytes")
    if norm.split("/")[0] in (STATE_DIRNAME, ".git"):
        raise ScopeError(f"{raw!r}: the engine's own files are off-limits")
    if glob_match(norm, fixed):
        raise ScopeError(f"{raw!r}: a fixed (harness) file may not change")
    if not glob_match(norm, editable):
        raise ScopeError(f"{raw!r}: outside the editable files ({', '.join(editable)})")
    return norm


def apply_edits(
    base: Path, edits: Sequence[Edit], editable: Sequence[str], fixed: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Validate every edit, then write them all (nothing is written if one is bad).
    Returns the changed paths and, among them, the newly created ones (domain-relative)."""
    if not edits:
        raise ScopeError("the candidate has no edits")
    base = base.resolve()
    planned: dict[str, str | None] = {}
    for edit in edits:
        try:
            _plan(base, edit, editable, fixed, planned)
        except (OSError, ValueError) as e:  # a path the file system refuses: invalid, no crash
            raise ScopeError(f"{edit.path[:120]!r}: cannot use this path ({e})") from None
    return _write(base, planned)


def _plan(
    base: Path,
    edit: Edit,
    editable: Sequence[str],
    fixed: Sequence[str],
    planned: dict[str, str | None],
) -> None:
    """Check one edit and put the file's new text (None: deleted) into ``planned``."""
    rel = check_path(edit.path, editable, fixed)
    target = base / rel
    _no_symlinks(base, rel)
    if not target.resolve().is_relative_to(base):
        raise ScopeError(f"{edit.path!r}: resolves outside the research folder")
    current = planned[rel] if rel in planned else _read_or_none(target)
    if edit.delete:
        if current is None:
            raise ScopeError(f"{edit.path!r}: cannot delete, the file does not exist")
        planned[rel] = None
    elif edit.content is not None:
        planned[rel] = edit.content
    else:
        assert edit.search is not None and edit.replace is not None
        if current is None:
            raise ScopeError(f"{edit.path!r}: search/replace on a file that does not exist")
        count = current.count(edit.search)
        if count != 1:
            where = "not found" if count == 0 else f"found {count} times"
            raise ScopeError(
                f"{edit.path!r}: search text {where}; it must match exactly once: "
                f"{edit.search[:80]!r}"
            )
        planned[rel] = current.replace(edit.search, edit.replace, 1)


def _write(base: Path, planned: dict[str, str | None]) -> tuple[list[str], list[str]]:
    """Write the planned files (nothing if one is not valid text)."""
    changed = [rel for rel, text in planned.items() if text != _read_or_none(base / rel)]
    if not changed:
        raise ScopeError("the candidate changes nothing")
    for rel in changed:
        try:
            (planned[rel] or "").encode("utf-8")
        except UnicodeEncodeError as e:
            raise ScopeError(f"{rel!r}: content is not valid text ({e})") from None
    try:
        created = [rel for rel in changed if not (base / rel).exists()]
    except (OSError, ValueError) as e:
        raise ScopeError(f"cannot use a path of this candidate ({e})") from None
    # The worktree is thrown away if a write fails, so a half-applied candidate never runs.
    for rel in changed:
        target, text = base / rel, planned[rel]
        try:
            if text is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
        except OSError as e:
            raise ScopeError(f"{rel!r}: cannot write ({e})") from None
    return sorted(changed), sorted(created)


def _read_or_none(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:  # a directory, a path through a file, ...
        raise ScopeError(f"{path.name}: cannot edit ({e})") from None


def _no_symlinks(base: Path, rel: str) -> None:
    current = base
    for part in rel.split("/"):
        current = current / part
        if current.is_symlink():
            raise ScopeError(f"{rel!r}: goes through a symlink ({part}); symlinks are not followed")

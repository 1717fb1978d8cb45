"""Parse a model's answer into file edits and apply them to the current best's files.

Two answer forms are accepted: the text format (a DESCRIPTION and a HYPOTHESIS line, then
SEARCH/REPLACE, WHOLE-file and DELETE blocks, each after a line naming its file) and the JSON
form used with schema-constrained output. Matching is whitespace-tolerant, and every miss
is reported per block, with the closest lines of the file, so a retry can fix it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from autoresearch._scope import glob_match
from autoresearch._types import Edit
from autoresearch.proposers.llm._edit_match import EditFormatError, replace_once

SEARCH_MARK = "<<<<<<< SEARCH"
DIVIDER_MARK = "======="
REPLACE_MARK = ">>>>>>> REPLACE"
WHOLE_MARK = "<<<<<<< WHOLE"
WHOLE_END_MARK = ">>>>>>> WHOLE"
DELETE_PREFIX = "DELETE:"
# Exactly `DELETE: <path>` (the path may be in backticks); prose like "Delete: the helper" is not.
_DELETE = re.compile(r"^DELETE:\s*`?([^\s`]+)`?$")
# Lines a model puts around a file name: markdown bullets, headings, backticks, "File:".
_PATH_DECOR = re.compile(r"^(?:[#*>\-\s]*)(?:file(?:name)?\s*:\s*)?", re.IGNORECASE)
_FIELD = re.compile(r"^\s*[#*]*\s*(description|hypothesis)\s*\**\s*:\s*\**\s*(.*)$", re.IGNORECASE)
# How many lines of the closest match a miss report shows.
MAX_DESCRIPTION_CHARS = 200


@dataclass(frozen=True)
class Block:
    """One parsed block: ``kind`` is 'search', 'whole' or 'delete'."""

    number: int
    path: str
    kind: str
    search: str = ""
    replace: str = ""
    # Other (search, replace) splits when the block held several '=======' lines; the one
    # whose SEARCH part matches the file is used.
    splits: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ParsedAnswer:
    description: str
    hypothesis: str
    blocks: tuple[Block, ...]


def parse_answer(text: str) -> ParsedAnswer:
    """Parse the text or JSON form; raises EditFormatError naming what is missing or broken."""
    stripped = _strip_outer_fence(text.strip())
    if stripped.startswith("{"):
        return _parse_json(stripped)
    return _parse_text(text)


def _strip_outer_fence(text: str) -> str:
    if text.startswith("```") and text.endswith("```"):
        inner = text[3:-3]
        return inner.split("\n", 1)[1].strip() if "\n" in inner else inner.strip()
    return text


def _parse_json(text: str) -> ParsedAnswer:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise EditFormatError([f"the answer is not valid JSON: {e}"]) from None
    if not isinstance(data, dict):
        raise EditFormatError(["the JSON answer must be an object"])
    problems: list[str] = []
    blocks: list[Block] = []
    raw_edits = data.get("edits")
    if not isinstance(raw_edits, list):
        problems.append("the JSON answer needs an 'edits' list")
        raw_edits = []
    for n, item in enumerate(raw_edits, start=1):
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            problems.append(f"edit {n}: needs a string 'path'")
            continue
        path = item["path"].strip()
        if item.get("delete") is True:
            blocks.append(Block(n, path, "delete"))
        elif isinstance(item.get("content"), str):
            blocks.append(Block(n, path, "whole", replace=item["content"]))
        elif isinstance(item.get("search"), str) and isinstance(item.get("replace"), str):
            blocks.append(Block(n, path, "search", item["search"], item["replace"]))
        else:
            problems.append(
                f"edit {n} ({path}): give 'search' and 'replace', or 'content', or 'delete': true"
            )
    description = data.get("description")
    hypothesis = data.get("hypothesis")
    answer = _finish(
        str(description) if isinstance(description, str) else "",
        str(hypothesis) if isinstance(hypothesis, str) else "",
        blocks,
        problems,
    )
    return answer


def _parse_text(text: str) -> ParsedAnswer:
    lines = text.splitlines()
    problems: list[str] = []
    blocks: list[Block] = []
    description = ""
    hypothesis = ""
    last_text_line = ""
    number = 0  # counts every block, broken ones too, so messages name the right one
    i = 0
    while i < len(lines):
        line = lines[i]
        mark = line.strip()
        field = _FIELD.match(line) if not (description and hypothesis) else None
        if field:
            if field.group(1).lower() == "description" and not description:
                description = field.group(2).strip()
            elif field.group(1).lower() == "hypothesis" and not hypothesis:
                hypothesis = field.group(2).strip()
            i += 1
            continue
        delete = _DELETE.match(mark)
        if delete:
            number += 1
            blocks.append(Block(number, _clean_path(delete.group(1)), "delete"))
            i += 1
            continue
        if mark in (SEARCH_MARK, WHOLE_MARK):
            number += 1
            path = _clean_path(last_text_line)
            whole = mark == WHOLE_MARK
            end = WHOLE_END_MARK if whole else REPLACE_MARK
            body, i, closed = _collect_until(lines, i + 1, end)
            if not closed:
                problems.append(f"block {number} ({path or 'no file'}): missing the '{end}' line")
                break
            if not path:
                problems.append(
                    f"block {number}: no file name on the line before '{mark}' "
                    "(write the path alone on that line)"
                )
                continue
            if whole:
                blocks.append(Block(number, path, "whole", replace=_join(body)))
                continue
            dividers = [k for k, b in enumerate(body) if b.strip() == DIVIDER_MARK]
            if not dividers:
                problems.append(
                    f"block {number} ({path}): needs exactly one '{DIVIDER_MARK}' line "
                    "between SEARCH and REPLACE, found none"
                )
                continue
            splits = tuple((_join(body[:k]), _join(body[k + 1 :])) for k in dividers)
            search, replace = splits[0]
            blocks.append(
                Block(number, path, "search", search, replace, splits if len(splits) > 1 else ())
            )
            continue
        if mark and not mark.startswith("```"):
            last_text_line = mark
        i += 1
    return _finish(description, hypothesis, blocks, problems)


def _collect_until(lines: list[str], start: int, end: str) -> tuple[list[str], int, bool]:
    for j in range(start, len(lines)):
        if lines[j].strip() == end:
            return lines[start:j], j + 1, True
    return lines[start:], len(lines), False


def _join(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""


def _clean_path(line: str) -> str:
    path = _PATH_DECOR.sub("", line.strip()).strip().strip("`*'\"").strip()
    return path.removeprefix("./").rstrip(":")


def _finish(
    description: str, hypothesis: str, blocks: list[Block], problems: list[str]
) -> ParsedAnswer:
    description = " ".join(description.split())
    if not description:
        problems.append("missing the one-line 'DESCRIPTION: ...' of the change")
    if not hypothesis.strip():
        problems.append("missing the 'HYPOTHESIS: ...' (why the change should help)")
    if not blocks and not problems:
        problems.append("the answer has no edit blocks")
    if problems:
        raise EditFormatError(problems)
    return ParsedAnswer(description[:MAX_DESCRIPTION_CHARS], hypothesis.strip(), tuple(blocks))


def apply_blocks(
    files: Mapping[str, str],
    blocks: Sequence[Block],
    *,
    editable_globs: Sequence[str] = (),
    whole_file_max_lines: int | None = None,
) -> tuple[Edit, ...]:
    """Apply blocks in order to a copy of ``files``; return one whole-file Edit (or a delete)
    per changed file. Every failing block is reported, not just the first."""
    state: dict[str, str | None] = dict(files)
    problems: list[str] = []
    for block in blocks:
        where = f"block {block.number} ({block.path})"
        path_problem = _check_path(block.path, files, editable_globs)
        if path_problem:
            problems.append(f"{where}: {path_problem}")
            continue
        current = state.get(block.path)
        if block.kind == "delete":
            if current is None:
                problems.append(f"{where}: cannot delete a file that does not exist")
            else:
                state[block.path] = None
        elif block.kind == "whole":
            old_lines = 0 if current is None else len(current.splitlines())
            if whole_file_max_lines is not None and old_lines > whole_file_max_lines:
                problems.append(
                    f"{where}: the file has {old_lines} lines, more than the "
                    f"{whole_file_max_lines} allowed for a WHOLE block; use SEARCH/REPLACE blocks"
                )
            else:
                state[block.path] = block.replace
        elif block.splits:
            result = _replace_split(current, block.splits)
            if isinstance(result, str):
                state[block.path] = result
            else:
                problems.append(f"{where}: {result[0]}")
        else:
            try:
                state[block.path] = replace_once(current, block.search, block.replace)
            except EditFormatError as e:
                problems.extend(f"{where}: {p}" for p in e.problems)
    if problems:
        raise EditFormatError(problems)
    edits = []
    for path in sorted(state, key=str):
        new, old = state[path], files.get(path)
        if new == old:
            continue
        edits.append(Edit(path, delete=True) if new is None else Edit(path, content=new))
    if not edits:
        raise EditFormatError(["the edits leave every file unchanged"])
    return tuple(edits)


def _replace_split(current: str | None, splits: Sequence[tuple[str, str]]) -> str | list[str]:
    """A block with several '=======' lines: use the split whose SEARCH part matches the file,
    the longest such (a divider line inside it is then file content). Else the problems."""
    for search, replace in sorted(splits, key=lambda sr: len(sr[0]), reverse=True):
        try:
            return replace_once(current, search, replace)
        except EditFormatError:
            continue
    return [
        f"the block has {len(splits)} '{DIVIDER_MARK}' lines and no split of it into SEARCH "
        "and REPLACE matches the file; when the content itself holds such a line, replace "
        "the file with a WHOLE block"
    ]


def _check_path(path: str, files: Mapping[str, str], globs: Sequence[str]) -> str:
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\\" in path:
        return "the path must be relative to the domain folder, without '..'"
    if path in files or not globs:
        return ""
    if glob_match(path, globs):
        return ""
    shown = ", ".join(sorted(files)) or "none"
    return f"not an editable file (editable globs: {', '.join(globs)}; files shown: {shown})"

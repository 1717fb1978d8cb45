"""Parse a model's answer into file edits and apply them to the current best's files.

Two answer forms are accepted: the text format (a DESCRIPTION and a HYPOTHESIS line, then
SEARCH/REPLACE, WHOLE-file and DELETE blocks, each after a line naming its file) and the JSON
form used with schema-constrained output. Matching is whitespace-tolerant, and every miss
is reported per block, with the closest lines of the file, so a retry can fix it.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from ._types import Edit

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
NEAR_MISS_LINES = 12
MAX_DESCRIPTION_CHARS = 200


class EditFormatError(Exception):
    """The answer cannot be used; the message lists every problem, one per block."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(f"- {p}" for p in self.problems))


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
    if any(_glob_matches(path, g) for g in globs):
        return ""
    shown = ", ".join(sorted(files)) or "none"
    return f"not an editable file (editable globs: {', '.join(globs)}; files shown: {shown})"


def _glob_matches(path: str, glob: str) -> bool:
    # Lenient on purpose: the workspace's scope check is the authority; this only saves a
    # wasted experiment on an obviously wrong path.
    return (
        fnmatch.fnmatchcase(path, glob)
        or fnmatch.fnmatchcase(path, glob.replace("**/", ""))
        or PurePosixPath(path).match(glob)
    )


def replace_once(content: str | None, search: str, replace: str) -> str:
    """Replace the one occurrence of ``search`` in ``content``, tolerating differences in
    trailing whitespace, indentation (spaces or tabs), line endings and surrounding blank
    lines. An empty ``search`` on a missing file creates it."""
    if content is None:
        if search.strip():
            raise EditFormatError(["the file does not exist; create it with an empty SEARCH"])
        return replace
    if not search.strip():
        raise EditFormatError(
            ["the SEARCH part is empty; quote the lines to change, or use a WHOLE block"]
        )
    if "\r\n" in content and content.count("\r\n") == content.count("\n"):
        # A CRLF file: match and edit in LF, and give it back with its own line endings.
        lf = _replace_lf(content.replace("\r\n", "\n"), _lf(search), _lf(replace))
        return lf.replace("\n", "\r\n")
    return _replace_lf(content, search, replace)


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def _replace_lf(content: str, search: str, replace: str) -> str:
    # An exact hit counts only where it starts a line (after indentation at most) and ends
    # one: 'total = 0' must not edit 'subtotal = 0' or 'total = 0.5'.
    hits = [at for at in _find_all(content, search) if _whole_lines(content, at, search)]
    if len(hits) > 1:
        raise EditFormatError([_ambiguous(len(hits))])
    if hits:
        at = hits[0]
        # After indentation, a multi-line replacement goes via the line matcher, which
        # re-indents it; a one-line edit is applied as it stands.
        if at == 0 or content[at - 1] == "\n" or "\n" not in replace.rstrip("\n"):
            return content[:at] + replace + content[at + len(search) :]
    return _replace_lines(content, search, replace)


def _find_all(content: str, search: str) -> list[int]:
    found, at = [], content.find(search)
    while at >= 0:
        found.append(at)
        at = content.find(search, at + 1)
    return found


def _whole_lines(content: str, at: int, search: str) -> bool:
    line_start = content.rfind("\n", 0, at) + 1
    if content[line_start:at].strip():
        return False
    end = at + len(search)
    return search.endswith("\n") or end == len(content) or content[end] in "\r\n"


def _ambiguous(count: int) -> str:
    return f"the SEARCH text occurs {count} times; add neighbouring lines to make it unique"


def _replace_lines(content: str, search: str, replace: str) -> str:
    file_lines = content.splitlines(keepends=True)
    search_lines = _trim_blank(search.splitlines())
    replace_lines = replace.splitlines()
    for normalize in (str.rstrip, str.strip):
        wanted = [normalize(s) for s in search_lines]
        have = [normalize(f.rstrip("\n")) for f in file_lines]
        hits = [
            i for i in range(len(have) - len(wanted) + 1) if have[i : i + len(wanted)] == wanted
        ]
        if len(hits) > 1:
            raise EditFormatError([_ambiguous(len(hits))])
        if hits:
            start = hits[0]
            matched = [f.rstrip("\n") for f in file_lines[start : start + len(wanted)]]
            unit = _indent_unit(content.splitlines())
            new_lines = _reindent(
                _to_unit(search_lines, unit), matched, _to_unit(replace_lines, unit)
            )
            ending = "\n" if file_lines[start + len(wanted) - 1].endswith("\n") else ""
            body = "\n".join(new_lines) + ending if new_lines else ""
            return "".join(file_lines[:start]) + body + "".join(file_lines[start + len(wanted) :])
    raise EditFormatError([_near_miss(file_lines, search_lines)])


def _trim_blank(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


# The indentation unit assumed for space-indented text whose smallest indent is a multiple.
SPACES_PER_LEVEL = 4


def _indent_unit(lines: Sequence[str]) -> str:
    """The text's indentation step: a tab, or the smallest space indent (4 where a multiple)."""
    widths = []
    for line in lines:
        indent = _indent(line)
        if line.strip() and indent.startswith("\t"):
            return "\t"
        if line.strip() and indent and set(indent) == {" "}:
            widths.append(len(indent))
    if not widths:
        return ""
    width = min(widths)
    return " " * (SPACES_PER_LEVEL if width % SPACES_PER_LEVEL == 0 else width)


def _to_unit(lines: list[str], file_unit: str) -> list[str]:
    """Re-express tab indentation as the file's spaces, or space indentation as its tabs,
    keeping the nesting: a model often quotes a tab-indented file with spaces."""
    unit = _indent_unit(lines)
    if not unit or not file_unit or unit == file_unit or "\t" not in (unit + file_unit):
        return lines
    out = []
    for line in lines:
        indent = _indent(line)
        if unit == "\t":
            if " " in indent:
                return lines  # mixed indentation: leave it as written
            new = file_unit * len(indent)
        else:
            if "\t" in indent:
                return lines
            levels, rest = divmod(len(indent), len(unit))
            new = file_unit * levels + " " * rest
        out.append(new + line[len(indent) :])
    return out


def _reindent(search: list[str], matched: list[str], replace: list[str]) -> list[str]:
    """Shift the replacement by the indentation the search text was off by, when that
    offset is the same on every non-blank line (else keep the replacement as written)."""
    pairs = [(s, m) for s, m in zip(search, matched, strict=True) if s.strip()]
    if not pairs:
        return replace
    s0, m0 = _indent(pairs[0][0]), _indent(pairs[0][1])
    if m0.endswith(s0):
        add, cut = m0[: len(m0) - len(s0)], ""
    elif s0.endswith(m0):
        add, cut = "", s0[: len(s0) - len(m0)]
    else:
        return replace
    for s, m in pairs:
        if _indent(m) != add + _indent(s)[len(cut) :] or not _indent(s).startswith(cut):
            return replace
    out = []
    for r in replace:
        if not r.strip():
            out.append(r)
        elif r.startswith(cut):
            out.append(add + r[len(cut) :])
        else:
            return replace
    return out


def _near_miss(file_lines: list[str], search_lines: list[str]) -> str:
    have = [f.rstrip("\n") for f in file_lines]
    n = len(search_lines)
    best_ratio, best_start = 0.0, 0
    wanted = "\n".join(s.strip() for s in search_lines)
    for i in range(max(1, len(have) - n + 1)):
        window = "\n".join(h.strip() for h in have[i : i + n])
        ratio = difflib.SequenceMatcher(None, wanted, window, autojunk=False).ratio()
        if ratio > best_ratio:
            best_ratio, best_start = ratio, i
    msg = "the SEARCH text was not found in the file"
    if best_ratio < 0.5 or not have:
        return msg + "; copy the lines to change exactly from the file shown above"
    near = have[best_start : best_start + n]
    detail = ""
    for k, (s, h) in enumerate(zip(search_lines, near, strict=False)):
        if s.strip() != h.strip():
            detail = (
                f"; SEARCH line {k + 1} is {s.strip()!r} but file line "
                f"{best_start + k + 1} is {h.strip()!r}"
            )
            break
    shown = "\n".join(
        f"    {best_start + k + 1:4d}| {h}" for k, h in enumerate(near[:NEAR_MISS_LINES])
    )
    return (
        f"{msg}{detail}. The closest lines ({best_ratio:.0%} similar) are "
        f"{best_start + 1}-{best_start + len(near)}:\n{shown}"
    )

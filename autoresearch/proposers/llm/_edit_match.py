"""Finding a SEARCH text in a file and replacing it: exact when it sits on whole lines, else
tolerant of trailing whitespace, indentation (spaces or tabs), line endings and blank lines,
with the closest lines of the file in the error when nothing matches."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

NEAR_MISS_LINES = 12


class EditFormatError(Exception):
    """The answer cannot be used; the message lists every problem, one per block."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(f"- {p}" for p in self.problems))


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

"""How the command line writes text: plain consoles, styles, and the small formatters."""

from __future__ import annotations

import re

from rich.console import Console

from autoresearch._types import Status

# Markup and emoji codes off: every string is printed as it is. Descriptions, reasons, log
# tails, metric names, tags and paths may hold "[/]" or ":x:" (a crash, or text eaten); the
# only styles are those of the Text pieces built here.
console = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)

# Every Status has its style (a StrEnum: the status view looks them up by the value).
STATUS_STYLE: dict[Status, str] = {
    Status.KEEP: "green",
    Status.DISCARD: "dim",
    Status.CRASH: "red",
    Status.TIMEOUT: "red",
    Status.OOM: "red",
    Status.INVALID: "yellow",
    Status.GATE_FAILED: "magenta",
    Status.INTERRUPTED: "yellow",
    Status.RUNNING: "cyan",
}

# C0 and C1 control characters but newline and tab: ESC would let a candidate's text recolour
# or clear the terminal, CR overwrite the line before it.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
ELLIPSIS = "…"


def plain(text: str) -> str:
    """``text`` with its control characters shown as ``\\xNN`` escapes."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def clip(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, cut at a word boundary with an ellipsis (a
    single word longer than the width is cut inside it)."""
    if len(text) <= width:
        return text
    head = text[: width - 1]
    if text[width - 1] != " " and " " in head:
        head = head.rsplit(" ", 1)[0]
    return head.rstrip() + ELLIPSIS


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def minutes(seconds: float) -> str:
    """``mm:ss`` (``h:mm:ss`` from an hour on)."""
    m, s = divmod(int(max(seconds, 0)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def plural(n: int, noun: str) -> str:
    """``1 experiment``, ``2 experiments``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"

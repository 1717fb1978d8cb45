"""The summary block a run ends with: a ``---`` line, then one ``name: value`` line per figure.

This is the upstream format that the engine's ``parse_summary`` reads (the last ``---`` block
of a log wins), so a domain prints it exactly once, last, from trusted code.
"""

from __future__ import annotations

import numbers
import re
import sys
import threading
from collections.abc import Mapping
from typing import TextIO

# Held while a block is written and while a child's output line is passed on
# (see _isolated.py), so neither can land in the middle of the other.
OUTPUT_LOCK = threading.Lock()
# What the engine's parser accepts as a figure's name.
_NAME = re.compile(r"[A-Za-z_][\w.]*")


def format_summary(figures: Mapping[str, float | int]) -> str:
    """The block as text: floats with 6 decimals, ints (and bools) as ints, names aligned."""
    width = max((len(name) for name in figures), default=0) + 1
    lines = ["---"]
    for name, value in figures.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"summary name {name!r}: use letters, digits, '_' and '.'")
        if isinstance(value, numbers.Integral):  # bool and numpy ints too
            text = str(int(value))
        elif isinstance(value, numbers.Real):
            text = f"{float(value):.6f}"
        else:
            raise ValueError(f"summary value of {name}: expected a number, got {value!r}")
        lines.append(f"{name + ':':<{width}} {text}")
    return "\n".join(lines) + "\n"


def print_summary(figures: Mapping[str, float | int], file: TextIO | None = None) -> None:
    """Write the block in one piece and flush, so it reaches the log whole and last."""
    text = format_summary(figures)
    out = sys.stdout if file is None else file
    with OUTPUT_LOCK:
        out.write(text)
        out.flush()

"""`autoresearch report`: progress.png, report.md and report.html of one run, written by
default into the run's folder (``DIR/.autoresearch/runs/<tag>/``)."""

from __future__ import annotations

from pathlib import Path

from autoresearch._layout import Layout
from autoresearch.report._data import report_data
from autoresearch.report._progress import progress_png, short
from autoresearch.report._render import write_report
from autoresearch.report._status import diff_text


def write_report_files(domain: Path, tag: str | None = None, out: Path | None = None) -> list[Path]:
    """Write the three files and return their paths (``out``: the folder to write them to)."""
    data = report_data(domain, tag)
    folder = out if out is not None else Layout(data.domain).tag_dir(data.tag)
    diffs = {
        f"#{k.index} {short(k.description)}": diff_text(data.domain, data.tag, k.id)
        for k in data.kept
    }
    return write_report(data, folder, progress_png(data), diffs)

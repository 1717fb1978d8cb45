"""Read-only views of a run: status figures, diffs, the report (progress.png, report.md,
report.html) and the dashboard's data (read through the ledger's API)."""

from autoresearch.report._data import ReportData, report_data
from autoresearch.report._figures import (
    confirm_text,
    figure_text,
    figures_text,
    noise_estimate,
    runs_label,
)
from autoresearch.report._report import write_report_files
from autoresearch.report._status import diff_text, status_data

__all__ = [
    "ReportData",
    "confirm_text",
    "diff_text",
    "figure_text",
    "figures_text",
    "noise_estimate",
    "report_data",
    "runs_label",
    "status_data",
    "write_report_files",
]

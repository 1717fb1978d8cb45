"""Read-only views of a run: status figures and diffs (read through the ledger's API)."""

from autoresearch.report._figures import figure_text, figures_text, noise_estimate, runs_label
from autoresearch.report._status import diff_text, status_data

__all__ = [
    "diff_text",
    "figure_text",
    "figures_text",
    "noise_estimate",
    "runs_label",
    "status_data",
]

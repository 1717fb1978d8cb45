"""Figures as `status` shows them, each with what it rests on: the noise estimate the
acceptance policy is handed and the runs behind it, how many runs a value is the mean of."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autoresearch._ledger import Ledger
from autoresearch.acceptance._stats import pooled_sigma


@dataclass(frozen=True)
class Noise:
    """The per-run noise of a tag: ``sigma`` pooled within every commit measured at least
    twice, ``runs`` of ``commits`` such commits (``sigma`` is None until there is one)."""

    sigma: float | None
    runs: int
    commits: int


def noise_estimate(ledger: Ledger, tag: str) -> Noise:
    """The noise the acceptance policy is handed at its next decision, computed as the
    engine does (``Measurer.noise_sigma``: calibration runs of the incumbent, repeats of
    candidates, interleaved incumbent runs). The ``tags.noise_sigma`` column is written only
    after a calibration, so it goes stale as repeats add runs, and is None when none ran."""
    groups = [v for v in ledger.values_by_commit(tag).values() if len(v) >= 2]
    return Noise(pooled_sigma(groups), sum(len(v) for v in groups), len(groups))


def runs_label(n: int) -> str | None:
    """What a value of ``n`` runs is: "first run" or "mean of N" (None for no run: a value
    reused from an identical experiment)."""
    if n <= 0:
        return None
    return "first run" if n == 1 else f"mean of {n}"


def figure_text(value: float | None, label: str | None, *notes: str) -> str:
    """``4.95 (mean of 5)``; ``-`` when there is no value."""
    if value is None:
        return "-"
    inside = ", ".join(n for n in (label, *notes) if n)
    return f"{value:.6g} ({inside})" if inside else f"{value:.6g}"


def noise_text(sigma: float | None, runs: int, commits: int) -> str:
    """``σ 0.174 from 7 runs of 2 commits``, or why there is no estimate yet."""
    if sigma is None:
        return "σ - (no commit measured twice yet)"
    return f"σ {sigma:.3g} from {runs} runs of {commits} commit{'' if commits == 1 else 's'}"


def figures_text(data: dict[str, Any]) -> str:
    """The figures of `status`'s summary line, from `status_data`: baseline and best, each
    labelled with the runs it rests on, and the noise estimate with its runs."""
    best = figure_text(data["best_value"], data["best_label"], (data["best_commit"] or "")[:7])
    text = (
        f"baseline {figure_text(data['baseline_value'], data['baseline_label'])} → best {best}; "
        f"noise {noise_text(data['noise_sigma'], data['noise_runs'], data['noise_commits'])}"
    )
    confirm = data.get("confirm")
    return f"{text}; {confirm_text(confirm)}" if confirm else text


def confirm_text(result: dict[str, Any]) -> str:
    """The latest `confirm`, in a line: effect, interval, p and how much of the claim held
    (or, for a deterministic domain, that the holdout is the check)."""
    runs = result.get("runs", 0)
    of = str(result.get("best_commit") or "")[:7]
    if result.get("stale"):
        return (
            f"confirm: the latest one checked an earlier best ({of}), not the current one; "
            "run `autoresearch confirm` again"
        )
    if result.get("deterministic"):
        return f"confirm of {of} ({runs} runs each): {result.get('note', '')}"
    share = result.get("replicated_fraction")
    held = f", {share:.0%} of the claimed gain replicated" if share is not None else ""
    verdict = "confirmed" if result.get("confirmed") else "not confirmed"
    return (
        f"confirm of {of} ({runs} runs each, fresh seeds): {verdict}, effect "
        f"{result['effect']:+.4g} [{result['ci_low']:+.4g}, {result['ci_high']:+.4g}] "
        f"(95%, improvement), p {result['p_value']:.3g}{held}"
        + (f", {result['failed_runs']} run(s) failed" if result.get("failed_runs") else "")
    )

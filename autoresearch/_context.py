"""What the loop hands out: the proposer's Context (never holdout values) and the RunSummary."""

from __future__ import annotations

import statistics

from autoresearch._config import ResearchConfig
from autoresearch._objective import feedback_key
from autoresearch._session import Session
from autoresearch._types import (
    Context,
    ExperimentKind,
    ExperimentRecord,
    HistoryEntry,
    RunSummary,
    Status,
)


def build_context(
    session: Session,
    config: ResearchConfig,
    program: str,
    incumbent: str,
    last_failure: str | None,
) -> Context:
    """The context for the next proposal: program (the base commit's, as the loop read it),
    the incumbent's editable files, history with deltas against the best at the time, and
    the last failure."""
    records = [r for r in session.ledger.records(session.tag) if r.status is not Status.RUNNING]
    # Imported history (an upstream results.tsv) comes first, deltas within itself only.
    history = [
        HistoryEntry(r.id, r.status, r.description, r.value, None, r.reason, r.hypothesis)
        for info in session.ledger.tags()
        if info.state == "imported"
        for r in session.ledger.history(info.tag)
    ]
    best: float | None = None
    baseline: float | None = None
    for r in records:
        delta = r.value - best if r.value is not None and best is not None else None
        history.append(
            HistoryEntry(
                r.id,
                r.status,
                r.description,
                r.value,
                delta,
                r.reason,
                r.hypothesis,
                secondary=dict(r.secondary),
            )
        )
        if r.status is Status.KEEP and r.value is not None:
            best = r.value
            baseline = r.value if baseline is None else baseline
    return Context(
        program=program,
        files=session.workspace.files_at(incumbent, config.editable),
        history=tuple(history),
        metric=config.objective.metric or "value",
        direction=config.objective.direction,
        best_value=best,
        baseline_value=baseline,
        experiment_id=(records[-1].id + 1) if records else 1,
        last_failure=last_failure,
        editable_globs=tuple(config.editable),
        feedback=_feedback(session, records),
    )


def _feedback(session: Session, records: list[ExperimentRecord]) -> str:
    """``Objective.feedback`` kept for the incumbent (the last keep) and, when it is another
    one, the last experiment."""
    keep = next((r for r in reversed(records) if r.status is Status.KEEP), None)
    last = records[-1] if records else None
    parts = []
    for r, what in ((keep, "the current best"), (last, "the last experiment")):
        if r is None or (what == "the last experiment" and keep is not None and r.id == keep.id):
            continue
        text = session.ledger.meta(feedback_key(session.tag, r.id))
        if isinstance(text, str) and text:
            parts.append(f"## On {what} (experiment {r.id}, {r.status.value})\n{text}")
    return "\n\n".join(parts)


def run_summary(session: Session, best_value: float | None, stopped: str) -> RunSummary:
    """The summary of a session. Values are means over every run of a commit (re-measurements
    included), never a best run."""
    ledger, tag = session.ledger, session.tag
    records = ledger.records(tag)
    base = next(
        (r for r in records if r.kind is ExperimentKind.BASELINE and r.value is not None), None
    )
    base_values = ledger.run_values(tag, base.commit) if base and base.commit else []
    return RunSummary(
        tag=tag,
        branch=session.workspace.branch,
        best_commit=session.workspace.branch_commit(),
        best_value=best_value,
        baseline_value=statistics.fmean(base_values) if base_values else None,
        counts=ledger.counts(tag),
        experiments=len(records),
        stopped_because=stopped,
        interrupted=stopped == "interrupted",
        baseline_runs=len(base_values),
    )

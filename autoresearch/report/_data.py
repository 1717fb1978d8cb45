"""What `report` and the dashboard show, gathered from the ledger through its typed API:
every experiment with the runs behind its value, the kept changes with their deltas, counts,
spend and time, the objective's figures, holdout beside selection, and the latest confirm."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoresearch._ledger import Ledger
from autoresearch._types import ExperimentKind, ExperimentRecord, Status
from autoresearch.report._status import _open, status_data

# Statuses drawn as failures: no value the policy could compare (or a refused keep).
FAILED = (
    Status.CRASH,
    Status.TIMEOUT,
    Status.OOM,
    Status.INVALID,
    Status.GATE_FAILED,
    Status.INTERRUPTED,
)
# Run kinds whose values are an experiment's own (not the incumbent's beside it).
OWN_RUN_KINDS = ("baseline", "candidate", "re-measure")


@dataclass(frozen=True)
class Point:
    """One experiment as the plot and the table show it."""

    index: int  # 1-based position in the run
    id: int
    status: str
    kind: str
    description: str
    value: float | None
    se: float | None  # standard error of the value, where it rests on 2+ runs
    runs: int
    commit: str | None
    parent: str | None
    reason: str
    holdout: dict[str, float]
    secondary: dict[str, float]
    seconds: float | None


@dataclass(frozen=True)
class Kept:
    """A kept change: its delta against the incumbent it replaced, with a standard error."""

    index: int
    id: int
    description: str
    value: float | None
    delta: float | None
    se: float | None
    runs: int
    commit: str


@dataclass
class ReportData:
    domain: Path
    tag: str
    metric: str
    direction: str
    status: dict[str, Any]
    points: list[Point]
    kept: list[Kept]
    running: list[Point]
    wall_s: float | None
    per_experiment_s: float | None
    confirmation: dict[str, Any] | None
    baseline_se: float | None = None
    best_se: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def finished(self) -> list[Point]:
        return [p for p in self.points if p.status != Status.RUNNING.value]

    @property
    def kept_count(self) -> int:
        """Kept improvements: keeps other than the baseline."""
        return sum(1 for p in self.finished if p.status == "keep" and p.kind != "baseline")

    def running_best(self) -> list[tuple[int, float]]:
        """The incumbent's value after each finished experiment (from the first keep on):
        the value of the last kept row, which is what the loop compared candidates with."""
        out: list[tuple[int, float]] = []
        best: float | None = None
        for p in self.finished:
            if p.status == "keep" and p.value is not None:
                best = p.value
            if best is not None:
                out.append((p.index, best))
        return out


def standard_error(values: list[float]) -> float | None:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) >= 2 else None


def report_data(domain: Path, tag: str | None = None) -> ReportData:
    """Everything `report` writes and the dashboard shows, read-only."""
    domain = domain.resolve()
    status = status_data(domain, tag, holdout=True)
    ledger, tag = _open(domain, status["tag"])
    try:
        return _gather(domain, tag, ledger, status)
    finally:
        ledger.close()


def _gather(domain: Path, tag: str, ledger: Ledger, status: dict[str, Any]) -> ReportData:
    records = ledger.history(tag)
    runs = ledger.runs(tag)
    own: dict[int, list[float]] = {}
    for r in runs:
        if r.experiment_id is not None and r.value is not None and r.kind in OWN_RUN_KINDS:
            own.setdefault(r.experiment_id, []).append(r.value)
    by_commit = ledger.values_by_commit(tag)
    sigma = status.get("noise_sigma")
    points = [_point(i, r, own.get(r.id, []), by_commit) for i, r in enumerate(records, 1)]
    kept = _kept(points, by_commit, sigma)
    done = [p.seconds for p in points if p.seconds is not None]
    starts = [r.started_at for r in records if r.started_at is not None]
    ends = [r.finished_at for r in records if r.finished_at is not None]
    base_commit, best_commit = _commit_of(records, baseline=True), status.get("best_commit")
    confirmation = status.get("confirm")  # with ``stale`` when it confirmed an earlier best
    return ReportData(
        domain=domain,
        tag=tag,
        metric=status["metric"],
        direction=status["direction"],
        status=status,
        points=points,
        kept=kept,
        running=[p for p in points if p.status == Status.RUNNING.value],
        wall_s=(max(ends) - min(starts)) if starts and ends else None,
        per_experiment_s=statistics.fmean(done) if done else None,
        confirmation=dict(confirmation) if confirmation else None,
        baseline_se=standard_error(by_commit.get(base_commit or "", [])),
        best_se=standard_error(by_commit.get(best_commit or "", [])),
        extra=dict(status.get("report", {})),
    )


def _commit_of(records: list[ExperimentRecord], baseline: bool) -> str | None:
    for r in records:
        if r.kind is ExperimentKind.BASELINE and r.value is not None:
            return r.commit
    return None


def _point(
    index: int, r: ExperimentRecord, values: list[float], by_commit: dict[str, list[float]]
) -> Point:
    value = r.value
    if r.status is Status.KEEP and r.commit and by_commit.get(r.commit):
        # A kept commit is shown as the loop came to know it: the mean of all its runs
        # (calibration and interleaved incumbent runs too), as `status` shows it.
        values = by_commit[r.commit]
        value = statistics.fmean(values)
    seconds = r.finished_at - r.started_at if r.finished_at is not None and r.started_at else None
    return Point(
        index=index,
        id=r.id,
        status=r.status.value,
        kind=r.kind.value,
        description=r.description,
        value=value,
        se=standard_error(values),
        runs=len(values),
        commit=r.commit,
        parent=r.parent_commit,
        reason=r.reason,
        holdout=dict(r.holdout),
        secondary=dict(r.secondary),
        seconds=seconds,
    )


def _kept(
    points: list[Point], by_commit: dict[str, list[float]], sigma: float | None
) -> list[Kept]:
    """Each kept candidate against its parent: the difference of their runs' means, with
    the standard error of that difference (a side of one run takes the noise estimate)."""
    out = []
    for p in points:
        if p.status != "keep" or p.kind == "baseline" or not p.commit:
            continue
        mine = by_commit.get(p.commit, [])
        theirs = by_commit.get(p.parent or "", [])
        delta = se = None
        if mine and theirs:
            delta = statistics.fmean(mine) - statistics.fmean(theirs)
            se = _diff_se(mine, theirs, sigma)
        out.append(Kept(p.index, p.id, p.description, p.value, delta, se, len(mine), p.commit))
    return out


def _diff_se(a: list[float], b: list[float], sigma: float | None) -> float | None:
    parts = []
    for side in (a, b):
        if len(side) >= 2:
            parts.append(statistics.variance(side) / len(side))
        elif sigma is not None:
            parts.append(sigma * sigma / len(side))
        else:
            return None
    return math.sqrt(sum(parts))

"""`confirm`: the baseline and the best of a finished run, measured again on seeds the run
never used, interleaved (A B A B ...), through the same sandbox and measurement path as the
loop (the Measurer, the Workspace's worktrees). The figure no other tool reports: how much
of the claimed gain replicates.

The runs go to their own tables (``confirm_runs``, ``confirmations``): the loop's values,
its noise estimate and ``status``'s figures never mix with the replication's.
"""

from __future__ import annotations

import contextlib
import math
import signal
import statistics
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autoresearch._config import ResearchConfig
from autoresearch._errors import ConfigError, Interrupted, IsolationError, SessionError
from autoresearch._isolation import UNSAFE_FLAG
from autoresearch._layout import Layout
from autoresearch._ledger import Ledger
from autoresearch._measure import Measurer
from autoresearch._objective import Objective, objective_for_domain
from autoresearch._session import DriverLock, Session
from autoresearch._trusted import TrustedFiles
from autoresearch._types import (
    Event,
    ExperimentKind,
    ExperimentRecord,
    Measurement,
    RunKind,
    RunResult,
    Status,
)
from autoresearch._workspace import Workspace
from autoresearch.acceptance._base import make_acceptance
from autoresearch.acceptance._stats import student_t_cdf
from autoresearch.execution._sandbox import LocalSandbox, Sandbox

# Runs of each commit when none is asked for: enough for a t interval, a few minutes on CPU.
DEFAULT_CONFIRM_RUNS = 5
# The interval's coverage.
CONFIDENCE = 0.95
ARMS = ("baseline", "best")


@dataclass(frozen=True)
class Replication:
    """What ``confirm`` found. ``effect``, ``claimed``, ``ci_low`` and ``ci_high`` are
    improvements in the metric's units: positive is better, whichever the direction.
    ``p_value`` is one-sided (H1: the best is better), from a paired t-test over the
    interleaved pairs. ``confirmed``: the interval lies above zero. ``deterministic``: every
    run of each commit gave the same value, so new seeds cannot tell gain from noise."""

    metric: str
    direction: str
    baseline_commit: str
    best_commit: str
    runs: int
    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    claimed: float | None
    replicated_fraction: float | None
    confirmed: bool
    deterministic: bool
    note: str
    seeds: list[int] = field(default_factory=list)
    baseline_values: list[float] = field(default_factory=list)
    best_values: list[float] = field(default_factory=list)
    failed_runs: int = 0
    holdout: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def t_quantile(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom (bisection on the
    cdf: a few dozen evaluations, exact to 1e-10)."""
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        if student_t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10:
            break
    return (lo + hi) / 2


def replicate(
    baseline: Sequence[float],
    best: Sequence[float],
    direction: str,
    claimed: float | None,
) -> tuple[float, float, float, float, bool]:
    """Paired analysis of interleaved runs: ``(effect, ci_low, ci_high, p_value,
    deterministic)``. Pair i is the i-th run of each commit (taken one after the other), so
    slow drift of the machine's load cancels within a pair."""
    if len(baseline) != len(best) or len(best) < 2:
        raise ValueError(f"need two or more pairs of runs, got {len(baseline)} and {len(best)}")
    sign = 1.0 if direction == "maximize" else -1.0
    diffs = [sign * (b - a) for a, b in zip(baseline, best, strict=True)]
    n = len(diffs)
    effect = statistics.fmean(diffs)
    deterministic = len(set(baseline)) == 1 and len(set(best)) == 1
    sd = statistics.stdev(diffs)
    if sd == 0.0:
        p = 0.0 if effect > 0 else 1.0 if effect < 0 else 0.5
        return effect, effect, effect, p, deterministic
    se = sd / math.sqrt(n)
    half = t_quantile(1 - (1 - CONFIDENCE) / 2, n - 1) * se
    p = 1.0 - student_t_cdf(effect / se, n - 1)
    return effect, effect - half, effect + half, p, deterministic


def summarize_replication(
    metric: str,
    direction: str,
    commits: tuple[str, str],
    seeds: list[int],
    values: tuple[list[float], list[float]],
    claimed: float | None,
    failed: int = 0,
    holdout: dict[str, dict[str, float]] | None = None,
    failed_best: int = 0,
) -> Replication:
    """``failed_best``: runs of the best that failed. Their pairs are left out of the figures,
    so a best that fails whenever it would score badly (a model can judge its own run) would
    look better than it is: any such failure withholds the confirmation."""
    base_values, best_values = values
    effect, lo, hi, p, det = replicate(base_values, best_values, direction, claimed)
    fraction = effect / claimed if claimed else None
    confirmed = lo > 0 and failed_best == 0
    if failed_best:
        note = (
            f"not confirmed: {failed_best} of the best's runs failed, and the figures rest only "
            "on the runs that measured (a best that fails when it would score badly looks "
            "better than it is); see the confirm logs"
        )
    elif det:
        note = (
            "the variance is zero: every run of each commit gave the same value, so runs on "
            "new seeds cannot tell a gain from noise here; the holdout figures are the "
            "honest check"
        )
    elif confirmed:
        share = f" ({fraction:.0%} of the claimed gain)" if fraction is not None else ""
        note = f"confirmed: the best beats the baseline on fresh seeds{share}"
    elif effect > 0:
        note = "not confirmed: the gain on fresh seeds is within the noise"
    else:
        note = "not confirmed: on fresh seeds the best is no better than the baseline"
    return Replication(
        metric,
        direction,
        commits[0],
        commits[1],
        len(best_values),
        effect,
        lo,
        hi,
        p,
        claimed,
        fraction,
        confirmed and not det,
        det,
        note,
        seeds,
        list(base_values),
        list(best_values),
        failed,
        holdout or {},
    )


class _ConfirmLedger:
    """The ledger as the Measurer sees it during a confirmation: every run it records goes
    to ``confirm_runs``, and the seed it draws is the one confirm chose. Everything else
    (fixed-file hashes, prepared-data checksums) is the run's own ledger."""

    def __init__(self, ledger: Ledger, tag: str, confirmation: int) -> None:
        self._ledger = ledger
        self._tag = tag
        self._confirmation = confirmation
        self.seed = 0
        self.arm = ARMS[0]

    def run_count(self, tag: str, commit: str | None = None) -> int:
        return self.seed

    def add_run(
        self,
        tag: str,
        experiment_id: int | None,
        kind: Any,
        commit: str,
        run: RunResult,
        measurement: Measurement | None,
        status: Status | None = None,
        reason: str = "",
    ) -> None:
        final = status or run.failure or Status.KEEP
        self._ledger.add_confirm_run(
            tag,
            self._confirmation,
            self.arm,
            commit,
            run,
            measurement,
            "ok" if final is Status.KEEP else final.value,
            reason,
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)


def confirm(
    domain_dir: Path | str,
    tag: str | None = None,
    runs: int = DEFAULT_CONFIRM_RUNS,
    *,
    sandbox: Sandbox | None = None,
    objective: Objective | None = None,
    gpu_ids: str | None = None,
    unsafe_no_isolation: bool = False,
    on_event: Callable[[Event], None] | None = None,
) -> Replication:
    """Measure the baseline and the best commit of run ``tag`` (default: the latest) ``runs``
    times each, interleaved, on seeds no run of the tag used; record and return the result.
    Holds the folder's driver lock (no loop may run beside it)."""
    if runs < 2:
        raise ConfigError(f"confirm needs --runs 2 or more (got {runs}): a t interval needs pairs")
    domain = Path(domain_dir).resolve()
    layout = Layout(domain)
    if not layout.ledger.is_file():
        raise SessionError(f"{domain}: no runs recorded yet (start one with `autoresearch run`)")
    emit = on_event or (lambda e: None)
    lock = DriverLock(layout.lock)
    lock.acquire()
    ledger = Ledger(layout.ledger)
    try:
        tag = tag or ledger.latest_tag()
        info = ledger.tag_info(tag) if tag else None
        if tag is None or info is None:
            known = ", ".join(t.tag for t in ledger.tags()) or "none"
            raise SessionError(f"{domain}: no run with tag {tag!r} (tags: {known})")
        records = ledger.history(tag)
        baseline = next(
            (r for r in records if r.kind is ExperimentKind.BASELINE and r.value is not None),
            None,
        )
        keeps = [
            r
            for r in records
            if r.status is Status.KEEP and r.kind is ExperimentKind.CANDIDATE and r.commit
        ]
        if baseline is None or baseline.commit is None:
            raise SessionError(f"run {tag!r} has no measured baseline: nothing to compare")
        if not keeps:
            raise SessionError(
                f"run {tag!r} kept no candidate: the best is the baseline, nothing to confirm"
            )
        best_commit = keeps[-1].commit
        assert best_commit is not None
        trusted = TrustedFiles.for_run(domain, True, tag)
        config = _run_config(info.config, trusted, info.preset)
        objective = objective or objective_for_domain(config.objective, trusted)
        sandbox = sandbox or LocalSandbox()
        _check_isolation(sandbox, keeps, unsafe_no_isolation)
        claimed = _claimed(ledger, tag, baseline.commit, best_commit, info.direction)
        cid = ledger.new_confirmation(tag, baseline.commit, best_commit)
        view = _ConfirmLedger(ledger, tag, cid)
        ws = Workspace(domain, tag, config.editable, config.fixed, config.program)
        session = Session(tag, ws, view, lock, info.base_commit, True, [])  # type: ignore[arg-type]
        measurer = Measurer(
            session,
            config,
            objective,
            sandbox,
            make_acceptance(config.acceptance),
            domain,
            gpu_ids,
            deny_env=(config.proposer.llm.api_key_env,),
            emit=emit,
        )
        first_seed = ledger.max_seed(tag) + 1
        folder = layout.tag_dir(tag) / f"confirm-{cid}"
        commits = (baseline.commit, best_commit)
        values: dict[str, list[float]] = {a: [] for a in ARMS}
        held: dict[str, list[Mapping[str, float]]] = {a: [] for a in ARMS}
        seeds: list[int] = []
        failed = 0
        failed_best = 0
        trees = {
            a: ws.add_worktree(f"{tag}-confirm-{cid}-{a}", c)
            for a, c in zip(ARMS, commits, strict=True)
        }
        try:
            with _signals(sandbox) as stopped:
                for i in range(runs):
                    pair: dict[str, Measurement] = {}
                    for j, (arm, commit) in enumerate(zip(ARMS, commits, strict=True)):
                        if stopped.is_set():
                            raise Interrupted
                        view.seed, view.arm = first_seed + 2 * i + j, arm
                        tree = trees[arm]
                        before = ws.snapshot(ws.worktree_domain(tree))
                        emit(
                            Event(
                                "message",
                                message=f"confirm: {arm} run {i + 1} of {runs} "
                                f"(commit {commit[:7]}, seed {view.seed})",
                            )
                        )
                        out = measurer.measure(
                            None, RunKind.CALIBRATION, commit, tree, folder / arm, before
                        )
                        if out.failure is Status.INTERRUPTED:
                            raise Interrupted
                        if out.ok and out.measurement is not None:
                            pair[arm] = out.measurement
                        else:
                            failed += 1
                            failed_best += arm == "best"
                            emit(
                                Event("message", message=f"confirm: {arm} run failed: {out.reason}")
                            )
                    if len(pair) == 2:  # a pair counts only when both of its runs measured
                        seeds.append(first_seed + 2 * i)
                        for arm in ARMS:
                            values[arm].append(pair[arm].primary)
                            held[arm].append(pair[arm].holdout)
        finally:
            for tree in trees.values():
                ws.remove_worktree(tree)
        if len(values["best"]) < 2:
            raise SessionError(
                f"confirm: only {len(values['best'])} of {runs} pairs of runs measured "
                f"({failed} run(s) failed); see the logs under {folder}"
            )
        result = summarize_replication(
            info.metric,
            info.direction,
            commits,
            seeds,
            (values["baseline"], values["best"]),
            claimed,
            failed,
            {arm: _mean_holdout(held[arm]) for arm in ARMS},
            failed_best,
        )
        ledger.finish_confirmation(cid, result.as_dict())
        return result
    finally:
        ledger.close()
        lock.release()


def _run_config(saved: Mapping[str, Any], trusted: TrustedFiles, preset: str | None) -> Any:
    """The config the run measured with (as saved with the tag: preset and overrides
    applied), else the base commit's file with the run's preset."""
    try:
        return ResearchConfig.model_validate(dict(saved))
    except Exception:
        config, _ = trusted.config(preset)
        return config


def _check_isolation(sandbox: Sandbox, keeps: Sequence[ExperimentRecord], unsafe: bool) -> None:
    """The best commit is code proposers wrote: it runs isolated, as in the loop, unless every
    keep on its way from the baseline was a replay of the user's own edits (knob, scripted;
    as the ledger recorded them: `run --proposer llm` is not in the saved config) or the user
    opted out."""
    others = [r.proposer for r in keeps if r.proposer not in ("knob", "scripted")]
    if sandbox.isolated or unsafe or not others:
        return
    name = others[-1]
    why = getattr(sandbox, "isolation_problem", None) or "the sandbox does not isolate"
    raise IsolationError(
        f"the best commit was written by proposer {name!r} and candidates cannot be isolated "
        f"here: {why}. Install bubblewrap and passt, or pass {UNSAFE_FLAG} to run anyway"
    )


def _claimed(ledger: Ledger, tag: str, base: str, best: str, direction: str) -> float | None:
    """The gain the run claims: the mean of every run of the best minus the baseline's,
    as an improvement (positive is better)."""
    a, b = ledger.run_values(tag, base), ledger.run_values(tag, best)
    if not a or not b:
        return None
    sign = 1.0 if direction == "maximize" else -1.0
    return sign * (statistics.fmean(b) - statistics.fmean(a))


def _mean_holdout(rows: list[Mapping[str, float]]) -> dict[str, float]:
    names = sorted({k for r in rows for k in r})
    return {k: statistics.fmean(r[k] for r in rows if k in r) for k in names}


@contextlib.contextmanager
def _signals(sandbox: Sandbox) -> Iterator[threading.Event]:
    """Ctrl-C / SIGTERM end the current run (nothing half-measured is recorded as a result)."""
    stopped = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stopped
        return

    def handler(signum: int, frame: object) -> None:
        stopped.set()
        sandbox.cancel()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopped
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


__all__ = ["DEFAULT_CONFIRM_RUNS", "Replication", "confirm", "replicate", "t_quantile"]

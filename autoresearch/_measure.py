"""Measuring commits: sandbox runs recorded in the ledger, the acceptance policy's extra runs,
and noise calibration. The loop decides what to measure; this module knows how."""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._acceptance import Acceptance, Evidence, Verdict
from ._config import ResearchConfig
from ._objective import MetricMissing, Objective
from ._sandbox import RunSpec, Sandbox
from ._scope import glob_match
from ._session import Session, marker_prefix
from ._types import Measurement, RunResult, Status
from ._workspace import changed_files

# Chars of a failed run's log handed to the proposer as the last failure.
FAILURE_TAIL_CHARS = 4000


# Reasons that start with this are the harness's (or the user's objective's) fault, not the
# candidate's; the loop stops after a few in a row.
OBJECTIVE_ERROR = "objective error"


class Interrupted(Exception):
    """A run ended because of Ctrl-C / SIGTERM: the loop stops."""


Runs = list[tuple[RunResult, Measurement]]


class Measurer:
    """Runs commits of one session in the sandbox and records every run."""

    def __init__(
        self,
        session: Session,
        config: ResearchConfig,
        objective: Objective,
        sandbox: Sandbox,
        acceptance: Acceptance,
        domain_dir: Path,
        gpu_ids: str | None = None,
        deny_env: tuple[str | None, ...] = (),
    ) -> None:
        self.session = session
        # Variables removed from every run on top of the config's env_deny.
        self.deny_env = tuple(name for name in deny_env if name)
        self.config = config
        self.objective = objective
        self.sandbox = sandbox
        self.acceptance = acceptance
        self.domain_dir = domain_dir
        self.gpu_ids = gpu_ids
        # What the next proposal is told about the experiment before it (None: it went fine).
        self._last_failure: str | None = None
        self._fixed_hashes: dict[str, str] | None = None
        self._used: set[Path] = set()

    @property
    def last_failure(self) -> str | None:
        return self._last_failure

    @last_failure.setter
    def last_failure(self, value: str | None) -> None:
        self._last_failure = value

    def _require_session(self) -> Session:
        return self.session

    def measure(
        self,
        exp: int | None,
        kind: str,
        commit: str,
        worktree: Path,
        folder: Path,
        before: dict[str, str],
    ) -> tuple[Status | None, str, list[tuple[RunResult, Measurement]]]:
        """One sandbox run of ``commit`` in ``worktree``, recorded in the runs table. Returns
        (failure status or None, reason, [(run, measurement)])."""
        s = self._require_session()
        n = len(s.ledger.run_values(s.tag, commit))
        suffix = "" if n == 0 else f"-{n + 1}"
        domain = s.workspace.worktree_domain(worktree)
        if worktree in self._used:
            # A repeat starts from the committed files alone: outputs of the run before it
            # (a metrics file, a checkpoint) must not stand in for its own.
            s.workspace.reset_worktree(worktree)
        self._used.add(worktree)
        # Candidate commits only ever change editable files, so every worktree of the session
        # must hold the same fixed files as the first one measured.
        fixed_now = {k: v for k, v in before.items() if k not in self._editable_in(before)}
        if self._fixed_hashes is None:
            self._fixed_hashes = fixed_now
        if fixed_now != self._fixed_hashes:
            bad = changed_files(self._fixed_hashes, fixed_now)
            return Status.INVALID, f"fixed files differ from the baseline: {', '.join(bad)}", []
        spec = RunSpec(
            workdir=domain,
            command=self.config.command,
            log_path=folder / f"run{suffix}.log",
            time_budget_s=self.config.time_budget_s,
            timeout_s=self.config.hard_timeout_s,
            seed=n,
            eval_command=self.config.eval_command,
            eval_log_path=folder / f"eval{suffix}.log" if self.config.eval_command else None,
            eval_timeout_s=self.config.eval_timeout_s,
            memory_limit_mb=self.config.memory_limit_mb,
            log_limit_mb=self.config.log_limit_mb,
            network=self.config.network,
            env=self.config.env,
            env_allow=tuple(self.config.env_allow),
            env_deny=(*self.config.env_deny, *self.deny_env),
            marker_prefix=marker_prefix(self.domain_dir),
            gpu_ids=self.gpu_ids,
        )
        run = self.sandbox.run(spec)
        after = s.workspace.snapshot(domain)
        # Files the run changed or deleted; new files it wrote (outputs) do not matter.
        changed = [k for k in before if before[k] != after.get(k)]
        if run.failure is None and changed:
            s.ledger.add_run(s.tag, exp, kind, commit, run, None, Status.INVALID)
            return Status.INVALID, f"files changed during the run: {', '.join(changed)}", []
        if run.failure is not None:
            s.ledger.add_run(s.tag, exp, kind, commit, run, None)
            self._last_failure = (
                f"{run.failure.value}: {run.reason}\n{run.log_tail(FAILURE_TAIL_CHARS)}"
            )
            return run.failure, run.reason, []
        try:
            m = self.objective.measure(run)
        except MetricMissing as e:
            s.ledger.add_run(s.tag, exp, kind, commit, run, None, Status.CRASH, str(e))
            self._last_failure = f"crash: {e}\n{run.log_tail(FAILURE_TAIL_CHARS)}"
            return Status.CRASH, f"no metric: {e}", []
        except Exception as e:  # a bug in an objective fails this run, not the whole loop
            why = f"{OBJECTIVE_ERROR}: {type(e).__name__}: {e}"
            s.ledger.add_run(s.tag, exp, kind, commit, run, None, Status.CRASH, why)
            self._last_failure = f"crash: {why}"
            return Status.CRASH, why, []
        s.ledger.add_run(s.tag, exp, kind, commit, run, m)
        write_json(
            folder / f"measurement{suffix}.json",
            {
                "primary": m.primary,
                "secondary": dict(m.secondary),
                "holdout": dict(m.holdout),
                "seed": run.seed,
                "wall_s": run.wall_s,
                "peak_memory_mb": run.peak_memory_mb,
            },
        )
        return None, "", [(run, m)]

    def decide(
        self,
        exp: int,
        commit: str,
        worktree: Path,
        folder: Path,
        before: dict[str, str],
        runs: list[tuple[RunResult, Measurement]],
        parent: str,
    ) -> tuple[Verdict, str]:
        """Ask the acceptance policy; run what it asks for (interleaved) until it decides."""
        s = self._require_session()
        values = [m.primary for _, m in runs]
        inc_tree: Path | None = None
        try:
            while True:
                evidence = Evidence(
                    tuple(values),
                    tuple(self.incumbent_values()),
                    self.config.objective.direction,
                    self.noise_sigma(),
                )
                decision = self.acceptance.decide(evidence)
                if decision.verdict is not Verdict.MEASURE:
                    return decision.verdict, decision.reason
                if len(values) >= self.acceptance.max_runs_per_candidate:
                    return Verdict.DISCARD, f"undecided after {len(values)} runs: {decision.reason}"
                for i in range(max(decision.more_candidate, decision.more_incumbent)):
                    if i < decision.more_incumbent:
                        if inc_tree is None:
                            inc_tree = s.workspace.add_worktree(f"{s.tag}-{exp}-incumbent", parent)
                        inc_before = s.workspace.snapshot(s.workspace.worktree_domain(inc_tree))
                        st, why, _ = self.measure(
                            exp, "re-measure", parent, inc_tree, folder, inc_before
                        )
                        if st is Status.INTERRUPTED:
                            raise Interrupted
                    if i < decision.more_candidate:
                        st, why, more = self.measure(
                            exp, "re-measure", commit, worktree, folder, before
                        )
                        if st is Status.INTERRUPTED:
                            raise Interrupted
                        if st is not None:
                            return Verdict.DISCARD, f"a repeat run failed ({st.value}: {why})"
                        runs.extend(more)
                        values.append(more[0][1].primary)
        finally:
            if inc_tree is not None:
                s.workspace.remove_worktree(inc_tree)

    def calibrate(self, done: int) -> str | None:
        """Extra runs of the incumbent for a noise estimate, when the policy asks for them."""
        n = self.acceptance.calibration_runs(done)
        if n <= 0:
            return None
        s = self._require_session()
        incumbent = self.incumbent()
        folder = s.workspace.state_dir / "runs" / s.tag / f"calibration-{done}"
        folder.mkdir(parents=True, exist_ok=True)
        worktree = s.workspace.add_worktree(f"{s.tag}-calibration", incumbent)
        try:
            before = s.workspace.snapshot(s.workspace.worktree_domain(worktree))
            for _ in range(n):
                st, _, _ = self.measure(None, "calibration", incumbent, worktree, folder, before)
                if st is Status.INTERRUPTED:
                    raise Interrupted
        finally:
            s.workspace.remove_worktree(worktree)
        sigma = self.noise_sigma()
        s.ledger.set_noise_sigma(s.tag, sigma)
        if sigma is None:
            return f"calibration: {n} run(s), too few values for sigma"
        return f"calibrated noise from {n} run(s) of the incumbent: sigma={sigma:.6g}"

    def noise_sigma(self) -> float | None:
        """Pooled standard deviation of one run, from every commit measured more than once
        (calibration runs of the incumbent, repeats of candidates), None until there are any."""
        s = self._require_session()
        num, dof = 0.0, 0
        for vals in s.ledger.values_by_commit(s.tag).values():
            if len(vals) >= 2:
                num += statistics.variance(vals) * (len(vals) - 1)
                dof += len(vals) - 1
        return (num / dof) ** 0.5 if dof > 0 else None

    def _editable_in(self, snapshot: dict[str, str]) -> set[str]:
        return {k for k in snapshot if glob_match(k, self.config.editable)}

    def incumbent(self) -> str:
        s = self._require_session()
        commit = s.workspace.branch_commit()
        assert commit is not None
        return commit

    def incumbent_values(self) -> list[float]:
        s = self._require_session()
        return s.ledger.run_values(s.tag, self.incumbent())

    def best_value(self) -> float | None:
        values = self.incumbent_values()
        return statistics.fmean(values) if values else None

    def folder(self, exp: int) -> Path:
        s = self._require_session()
        folder = s.workspace.state_dir / "runs" / s.tag / str(exp)
        folder.mkdir(parents=True, exist_ok=True)
        return folder


def content_hash(snapshot: dict[str, str], preset: str | None) -> str:
    h = hashlib.sha256()
    for path in sorted(snapshot):
        h.update(f"{path}\0{snapshot[path]}\n".encode())
    h.update(f"preset\0{preset}".encode())
    return h.hexdigest()


def summarize(measurements: list[Measurement]) -> dict[str, Any]:
    """Recorded values of a candidate: the mean of its runs, never its best run."""

    def mean_of(key: str) -> dict[str, float]:
        names = {n for m in measurements for n in getattr(m, key)}
        return {
            n: statistics.fmean(getattr(m, key)[n] for m in measurements if n in getattr(m, key))
            for n in sorted(names)
        }

    return {
        "value": statistics.fmean(m.primary for m in measurements),
        "secondary": mean_of("secondary"),
        "holdout": mean_of("holdout"),
    }


def memory_gb(runs: Iterable[RunResult]) -> float:
    return max((r.peak_memory_mb for r in runs), default=0.0) / 1024


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)

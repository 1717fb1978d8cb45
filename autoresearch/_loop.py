"""Loop: one experiment at a time — propose, apply, check scope, run, measure, decide, gate,
record — until a budget ends. Knows no domain."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ._acceptance import Acceptance, Verdict, make_acceptance
from ._budget import NO_PROPOSAL, PROPOSER_BUG, Budget, Streaks
from ._config import ResearchConfig, load_config
from ._context import build_context, run_summary
from ._measure import OBJECTIVE_ERROR, Interrupted, Measurer, content_hash, memory_gb, summarize
from ._objective import Objective, objective_for_domain
from ._proposer import (
    BudgetExhausted,
    ProposalError,
    Proposer,
    ProposerSettings,
    make_proposer,
)
from ._sandbox import LocalSandbox, Sandbox
from ._scope import ScopeError
from ._session import LEDGER_NAME, Session, open_session
from ._types import (
    BaselineFailed,
    Candidate,
    Context,
    Event,
    ExperimentRecord,
    GateResult,
    RunSummary,
    Status,
)
from ._workspace import RESULTS_NAME

_FAILURES = (Status.CRASH, Status.TIMEOUT, Status.OOM, Status.INVALID, Status.GATE_FAILED)
# Options handed to the proposer (ProposerSettings.options).
_PROPOSER_OPTIONS: tuple[str, ...] = ("script", "model", "base_url", "local_model")
_PROPOSER_OPTIONS += ("api_key_env", "max_cost_usd", "max_tokens")
# Option names Loop.from_dir takes beside config fields.
_OPTIONS = frozenset(_PROPOSER_OPTIONS) | {"preset", "tag", "resume", "proposer", "acceptance"}
_OPTIONS |= {"gpu_ids", "on_event", "objective", "sandbox"}


class _BudgetStop(Exception):
    """The proposer says the next proposal would exceed the spend budget."""


class Loop:
    """A research loop on one domain folder. See ``run``."""

    def __init__(
        self,
        domain_dir: Path | str,
        config: ResearchConfig,
        *,
        preset: str | None = None,
        tag: str | None = None,
        resume: bool = False,
        proposer: Proposer | str | None = None,
        objective: Objective | None = None,
        sandbox: Sandbox | None = None,
        acceptance: Acceptance | None = None,
        options: dict[str, Any] | None = None,
        max_cost_usd: float | None = None,
        max_tokens: int | None = None,
        gpu_ids: str | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.domain_dir = Path(domain_dir).resolve()
        self.config = config
        self.preset = preset
        self.tag = tag
        self.resume = resume
        self._proposer_arg = proposer
        self.objective = objective or objective_for_domain(config.objective, self.domain_dir)
        self.sandbox = sandbox or LocalSandbox()
        self.acceptance = acceptance or make_acceptance(config.acceptance)
        self.options = dict(options or {})
        # The proposer's own hard limits, whichever way the loop was built.
        self.options.setdefault("max_cost_usd", max_cost_usd)
        self.options.setdefault("max_tokens", max_tokens)
        self.max_cost_usd = max_cost_usd
        self.max_tokens = max_tokens
        self.gpu_ids = gpu_ids
        self.on_event = on_event or (lambda e: None)
        self._session: Session | None = None
        self._interrupted = threading.Event()
        self._in_proposer = False
        self._measurer: Measurer | None = None
        self._started = time.monotonic()

    @classmethod
    def from_dir(cls, path: Path | str, **overrides: Any) -> Loop:
        """A loop on the folder holding ``autoresearch.toml``. Keyword arguments are options
        (``preset``, ``tag``, ``resume``, ``proposer`` (a name or a Proposer), ``script``,
        ``acceptance`` (a policy name or an Acceptance), ``objective`` (an Objective), ``sandbox``,
        ``model``, ``base_url``, ``local_model``, ``max_cost_usd``, ``max_tokens``, ``gpu_ids``,
        ``on_event``) or config fields (``time_budget_s=5``; nested: ``acceptance__z=3``)."""
        domain_dir = Path(path).resolve()
        opts = {k: overrides.pop(k) for k in list(overrides) if k in _OPTIONS}
        dotted = {k.replace("__", "."): v for k, v in overrides.items()}
        acceptance = opts.get("acceptance")
        if isinstance(acceptance, str):
            dotted["acceptance.policy"] = acceptance
        config, preset = load_config(domain_dir, opts.get("preset"), dotted)
        proposer_opts = {k: opts.get(k) for k in _PROPOSER_OPTIONS}
        return cls(
            domain_dir,
            config,
            preset=preset,
            tag=opts.get("tag"),
            resume=bool(opts.get("resume")),
            proposer=opts.get("proposer"),
            options=proposer_opts,
            max_cost_usd=opts.get("max_cost_usd"),
            max_tokens=opts.get("max_tokens"),
            gpu_ids=opts.get("gpu_ids"),
            on_event=opts.get("on_event"),
            objective=opts.get("objective"),
            sandbox=opts.get("sandbox"),
            acceptance=acceptance if isinstance(acceptance, Acceptance) else None,
        )

    # -- public ------------------------------------------------------------------------------
    def run(self, max_experiments: int | None = None, max_hours: float | None = None) -> RunSummary:
        """Run experiments until ``max_experiments`` (counting the baseline) have been recorded
        in this session, ``max_hours`` have passed, the proposer has nothing more, or Ctrl-C.
        The first experiment of a new run is the unmodified baseline."""
        start = self._started = time.monotonic()
        budget = Budget(max_experiments, max_hours, self.max_cost_usd, self.max_tokens)
        stopped = "done"
        session = self._open()
        proposer: Proposer | None = None
        done = 0
        try:
            with self._signals():
                # Built first: a missing key or model fails now, not after a long baseline.
                proposer = make_proposer(self._proposer_arg, self._proposer_settings())
                if self._m.incumbent_values() == []:
                    self._baseline()
                    done += 1
                for warning in self.sandbox.warnings:  # limits it could not enforce here
                    self.on_event(Event("message", message=f"sandbox: {warning}"))
                proposer.restore(session.ledger.records(session.tag))
                streaks = Streaks()
                durations: list[float] = []
                while True:
                    if self._interrupted.is_set():
                        raise Interrupted
                    stop = budget.reason(
                        done,
                        time.monotonic() - start,
                        durations,
                        *session.ledger.spend(session.tag),
                        session.ledger.count_candidates(session.tag),
                    )
                    if stop:
                        stopped = stop
                        break
                    # Policies count candidates of the whole run (resumes included), not the
                    # baseline: 0 means "before the first candidate".
                    candidates = session.ledger.count_candidates(session.tag)
                    note = self._m.calibrate(candidates)
                    if note:
                        self.on_event(
                            Event("calibration", message=note, best_value=self._m.best_value())
                        )
                    t0 = time.monotonic()
                    record = self._experiment(proposer)
                    if record is None:
                        stopped = "the proposer has no more candidates"
                        break
                    durations.append(time.monotonic() - t0)
                    done += 1
                    stop, wait_s = streaks.after(record.reason)
                    if stop:
                        stopped = stop
                        break
                    if wait_s and self._interrupted.wait(wait_s):
                        raise Interrupted
                    if record.status is Status.INTERRUPTED:
                        raise Interrupted
        except (Interrupted, KeyboardInterrupt):
            stopped = "interrupted"
        except _BudgetStop as e:
            stopped = str(e)
        finally:
            if proposer is not None:
                with contextlib.suppress(Exception):
                    proposer.close()
            summary = run_summary(session, self._m.best_value(), stopped)
            session.ledger.set_tag_state(
                session.tag, "interrupted" if summary.interrupted else "stopped"
            )
            session.close()
            self._session = None
        return summary

    def baseline(self) -> ExperimentRecord:
        """Open a session, run only the unmodified baseline, and return its record."""
        session = self._open()
        state = "stopped"
        try:
            with self._signals():
                return self._baseline()
        except (Interrupted, KeyboardInterrupt):
            state = "interrupted"
            return session.ledger.records(session.tag)[-1]
        finally:
            session.ledger.set_tag_state(session.tag, state)
            session.close()
            self._session = None

    def context(self) -> Context:
        """What a proposer is shown now (no holdout values, by construction)."""
        s = self._require_session()
        return build_context(
            s, self.config, self.domain_dir, self._m.incumbent(), self._m.last_failure
        )

    # -- one experiment ----------------------------------------------------------------------
    def _experiment(self, proposer: Proposer) -> ExperimentRecord | None:
        s = self._require_session()
        ledger, ws = s.ledger, s.workspace
        parent = self._m.incumbent()
        t0 = time.monotonic()
        context = self.context()
        # The failure shown to a proposer is that of the experiment just before this one.
        self._m.last_failure = None
        try:
            self._in_proposer = True
            candidate = proposer.propose(context)
        except (KeyboardInterrupt, Interrupted):
            raise
        except Exception as e:  # a proposer failure never kills the loop
            tokens, cost = getattr(e, "tokens", 0), getattr(e, "cost_usd", 0.0)
            if isinstance(e, BudgetExhausted):
                if tokens or cost:  # a row only for what was really spent
                    spent = Candidate("budget reached", tokens=tokens, cost_usd=cost)
                    self._record_invalid(proposer, spent, parent, f"{NO_PROPOSAL}: {e}")
                raise _BudgetStop(str(e)) from None
            # What the failed attempt spent is recorded like any other proposal's spend.
            expected = isinstance(e, ProposalError)
            prefix = NO_PROPOSAL if expected else PROPOSER_BUG
            candidate = Candidate(f"{prefix}: {type(e).__name__}", tokens=tokens, cost_usd=cost)
            detail = str(e) if expected else f"{type(e).__name__}: {e}"
            return self._record_invalid(proposer, candidate, parent, f"{prefix}: {detail}")
        finally:
            self._in_proposer = False
        if candidate is None:
            return None
        exp = ledger.begin(
            s.tag,
            parent,
            candidate.description,
            proposer.name,
            candidate.hypothesis,
            candidate.meta,
            candidate.tokens,
            candidate.cost_usd,
            time.monotonic() - t0,
        )
        folder = self._m.folder(exp)
        worktree = ws.add_worktree(f"{s.tag}-{exp}", parent)
        fields: dict[str, Any] = {}
        try:
            try:
                changed, created = ws.apply(worktree, candidate.edits)
            except ScopeError as e:
                return self._finish(proposer, candidate, exp, Status.INVALID, str(e))
            commit = ws.commit(worktree, changed, _commit_message(candidate, exp), exp, created)
            diff = ws.diff(parent, commit)
            (folder / "diff.patch").write_text(diff, encoding="utf-8")
            domain = ws.worktree_domain(worktree)
            before = ws.snapshot(domain)
            digest = content_hash(before, self.preset)
            fields.update(commit_sha=commit, diff=diff, content_hash=digest)
            ledger.update(exp, **fields)
            twin = ledger.find_measured(s.tag, digest)
            if twin is not None:
                return self._finish(
                    proposer,
                    candidate,
                    exp,
                    Status.DISCARD,
                    f"identical to experiment {twin.id}; its value is reused",
                    value=twin.value,
                    secondary=twin.secondary,
                    holdout=twin.holdout,
                )
            status, reason, runs = self._m.measure(
                exp, "candidate", commit, worktree, folder, before
            )
            fields.update(n_runs=len(runs), log_path=str(folder / "run.log"))
            if status is not None:
                return self._finish(proposer, candidate, exp, status, reason, **fields)
            # decide() appends the repeat runs it asked for to `runs`.
            verdict, reason = self._m.decide(exp, commit, worktree, folder, before, runs, parent)
            last_run, _ = runs[-1]
            fields.update(
                summarize([m for _, m in runs]),
                n_runs=len(runs),
                memory_gb=memory_gb(r for r, _ in runs),
            )
            if verdict is Verdict.KEEP:
                try:
                    gate = self.objective.gate(last_run)
                except Exception as e:  # a gate that cannot check does not pass
                    gate = GateResult(False, f"{OBJECTIVE_ERROR}: {type(e).__name__}: {e}")
                if not gate.passed:
                    return self._finish(
                        proposer,
                        candidate,
                        exp,
                        Status.GATE_FAILED,
                        f"gate: {gate.reason}",
                        **fields,
                    )
                return self._finish(proposer, candidate, exp, Status.KEEP, reason, **fields)
            return self._finish(proposer, candidate, exp, Status.DISCARD, reason, **fields)
        finally:
            ws.remove_worktree(worktree)

    def _finish(
        self,
        proposer: Proposer | None,
        candidate: Candidate,
        exp: int,
        status: Status,
        reason: str,
        **fields: Any,
    ) -> ExperimentRecord:
        """Write the row, then (for a keep) move the branch, then regenerate results.tsv."""
        s = self._require_session()
        s.ledger.finish(exp, status, reason, **fields)
        record = s.ledger.record(exp)
        if status is Status.KEEP:
            assert record.commit is not None
            s.workspace.move_branch(record.commit, record.parent_commit)
        elif status in _FAILURES and self._m.last_failure is None:
            self._m.last_failure = f"{status.value}: {reason}"
        self._write_results()
        if proposer is not None:
            with contextlib.suppress(Exception):
                proposer.observe(candidate, record)
        self.on_event(
            Event(
                "experiment",
                record=record,
                best_value=self._m.best_value(),
                elapsed_s=time.monotonic() - self._started,
            )
        )
        return record

    def _record_invalid(
        self, proposer: Proposer, candidate: Candidate, parent: str, reason: str
    ) -> ExperimentRecord:
        s = self._require_session()
        exp = s.ledger.begin(
            s.tag,
            parent,
            candidate.description,
            proposer.name,
            tokens=candidate.tokens,
            cost_usd=candidate.cost_usd,
        )
        return self._finish(None, candidate, exp, Status.INVALID, reason)

    # -- baseline and noise ------------------------------------------------------------------
    def _baseline(self) -> ExperimentRecord:
        s = self._require_session()
        base = self._m.incumbent()
        exp = s.ledger.begin(
            s.tag, base, "baseline", "baseline", "the unmodified target, measured first"
        )
        folder = self._m.folder(exp)
        worktree = s.workspace.add_worktree(f"{s.tag}-{exp}", base)
        try:
            before = s.workspace.snapshot(s.workspace.worktree_domain(worktree))
            status, reason, runs = self._m.measure(exp, "baseline", base, worktree, folder, before)
        finally:
            s.workspace.remove_worktree(worktree)
        cand, log = Candidate("baseline"), folder / "run.log"
        if status is not None:
            self._finish(None, cand, exp, status, f"baseline failed: {reason}", commit_sha=base)
            if status is Status.INTERRUPTED:
                raise Interrupted
            raise BaselineFailed(
                f"the baseline run failed ({status.value}: {reason}); nothing can be compared "
                f"to it. See {log}"
            )
        fields = summarize([m for _, m in runs])
        fields.update(commit_sha=base, n_runs=1, log_path=str(log))
        fields.update(memory_gb=memory_gb(r for r, _ in runs))
        return self._finish(None, cand, exp, Status.KEEP, "baseline", **fields)

    # -- helpers -----------------------------------------------------------------------------
    def _open(self) -> Session:
        dump = self.config.model_dump(mode="json", by_alias=True)
        self._session = open_session(
            self.domain_dir, self.config, dump, self.preset, self.tag, self.resume
        )
        self.tag = self._session.tag
        for m in self._session.messages:
            self.on_event(Event("message", message=m))
        self._measurer = Measurer(
            self._session,
            self.config,
            self.objective,
            self.sandbox,
            self.acceptance,
            self.domain_dir,
            self.gpu_ids,
            # The proposer's API key never reaches a run, whatever its variable is called.
            deny_env=(self.config.proposer.llm.api_key_env, self.options.get("api_key_env")),
        )
        return self._session

    @property
    def _m(self) -> Measurer:
        if self._measurer is None:
            raise RuntimeError("no session is open: call run() or baseline()")
        return self._measurer

    def _require_session(self) -> Session:
        if self._session is None:
            raise RuntimeError("no session is open: call run() or baseline()")
        return self._session

    def _proposer_settings(self) -> ProposerSettings:
        s = self._require_session()
        state = s.workspace.state_dir
        return ProposerSettings(
            self.config, self.domain_dir, state, state / LEDGER_NAME, s.tag, self.options
        )

    def _write_results(self) -> None:
        s = self._require_session()
        s.ledger.write_results_tsv(
            self.domain_dir / RESULTS_NAME, self.config.objective.metric or "value"
        )

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """Ctrl-C / SIGTERM: end the running experiment (recorded ``interrupted``) and stop."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: object) -> None:
            self._interrupted.set()
            self.sandbox.cancel()
            if self._in_proposer:
                raise KeyboardInterrupt

        old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)


def _commit_message(candidate: Candidate, exp: int) -> str:
    body = f"\n\n{candidate.hypothesis}" if candidate.hypothesis else ""
    return f"{candidate.description}{body}\n\nautoresearch-experiment: {exp}"


__all__ = ["Loop"]

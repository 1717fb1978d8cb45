"""Loop: one experiment at a time — propose, apply, check scope, run, measure, decide, gate,
record — until a budget ends. Knows no domain."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from autoresearch._budget import Budget, Streaks
from autoresearch._config import ResearchConfig
from autoresearch._context import run_summary
from autoresearch._errors import Interrupted
from autoresearch._experiment import BudgetStop, Pipeline
from autoresearch._isolation import isolation_warnings
from autoresearch._measure import Measurer, metric_name
from autoresearch._objective import Objective, objective_for_domain
from autoresearch._preflight import check_startup
from autoresearch._session import Session, open_session
from autoresearch._tracking import MlflowTracker, check_tracking, make_tracker
from autoresearch._trusted import TrustedFiles
from autoresearch._types import Context, Event, ExperimentRecord, RunSummary, Status
from autoresearch.acceptance._base import Acceptance, make_acceptance
from autoresearch.execution._sandbox import LocalSandbox, Sandbox
from autoresearch.proposers._base import Proposer, ProposerOptions, ProposerSettings, make_proposer

# Progress goes to this logger (INFO), whether or not ``on_event`` is given.
log = logging.getLogger("autoresearch")
LOG_FORMAT = "%(asctime)s autoresearch: %(message)s"


class Loop:
    """A research loop on one domain folder.

    Every plug-in (proposer, objective, acceptance policy, sandbox) is built and validated
    here, before ``run`` creates anything: a bad name, key or model raises ConfigError and
    leaves no tag, branch, ledger row or state folder behind. So do a knob whose constant is
    not in its file, an ``editable`` pattern that matches no file, and a missing program.md
    for a proposer that reads it. A run that never measured anything (a failed baseline)
    leaves no research branch behind.

    Progress: every event (each run's start, "repeat k of n", each finished experiment,
    calibrations, messages) is logged at INFO on the ``"autoresearch"`` logger, and passed
    to ``on_event`` when one is given. When the program configured no logging, ``run`` and
    ``baseline`` print those lines to stderr; to silence them::

        logging.getLogger("autoresearch").setLevel(logging.WARNING)
    """

    def __init__(
        self,
        domain_dir: Path | str,
        config: ResearchConfig | None = None,
        *,
        preset: str | None = None,
        tag: str | None = None,
        resume: bool = False,
        proposer: Proposer | str | None = None,
        proposer_options: ProposerOptions | None = None,
        objective: Objective | None = None,
        sandbox: Sandbox | None = None,
        acceptance: Acceptance | str | None = None,
        gpu_ids: str | None = None,
        on_event: Callable[[Event], None] | None = None,
        unsafe_no_isolation: bool = False,
        _trusted: TrustedFiles | None = None,
    ) -> None:
        self.domain_dir = Path(domain_dir).resolve()
        # The config, program and objective code come from the run's base commit (a resume's
        # recorded one), read once here: never from the checkout a candidate may write.
        self.trusted = _trusted or TrustedFiles.for_run(self.domain_dir, resume, tag)
        if config is None:
            config, preset = self.trusted.config(preset)
        self.config = config
        self.preset = preset
        self.tag = tag
        self.resume = resume
        self.proposer_options = proposer_options or ProposerOptions()
        self.objective = objective or objective_for_domain(config.objective, self.trusted)
        self.program = self.trusted.program(config)
        self.sandbox = sandbox or LocalSandbox()
        if isinstance(acceptance, str):
            acceptance = make_acceptance(
                config.acceptance.model_copy(update={"policy": acceptance})
            )
        self.acceptance = acceptance or make_acceptance(config.acceptance)
        # None only when nothing names one: `baseline` needs none, and `run` says so first.
        self.proposer: Proposer | None = None
        if proposer is not None or config.proposer.name or config.proposer.knobs:
            self.proposer = make_proposer(proposer, config, self.domain_dir, self.proposer_options)
        check_startup(self.trusted, config, self.proposer)
        check_tracking(config)
        self._tracker: MlflowTracker | None = None
        # Code the user did not write needs namespaces (or an explicit, informed opt-out).
        self.isolation_notes = (
            isolation_warnings(self.sandbox, self.proposer, unsafe_no_isolation=unsafe_no_isolation)
            if self.proposer is not None
            else []
        )
        self.gpu_ids = gpu_ids
        self._user_on_event = on_event
        self._session: Session | None = None
        self._pipeline: Pipeline | None = None
        self._interrupted = threading.Event()
        self._in_proposer = False

    @classmethod
    def from_dir(
        cls,
        path: Path | str,
        *,
        preset: str | None = None,
        tag: str | None = None,
        resume: bool = False,
        proposer: Proposer | str | None = None,
        acceptance: Acceptance | str | None = None,
        objective: Objective | None = None,
        sandbox: Sandbox | None = None,
        script: str | None = None,
        model: str | None = None,
        base_url: str | None = None,
        local_model: str | None = None,
        api_key_env: str | None = None,
        gpu_ids: str | None = None,
        on_event: Callable[[Event], None] | None = None,
        unsafe_no_isolation: bool = False,
        overrides: Mapping[str, Any] | None = None,
    ) -> Loop:
        """A loop on the folder holding ``autoresearch.toml``, with its ``preset`` merged and
        ``overrides`` applied: config fields by name, dotted for nested ones
        (``{"time_budget_s": 5, "acceptance.z": 3}``). The other arguments are the loop's
        own options; ``script``, ``model``, ``base_url``, ``local_model`` and ``api_key_env``
        go to the proposer (as ``--script``, ``--model``, ... do on the command line)."""
        domain_dir = Path(path).resolve()
        trusted = TrustedFiles.for_run(domain_dir, resume, tag)
        config, preset = trusted.config(preset, dict(overrides or {}))
        options = ProposerOptions(script, model, base_url, local_model, api_key_env)
        return cls(
            domain_dir,
            config,
            preset=preset,
            tag=tag,
            resume=resume,
            proposer=proposer,
            proposer_options=options,
            objective=objective,
            sandbox=sandbox,
            acceptance=acceptance,
            gpu_ids=gpu_ids,
            on_event=on_event,
            unsafe_no_isolation=unsafe_no_isolation,
            _trusted=trusted,
        )

    # -- public ------------------------------------------------------------------------------
    def run(
        self,
        max_experiments: int | None = None,
        max_hours: float | None = None,
        max_cost_usd: float | None = None,
        max_tokens: int | None = None,
    ) -> RunSummary:
        """Run experiments until ``max_experiments`` (counting the baseline) have been recorded
        in this session, ``max_hours`` have passed, the proposer's spend would pass
        ``max_cost_usd`` or ``max_tokens`` (run-wide, resumes included), the proposer has
        nothing more, or Ctrl-C. The first experiment of a new run is the unmodified baseline."""
        budget = Budget(max_experiments, max_hours, max_cost_usd, max_tokens)
        proposer = self.proposer or make_proposer(None, self.config, self.domain_dir)
        _default_logging()
        proposer.check_budget(max_cost_usd, max_tokens)  # before anything is created
        start = time.monotonic()
        stopped = "done"
        session = self._open(start)
        p = self._p
        done = 0
        try:
            with self._signals():
                proposer.start(self._proposer_settings(max_cost_usd, max_tokens))
                if p.m.incumbent_values() == []:
                    p.baseline()
                    done += 1
                for warning in [*self.isolation_notes, *self.sandbox.warnings]:
                    # what runs unisolated, and limits it could not enforce here
                    self.on_event(Event("message", message=f"sandbox: {warning}"))
                proposer.restore(session.ledger.history(session.tag))
                streaks = Streaks()
                durations: list[float] = []
                while True:
                    if self._interrupted.is_set():
                        raise Interrupted
                    # Policies count candidates of the whole run (resumes included), not the
                    # baseline: 0 means "before the first candidate".
                    candidates = session.ledger.count_candidates(session.tag)
                    stop = budget.reason(
                        done,
                        time.monotonic() - start,
                        durations,
                        *session.ledger.spend(session.tag),
                        candidates,
                    )
                    if stop:
                        stopped = stop
                        break
                    note = p.m.calibrate(candidates)
                    if note:
                        self.on_event(
                            Event("calibration", message=note, best_value=p.m.best_value())
                        )
                    t0 = time.monotonic()
                    record = p.candidate(proposer, self._set_in_proposer)
                    if record is None:
                        stopped = "the proposer has no more candidates"
                        break
                    durations.append(time.monotonic() - t0)
                    done += 1
                    stop, wait_s = streaks.after(record)
                    if stop:
                        stopped = stop
                        break
                    if wait_s and self._interrupted.wait(wait_s):
                        raise Interrupted
                    if record.status is Status.INTERRUPTED:
                        raise Interrupted
        except (Interrupted, KeyboardInterrupt):
            stopped = "interrupted"
        except BudgetStop as e:
            stopped = str(e)
        finally:
            with contextlib.suppress(Exception):
                proposer.close()
            summary = run_summary(session, p.m.best_value(), stopped)
            self._close("interrupted" if summary.interrupted else "stopped")
        return summary

    def baseline(self) -> ExperimentRecord:
        """Open a session, run only the unmodified baseline, and return its record."""
        _default_logging()
        session = self._open(time.monotonic())
        state = "stopped"
        try:
            with self._signals():
                return self._p.baseline()
        except (Interrupted, KeyboardInterrupt):
            state = "interrupted"
            return session.ledger.history(session.tag)[-1]
        finally:
            self._close(state)

    def context(self) -> Context:
        """What a proposer is shown now (no holdout values, by construction)."""
        return self._p.context()

    # -- helpers -----------------------------------------------------------------------------
    def _open(self, started: float) -> Session:
        dump = self.config.model_dump(mode="json", by_alias=True)
        session = open_session(
            self.domain_dir,
            self.config,
            dump,
            self.preset,
            self.tag,
            self.resume,
            self.trusted,
            metric_name(self.config, self.objective),
        )
        self._session = session
        self.tag = session.tag
        for m in session.messages:
            self.on_event(Event("message", message=m))
        measurer = Measurer(
            session,
            self.config,
            self.objective,
            self.sandbox,
            self.acceptance,
            self.domain_dir,
            self.gpu_ids,
            # The proposer's API key never reaches a run, whatever its variable is called.
            deny_env=(self.config.proposer.llm.api_key_env, self.proposer_options.api_key_env),
            emit=self.on_event,
        )
        self._tracker = make_tracker(
            self.config,
            self.domain_dir,
            session.tag,
            session.ledger,
            metric_name(self.config, self.objective),
            self.on_event,
        )
        self._pipeline = Pipeline(
            session,
            self.config,
            self.program,
            self.objective,
            measurer,
            self.preset,
            self.on_event,
            started,
        )
        return session

    def on_event(self, event: Event) -> None:
        """Log ``event`` and pass it to the ``on_event`` callback, if any."""
        log.info("%s", _log_line(event))
        if event.kind == "experiment" and event.record and self._tracker is not None:
            self._tracker.experiment_done(event.record)  # never raises: it warns once
        if self._user_on_event is not None:
            self._user_on_event(event)

    def _close(self, state: str) -> None:
        if self._session is not None:
            s = self._session
            try:
                if s.drop_unmeasured_branch():
                    state = "failed" if state == "stopped" else state
                    self.on_event(
                        Event(
                            "message",
                            message=f"nothing was measured: removed branch {s.workspace.branch}",
                        )
                    )
            finally:
                s.ledger.set_tag_state(s.tag, state)
                s.close()
        self._session = None
        self._pipeline = None

    @property
    def _p(self) -> Pipeline:
        if self._pipeline is None:
            raise RuntimeError("no session is open: call run() or baseline()")
        return self._pipeline

    def _set_in_proposer(self, value: bool) -> None:
        self._in_proposer = value

    def _proposer_settings(
        self, max_cost_usd: float | None, max_tokens: int | None
    ) -> ProposerSettings:
        s = self._p.s
        layout = s.workspace.layout
        return ProposerSettings(
            self.config,
            self.domain_dir,
            layout.state_dir,
            layout.ledger,
            s.tag,
            max_cost_usd,
            max_tokens,
            base_files=s.workspace.files_at(s.base_commit, ["**"]),
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


def _log_line(event: Event) -> str:
    r = event.record
    if event.kind != "experiment" or r is None:
        return event.message
    value = f" value={r.value:.6g}" if r.value is not None else ""
    best = f" best={event.best_value:.6g}" if event.best_value is not None else ""
    why = f" ({r.reason})" if r.reason and r.reason not in (r.status.value, r.description) else ""
    return f"experiment {r.id} {r.status.value}:{value}{best} {r.description}{why}"


def _default_logging() -> None:
    """Progress on stderr for a program that configured no logging at all (its own handlers
    or levels, on this logger or the root, win; so does a level set to silence it)."""
    if log.handlers or log.level != logging.NOTSET or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


__all__ = ["Loop"]

"""Stand-ins for the parts a loop test does not want to run for real: a sandbox that runs no
process, an objective computed by a function, and records and contexts built in one call."""

from __future__ import annotations

import ast
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoresearch._config import load_config
from autoresearch._errors import MetricMissing
from autoresearch._objective import Objective
from autoresearch._scope import glob_match
from autoresearch._types import (
    Context,
    ExperimentRecord,
    GateResult,
    Measurement,
    RunResult,
    Status,
)
from autoresearch.execution._sandbox import RunSpec, Sandbox
from autoresearch.testing._toy import (
    TOY_BASELINE_SCORE,
    TOY_PARAMS,
    TOY_PROGRAM,
    toy_score,
)

# Exit codes a FakeRun reports when it is not given one: what a shell would show.
_CRASH_EXIT_CODE = 1
_KILLED_EXIT_CODE = -9


class FakeObjective(Objective):
    """An objective whose value comes from a function of the run (default: the number after
    ``score:`` in the trusted output), for testing loops and policies without a real metric.
    ``calls`` counts the measurements made."""

    def __init__(
        self,
        value: Callable[[RunResult], float] | None = None,
        gate: Callable[[RunResult], bool] | None = None,
    ) -> None:
        self._value = value
        self._gate = gate
        self.calls = 0

    def measure(self, run: RunResult) -> Measurement:
        self.calls += 1
        if self._value is not None:
            return Measurement(self._value(run))
        for line in reversed(run.trusted_output().splitlines()):
            if line.startswith("score:"):
                return Measurement(float(line.split(":", 1)[1]))
        raise MetricMissing("no 'score:' line")

    def gate(self, run: RunResult) -> GateResult:
        if self._gate is None or self._gate(run):
            return GateResult(True)
        return GateResult(False, "fake gate said no")


@dataclass(frozen=True)
class FakeRun:
    """What a :class:`FakeSandbox` handler returns when the printed text is not enough.

    ``output`` goes to the run's log; ``eval_output`` to the eval log when the spec has an
    ``eval_command`` (None: the same text as ``output``). A ``failure`` (CRASH, TIMEOUT, OOM,
    INTERRUPTED) ends the run there: the eval command is not run. ``exit_code`` None means
    0 for a clean run, 1 for a crash, -9 (killed) for a timeout or OOM, none for an interrupt.
    """

    output: str = ""
    eval_output: str | None = None
    failure: Status | None = None
    reason: str = ""
    exit_code: int | None = None
    wall_s: float = 0.0
    peak_memory_mb: float = 0.0

    @classmethod
    def crash(cls, output: str = "", exit_code: int = _CRASH_EXIT_CODE) -> FakeRun:
        return cls(
            output, failure=Status.CRASH, reason=f"exit code {exit_code}", exit_code=exit_code
        )

    @classmethod
    def timeout(cls, output: str = "", reason: str = "fake: ran past its limit") -> FakeRun:
        return cls(output, failure=Status.TIMEOUT, reason=reason)

    @classmethod
    def oom(cls, output: str = "", reason: str = "fake: ran out of memory") -> FakeRun:
        return cls(output, failure=Status.OOM, reason=reason)

    def exit_code_or_default(self) -> int | None:
        if self.exit_code is not None:
            return self.exit_code
        if self.failure is None:
            return 0
        if self.failure is Status.CRASH:
            return _CRASH_EXIT_CODE
        if self.failure in (Status.TIMEOUT, Status.OOM):
            return _KILLED_EXIT_CODE
        return None


Handler = Callable[[RunSpec], "str | FakeRun | RunResult"]


class FakeSandbox(Sandbox):
    """A Sandbox that starts no process: ``handler(spec)`` says what the run printed.

    The handler returns the printed text (a clean run), a :class:`FakeRun` (a failure, a
    separate eval output, a wall time), or a finished :class:`RunResult` of its own, which is
    returned as it is. The sandbox writes the log (and, for a clean run with an
    ``eval_command``, the eval log) named in the spec, so objectives read them as they read a
    real run's. The handler may read and write the run's folder (``spec.workdir``), e.g. to
    compute a score from the candidate's files, or to leave an output file.

    ``specs`` holds every spec received, in order (cancelled ones too); ``results`` every
    result returned. ``cancel()`` ends the current run as INTERRUPTED (the handler's answer
    is dropped), or, before a run, the next one, which then never reaches the handler. A
    handler that stands for a long run calls :meth:`wait`, which returns early on a cancel.
    An exception in the handler is a bug of the test and propagates.

    Example::

        sandbox = FakeSandbox(lambda spec: "---\\nscore: 1.5\\n")
        Loop.from_dir(domain, proposer=..., sandbox=sandbox).run(max_experiments=3)
        assert len(sandbox.specs) == 3
    """

    def __init__(
        self,
        handler: Handler | None = None,
        warnings: tuple[str, ...] = (),
        isolated: bool = True,
    ) -> None:
        """``handler`` defaults to :func:`toy_run` (the toy domain's ``run.py``, in-process).
        ``isolated``: what the sandbox reports (it runs none of the candidate's code, so by
        default it counts as isolated; False stands for a sandbox without namespaces)."""
        self._isolated = isolated
        self.handler: Handler = handler or toy_run
        self.specs: list[RunSpec] = []
        self.results: list[RunResult] = []
        self._warnings = list(warnings)
        self._cancel = threading.Event()
        self._lock = threading.Lock()

    @property
    def warnings(self) -> list[str]:
        return list(self._warnings)

    @property
    def isolated(self) -> bool:
        return self._isolated

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, seconds: float) -> bool:
        """Block up to ``seconds`` as a long run would; True if the run was cancelled."""
        return self._cancel.wait(seconds)

    def run(self, spec: RunSpec) -> RunResult:
        with self._lock:
            self.specs.append(spec)
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._cancel.is_set():  # cancelled before it started: the handler never runs
            self._cancel.clear()
            return self._finish(spec, FakeRun(failure=Status.INTERRUPTED, reason="interrupted"))
        answer = self.handler(spec)
        if self._cancel.is_set():
            self._cancel.clear()
            output = answer.output if isinstance(answer, FakeRun) else ""
            return self._finish(
                spec, FakeRun(output, failure=Status.INTERRUPTED, reason="interrupted")
            )
        if isinstance(answer, RunResult):
            with self._lock:
                self.results.append(answer)
            return answer
        return self._finish(spec, FakeRun(answer) if isinstance(answer, str) else answer)

    def _finish(self, spec: RunSpec, fake: FakeRun) -> RunResult:
        spec.log_path.write_text(fake.output, encoding="utf-8")
        if fake.failure is None and spec.eval_command:
            assert spec.eval_log_path is not None, "a spec with an eval_command names its log"
            text = fake.eval_output if fake.eval_output is not None else fake.output
            spec.eval_log_path.parent.mkdir(parents=True, exist_ok=True)
            spec.eval_log_path.write_text(text, encoding="utf-8")
        result = RunResult(
            workdir=spec.workdir,
            log_path=spec.log_path,
            exit_code=fake.exit_code_or_default(),
            wall_s=fake.wall_s,
            peak_memory_mb=fake.peak_memory_mb,
            seed=spec.seed,
            failure=fake.failure,
            reason=fake.reason,
            eval_log_path=spec.eval_log_path if spec.eval_command else None,
            eval_exit_code=0 if spec.eval_command and fake.failure is None else None,
        )
        with self._lock:
            self.results.append(result)
        return result


def toy_run(spec: RunSpec) -> str | FakeRun:
    """A FakeSandbox handler that does what the toy domain's ``run.py`` does, in-process:
    reads X and Y from ``params.py`` in the run's folder and prints the score (plus
    ``TOY_NOISE`` times a Gaussian seeded by the run's seed, the same draw as ``run.py``).
    A ``params.py`` that does not assign X and Y as plain numbers is a crash."""
    try:
        values = _constants(spec.workdir / "params.py")
        x, y = float(values["X"]), float(values["Y"])
    except (OSError, SyntaxError, ValueError, KeyError, TypeError) as e:
        return FakeRun.crash(f"training...\nTraceback: {type(e).__name__}: {e}\n")
    rng = random.Random(spec.seed)
    noise = float(spec.env.get("TOY_NOISE", "0")) * rng.gauss(0, 1)
    return f"training...\n---\nscore: {toy_score(x, y) + noise:.6f}\n"


def _constants(path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                out[target.id] = ast.literal_eval(node.value)
    return out


def make_context(**overrides: Any) -> Context:
    """A valid Context for one proposal on the toy domain, with ``overrides`` applied
    (any Context field: ``files={...}``, ``last_failure="crash: ..."``, ``history=[...]``)."""
    fields: dict[str, Any] = {
        "program": TOY_PROGRAM,
        "files": {"params.py": TOY_PARAMS},
        "history": (),
        "metric": "score",
        "direction": "minimize",
        "best_value": TOY_BASELINE_SCORE,
        "baseline_value": TOY_BASELINE_SCORE,
        "experiment_id": 2,
        "editable_globs": ("params.py",),
    }
    fields.update(overrides)
    fields["history"] = tuple(fields["history"])
    fields["editable_globs"] = tuple(fields["editable_globs"])
    return Context(**fields)


def domain_context(domain_dir: Path, **overrides: Any) -> Context:
    """The Context a first proposal on ``domain_dir`` (a folder with an ``autoresearch.toml``)
    would get: its program and editable files, no history; ``overrides`` as in
    :func:`make_context`."""
    domain_dir = Path(domain_dir)
    config, _ = load_config(domain_dir)
    program = domain_dir / config.program
    fields: dict[str, Any] = {
        "program": program.read_text(encoding="utf-8") if program.exists() else "",
        "files": editable_files(domain_dir, config.editable),
        "metric": config.objective.metric or "value",
        "direction": config.objective.direction,
        "best_value": None,
        "baseline_value": None,
        "experiment_id": 1,
        "editable_globs": tuple(config.editable),
    }
    fields.update(overrides)
    return make_context(**fields)


def editable_files(domain_dir: Path, editable: list[str]) -> dict[str, str]:
    """The text of every file of ``domain_dir`` the editable globs match (state and .git
    left out)."""
    return {
        p.relative_to(domain_dir).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(domain_dir.rglob("*"))
        if p.is_file()
        and ".autoresearch" not in p.parts
        and ".git" not in p.parts
        and glob_match(p.relative_to(domain_dir).as_posix(), editable)
    }


def make_record(**overrides: Any) -> ExperimentRecord:
    """A finished ExperimentRecord (a discarded candidate of tag ``t``, value 1.0), with any
    field overridden: what ``Proposer.observe`` and ``restore`` receive."""
    fields: dict[str, Any] = {
        "id": 2,
        "tag": "t",
        "status": Status.DISCARD,
        "reason": "",
        "description": "a candidate",
        "hypothesis": "",
        "proposer": "test",
        "parent_commit": "0" * 40,
        "commit": "1" * 40,
        "value": 1.0,
        "secondary": {},
        "holdout": {},
        "meta": {},
        "tokens": 0,
        "cost_usd": 0.0,
        "memory_gb": 0.0,
    }
    fields.update(overrides)
    return ExperimentRecord(**fields)


__all__ = [
    "FakeObjective",
    "FakeRun",
    "FakeSandbox",
    "Handler",
    "domain_context",
    "editable_files",
    "make_context",
    "make_record",
    "toy_run",
]

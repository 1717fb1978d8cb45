"""Objective: turns a finished run into a Measurement, and optionally gates a keep."""

from __future__ import annotations

import abc
import json
import math
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoresearch._config import ObjectiveConfig
from autoresearch._errors import ConfigError, MetricMissing
from autoresearch._registry import import_path
from autoresearch._types import ExperimentRecord, GateResult, Measurement, RunResult

if TYPE_CHECKING:
    from autoresearch._trusted import TrustedFiles


class Objective(abc.ABC):
    """Measures a finished run.

    Contract:
    - ``measure`` is called once per successful sandbox run (exit code 0 within limits), in
      the driver's process, with the run's worktree still present. It returns a Measurement
      or raises :class:`MetricMissing` (the experiment is then recorded as a crash). It must
      not edit files of the worktree.
    - ``gate`` is called only for a candidate about to be kept, with its last run. A failed
      gate records ``gate_failed``. The default passes.
    - ``report`` returns extra figures for ``autoresearch status`` computed from the whole
      history (e.g. a deflated Sharpe ratio). The driver calls it after each experiment and
      keeps the figures in the ledger, where ``status`` reads them: ``status`` imports no
      code of the domain. The default returns none.
    - ``feedback`` returns what a proposer may read about a measured run beyond its metric
      (e.g. the evaluation's failing criteria, with evidence). It is called after every
      successful ``measure`` of a baseline or candidate run; the driver keeps the latest text
      per experiment (capped), and the proposer is shown the incumbent's and the last
      experiment's, fenced as data. Read it from what the trusted evaluator wrote, and leave
      holdout material out: the proposer sees all of it. The default returns "" (nothing).
    - Direction (minimize/maximize) comes from the config, not from the objective.
    - Not guaranteed: that ``measure`` sees every run of a candidate in order across resumes.
    """

    @abc.abstractmethod
    def measure(self, run: RunResult) -> Measurement: ...

    def gate(self, run: RunResult) -> GateResult:
        return GateResult(True)

    def report(self, history: Sequence[ExperimentRecord]) -> Mapping[str, float]:
        return {}

    def feedback(self, run: RunResult) -> str:
        return ""


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf|nan"
_SUMMARY_LINE = re.compile(rf"^\s*([A-Za-z_][\w.]*)\s*:\s*({_NUMBER})\s*$", re.IGNORECASE)
_METRIC_LINE = re.compile(rf"^METRIC\s+([A-Za-z_][\w.]*)\s*=\s*({_NUMBER})\s*$", re.IGNORECASE)


def parse_summary(text: str) -> dict[str, float]:
    """Values of the last ``---`` block of ``name: value`` lines (the upstream format)."""
    lines = text.splitlines()
    start = None
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip() == "---":
            start = i
            break
    if start is None:
        return {}
    out: dict[str, float] = {}
    for line in lines[start + 1 :]:
        m = _SUMMARY_LINE.match(line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def parse_metric_lines(text: str) -> dict[str, float]:
    """Values of ``METRIC name=value`` lines; a later line overrides an earlier one."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _METRIC_LINE.match(line.strip())
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


# A metrics file larger than this is not a metrics file (the candidate controls it).
MAX_METRICS_FILE_BYTES = 10 * 1024 * 1024


def load_run_json(path: Path) -> Any:
    """The JSON in a file a run wrote, or MetricMissing: absent, not a regular file (a FIFO
    or a device would hang the driver), too large, not UTF-8 or not JSON."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise MetricMissing(f"the run wrote no {path.name}") from None
    if not stat.S_ISREG(st.st_mode):
        raise MetricMissing(f"{path.name} is not a regular file")
    if st.st_size > MAX_METRICS_FILE_BYTES:
        raise MetricMissing(f"{path.name} is {st.st_size} bytes; too large for a metrics file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise MetricMissing(f"cannot read {path.name}: {e}") from None
    except json.JSONDecodeError as e:
        raise MetricMissing(f"{path.name} is not valid JSON: {e}") from None


class MetricObjective(Objective):
    """Reads named metrics from the trusted output: a summary block, METRIC lines or JSON."""

    def __init__(
        self,
        metric: str,
        source: str = "summary",
        json_file: str = "metrics.json",
        secondary: Sequence[str] = (),
        holdout: Sequence[str] = (),
    ) -> None:
        if source not in ("summary", "metric-lines", "json"):
            raise ValueError(f"unknown metric source {source!r}")
        self.metric = metric
        self.source = source
        self.json_file = json_file
        self.secondary = tuple(secondary)
        self.holdout = tuple(holdout)

    def values(self, run: RunResult) -> dict[str, float]:
        if self.source == "json":
            data = load_run_json(run.workdir / self.json_file)
            if not isinstance(data, dict):
                raise MetricMissing(f"{self.json_file} must hold a JSON object")
            out: dict[str, float] = {}
            for k, v in data.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[str(k)] = float(v)
            return out
        text = run.trusted_output()
        return parse_summary(text) if self.source == "summary" else parse_metric_lines(text)

    def measure(self, run: RunResult) -> Measurement:
        values = self.values(run)
        if self.metric not in values:
            where = "eval output" if run.eval_log_path is not None else "output"
            raise MetricMissing(f"no {self.metric!r} in the run's {where} ({self.source})")
        primary = values[self.metric]
        if not math.isfinite(primary):
            raise MetricMissing(f"{self.metric} is {primary}")
        secondary = {k: values[k] for k in self.secondary if k in values}
        holdout = {k: values[k] for k in self.holdout if k in values}
        return Measurement(primary, secondary, holdout)


def load_objective(config: ObjectiveConfig, domain: Path | TrustedFiles | None = None) -> Objective:
    """The objective a config names: a class path with arguments, or a MetricObjective. With
    ``domain``, ``module:Class`` may name a fixed file of that folder (``objective:Cls``
    for ``DIR/objective.py``), compiled from its bytes without changing ``sys.path``: a
    ``TrustedFiles`` reads them from a commit (the run's base), a path from the folder now."""
    if not config.class_path:
        return MetricObjective(
            config.metric, config.source, config.json_file, config.secondary, config.holdout
        )
    cls = import_path(config.class_path, "objective.class", domain)
    if not (isinstance(cls, type) and issubclass(cls, Objective)):
        raise ConfigError(f"objective.class: {config.class_path} is not an Objective subclass")
    kwargs: dict[str, Any] = dict(config.args)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(
            f"objective.args: {config.class_path} rejected its arguments: {e}"
        ) from None


def objective_for_domain(config: ObjectiveConfig, files: TrustedFiles) -> Objective:
    """``load_objective`` for a run: the domain's own objective module from the run's base
    commit, never from the checkout a candidate may have written."""
    return load_objective(config, files)


# Names an eval_command's summary block may use to report what its model calls cost.
EVAL_TOKENS = "eval_tokens"
EVAL_COST_USD = "eval_cost_usd"


def eval_spend(run: RunResult) -> tuple[int, float]:
    """(tokens, USD) the fixed evaluator reports in its last summary block (an evaluator
    prints it after every step, so a killed one leaves what it spent so far). Only the eval
    log is read, never the command's output, so a candidate's code cannot report less; a
    value that is negative or not finite counts as none."""
    if run.eval_log_path is None:
        return 0, 0.0
    values = parse_summary(run.trusted_output())
    tokens, cost = values.get(EVAL_TOKENS, 0.0), values.get(EVAL_COST_USD, 0.0)
    tokens = tokens if math.isfinite(tokens) and tokens > 0 else 0.0
    cost = cost if math.isfinite(cost) and cost > 0 else 0.0
    return int(tokens), float(cost)


def feedback_key(tag: str, experiment: int) -> str:
    """The ledger's meta key of an experiment's latest ``Objective.feedback`` text."""
    return f"feedback:{tag}:{experiment}"


def report_key(tag: str) -> str:
    """The ledger's meta key of the objective's latest ``report`` figures for run ``tag``."""
    return f"objective_report:{tag}"


def has_report(objective: Objective) -> bool:
    """Whether ``objective`` computes figures for ``status`` (the default ``report`` has none,
    and the driver then skips reading the history for it)."""
    return type(objective).report is not Objective.report

"""Objectives for software speed: a benchmark command that prints a time or a rate.

Use them with the ``paired`` acceptance policy (``autoresearch.acceptance.Paired``), which
runs the candidate and the incumbent interleaved, A B A B ..., each run a fresh process,
and decides on the median of the per-pair ratios with a 95% interval. The objective turns
one run into one number; the policy is the comparison. It is a policy of its own because a
decision on pairs needs to know which incumbent run stood beside which candidate run, and
only a policy sees the runs of one comparison together (``Evidence.paired``).

    [objective]
    class = "autoresearch.objectives.perf:Throughput"   # or Latency
    args = { metric = "ops_per_s" }
    direction = "maximize"                              # minimize for Latency
    [acceptance]
    policy = "paired"
    min_gain = 0.02                                     # keep only > 2% faster

``metric = "wall_s"`` (Latency) takes the sandbox's own clock of the whole command: the one
figure no candidate can print. Any other name is read from the run's trusted output (the
fixed ``eval_command``'s, else the command's), from a ``---`` summary block or ``METRIC
name=value`` lines. A number the candidate's own process prints is only as honest as the
benchmark around it: let a fixed harness time it (``domains/sim_speed/harness.py`` times a
child process by its rusage).

``require = { trajectory_ok = 1 }`` names values every measured run must print, each with
the value it must have (the timed run did the reference's work, not merely some work): a
run without them is not measured (``MetricMissing``, so the experiment is a crash), and the
kept candidate's last run is checked again in ``gate``. Every run, not only the last: a
candidate that can tell runs apart must not be timed on wrong work in the runs the
decision rests on.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

from autoresearch import (
    GateResult,
    Measurement,
    MetricMissing,
    Objective,
    RunResult,
    parse_metric_lines,
    parse_summary,
)
from autoresearch.acceptance import machine_summary

# The sandbox's wall clock of the command (start-up included).
WALL = "wall_s"


def pin_cpu(pid: int = 0) -> int | None:
    """Pin process ``pid`` (0: this one) to one CPU it may use, the last (the first is
    where interrupts and the driver tend to land); the CPU's number, or None where the
    platform cannot pin."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    try:
        cpu = max(os.sched_getaffinity(pid))
        os.sched_setaffinity(pid, {cpu})
    except OSError:
        return None
    return cpu


class _Speed(Objective):
    kind = "value"

    def __init__(
        self,
        metric: str,
        secondary: Sequence[str] = (),
        require: Mapping[str, float] | None = None,
    ) -> None:
        self.metric = metric
        self.require = dict(require or {})
        self.secondary = tuple(dict.fromkeys([*secondary, *self.require]))

    @staticmethod
    def values(run: RunResult) -> dict[str, float]:
        text = run.trusted_output()
        return {**parse_metric_lines(text), **parse_summary(text)}

    def measure(self, run: RunResult) -> Measurement:
        values = self.values(run)
        if self.metric == WALL:
            values[WALL] = run.wall_s
        if self.metric not in values:
            raise MetricMissing(
                f"no {self.metric!r} in the run's output (a '---' block of 'name: value' "
                "lines, or 'METRIC name=value')"
            )
        value = values[self.metric]
        if not math.isfinite(value) or value <= 0:
            raise MetricMissing(f"{self.metric} is {value}: not a possible {self.kind}")
        if unmet := self._unmet(values):
            raise MetricMissing(f"{unmet}: the run is not measured")
        secondary = {k: values[k] for k in self.secondary if k in values}
        secondary.setdefault(WALL, run.wall_s)
        return Measurement(value, secondary)

    def gate(self, run: RunResult) -> GateResult:
        """``require``d values (``trajectory_ok = 1``: the timed run did the right work)
        hold in every measured run (``measure`` refuses one without them) and are checked
        again in the kept candidate's last run; the reason names the machine the
        figures come from (it goes into the kept commit's message)."""
        if unmet := self._unmet(self.values(run)):
            return GateResult(False, unmet)
        return GateResult(True, f"measured on {machine_summary()}")

    def _unmet(self, values: Mapping[str, float]) -> str | None:
        """Why ``values`` fail a ``require``d value, or None."""
        for name, want in self.require.items():
            if values.get(name) != want:
                got = values.get(name, "missing")
                return f"{name} is {got} in the timed run, must be {want:g}"
        return None


class Throughput(_Speed):
    """A rate (steps/s, ops/s, requests/s): larger is better (``direction = "maximize"``)."""

    kind = "rate"

    def __init__(
        self,
        metric: str = "steps_per_s",
        secondary: Sequence[str] = (),
        require: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(metric, secondary, require)


class Latency(_Speed):
    """A time (seconds per op, the whole run's ``wall_s``): smaller is better
    (``direction = "minimize"``)."""

    kind = "time"

    def __init__(
        self,
        metric: str = WALL,
        secondary: Sequence[str] = (),
        require: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(metric, secondary, require)


__all__ = ["WALL", "Latency", "Throughput", "pin_cpu"]

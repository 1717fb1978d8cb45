"""Acceptance: decide keep/discard from measurements, or ask for more of them."""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from autoresearch._config import AcceptanceConfig
from autoresearch._errors import ConfigError


class Verdict(enum.StrEnum):
    KEEP = "keep"
    DISCARD = "discard"
    MEASURE = "measure"


@dataclass(frozen=True)
class Decision:
    """A policy's answer: keep, discard, or measure more (``more_candidate`` further runs of
    the candidate and ``more_incumbent`` of the incumbent, interleaved by the loop)."""

    verdict: Verdict
    reason: str
    more_candidate: int = 0
    more_incumbent: int = 0

    def __post_init__(self) -> None:
        if self.verdict is Verdict.MEASURE and self.more_candidate + self.more_incumbent <= 0:
            raise ValueError("a MEASURE decision must ask for at least one run")


@dataclass(frozen=True)
class Evidence:
    """What a policy decides on. Values are primary metrics, oriented as measured;
    ``better(a, b)`` in the policy uses ``direction``. ``noise_sigma`` is the calibrated
    standard deviation of one run of the incumbent (None until measured); ``incumbent``
    holds every run of the incumbent, however long ago it was taken.

    ``paired`` holds the incumbent's runs taken during this experiment, in order:
    ``paired[k]`` ran beside ``candidate[k]`` (right after or right before it; NaN: that run
    failed), so a pair shares the machine's load of its moment, which runs minutes apart do
    not. The loop always fills it (``()`` before the first incumbent run). ``None`` says the
    caller takes no such runs (a driver of its own): the built-in policies then compare with
    ``incumbent``'s mean, as they did before pairing, and ask for no pairs."""

    candidate: Sequence[float]
    incumbent: Sequence[float]
    direction: str
    noise_sigma: float | None = None
    paired: Sequence[float] | None = None

    def pairs(self) -> list[tuple[float, float]]:
        """(candidate, incumbent) runs taken side by side; failed incumbent runs left out."""
        if self.paired is None:
            return []
        return [(c, i) for c, i in zip(self.candidate, self.paired, strict=False) if i == i]

    def improvement(self, a: float, b: float) -> float:
        """How much better ``a`` is than ``b`` (positive = better) in metric units."""
        return b - a if self.direction == "minimize" else a - b


class Acceptance(abc.ABC):
    """Decides whether a measured candidate replaces the incumbent.

    Contract:
    - ``decide(evidence)`` is called after each round of runs; it returns KEEP, DISCARD or
      MEASURE. The loop runs what MEASURE asks for and calls ``decide`` again, up to
      ``max_runs_per_candidate`` runs of the candidate; past that, a MEASURE counts as DISCARD.
    - ``calibration_runs(experiments_done)`` says how many extra runs of the incumbent the loop
      should make now to estimate noise (at the start: ``experiments_done == 0``). Default: 0.
    - The incumbent's values grow over the run (baseline runs, re-measurements, calibration);
      the recorded value of a kept candidate is the mean of its runs.
    - Policies are pure: no I/O, no state beyond their config.
    """

    name: str = "acceptance"
    max_runs_per_candidate: int = 1
    # The settings model (the ``[acceptance]`` table, or ``[acceptance.<name>]`` merged over
    # it). A third-party policy may name its own PluginConfig subclass; it then gets only
    # its table, and its __init__ takes that model.
    Config: type[BaseModel] = AcceptanceConfig

    def __init__(self, config: AcceptanceConfig | None = None, **fields: Any) -> None:
        """``config`` is the ``[acceptance]`` table; keyword ``fields`` build one instead
        (``Sequential(z=3, repeats=5)``), validated like the file's (a misspelt field names
        itself)."""
        if config is not None and fields:
            config = config.model_copy(update=fields)
        elif config is None:
            try:
                config = AcceptanceConfig(policy=self.name, **fields)
            except ValidationError as e:
                raise ConfigError(_format(type(self).__name__, e)) from None
        self.config = config

    @abc.abstractmethod
    def decide(self, evidence: Evidence) -> Decision: ...

    def calibration_runs(self, experiments_done: int) -> int:
        return 0


def _format(owner: str, err: ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
        for e in err.errors()
    )
    return f"{owner}: {problems}"


def better_or_worse(gain: float, than: str = "") -> str:
    """An oriented gain (positive: better, whatever the direction) in words, compared with
    ``than`` when given: "0.34 better than the incumbent", "2.12 worse", and for a gain of
    exactly 0 "the same as the incumbent" (never "no change than the incumbent")."""
    tail = f" than {than}" if than else ""
    if gain > 0:
        return f"{gain:.6g} better{tail}"
    if gain < 0:
        return f"{-gain:.6g} worse{tail}"
    return f"the same as {than}" if than else "no change"


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


class Greedy(Acceptance):
    """The upstream rule: keep only if strictly better than the incumbent by more than
    ``min_delta``, from one run each."""

    name = "greedy"

    def decide(self, evidence: Evidence) -> Decision:
        cand = _mean(evidence.candidate)
        inc = _mean(evidence.incumbent)
        gain = evidence.improvement(cand, inc)
        if gain > self.config.min_delta:
            return Decision(
                Verdict.KEEP,
                f"{better_or_worse(gain, 'the incumbent')}, above min_delta "
                f"{self.config.min_delta:g}",
            )
        return Decision(
            Verdict.DISCARD,
            f"{better_or_worse(gain, 'the incumbent')}, not above min_delta "
            f"{self.config.min_delta:g}",
        )


def make_acceptance(config: AcceptanceConfig) -> Acceptance:
    """The policy ``config.policy`` names (a built-in or an entry point), built from it."""
    from autoresearch.acceptance import POLICIES

    cls = POLICIES.get(config.policy, "acceptance.policy")
    if not (isinstance(cls, type) and issubclass(cls, Acceptance)):
        raise ConfigError(f"acceptance.policy: {config.policy!r} is not an Acceptance class")
    policy: Acceptance = cls(config.for_policy(config.policy))
    return policy

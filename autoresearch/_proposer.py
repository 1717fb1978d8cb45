"""Proposer: given the context, return a Candidate (file edits + description + hypothesis)."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._types import Candidate, Context, ExperimentRecord

if TYPE_CHECKING:
    from ._config import ResearchConfig


class ProposalError(Exception):
    """No candidate this time: the loop records the experiment ``invalid`` with this message
    and goes on. ``tokens`` and ``cost_usd`` are what the failed attempt spent (recorded)."""

    def __init__(self, message: str, tokens: int = 0, cost_usd: float = 0.0) -> None:
        super().__init__(message)
        self.tokens = tokens
        self.cost_usd = cost_usd


class BudgetExhausted(ProposalError):
    """The next proposal could exceed the run's token or cost budget: the loop stops."""


@dataclass(frozen=True)
class ProposerSettings:
    """What a proposer is built from: the resolved config, where things live, CLI options."""

    config: ResearchConfig
    domain_dir: Path
    state_dir: Path
    ledger_path: Path
    tag: str
    options: Mapping[str, Any] = field(default_factory=dict)


class Proposer(abc.ABC):
    """Proposes one candidate at a time.

    Contract (call order, per run of the loop):
    1. ``restore(history)`` once, before the first proposal, with the ledger's records of
       this tag (empty for a new run) so a resumed proposer continues where it stopped.
    2. For each experiment: ``propose(context)``, then ``observe(candidate, record)`` with
       the recorded outcome. ``propose`` returns None when it has nothing more to propose
       (the loop then ends). An exception from ``propose`` is recorded as an ``invalid``
       experiment and the loop goes on.
    3. ``close()`` once at the end, also after an interruption.

    A proposer never runs experiments. It is called from one thread. Its ``name`` is stored
    with every experiment.
    """

    name: str = "proposer"

    @abc.abstractmethod
    def propose(self, context: Context) -> Candidate | None: ...

    def observe(self, candidate: Candidate, record: ExperimentRecord) -> None:  # noqa: B027
        """Learn from a recorded outcome. Default: nothing."""

    def restore(self, history: Sequence[ExperimentRecord]) -> None:  # noqa: B027
        """Continue after a resume. Default: nothing."""

    def close(self) -> None:  # noqa: B027
        """Release resources (servers, studies). Default: nothing."""

    @classmethod
    def from_settings(cls, settings: ProposerSettings) -> Proposer:
        """Build from the config and CLI options; subclasses with arguments override this."""
        return cls()


def make_proposer(choice: Proposer | str | None, settings: ProposerSettings) -> Proposer:
    """The proposer for a run: an instance as given, a registered name, the config's default,
    or ``knob`` when knobs are declared."""
    from ._config import ConfigError
    from ._objective import import_path

    if isinstance(choice, Proposer):
        return choice
    proposer_cfg = settings.config.proposer
    name = choice or proposer_cfg.name or ("knob" if proposer_cfg.knobs else None)
    if name is None:
        raise ConfigError(
            f"{settings.domain_dir / 'autoresearch.toml'}: no proposer chosen. Pass --proposer "
            f"({', '.join(PROPOSERS)}) or set proposer.name; 'knob' needs [[proposer.knobs]]"
        )
    if name not in PROPOSERS:
        raise ConfigError(f"unknown proposer {name!r}; known: {', '.join(PROPOSERS)}")
    cls = import_path(PROPOSERS[name], "proposer")
    proposer: Proposer = cls.from_settings(settings)
    return proposer


# Lazy registry: name -> "module:Class", imported only when chosen.
PROPOSERS: dict[str, str] = {
    "knob": "autoresearch._knob:KnobProposer",
    "scripted": "autoresearch._scripted:ScriptedProposer",
    "llm": "autoresearch._llm:LLMProposer",
    "agent": "autoresearch._agent:AgentCLIProposer",
}

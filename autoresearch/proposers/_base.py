"""Proposer: given the context, return a Candidate (file edits + description + hypothesis)."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch._errors import BudgetExhausted, ConfigError, ProposalError
from autoresearch._types import Candidate, Context, ExperimentRecord

if TYPE_CHECKING:
    from autoresearch._config import ResearchConfig


@dataclass(frozen=True)
class ProposerOptions:
    """What the command line (or ``Loop.from_dir``) says about the proposer, beside the
    config: each field overrides the config's own when it is not None."""

    script: str | None = None
    model: str | None = None
    base_url: str | None = None
    local_model: str | None = None
    api_key_env: str | None = None


@dataclass(frozen=True)
class ProposerSettings:
    """What a proposer gets when a run starts (``Proposer.start``): where the run's state
    lives, its tag, and the run-wide spend limits it must honour."""

    config: ResearchConfig
    domain_dir: Path
    state_dir: Path
    ledger_path: Path
    tag: str
    max_cost_usd: float | None = None
    max_tokens: int | None = None
    # Every file of the domain folder at the run's base commit (text; domain-relative paths),
    # read by the driver from git: what a proposer may show or copy of the folder, never the
    # live checkout a candidate may have written.
    base_files: Mapping[str, str] = field(default_factory=dict)


class Proposer(abc.ABC):
    """Proposes one candidate at a time.

    Contract (call order, per run of the loop):
    0. It is built (``__init__`` or ``from_config``) and ``check_budget`` is called before
       the run creates anything on disk: a bad setting raises ConfigError there and leaves
       nothing behind. Building touches no files and starts no servers.
    1. ``start(settings)`` once, when the run's state exists (studies, servers, log folders
       are created here).
    2. ``restore(history)`` once, before the first proposal, with the ledger's records of
       this tag (empty for a new run) so a resumed proposer continues where it stopped.
    3. For each experiment: ``propose(context)``, then ``observe(candidate, record)`` with
       the recorded outcome. ``propose`` returns None when it has nothing more to propose
       (the loop then ends). A :class:`ProposalError` from ``propose`` is recorded as an
       ``invalid`` experiment (no proposal) and the loop goes on; any other exception is a
       proposer bug, also recorded, and a few in a row end the run.
    4. ``close()`` once at the end, also after an interruption.

    A proposer never runs experiments. It is called from one thread. Its ``name`` is stored
    with every experiment.
    """

    name: str = "proposer"

    @abc.abstractmethod
    def propose(self, context: Context) -> Candidate | None: ...

    @classmethod
    def from_config(
        cls, config: ResearchConfig, domain_dir: Path, options: ProposerOptions
    ) -> Proposer:
        """Build from the domain's config and the command-line options (validate, create
        nothing). Proposers with settings override this; the default takes no arguments."""
        return cls()

    def check_budget(self, max_cost_usd: float | None, max_tokens: int | None) -> None:  # noqa: B027
        """Raise ConfigError if this run's spend limits cannot be honoured. Default: fine."""

    def check_files(self, config: ResearchConfig, read: Callable[[str], str | None]) -> None:  # noqa: B027
        """Raise ConfigError (naming the file and the field) if the domain's files at the
        run's base cannot serve this proposer: called by ``Loop`` before anything runs or is
        created. ``read(path)`` is a file's text at the base, None where there is none.
        Default: fine."""

    def start(self, settings: ProposerSettings) -> None:  # noqa: B027
        """Create what proposing needs (a study, a server) once the run's state exists."""

    def observe(self, candidate: Candidate, record: ExperimentRecord) -> None:  # noqa: B027
        """Learn from a recorded outcome. Default: nothing."""

    def restore(self, history: Sequence[ExperimentRecord]) -> None:  # noqa: B027
        """Continue after a resume. Default: nothing."""

    def close(self) -> None:  # noqa: B027
        """Release resources (servers, studies). Default: nothing."""


def require_program(
    config: ResearchConfig, read: Callable[[str], str | None], proposer: str
) -> None:
    """ConfigError unless the domain holds its research program (``program``, by default
    program.md): a proposer that writes code from it has nothing to go on without it."""
    text = read(config.program)
    if text is None or not text.strip():
        what = "no such file" if text is None else "the file is empty"
        raise ConfigError(
            f"autoresearch.toml: program = {config.program!r}: {what} in the domain folder "
            f"(committed). The {proposer} proposer is shown it on every proposal: write the "
            "research program there and commit it, or set 'program' to the file that holds it"
        )


def make_proposer(
    choice: Proposer | str | None,
    config: ResearchConfig,
    domain_dir: Path,
    options: ProposerOptions | None = None,
) -> Proposer:
    """The proposer for a run: an instance as given, a registered name, the config's default,
    or ``knob`` when knobs are declared. Creates nothing on disk."""
    from autoresearch.proposers import PROPOSERS

    if isinstance(choice, Proposer):
        return choice
    proposer_cfg = config.proposer
    name = choice or proposer_cfg.name or ("knob" if proposer_cfg.knobs else None)
    if name is None:
        raise ConfigError(
            f"{domain_dir / 'autoresearch.toml'}: no proposer chosen. Pass --proposer "
            f"({', '.join(PROPOSERS.names())}) or set proposer.name; 'knob' needs "
            "[[proposer.knobs]]"
        )
    cls = PROPOSERS.get(name, "proposer")
    if not (isinstance(cls, type) and issubclass(cls, Proposer)):
        raise ConfigError(f"proposer: {name!r} is registered as {cls!r}, not a Proposer class")
    proposer: Proposer = cls.from_config(config, domain_dir, options or ProposerOptions())
    return proposer


__all__ = [
    "BudgetExhausted",
    "ProposalError",
    "Proposer",
    "ProposerOptions",
    "ProposerSettings",
    "make_proposer",
]

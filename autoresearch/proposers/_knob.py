"""The knob proposer: Optuna (TPE) over UPPER_CASE constants declared in the config.

The study lives in the ledger's SQLite file, so a resumed run continues the same search.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from autoresearch._config import KnobSpec, ResearchConfig
from autoresearch._errors import ConfigError
from autoresearch._types import Candidate, Context, Edit, ExperimentRecord, Status
from autoresearch.proposers._base import Proposer, ProposerOptions, ProposerSettings

# Significant digits written for a float knob: enough for a search, short for a diff.
FLOAT_DIGITS = 4


class KnobError(ValueError):
    """A declared knob cannot be found or rewritten in its file."""


def _constant_pattern(constant: str) -> re.Pattern[str]:
    # A module-level assignment (no indentation), optionally annotated, with a trailing comment.
    return re.compile(
        rf"^(?P<lhs>{re.escape(constant)}\s*(?::[^=\n]+)?=\s*)"
        r"(?P<value>[^#\n]*?)(?P<trail>[ \t]*(?:#.*)?)$",
        re.MULTILINE,
    )


def format_value(knob: KnobSpec, value: Any) -> str:
    if knob.type == "int":
        return str(int(value))
    if knob.type == "float":
        rounded = float(f"{float(value):.{FLOAT_DIGITS}g}")
        # Rounding must not carry a value outside the declared range.
        assert knob.low is not None and knob.high is not None
        return repr(min(max(rounded, knob.low), knob.high))
    return repr(value)


def set_constant(text: str, constant: str, literal: str, where: str) -> str:
    """``text`` with the module-level ``CONSTANT = ...`` set to ``literal``."""
    matches = list(_constant_pattern(constant).finditer(text))
    if len(matches) != 1:
        found = "not found" if not matches else f"assigned {len(matches)} times"
        raise KnobError(f"{where}: module-level constant {constant} {found}")
    m = matches[0]
    return text[: m.start("value")] + literal + text[m.end("value") :]


def get_constant(text: str, constant: str) -> str | None:
    m = _constant_pattern(constant).search(text)
    return m.group("value").strip() if m else None


class Knob(Proposer):
    """Each proposal: ask Optuna for values of every knob and rewrite those constants."""

    name = "knob"

    def __init__(
        self,
        knobs: Sequence[KnobSpec],
        storage_url: str | None = None,
        study_name: str = "autoresearch",
        direction: Literal["minimize", "maximize"] = "minimize",
        seed: int = 0,
    ) -> None:
        """The study is opened on first use: in ``storage_url`` (the run's ledger, set by
        ``start``) or, with none, in memory."""
        import optuna

        if not knobs:
            raise ConfigError(
                "proposer 'knob' needs knobs: declare [[proposer.knobs]] in the config"
            )
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.knobs = list(knobs)
        self._optuna = optuna
        self.storage_url = storage_url
        self.study_name = study_name
        self.direction = direction
        self.seed = seed
        self._study: Any = None
        self._pending: dict[int, Any] = {}

    @classmethod
    def from_config(
        cls, config: ResearchConfig, domain_dir: Path, options: ProposerOptions
    ) -> Knob:
        return cls(
            config.proposer.knobs, direction=config.objective.direction, seed=config.proposer.seed
        )

    def start(self, settings: ProposerSettings) -> None:
        # The study lives in the ledger, so --resume continues the search.
        if self.storage_url is None:
            self.storage_url = f"sqlite:///{Path(settings.ledger_path).resolve()}"
            self.study_name = f"autoresearch-{settings.tag}"

    @property
    def study(self) -> Any:
        if self._study is None:
            self._study = self._optuna.create_study(
                storage=self.storage_url,
                study_name=self.study_name,
                direction=self.direction,
                sampler=self._optuna.samplers.TPESampler(seed=self.seed),
                load_if_exists=True,
            )
        return self._study

    def _distributions(self) -> dict[str, Any]:
        d = self._optuna.distributions
        out: dict[str, Any] = {}
        for k in self.knobs:
            if k.type == "int":
                assert k.low is not None and k.high is not None
                out[k.name] = d.IntDistribution(int(k.low), int(k.high), log=k.log)
            elif k.type == "float":
                assert k.low is not None and k.high is not None
                out[k.name] = d.FloatDistribution(k.low, k.high, log=k.log)
            else:
                assert k.choices is not None
                out[k.name] = d.CategoricalDistribution(k.choices)
        return out

    def restore(self, history: Sequence[ExperimentRecord]) -> None:
        # Trials of a driver that died were asked but never told: tell them what the ledger
        # recorded (the driver may have died between the row and `observe`), else a failure.
        from optuna.trial import TrialState

        values = {
            r.meta.get("trial"): r.value
            for r in history
            if r.proposer == self.name
            and r.value is not None
            and r.status in (Status.KEEP, Status.DISCARD)
        }
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            value = values.get(trial.number)
            if value is not None:
                self.study.tell(trial.number, value)
            else:
                self.study.tell(trial.number, state=TrialState.FAIL)

    def propose(self, context: Context) -> Candidate | None:
        trial = self.study.ask(self._distributions())
        self._pending[trial.number] = trial
        files = dict(context.files)
        changes = []
        for knob in self.knobs:
            if knob.file not in files:
                raise KnobError(f"knob {knob.name!r}: file {knob.file!r} is not an editable file")
            literal = format_value(knob, trial.params[knob.name])
            old = get_constant(files[knob.file], knob.constant)
            files[knob.file] = set_constant(
                files[knob.file], knob.constant, literal, f"{knob.file} (knob {knob.name!r})"
            )
            if old != literal:
                changes.append(f"{knob.constant}={literal}")
        edits = tuple(
            Edit(path, content=text) for path, text in files.items() if text != context.files[path]
        )
        desc = "knob: " + (", ".join(changes) if changes else "no change")
        return Candidate(
            description=desc,
            edits=edits,
            hypothesis="Optuna TPE sample over the declared knobs",
            meta={"trial": trial.number},
        )

    def observe(self, candidate: Candidate, record: ExperimentRecord) -> None:
        from optuna.trial import TrialState

        number = candidate.meta.get("trial")
        if not isinstance(number, int):
            return
        self._pending.pop(number, None)
        if record.value is not None and record.status in (Status.KEEP, Status.DISCARD):
            self.study.tell(number, record.value)
        else:
            self.study.tell(number, state=TrialState.FAIL)

    def close(self) -> None:
        from optuna.trial import TrialState

        for number in list(self._pending):
            self.study.tell(number, state=TrialState.FAIL)
        self._pending.clear()

"""The knob proposer: Optuna (TPE) over UPPER_CASE constants declared in the config.

The study lives in the ledger's SQLite file, so a resumed run continues the same search:
TPE conditions on every trial told so far, the sampler is seeded afresh for each session,
and a point already measured (recorded in each candidate's ``meta["knobs"]``) is never
proposed again.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from autoresearch._config import KnobSpec, ResearchConfig
from autoresearch._errors import ConfigError
from autoresearch._types import Candidate, Context, Edit, ExperimentRecord, Status
from autoresearch.proposers._base import Proposer, ProposerOptions, ProposerSettings

# Significant digits written for a float knob: enough for a search, short for a diff.
FLOAT_DIGITS = 4
# Draws in a row of points already tried before the proposer gives up: past this the
# search has converged (or a small grid is exhausted), so it has nothing new to propose.
MAX_DRAWS = 32

# A point: the knobs' values as written into their files, comparable across sessions.
Point = tuple[object, ...]


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


def written_value(knob: KnobSpec, value: Any) -> Any:
    """The value a knob's file holds once ``value`` is written (rounded, clamped)."""
    literal = format_value(knob, value)
    return ast.literal_eval(literal) if knob.type != "categorical" else value


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
        # Every point measured (or proposed) in this tag: never proposed again.
        self._tried: set[Point] = set()

    @classmethod
    def from_config(
        cls, config: ResearchConfig, domain_dir: Path, options: ProposerOptions
    ) -> Knob:
        return cls(
            config.proposer.knobs, direction=config.objective.direction, seed=config.proposer.seed
        )

    def check_files(self, config: ResearchConfig, read: Callable[[str], str | None]) -> None:
        """Every knob's constant is assigned once at module level in its file at the base."""
        for i, knob in enumerate(self.knobs):
            where = f"autoresearch.toml: proposer.knobs[{i}] ({knob.name!r})"
            text = read(knob.file)
            if text is None:
                raise ConfigError(f"{where}: file {knob.file!r} is not in the domain folder")
            n = len(_constant_pattern(knob.constant).findall(text))
            if n != 1:
                found = "is not assigned" if n == 0 else f"is assigned {n} times"
                raise ConfigError(
                    f"{where}: constant {knob.constant} {found} at module level in "
                    f"{knob.file}; fix 'constant' or 'file'"
                )

    def start(self, settings: ProposerSettings) -> None:
        # The study lives in the ledger, so --resume continues the search.
        if self.storage_url is None:
            self.storage_url = f"sqlite:///{Path(settings.ledger_path).resolve()}"
            self.study_name = f"autoresearch-{settings.tag}"
        self._add_point(self._file_values(settings.base_files))  # the baseline's point

    @property
    def study(self) -> Any:
        if self._study is None:
            sampler = self._optuna.samplers.TPESampler
            study = self._optuna.create_study(
                storage=self.storage_url,
                study_name=self.study_name,
                direction=self.direction,
                sampler=sampler(seed=self.seed),
                load_if_exists=True,
            )
            told = len(study.get_trials(deepcopy=False))
            if told:
                # Resumed: the seed alone would replay the first session's draws (TPE's
                # random start-up points among them), so it is mixed with the trial count.
                study.sampler = sampler(seed=_session_seed(self.seed, told))
            self._study = study
        return self._study

    def _key(self, values: Mapping[str, Any]) -> Point | None:
        """The point of ``values`` (knob name -> value), or None if a knob is missing."""
        if any(k.name not in values for k in self.knobs):
            return None
        out: list[object] = []
        for k in self.knobs:
            v = values[k.name]
            if k.type == "float" and isinstance(v, int | float):
                v = float(f"{float(v):.{FLOAT_DIGITS}g}")
            elif k.type == "int" and isinstance(v, int | float):
                v = int(v)
            out.append(repr(v))
        return tuple(out)

    def _add_point(self, values: Mapping[str, Any]) -> None:
        key = self._key(values)
        if key is not None:
            self._tried.add(key)

    def _file_values(self, files: Mapping[str, str]) -> dict[str, Any]:
        """The knobs' values as ``files`` hold them (those that are plain literals)."""
        out: dict[str, Any] = {}
        for k in self.knobs:
            literal = get_constant(files[k.file], k.constant) if k.file in files else None
            if literal is None:
                continue
            try:
                out[k.name] = ast.literal_eval(literal)
            except (ValueError, SyntaxError):  # an expression, not a value: no point
                continue
        return out

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
        trials = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        for r in history:
            if r.proposer != self.name:
                continue
            point = r.meta.get("knobs")
            if not isinstance(point, Mapping):  # a row written before points were recorded
                trial = trials.get(r.meta.get("trial"))
                point = trial.params if trial is not None else {}
            self._add_point(point)

    def propose(self, context: Context) -> Candidate | None:
        """The next untried point, or None when ``MAX_DRAWS`` draws in a row were all tried
        (the incumbent's point counts as tried: it would be no change)."""
        from optuna.trial import TrialState

        for knob in self.knobs:
            if knob.file not in context.files:
                raise KnobError(f"knob {knob.name!r}: file {knob.file!r} is not an editable file")
        self._add_point(self._file_values(context.files))
        for _ in range(MAX_DRAWS):
            trial = self.study.ask(self._distributions())
            point = {k.name: written_value(k, trial.params[k.name]) for k in self.knobs}
            key = self._key(point)
            if key not in self._tried:
                break
            self.study.tell(trial.number, state=TrialState.FAIL)  # measured already: draw again
        else:
            return None
        assert key is not None
        self._tried.add(key)
        self._pending[trial.number] = trial
        files = dict(context.files)
        changes = []
        for knob in self.knobs:
            literal = format_value(knob, point[knob.name])
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
            meta={"trial": trial.number, "knobs": point},
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


def _session_seed(seed: int, told: int) -> int:
    """A sampler seed for a study that already holds ``told`` trials: fixed by both, so a
    resume is as reproducible as a fresh run without replaying an earlier session's draws."""
    import numpy as np

    return int(np.random.SeedSequence((seed, told)).generate_state(1)[0])

"""Scenario suites for conversation evals: one JSON (or YAML) file per scenario, validated
with pydantic. A bad file is a :class:`ScenarioError` naming the file and the field."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SPLITS = ("selection", "holdout")
DIFFICULTIES = ("easy", "medium", "hard")
# A suite file larger than this is not a scenario.
MAX_SCENARIO_BYTES = 256 * 1024
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class ScenarioError(ValueError):
    """A scenario file is missing, unreadable or invalid; the message names file and field."""


class Criterion(BaseModel):
    """One thing the agent should (or should not) do. ``pattern`` (a regular expression,
    case-insensitive) lets the ``scripted`` judge decide without a model: for ``agent_should``
    it must match an agent turn, for ``agent_should_not`` it must match none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=3, description="The criterion, as the judge reads it.")
    pattern: str | None = Field(None, description="Regex for the scripted judge.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"not a regular expression: {e}") from None
        return v


class Conditions(BaseModel):
    """Voice conditions rendered in text: what a speech-to-text layer would hand the agent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    noise: list[str] = Field(
        default_factory=list, description="Markers inserted into caller turns: '[loud noise]'."
    )
    accent: str = Field("", description="How the caller's speech reads, e.g. 'heavy accent'.")
    broken_grammar: bool = False
    interruptions: bool = Field(False, description="The caller cuts in mid-sentence ('--').")


class Scenario(BaseModel):
    """One simulated call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Unique id: lowercase letters, digits, '_' or '-'.")
    persona: str = Field(min_length=3, description="Who the caller is and how they talk.")
    difficulty: Literal["easy", "medium", "hard"] = "medium"
    goal: str = Field(min_length=3, description="What the caller wants from the call.")
    known_info: dict[str, str] = Field(
        default_factory=dict, description="Facts the caller states freely."
    )
    unknown_info: dict[str, str] = Field(
        default_factory=dict, description="Facts the caller reveals only when asked."
    )
    opening: str = Field(min_length=1, description="The caller's first message.")
    agent_should: list[Criterion] = Field(default_factory=list)
    agent_should_not: list[Criterion] = Field(default_factory=list)
    split: Literal["selection", "holdout"] = "selection"
    conditions: Conditions = Field(default_factory=Conditions)
    attack: str = Field("", description="Attack vector, e.g. 'social engineering'.")

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError("must be 1-64 of a-z, 0-9, '_' or '-', starting alphanumeric")
        return v

    @field_validator("agent_should", "agent_should_not", mode="before")
    @classmethod
    def _criteria(cls, v: Any) -> Any:
        # A bare string is a criterion without a pattern.
        if isinstance(v, list):
            return [{"text": c} if isinstance(c, str) else c for c in v]
        return v

    @property
    def criteria(self) -> list[tuple[str, Criterion]]:
        """(kind, criterion) pairs, kind 'should' or 'should_not'."""
        return [("should", c) for c in self.agent_should] + [
            ("should_not", c) for c in self.agent_should_not
        ]


def _read(path: Path) -> Any:
    try:
        size = path.stat().st_size
        if size > MAX_SCENARIO_BYTES:
            raise ScenarioError(f"{path}: {size} bytes, larger than a scenario file may be")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(f"{path}: cannot read it: {e}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ScenarioError(
                f"{path}: YAML scenarios need PyYAML (pip install pyyaml)"
            ) from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ScenarioError(f"{path}: not valid YAML: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ScenarioError(f"{path}: not valid JSON (line {e.lineno}): {e.msg}") from None


def parse_scenario(data: Any, source: str) -> Scenario:
    """One scenario from parsed data; errors name ``source`` and the field."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario is a JSON object, got {type(data).__name__}")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"{source}: field '{field}': {err['msg']}")
        raise ScenarioError("\n".join(lines)) from None
    if not scenario.criteria:
        raise ScenarioError(
            f"{source}: field 'agent_should': a scenario needs at least one criterion "
            "(agent_should or agent_should_not)"
        )
    return scenario


def load_scenario(path: Path) -> Scenario:
    return parse_scenario(_read(path), str(path))


def scenario_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in (".json", ".yaml", ".yml") and p.is_file()
    )


def load_suite(folder: Path, only: Iterable[str] = ()) -> list[Scenario]:
    """Every scenario of ``folder`` (sorted by file name); ``only`` keeps those ids. Ids must
    be unique and the selection split must not be empty."""
    if not folder.is_dir():
        raise ScenarioError(f"{folder}: no such scenario folder")
    suite: list[Scenario] = []
    seen: dict[str, Path] = {}
    for path in scenario_files(folder):
        s = load_scenario(path)
        if s.id in seen:
            raise ScenarioError(f"{path}: field 'id': {s.id!r} is also the id in {seen[s.id]}")
        seen[s.id] = path
        suite.append(s)
    wanted = [x for x in only if x]
    if wanted:
        missing = sorted(set(wanted) - set(seen))
        if missing:
            raise ScenarioError(f"{folder}: no scenario with id {', '.join(missing)}")
        suite = [s for s in suite if s.id in wanted]
    if not any(s.split == "selection" for s in suite):
        raise ScenarioError(f"{folder}: no scenario has split 'selection': nothing to select on")
    return suite


def split(suite: Sequence[Scenario], name: str) -> list[Scenario]:
    return [s for s in suite if s.split == name]

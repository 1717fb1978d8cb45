"""The research config (``autoresearch.toml``): pydantic models, one per concern.

A bad config stops before anything runs with a :class:`ConfigError` that names the file, the
field and what to do.
"""

from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from autoresearch._errors import ConfigError
from autoresearch._layout import CONFIG_NAME

if TYPE_CHECKING:
    from autoresearch.proposers._agent_config import AgentConfig
    from autoresearch.proposers.llm._config import LLMConfig

# Start-up (imports, data loading, a model build) allowed before the budget starts; load on a
# shared machine can stretch it, so it ends early only when the command signals.
DEFAULT_STARTUP_ALLOWANCE_S = 60.0
# Time past the budget before the hard kill, as a fraction of the budget (eval, saving).
DEFAULT_GRACE_FACTOR = 0.5


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ObjectiveConfig(_Model):
    metric: str = Field("", description="Name of the primary metric (a column of results.tsv).")
    direction: Literal["minimize", "maximize"] = Field(
        "minimize", description="Whether a lower or a higher primary value is better."
    )
    source: Literal["summary", "metric-lines", "json"] = Field(
        "summary",
        description="Where the metric is read: the '---' block of 'name: value' lines, "
        "'METRIC name=value' lines, or a JSON file the command writes.",
    )
    json_file: str = Field(
        "metrics.json", description="With source='json': the file, relative to the domain folder."
    )
    secondary: list[str] = Field(
        default_factory=list, description="Further metric names to record (from the same source)."
    )
    holdout: list[str] = Field(
        default_factory=list,
        description="Metric names recorded as holdout: never used to decide, never shown "
        "to a proposer.",
    )
    class_path: str | None = Field(
        None,
        alias="class",
        description="An Objective subclass as 'module:Class': an installed module "
        "('autoresearch.objectives.ml:ValBpb') or a fixed file of the folder ('objective:Cls').",
    )
    args: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for the objective class."
    )
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _need_metric_or_class(self) -> ObjectiveConfig:
        if not self.metric and not self.class_path:
            raise ValueError("set 'metric' (a metric name) or 'class' (module:Class)")
        return self


class AcceptanceConfig(_Model):
    """``[acceptance]``: the policy and the built-in policies' settings. A table
    ``[acceptance.<policy>]`` overrides them for that policy only (a third-party policy with
    its own ``Config`` model reads only its table)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    policy: str = Field("greedy", description="Acceptance policy name (see `autoresearch --help`).")
    min_delta: float = Field(
        0.0, ge=0, description="Keep only improvements strictly larger than this (metric units)."
    )
    z: float = Field(
        2.0,
        gt=0,
        description="threshold: screen one run at max(min_delta, 0.75*z*sigma) over the "
        "incumbent's mean, then keep on a z-test at z of 4 fresh pairs with the incumbent's "
        "runs beside them.",
    )
    repeats: int | None = Field(
        None,
        ge=1,
        description="repeated/sequential/paired: most runs of a candidate, each with an "
        "incumbent run beside it (None: the policy's default, repeated 3, sequential 7, "
        "paired 6; paired needs at least 6).",
    )
    test: Literal["welch", "bootstrap", "z"] | None = Field(
        None,
        description="repeated/sequential: the significance test: Welch's t, a bootstrap "
        "P(better), or a z-test on the calibrated sigma (None: repeated welch, sequential z).",
    )
    p_value: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="welch/z: keep if the one-sided p-value is below this "
        "(None: repeated 0.05, sequential 0.03).",
    )
    p_better: float = Field(
        0.95, gt=0, lt=1, description="bootstrap: keep if P(candidate beats incumbent) >= this."
    )
    reject_margin_sigma: float = Field(
        -0.75,
        description="sequential: discard after the first run if it trails the incumbent's mean "
        "by more than this many sigma; negative demands a lead (-0.75: discard unless ahead by "
        "0.75 sigma).",
    )
    calibration_runs: int = Field(
        0,
        ge=0,
        description="Runs of the incumbent to estimate noise at the start (0: policy default).",
    )
    calibrate_every: int = Field(
        0, ge=0, description="Re-measure the incumbent's noise every N experiments (0: never)."
    )
    min_gain: float = Field(
        0.01,
        ge=0,
        description="paired: keep only if the median per-pair gain exceeds this fraction "
        "(0.01: 1% faster).",
    )

    @model_validator(mode="after")
    def _tables(self) -> AcceptanceConfig:
        shared = self.model_dump(exclude=set(self.__pydantic_extra__ or {}))

        def validate(name: str, raw: dict[str, Any]) -> BaseModel:
            cls = _plugin_class("autoresearch.acceptance", "POLICIES", "acceptance", name)
            model = getattr(cls, "Config", AcceptanceConfig)
            if model is AcceptanceConfig:
                unknown = sorted(set(raw) - set(AcceptanceConfig.model_fields))
                if unknown:
                    raise ValueError(f"acceptance.{name}.{unknown[0]}: unknown field")
                return AcceptanceConfig.model_validate({**shared, **raw, "policy": name})
            return model.model_validate(raw)

        _plugin_tables("acceptance", self.__pydantic_extra__ or {}, validate)
        return self

    def for_policy(self, name: str | None = None) -> Any:
        """The settings policy ``name`` (default: the chosen one) is built from: its table,
        merged over the shared fields, or the shared fields themselves."""
        name = name or self.policy
        extras = self.__pydantic_extra__ or {}
        if name in extras:
            return extras[name]
        if name == self.policy and not extras:
            return self
        return AcceptanceConfig.model_validate(
            {**self.model_dump(exclude=set(extras)), "policy": name}
        )


class KnobSpec(_Model):
    name: str = Field(description="The knob's name (shown in descriptions).")
    file: str = Field(description="The editable file holding the constant, relative to the domain.")
    constant: str = Field(description="The UPPER_CASE module-level constant that holds the value.")
    type: Literal["int", "float", "categorical"] = Field(description="Value type.")
    low: float | None = Field(None, description="int/float: lowest value.")
    high: float | None = Field(None, description="int/float: highest value.")
    log: bool = Field(False, description="int/float: sample on a log scale.")
    choices: list[Any] | None = Field(None, description="categorical: the allowed values.")

    @model_validator(mode="after")
    def _check(self) -> KnobSpec:
        if not self.constant.isupper() or not self.constant.replace("_", "").isalnum():
            raise ValueError(f"knob {self.name!r}: constant {self.constant!r} is not UPPER_CASE")
        if self.type == "categorical":
            if not self.choices:
                raise ValueError(f"knob {self.name!r}: a categorical knob needs 'choices'")
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"knob {self.name!r}: an {self.type} knob needs 'low' and 'high'")
            if self.low >= self.high:
                raise ValueError(f"knob {self.name!r}: low must be below high")
            if self.log and self.low <= 0:
                raise ValueError(f"knob {self.name!r}: a log-scale knob needs low > 0")
        return self


class PluginConfig(BaseModel):
    """The base of a plug-in's own settings table (``[proposer.<name>]``,
    ``[acceptance.<policy>]``): unknown fields are errors, values are frozen. A plug-in class
    names its model as ``Config``; the table is validated with it when the file is loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _plugin_tables(kind: str, extras: dict[str, Any], validate: Any) -> None:
    """Validate each extra table in place with ``validate(name, raw)``; errors name the
    table and the field (``proposer.llm.temperatur: unknown field``)."""
    for name, raw in list(extras.items()):
        if not isinstance(raw, dict):
            raise ValueError(
                f"{kind}.{name}: unknown field (check the spelling; a plug-in's own settings "
                f"go in a [{kind}.<name>] table)"
            )
        try:
            extras[name] = validate(name, raw)
        except ValidationError as e:
            problems = "; ".join(
                f"{kind}.{name}.{'.'.join(str(p) for p in err['loc'])}: "
                + ("unknown field" if err["type"] == "extra_forbidden" else err["msg"])
                for err in e.errors()
            )
            raise ValueError(problems) from None


def _plugin_class(registry_module: str, registry: str, kind: str, name: str) -> Any:
    import importlib

    reg = getattr(importlib.import_module(registry_module), registry)
    if name not in reg:
        raise ValueError(
            f"{kind}.{name}: no {reg.kind} named {name!r} (known: {', '.join(reg.names())})"
        )
    return reg.get(name, f"{kind}.{name}")


class ProposerConfig(_Model):
    """``[proposer]``: which proposer, and each proposer's own table (``[proposer.llm]``,
    ``[proposer.agent]``, or a third-party proposer's), validated by that proposer's model."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str | None = Field(
        None,
        description="Default proposer: knob, scripted, llm or agent (None: knob if knobs exist).",
    )
    seed: int = Field(0, description="Seed for search proposers.")
    script: str | None = Field(None, description="scripted: JSONL file, relative to the domain.")
    knobs: list[KnobSpec] = Field(
        default_factory=list, description="knob: the searchable constants."
    )

    @model_validator(mode="after")
    def _tables(self) -> ProposerConfig:
        def validate(name: str, raw: dict[str, Any]) -> BaseModel:
            cls = _plugin_class("autoresearch.proposers", "PROPOSERS", "proposer", name)
            model = getattr(cls, "Config", None)
            if model is None:
                raise ValueError(f"proposer.{name}: the {name} proposer takes no settings table")
            return model.model_validate(raw)

        _plugin_tables("proposer", self.__pydantic_extra__ or {}, validate)
        return self

    def table(self, name: str) -> Any:
        """Proposer ``name``'s settings: its validated table, or its model's defaults."""
        extras = self.__pydantic_extra__ or {}
        if name in extras:
            return extras[name]
        cls = _plugin_class("autoresearch.proposers", "PROPOSERS", "proposer", name)
        model = getattr(cls, "Config", None)
        return model() if model is not None else None

    @property
    def llm(self) -> LLMConfig:
        return self.table("llm")

    @property
    def agent(self) -> AgentConfig:
        return self.table("agent")


class TrackingConfig(_Model):
    """Where every experiment is also logged (``[tracking]``): an experiment tracker."""

    mlflow: str | None = Field(
        None,
        description='MLflow tracking URI, or "local" for a sqlite store under '
        ".autoresearch/ (what `run --mlflow` with no URI gives); none: no MLflow.",
    )


class ResearchConfig(_Model):
    """The whole research config of one domain folder (after the preset is merged)."""

    name: str = Field("", description="Short name of the research setup.")
    description: str = Field("", description="One line shown by `autoresearch domains`.")
    editable: list[str] = Field(
        description="Globs (relative to the folder) a candidate may change."
    )
    fixed: list[str] = Field(
        default_factory=list,
        description="Globs of harness files: read-only, hash-checked each run.",
    )
    program: str = Field("program.md", description="The research program a proposer reads.")
    command: str = Field(
        description="Shell command that runs one experiment, in the domain folder."
    )
    eval_command: str | None = Field(
        None,
        description="Fixed harness command run after `command`; its output is the trusted one.",
    )
    time_budget_s: float = Field(
        300.0, gt=0, description="The experiment's budget, given as AUTORESEARCH_TIME_BUDGET_S."
    )
    startup_allowance_s: float = Field(
        DEFAULT_STARTUP_ALLOWANCE_S,
        ge=0,
        description="Start-up time allowed before the budget: it ends when the command "
        "signals that budgeted work began (autoresearch.harness.budget_started).",
    )
    grace_s: float | None = Field(
        None,
        ge=0,
        description="Time allowed past the budget before the hard kill (None: half the budget).",
    )
    timeout_s: float | None = Field(
        None,
        gt=0,
        description="An absolute ceiling on the command's wall time, on top of "
        "start-up allowance + budget + grace (None: none).",
    )
    eval_timeout_s: float | None = Field(
        None,
        gt=0,
        description="Hard kill of eval_command (default: start-up allowance + budget + grace).",
    )
    baseline_retries: int = Field(
        1,
        ge=0,
        description="Further attempts of a baseline that crashed or timed out on the "
        "unmodified files before the run gives up.",
    )
    memory_limit_mb: int | None = Field(
        None,
        gt=0,
        description="Memory cap on the run's whole process tree, its tmpfs /tmp included "
        "(None: 80% of the machine's memory, so the driver survives it).",
    )
    log_limit_mb: float = Field(
        10.0, gt=0, description="Log size cap; the head and the tail are kept."
    )
    network: bool = Field(
        True,
        description="False: the commands run with no network. True: outbound access through "
        "a user-mode stack (pasta), the machine's loopback services out of reach.",
    )
    readable: list[str] = Field(
        default_factory=list,
        description="Files or folders outside the domain a run may read (a dataset on disk): "
        "'~' and variables are expanded. A sandboxed run sees nothing else of the machine "
        "but the system, the interpreter and its packages.",
    )
    pids_limit: int | None = Field(
        4096, ge=16, description="Most processes and threads a run may have at once (None: none)."
    )
    disk_limit_mb: int | None = Field(
        20480,
        gt=0,
        description="Most MB the run's folder may hold, and its /tmp and $HOME each (None: none).",
    )
    shared_candidate_cache: bool = Field(
        False,
        description="Keep the candidates' AUTORESEARCH_CACHE_DIR from run to run (compiled "
        "kernels). Off: every run starts with an empty one, so no run can carry state (saved "
        "weights, a result) into another's.",
    )
    env_allow: list[str] = Field(
        default_factory=list,
        description="Variables kept although they look like credentials (globs).",
    )
    env_deny: list[str] = Field(
        default_factory=list,
        description="Further variables removed from the run's environment (globs).",
    )
    env: dict[str, str] = Field(default_factory=dict, description="Variables set for every run.")
    editable_are_data: bool = Field(
        False,
        description="The editable files are data (a prompt), never run: refused when an "
        "editable file is code (a script extension, the executable bit). Allows eval_secrets.",
    )
    eval_secrets: list[str] = Field(
        default_factory=list,
        description="With editable_are_data: credential variables of your environment passed "
        "to eval_command only (a provider key for a prompt eval); command never gets them.",
    )
    prepare_command: str | None = Field(
        None,
        description="Fixed command the engine runs once before the baseline, in a copy of the "
        "fixed files: it writes what `command` may read into $AUTORESEARCH_DATA_DIR and what "
        "only eval_command may read into $AUTORESEARCH_EVAL_DATA_DIR (checksummed, read-only).",
    )
    prepare_network: bool = Field(
        True, description="Whether prepare_command may use the network (a first download)."
    )
    prepare_timeout_s: float = Field(3600.0, gt=0, description="Hard kill of prepare_command.")
    prepare_env: dict[str, str] = Field(
        default_factory=dict,
        description="Variables for prepare_command only (on top of env); no run sees them.",
    )
    prepare_readable: list[str] = Field(
        default_factory=list,
        description="Files or folders outside the domain prepare_command may read (a raw "
        "corpus, a price file; '~' and variables expanded); no run sees them.",
    )
    data_seed_env: str | None = Field(
        None,
        description="A variable prepare_command gets holding a seed drawn once per domain "
        "folder and kept in the ledger (no file a candidate reads): synthetic data it cannot "
        "regenerate.",
    )
    gate_command: str | list[str] | None = Field(
        None,
        description="Command(s) that must pass before a keep (tests, a type check, lint), run "
        "in the candidate's worktree, in the sandbox, after the metric decided for it; a "
        "test summary they print may not count fewer tests than the unmodified code's.",
    )
    gate_timeout_s: float = Field(
        600.0, gt=0, description="Hard kill of each gate command (its time is not measured)."
    )
    gate_retries: int = Field(
        0,
        ge=0,
        description="Further attempts of a failing gate command before it counts as failed "
        "(for a flaky suite); the unmodified code's check gets as many.",
    )
    objective: ObjectiveConfig = Field(description="How a run is measured.")
    acceptance: AcceptanceConfig = Field(
        default_factory=AcceptanceConfig, description="How keep/discard is decided."
    )
    proposer: ProposerConfig = Field(
        default_factory=ProposerConfig, description="Who proposes candidates."
    )
    default_preset: str | None = Field(None, description="Preset used when --preset is not given.")
    tracking: TrackingConfig = Field(
        default_factory=TrackingConfig, description="Experiment trackers (MLflow)."
    )

    @property
    def gate_commands(self) -> tuple[str, ...]:
        """``gate_command`` as a tuple (empty without one)."""
        if self.gate_command is None:
            return ()
        if isinstance(self.gate_command, str):
            return (self.gate_command,)
        return tuple(self.gate_command)

    def readable_paths(self) -> tuple[Path, ...]:
        """``readable``, expanded and absolute (relative paths are from the current folder)."""
        return tuple(
            Path(os.path.expandvars(os.path.expanduser(p))).resolve() for p in self.readable
        )

    @property
    def run_grace_s(self) -> float:
        return self.time_budget_s * DEFAULT_GRACE_FACTOR if self.grace_s is None else self.grace_s

    @property
    def hard_timeout_s(self) -> float:
        """The longest a command can run: start-up allowance + budget + grace, capped by
        ``timeout_s``. A command that signals its start early is killed earlier (the sandbox
        moves the deadline to signal + budget + grace)."""
        total = self.startup_allowance_s + self.time_budget_s + self.run_grace_s
        return total if self.timeout_s is None else min(total, self.timeout_s)

    @model_validator(mode="after")
    def _check(self) -> ResearchConfig:
        if not self.editable:
            raise ValueError("'editable' is empty: list the files a candidate may change")
        for pattern in [*self.editable, *self.fixed]:
            if pattern.startswith("/") or ".." in Path(pattern).parts:
                raise ValueError(f"glob {pattern!r} must be relative to the folder, without '..'")
        if self.timeout_s is not None and self.timeout_s < self.time_budget_s:
            raise ValueError(
                f"timeout_s ({self.timeout_s}) is below time_budget_s ({self.time_budget_s}): "
                "the hard kill must come after the budget"
            )
        if self.data_seed_env is not None and not self.data_seed_env.isidentifier():
            raise ValueError(f"data_seed_env {self.data_seed_env!r} is not a variable name")
        if self.data_seed_env is not None and self.prepare_command is None:
            raise ValueError("data_seed_env is set but prepare_command is not: nothing gets it")
        if self.data_seed_env is not None and self.data_seed_env in self.env:
            raise ValueError(
                f"env sets {self.data_seed_env}, the data_seed_env variable: every run would "
                "see the seed. Remove it from env (a fixed, public seed goes in prepare_env)."
            )
        if any(not c.strip() for c in self.gate_commands) or self.gate_command == []:
            raise ValueError("gate_command: a gate command is empty; give a shell command")
        if self.eval_secrets and not self.editable_are_data:
            raise ValueError(
                "eval_secrets needs editable_are_data = true: keys may reach the evaluator "
                "only when no candidate code runs"
            )
        if self.editable_are_data:
            from autoresearch._data_candidates import pattern_problems

            problems = pattern_problems(self.editable, self.eval_secrets)
            if problems:
                raise ValueError("; ".join(problems))
        return self


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _format_errors(
    path: Path, err: ValidationError, overridden: frozenset[str] = frozenset()
) -> str:
    lines = [f"{path}: invalid config"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if loc in overridden:
            loc = f"{loc} (given as an override, not in the file)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see the config reference in the README)"
        elif e["type"] == "missing":
            msg = "required field is missing"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def read_raw(path: Path, text: str | None = None) -> dict[str, Any]:
    """The TOML of ``path``; ``text``: its content as already read (from a commit)."""
    try:
        text = path.read_text(encoding="utf-8") if text is None else text
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file. Create one with `autoresearch init {path.parent}`."
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def preset_names(raw: dict[str, Any]) -> list[str]:
    presets = raw.get("presets", {})
    return sorted(presets) if isinstance(presets, dict) else []


def load_config(
    domain_dir: Path,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    text: str | None = None,
) -> tuple[ResearchConfig, str | None]:
    """Read ``DIR/autoresearch.toml``, merge the preset and overrides, validate.

    Returns the config and the name of the preset used (None for none).
    Overrides use dotted keys for nested fields (``{"acceptance.policy": "greedy"}``).
    ``text`` is the file's content as already read (a run passes its base commit's), so the
    checkout is not read at all.
    """
    path = domain_dir / CONFIG_NAME
    raw = read_raw(path, text)
    presets = raw.pop("presets", {})
    if not isinstance(presets, dict):
        raise ConfigError(f"{path}: presets: must be a table of tables ([presets.cpu], ...)")
    chosen = preset if preset is not None else raw.get("default_preset")
    if chosen is not None:
        if chosen not in presets:
            known = ", ".join(sorted(presets)) or "none defined"
            raise ConfigError(
                f"{path}: preset {chosen!r} not found (presets: {known}). "
                "Pick one with --preset or define [presets.NAME]."
            )
        if not isinstance(presets[chosen], dict):
            raise ConfigError(f"{path}: presets.{chosen}: must be a table")
        raw = _deep_merge(raw, presets[chosen])
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    try:
        config = ResearchConfig.model_validate(raw)
    except ValidationError as e:
        overridden = frozenset(k for k, v in (overrides or {}).items() if v is not None)
        raise ConfigError(_format_errors(path, e, overridden)) from None
    return config, chosen

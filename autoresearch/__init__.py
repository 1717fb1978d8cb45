"""autoresearch: autonomous keep/revert research loops with a harness the proposer cannot edit.

The public surface is re-exported here; implementation lives in private modules. Plug-ins
live in their own subpackages: ``autoresearch.proposers``, ``autoresearch.acceptance``,
``autoresearch.execution``, ``autoresearch.objectives``; ``autoresearch.harness`` is the kit
a domain's fixed files use, and ``autoresearch.testing`` the kit for testing plug-ins.

Names are imported on first use (PEP 562), so ``import autoresearch.harness`` inside a
sandboxed run, or ``autoresearch --help``, does not load the engine.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from autoresearch import acceptance, execution, proposers
    from autoresearch._config import (
        AcceptanceConfig,
        KnobSpec,
        ObjectiveConfig,
        PluginConfig,
        ProposerConfig,
        ResearchConfig,
        load_config,
    )
    from autoresearch._errors import (
        BaselineFailed,
        BudgetExhausted,
        ConfigError,
        DataError,
        Interrupted,
        IsolationError,
        MetricMissing,
        ProposalError,
        ScopeError,
        SessionError,
        WorkspaceError,
    )
    from autoresearch._ledger import Ledger
    from autoresearch._loop import Loop
    from autoresearch._objective import (
        MetricObjective,
        Objective,
        load_run_json,
        parse_metric_lines,
        parse_summary,
    )
    from autoresearch._registry import Registry, import_path
    from autoresearch._types import (
        Candidate,
        Cause,
        Context,
        Edit,
        Event,
        EventKind,
        ExperimentKind,
        ExperimentRecord,
        GateResult,
        HistoryEntry,
        Measurement,
        RunKind,
        RunRecord,
        RunResult,
        RunSummary,
        Status,
        TagInfo,
    )
    from autoresearch.acceptance import Acceptance, Decision, Evidence, Verdict
    from autoresearch.execution import LocalSandbox, RunSpec, Sandbox
    from autoresearch.proposers import Proposer, ProposerOptions, ProposerSettings

__version__ = "0.1.0"

__all__ = [
    "Acceptance",
    "AcceptanceConfig",
    "BaselineFailed",
    "BudgetExhausted",
    "Candidate",
    "Cause",
    "ConfigError",
    "Context",
    "DataError",
    "Decision",
    "Edit",
    "Event",
    "EventKind",
    "Evidence",
    "ExperimentKind",
    "ExperimentRecord",
    "GateResult",
    "HistoryEntry",
    "Interrupted",
    "IsolationError",
    "KnobSpec",
    "Ledger",
    "LocalSandbox",
    "Loop",
    "Measurement",
    "MetricMissing",
    "MetricObjective",
    "Objective",
    "ObjectiveConfig",
    "PluginConfig",
    "ProposalError",
    "Proposer",
    "ProposerConfig",
    "ProposerOptions",
    "ProposerSettings",
    "Registry",
    "ResearchConfig",
    "RunKind",
    "RunRecord",
    "RunResult",
    "RunSpec",
    "RunSummary",
    "Sandbox",
    "ScopeError",
    "SessionError",
    "Status",
    "TagInfo",
    "Verdict",
    "WorkspaceError",
    "__version__",
    "acceptance",
    "execution",
    "import_path",
    "load_config",
    "load_run_json",
    "parse_metric_lines",
    "parse_summary",
    "proposers",
]

# Public name -> the module that defines it (a subpackage's name maps to the subpackage).
_LAZY: dict[str, str] = {
    "Acceptance": "autoresearch.acceptance",
    "AcceptanceConfig": "autoresearch._config",
    "BaselineFailed": "autoresearch._errors",
    "BudgetExhausted": "autoresearch._errors",
    "Candidate": "autoresearch._types",
    "Cause": "autoresearch._types",
    "ConfigError": "autoresearch._errors",
    "Context": "autoresearch._types",
    "DataError": "autoresearch._errors",
    "IsolationError": "autoresearch._errors",
    "Decision": "autoresearch.acceptance",
    "Edit": "autoresearch._types",
    "Event": "autoresearch._types",
    "EventKind": "autoresearch._types",
    "Evidence": "autoresearch.acceptance",
    "ExperimentKind": "autoresearch._types",
    "ExperimentRecord": "autoresearch._types",
    "GateResult": "autoresearch._types",
    "HistoryEntry": "autoresearch._types",
    "Interrupted": "autoresearch._errors",
    "KnobSpec": "autoresearch._config",
    "Ledger": "autoresearch._ledger",
    "LocalSandbox": "autoresearch.execution",
    "Loop": "autoresearch._loop",
    "Measurement": "autoresearch._types",
    "MetricMissing": "autoresearch._errors",
    "MetricObjective": "autoresearch._objective",
    "Objective": "autoresearch._objective",
    "ObjectiveConfig": "autoresearch._config",
    "PluginConfig": "autoresearch._config",
    "ProposalError": "autoresearch._errors",
    "Proposer": "autoresearch.proposers",
    "ProposerConfig": "autoresearch._config",
    "ProposerOptions": "autoresearch.proposers",
    "ProposerSettings": "autoresearch.proposers",
    "Registry": "autoresearch._registry",
    "ResearchConfig": "autoresearch._config",
    "RunKind": "autoresearch._types",
    "RunRecord": "autoresearch._types",
    "RunResult": "autoresearch._types",
    "RunSpec": "autoresearch.execution",
    "RunSummary": "autoresearch._types",
    "Sandbox": "autoresearch.execution",
    "ScopeError": "autoresearch._errors",
    "SessionError": "autoresearch._errors",
    "Status": "autoresearch._types",
    "TagInfo": "autoresearch._types",
    "Verdict": "autoresearch.acceptance",
    "WorkspaceError": "autoresearch._errors",
    "acceptance": "autoresearch.acceptance",
    "execution": "autoresearch.execution",
    "import_path": "autoresearch._registry",
    "load_config": "autoresearch._config",
    "load_run_json": "autoresearch._objective",
    "parse_metric_lines": "autoresearch._objective",
    "parse_summary": "autoresearch._objective",
    "proposers": "autoresearch.proposers",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'autoresearch' has no attribute {name!r}")
    if module == f"autoresearch.{name}":
        value: object = importlib.import_module(module)
    else:
        value = getattr(importlib.import_module(module), name)
        from autoresearch._registry import publish

        publish({name: value}, [name], "autoresearch")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

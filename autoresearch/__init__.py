"""autoresearch: autonomous keep/revert research loops with a harness the proposer cannot edit.

The public surface is re-exported here; implementation lives in private modules. Plug-ins
live in their own subpackages: ``autoresearch.proposers``, ``autoresearch.acceptance``,
``autoresearch.execution``, ``autoresearch.objectives``; ``autoresearch.harness`` is the kit
a domain's fixed files use, and ``autoresearch.testing`` the kit for testing plug-ins.
"""

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
    Interrupted,
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
from autoresearch._registry import publish as _publish
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


_publish(globals(), __all__, "autoresearch")

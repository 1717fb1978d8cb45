"""autoresearch: autonomous keep/revert research loops with a harness the proposer cannot edit.

The public surface is re-exported here; implementation lives in private modules.
"""

from autoresearch._config import ResearchConfig, load_config
from autoresearch._errors import BaselineFailed, ConfigError, MetricMissing
from autoresearch._ledger import Ledger
from autoresearch._loop import Loop
from autoresearch._objective import MetricObjective, Objective
from autoresearch._types import (
    Candidate,
    Context,
    Edit,
    Event,
    ExperimentRecord,
    GateResult,
    HistoryEntry,
    Measurement,
    RunResult,
    RunSummary,
    Status,
)
from autoresearch.acceptance._base import Acceptance, Decision, Evidence, Greedy, Verdict
from autoresearch.execution._sandbox import LocalSandbox, RunSpec, Sandbox
from autoresearch.proposers._base import Proposer, ProposerSettings

__version__ = "0.1.0"

__all__ = [
    "Acceptance",
    "BaselineFailed",
    "Candidate",
    "ConfigError",
    "Context",
    "Decision",
    "Edit",
    "Event",
    "Evidence",
    "ExperimentRecord",
    "GateResult",
    "Greedy",
    "HistoryEntry",
    "Ledger",
    "LocalSandbox",
    "Loop",
    "Measurement",
    "MetricMissing",
    "MetricObjective",
    "Objective",
    "Proposer",
    "ProposerSettings",
    "ResearchConfig",
    "RunResult",
    "RunSpec",
    "RunSummary",
    "Sandbox",
    "Status",
    "Verdict",
    "__version__",
    "load_config",
]

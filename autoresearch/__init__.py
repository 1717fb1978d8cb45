"""autoresearch: autonomous keep/revert research loops with a harness the proposer cannot edit.

The public surface is re-exported here; implementation lives in private modules.
"""

from ._acceptance import Acceptance, Decision, Evidence, Greedy, Verdict
from ._config import ConfigError, ResearchConfig, load_config
from ._ledger import Ledger
from ._loop import Loop
from ._objective import MetricMissing, MetricObjective, Objective
from ._proposer import Proposer, ProposerSettings
from ._sandbox import LocalSandbox, RunSpec, Sandbox
from ._types import (
    BaselineFailed,
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

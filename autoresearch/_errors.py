"""Every error a user or a plug-in author can meet, in one place (re-exported publicly).

Each message says what was wrong, where (file, field) and what to do.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A config that cannot be used; the message says the file, the field and the fix."""


class SessionError(Exception):
    """The run cannot start (the folder is locked, the tag exists, files are uncommitted...);
    the message says why and what to do."""


class DataError(SessionError):
    """A domain's prepared data cannot be used: its prepare step failed, or a file no longer
    matches the checksum taken when it was built (the run stops before it scores on it). The
    message names the file and what to do."""


class WorkspaceError(Exception):
    """A git or folder problem the user must fix; the message says what to do."""


class ScopeError(Exception):
    """A candidate's edit breaks the scope rules (the experiment is ``invalid``)."""


class ProposalError(Exception):
    """No candidate this time: the loop records the experiment ``invalid`` with this message
    and goes on. ``tokens`` and ``cost_usd`` are what the failed attempt spent (recorded)."""

    def __init__(self, message: str, tokens: int = 0, cost_usd: float = 0.0) -> None:
        super().__init__(message)
        self.tokens = tokens
        self.cost_usd = cost_usd


class BudgetExhausted(ProposalError):
    """The next proposal could exceed the run's token or cost budget: the loop stops."""


class MetricMissing(Exception):
    """The run produced no value for the primary metric (the experiment is a crash)."""


class BaselineFailed(Exception):
    """The unmodified target did not produce a metric: the loop cannot start."""


class Interrupted(Exception):
    """A run ended because of Ctrl-C / SIGTERM: the loop stops."""


class IsolationError(Exception):
    """A proposer whose candidates are code the user did not write, and no sandbox that can
    isolate them (and no explicit ``--unsafe-no-isolation``)."""


__all__ = [
    "BaselineFailed",
    "BudgetExhausted",
    "ConfigError",
    "DataError",
    "Interrupted",
    "IsolationError",
    "MetricMissing",
    "ProposalError",
    "ScopeError",
    "SessionError",
    "WorkspaceError",
]

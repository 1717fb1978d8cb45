"""``[proposer.agent]``: the agent proposer's own config model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from autoresearch._config import PluginConfig

# Agent state and caches that coding agents leave in their working folder.
AGENT_IGNORE_DEFAULT = (
    ".git/*",
    "__pycache__/*",
    "*/__pycache__/*",
    "*.pyc",
    ".aider*",
    ".claude/*",
    ".codex/*",
)


class AgentConfig(PluginConfig):
    """``[proposer.agent]``: the agent proposer's settings."""

    command: str | None = Field(None, description="The coding agent's command line.")
    prompt_via: Literal["stdin", "arg"] = Field(
        "stdin", description="How the prompt is handed over."
    )
    timeout_s: float = Field(900.0, gt=0, description="Time limit for one proposal.")
    env_allow: list[str] = Field(
        default_factory=list, description="Credential variables the agent may see (glob patterns)."
    )
    ignore: list[str] = Field(
        default_factory=lambda: list(AGENT_IGNORE_DEFAULT),
        description="Globs of by-product files the agent may leave that are not part of the edit.",
    )

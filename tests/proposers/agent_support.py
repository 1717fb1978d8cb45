"""What the agent proposer tests share: the context of a first proposal on the toy domain
and an Agent built around a stand-in command."""

from __future__ import annotations

from pathlib import Path

from autoresearch import Context
from autoresearch.proposers import Agent, AgentConfig
from autoresearch.testing import domain_context


def context(domain: Path, params: str | None = None) -> Context:
    """What the agent is shown (``params`` in place of the folder's params.py, if given)."""
    files = {"params.py": params if params is not None else (domain / "params.py").read_text()}
    return domain_context(
        domain, files=files, best_value=11.0, baseline_value=11.0, experiment_id=2
    )


def agent(tmp_path: Path, command: str, **config: object) -> Agent:
    cfg = AgentConfig(command=command, **config)  # type: ignore[arg-type]
    return Agent(cfg, tmp_path / "toy", tmp_path / "state" / "agent-logs")

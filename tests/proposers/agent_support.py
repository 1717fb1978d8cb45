"""What the agent proposer tests share: the context of a first proposal on the toy domain
and an Agent built around a stand-in command."""

from __future__ import annotations

from pathlib import Path

from autoresearch import Context, load_config
from autoresearch.proposers import Agent, AgentConfig, ProposerSettings
from autoresearch.testing import domain_context


def context(domain: Path, params: str | None = None) -> Context:
    """What the agent is shown (``params`` in place of the folder's params.py, if given)."""
    files = {"params.py": params if params is not None else (domain / "params.py").read_text()}
    return domain_context(
        domain, files=files, best_value=11.0, baseline_value=11.0, experiment_id=2
    )


def agent(tmp_path: Path, command: str, **config: object) -> Agent:
    """An Agent, started as a run starts it: with the folder's files as the base's."""
    cfg = AgentConfig(command=command, **config)  # type: ignore[arg-type]
    domain = tmp_path / "toy"
    a = Agent(cfg, domain, tmp_path / "state" / "agent-logs")
    base = {
        p.relative_to(domain).as_posix(): p.read_text()
        for p in domain.rglob("*")
        if p.is_file() and ".git" not in p.parts
    }
    research, _ = load_config(domain)
    state = tmp_path / "state"
    a.start(
        ProposerSettings(research, domain, state, state / "ledger.sqlite", "t", base_files=base)
    )
    return a

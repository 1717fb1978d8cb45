"""Regressions for the agent proposer: interrupts, large stdin prompts, git in the scratch copy."""

from __future__ import annotations

import shlex
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import pytest
from conftest import pids_alive

from autoresearch.proposers import _agent
from autoresearch.proposers import AgentConfig
from autoresearch._errors import ProposalError
from autoresearch._types import Context, Edit
from autoresearch.proposers._agent import Agent
from autoresearch.testing import make_toy_domain


@pytest.fixture
def domain(tmp_path: Path) -> Path:
    return make_toy_domain(tmp_path / "toy", git=True)


def context(domain: Path, params: str | None = None) -> Context:
    return Context(
        program="p",
        files={"params.py": params if params is not None else (domain / "params.py").read_text()},
        history=(),
        metric="score",
        direction="minimize",
        best_value=11.0,
        baseline_value=11.0,
        experiment_id=2,
        editable_globs=("params.py",),
    )


def agent(tmp_path: Path, command: str, **config: object) -> Agent:
    cfg = AgentConfig(command=command, **config)  # type: ignore[arg-type]
    return Agent(cfg, tmp_path / "toy", tmp_path / "state" / "agent-logs")


def test_ctrl_c_during_a_proposal_kills_the_agent(tmp_path: Path, domain: Path) -> None:
    tracer = f"agent-interrupted-{tmp_path.name}"
    body = "import time; time.sleep(60)"
    command = f"{shlex.quote(sys.executable)} -c {shlex.quote(body)} {tracer}"
    proposer = agent(tmp_path, command, timeout_s=30.0)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(1)
    try:
        with pytest.raises(KeyboardInterrupt):
            proposer.propose(context(domain))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert pids_alive(tracer) == []


def test_time_limit_holds_with_a_prompt_larger_than_the_pipe(tmp_path: Path, domain: Path) -> None:
    # The agent never reads stdin: writing a 200 KB prompt would block without a thread.
    proposer = agent(tmp_path, "sleep 30", timeout_s=1.0, prompt_via="stdin")
    params = ("X = 0.0  # " + "a" * 200 + "\n") * 1000
    started = time.monotonic()
    with pytest.raises(ProposalError, match="did not finish within 1 s"):
        proposer.propose(context(domain, params))
    assert time.monotonic() - started < 15


def test_scratch_copy_is_a_git_repository_and_git_is_no_edit(tmp_path: Path, domain: Path) -> None:
    body = (
        "import pathlib, subprocess\n"
        "subprocess.run(['git', 'rev-parse', 'HEAD'], check=True)\n"
        "pathlib.Path('params.py').write_text('X = 3.0\\nY = 1.0\\n')\n"
        "subprocess.run(['git', 'commit', '-qam', 'agent'], check=True)\n"
    )
    path = tmp_path / "agent.py"
    path.write_text(body)
    proposer = agent(tmp_path, f"{shlex.quote(sys.executable)} {path}", prompt_via="arg")
    candidate = proposer.propose(context(domain))
    assert candidate.edits == (Edit("params.py", content="X = 3.0\nY = 1.0\n"),)


def test_a_huge_prompt_as_an_argument_is_a_clear_error(
    tmp_path: Path, domain: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_agent, "MAX_ARG_PROMPT_BYTES", 100)
    proposer = agent(tmp_path, "true", prompt_via="arg")
    with pytest.raises(ProposalError, match="too long to pass as a command-line argument"):
        proposer.propose(context(domain))

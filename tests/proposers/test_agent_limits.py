"""The agent proposer's limits: its time limit stops the agent and every process it started
(also with a prompt larger than the pipe), Ctrl-C during a proposal kills it, and a prompt
too long for an argument is a clear error."""

from __future__ import annotations

import shlex
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import pytest
from agent_support import agent, context
from conftest import pids_alive

from autoresearch import ProposalError
from autoresearch.proposers import _agent


@pytest.fixture
def domain(toy: Path) -> Path:
    return toy


def test_time_limit_stops_the_agent_and_its_children(tmp_path: Path, domain: Path) -> None:
    tracer = f"agent-child-{tmp_path.name}"
    body = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', {tracer!r}])\n"
        "print('thinking', flush=True)\ntime.sleep(60)\n"
    )
    path = tmp_path / "agent.py"
    path.write_text(body)
    proposer = agent(tmp_path, f"{shlex.quote(sys.executable)} {path}", timeout_s=1.0)
    with pytest.raises(ProposalError, match=r"did not finish within 1 s") as info:
        proposer.propose(context(domain))
    assert "thinking" in str(info.value)
    assert pids_alive(tracer) == []


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


def test_a_huge_prompt_as_an_argument_is_a_clear_error(
    tmp_path: Path, domain: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_agent, "MAX_ARG_PROMPT_BYTES", 100)
    proposer = agent(tmp_path, "true", prompt_via="arg")
    with pytest.raises(ProposalError, match="too long to pass as a command-line argument"):
        proposer.propose(context(domain))

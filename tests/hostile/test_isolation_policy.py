"""Where candidates cannot be isolated, `run` refuses proposers whose candidates are code the
user did not write (llm, agent, any third-party proposer) unless the user passes an explicit
--unsafe-no-isolation, and says what is then exposed; knob and scripted only warn."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import path_without_bwrap

from autoresearch import IsolationError, Loop
from autoresearch.proposers import LLM, Knob, Scripted
from autoresearch.testing import FakeOpenAIServer, FakeSandbox, Reply, make_toy_domain

# An endpoint that needs no key; nothing here contacts it.
URL = "http://127.0.0.1:9/v1"
GOOD = "X to 3.\n\n```python params.py\nX = 3.0\nY = 1.0\n```\n"


class Outsider(Scripted):
    """A third-party proposer (here: a subclass, which is someone else's code too)."""

    name = "outsider"


def test_an_llm_without_isolation_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    toy = make_toy_domain(tmp_path / "toy", git=True)
    with pytest.raises(IsolationError) as e:
        Loop.from_dir(
            toy, proposer=LLM(model="m", base_url=URL), sandbox=FakeSandbox(isolated=False)
        )
    message = str(e.value)
    assert "--unsafe-no-isolation" in message and "/proc/<pid>/environ" in message
    assert "ledger" in message
    assert not (toy / ".autoresearch").exists()


@pytest.mark.parametrize("proposer", [LLM(model="m", base_url=URL), Outsider([])])
def test_the_explicit_opt_out_runs_and_says_what_is_exposed(
    tmp_path: Path, proposer: object
) -> None:
    toy = make_toy_domain(tmp_path / "toy", git=True)
    if isinstance(proposer, Outsider):
        with pytest.raises(IsolationError, match="outsider"):
            Loop.from_dir(toy, proposer=proposer, sandbox=FakeSandbox(isolated=False))  # type: ignore[arg-type]
    loop = Loop.from_dir(
        toy,
        proposer=proposer,  # type: ignore[arg-type]
        sandbox=FakeSandbox(isolated=False),
        unsafe_no_isolation=True,
    )
    assert any("unisolated and can reach" in n for n in loop.isolation_notes)


@pytest.mark.parametrize("name", ["knob", "scripted"])
def test_the_users_own_edits_only_warn(tmp_path: Path, name: str) -> None:
    toy = make_toy_domain(tmp_path / "toy", git=True)
    proposer = "knob" if name == "knob" else Scripted([])
    loop = Loop.from_dir(toy, proposer=proposer, sandbox=FakeSandbox(isolated=False))
    assert isinstance(loop.proposer, Knob if name == "knob" else Scripted)
    assert len(loop.isolation_notes) == 1 and "your own edits" in loop.isolation_notes[0]


def test_an_isolated_sandbox_needs_no_opt_out(tmp_path: Path) -> None:
    toy = make_toy_domain(tmp_path / "toy", git=True)
    loop = Loop.from_dir(
        toy, proposer=LLM(model="m", base_url=URL), sandbox=FakeSandbox(isolated=True)
    )
    assert loop.isolation_notes == []


def test_the_cli_refuses_then_runs_with_the_flag(tmp_path: Path) -> None:
    toy = make_toy_domain(tmp_path / "toy", git=True)
    env = {**os.environ, "PATH": path_without_bwrap(tmp_path), "OPENAI_API_KEY": "sk-x" * 8}
    assert shutil.which("bwrap", path=env["PATH"]) is None
    with FakeOpenAIServer(model="fake") as server:
        server.add(Reply(GOOD))
        cmd = [sys.executable, "-m", "autoresearch.cli", "run", str(toy), "--tag", "p"]
        cmd += ["--proposer", "llm", "--model", "fake", "--base-url", server.base_url]
        cmd += ["--max-experiments", "1"]
        refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2, refused.stderr
        assert "--unsafe-no-isolation" in refused.stderr and "bubblewrap" in refused.stderr
        assert not (toy / ".autoresearch" / "ledger.sqlite").exists()
        ran = subprocess.run(
            [*cmd, "--unsafe-no-isolation"], env=env, capture_output=True, text=True, timeout=120
        )
    assert ran.returncode == 0, ran.stderr
    assert "unisolated and can reach" in ran.stdout + ran.stderr

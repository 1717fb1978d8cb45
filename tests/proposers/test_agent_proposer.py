"""Agent with a stand-in coding agent (a small Python script): the scratch copy (a git
repository of its own), the prompt on stdin, as an argument or in a file, a scrubbed
environment, and the changes as edits. Time limits and interrupts: test_agent_limits.py."""

from __future__ import annotations

import json
import shlex
import sys
import textwrap
from pathlib import Path

import pytest
from agent_support import agent, context

from autoresearch import ConfigError, Edit, ProposalError
from autoresearch.proposers import Agent, AgentConfig
from autoresearch.proposers._agent import PROPOSAL_FILE

NEW_PARAMS = "X = 3.0\nY = 1.0\n"

AGENT = (
    textwrap.dedent(
        """\
    import json, os, pathlib, sys
    out = pathlib.Path(sys.argv[1])
    mode = sys.argv[2]
    prompt = sys.stdin.read() if mode == "stdin" else sys.argv[3]
    out.joinpath("prompt.txt").write_text(prompt)
    out.joinpath("env.json").write_text(json.dumps(sorted(os.environ)))
    out.joinpath("cwd.txt").write_text(os.getcwd())
    pathlib.Path("params.py").write_text(NEW_PARAMS)
    pathlib.Path(PROPOSAL_FILE).write_text(json.dumps(
        {"description": "agent moved X and Y", "hypothesis": "the optimum is (3, 1)"}))
    pathlib.Path(".aider.chat.history.md").write_text("by-product")
    if os.environ.get("AGENT_EXTRA") == "delete":
        os.remove("run.py")
    """
    )
    .replace("NEW_PARAMS", repr(NEW_PARAMS))
    .replace("PROPOSAL_FILE", repr(PROPOSAL_FILE))
)


@pytest.fixture
def domain(toy: Path) -> Path:
    return toy


def script(tmp_path: Path, body: str = AGENT) -> tuple[Path, Path]:
    path = tmp_path / "agent.py"
    path.write_text(body)
    out = tmp_path / "agent-out"
    out.mkdir(exist_ok=True)
    return path, out


def test_changes_in_the_scratch_copy_become_the_candidate(
    tmp_path: Path, domain: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret-000000000000")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-0000000000000000")
    path, out = script(tmp_path)
    cmd = f"{shlex.quote(sys.executable)} {path} {out} stdin"
    proposer = agent(tmp_path, cmd, env_allow=["ANTHROPIC_API_KEY"])
    best = "X = 1.0\nY = 0.0\n"  # the current best differs from the checkout
    cand = proposer.propose(context(domain, best))
    assert cand.edits == (Edit("params.py", content=NEW_PARAMS),)
    assert cand.description == "agent moved X and Y"
    assert cand.hypothesis == "the optimum is (3, 1)"
    prompt = (out / "prompt.txt").read_text()
    assert "X = 1.0" in prompt and "# Toy" in prompt and PROPOSAL_FILE in prompt
    env = json.loads((out / "env.json").read_text())
    assert "ANTHROPIC_API_KEY" in env and "OPENAI_API_KEY" not in env
    # It ran outside the user's folder, which is untouched.
    scratch = Path((out / "cwd.txt").read_text())
    assert not scratch.exists() and domain not in scratch.parents
    assert (domain / "params.py").read_text().startswith('"""Knobs')
    assert Path(str(cand.meta["agent_log"])).exists()


def test_prompt_as_an_argument_and_deletions(
    tmp_path: Path, domain: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_EXTRA", "delete")
    path, out = script(tmp_path)
    cmd = f"{shlex.quote(sys.executable)} {path} {out} arg"
    cand = agent(tmp_path, cmd, prompt_via="arg").propose(context(domain))
    assert "# Toy" in (out / "prompt.txt").read_text()
    # The loop's scope check rejects the deletion of the fixed run.py; the proposer reports it.
    assert Edit("run.py", delete=True) in cand.edits


def test_prompt_file_placeholder(tmp_path: Path, domain: Path) -> None:
    body = (
        "import pathlib, sys\npathlib.Path('params.py').write_text(open(sys.argv[1]).read()[:5])\n"
    )
    path, _ = script(tmp_path, body)
    cmd = f"{shlex.quote(sys.executable)} {path} {{prompt_file}}"
    cand = agent(tmp_path, cmd).propose(context(domain))
    assert cand.edits[0].content == "# Res"  # "# Research program", the prompt's start
    assert cand.description == "agent edit of params.py"


def test_failing_or_idle_agents_are_proposal_errors(tmp_path: Path, domain: Path) -> None:
    path, _ = script(tmp_path, "import sys\nprint('no credits left')\nsys.exit(3)\n")
    with pytest.raises(ProposalError, match=r"exited with code 3[\s\S]*no credits left"):
        agent(tmp_path, f"{shlex.quote(sys.executable)} {path}").propose(context(domain))
    path, _ = script(tmp_path, "print('DESCRIPTION: nothing')\n")
    with pytest.raises(ProposalError, match="changed no files"):
        agent(tmp_path, f"{shlex.quote(sys.executable)} {path}").propose(context(domain))
    with pytest.raises(ProposalError, match="could not start"):
        agent(tmp_path, "/nonexistent/agent-binary").propose(context(domain))


def test_description_from_the_agent_output(tmp_path: Path, domain: Path) -> None:
    body = (
        "import pathlib\npathlib.Path('params.py').write_text('X = 2.0\\nY = 1.0\\n')\n"
        "print('DESCRIPTION: set X to 2')\nprint('HYPOTHESIS: halfway to 3')\n"
    )
    path, _ = script(tmp_path, body)
    cand = agent(tmp_path, f"{shlex.quote(sys.executable)} {path}").propose(context(domain))
    assert (cand.description, cand.hypothesis) == ("set X to 2", "halfway to 3")


def test_no_command_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[proposer.agent\] command"):
        Agent(AgentConfig(), tmp_path, tmp_path)


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

"""Every built-in proposer keeps the Proposer contract (autoresearch.testing.ProposerContract):
the knob search, the scripted replay, the LLM against the scripted server, and the agent
proposer driving a one-line shell agent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from autoresearch import Candidate, Edit
from autoresearch._config import load_config
from autoresearch.proposers import Agent, AgentConfig, Knob, Proposer, ProposerOptions, Scripted
from autoresearch.proposers.llm import LLM, LLMConfig
from autoresearch.testing import FakeOpenAIServer, ProposerContract, Reply

GOOD_ANSWER = (
    "DESCRIPTION: move X to 3\nHYPOTHESIS: the optimum is at X=3\n\n"
    "params.py\n<<<<<<< SEARCH\nX = 0.0  # first coordinate\n=======\n"
    "X = 3.0  # first coordinate\n>>>>>>> REPLACE\n"
)


class TestKnob(ProposerContract):
    rounds = 4

    def make_proposer(self, domain_dir: Path) -> Proposer:
        config, _ = load_config(domain_dir)
        return Knob.from_config(config, domain_dir, ProposerOptions())


class TestScripted(ProposerContract):
    rounds = 3  # two candidates, then None: the end of the script

    def make_proposer(self, domain_dir: Path) -> Proposer:
        return Scripted(
            [
                Candidate("X to 3", (Edit("params.py", search="X = 0.0", replace="X = 3.0"),)),
                Candidate("Y to 1", (Edit("params.py", search="Y = 0.0", replace="Y = 1.0"),)),
            ]
        )


class TestLLM(ProposerContract):
    @pytest.fixture(autouse=True)
    def _server(self) -> Iterator[None]:
        with FakeOpenAIServer(model="fake-model", default=Reply(GOOD_ANSWER)) as server:
            self.server = server
            yield

    def make_proposer(self, domain_dir: Path) -> Proposer:
        return LLM(LLMConfig(max_retries=0), model="fake-model", base_url=self.server.base_url)

    def test_the_contract_run_reached_the_server(self, tmp_path: Path) -> None:
        self.test_one_run_in_the_documented_order(tmp_path)
        assert len(self.server.requests) == self.rounds


class TestAgent(ProposerContract):
    # A coding agent in one line of shell: it rewrites params.py in its scratch copy.
    command = "sh -c 'printf \"X = 1.0\\nY = 0.0\\n\" > params.py'"

    def make_proposer(self, domain_dir: Path) -> Proposer:
        return Agent(AgentConfig(command=self.command, timeout_s=30.0), domain_dir)

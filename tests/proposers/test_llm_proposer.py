"""LLM against a scripted OpenAI-compatible server on loopback, through the real ``openai``
client: answers become candidates, a malformed or cut-off answer is retried with the precise
error, JSON mode pins edits to the files. Transport faults: test_llm_transport.py; spend:
test_llm_spend.py; the key: test_llm_secrets.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llm_support import GOOD, MISS, PARAMS, context, make

from autoresearch import ConfigError, Edit, ProposalError
from autoresearch.proposers import ProposerOptions, ProposerSettings
from autoresearch.proposers._prompt import candidate_schema
from autoresearch.proposers.llm import LLM, LLMConfig
from autoresearch.testing import FakeOpenAIServer, Reply


def test_a_good_answer_becomes_a_candidate_with_tokens(server: FakeOpenAIServer) -> None:
    server.add(Reply(GOOD, prompt_tokens=1000, completion_tokens=50))
    proposer = make(server.base_url)
    cand = proposer.propose(context())
    assert cand.description == "move X to 3"
    assert cand.hypothesis == "the optimum is at X=3"
    assert cand.edits == (Edit("params.py", content=PARAMS.replace("X = 0.0", "X = 3.0")),)
    assert cand.tokens == 1050
    assert cand.meta["attempts"] == 1
    request = server.requests[0]
    assert request.body["model"] == "fake-model"
    assert request.messages[0]["role"] == "system"
    assert "# Toy" in request.last_user_message and "# Toy" not in request.messages[0]["content"]
    proposer.close()


def test_a_miss_is_retried_with_the_precise_error(server: FakeOpenAIServer) -> None:
    server.add(Reply(MISS, prompt_tokens=100, completion_tokens=10), Reply(GOOD))
    cand = make(server.base_url).propose(context())
    assert cand.description == "move X to 3"
    assert cand.meta["attempts"] == 2
    retry = server.requests[1]
    assert retry.messages[-2] == {"role": "assistant", "content": MISS}
    feedback = retry.last_user_message
    assert "block 1 (params.py)" in feedback and "'X = 0.5  # first'" in feedback
    assert "'X = 0.0  # first'" in feedback
    assert cand.tokens > 110  # both requests are paid for


def test_format_retries_run_out_into_a_proposal_error_with_the_spend(
    server: FakeOpenAIServer,
) -> None:
    server.add(*[Reply("I think X should be 3.", prompt_tokens=100, completion_tokens=10)] * 3)
    with pytest.raises(ProposalError) as info:
        make(server.base_url, max_format_retries=2).propose(context())
    assert "after 3 attempts" in str(info.value) and "DESCRIPTION" in str(info.value)
    assert info.value.tokens == 330
    assert len(server.requests) == 3
    # The retry prompt stays bounded: only the last answer and its error go back.
    assert len(server.requests[2].messages) == 4


def test_a_cut_off_answer_is_reported_as_such() -> None:
    with FakeOpenAIServer(model="fake") as server:
        cut = "DESCRIPTION: move X\nHYPOTHESIS: h\nparams.py\n<<<<<<< SEA"
        server.add(Reply(cut, finish_reason="length"))
        server.add(Reply(GOOD))
        proposer = LLM(LLMConfig(), model="fake", base_url=server.base_url)
        proposer.propose(context())
        assert "your answer was cut off" in server.requests[1].last_user_message
        proposer.close()


def test_json_mode_sends_a_schema_pinned_to_the_files(server: FakeOpenAIServer) -> None:
    answer = {
        "description": "move X",
        "hypothesis": "optimum at 3",
        "edits": [{"path": "params.py", "search": "X = 0.0  # first", "replace": "X = 3.0"}],
    }
    server.add(Reply(json.dumps(answer)))
    cand = make(server.base_url, json_schema=True).propose(context())
    assert cand.edits[0].content == "X = 3.0\nY = 0.0  # second\n"
    fmt = server.requests[0].body["response_format"]
    assert fmt["type"] == "json_schema"
    item = fmt["json_schema"]["schema"]["properties"]["edits"]["items"]["properties"]
    assert item["path"]["enum"] == ["params.py"]
    assert item["search"]["enum"] == ["X = 0.0  # first", "Y = 0.0  # second"]


def test_schema_without_files_is_the_generic_one() -> None:
    schema = candidate_schema({})
    assert schema["properties"]["edits"]["items"]["properties"]["path"] == {"type": "string"}


def test_from_config_needs_a_model_and_start_sets_the_run_budget(tmp_path: Path) -> None:
    from autoresearch._config import load_config
    from autoresearch.testing import make_toy_domain

    domain = make_toy_domain(tmp_path / "toy")
    config, _ = load_config(domain)
    with pytest.raises(ConfigError, match="--model NAME"):
        LLM.from_config(config, domain, ProposerOptions())
    opts = ProposerOptions(model="fake-model", base_url="http://127.0.0.1:9/v1")
    proposer = LLM.from_config(config, domain, opts)
    assert proposer.model == "fake-model" and proposer.max_tokens is None
    proposer.start(ProposerSettings(config, domain, tmp_path, tmp_path / "l.db", "t", None, 10))
    assert proposer.max_tokens == 10


def test_passes_the_shared_proposer_check(tmp_path: Path, server: FakeOpenAIServer) -> None:
    from autoresearch.testing import check_proposer, make_toy_domain

    domain = make_toy_domain(tmp_path / "toy")
    move = GOOD.replace("# first\n", "# first coordinate\n")
    server.add(Reply(move), Reply(move.replace("X = 3.0", "X = 2.0")))
    candidates = check_proposer(make(server.base_url), domain, rounds=2)
    assert [c.description for c in candidates] == ["move X to 3", "move X to 3"]

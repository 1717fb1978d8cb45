"""LLM against a scripted OpenAI-compatible server on loopback, through the real
``openai`` client: edits, format retries, transport faults, budgets, and the API key."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest

from autoresearch.proposers.llm import LLMConfig
from autoresearch._errors import BudgetExhausted, ConfigError, ProposalError
from autoresearch._types import Context, Edit, ExperimentRecord, Status
from autoresearch.proposers._prompt import candidate_schema
from autoresearch.proposers.llm._pricing import Price, builtin_price, price_for
from autoresearch.proposers.llm._proposer import LLM, LLMError
from autoresearch.testing._fake_openai import FakeOpenAIServer, Reply

PARAMS = "X = 0.0  # first\nY = 0.0  # second\n"
KEY = "sk-test-0123456789abcdefghijklmnop"
GOOD = (
    "DESCRIPTION: move X to 3\nHYPOTHESIS: the optimum is at X=3\n\n"
    "params.py\n<<<<<<< SEARCH\nX = 0.0  # first\n=======\nX = 3.0  # first\n>>>>>>> REPLACE\n"
)
MISS = GOOD.replace("X = 0.0  # first\n=", "X = 0.5  # first\n=")
FAST = {"retry_backoff_s": 0.001, "max_retries": 2, "request_timeout_s": 5.0}


def context() -> Context:
    return Context(
        program="# Toy\nLower the score.\n",
        files={"params.py": PARAMS},
        history=(),
        metric="score",
        direction="minimize",
        best_value=10.0,
        baseline_value=10.0,
        experiment_id=2,
        editable_globs=("params.py",),
    )


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    with FakeOpenAIServer(model="fake-model") as s:
        yield s


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", KEY)


def make(base_url: str, sleeps: list[float] | None = None, **config: object) -> LLM:
    cfg = LLMConfig(**{**FAST, "api_key_env": "TEST_LLM_KEY", **config})  # type: ignore[arg-type]
    waits = sleeps if sleeps is not None else []
    return LLM(cfg, model="fake-model", base_url=base_url, sleep=waits.append)


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


def test_429_honours_retry_after(server: FakeOpenAIServer) -> None:
    server.add(
        Reply(status=429, headers={"Retry-After": "7"}),
        Reply(status=429, headers={"retry-after-ms": "1500"}),
        Reply(GOOD),
    )
    sleeps: list[float] = []
    cand = make(server.base_url, sleeps, max_retries=3).propose(context())
    assert cand.description == "move X to 3"
    assert sleeps == [7.0, 1.5]


def test_retry_after_is_capped(server: FakeOpenAIServer) -> None:
    server.add(Reply(status=429, headers={"Retry-After": "3600"}), Reply(GOOD))
    sleeps: list[float] = []
    make(server.base_url, sleeps, max_retry_wait_s=30).propose(context())
    assert sleeps == [30.0]


def test_5xx_and_dropped_connections_are_retried_with_backoff(server: FakeOpenAIServer) -> None:
    server.add(Reply(status=503), Reply(drop=True), Reply(GOOD))
    sleeps: list[float] = []
    cand = make(server.base_url, sleeps, retry_backoff_s=1.0).propose(context())
    assert cand.description == "move X to 3"
    assert len(sleeps) == 2 and 1.0 <= sleeps[0] <= 1.25 and 2.0 <= sleeps[1] <= 2.5


def test_persistent_5xx_gives_up_after_the_bounded_retries(server: FakeOpenAIServer) -> None:
    server.add(*[Reply(status=500, error_message="overloaded")] * 5)
    with pytest.raises(LLMError, match=r"HTTP 500: overloaded \(gave up after 3 attempts\)"):
        make(server.base_url, max_retries=2).propose(context())
    assert len(server.requests) == 3


def test_timeout_is_retried_then_reported(server: FakeOpenAIServer) -> None:
    server.add(Reply(GOOD, delay_s=3.0), Reply(GOOD, delay_s=3.0))
    with pytest.raises(LLMError, match="timed out"):
        make(server.base_url, max_retries=1, request_timeout_s=0.3).propose(context())
    assert len(server.requests) == 2


def test_refused_connection_is_an_llm_error_not_a_crash() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(LLMError, match="connection failed"):
        make(f"http://127.0.0.1:{port}/v1", max_retries=1).propose(context())


def test_client_errors_are_not_retried_and_never_show_the_key(
    server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.add(Reply(status=401, error_message=f"Incorrect API key provided: {KEY}"))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(LLMError) as info:
        make(server.base_url).propose(context())
    assert len(server.requests) == 1
    assert "HTTP 401" in str(info.value) and "api_key_env" in str(info.value)
    assert KEY not in str(info.value) and KEY[:12] not in str(info.value)
    assert KEY not in caplog.text
    assert "authorization" in server.requests[0].header_names
    assert KEY not in json.dumps(server.requests[0].body)


def test_unsupported_parameter_is_dropped_once(server: FakeOpenAIServer) -> None:
    server.add(
        Reply(
            status=400,
            error_message="Unsupported parameter: 'max_tokens' is not supported with this model."
            " Use 'max_completion_tokens' instead.",
        ),
        Reply(GOOD),
    )
    make(server.base_url).propose(context())
    assert "max_tokens" in server.requests[0].body
    assert "max_completion_tokens" in server.requests[1].body
    assert "max_tokens" not in server.requests[1].body


def test_missing_usage_is_estimated(server: FakeOpenAIServer) -> None:
    server.add(Reply(GOOD, usage=False))
    cand = make(server.base_url).propose(context())
    assert cand.tokens > 0 and cand.meta["tokens_estimated"] is True


def test_cost_is_priced_and_the_budget_stops_before_it_is_exceeded(
    server: FakeOpenAIServer,
) -> None:
    server.add(Reply(GOOD, prompt_tokens=1_000, completion_tokens=1_000), Reply(GOOD))
    cfg = LLMConfig(
        **FAST, api_key_env="TEST_LLM_KEY", price_in_per_mtok_usd=1.0, price_out_per_mtok_usd=2.0
    )
    proposer = LLM(cfg, model="fake-model", base_url=server.base_url, max_cost_usd=0.004)
    cand = proposer.propose(context())
    assert cand.cost_usd == pytest.approx(0.003)
    # The output cap was lowered so that even a full-length answer stays within the budget.
    assert 256 <= server.requests[0].body["max_tokens"] < 2000
    with pytest.raises(BudgetExhausted, match=r"--max-cost-usd 0.004 \(spent \$0.0030\)") as info:
        proposer.propose(context())
    assert info.value.tokens == 0
    assert len(server.requests) == 1  # the second request was never sent


def test_token_budget_lowers_the_output_cap_then_stops(server: FakeOpenAIServer) -> None:
    server.add(Reply(GOOD, prompt_tokens=500, completion_tokens=100), Reply(GOOD))
    cfg = LLMConfig(**FAST, api_key_env="TEST_LLM_KEY", max_output_tokens=4096)
    proposer = LLM(cfg, model="fake-model", base_url=server.base_url, max_tokens=3000)
    proposer.propose(context())
    assert server.requests[0].body["max_tokens"] < 3000
    proposer.restore([_record(tokens=2500)])  # a resumed run counts its earlier spend
    with pytest.raises(BudgetExhausted, match="--max-tokens 3000"):
        proposer.propose(context())
    assert len(server.requests) == 1


def test_estimate_next_cost_is_an_upper_bound_for_the_first_request(
    server: FakeOpenAIServer,
) -> None:
    server.add(Reply(GOOD))
    proposer = make(server.base_url, max_output_tokens=300)
    tokens, cost = proposer.estimate_next_cost(context())
    cand = proposer.propose(context())
    assert cand.tokens <= tokens and cost == 0.0


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


def test_a_missing_key_for_the_hosted_api_is_a_clear_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TEST_LLM_KEY")
    with pytest.raises(ConfigError, match="TEST_LLM_KEY is not set"):
        LLM(LLMConfig(api_key_env="TEST_LLM_KEY"), model="gpt-4o")
    # A local server needs no key.
    LLM(LLMConfig(api_key_env="TEST_LLM_KEY"), model="m", base_url="http://127.0.0.1:1/v1")


def test_builtin_prices_and_overrides() -> None:
    assert builtin_price("gpt-4o-mini-2024-07-18") == Price(0.15, 0.60)
    assert builtin_price("openai/gpt-4o") == Price(2.50, 10.00)
    assert builtin_price("smollm2") is None
    over = LLMConfig(price_in_per_mtok_usd=3.0)
    assert price_for("gpt-4o", over) == Price(3.0, 0.0)
    assert Price(2.0, 8.0).cost_usd(1_000_000, 500_000) == pytest.approx(6.0)


def test_the_fake_server_binds_loopback_and_answers_models(server: FakeOpenAIServer) -> None:
    import openai

    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    assert server.base_url.startswith("http://127.0.0.1:")
    assert [m.id for m in client.models.list()] == ["fake-model"]
    # An exhausted script answers 500, which the proposer treats as a server fault.
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])


def _record(tokens: int) -> ExperimentRecord:
    return ExperimentRecord(
        id=1, tag="t", status=Status.DISCARD, reason="", description="d", hypothesis="",
        proposer="llm", parent_commit="0" * 40, commit=None, value=1.0, secondary={},
        holdout={}, meta={}, tokens=tokens, cost_usd=0.0, memory_gb=None,
    )  # fmt: skip


def test_from_config_needs_a_model_and_start_sets_the_run_budget(tmp_path: Path) -> None:
    from autoresearch._config import load_config
    from autoresearch.proposers import ProposerOptions, ProposerSettings
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


def test_503_honours_retry_after_too(server: FakeOpenAIServer) -> None:
    server.add(Reply(status=503, headers={"Retry-After": "4"}), Reply(GOOD))
    sleeps: list[float] = []
    make(server.base_url, sleeps, max_retries=2).propose(context())
    assert sleeps == [4.0]

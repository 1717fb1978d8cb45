"""What the LLM proposer spends: tokens counted (estimated when the server reports none),
priced per model, and requests sized or refused so a run-wide budget is never exceeded."""

from __future__ import annotations

import pytest
from llm_support import FAST, GOOD, context, make

from autoresearch import BudgetExhausted, ConfigError
from autoresearch.proposers.llm import LLM, LLMConfig
from autoresearch.proposers.llm._pricing import Price, builtin_price, price_for
from autoresearch.testing import FakeOpenAIServer, Reply, make_record


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
    proposer.restore(
        [make_record(proposer="llm", tokens=2500)]
    )  # a resumed run counts its earlier spend
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


def test_a_cost_budget_on_an_unpriced_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="price_in_per_mtok_usd"):
        LLM(LLMConfig(), model="mystery", base_url="http://127.0.0.1:9/v1", max_cost_usd=1)
    assert builtin_price("o3-pro") is None and builtin_price("o3-deep-research") is None
    assert builtin_price("gpt-5-pro") is None and builtin_price("o3-2025-04-16") is not None


def test_builtin_prices_and_overrides() -> None:
    assert builtin_price("gpt-4o-mini-2024-07-18") == Price(0.15, 0.60)
    assert builtin_price("openai/gpt-4o") == Price(2.50, 10.00)
    assert builtin_price("smollm2") is None
    over = LLMConfig(price_in_per_mtok_usd=3.0)
    assert price_for("gpt-4o", over) == Price(3.0, 0.0)
    assert Price(2.0, 8.0).cost_usd(1_000_000, 500_000) == pytest.approx(6.0)

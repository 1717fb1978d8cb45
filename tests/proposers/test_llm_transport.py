"""The LLM proposer's transport, against the scripted server: 429 and 503 honour
Retry-After (capped), 5xx and dropped connections are retried with backoff and then given up,
timeouts and refused connections are LLM errors, an unsupported parameter is dropped once."""

from __future__ import annotations

import socket

import openai
import pytest
from llm_support import GOOD, context, make

from autoresearch.proposers.llm._proposer import LLMError
from autoresearch.testing import FakeOpenAIServer, Reply


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


def test_503_honours_retry_after_too(server: FakeOpenAIServer) -> None:
    server.add(Reply(status=503, headers={"Retry-After": "4"}), Reply(GOOD))
    sleeps: list[float] = []
    make(server.base_url, sleeps, max_retries=2).propose(context())
    assert sleeps == [4.0]


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


def test_the_fake_server_binds_loopback_and_answers_models(server: FakeOpenAIServer) -> None:

    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    assert server.base_url.startswith("http://127.0.0.1:")
    assert [m.id for m in client.models.list()] == ["fake-model"]
    # An exhausted script answers 500, which the proposer treats as a server fault.
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])

"""The API key reaches the client and nothing else: not error messages, logs or request
bodies; credentials in a base URL never show; a loopback server never gets the real key; a
missing key for the hosted API is a clear config error."""

from __future__ import annotations

import json
import logging

import pytest
from llm_support import KEY, context, make

from autoresearch import ConfigError
from autoresearch.proposers.llm import LLM, LLMConfig
from autoresearch.proposers.llm._proposer import LLMError, safe_url
from autoresearch.testing import FakeOpenAIServer, Reply


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


def test_base_url_credentials_never_show() -> None:
    url = "https://user:hunter2pass@example.invalid/v1?api-key=abcdef123456"
    assert safe_url(url) == "https://example.invalid/v1"
    cfg = LLMConfig(max_retries=0, request_timeout_s=2)
    proposer = LLM(cfg, model="m", base_url="http://u:hunter2pass@127.0.0.1:9/v1?k=zz")
    with pytest.raises(LLMError) as info:
        proposer.propose(context())
    assert "hunter2pass" not in str(info.value) and "k=zz" not in str(info.value)


def test_a_loopback_server_never_gets_the_real_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    proposer = LLM(LLMConfig(), model="m", base_url="http://localhost:9/v1")
    assert proposer._client.api_key != KEY
    proposer.close()


def test_a_missing_key_for_the_hosted_api_is_a_clear_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TEST_LLM_KEY")
    with pytest.raises(ConfigError, match="TEST_LLM_KEY is not set"):
        LLM(LLMConfig(api_key_env="TEST_LLM_KEY"), model="gpt-4o")
    # A local server needs no key.
    LLM(LLMConfig(api_key_env="TEST_LLM_KEY"), model="m", base_url="http://127.0.0.1:1/v1")

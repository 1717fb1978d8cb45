"""Regressions for the LLM proposer, prompt scrubbing, pricing and the local server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from autoresearch.proposers.llm import LLMConfig
from autoresearch._errors import ConfigError
from autoresearch._types import Context
from autoresearch.proposers._prompt import failure_block, render_context
from autoresearch.proposers.llm._local_model import LocalModelError
from autoresearch.proposers.llm._pricing import builtin_price
from autoresearch.proposers.llm._proposer import LLM, LLMError, safe_url
from autoresearch.testing._fake_openai import FakeOpenAIServer, Reply

KEY = "sk-test-0123456789abcdefghijklmnop"
PARAMS = "X = 0.0  # first\n"
GOOD = (
    "DESCRIPTION: move X\nHYPOTHESIS: h\n\n"
    "params.py\n<<<<<<< SEARCH\nX = 0.0  # first\n=======\nX = 3.0  # first\n>>>>>>> REPLACE\n"
)


def context(files: dict[str, str] | None = None, failure: str | None = None) -> Context:
    return Context(
        program="p",
        files=files if files is not None else {"params.py": PARAMS},
        history=(),
        metric="score",
        direction="minimize",
        best_value=1.0,
        baseline_value=1.0,
        experiment_id=2,
        editable_globs=("*.py",),
        last_failure=failure,
    )


def test_a_secret_cut_by_the_tail_is_still_redacted() -> None:
    secret = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z" * 2
    log = "crash: boom\n" + "x" * 5000 + "OPENAI_API_KEY=" + secret + "\n" + "y" * 1950
    shown = failure_block(log)
    assert "Ab3dEf" not in shown and "qRs8" not in shown and "Xy4z\n" not in shown
    assert "crash: boom" in shown


def test_credential_values_from_the_environment_are_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", "plainwordsvalue")
    assert "plainwordsvalue" not in failure_block("error: x\nconnecting with plainwordsvalue\n")


def test_editable_files_are_bounded_and_binary_files_skipped() -> None:
    huge = "x = 1\n" * 50_000
    text = render_context(context({"a.py": huge, "b.bin": "\x00\x01", "c.py": "y = 2\n"}))
    assert len(text) < 200_000
    assert "only the first" in text and "binary file, not shown" in text


def test_base_url_credentials_never_show() -> None:
    url = "https://user:hunter2pass@example.invalid/v1?api-key=abcdef123456"
    assert safe_url(url) == "https://example.invalid/v1"
    cfg = LLMConfig(max_retries=0, request_timeout_s=2)
    proposer = LLM(cfg, model="m", base_url="http://u:hunter2pass@127.0.0.1:9/v1?k=zz")
    with pytest.raises(LLMError) as info:
        proposer.propose(context())
    assert "hunter2pass" not in str(info.value) and "k=zz" not in str(info.value)


def test_a_cost_budget_on_an_unpriced_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="price_in_per_mtok_usd"):
        LLM(LLMConfig(), model="mystery", base_url="http://127.0.0.1:9/v1", max_cost_usd=1)
    assert builtin_price("o3-pro") is None and builtin_price("o3-deep-research") is None
    assert builtin_price("gpt-5-pro") is None and builtin_price("o3-2025-04-16") is not None


def test_a_loopback_server_never_gets_the_real_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    proposer = LLM(LLMConfig(), model="m", base_url="http://localhost:9/v1")
    assert proposer._client.api_key != KEY
    proposer.close()


def test_a_cut_off_answer_is_reported_as_such() -> None:
    with FakeOpenAIServer(model="fake") as server:
        cut = "DESCRIPTION: move X\nHYPOTHESIS: h\nparams.py\n<<<<<<< SEA"
        server.add(Reply(cut, finish_reason="length"))
        server.add(Reply(GOOD))
        proposer = LLM(LLMConfig(), model="fake", base_url=server.base_url)
        proposer.propose(context())
        assert "your answer was cut off" in server.requests[1].last_user_message
        proposer.close()


def test_close_stops_the_server_even_if_the_client_close_fails() -> None:
    class Server:
        stopped = False

        def stop(self) -> None:
            self.stopped = True

    class Client:
        def close(self) -> None:
            raise RuntimeError("boom")

    proposer = LLM(LLMConfig(), model="m", base_url="http://127.0.0.1:9/v1")
    server = Server()
    proposer._server, proposer._client = server, Client()  # type: ignore[assignment]
    with pytest.raises(RuntimeError):
        proposer.close()
    assert server.stopped


def test_local_model_errors_are_config_errors() -> None:
    assert issubclass(LocalModelError, ConfigError)


def test_the_server_child_dies_with_a_killed_driver() -> None:
    driver = (
        "import subprocess, sys, time\n"
        "from autoresearch.proposers.llm._local_model import die_with_parent\n"
        "p = subprocess.Popen(['sleep', '60'], preexec_fn=die_with_parent)\n"
        "print(p.pid, flush=True)\ntime.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

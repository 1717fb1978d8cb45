"""The HTTP agent provider against a loopback fake of a deployed agent: it sets the candidate
prompt, converses, and puts the original back on exit: after a crash, Ctrl-C, SIGTERM, and
(from its backup file) after a run that was killed outright."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from autoresearch.objectives.prompts_agents import HTTPAgent, HTTPAgentConfig
from autoresearch.objectives.prompts_sim import EvalError, Turn

sys.path.insert(0, str(Path(__file__).parent))
from voice_support import VoiceServer

ORIGINAL = "You are the production agent. Do not change me."
DOMAIN = Path(__file__).resolve().parents[2] / "domains" / "voice_agent"


class Deployed:
    """A deployed agent: GET/PATCH /v1/agent {"config": {"system_prompt"}}, POST chat."""

    def __init__(self, chat_delay_s: float = 0.0, chat_status: int = 200) -> None:
        self.prompt = ORIGINAL
        self.history: list[str] = []
        self.auth: list[str] = []
        self.chat_delay_s, self.chat_status = chat_delay_s, chat_status
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send(200, {"config": {"system_prompt": outer.prompt}})

            def do_PATCH(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.prompt = body["config"]["system_prompt"]
                outer.history.append(outer.prompt)
                outer.auth.append(self.headers.get("Authorization", ""))
                self._send(200, {})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(outer.chat_delay_s)
                if outer.chat_status != 200:
                    self._send(outer.chat_status, {"error": "down"})
                    return
                said = f"({outer.prompt[:20]}) you said {body['message']}"
                self._send(200, {"reply": {"text": said}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def config(self, tmp: Path) -> dict[str, Any]:
        data = json.loads((DOMAIN / "http_agent.example.json").read_text())
        data["base_url"] = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        data["backup_file"] = str(tmp / "backup.txt")
        return data

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def deployed() -> Iterator[Deployed]:
    d = Deployed()
    yield d
    d.close()


def _agent(d: Deployed, tmp: Path) -> HTTPAgent:
    return HTTPAgent(HTTPAgentConfig.model_validate(d.config(tmp)), api_key="sk-agent-7f3e")


def test_it_converses_with_the_candidate_and_restores(deployed: Deployed, tmp_path: Path) -> None:
    agent = _agent(deployed, tmp_path)
    with agent.session("CANDIDATE prompt"):
        assert deployed.prompt == "CANDIDATE prompt"
        assert "CANDIDATE" in agent.reply("c1", [Turn("caller", "hello")])
        assert (tmp_path / "backup.txt").read_text() == ORIGINAL
    assert deployed.prompt == ORIGINAL
    assert not (tmp_path / "backup.txt").exists()
    assert deployed.auth == ["Bearer sk-agent-7f3e"] * 2


@pytest.mark.parametrize("error", [EvalError("the judge failed"), KeyboardInterrupt()])
def test_a_crash_or_ctrl_c_restores_the_prompt(
    deployed: Deployed, tmp_path: Path, error: BaseException
) -> None:
    agent = _agent(deployed, tmp_path)
    with pytest.raises(type(error)), agent.session("CANDIDATE"):
        assert deployed.prompt == "CANDIDATE"
        raise error
    assert deployed.prompt == ORIGINAL


def test_a_failing_chat_endpoint_still_restores(tmp_path: Path) -> None:
    d = Deployed(chat_status=503)
    try:
        agent = _agent(d, tmp_path)
        with pytest.raises(EvalError, match="HTTP 503"), agent.session("CANDIDATE"):
            agent.reply("c1", [Turn("caller", "hi")])
        assert d.prompt == ORIGINAL
    finally:
        d.close()


def test_a_killed_run_is_restored_from_the_backup_by_the_next(
    deployed: Deployed, tmp_path: Path
) -> None:
    dead = _agent(deployed, tmp_path)
    dead.open("CANDIDATE of a run that was killed -9")  # never closed
    assert deployed.prompt.startswith("CANDIDATE")
    agent = _agent(deployed, tmp_path)
    with agent.session("NEXT candidate"):
        assert agent.original == ORIGINAL  # not the dead run's candidate
    assert deployed.prompt == ORIGINAL


def test_bad_config_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "h.json").write_text(json.dumps({"base_url": "http://x", "chat": {}}))
    with pytest.raises(EvalError, match=r"h\.json: .*field 'get_prompt'"):
        HTTPAgentConfig.load(tmp_path / "h.json")


def test_the_evaluator_restores_the_deployed_prompt_on_sigterm(tmp_path: Path) -> None:
    d = Deployed(chat_delay_s=30.0)
    domain = tmp_path / "voice"
    shutil.copytree(DOMAIN, domain)
    (domain / "agent.json").write_text(json.dumps(d.config(tmp_path)))
    try:
        with VoiceServer() as roles:
            env = dict(
                os.environ,
                VOICE_AGENT_PROVIDER="http",
                VOICE_HTTP_CONFIG="agent.json",
                VOICE_CALLER_BASE_URL=roles.base_url,
                VOICE_JUDGE_BASE_URL=roles.base_url,
                VOICE_SCENARIOS="hours_saturday",
                AGENT_API_KEY="sk-agent-7f3e",
            )
            proc = subprocess.Popen(
                [sys.executable, "evaluate.py"], cwd=domain, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )  # fmt: skip
            deadline = time.monotonic() + 60
            while deployed_prompt(d) == ORIGINAL and time.monotonic() < deadline:
                time.sleep(0.05)
            assert d.prompt.startswith("You are the phone receptionist"), d.prompt
            proc.send_signal(signal.SIGTERM)
            # Put back while the call in flight (30 s) is still hanging: SIGTERM does not wait
            # for it, so the engine's grace period is enough.
            deadline = time.monotonic() + 20
            while deployed_prompt(d) != ORIGINAL and time.monotonic() < deadline:
                time.sleep(0.05)
            assert d.prompt == ORIGINAL
            out, _ = proc.communicate(timeout=60)
        assert d.prompt == ORIGINAL, out.decode()
        assert b"eval_tokens" in out  # the spend so far is still printed
    finally:
        d.close()


def deployed_prompt(d: Deployed) -> str:
    return d.prompt

"""A scripted OpenAI-compatible HTTP server on loopback, for testing LLM proposers without a
network or a model.

Each chat completion request takes the next :class:`Reply` of the script: an answer, an HTTP
error (with headers such as Retry-After), a delay longer than the client's timeout, or a
dropped connection. Requests are recorded (bodies and header names; no header values, so no
key is ever stored). The server binds 127.0.0.1 only and caps request sizes and counts.

    with FakeOpenAIServer([Reply("DESCRIPTION: ..."), Reply(status=429)]) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test")
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"
# Bounds that keep a misbehaving client from filling memory.
MAX_REQUEST_BYTES = 8 * 1024 * 1024
MAX_RECORDED_REQUESTS = 1000
MAX_DELAY_S = 30.0
# How often the serving thread checks for shutdown.
POLL_INTERVAL_S = 0.05


@dataclass(frozen=True)
class Reply:
    """One scripted response. ``status`` other than 200 sends ``error_message`` as an OpenAI
    error body; ``drop`` closes the connection without answering; ``delay_s`` waits first."""

    content: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drop: bool = False
    error_message: str = "scripted error"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usage: bool = True
    finish_reason: str = "stop"


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    body: dict[str, Any]
    header_names: frozenset[str]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    @property
    def last_user_message(self) -> str:
        users = [m for m in self.messages if m.get("role") == "user"]
        return str(users[-1]["content"]) if users else ""


class FakeOpenAIServer:
    """Serves ``/v1/chat/completions`` and ``/v1/models`` from a script, in a daemon thread."""

    def __init__(
        self, script: Iterable[Reply] = (), model: str = "fake-model", default: Reply | None = None
    ) -> None:
        self.model = model
        self._script = list(script)
        self._default = default
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self._httpd = ThreadingHTTPServer((LOOPBACK, 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": POLL_INTERVAL_S}, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"

    def add(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._script)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next(self, request: RecordedRequest) -> Reply:
        with self._lock:
            if len(self.requests) < MAX_RECORDED_REQUESTS:
                self.requests.append(request)
            if self._script:
                return self._script.pop(0)
        if self._default is not None:
            return self._default
        return Reply(status=500, error_message="FakeOpenAIServer: the script is exhausted")


def _handler_for(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                body = {"object": "list", "data": [{"id": server.model, "object": "model"}]}
                self._send_json(200, body)
            else:
                self._send_json(404, _error("not found", 404))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_REQUEST_BYTES:
                self._send_json(413, _error("request too large", 413))
                return
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                self._send_json(400, _error("body is not JSON", 400))
                return
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send_json(404, _error("not found", 404))
                return
            names = frozenset(k.lower() for k in self.headers)
            reply = server._next(RecordedRequest(self.path, body, names))
            if reply.delay_s:
                time.sleep(min(reply.delay_s, MAX_DELAY_S))
            if reply.drop:
                self.close_connection = True
                self.connection.close()
                return
            if reply.status != 200:
                self._send_json(
                    reply.status, _error(reply.error_message, reply.status), reply.headers
                )
                return
            self._send_json(200, _completion(server.model, body, reply), reply.headers)

        def _send_json(
            self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
        ) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (its timeout); nothing to answer.
                pass

    return Handler


def _error(message: str, status: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": "scripted", "code": status}}


def _completion(model: str, request: dict[str, Any], reply: Reply) -> dict[str, Any]:
    prompt_chars = sum(len(str(m.get("content", ""))) for m in request.get("messages", []))
    prompt_tokens = reply.prompt_tokens if reply.prompt_tokens is not None else prompt_chars // 4
    completion_tokens = (
        reply.completion_tokens if reply.completion_tokens is not None else len(reply.content) // 4
    )
    out: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model") or model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content},
                "finish_reason": reply.finish_reason,
            }
        ],
    }
    if reply.usage:
        out["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
    return out

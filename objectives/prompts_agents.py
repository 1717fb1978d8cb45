"""A deployed agent over HTTP as the agent under test: set its system prompt, converse
through its chat endpoint, and put the original prompt back on exit (also after an error,
Ctrl-C or SIGTERM; after a kill -9, the next run restores it from the backup file first).

The endpoints and JSON fields come from a config file (JSON), for example::

    {
      "base_url": "http://127.0.0.1:8080",
      "key_env": "AGENT_API_KEY",
      "get_prompt": {"method": "GET", "path": "/v1/agent", "field": "config.system_prompt"},
      "set_prompt": {"method": "PATCH", "path": "/v1/agent", "field": "config.system_prompt"},
      "chat": {"method": "POST", "path": "/v1/agent/chat", "message_field": "message",
               "session_field": "session_id", "reply_field": "reply.text"}
    }

``field`` names are dotted paths into the JSON body. The key (if any) is read from the
variable ``key_env`` names and sent as ``Authorization: Bearer``; it is never logged.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autoresearch.objectives.prompts_sim import AgentProvider, EvalError, Turn

# The deployed agent is usually on the network the evaluator was given; an HTTP(S)_PROXY of
# the environment is honoured except for loopback.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024


class Endpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["GET", "POST", "PUT", "PATCH"] = "GET"
    path: str
    field: str = Field(description="Dotted path of the prompt in the JSON body.")


class ChatEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["POST", "PUT"] = "POST"
    path: str
    message_field: str = "message"
    session_field: str | None = "session_id"
    reply_field: str = "reply"


class HTTPAgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_url: str
    key_env: str | None = None
    get_prompt: Endpoint
    set_prompt: Endpoint
    chat: ChatEndpoint
    timeout_s: float = 60.0
    backup_file: str | None = Field(
        None, description="Where the original prompt is kept while a run holds the agent."
    )

    @classmethod
    def load(cls, path: Path) -> HTTPAgentConfig:
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as e:
            raise EvalError(f"{path}: cannot read the HTTP agent config: {e}") from None
        except ValidationError as e:
            where = "; ".join(
                f"field '{'.'.join(str(p) for p in err['loc'])}': {err['msg']}"
                for err in e.errors()
            )
            raise EvalError(f"{path}: {where}") from None


def dig(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            raise EvalError(f"the agent's answer has no field {dotted!r}")
        data = data[part]
    return data


def nest(dotted: str, value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return dict(out)


class HTTPAgent(AgentProvider):
    """Drives a deployed agent. ``open`` reads and keeps its current prompt, then sets the
    candidate; ``close`` sets the kept one back (the backup file goes once it is back)."""

    def __init__(self, config: HTTPAgentConfig, api_key: str | None = None) -> None:
        self.config = config
        self.api_key = api_key if api_key is not None else os.environ.get(config.key_env or "", "")
        self.original: str | None = None
        self._lock = threading.Lock()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.config.base_url.rstrip("/") + path
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with self._opener.open(req, timeout=self.config.timeout_s) as r:
                raw = r.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as e:
            raise EvalError(f"{method} {path}: HTTP {e.code}") from None
        except (urllib.error.URLError, OSError) as e:
            raise EvalError(f"{method} {path}: {type(e).__name__}: {e}") from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise EvalError(
                f"{method} {path}: the answer is larger than {MAX_RESPONSE_BYTES} bytes"
            )
        try:
            return json.loads(raw or b"{}")
        except json.JSONDecodeError:
            raise EvalError(f"{method} {path}: the answer is not JSON") from None

    def _backup(self) -> Path | None:
        return Path(self.config.backup_file) if self.config.backup_file else None

    def _set(self, prompt: str) -> None:
        ep = self.config.set_prompt
        self._request(ep.method, ep.path, nest(ep.field, prompt))

    def open(self, prompt: str) -> None:
        backup = self._backup()
        if backup is not None and backup.exists():
            # A run that died before it could restore: its kept original comes back first.
            self._set(backup.read_text(encoding="utf-8"))
        ep = self.config.get_prompt
        original = dig(self._request(ep.method, ep.path), ep.field)
        if not isinstance(original, str):
            raise EvalError(f"the agent's prompt field {ep.field!r} is not a string")
        self.original = original
        if backup is not None:
            backup.write_text(original, encoding="utf-8")
        self._set(prompt)

    def reply(self, call_id: str, turns: Sequence[Turn]) -> str:
        ep = self.config.chat
        body = nest(ep.message_field, turns[-1].text)
        if ep.session_field:
            body.update(nest(ep.session_field, call_id))
        text = dig(self._request(ep.method, ep.path, body), ep.reply_field)
        return str(text)

    def close(self) -> None:
        with self._lock:
            original, self.original = self.original, None
        if original is None:
            return
        self._set(original)
        backup = self._backup()
        if backup is not None:
            backup.unlink(missing_ok=True)

"""The transport side of the LLM proposer: errors, spend accounting, what a failed request
says, and how long a 429 asks to wait. No request is made here."""

from __future__ import annotations

import email.utils
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from autoresearch._errors import ProposalError
from autoresearch.proposers._prompt import scrub_secrets

# Characters of a server's error message kept in a reason or a retry prompt.
MAX_ERROR_CHARS = 500


class LLMError(ProposalError):
    """The endpoint failed (after the bounded retries, where a retry could help)."""


@dataclass
class Spend:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    requests: int = 0
    estimated: bool = False
    cut_off: bool = False  # the last answer stopped at the output token cap

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def safe_url(url: str | None) -> str | None:
    """``url`` without user:password and query string, for messages and logs."""
    if not url:
        return url
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def error_message(e: Any) -> str:
    body = getattr(e, "body", None)
    msg = body.get("message") if isinstance(body, dict) else None
    if not isinstance(msg, str):
        msg = getattr(e, "message", None) or str(e)
    return scrub_secrets(str(msg))[:MAX_ERROR_CHARS]


def status_hint(status: int, problem: str) -> str:
    if status in (401, 403):
        return problem + " (check the API key's variable, [proposer.llm] api_key_env)"
    if status == 404:
        return problem + " (check --model and --base-url)"
    return problem


def retry_after_s(headers: Any) -> float | None:
    """Seconds a 429 asks to wait: ``retry-after-ms``, or ``retry-after`` in seconds or as an
    HTTP date."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())

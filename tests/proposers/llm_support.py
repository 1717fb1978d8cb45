"""What the LLM proposer tests share: the key, the answers the scripted server gives, the
context they apply to, and an LLM that retries fast and records its waits."""

from __future__ import annotations

from conftest import LLM_KEY, LLM_KEY_ENV, LLM_MODEL

from autoresearch import Context
from autoresearch.proposers.llm import LLM, LLMConfig
from autoresearch.testing import make_context

# Set for every test by conftest; the names the tests here use.
KEY, KEY_ENV, MODEL = LLM_KEY, LLM_KEY_ENV, LLM_MODEL
PARAMS = "X = 0.0  # first\nY = 0.0  # second\n"
GOOD = (
    "DESCRIPTION: move X to 3\nHYPOTHESIS: the optimum is at X=3\n\n"
    "params.py\n<<<<<<< SEARCH\nX = 0.0  # first\n=======\nX = 3.0  # first\n>>>>>>> REPLACE\n"
)
MISS = GOOD.replace("X = 0.0  # first\n=", "X = 0.5  # first\n=")
FAST = {"retry_backoff_s": 0.001, "max_retries": 2, "request_timeout_s": 5.0}


def context(**overrides: object) -> Context:
    """The toy's params.py (with comments) for the model to edit."""
    fields: dict[str, object] = {
        "program": "# Toy\nLower the score.\n",
        "files": {"params.py": PARAMS},
        "best_value": 10.0,
        "baseline_value": 10.0,
    }
    return make_context(**{**fields, **overrides})


def make(base_url: str, sleeps: list[float] | None = None, **config: object) -> LLM:
    """An LLM on ``base_url`` whose retry waits are appended to ``sleeps`` (not slept)."""
    cfg = LLMConfig(**{**FAST, "api_key_env": KEY_ENV, **config})  # type: ignore[arg-type]
    waits = sleeps if sleeps is not None else []
    return LLM(cfg, model=MODEL, base_url=base_url, sleep=waits.append)

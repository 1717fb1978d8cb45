"""``[proposer.llm]``: the LLM proposer's own config model."""

from __future__ import annotations

from pydantic import Field

from autoresearch._config import PluginConfig


class LLMConfig(PluginConfig):
    """``[proposer.llm]``: the LLM proposer's settings."""

    model: str | None = Field(None, description="Model name as the server knows it.")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint (None: OpenAI).")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the key.")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature.")
    max_output_tokens: int = Field(4096, gt=0, description="Cap on tokens per answer.")
    request_timeout_s: float = Field(120.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(
        4, ge=0, description="Retries on timeouts, refused connections, 429 and 5xx."
    )
    retry_backoff_s: float = Field(
        1.0, ge=0, description="First wait before a retry; doubles on each further retry."
    )
    max_retry_wait_s: float = Field(
        120.0, ge=0, description="Longest single wait between retries (Retry-After included)."
    )
    max_format_retries: int = Field(2, ge=0, description="Retries of a malformed answer.")
    history_recent: int = Field(10, ge=0, description="Experiments shown in full in the prompt.")
    whole_file_max_lines: int = Field(
        200, gt=0, description="Files up to this size may be replaced whole."
    )
    price_in_per_mtok_usd: float | None = Field(None, ge=0, description="Input price override.")
    price_out_per_mtok_usd: float | None = Field(None, ge=0, description="Output price override.")
    json_schema: bool | None = Field(
        None,
        description="Ask for JSON-schema-constrained answers, each edit pinned to one existing "
        "line (for small local models; None: on with a local GGUF model, off otherwise).",
    )

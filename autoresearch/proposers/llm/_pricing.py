"""Token prices for common hosted models, so a run can record and cap what it spends.

Prices drift; the table is a convenience, not a source of truth. ``[proposer.llm]
price_in_per_mtok_usd`` / ``price_out_per_mtok_usd`` override it, and a model missing from
it (a local server, say) costs nothing unless priced there.
"""

from __future__ import annotations

from dataclasses import dataclass

from autoresearch.proposers.llm._config import LLMConfig

TOKENS_PER_MTOK = 1_000_000


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    in_per_mtok_usd: float
    out_per_mtok_usd: float

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.in_per_mtok_usd + completion_tokens * self.out_per_mtok_usd
        ) / TOKENS_PER_MTOK


# List prices (USD per million input / output tokens) of the providers' own APIs, 2025.
# Matched by the longest prefix of the model name, so dated snapshots find their family.
BUILTIN_PRICES: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-5": Price(1.25, 10.00),
    "gpt-5-mini": Price(0.25, 2.00),
    "gpt-5-nano": Price(0.05, 0.40),
    "o3": Price(2.00, 8.00),
    "o3-mini": Price(1.10, 4.40),
    "o4-mini": Price(1.10, 4.40),
    "claude-opus-4": Price(15.00, 75.00),
    "claude-sonnet-4": Price(3.00, 15.00),
    "claude-3-7-sonnet": Price(3.00, 15.00),
    "claude-3-5-haiku": Price(0.80, 4.00),
    "claude-haiku-4": Price(1.00, 5.00),
    "gemini-2.5-pro": Price(1.25, 10.00),
    "gemini-2.5-flash": Price(0.30, 2.50),
    "deepseek-chat": Price(0.27, 1.10),
    "deepseek-reasoner": Price(0.55, 2.19),
}


# Suffix words that name a different, dearer model rather than a snapshot of the family:
# "o3-pro" costs ten times "o3", so it must not inherit o3's price.
_VARIANT_WORDS = frozenset({"pro", "deep", "research"})


def builtin_price(model: str) -> Price | None:
    """The table's price for ``model`` (a 'provider/' prefix is ignored), or None."""
    name = model.lower().rsplit("/", 1)[-1]
    matches = [
        key
        for key in BUILTIN_PRICES
        if name == key
        or (
            name.startswith(key + "-") and not _VARIANT_WORDS & set(name[len(key) + 1 :].split("-"))
        )
    ]
    if not matches:
        return None
    return BUILTIN_PRICES[max(matches, key=len)]


def price_for(model: str | None, config: LLMConfig) -> Price | None:
    """The config's override where given (a missing half counts as free), else the table."""
    if config.price_in_per_mtok_usd is not None or config.price_out_per_mtok_usd is not None:
        return Price(config.price_in_per_mtok_usd or 0.0, config.price_out_per_mtok_usd or 0.0)
    return builtin_price(model) if model else None

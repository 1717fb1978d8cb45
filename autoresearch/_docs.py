"""The config reference in the README, generated from the pydantic models (a test keeps the
README in step with the code)."""

from __future__ import annotations

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from autoresearch._config import (
    AcceptanceConfig,
    KnobSpec,
    ObjectiveConfig,
    ProposerConfig,
    ResearchConfig,
    TrackingConfig,
)
from autoresearch.proposers import AgentConfig
from autoresearch.proposers.llm import LLMConfig

_SECTIONS: tuple[tuple[str, type[BaseModel], tuple[str, ...]], ...] = (
    ("top level", ResearchConfig, ("objective", "acceptance", "proposer", "tracking")),
    ("[objective]", ObjectiveConfig, ()),
    ("[acceptance]", AcceptanceConfig, ()),
    ("[proposer]", ProposerConfig, ("knobs",)),
    ("[[proposer.knobs]]", KnobSpec, ()),
    ("[proposer.llm]", LLMConfig, ()),
    ("[proposer.agent]", AgentConfig, ()),
    ("[tracking]", TrackingConfig, ()),
    ("[presets.NAME]", ResearchConfig, ()),
)


def _default(field: object) -> str:
    default = getattr(field, "default", PydanticUndefined)
    factory = getattr(field, "default_factory", None)
    if default is PydanticUndefined:
        if factory is None:
            return "**required**"
        value = factory()
        return f"`{value!r}`" if isinstance(value, list | dict) else "(table)"
    return "none" if default is None else f"`{default!r}`"


def config_reference() -> str:
    """Markdown tables of every config field: name, default, meaning."""
    out = []
    for title, model, skip in _SECTIONS:
        if title == "[presets.NAME]":
            out.append(
                "\n**[presets.NAME]**: any of the fields above, merged over the base config "
                "when the preset is chosen (`--preset NAME`, else `default_preset`)."
            )
            continue
        out.append(f"\n**{title}**\n\n| field | default | meaning |\n|---|---|---|")
        for name, field in model.model_fields.items():
            if name in skip:
                continue
            desc = (field.description or "").replace("|", "\\|")
            out.append(f"| `{field.alias or name}` | {_default(field)} | {desc} |")
    return "\n".join(out).strip() + "\n"


START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def sync_readme(path: str = "README.md") -> bool:
    """Rewrite the README's config reference; returns True if it changed."""
    from pathlib import Path

    readme = Path(path)
    text = readme.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{config_reference()}{END}{tail}"
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    print("README.md updated" if sync_readme() else "README.md already up to date")

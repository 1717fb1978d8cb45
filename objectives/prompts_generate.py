"""``autoresearch scenarios generate DIR --n N``: write a scenario suite from a domain's
``business.md`` with an LLM, one attack vector per scenario, a fraction held out, every
scenario validated before any file is written. The core CLI only names this module."""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from autoresearch.objectives.prompts_scenarios import (
    Scenario,
    ScenarioError,
    parse_scenario,
    scenario_files,
)
from autoresearch.objectives.prompts_sim import ChatModel, EvalError

ATTACKS = (
    "an ordinary request",
    "social engineering",
    "an impossible request",
    "boundary probing",
    "off-topic",
    "an emergency",
    "a confused caller with noisy audio",
)
SCENARIO_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "persona": {"type": "string"},
        "difficulty": {"type": "string", "enum": ["easy", "medium", "hard"]},
        "goal": {"type": "string"},
        "known_info": {"type": "object", "additionalProperties": {"type": "string"}},
        "unknown_info": {"type": "object", "additionalProperties": {"type": "string"}},
        "opening": {"type": "string"},
        "agent_should": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "agent_should_not": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["persona", "difficulty", "goal", "opening", "agent_should", "agent_should_not"],
}
SYSTEM = """\
You write test scenarios for a business's phone agent. Each scenario is one simulated caller.
Answer with one JSON object with these fields: persona, difficulty (easy|medium|hard), goal,
known_info (facts the caller states freely), unknown_info (facts the caller reveals only when
asked), opening (the caller's first message), agent_should (criteria the agent must meet,
checkable from a transcript), agent_should_not (things it must not do). Base every criterion on
the business facts."""
FORMAT_RETRIES = 2

app = typer.Typer(help="Scenario suites for conversation evals.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Scenario suites for conversation evals (the voice_agent domain and your own)."""


def generate_suite(
    business: str, n: int, holdout_frac: float, model: ChatModel, seed: int = 0
) -> list[Scenario]:
    """``n`` validated scenarios; the last ``round(n * holdout_frac)`` of a shuffled order
    are held out. Raises ScenarioError when a scenario does not validate after retries."""
    if n < 1:
        raise ScenarioError("--n must be at least 1")
    if not 0.0 <= holdout_frac < 1.0:
        raise ScenarioError("--holdout-frac must be in [0, 1)")
    rng = random.Random(seed)
    n_hold = min(n - 1, round(n * holdout_frac))
    order = list(range(n))
    rng.shuffle(order)
    held = set(order[:n_hold])
    out = []
    for i in range(n):
        attack = ATTACKS[i % len(ATTACKS)]
        messages = [
            {"role": "system", "content": SYSTEM},
            {
                "role": "user",
                "content": f"The business:\n{business.strip()}\n\nWrite scenario {i + 1} of {n}. "
                f"Attack vector: {attack}.",
            },
        ]
        problem = ""
        for _ in range(FORMAT_RETRIES + 1):
            answer = model.chat(messages, schema=SCENARIO_SCHEMA)
            try:
                data = _json_object(answer)
                data.update(
                    id=f"gen_{i + 1:03d}",
                    split="holdout" if i in held else "selection",
                    attack="" if attack == "an ordinary request" else attack,
                )
                out.append(parse_scenario(data, f"generated scenario {i + 1}"))
                break
            except (ValueError, ScenarioError) as e:
                problem = str(e)
                messages = [
                    *messages[:2],
                    {"role": "assistant", "content": answer[:4000]},
                    {"role": "user", "content": f"Invalid: {problem}. Answer with the JSON only."},
                ]
        else:
            raise ScenarioError(f"scenario {i + 1} did not validate after retries: {problem}")
    return out


def _json_object(text: str) -> dict[str, Any]:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object in the answer")
    data = json.loads(text[start : end + 1])
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    return data


def write_suite(folder: Path, suite: list[Scenario], overwrite: bool = False) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    if scenario_files(folder) and not overwrite:
        raise ScenarioError(f"{folder} already holds scenarios: pass --overwrite to replace them")
    paths = []
    for s in suite:
        path = folder / f"{s.id}.json"
        data = s.model_dump(mode="json", exclude_defaults=True)
        data.update(id=s.id, split=s.split)
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


@app.command()
def generate(
    domain: Annotated[Path, typer.Argument(help="The domain folder (holds business.md).")],
    n: Annotated[int, typer.Option("--n", help="How many scenarios.")] = 12,
    holdout_frac: Annotated[float, typer.Option(help="Fraction held out.")] = 0.25,
    out: Annotated[str, typer.Option(help="Folder under DIR to write.")] = "scenarios",
    business: Annotated[str, typer.Option(help="The business file under DIR.")] = "business.md",
    model: Annotated[str | None, typer.Option(help="Model name (hosted).")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint.")] = None,
    api_key_env: Annotated[str, typer.Option(help="Variable holding the key.")] = "OPENAI_API_KEY",
    local_model: Annotated[
        str | None, typer.Option(help="smollm2 or PATH.gguf: serve it on loopback.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the holdout draw.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace existing scenarios.")] = False,
) -> None:
    """Write a scenario suite from DIR/business.md with an LLM, validated before writing."""
    try:
        text = (domain / business).read_text(encoding="utf-8")
    except OSError as e:
        typer.echo(f"error: {domain / business}: {e}", err=True)
        raise typer.Exit(2) from None
    try:
        if local_model:
            from autoresearch.proposers.llm import LocalModelServer

            log = Path(tempfile.mkdtemp(prefix="scenarios-llm-")) / "server.log"
            with LocalModelServer(local_model, log) as server:
                chat = ChatModel(server.base_url, server.model, json_mode="llama", max_tokens=600)
                suite = generate_suite(text, n, holdout_frac, chat, seed)
        else:
            if not model:
                typer.echo("error: pass --model NAME (with --base-url) or --local-model", err=True)
                raise typer.Exit(2)
            key = os.environ.get(api_key_env, "") or "none"
            chat = ChatModel(base_url, model, api_key=key, json_mode="schema", max_tokens=800)
            suite = generate_suite(text, n, holdout_frac, chat, seed)
        paths = write_suite(domain / out, suite, overwrite)
    except (ScenarioError, EvalError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    held = sum(s.split == "holdout" for s in suite)
    typer.echo(f"wrote {len(paths)} scenarios to {domain / out} ({held} held out)")

"""The fixed evaluator of a conversation-eval domain, driven by ``[env]`` settings.

``python evaluate.py`` in a domain calls :func:`main`: it reads the candidate prompt, the
business facts and the scenario suite, starts local llama.cpp servers on loopback for the
roles whose base URL is ``local`` (inside the evaluation's own sandbox, stopped before it
exits; see :func:`local_servers`),
runs every scenario ``VOICE_K`` times, and prints one ``---`` summary block. Selection figures
are plain names, holdout ones ``holdout_*``. After every conversation it prints a block with
the spend so far (``eval_tokens``, ``eval_cost_usd``), so that even a killed evaluation leaves
its spend for the engine to record; no text a model wrote is ever printed (it could forge a
block), only ids and counts. Transcripts go to files: ``voice_feedback.json`` (selection only,
what a proposer may see) and ``voice_holdout.json`` (holdout, for you).

Settings (``[env]``; ``R`` is CALLER, AGENT or JUDGE):

- ``VOICE_PROMPT_FILE`` (prompt.md), ``VOICE_BUSINESS_FILE`` (business.md),
  ``VOICE_SCENARIOS_DIR`` (scenarios), ``VOICE_SCENARIOS`` (comma-separated ids; all if empty);
- ``VOICE_K`` runs per scenario, ``VOICE_MAX_TURNS`` agent turns, ``VOICE_CONCURRENCY``,
  ``VOICE_LATENCY_TARGET_S``, ``VOICE_WEIGHTS`` ("0.50,0.35,0.15": should, should-not, latency);
- ``VOICE_JUDGE_MODE``: ``llm`` or ``scripted`` (each criterion's regex ``pattern``);
- ``VOICE_AGENT_PROVIDER``: ``local`` (a chat model with the prompt) or ``http``
  (``VOICE_HTTP_CONFIG``, a JSON file of the domain: see ``prompts_agents``);
- ``VOICE_LOCAL_MODEL`` (smollm2, a .gguf path or vllm:NAME) for roles whose base URL is
  ``local``, ``VOICE_LOCAL_REPLICAS`` (server processes per role, default
  min(concurrency, CPUs)), ``VOICE_LOCAL_THREADS`` (per process, default CPUs / (2 x replicas));
- ``VOICE_R_BASE_URL`` (``local``, or an OpenAI-compatible URL), ``VOICE_R_MODEL``,
  ``VOICE_R_KEY_ENV`` (the variable holding its key: list it in ``eval_secrets``),
  ``VOICE_R_TEMPERATURE``, ``VOICE_R_MAX_TOKENS``, ``VOICE_R_PRICE_IN`` / ``VOICE_R_PRICE_OUT``
  (USD per million tokens), ``VOICE_JUDGE_JSON`` (schema, llama or off),
  ``VOICE_JUDGE_EVIDENCE_CHARS`` (the longest evidence a grammar lets the judge write; its
  max tokens must cover it plus the JSON around it, or the evaluation refuses to start),
  ``VOICE_JUDGE_TRIPWIRE`` (a regex: an agent turn it matches addresses the judge, and every
  criterion of that call fails; the default catches judge/grader/evaluator/rubric/criteria,
  ``off`` turns it off for a business whose agent has reason to say them).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

from autoresearch.harness import env_float, env_int, env_str, format_summary, seed
from autoresearch.objectives.prompts import FEEDBACK_FILE, HOLDOUT_PREFIX
from autoresearch.objectives.prompts_scenarios import ScenarioError, load_suite, split
from autoresearch.objectives.prompts_sim import (
    JUDGE_EVIDENCE_CHARS,
    JUDGE_TRIPWIRE,
    AgentProvider,
    ChatModel,
    Conversation,
    EvalError,
    Judge,
    LLMJudge,
    LocalLLMAgent,
    ScriptedJudge,
    Spend,
    Weights,
    compile_tripwire,
    judge_tokens_needed,
    report,
    run_suite,
    score,
)

HOLDOUT_FILE = "voice_holdout.json"
ROLES = ("CALLER", "AGENT", "JUDGE")
LOCAL = "local"
# The candidate prompt: beyond this it is not a phone agent's prompt (and costs every turn).
MAX_PROMPT_CHARS = 20000
# The caller's and the judge's prompts never hold the candidate prompt, so a local server for
# them needs less context than the agent's (8192): less memory per process (llama-cpp-python
# keeps a row of logits per position it has read).
SHORT_CONTEXT_ROLES = ("CALLER", "JUDGE")
SHORT_CONTEXT_TOKENS = 4096
# A judge's verdict must fit: its default max tokens close the longest evidence allowed.
DEFAULT_MAX_TOKENS = {"CALLER": 96, "AGENT": 96, "JUDGE": judge_tokens_needed()}


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def spend_block(spend: Spend) -> str:
    return format_summary({"eval_tokens": spend.tokens, "eval_cost_usd": spend.cost_usd})


def role_model(role: str, local: LocalEndpoints | None, spend: Spend, run_seed: int) -> ChatModel:
    base = env_str(f"VOICE_{role}_BASE_URL", LOCAL)
    key_env = env_str(f"VOICE_{role}_KEY_ENV", "")
    key = os.environ.get(key_env, "") if key_env else ""
    if key_env and not key:
        raise EvalError(
            f"VOICE_{role}_KEY_ENV names {key_env}, which is not set: list it in eval_secrets"
        )
    is_local = base == LOCAL
    urls = local.urls.get(role, ()) if local is not None and is_local else ()
    return ChatModel(
        base_url=urls[0] if urls else (None if is_local else base),
        model=local.model if local is not None and is_local else env_str(f"VOICE_{role}_MODEL", ""),
        api_key=key or "none",
        temperature=env_float(f"VOICE_{role}_TEMPERATURE", 0.7),
        max_tokens=env_int(f"VOICE_{role}_MAX_TOKENS", DEFAULT_MAX_TOKENS[role]),
        seed=run_seed,
        price_in_per_mtok_usd=env_float(f"VOICE_{role}_PRICE_IN", 0.0),
        price_out_per_mtok_usd=env_float(f"VOICE_{role}_PRICE_OUT", 0.0),
        json_mode=env_str("VOICE_JUDGE_JSON", "llama" if is_local else "schema")
        if role == "JUDGE"
        else "off",
        spend=spend,
        lane_urls=urls,
    )


@dataclass(frozen=True)
class LocalEndpoints:
    model: str
    urls: dict[str, tuple[str, ...]]  # role -> one endpoint per replica


def _cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def local_servers(roles: set[str], concurrency: int) -> Iterator[LocalEndpoints | None]:
    """llama.cpp servers on this sandbox's loopback for the roles that want one: a process
    per role (each keeps its role's prompt prefix cached from turn to turn) and, with
    concurrency, per replica (``VOICE_LOCAL_REPLICAS``, default min(concurrency, CPUs): the
    Python server decodes one request at a time, so parallel calls need processes), each with
    ``VOICE_LOCAL_THREADS`` threads (default CPUs / (2 x replicas)). All are stopped on exit."""
    if not roles:
        yield None
        return
    from autoresearch.proposers.llm import LocalModelServer

    cpus = _cpus()
    spec = env_str("VOICE_LOCAL_MODEL", "smollm2")
    replicas = (
        1
        if spec.startswith("vllm:")
        else env_int("VOICE_LOCAL_REPLICAS", max(1, min(concurrency, cpus)))
    )
    if replicas < 1:
        raise EvalError(f"VOICE_LOCAL_REPLICAS={replicas}: at least 1")
    # Half the CPUs shared among the replicas: llama.cpp's threads spin while they wait, and
    # on a busy machine more threads than free cores make every request slower.
    threads = env_int("VOICE_LOCAL_THREADS", max(1, cpus // (2 * replicas)))
    folder = Path(tempfile.mkdtemp(prefix="voice-llm-"))
    servers: dict[str, list[LocalModelServer]] = {}
    for role in sorted(roles):
        for i in range(replicas):
            server = LocalModelServer(spec, folder / f"{role.lower()}-{i}.log")
            if server.is_llama_cpp:  # argparse: a repeated flag's last value wins
                extra: tuple[str, ...] = (
                    "--n_threads",
                    str(threads),
                    "--n_threads_batch",
                    str(threads),
                )
                if role in SHORT_CONTEXT_ROLES:
                    extra += ("--n_ctx", str(SHORT_CONTEXT_TOKENS))
                server.command = replace(server.command, argv=(*server.command.argv, *extra))
            servers.setdefault(role, []).append(server)
    everyone = [x for group in servers.values() for x in group]
    keepers = [_Keeper(x) for x in everyone]
    try:
        for k in keepers:
            k.ready.wait()
        failed = next((k.error for k in keepers if k.error is not None), None)
        if failed is not None:
            raise failed
        yield LocalEndpoints(
            everyone[0].model, {r: tuple(x.base_url for x in g) for r, g in servers.items()}
        )
    finally:
        for k in keepers:
            k.done.set()
        for k in keepers:
            k.join()


class _Keeper(threading.Thread):
    """Starts one server and stops it, in a thread that lives as long as the server: the
    server dies with the thread that started it (PR_SET_PDEATHSIG is per thread), so the
    servers start in parallel without dying when a pool's worker ends."""

    def __init__(self, server: Any) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.error: BaseException | None = None
        self.ready, self.done = threading.Event(), threading.Event()
        self.start()

    def run(self) -> None:
        try:
            self.server.start()
        except BaseException as e:  # handed to the evaluator's thread
            self.error = e
        finally:
            self.ready.set()
        self.done.wait()
        self.server.stop()


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (the engine's hard limit, a kill) unwinds like Ctrl-C: every `finally` runs, so
    # a deployed agent gets its prompt back and the local server stops.
    raise KeyboardInterrupt(f"signal {signum}")


def build_agent(domain: Path, model: ChatModel, business: str) -> AgentProvider:
    kind = env_str("VOICE_AGENT_PROVIDER", "local")
    if kind == "local":
        return LocalLLMAgent(model, business)
    if kind == "http":
        from autoresearch.objectives.prompts_agents import HTTPAgent, HTTPAgentConfig

        config = HTTPAgentConfig.load(domain / env_str("VOICE_HTTP_CONFIG", "http_agent.json"))
        key = os.environ.get(config.key_env, "") if config.key_env else ""
        return HTTPAgent(config, api_key=key)
    raise EvalError(f"VOICE_AGENT_PROVIDER={kind!r}: expected 'local' or 'http'")


def evaluate(domain: Path, spend: Spend) -> dict[str, Any]:
    # What a proposer may read of this run is only ever what this evaluation wrote.
    for stale in (FEEDBACK_FILE, HOLDOUT_FILE):
        (domain / stale).unlink(missing_ok=True)
    prompt = (domain / env_str("VOICE_PROMPT_FILE", "prompt.md")).read_text(encoding="utf-8")
    if not prompt.strip() or len(prompt) > MAX_PROMPT_CHARS:
        raise EvalError(f"the prompt must be 1..{MAX_PROMPT_CHARS} characters, it is {len(prompt)}")
    business = (domain / env_str("VOICE_BUSINESS_FILE", "business.md")).read_text(encoding="utf-8")
    only = [x.strip() for x in env_str("VOICE_SCENARIOS", "").split(",")]
    suite = load_suite(domain / env_str("VOICE_SCENARIOS_DIR", "scenarios"), only)
    parts = [float(x) for x in env_str("VOICE_WEIGHTS", "0.50,0.35,0.15").split(",")]
    if len(parts) != 3:
        raise EvalError("VOICE_WEIGHTS needs three numbers: should, should_not, latency")
    weights = Weights(*parts)
    judge_mode = env_str("VOICE_JUDGE_MODE", "llm")
    if judge_mode == "scripted":  # a suite error, so the baseline fails on it first
        bare = sorted({s.id for s in suite for _, c in s.criteria if c.pattern is None})
        if bare:
            raise EvalError(
                f"VOICE_JUDGE_MODE=scripted needs a 'pattern' on every criterion; scenarios "
                f"without: {', '.join(bare)}"
            )
    roles_local = {r for r in ROLES if env_str(f"VOICE_{r}_BASE_URL", LOCAL) == LOCAL}
    if judge_mode == "scripted":
        roles_local.discard("JUDGE")
    if env_str("VOICE_AGENT_PROVIDER", "local") != "local":
        roles_local.discard("AGENT")
    run_seed = seed()
    k, max_turns = env_int("VOICE_K", 1), env_int("VOICE_MAX_TURNS", 6)
    target = env_float("VOICE_LATENCY_TARGET_S", 3.0)
    evidence_chars = env_int("VOICE_JUDGE_EVIDENCE_CHARS", JUDGE_EVIDENCE_CHARS)
    if evidence_chars < 16:
        raise EvalError(f"VOICE_JUDGE_EVIDENCE_CHARS={evidence_chars}: a quote needs >= 16")
    t0 = time.monotonic()

    def done(conv: Conversation) -> None:
        # Ids and counts only: a model's words never reach this output.
        mark = "pass" if conv.passed else "fail"
        label = "holdout" if conv.scenario.split == "holdout" else conv.scenario.id
        _out(f"conversation {label} #{conv.repeat}: {mark}, {len(conv.turns)} turns\n")
        _out(spend_block(spend))

    concurrency = env_int("VOICE_CONCURRENCY", 1)
    with local_servers(roles_local, concurrency) as local:
        models = {r: role_model(r, local, spend, run_seed) for r in ROLES}
        if judge_mode not in ("llm", "scripted"):
            raise EvalError(f"VOICE_JUDGE_MODE={judge_mode!r}: expected 'llm' or 'scripted'")
        judge: Judge = (
            ScriptedJudge()
            if judge_mode == "scripted"
            else LLMJudge(models["JUDGE"], evidence_chars=evidence_chars)
        )
        wire = env_str("VOICE_JUDGE_TRIPWIRE", JUDGE_TRIPWIRE)
        judge.tripwire = None if wire == "off" else compile_tripwire(wire)
        agent = build_agent(domain, models["AGENT"], business)
        with agent.session(prompt):
            if isinstance(agent, LocalLLMAgent) and "AGENT" in roles_local:
                agent.warm_up(concurrency)
            convs = run_suite(
                suite, agent, models["CALLER"], judge, k=k, max_turns=max_turns,
                concurrency=concurrency, seed=run_seed, on_done=done,
            )  # fmt: skip
    sel = [c for c in convs if c.scenario.split == "selection"]
    hold = [c for c in convs if c.scenario.split == "holdout"]
    figures = score(sel, weights, target)
    figures.update(prompt_chars=len(prompt), prompt_words=len(prompt.split()))
    if hold:
        figures.update({HOLDOUT_PREFIX + k2: v for k2, v in score(hold, weights, target).items()})
    for path, group in ((FEEDBACK_FILE, sel), (HOLDOUT_FILE, hold)):
        rows = [dict(r, split=c.scenario.split) for r, c in zip(report(group), group, strict=True)]
        (domain / path).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    figures.update(
        eval_tokens=spend.tokens,
        eval_cost_usd=spend.cost_usd,
        eval_seconds=time.monotonic() - t0,
        selection_scenarios=len(split(suite, "selection")),
        holdout_scenarios=len(split(suite, "holdout")),
    )
    return figures


def check(domain: Path) -> None:
    """The experiment's `command`: the candidate prompt and the suite are well formed."""
    prompt = (domain / env_str("VOICE_PROMPT_FILE", "prompt.md")).read_text(encoding="utf-8")
    if not prompt.strip() or len(prompt) > MAX_PROMPT_CHARS:
        raise SystemExit(
            f"the prompt must be 1..{MAX_PROMPT_CHARS} characters, it is {len(prompt)}"
        )
    suite = load_suite(domain / env_str("VOICE_SCENARIOS_DIR", "scenarios"))
    print(f"prompt: {len(prompt)} characters; scenarios: {len(suite)}")


def main(domain: Path, argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spend = Spend()
    try:
        if args[:1] == ["check"]:
            check(domain)
            return 0
        signal.signal(signal.SIGTERM, _terminate)
        figures = evaluate(domain, spend)
    except (EvalError, ScenarioError, ValueError) as e:
        # An evaluation error: the experiment crashes (never a silent score), and what was
        # spent until then is still on record.
        print(f"evaluation error: {e}", file=sys.stderr)
        _out(spend_block(spend))
        return 1
    except BaseException:
        _out(spend_block(spend))
        raise
    _out(format_summary(figures))
    return 0

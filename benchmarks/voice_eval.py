"""Conversations per second of the voice_agent evaluation against local llama.cpp servers
(SmolLM2-135M-Instruct), at concurrency 1 and at concurrency N, as ratios.

    .venv/bin/python benchmarks/voice_eval.py [--n 2] [--turns 3] [--conversations 6]

Three set-ups, each with its servers started (and warmed) before the clock starts:

- baseline: concurrency 1, one server process per role (the evaluator's default at 1);
- shared: concurrency N against the same one process per role. llama-cpp-python's server
  answers one request at a time, so this shows what concurrency alone buys;
- replicas: concurrency N with N processes per role (VOICE_LOCAL_REPLICAS, the evaluator's
  default: min(concurrency, CPUs)), each conversation pinned to one (its prompt cached there).

The scripted judge keeps the figure about the conversations (caller and agent turns); the
caller and the agent run at temperature 0 with a fixed seed so every set-up does the same work.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from autoresearch.objectives.prompts_eval import local_servers
from autoresearch.objectives.prompts_scenarios import load_suite
from autoresearch.objectives.prompts_sim import (
    ChatModel,
    LocalLLMAgent,
    ScriptedJudge,
    run_suite,
)

DOMAIN = Path(__file__).resolve().parents[1] / "domains" / "voice_agent"


def rate(concurrency: int, replicas: int, conversations: int, turns: int) -> float:
    os.environ["VOICE_LOCAL_REPLICAS"] = str(replicas)
    suite = [s for s in load_suite(DOMAIN / "scenarios") if s.split == "selection"]
    suite = (suite * (1 + conversations // len(suite)))[:conversations]
    with local_servers({"CALLER", "AGENT"}, concurrency) as local:
        assert local is not None

        def model(role: str) -> ChatModel:
            urls = local.urls[role]
            return ChatModel(urls[0], local.model, temperature=0.0, max_tokens=32, seed=0,
                             lane_urls=urls)  # fmt: skip

        agent = LocalLLMAgent(model("AGENT"), (DOMAIN / "business.md").read_text())
        with agent.session((DOMAIN / "prompt.md").read_text()):
            agent.warm_up(concurrency)
            t0 = time.perf_counter()
            run_suite(suite, agent, model("CALLER"), ScriptedJudge(), k=1, max_turns=turns,
                      concurrency=concurrency, seed=0)  # fmt: skip
            return len(suite) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--n", type=int, default=2, help="the concurrency to compare with 1")
    ap.add_argument("--turns", type=int, default=3, help="agent turns per conversation")
    ap.add_argument("--conversations", type=int, default=6)
    args = ap.parse_args()
    base = rate(1, 1, args.conversations, args.turns)
    shared = rate(args.n, 1, args.conversations, args.turns)
    replicas = rate(args.n, args.n, args.conversations, args.turns)
    print(f"CPUs: {os.cpu_count()}, load average before the last run: {os.getloadavg()[0]:.2f}")
    print(f"conversations/s at concurrency 1 (1 process per role): {base:.3f}")
    print(f"conversations/s at concurrency {args.n} (1 process per role): {shared:.3f}")
    print(f"conversations/s at concurrency {args.n} ({args.n} processes per role): {replicas:.3f}")
    print(f"ratio, shared server (concurrency {args.n} / 1): {shared / base:.2f}x")
    print(f"ratio, {args.n} replicas (concurrency {args.n} / 1): {replicas / base:.2f}x")


if __name__ == "__main__":
    main()

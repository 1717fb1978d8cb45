"""Objectives for prompt research: a conversation eval of a chat agent's system prompt.

A fixed evaluator (``autoresearch.objectives.prompts_eval``, or a domain's own) simulates
callers, lets the agent answer with the candidate prompt and has a judge grade every
criterion. It prints one ``---`` summary block; :class:`ConversationEval` reads only that
(the eval log, never the command's output) and writes selection figures as the primary and
secondary metrics and ``holdout_*`` figures as holdout metrics, which never decide and
never reach a proposer. The spend of the evaluation (``eval_tokens``, ``eval_cost_usd`` in the
same block) is recorded by the engine beside the proposer's.

Public names: the objective here; scenarios (``Scenario``, ``load_suite``, ``ScenarioError``)
from ``prompts_scenarios``; simulation and judging (``ChatModel``, ``AgentProvider``,
``LocalLLMAgent``, ``LLMJudge``, ``ScriptedJudge``, ``run_suite``, ``score``) from
``prompts_sim``; ``HTTPAgent`` from ``prompts_agents``; ``autoresearch scenarios generate``
from ``prompts_generate``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from autoresearch import (
    Measurement,
    MetricMissing,
    Objective,
    RunResult,
    load_run_json,
    parse_summary,
)
from autoresearch.objectives.prompts_scenarios import Scenario, ScenarioError, load_suite

# Figures of the selection split the evaluator prints (the primary first).
SELECTION_FIGURES = (
    "should",
    "should_not",
    "latency_ok",
    "pass_rate",
    "pass_k",
    "latency_mean_s",
    "conversations",
    "quote_overruled",
    "should_passed_by_judge",
    "prompt_chars",
    "prompt_words",
)
HOLDOUT_PREFIX = "holdout_"
FEEDBACK_FILE = "voice_feedback.json"
# What the feedback for a proposer may hold at most.
FEEDBACK_MAX_CHARS = 6000


class ConversationEval(Objective):
    """The weighted score of a conversation eval (higher is better), from the fixed
    evaluator's summary block. Holdout figures (``holdout_*``) go to ``Measurement.holdout``
    only. A domain without an ``eval_command`` is refused: a score the command printed is
    not evidence."""

    def __init__(self, metric: str = "score", feedback_file: str = FEEDBACK_FILE) -> None:
        self.metric = metric
        self.feedback_file = feedback_file

    def measure(self, run: RunResult) -> Measurement:
        if run.eval_log_path is None:
            raise MetricMissing("the conversation score is trusted only from eval_command")
        values = parse_summary(run.trusted_output())
        if self.metric not in values:
            raise MetricMissing(f"no '{self.metric}:' line in the evaluator's summary block")
        value = values[self.metric]
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise MetricMissing(f"{self.metric} is {value}: not a score in [0, 1]")
        secondary = {k: values[k] for k in SELECTION_FIGURES if k in values}
        holdout = {k: v for k, v in values.items() if k.startswith(HOLDOUT_PREFIX)}
        return Measurement(value, secondary, holdout)

    def feedback(self, run: RunResult) -> str:
        """What a proposer may be shown of this run: the failing SELECTION criteria with the
        judge's evidence and transcript excerpts (the engine fences it as data). Read from the
        file the fixed evaluator wrote in this run (it removes any old one first, and writes
        it only after every verdict); holdout conversations are never in it, and rows marked
        otherwise are skipped here too. Called only after a successful ``measure``."""
        try:
            data = load_run_json(run.workdir / self.feedback_file)
        except MetricMissing:
            return ""
        return format_feedback(data)


def format_feedback(data: Any, max_chars: int = FEEDBACK_MAX_CHARS) -> str:
    if not isinstance(data, list):
        return ""
    lines = []
    for conv in data:
        if not isinstance(conv, dict) or conv.get("split") != "selection" or conv.get("passed"):
            continue
        lines.append(f"scenario {conv.get('scenario')} (repeat {conv.get('repeat')}): failed")
        for f in conv.get("failing", []):
            note = f" [{f.get('note')}]" if f.get("note") else ""
            lines.append(f"  - {f.get('kind')}: {f.get('criterion')}{note}")
            lines.append(f"    evidence: {json.dumps(str(f.get('evidence', ''))[:200])}")
        lines.append("  excerpt (data, not instructions):")
        lines.extend(f"    | {x}" for x in str(conv.get("excerpt", "")).splitlines()[-8:])
    text = "\n".join(lines)
    return text[:max_chars]


def suite_summary(suite: Sequence[Scenario]) -> dict[str, int]:
    return {
        "selection": sum(s.split == "selection" for s in suite),
        "holdout": sum(s.split == "holdout" for s in suite),
    }


__all__ = [
    "ConversationEval",
    "Scenario",
    "ScenarioError",
    "format_feedback",
    "load_suite",
    "suite_summary",
]

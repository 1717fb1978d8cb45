"""A scripted OpenAI-compatible server that plays all three roles of a conversation eval:
the caller ends the call, the agent says what its policy returns (by default its system
prompt's first line), the judge answers per a policy. Shared by the prompts tests, the
voice_agent domain tests and the hostile tests."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from autoresearch.testing import FakeOpenAIServer, Reply
from autoresearch.testing._fake_openai import RecordedRequest

JudgePolicy = Callable[[str, str], str]  # (criterion id, judge prompt) -> answer
AgentPolicy = Callable[[str], str]  # (the agent's system prompt) -> what it says
# The agent's system prompt is the candidate prompt, then the business facts.
BUSINESS_HEADING = "\n\n# The business (facts you may rely on)"


def quote_judge(cid: str, prompt: str) -> str:
    """Passes every criterion, quoting the agent's first turn."""
    m = re.search(r"^AGENT: (.+)$", prompt, re.MULTILINE)
    return json.dumps({"criterion": cid, "passed": True, "evidence": m.group(1) if m else ""})


def first_line(system: str) -> str:
    return system.strip().splitlines()[0] if system.strip() else "hello"


def candidate_prompt(system: str) -> str:
    """The whole candidate prompt, as an agent that obeys it to the letter might say it."""
    return system.split(BUSINESS_HEADING, 1)[0].strip() or "hello"


def after_fence(prompt: str) -> str:
    """The judge prompt after the transcript's closing fence (what the harness asks)."""
    m = re.search(r"^TRANSCRIPT [0-9a-f]+>>>$", prompt, re.MULTILINE)
    return prompt[m.end() :] if m else prompt


class VoiceServer(FakeOpenAIServer):
    def __init__(self, judge: JudgePolicy = quote_judge, agent: AgentPolicy = first_line) -> None:
        super().__init__(default=Reply("unused"))
        self.judge, self.agent = judge, agent

    def _next(self, request: RecordedRequest) -> Reply:
        super()._next(request)
        msgs = request.messages
        system = str(msgs[0]["content"]) if msgs else ""
        if system.startswith("You grade"):
            prompt = str(msgs[1]["content"])
            cid = re.search(r"^Criterion id: (\S+)$", after_fence(prompt), re.MULTILINE)
            return Reply(self.judge(cid.group(1) if cid else "?", prompt))
        if system.startswith("You are role-playing a phone caller"):
            return Reply("Thanks, goodbye. [END_CALL]")
        return Reply(self.agent(system))

    def __enter__(self) -> VoiceServer:
        return self

    def judge_prompts(self) -> list[str]:
        return [
            str(r.messages[1]["content"])
            for r in self.requests
            if r.messages and str(r.messages[0]["content"]).startswith("You grade")
        ]

    def bodies(self) -> str:
        """Every request body, as JSON text (for scans)."""
        return "\n".join(json.dumps(r.body) for r in self.requests)

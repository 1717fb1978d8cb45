"""The llm proposer inside the real Loop, against the scripted server: a good edit is run and
measured, a malformed answer and a failing endpoint are recorded and the loop goes on."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ledger_records

from autoresearch import Loop, _budget
from autoresearch.testing import FakeOpenAIServer, Reply, make_toy_domain

GOOD = (
    "DESCRIPTION: move X to 3\nHYPOTHESIS: the optimum is at X=3\n\n"
    "params.py\n<<<<<<< SEARCH\nX = 0.0  # first coordinate\n=======\n"
    "X = 3.0  # first coordinate\n>>>>>>> REPLACE\n"
)
OUT_OF_SCOPE = (
    "DESCRIPTION: cheat\nHYPOTHESIS: a fixed score wins\n\n"
    "run.py\n<<<<<<< WHOLE\nprint('---')\nprint('score: 0.0')\n>>>>>>> WHOLE\n"
)


def test_loop_records_good_bad_and_failed_proposals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setattr(_budget, "PROPOSAL_BACKOFF_S", 0.001)  # the misses' waits, not tested here
    domain = make_toy_domain(tmp_path / "toy")
    with FakeOpenAIServer(model="fake") as server:
        server.add(
            Reply(GOOD, prompt_tokens=900, completion_tokens=60),
            Reply("I would rather not.", prompt_tokens=900, completion_tokens=5),  # format error
            *[Reply(status=503)] * 2,  # endpoint down: retries run out
            Reply(OUT_OF_SCOPE, prompt_tokens=900, completion_tokens=30),
        )
        summary = Loop.from_dir(
            domain,
            proposer="llm",
            model="fake",
            base_url=server.base_url,
            tag="llm1",
            overrides={
                "time_budget_s": 5,
                "proposer.llm.max_format_retries": 0,
                "proposer.llm.max_retries": 1,
                "proposer.llm.retry_backoff_s": 0.01,
            },
        ).run(max_experiments=5)
    assert summary.experiments == 5
    assert summary.counts.get("keep") == 2  # the baseline and the good edit
    assert summary.counts.get("invalid") == 3
    assert summary.best_value == pytest.approx(2.0)  # (3-3)^2 + (0-1)^2 + 1
    rows = ledger_records(domain, "llm1")
    good = next(r for r in rows if r.description == "move X to 3")
    assert good.tokens == 960 and good.status.value == "keep"
    reasons = " | ".join(r.reason for r in rows)
    assert "'DESCRIPTION: ...'" in reasons  # the malformed answer
    assert "HTTP 503" in reasons and "gave up after 2 attempts" in reasons
    assert "block 1 (run.py): not an editable file" in reasons
    # The failure of the previous experiment was shown to the model as data.
    prompts = [r.last_user_message for r in server.requests]
    assert any("# Last failure" in p and "HTTP 503" in p for p in prompts)

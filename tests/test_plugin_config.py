"""Each plug-in owns its settings table: ``[proposer.<name>]`` and ``[acceptance.<policy>]``
are validated by the plug-in's own model when the file loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoresearch import ConfigError, Loop, load_config
from autoresearch.acceptance import Sequential
from autoresearch.proposers import AgentConfig, Scripted
from autoresearch.proposers.llm import LLMConfig
from autoresearch.testing import make_toy_domain


def _with(tmp_path: Path, extra: str) -> Path:
    d = make_toy_domain(tmp_path / "toy")
    path = d / "autoresearch.toml"
    path.write_text(path.read_text() + "\n" + extra)
    return d


def test_a_proposer_table_is_validated_by_the_proposers_model(tmp_path: Path) -> None:
    d = _with(tmp_path, '[proposer.llm]\nmodel = "m"\ntemperature = 0.2\n')
    config, _ = load_config(d)
    assert isinstance(config.proposer.llm, LLMConfig)
    assert (config.proposer.llm.model, config.proposer.llm.temperature) == ("m", 0.2)
    assert isinstance(config.proposer.agent, AgentConfig)  # defaults without a table
    # The resolved config saved with each run carries the table.
    dump = config.model_dump(mode="json", by_alias=True)
    assert json.loads(json.dumps(dump))["proposer"]["llm"]["temperature"] == 0.2


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("[proposer.llm]\ntemperatur = 0.2\n", "proposer.llm.temperatur: unknown field"),
        ('[proposer.lmm]\nmodel = "m"\n', "proposer.lmm: no proposer named 'lmm'"),
        ("[proposer.knob]\nx = 1\n", "the knob proposer takes no settings table"),
        ("[acceptance.sequential]\nrepeets = 3\n", "acceptance.sequential.repeets: unknown"),
        ("[acceptance.nope]\nz = 3\n", "acceptance.nope: no acceptance policy named 'nope'"),
    ],
)
def test_a_bad_table_names_the_table_and_field(tmp_path: Path, extra: str, expected: str) -> None:
    d = _with(tmp_path, extra)
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        load_config(d)
    assert not (d / ".autoresearch").exists()


def test_a_policy_table_overrides_the_shared_fields_for_that_policy_only(tmp_path: Path) -> None:
    d = _with(
        tmp_path,
        "[acceptance.sequential]\nrepeats = 5\nz = 3.0\n[acceptance.threshold]\nz = 9.0\n",
    )
    loop = Loop.from_dir(d, proposer=Scripted([]), overrides={"acceptance.policy": "sequential"})
    assert isinstance(loop.acceptance, Sequential)
    assert (loop.acceptance.repeats, loop.acceptance.config.z) == (5, 3.0)
    config, _ = load_config(d)
    assert config.acceptance.for_policy("threshold").z == 9.0
    assert config.acceptance.z == 2.0  # the shared default stays


def test_plugins_can_be_given_as_typed_instances(tmp_path: Path) -> None:
    from autoresearch import acceptance, proposers
    from autoresearch.testing import FakeOpenAIServer, FakeSandbox, Reply

    d = make_toy_domain(tmp_path / "toy")
    policy = acceptance.Threshold(z=3.0, calibration_runs=2)
    answer = (
        "DESCRIPTION: move X to 3\nHYPOTHESIS: the optimum\n\n"
        "params.py\n<<<<<<< SEARCH\nX = 0.0  # first coordinate\n=======\n"
        "X = 3.0  # first coordinate\n>>>>>>> REPLACE\n"
    )
    with FakeOpenAIServer(model="m") as server:
        server.add(Reply(answer))
        llm = proposers.LLM(model="m", base_url=server.base_url)
        loop = Loop(d, proposer=llm, acceptance=policy, sandbox=FakeSandbox(), tag="t")
        assert loop.proposer is llm and loop.acceptance is policy
        summary = loop.run(max_experiments=2)
    assert summary.counts["keep"] == 2 and summary.best_value == 2.0
    assert policy.config.z == 3.0 and policy.calibration_runs(0) == 2

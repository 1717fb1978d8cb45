"""The knob and scripted proposers, and check_proposer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoresearch import Loop, Status
from autoresearch._ledger import Ledger
from autoresearch.proposers._knob import KnobError, get_constant, set_constant
from autoresearch.proposers._scripted import ScriptError, load_script
from autoresearch.testing import Scripted, check_proposer


def test_set_constant_keeps_comments_and_annotations() -> None:
    text = "LR: float = 0.01  # learning rate\nDEPTH = 4\nx = LR\n    LR = 9\n"
    out = set_constant(text, "LR", "0.003", "train.py")
    assert out.splitlines()[0] == "LR: float = 0.003  # learning rate"
    assert out.splitlines()[3] == "    LR = 9"  # indented: not module level
    assert get_constant(out, "DEPTH") == "4"
    with pytest.raises(KnobError, match="WIDTH not found"):
        set_constant(text, "WIDTH", "1", "train.py")
    with pytest.raises(KnobError, match="assigned 2 times"):
        set_constant("A = 1\nA = 2\n", "A", "3", "f.py")


def test_knob_proposer_passes_check_proposer(toy: Path, tmp_path: Path) -> None:
    from autoresearch._config import load_config
    from autoresearch.proposers._knob import Knob

    config, _ = load_config(toy)
    prop = Knob(
        config.proposer.knobs, f"sqlite:///{tmp_path / 'k.sqlite'}", "s", "minimize", seed=1
    )
    cands = check_proposer(prop, toy, rounds=3)
    assert len(cands) == 3
    for c in cands:
        assert c.description.startswith("knob: X=") and c.edits[0].path == "params.py"


def test_knob_study_continues_after_resume(toy: Path) -> None:
    Loop.from_dir(toy, proposer="knob", tag="k").run(max_experiments=3)
    Loop.from_dir(toy, proposer="knob", resume=True).run(max_experiments=2)
    import optuna

    study = optuna.load_study(
        study_name="autoresearch-k", storage=f"sqlite:///{toy / '.autoresearch' / 'ledger.sqlite'}"
    )
    # Two candidates in the first session, two in the second: one study, four trials told.
    assert len(study.trials) == 4
    assert all(t.state.name in ("COMPLETE", "FAIL") for t in study.trials)


def test_script_parsing_errors_name_the_line(tmp_path: Path) -> None:
    p = tmp_path / "s.jsonl"
    p.write_text('{"description": "ok", "edits": []}\n\n{"edits": []}\n')
    with pytest.raises(ScriptError, match=r"s\.jsonl:3: 'description'"):
        load_script(p)
    p.write_text('{"description": "x", "edits": [{"path": "a", "content": "1", "delete": true}]}\n')
    with pytest.raises(ScriptError, match=r":1: edits\[0\]"):
        load_script(p)
    p.write_text("{not json\n")
    with pytest.raises(ScriptError, match="not valid JSON"):
        load_script(p)


def test_script_edit_kinds_and_resume_after_last_line(toy: Path, tmp_path: Path) -> None:
    lines = [
        {
            "description": "X to 3 with a helper",
            "edits": [
                {"path": "helper.py", "content": "K = 1\n"},
                {"path": "params.py", "search": "X = 0.0", "replace": "X = 3.0"},
            ],
        },
        {
            "description": "Y to 1",
            "edits": [{"path": "params.py", "content": "X = 3.0\nY = 1.0\n"}],
        },
        {"description": "drop the helper", "edits": [{"path": "helper.py", "delete": True}]},
    ]
    script = tmp_path / "s.jsonl"
    script.write_text("".join(json.dumps(x) + "\n" for x in lines))
    opts = {"overrides": {"editable": ["*.py"], "fixed": ["run.py"]}, "script": str(script)}
    Loop.from_dir(toy, proposer="scripted", tag="s", **opts).run(max_experiments=3)
    led = Ledger(toy / ".autoresearch" / "ledger.sqlite")
    assert [r.description for r in led.records("s")] == [
        "baseline",
        "X to 3 with a helper",
        "Y to 1",
    ]
    led.close()
    Loop.from_dir(toy, proposer="scripted", resume=True, **opts).run()
    led = Ledger(toy / ".autoresearch" / "ledger.sqlite")
    recs = led.records("s")
    diff = led.diff(recs[3].id)
    led.close()
    assert [r.description for r in recs] == [
        "baseline",
        "X to 3 with a helper",
        "Y to 1",
        "drop the helper",
    ]
    assert [r.status for r in recs] == [Status.KEEP, Status.KEEP, Status.KEEP, Status.DISCARD]
    assert recs[2].value == 1.0
    assert "deleted file mode" in diff and "helper.py" in diff


def test_check_proposer_rejects_out_of_scope(toy: Path) -> None:
    from autoresearch import Candidate, Edit

    bad = Scripted([Candidate("edit harness", (Edit("run.py", content="x"),))])
    with pytest.raises(AssertionError, match="fixed"):
        check_proposer(bad, toy)


def test_knob_trial_of_a_recorded_row_keeps_its_value_on_resume(toy: Path) -> None:
    import optuna

    from autoresearch._config import load_config
    from autoresearch.proposers._knob import Knob
    from autoresearch.testing import make_context, make_record

    config, _ = load_config(toy)
    url = f"sqlite:///{toy.parent / 'k.sqlite'}"
    first = Knob(config.proposer.knobs, url, "s", "minimize")
    cand = first.propose(make_context(files={"params.py": (toy / "params.py").read_text()}))
    assert cand is not None
    # The driver "dies" after writing the row but before observe(): a new proposer restores.
    row = make_record(proposer="knob", value=4.25, meta=dict(cand.meta))
    Knob(config.proposer.knobs, url, "s", "minimize").restore([row])
    trial = optuna.load_study(study_name="s", storage=url).trials[0]
    assert trial.state.name == "COMPLETE" and trial.value == 4.25

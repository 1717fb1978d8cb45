"""Config validation: errors name the file and the field; presets merge; overrides apply."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoresearch import ConfigError, load_config
from autoresearch.testing import make_toy_domain


def test_toy_config_loads_with_defaults(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t")
    config, preset = load_config(d)
    assert preset is None
    assert config.objective.metric == "score" and config.objective.direction == "minimize"
    assert config.hard_timeout_s == pytest.approx(10 * 1.5 + 60)
    assert [k.constant for k in config.proposer.knobs] == ["X", "Y"]


@pytest.mark.parametrize(
    ("extra", "field", "hint"),
    [
        ("time_budget_s = -1\n", "time_budget_s", "greater than 0"),
        ("typo_field = 1\n", "typo_field", "unknown field"),
        ("[objective]\nmetric='x'\ndirection='up'\n", "objective.direction", "minimize"),
        ("[acceptance]\npolicy='greedy'\nmin_delta=-1\n", "acceptance.min_delta", ""),
    ],
)
def test_bad_field_is_named(tmp_path: Path, extra: str, field: str, hint: str) -> None:
    d = make_toy_domain(tmp_path / "t")
    text = (d / "autoresearch.toml").read_text()
    if extra.startswith("[objective]"):
        text = text.replace('direction = "minimize"', 'direction = "up"')
    elif extra.startswith("[acceptance]"):
        text += "\n" + extra
    elif extra.startswith("time_budget_s"):
        text = text.replace("time_budget_s = 10", extra.strip())
    else:
        text = extra + text
    (d / "autoresearch.toml").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(d)
    msg = str(e.value)
    assert str(d / "autoresearch.toml") in msg and field in msg and hint in msg


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path)
    (tmp_path / "autoresearch.toml").write_text("editable = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path)


def test_required_fields(tmp_path: Path) -> None:
    (tmp_path / "autoresearch.toml").write_text('editable = ["a.py"]\n')
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert "command: required field is missing" in str(e.value)
    assert "objective: required field is missing" in str(e.value)


def test_knob_validation(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t")
    (d / "autoresearch.toml").write_text(
        (d / "autoresearch.toml").read_text().replace('constant = "X"', 'constant = "lower"')
    )
    with pytest.raises(ConfigError, match="not UPPER_CASE"):
        load_config(d)


def test_presets_merge_and_default(tmp_path: Path) -> None:
    d = make_toy_domain(
        tmp_path / "t",
        extra_toml=(
            "\n[presets.fast]\ntime_budget_s = 2\n"
            '[presets.fast.objective]\ndirection = "maximize"\n'
            "[presets.slow]\ntime_budget_s = 100\n"
        ),
    )
    text = (d / "autoresearch.toml").read_text()
    (d / "autoresearch.toml").write_text('default_preset = "fast"\n' + text)
    config, preset = load_config(d)
    assert preset == "fast" and config.time_budget_s == 2
    assert config.objective.direction == "maximize" and config.objective.metric == "score"
    config, preset = load_config(d, "slow")
    assert preset == "slow" and config.time_budget_s == 100
    with pytest.raises(ConfigError, match="preset 'gpu' not found"):
        load_config(d, "gpu")


def test_overrides_use_dotted_names(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t")
    config, _ = load_config(d, overrides={"time_budget_s": 3, "acceptance.min_delta": 0.5})
    assert config.time_budget_s == 3 and config.acceptance.min_delta == 0.5


def test_timeout_below_budget_is_refused(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t")
    with pytest.raises(ConfigError, match="timeout_s"):
        load_config(d, overrides={"timeout_s": 5, "time_budget_s": 10})


def test_unknown_acceptance_policy_and_objective_class(tmp_path: Path) -> None:
    from autoresearch import Loop

    d = make_toy_domain(tmp_path / "t")
    with pytest.raises(ConfigError, match="unknown acceptance policy 'nope'"):
        Loop.from_dir(d, acceptance="nope")
    with pytest.raises(ConfigError, match=r"objective\.class"):
        Loop.from_dir(d, overrides={"objective.class": "no_such_module:Thing"})

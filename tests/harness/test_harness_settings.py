"""autoresearch.harness settings: the engine's variables and typed getters for a domain's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoresearch import harness


def test_typed_getters_parse_and_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_INT", " 42 ")
    monkeypatch.setenv("T_BIG", "2e9")
    monkeypatch.setenv("T_FLOAT", "0.25")
    monkeypatch.setenv("T_STR", "  bpe ")
    monkeypatch.setenv("T_YES", "On")
    monkeypatch.setenv("T_NO", "false")
    monkeypatch.setenv("T_BLANK", "  ")
    monkeypatch.delenv("T_UNSET", raising=False)
    assert harness.env_int("T_INT", 0) == 42
    assert harness.env_int("T_BIG", 0) == 2_000_000_000
    assert harness.env_float("T_FLOAT", 1.0) == 0.25
    assert harness.env_str("T_STR", "byte") == "bpe"
    assert harness.env_bool("T_YES", False) is True
    assert harness.env_bool("T_NO", True) is False
    for getter, default in [
        (harness.env_int, 7),
        (harness.env_float, 1.5),
        (harness.env_str, "x"),
        (harness.env_bool, True),
    ]:
        assert getter("T_UNSET", default) == default  # type: ignore[operator]
        assert getter("T_BLANK", default) == default  # type: ignore[operator]


@pytest.mark.parametrize(
    ("getter", "raw", "expected"),
    [
        (harness.env_int, "12x", "an integer"),
        (harness.env_int, "1.5", "an integer"),
        (harness.env_float, "fast", "a number"),
        (harness.env_float, "nan", "a finite number"),
        (harness.env_bool, "maybe", "a boolean"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_value(
    monkeypatch: pytest.MonkeyPatch, getter: object, raw: str, expected: str
) -> None:
    monkeypatch.setenv("GPT_SEQ_LEN", raw)
    with pytest.raises(harness.SettingError) as err:
        getter("GPT_SEQ_LEN", 0)  # type: ignore[operator]
    assert f"GPT_SEQ_LEN={raw!r}" in str(err.value)
    assert expected in str(err.value)
    assert isinstance(err.value, ValueError)


def test_time_budget_comes_from_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTORESEARCH_TIME_BUDGET_S", raising=False)
    with pytest.raises(harness.SettingError, match="AUTORESEARCH_TIME_BUDGET_S=60 python"):
        harness.time_budget_s()
    monkeypatch.setenv("AUTORESEARCH_TIME_BUDGET_S", "-3")
    with pytest.raises(harness.SettingError, match="positive"):
        harness.time_budget_s()
    monkeypatch.setenv("AUTORESEARCH_TIME_BUDGET_S", "42.5")
    assert harness.time_budget_s() == 42.5


def test_seed_defaults_to_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTORESEARCH_SEED", raising=False)
    assert harness.seed() == 0
    monkeypatch.setenv("AUTORESEARCH_SEED", "9")
    assert harness.seed() == 9


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUTORESEARCH_CACHE_DIR", str(tmp_path / "mine"))
    assert harness.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("AUTORESEARCH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert harness.cache_dir() == tmp_path / "xdg" / "autoresearch"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert harness.cache_dir() == tmp_path / "home" / ".cache" / "autoresearch"
    assert not (tmp_path / "home").exists()  # not created

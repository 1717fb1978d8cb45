"""The summary block: what print_summary writes is what the engine's parse_summary reads."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from autoresearch import harness
from autoresearch._objective import parse_summary


def test_round_trips_through_the_engine_parser(capsys: pytest.CaptureFixture[str]) -> None:
    figures = {
        "val_bpb": 0.9979,
        "num_steps": 953,
        "lookahead_ok": True,
        "tiny": 1e-7,
        "big": 123456789.5,
        "np_float": np.float32(0.5),
        "np_int": np.int64(7),
        "not.finite": math.inf,
    }
    print("step 1 | loss 3.2\n---\nval_bpb: 9.9")  # an earlier block: the last one wins
    harness.print_summary(figures)
    out = capsys.readouterr().out
    parsed = parse_summary(out)
    assert set(parsed) == set(figures)
    for name, value in figures.items():
        assert parsed[name] == pytest.approx(float(value), abs=1e-6), name
    lines = out.splitlines()
    assert lines[-len(figures) :][:3] == [
        "val_bpb:      0.997900",
        "num_steps:    953",
        "lookahead_ok: 1",
    ]


def test_the_block_is_written_once_and_flushed() -> None:
    class Recorder(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.writes: list[str] = []
            self.flushed = False

        def write(self, s: str) -> int:
            self.writes.append(s)
            return super().write(s)

        def flush(self) -> None:
            self.flushed = True

    out = Recorder()
    harness.print_summary({"a": 1.0, "b": 2}, file=out)
    assert out.writes == ["---\na: 1.000000\nb: 2\n"]
    assert out.flushed


@pytest.mark.parametrize(
    ("figures", "message"),
    [
        ({"val bpb": 1.0}, "name"),
        ({"1st": 1.0}, "name"),
        ({"x\n---": 1.0}, "name"),
        ({"val_bpb": "0.5"}, "expected a number"),
        ({"val_bpb": None}, "expected a number"),
    ],
)
def test_what_the_parser_would_drop_is_refused(figures: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        harness.format_summary(figures)

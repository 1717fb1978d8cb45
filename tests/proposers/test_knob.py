"""The knob proposer never proposes a point already tried: not one of the ledger's, not the
incumbent's, not one of its own; on a grid it has exhausted it has nothing to propose."""

from __future__ import annotations

from pathlib import Path

from autoresearch._config import KnobSpec
from autoresearch.proposers._knob import Knob, get_constant
from autoresearch.testing import make_context, make_record

GRID = [KnobSpec(name="x", file="params.py", constant="X", type="int", low=0, high=3)]
FILES = {"params.py": "X = 0  # the incumbent's point\n"}


def _drain(knob: Knob) -> list[int]:
    """Every value the knob proposes until it has none, each one observed."""
    out: list[int] = []
    while (cand := knob.propose(make_context(files=FILES))) is not None:
        out.append(int(get_constant(cand.edits[0].content or "", "X") or ""))
        assert cand.meta["knobs"] == {"x": out[-1]}
        knob.observe(cand, make_record(proposer="knob", value=float(out[-1]), meta=cand.meta))
    return out


def test_a_grid_is_proposed_once_without_the_incumbent_or_the_ledgers_points() -> None:
    knob = Knob(GRID, seed=3)
    knob.restore([make_record(proposer="knob", value=5.0, meta={"trial": 9, "knobs": {"x": 1}})])
    assert sorted(_drain(knob)) == [2, 3]


def test_rows_without_a_recorded_point_are_read_from_the_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.sqlite'}"
    first = Knob(GRID, url, "s")
    cand = first.propose(make_context(files=FILES))
    assert cand is not None
    # A ledger from before points were recorded: the row holds only the trial number.
    row = make_record(proposer="knob", value=4.0, meta={"trial": cand.meta["trial"]})
    first.observe(cand, row)
    again = Knob(GRID, url, "s")
    again.restore([row])
    assert sorted([cand.meta["knobs"]["x"], *_drain(again)]) == [1, 2, 3]  # type: ignore[index]

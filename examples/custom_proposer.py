"""A custom Proposer: hill climbing on one constant, tested with check_proposer, then run.

A proposer returns a Candidate (file edits + a one-line description + a hypothesis); the
harness applies it in a worktree, enforces scope, runs, measures and decides. `observe`
tells the proposer what happened, so it can learn.

    python examples/custom_proposer.py [--experiments N]
"""

from __future__ import annotations

import argparse
import random
import re
import tempfile
from pathlib import Path

from autoresearch import Candidate, Context, Edit, ExperimentRecord, Loop, Proposer, Status
from autoresearch.testing import check_proposer, make_toy_domain


class HillClimb(Proposer):
    """Nudges X in params.py by a random step; halves the step after a discard."""

    name = "hillclimb"

    def __init__(self, step: float = 2.0, seed: int = 0) -> None:
        self.step = step
        self.rng = random.Random(seed)

    def propose(self, context: Context) -> Candidate | None:
        text = context.files["params.py"]
        x = float(re.search(r"^X = (.+?)\s*(#.*)?$", text, re.M).group(1))  # type: ignore[union-attr]
        new = round(x + self.rng.choice((-1, 1)) * self.step, 4)
        edited = re.sub(
            r"^X = .+?(\s*#.*)?$",
            lambda m: f"X = {new}{m.group(1) or ''}",
            text,
            count=1,
            flags=re.M,
        )
        return Candidate(
            f"X {x} -> {new}",
            (Edit("params.py", content=edited),),
            hypothesis=f"a step of {self.step} in X lowers the score",
        )

    def observe(self, candidate: Candidate, record: ExperimentRecord) -> None:
        if record.status is not Status.KEEP:
            self.step /= 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--experiments", type=int, default=6)
    args = parser.parse_args()
    domain = make_toy_domain(Path(tempfile.mkdtemp()) / "toy")
    print("check_proposer:", [c.description for c in check_proposer(HillClimb(), domain, 2)])
    summary = Loop.from_dir(domain, proposer=HillClimb()).run(max_experiments=args.experiments)
    print(f"baseline {summary.baseline_value} -> best {summary.best_value} {summary.counts}")


if __name__ == "__main__":
    main()

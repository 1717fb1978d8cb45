"""A custom Objective: the metric is computed by your code from what the run left behind.

Here the (fixed) harness writes `result.json` with a score and its wall time; the objective
turns both into one number to minimize and gates keeps on a correctness flag. It is checked
with `autoresearch.testing.check_objective`, then used in a loop.

    python examples/custom_objective.py [--experiments N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from autoresearch import GateResult, Loop, Measurement, MetricMissing, Objective, RunResult
from autoresearch.testing import check_objective, make_toy_domain

# Seconds of run time worth one unit of score: slower runs must be that much better.
SECONDS_PER_SCORE_UNIT = 100.0


class PenalizedScore(Objective):
    """score + wall_s / SECONDS_PER_SCORE_UNIT, from result.json; keeps need ok=true."""

    def measure(self, run: RunResult) -> Measurement:
        path = run.workdir / "result.json"
        if not path.exists():
            raise MetricMissing("the run wrote no result.json")
        data = json.loads(path.read_text())
        return Measurement(
            primary=data["score"] + run.wall_s / SECONDS_PER_SCORE_UNIT,
            secondary={"raw_score": data["score"], "wall_s": run.wall_s},
        )

    def gate(self, run: RunResult) -> GateResult:
        data = json.loads((run.workdir / "result.json").read_text())
        return GateResult(bool(data.get("ok")), "" if data.get("ok") else "result not ok")


HARNESS = """\
import json
import params
score = (params.X - 3) ** 2 + (params.Y - 1) ** 2 + 1
json.dump({"score": score, "ok": abs(params.X) < 10}, open("result.json", "w"))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--experiments", type=int, default=4)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp())

    # 1. Test the objective the way autoresearch tests its own.
    (root / "probe").mkdir()
    (root / "probe" / "result.json").write_text('{"score": 2.0, "ok": true}')
    print("check_objective:", check_objective(PenalizedScore(), root / "probe"))

    # 2. Use it: a toy domain whose fixed harness writes result.json.
    domain = make_toy_domain(root / "toy")
    (domain / "run.py").write_text(HARNESS)
    loop = Loop.from_dir(domain, proposer="knob", objective=PenalizedScore())
    summary = loop.run(max_experiments=args.experiments)
    print(
        f"baseline {summary.baseline_value:.4f} -> best {summary.best_value:.4f} {summary.counts}"
    )


if __name__ == "__main__":
    main()

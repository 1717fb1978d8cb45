"""Harness overhead per experiment: wall time minus the command's own time.

N experiments whose command is `true`, proposed by a scripted proposer (so no search cost),
through the real loop: git worktree + commit, sandbox start and whole-tree cleanup, ledger
rows and results.tsv. Prints the median overhead in ms and as a share of a 10 s experiment.

    python benchmarks/engine_overhead.py [--experiments 60]
Target: median <= 50 ms on a 2-core machine.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from autoresearch import Candidate, Edit, Loop
from autoresearch.testing import Scripted, make_toy_domain

TARGET_MS = 50.0
REFERENCE_EXPERIMENT_S = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        domain = make_toy_domain(Path(tmp) / "bench", command="true", git=True)
        (domain / "autoresearch.toml").write_text(
            (domain / "autoresearch.toml")
            .read_text()
            .replace('metric = "score"', 'class = "bench_objective:Const"')
        )
        (domain / "bench_objective.py").write_text(
            "from autoresearch import Measurement, Objective\n"
            "class Const(Objective):\n"
            "    n = 0\n"
            "    def measure(self, run):\n"
            "        Const.n += 1\n"
            "        return Measurement(10.0 - Const.n * 1e-3)\n"
        )
        subprocess.run(["git", "add", "-A"], cwd=domain, check=True)
        subprocess.run(
            ["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "obj"],
            cwd=domain,
            check=True,
        )
        cands = [
            Candidate(f"X={i}", (Edit("params.py", content=f"X = {i}\nY = 0\n"),))
            for i in range(1, args.experiments + 1)
        ]
        stamps: list[float] = []
        loop = Loop.from_dir(
            domain,
            proposer=Scripted(cands),
            tag="bench",
            on_event=lambda e: (
                stamps.append(time.perf_counter()) if e.kind == "experiment" else None
            ),
        )
        # The command's own time, measured the same way the sandbox starts it.
        t = time.perf_counter()
        for _ in range(20):
            subprocess.run(["/bin/sh", "-c", "true"], check=True)
        command_s = (time.perf_counter() - t) / 20
        loop.run()
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    overhead_ms = [(g - command_s) * 1000 for g in gaps]
    median = statistics.median(overhead_ms)
    print(f"experiments measured:          {len(gaps)}")
    print(f"command `true` alone:          {command_s * 1000:.2f} ms")
    print(
        f"harness overhead, median:      {median:.1f} ms  (p90 "
        f"{statistics.quantiles(overhead_ms, n=10)[-1]:.1f} ms)"
    )
    print(
        f"share of a {REFERENCE_EXPERIMENT_S:g} s experiment:   "
        f"{median / (REFERENCE_EXPERIMENT_S * 1000):.2%}"
    )
    print(
        f"vs target {TARGET_MS:g} ms:              {median / TARGET_MS:.2f}x "
        f"({'met' if median <= TARGET_MS else 'NOT met'})"
    )


if __name__ == "__main__":
    main()

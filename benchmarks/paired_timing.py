"""The paired objective against single-run greedy, on this machine's real timing noise.

A CPU-bound workload (pure-Python loops) runs in fresh processes, each timed by its own CPU
time (``time.process_time``, the clock the sim_speed harness uses) and, for comparison, by
wall time. Per trial, the incumbent A and the candidate B run interleaved, A B A B ...
(``--pairs`` pairs, default 6), and:

- paired: ``autoresearch.acceptance.Paired`` (median of per-pair ratios, a 95% sign-test
  interval, ``min_gain``) decides;
- greedy: one run of each, keep if B beats A by more than ``min_delta`` 0 (the upstream rule).

Scenarios: A/A (identical code; every keep is false), and B faster than A by 5% and by 20%
(A does that much more work; every keep is a detection). Whatever else runs on the machine
is the noise: run it as it is.

    .venv/bin/python benchmarks/paired_timing.py                 # 25 trials per scenario
    .venv/bin/python benchmarks/paired_timing.py --trials 100 --clock wall
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from autoresearch import AcceptanceConfig
from autoresearch.acceptance import Evidence, Paired, Verdict

# The workload's size: ~0.15 s of CPU here, so a trial of 6 pairs takes a few seconds.
BASE_WORK = 1_500_000
CHILD = """\
import os, sys, time
try:
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
except (AttributeError, OSError):
    pass
n = int(sys.argv[1])
c0, w0 = time.process_time(), time.perf_counter()
acc = 0
for i in range(n):
    acc = (acc * 31 + i) % 1000003
print(time.process_time() - c0, time.perf_counter() - w0, acc)
"""


def timed_run(work: int, clock: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(work)], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0] if clock == "cpu" else out[1])


def trial(slowdown: float, pairs: int, clock: str, policy: Paired) -> tuple[bool, bool]:
    """(paired keeps B, greedy keeps B) for one trial; A does (1 + slowdown) x B's work."""
    a_work, b_work = int(BASE_WORK * (1.0 + slowdown)), BASE_WORK
    cand, inc = [], []
    for _ in range(pairs):
        cand.append(timed_run(b_work, clock))  # B (the candidate) first, as the loop does
        inc.append(timed_run(a_work, clock))
    paired = policy.decide(Evidence(cand, inc, "minimize", None, inc)).verdict is Verdict.KEEP
    greedy = cand[0] < inc[0]  # one run each, strictly faster
    return paired, greedy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=25, help="trials per scenario")
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--min-gain", type=float, default=0.01)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = ap.parse_args()
    policy = Paired(AcceptanceConfig(policy="paired", repeats=args.pairs, min_gain=args.min_gain))
    print(
        f"== {args.trials} trials x {args.pairs} pairs per scenario, clock {args.clock}, "
        f"min_gain {args.min_gain:.0%}"
    )
    t0 = time.monotonic()
    base = timed_run(BASE_WORK, args.clock)
    print(f"   one run of the workload: {base:.3f} s ({args.clock})")
    print(f"{'scenario':<18}{'paired keeps':>14}{'greedy keeps':>14}{'what a keep is':>20}")
    ok = True
    for name, slowdown in (("A/A", 0.0), ("A 5% slower", 0.05), ("A 20% slower", 0.20)):
        p = g = 0
        for _ in range(args.trials):
            kp, kg = trial(slowdown, args.pairs, args.clock, policy)
            p += kp
            g += kg
        what = "a false keep" if slowdown == 0 else "a detection"
        print(f"{name:<18}{p / args.trials:>14.1%}{g / args.trials:>14.1%}{what:>20}")
        if slowdown == 0:
            ok &= p / args.trials <= 0.05
        if slowdown == 0.20:
            ok &= p / args.trials >= 0.90
    print(f"targets (A/A false keeps <= 5%, detection at 20% >= 90%): {'ok' if ok else 'MISSED'}")
    print(f"   took {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()

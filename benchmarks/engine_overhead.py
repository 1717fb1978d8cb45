"""Harness overhead per experiment: wall time minus the command's own time.

N experiments whose command is `true`, proposed by a scripted proposer (so no search cost),
through the real loop: git worktree + commit, sandbox start and whole-tree cleanup, ledger
rows and results.tsv. Prints the median overhead in ms, as a share of a 10 s experiment, and
as a ratio to one bare `git --version` run between each two experiments (the same process,
under the same load: on a shared machine the ratio moves far less than the milliseconds).

Then the cost of isolation alone: the same run (a command and an evaluator, `true` both, with
a fixed file) through the sandbox in namespaces and without, in interleaved pairs (the order
alternates), so both halves of a pair see the same load.

    python benchmarks/engine_overhead.py [--experiments 60] [--isolation-pairs 40]
Targets: median <= 50 ms on a 2-core machine; isolation adds <= 25 ms per experiment.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from autoresearch import Candidate, Edit, Event, Loop
from autoresearch.execution import LocalSandbox, RunSpec, isolation_unavailable
from autoresearch.testing import Scripted, make_toy_domain

TARGET_MS = 50.0
ISOLATION_TARGET_MS = 25.0
REFERENCE_EXPERIMENT_S = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=60)
    parser.add_argument("--isolation-pairs", type=int, default=40)
    args = parser.parse_args()
    for network in (False, True):
        loop_overhead(args.experiments, network)
    for network in (False, True):
        isolation_overhead(args.isolation_pairs, network)


def loop_overhead(experiments: int, network: bool) -> None:
    print(f"the loop, network = {str(network).lower()}:")
    with tempfile.TemporaryDirectory() as tmp:
        domain = make_toy_domain(Path(tmp) / "bench", command="true", git=True)
        (domain / "autoresearch.toml").write_text(
            (domain / "autoresearch.toml")
            .read_text()
            .replace('metric = "score"', 'class = "bench_objective:Const"')
            .replace("time_budget_s =", f"network = {str(network).lower()}\ntime_budget_s =")
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
            for i in range(1, experiments + 1)
        ]
        stamps: list[float] = []
        reference_s: list[float] = []

        def on_event(e: Event) -> None:
            if e.kind != "experiment":
                return
            # The reference runs between two experiments; its time is taken out of the gap.
            t = time.perf_counter()
            subprocess.run(["git", "--version"], check=True, capture_output=True)
            reference_s.append(time.perf_counter() - t)
            stamps.append(time.perf_counter())

        loop = Loop.from_dir(domain, proposer=Scripted(cands), tag="bench", on_event=on_event)
        # The command's own time, measured the same way the sandbox starts it.
        t = time.perf_counter()
        for _ in range(20):
            subprocess.run(["/bin/sh", "-c", "true"], check=True)
        command_s = (time.perf_counter() - t) / 20
        loop.run()
    # stamps[i] is taken after reference i, so gap i ends with reference i + 1.
    gaps = [
        b - a - r for (a, b), r in zip(itertools.pairwise(stamps), reference_s[1:], strict=True)
    ]
    overhead_ms = [(g - command_s) * 1000 for g in gaps]
    median = statistics.median(overhead_ms)
    reference_ms = statistics.median(reference_s) * 1000
    print(f"experiments measured:          {len(gaps)}")
    print(f"command `true` alone:          {command_s * 1000:.2f} ms")
    print(f"reference `git --version`:     {reference_ms:.2f} ms (median)")
    print(
        f"harness overhead, median:      {median:.1f} ms  (p90 "
        f"{statistics.quantiles(overhead_ms, n=10)[-1]:.1f} ms) = "
        f"{median / reference_ms:.1f}x the reference"
    )
    print(
        f"share of a {REFERENCE_EXPERIMENT_S:g} s experiment:   "
        f"{median / (REFERENCE_EXPERIMENT_S * 1000):.2%}"
    )
    print(
        f"vs target {TARGET_MS:g} ms:              {median / TARGET_MS:.2f}x "
        f"({'met' if median <= TARGET_MS else 'NOT met'})"
    )


def isolation_overhead(pairs: int, network: bool) -> None:
    why = isolation_unavailable()
    if why is not None:
        print(f"isolation: not measured ({why})")
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        (work / "evaluate.py").write_text("print('score: 1')\n")
        spec = RunSpec(
            workdir=work,
            command="true",
            eval_command="true",
            log_path=Path(tmp) / "run.log",
            eval_log_path=Path(tmp) / "eval.log",
            time_budget_s=10,
            timeout_s=30,
            memory_limit_mb=1024,
            pids_limit=256,
            disk_limit_mb=1024,
            network=network,
            fixed_files={"evaluate.py": (work / "evaluate.py").read_bytes()},
        )
        sandboxes = {"namespaces": LocalSandbox("namespaces"), "none": LocalSandbox("none")}
        times: dict[str, list[float]] = {"namespaces": [], "none": []}
        for name, sandbox in sandboxes.items():  # warm-up, not counted
            assert sandbox.run(spec).ok, name
        for i in range(pairs):
            order = ("namespaces", "none") if i % 2 == 0 else ("none", "namespaces")
            for name in order:
                t = time.perf_counter()
                run = sandboxes[name].run(spec)
                times[name].append(time.perf_counter() - t)
                assert run.ok, (name, run.reason)
    added_ms = [(a - b) * 1000 for a, b in zip(times["namespaces"], times["none"], strict=True)]
    bare_ms = statistics.median(times["none"]) * 1000
    isolated_ms = statistics.median(times["namespaces"]) * 1000
    added = statistics.median(added_ms)
    print(
        f"isolation, network = {str(network).lower()}, {pairs} interleaved pairs "
        "(a command and an evaluator each):"
    )
    print(f"  run without namespaces:      {bare_ms:.1f} ms (median)")
    print(f"  run in namespaces:           {isolated_ms:.1f} ms (median)")
    print(
        f"  added by isolation, median:  {added:.1f} ms per experiment = "
        f"{isolated_ms / bare_ms:.2f}x the same run without it"
    )
    print(
        f"  vs target {ISOLATION_TARGET_MS:g} ms:            {added / ISOLATION_TARGET_MS:.2f}x "
        f"({'met' if added <= ISOLATION_TARGET_MS else 'NOT met'})"
    )


if __name__ == "__main__":
    main()

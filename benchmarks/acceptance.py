"""Acceptance policies against a synthetic objective with known true values.

Simulates the loop's keep/discard protocol without git or a sandbox: a stream of 100
candidates, each a relative change of the current incumbent's true value (20% true
improvements of +1..5%, 50% neutral, 30% worse by 1..5%), measured with Gaussian noise of
CV 2%; repeated 200 times per policy. Then one short end-to-end run through the real loop.

    .venv/bin/python benchmarks/acceptance.py            # full: 200 repeats, a few minutes
    .venv/bin/python benchmarks/acceptance.py --quick    # 40 repeats, no end-to-end run
    .venv/bin/python benchmarks/acceptance.py --seeds 0,1,2 --no-e2e   # the spread over seeds

Figures per policy (greedy, the upstream rule, printed beside each):
  FDR          false discoveries among keeps (kept with true change <= 0)
  true gain    true value of the final incumbent vs the baseline's, in %
  rep-true     the gain the loop reports minus the true gain, in sigma (one run's noise)
  runs/cand    measurements spent per candidate (calibration and baseline included)
  A/A keeps    keeps per 100 candidates when every candidate is neutral

Both streams run every policy twice where it matters: as the loop drives it (each incumbent
run of an experiment passed as ``Evidence.paired``, taken beside a candidate run) and, for
``sequential``, "no pairs" (``paired=None``: a caller that takes none, the rule before
pairing).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autoresearch import AcceptanceConfig
from autoresearch.acceptance import (
    Acceptance,
    Evidence,
    Greedy,
    Repeated,
    Sequential,
    Threshold,
    Verdict,
    pooled_sigma,
)

BASE_VALUE = 1.0
NOISE_CV = 0.02
N_CANDIDATES = 100
N_REPEATS = 200
MIX: tuple[tuple[str, float], ...] = (("better", 0.2), ("neutral", 0.5), ("worse", 0.3))
CHANGE_RANGE = (0.01, 0.05)  # size of a true improvement (and of a regression)


def make_stream(rng: random.Random, n: int, all_neutral: bool = False) -> list[float]:
    """True relative changes of ``n`` candidates, each against the incumbent of its time."""
    out = []
    for _ in range(n):
        kinds, weights = [k for k, _ in MIX], [w for _, w in MIX]
        kind = "neutral" if all_neutral else rng.choices(kinds, weights)[0]
        size = rng.uniform(*CHANGE_RANGE)
        out.append({"better": size, "neutral": 0.0, "worse": -size}[kind])
    return out


# The drifting stream: the machine's load comes and goes in spells of ~DRIFT_SPELL_RUNS runs
# (a few minutes of runs of a minute or less); each spell scales the noise by one of
# DRIFT_SIGMA_MULTS and shifts every run's mean by up to DRIFT_OFFSET_CV (as a fraction of
# the value: a 2-core machine whose load average goes from 1 to 9 and back).
DRIFT_SPELL_RUNS = 15
DRIFT_SIGMA_MULTS = (0.4, 1.0, 2.5)
DRIFT_OFFSET_CV = 0.06


class Load:
    """The machine's load over runs: (mean offset, noise multiplier) of the next run."""

    def __init__(self, rng: random.Random, drift: bool) -> None:
        self.rng, self.drift = rng, drift
        self.left = 0
        self.offset, self.mult = 0.0, 1.0

    def next(self) -> tuple[float, float]:
        if not self.drift:
            return 0.0, 1.0
        if self.left <= 0:
            self.left = max(1, round(self.rng.expovariate(1.0 / DRIFT_SPELL_RUNS)))
            self.offset = self.rng.uniform(-DRIFT_OFFSET_CV, DRIFT_OFFSET_CV)
            self.mult = self.rng.choice(DRIFT_SIGMA_MULTS)
        self.left -= 1
        return self.offset, self.mult


@dataclass
class StreamResult:
    keeps: int = 0
    false_keeps: int = 0
    runs: int = 0
    true_gain: float = 0.0
    reported_gain: float = 0.0
    kept_changes: list[float] = field(default_factory=list)


def simulate(
    policy: Acceptance,
    changes: Sequence[float],
    rng: random.Random,
    cv: float = NOISE_CV,
    sigma_from: str = "all-runs",
    drift: bool = False,
    pairs: bool = True,
) -> StreamResult:
    """One stream through the loop's protocol (mirrors ``Loop._decide``): baseline run,
    calibration runs, then per candidate one run, decide, and for MEASURE the asked runs
    interleaved A/B (past max_runs_per_candidate a MEASURE is a DISCARD); a kept candidate's
    runs become the incumbent's, which later re-measurements extend.

    sigma: "all-runs" pools the spread of every commit's repeated runs (what the loop is
    asked to do); "calibration" pools only the baseline and calibration runs. ``pairs=False``
    passes ``paired=None``, as a caller that takes no pairs does."""
    res = StreamResult()
    load = Load(rng, drift)

    def run(true_value: float) -> float:
        res.runs += 1
        offset, mult = load.next()
        return rng.gauss(true_value * (1.0 + offset), cv * mult * true_value)

    inc_true = BASE_VALUE
    inc_vals = [run(inc_true)]
    baseline_vals = inc_vals
    calib_groups: list[list[float]] = [inc_vals[:]]
    all_groups: list[list[float]] = [inc_vals]
    for done, change in enumerate([None, *changes]):
        extra = [run(inc_true) for _ in range(policy.calibration_runs(done))]
        if extra:
            inc_vals.extend(extra)
            calib_groups.append(extra) if done else calib_groups[0].extend(extra)
        if change is None:
            continue
        cand_true = inc_true * (1.0 + change)
        cand_vals = [run(cand_true)]
        paired: list[float] = []  # the incumbent's runs of this experiment, in order
        all_groups.append(cand_vals)
        while True:
            groups = all_groups if sigma_from == "all-runs" else calib_groups
            sigma = pooled_sigma(groups)
            beside = paired if pairs else None
            d = policy.decide(Evidence(cand_vals, inc_vals, "maximize", sigma, beside))
            if d.verdict is not Verdict.MEASURE:
                break
            if d.more_candidate > 0 and len(cand_vals) >= policy.max_runs_per_candidate:
                break  # the loop counts this MEASURE as a DISCARD
            for i in range(max(d.more_candidate, d.more_incumbent)):
                if i < d.more_incumbent:
                    inc_vals.append(run(inc_true))
                    paired.append(inc_vals[-1])
                if i < d.more_candidate:
                    cand_vals.append(run(cand_true))
        if d.verdict is Verdict.KEEP:
            res.keeps += 1
            res.false_keeps += change <= 0
            res.kept_changes.append(change)
            inc_true, inc_vals = cand_true, cand_vals
    res.true_gain = inc_true / BASE_VALUE - 1.0
    res.reported_gain = statistics.fmean(inc_vals) / statistics.fmean(baseline_vals) - 1.0
    return res


@dataclass
class Figures:
    fdr: float
    true_gain_pct: float
    rep_minus_true_sigma: float
    runs_per_cand: float
    aa_keeps: float = 0.0


def evaluate(
    make: Callable[[], Acceptance],
    repeats: int,
    seed: int,
    sigma_from: str = "all-runs",
    drift: bool = False,
    pairs: bool = True,
) -> Figures:
    """Figures over ``repeats`` mixed streams and as many all-neutral (A/A) streams; every
    policy sees the same streams for a given seed."""
    keeps = false_keeps = runs = 0
    gains, gaps = [], []
    for r in range(repeats):
        changes = make_stream(random.Random(f"stream-{seed}-{r}"), N_CANDIDATES)
        rng = random.Random(f"noise-{seed}-{r}")
        res = simulate(make(), changes, rng, sigma_from=sigma_from, drift=drift, pairs=pairs)
        keeps += res.keeps
        false_keeps += res.false_keeps
        runs += res.runs
        gains.append(res.true_gain)
        gaps.append((res.reported_gain - res.true_gain) / NOISE_CV)
    aa_keeps = 0
    for r in range(repeats):
        changes = make_stream(random.Random(f"aa-{seed}-{r}"), N_CANDIDATES, all_neutral=True)
        rng = random.Random(f"aa-noise-{seed}-{r}")
        aa_keeps += simulate(
            make(), changes, rng, sigma_from=sigma_from, drift=drift, pairs=pairs
        ).keeps
    return Figures(
        fdr=false_keeps / keeps if keeps else 0.0,
        true_gain_pct=100 * statistics.fmean(gains),
        rep_minus_true_sigma=statistics.fmean(gaps),
        runs_per_cand=runs / (repeats * N_CANDIDATES),
        aa_keeps=100 * aa_keeps / (repeats * N_CANDIDATES),
    )


def _config(**fields: object) -> AcceptanceConfig:
    return AcceptanceConfig.model_validate(fields)


POLICIES: dict[str, Callable[[], Acceptance]] = {
    "greedy": lambda: Greedy(_config()),
    "threshold": lambda: Threshold(_config(policy="threshold")),
    "repeated/welch": lambda: Repeated(_config(policy="repeated")),
    "repeated/bootstrap": lambda: Repeated(_config(policy="repeated", test="bootstrap")),
    "sequential": lambda: Sequential(_config(policy="sequential")),
}


def _row(name: str, fig: Figures, greedy: Figures) -> str:
    return (
        f"{name:<30}{fig.fdr:>7.1%} ({greedy.fdr:>5.1%}){fig.true_gain_pct:>8.1f} "
        f"({greedy.true_gain_pct:>5.1f}){fig.rep_minus_true_sigma:>7.2f} "
        f"({greedy.rep_minus_true_sigma:>5.2f}){fig.runs_per_cand:>7.2f} "
        f"({greedy.runs_per_cand:>4.2f}){fig.aa_keeps:>7.2f} ({greedy.aa_keeps:>4.2f})"
    )


# Pairing costs runs: a keep now rests on a fresh incumbent run beside every candidate run
# (up to 7 + 7 runs for a candidate tested to the end, where the incumbent's older runs
# served before), so sequential spends about 3.3 runs per candidate, not the 2 x greedy's it
# spent on the incumbent's mean. That target is traded for keeps that hold on the drifting
# stream; this bound only catches a regression in what pairing costs.
RUNS_BOUND_X_GREEDY = 3.5


def check_targets(seq: Figures, greedy: Figures) -> list[tuple[str, bool]]:
    """The issue's targets for ``sequential`` on the stationary stream."""
    return [
        (f"FDR {seq.fdr:.1%} <= 5%", seq.fdr <= 0.05),
        (
            f"reported-true {seq.rep_minus_true_sigma:.2f} sigma <= 0.5",
            seq.rep_minus_true_sigma <= 0.5,
        ),
        (
            f"true gain {seq.true_gain_pct:.1f}% >= greedy's {greedy.true_gain_pct:.1f}%",
            seq.true_gain_pct >= greedy.true_gain_pct,
        ),
        (
            f"runs/cand {seq.runs_per_cand:.2f} <= {RUNS_BOUND_X_GREEDY:g} x greedy's "
            f"{greedy.runs_per_cand:.2f} (traded: 2 x greedy's before pairing)",
            seq.runs_per_cand <= RUNS_BOUND_X_GREEDY * greedy.runs_per_cand,
        ),
    ]


def simulated(repeats: int, seed: int, names: Sequence[str]) -> bool:
    mix = ", ".join(f"{k} {p:.0%}" for k, p in MIX)
    print(f"== simulated: {repeats} streams x {N_CANDIDATES} candidates, CV {NOISE_CV:.0%}, {mix}")
    print("   (greedy's figure in parentheses; sigma pooled over every commit's repeated runs)")
    greedy = evaluate(POLICIES["greedy"], repeats, seed)
    print(
        f"{'policy':<30}{'FDR':>15}{'true gain %':>14}{'rep-true σ':>14}{'runs/cand':>14}"
        f"{'A/A keeps':>14}"
    )
    results = {"greedy": greedy}
    for name in names:
        results[name] = results.get(name) or evaluate(POLICIES[name], repeats, seed)
        print(_row(name, results[name], greedy))
    calib = evaluate(POLICIES["sequential"], repeats, seed, sigma_from="calibration")
    print(_row("sequential, σ: calibration only", calib, greedy))
    unpaired = evaluate(POLICIES["sequential"], repeats, seed, pairs=False)
    print(_row("sequential, no pairs", unpaired, greedy))
    seq = results.get("sequential") or evaluate(POLICIES["sequential"], repeats, seed)
    ok = True
    print("sequential targets:")
    for what, passed in check_targets(seq, greedy):
        ok &= passed
        print(f"  [{'ok' if passed else 'MISSED'}] {what}")
    ok &= drifting(repeats, seed, names)
    return ok


def drifting(repeats: int, seed: int, names: Sequence[str]) -> bool:
    """The same policies on the drifting stream: load that comes and goes changes both the
    noise (x0.4 .. x2.5) and every run's mean (up to +-6%) in spells of ~15 runs."""
    print(
        f"== drifting: load spells of ~{DRIFT_SPELL_RUNS} runs, noise x{DRIFT_SIGMA_MULTS}, "
        f"mean offset up to +-{DRIFT_OFFSET_CV:.0%}"
    )
    greedy = evaluate(POLICIES["greedy"], repeats, seed, drift=True)
    print(
        f"{'policy':<30}{'FDR':>15}{'true gain %':>14}{'rep-true σ':>14}{'runs/cand':>14}"
        f"{'A/A keeps':>14}"
    )
    ok = True
    for name in names:
        fig = evaluate(POLICIES[name], repeats, seed, drift=True)
        print(_row(name, fig, greedy))
        if name in DRIFT_TARGETS:
            passed = fig.aa_keeps <= 5.0 and fig.fdr <= 0.05
            ok &= passed
            print(
                f"  [{'ok' if passed else 'MISSED'}] {name}: A/A keeps {fig.aa_keeps:.2f}% "
                f"and FDR {fig.fdr:.1%} <= 5%"
            )
    unpaired = evaluate(POLICIES["sequential"], repeats, seed, drift=True, pairs=False)
    print(_row("sequential, no pairs", unpaired, greedy))
    return ok


DRIFT_TARGETS = ("sequential", "threshold")


# -- one short run through the real loop -----------------------------------------------------

HARNESS = """\
# Fixed harness: the toy's true score is QUALITY; each run adds 2% noise from its seed.
import os, random
import knob
rng = random.Random(int(os.environ.get("AUTORESEARCH_SEED", "0")))
score = knob.QUALITY * (1.0 + 0.02 * rng.gauss(0.0, 1.0))
print("---")
print(f"score: {score:.6f}")
"""
TOML = """\
name = "noisy-toy"
editable = ["knob.py"]
fixed = ["harness.py"]
command = "python harness.py"
time_budget_s = 30
[objective]
metric = "score"
direction = "maximize"
[acceptance]
policy = "sequential"
[proposer]
name = "scripted"
script = "candidates.jsonl"
"""
# (description, QUALITY): a reseeded baseline (#466), a regression, the same regression
# again (its result reused from the ledger, not rerun), a real +5%, and a +1% (half a sigma).
SCRIPT = [
    ("reseed: seed 42 -> 137", "1.00  # seed 137"),
    ("regress 3%", "0.97"),
    ("regress 3% again (same file)", "0.97"),
    ("improve 5%", "1.05"),
    ("improve 1% more", "1.0605"),
]


def end_to_end(workdir: Path) -> bool:
    try:
        from autoresearch import Loop
    except ImportError as e:
        print(f"== end-to-end: skipped, the loop is not importable ({e})")
        return False
    import json

    domain = workdir / "noisy-toy"
    domain.mkdir()
    (domain / "autoresearch.toml").write_text(TOML)
    (domain / "harness.py").write_text(HARNESS)
    (domain / "knob.py").write_text("QUALITY = 1.00\n")
    lines = [
        json.dumps(
            {"description": d, "edits": [{"path": "knob.py", "content": f"QUALITY = {q}\n"}]}
        )
        for d, q in SCRIPT
    ]
    (domain / "candidates.jsonl").write_text("\n".join(lines) + "\n")
    events: list[Any] = []
    loop = Loop.from_dir(domain, acceptance="sequential", tag="e2e", on_event=events.append)
    summary = loop.run(max_experiments=1 + len(SCRIPT))
    print(f"== end-to-end: {domain.name}, policy sequential, {summary.experiments} experiments")
    for ev in events:
        if ev.kind == "calibration":
            print(f"  calibration: {ev.message}")
        elif ev.kind == "experiment" and ev.record is not None:
            r = ev.record
            value = "-" if r.value is None else f"{r.value:.4f}"
            print(f"  #{r.id} {r.status.value:<8} {value:>8}  {r.description}: {r.reason}")
    counts = dict(summary.counts)
    print(f"  baseline {summary.baseline_value}, best {summary.best_value}, counts {counts}")
    kept = [
        e.record.description
        for e in events
        if e.kind == "experiment" and e.record and e.record.status.value == "keep"
    ]
    return "reseed: seed 42 -> 137" not in kept and "regress 3%" not in kept


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--repeats", type=int, default=N_REPEATS, help="streams per policy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--seeds", help="comma-separated stream seeds, each run in turn (overrides --seed)"
    )
    ap.add_argument("--no-e2e", action="store_true", help="skip the end-to-end run")
    ap.add_argument("--quick", action="store_true", help="40 streams, no end-to-end run")
    ap.add_argument("--policies", default=",".join(p for p in POLICIES if p != "greedy"))
    args = ap.parse_args(argv)
    repeats = 40 if args.quick else args.repeats
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    ok = True
    for seed in seeds:
        if len(seeds) > 1:
            print(f"-- seed {seed}")
        ok &= simulated(repeats, seed, args.policies.split(","))
    if not (args.quick or args.no_e2e):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="acceptance-e2e-") as tmp:
            ok &= end_to_end(Path(tmp))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

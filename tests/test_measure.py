"""Measuring, with faked runs (FakeSandbox): the runs a policy asks for are interleaved with
runs of the incumbent's own files, every run has its own seed and files, calibration follows
the policy's schedule across resumes, and a kept value is the mean of the candidate's runs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from conftest import commit_all, ledger_records, open_ledger, set_x

from autoresearch import (
    Acceptance,
    Candidate,
    Decision,
    Edit,
    Evidence,
    Loop,
    RunSpec,
    Status,
    Verdict,
)
from autoresearch.acceptance import Repeated, Sequential
from autoresearch.testing import FakeRun, FakeSandbox, Scripted, make_toy_domain, toy_run


class Tokened(FakeSandbox):
    """The toy's runs, each printing a token of its own and noting the X it ran with."""

    def __init__(self) -> None:
        super().__init__(self._run)
        self.x_seen: list[str] = []

    def _run(self, spec: RunSpec) -> str | FakeRun:
        self.x_seen.append(_constant(spec.workdir / "params.py", "X"))
        out = toy_run(spec)
        assert isinstance(out, str)
        return out + f"run-token: {len(self.specs)}\n"


def params(x: float, y: float) -> Candidate:
    return Candidate(f"X={x}, Y={y}", (Edit("params.py", content=f"X = {x}\nY = {y}\n"),))


def _constant(path: Path, name: str) -> str:
    line = next(ln for ln in path.read_text().splitlines() if ln.startswith(f"{name} ="))
    return line.split("=", 1)[1].split("#")[0].strip()


def test_repeats_are_interleaved_with_runs_of_the_incumbents_files(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t", git=True, noise=0.3)
    sandbox = Tokened()
    Loop.from_dir(
        d, proposer=Scripted([set_x(3.0)]), acceptance=Repeated(repeats=3), sandbox=sandbox, tag="i"
    ).run()
    with open_ledger(d) as led:
        runs = led.runs("i")
        kept = led.history("i")[1]
    kinds = [r.kind for r in runs]
    # C I C I C I: each candidate run with the incumbent run right after it, its pair.
    assert kinds == ["baseline"] + ["calibration"] * 4 + [
        "candidate",
        "incumbent",
        "re-measure",
        "incumbent",
        "re-measure",
        "incumbent",
    ]
    # Incumbent runs ran the parent's params.py, the candidate's runs its own.
    by_kind = {
        k: {x for r, x in zip(runs, sandbox.x_seen, strict=True) if r.kind == k} for k in set(kinds)
    }
    assert by_kind["incumbent"] == by_kind["calibration"] == {"0.0"}
    assert by_kind["candidate"] == by_kind["re-measure"] == {"3.0"}
    assert kept.status is Status.KEEP and kept.n_runs == 3
    own = [r.value for r in runs if r.experiment_id == kept.id and r.commit == kept.commit]
    assert len(own) == 3 and kept.value == sum(own) / 3  # the mean, never the best run


def test_every_run_has_its_own_seed_log_and_measurement(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t", git=True, noise=0.3)
    sandbox = Tokened()
    cands = [params(3.0, 0.0), params(3.0, 1.0), params(-1.0, 0.0)]
    Loop.from_dir(
        d, proposer=Scripted(cands), acceptance=Repeated(repeats=2), sandbox=sandbox, tag="f"
    ).run()
    with open_ledger(d) as led:
        runs = led.runs("f")
    assert len(runs) == len(sandbox.specs) > 10
    logs = [r.log_path for r in runs]
    assert len(set(logs)) == len(logs), "two runs shared a log file"
    for n, (r, spec) in enumerate(zip(runs, sandbox.specs, strict=True), start=1):
        assert r.log_path == str(spec.log_path) and r.seed == spec.seed
        assert f"run-token: {n}\n" in Path(str(r.log_path)).read_text(), r
    # Each commit's runs (baseline, calibration, incumbent re-runs...) have distinct seeds.
    seeds: dict[str, list[int]] = {}
    for r in runs:
        seeds.setdefault(r.commit, []).append(r.seed)
    assert all(s == list(range(len(s))) for s in seeds.values()), seeds
    # One measurement file per measured run, none overwritten by another.
    files = (d / ".autoresearch" / "runs" / "f").rglob("*measurement*.json")
    written = Counter(
        (m["kind"], m["commit"], m["seed"], m["primary"])
        for m in (json.loads(p.read_text()) for p in files)
    )
    measured = Counter((r.kind, r.commit, r.seed, r.value) for r in runs if r.value is not None)
    assert written == measured


def test_calibration_runs_get_distinct_seeds_and_logs(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t", git=True, noise=0.3)
    sandbox = FakeSandbox()
    events = []
    Loop.from_dir(
        d,
        proposer=Scripted([]),
        acceptance="threshold",
        sandbox=sandbox,
        tag="c",
        on_event=events.append,
    ).run()
    with open_ledger(d) as led:
        runs = led.runs("c")
        sigma = led.tag_info("c").noise_sigma  # type: ignore[union-attr]
    calibration = [r for r in runs if r.kind == "calibration"]
    assert len(calibration) == 4 and {r.experiment_id for r in calibration} == {None}
    assert sorted(r.seed for r in runs) == [0, 1, 2, 3, 4]
    assert len({r.log_path for r in runs}) == 5 and len({r.value for r in runs}) == 5
    assert all("/calibration-0/" in str(r.log_path) for r in calibration)
    assert sigma is not None and sigma > 0
    assert any(e.kind == "calibration" and "sigma=" in e.message for e in events)


def test_calibration_follows_the_policy_schedule_across_a_resume(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t", git=True, noise=0.3)
    options = {
        "acceptance": "threshold",
        "overrides": {"acceptance.calibration_runs": 2, "acceptance.calibrate_every": 3},
    }
    cands = [
        Candidate(f"X={x}", set_x(x).edits, meta={"line": n})  # replayed from its line on resume
        for n, x in enumerate((-1.0, -2.0, -3.0, -4.0, -5.0, -1.5, -2.5), start=1)
    ]
    Loop.from_dir(d, proposer=Scripted(cands), tag="s", sandbox=FakeSandbox(), **options).run(
        max_experiments=3  # the baseline and two candidates
    )
    Loop.from_dir(d, proposer=Scripted(cands), resume=True, sandbox=FakeSandbox(), **options).run()
    with open_ledger(d) as led:
        runs = led.runs("s")
    # Calibrated before candidates 1, 4 and 7: the resumed session counts the first's two.
    folders = Counter(Path(str(r.log_path)).parent.name for r in runs if r.kind == "calibration")
    assert folders == {"calibration-0": 2, "calibration-3": 2, "calibration-6": 2}
    assert len(ledger_records(d, "s")) == 1 + len(cands)


def test_a_failed_repeat_discards_the_candidate_with_its_cause(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t", git=True)

    def flaky_candidate(spec: RunSpec) -> str | FakeRun:
        x = _constant(spec.workdir / "params.py", "X")
        return FakeRun.crash("segfault\n") if x == "3.0" and spec.seed > 0 else toy_run(spec)

    Loop.from_dir(
        d,
        proposer=Scripted([set_x(3.0)]),
        acceptance=Repeated(repeats=3),
        sandbox=FakeSandbox(flaky_candidate),
        tag="r",
    ).run()
    rec = ledger_records(d, "r")[1]
    assert rec.status is Status.DISCARD and "a repeat run failed" in rec.reason
    assert rec.cause is not None and rec.cause.value == "repeat_failed"


def test_an_identical_candidate_is_not_run_again(toy: Path) -> None:
    worse = set_x(-2.0, "worse")
    same = Scripted([worse, set_x(-2.0, "the same edit again")])
    sandbox = FakeSandbox()
    Loop.from_dir(toy, proposer=same, tag="dup", sandbox=sandbox).run()
    recs = ledger_records(toy, "dup")
    assert recs[2].status is Status.DISCARD and "identical to experiment 2" in recs[2].reason
    assert recs[2].value == recs[1].value
    assert len(sandbox.specs) == 2  # the baseline and the first candidate only


def test_repeat_runs_start_from_clean_files(tmp_path: Path) -> None:
    # The first run (seed 0) writes metrics.json; a repeat that writes nothing must not be
    # credited with the first run's file. Real runs: the files are the point.
    cmd = (
        'if [ \\"$AUTORESEARCH_SEED\\" = 0 ]; then python -c '
        "\\\"import params, json; json.dump({'score': (params.X - 3) ** 2 + 1}, "
        "open('metrics.json', 'w'))\\\"; fi"
    )
    d = make_toy_domain(tmp_path / "t", git=True, command=cmd)
    cfg = d / "autoresearch.toml"
    cfg.write_text(cfg.read_text().replace('metric = "score"', 'metric = "score"\nsource = "json"'))
    commit_all(d, "json")
    Loop.from_dir(
        d,
        proposer=Scripted([set_x(3.0)]),
        tag="r",
        acceptance="repeated",
        overrides={"editable": ["*"], "fixed": ["run.py"]},
    ).run()
    recs = ledger_records(d, "r")
    assert recs[1].status is Status.DISCARD and "a repeat run failed" in recs[1].reason


class IncumbentOnly(Acceptance):
    """Asks for incumbent runs forever (a policy that breaks its contract)."""

    name = "incumbent-only"
    max_runs_per_candidate = 3

    def decide(self, evidence: Evidence) -> Decision:
        return Decision(Verdict.MEASURE, "more of the incumbent", more_incumbent=1)


def test_a_policy_that_only_asks_for_incumbent_runs_cannot_hang_the_loop(toy: Path) -> None:
    cap = 30

    def bounded(spec: RunSpec) -> str | FakeRun:
        if len(sandbox.specs) > cap:  # stops the test, not the engine: the bug would hang it
            raise RuntimeError(f"more than {cap} runs for one candidate")
        return toy_run(spec)

    sandbox = FakeSandbox(bounded)
    Loop.from_dir(
        toy, proposer=Scripted([set_x(3.0)]), acceptance=IncumbentOnly(), sandbox=sandbox, tag="h"
    ).run()
    assert ledger_records(toy, "h")[1].status is Status.DISCARD


class Recording(Sequential):
    """The built-in sequential policy, noting the evidence of every decision."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Evidence] = []

    def decide(self, evidence: Evidence) -> Decision:
        self.seen.append(evidence)
        return super().decide(evidence)


def test_sequential_gets_the_incumbent_runs_beside_each_candidate_run(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t", git=True, noise=0.3)
    policy = Recording()
    Loop.from_dir(d, proposer=Scripted([set_x(3.0)]), acceptance=policy, tag="p").run()
    with open_ledger(d) as led:
        runs = [r for r in led.runs("p") if r.experiment_id == 2]
        kept = led.history("p")[1]
    kinds = [r.kind for r in runs]
    # The first run screens; then its pair, and a candidate run with its pair at a time.
    assert kinds == ["candidate", "incumbent"] + ["incumbent", "re-measure"] * 6, kinds
    final = policy.seen[-1]
    assert final.paired == tuple(r.value for r in runs if r.kind == "incumbent")
    assert final.candidate == tuple(r.value for r in runs if r.kind != "incumbent")
    assert [len(e.paired or ()) for e in policy.seen] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert kept.status is Status.KEEP and "7 pairs" in kept.reason

"""The testing kit's stand-ins: FakeSandbox keeps the Sandbox contract and writes what a real
run writes, toy_run prints what the toy's run.py prints, and the record builders make valid
records."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoresearch import Context, LocalSandbox, RunResult, RunSpec, Status
from autoresearch.testing import (
    FakeRun,
    FakeSandbox,
    SandboxContract,
    domain_context,
    make_context,
    make_record,
    make_toy_domain,
    toy_run,
)


class TestFakeSandboxContract(SandboxContract):
    """A FakeSandbox whose handler gives the contract's commands their shell meaning."""

    short_timeout_s = 0.05  # the fake's endless run only waits out its limit

    def make_sandbox(self) -> FakeSandbox:
        sandbox = FakeSandbox(lambda spec: self._shell(sandbox, spec))
        return sandbox

    def _shell(self, sandbox: FakeSandbox, spec: RunSpec) -> str | FakeRun:
        if spec.command == self.ok_command:
            eval_output = self.eval_output if spec.eval_command == self.eval_command else None
            return FakeRun(self.ok_output, eval_output=eval_output)
        if spec.command == self.failing_command:
            return FakeRun.crash(self.failing_output, exit_code=3)
        if spec.command == self.endless_command:
            if sandbox.wait(spec.timeout_s):
                return ""  # cancelled: the sandbox reports the run INTERRUPTED
            return FakeRun.timeout(reason=f"exceeded the hard limit of {spec.timeout_s:g} s")
        raise AssertionError(f"no fake for {spec.command!r}")


def spec(tmp_path: Path, command: str = "python run.py", **kw: object) -> RunSpec:
    fields: dict = {
        "workdir": tmp_path,
        "command": command,
        "log_path": tmp_path / "logs" / "run.log",
        "time_budget_s": 1,
        "timeout_s": 2,
    }
    fields.update(kw)
    return RunSpec(**fields)


def test_printed_text_becomes_the_log_and_the_eval_log(tmp_path: Path) -> None:
    sandbox = FakeSandbox(lambda s: "---\nscore: 2.5\n")
    eval_log = tmp_path / "logs" / "eval.log"
    first = sandbox.run(spec(tmp_path, seed=4))
    second = sandbox.run(spec(tmp_path, eval_command="python eval.py", eval_log_path=eval_log))
    assert first.ok and first.exit_code == 0 and first.seed == 4
    assert first.log_text() == "---\nscore: 2.5\n" and first.eval_log_path is None
    assert second.eval_log_path == eval_log and second.trusted_output() == "---\nscore: 2.5\n"
    assert [s.seed for s in sandbox.specs] == [4, 0] and sandbox.results == [first, second]


def test_a_fake_run_can_fail_and_keeps_its_own_eval_output(tmp_path: Path) -> None:
    answers = iter(
        [
            FakeRun.crash("Traceback: boom\n", exit_code=4),
            FakeRun.timeout(),
            FakeRun.oom(),
            FakeRun("trained\n", eval_output="---\nscore: 1\n", wall_s=3.0, peak_memory_mb=512),
        ]
    )
    sandbox = FakeSandbox(lambda s: next(answers))
    runs = [
        sandbox.run(
            spec(
                tmp_path,
                log_path=tmp_path / f"run-{i}.log",
                eval_command="python eval.py",
                eval_log_path=tmp_path / f"eval-{i}.log",
            )
        )
        for i in range(4)
    ]
    assert [r.failure for r in runs] == [Status.CRASH, Status.TIMEOUT, Status.OOM, None]
    assert (runs[0].exit_code, runs[0].reason) == (4, "exit code 4")
    assert "boom" in runs[0].log_tail() and runs[1].exit_code == -9
    assert runs[3].log_text() == "trained\n" and runs[3].trusted_output() == "---\nscore: 1\n"
    assert (runs[3].wall_s, runs[3].peak_memory_mb) == (3.0, 512)
    assert [(tmp_path / f"eval-{i}.log").exists() for i in range(4)] == [False] * 3 + [True]


def test_no_eval_log_is_written_for_a_failed_run(tmp_path: Path) -> None:
    eval_log = tmp_path / "logs" / "eval.log"
    sandbox = FakeSandbox(lambda s: FakeRun.crash())
    sandbox.run(spec(tmp_path, eval_command="python eval.py", eval_log_path=eval_log))
    assert not eval_log.exists()


def test_a_handler_may_return_its_own_result_and_its_bugs_propagate(tmp_path: Path) -> None:
    mine = RunResult(tmp_path, tmp_path / "x.log", 0, 1.0, 0.0, 9)
    assert FakeSandbox(lambda s: mine).run(spec(tmp_path)) is mine

    def buggy(s: RunSpec) -> str:
        raise KeyError("the test's own bug")

    with pytest.raises(KeyError):
        FakeSandbox(buggy).run(spec(tmp_path))


def test_a_cancel_during_the_handler_drops_its_answer(tmp_path: Path) -> None:
    sandbox = FakeSandbox(lambda s: (sandbox.cancel(), "---\nscore: 1\n")[1])
    r = sandbox.run(spec(tmp_path))
    assert r.failure is Status.INTERRUPTED and r.exit_code is None
    assert sandbox.run(spec(tmp_path)).failure is Status.INTERRUPTED  # cancels each time
    calls: list[RunSpec] = []
    quiet = FakeSandbox(lambda s: calls.append(s) or "ok\n")
    quiet.cancel()
    assert quiet.run(spec(tmp_path)).failure is Status.INTERRUPTED and calls == []
    assert quiet.run(spec(tmp_path)).ok and len(calls) == 1 and len(quiet.specs) == 2


@pytest.mark.parametrize(
    ("params", "seed", "noise"),
    [("X = 0.0\nY = 0.0\n", 0, 0.0), ("X = 2.5\nY = -1\n", 3, 0.3), ("X = 3\nY = 1\n", 11, 1.0)],
)
def test_toy_run_prints_what_the_toy_harness_prints(
    tmp_path: Path, params: str, seed: int, noise: float
) -> None:
    domain = make_toy_domain(tmp_path / "toy", noise=noise)
    (domain / "params.py").write_text(params)
    s = spec(domain, log_path=tmp_path / "real.log", seed=seed, env={"TOY_NOISE": str(noise)})
    real = LocalSandbox().run(s)
    assert real.ok, real.log_text()
    assert toy_run(s) == real.log_text()


def test_toy_run_crashes_on_params_it_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "params.py").write_text("raise SystemExit(4)\n")
    out = toy_run(spec(tmp_path))
    assert isinstance(out, FakeRun) and out.failure is Status.CRASH and "KeyError" in out.output
    assert FakeSandbox().run(spec(tmp_path)).failure is Status.CRASH  # toy_run is the default


def test_make_context_is_valid_and_takes_any_field() -> None:
    ctx = make_context()
    assert isinstance(ctx, Context) and ctx.files["params.py"].startswith('"""Knobs')
    assert (ctx.metric, ctx.direction, ctx.best_value) == ("score", "minimize", 11.0)
    changed = make_context(last_failure="crash: x", history=[], editable_globs=["*.py"])
    assert changed.last_failure == "crash: x" and changed.editable_globs == ("*.py",)
    with pytest.raises(TypeError, match="colour"):
        make_context(colour="red")


def test_domain_context_reads_the_folder(tmp_path: Path) -> None:
    domain = make_toy_domain(tmp_path / "toy", git=True)
    ctx = domain_context(domain, experiment_id=5)
    assert set(ctx.files) == {"params.py"} and ctx.program.startswith("# Toy")
    assert (ctx.experiment_id, ctx.best_value, ctx.editable_globs) == (5, None, ("params.py",))


def test_make_record_takes_any_field() -> None:
    r = make_record(status=Status.CRASH, value=None, meta={"trial": 3})
    assert r.status is Status.CRASH and r.value is None and r.meta == {"trial": 3}

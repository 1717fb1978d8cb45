"""Containment: timeouts (grandchildren, TERM-ignoring, own session), memory cap, crashes,
credentials, log flood."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
from conftest import pids_alive

from autoresearch import LocalSandbox, RunSpec, Status
from autoresearch.execution._proc import is_credential, scrub_env
from autoresearch.testing import SandboxContract


def _unique_sleep() -> str:
    """A sleep duration no other process has, so its command line identifies it."""
    return f"{300 + uuid.uuid4().int % 10**6 / 10**6:.6f}"


def _hog(mb: int, sleep_s: float) -> str:
    """A command that touches ``mb`` MB of memory, then sleeps."""
    code = f"import time; x = b'\\x01' * ({mb} * 1024 * 1024); time.sleep({sleep_s})"
    return f'python -c "{code}"'


def spec(tmp_path: Path, command: str, **kw: object) -> RunSpec:
    args: dict = dict(
        workdir=tmp_path,
        command=command,
        log_path=tmp_path / "logs" / "run.log",
        time_budget_s=1,
        timeout_s=2,
    )
    args.update(kw)
    return RunSpec(**args)


def test_clean_run_records_exit_time_and_log(tmp_path: Path) -> None:
    r = LocalSandbox().run(spec(tmp_path, "echo hello; echo oops >&2"))
    assert r.ok and r.exit_code == 0
    assert r.log_text().splitlines() == ["hello", "oops"]
    assert r.wall_s < 2


def test_budget_and_seed_reach_the_command(tmp_path: Path) -> None:
    r = LocalSandbox().run(
        spec(
            tmp_path,
            'echo "$AUTORESEARCH_TIME_BUDGET_S $AUTORESEARCH_SEED"',
            time_budget_s=7,
            seed=3,
        )
    )
    assert r.log_text().strip() == "7 3"


def test_nonzero_exit_is_a_crash(tmp_path: Path) -> None:
    r = LocalSandbox().run(spec(tmp_path, "echo before; exit 3"))
    assert r.failure is Status.CRASH and r.exit_code == 3 and "exit code 3" in r.reason


@pytest.mark.slow
def test_timeout_kills_term_ignoring_grandchild_and_own_session(tmp_path: Path) -> None:
    a, b = _unique_sleep(), _unique_sleep()
    # One grandchild ignores SIGTERM; another leaves the session with setsid; both sleep.
    cmd = f"(trap '' TERM; sleep {a}) & setsid sh -c 'sleep {b}' & sleep 300"
    t0 = time.monotonic()
    r = LocalSandbox().run(spec(tmp_path, cmd, timeout_s=1))
    assert r.failure is Status.TIMEOUT
    assert time.monotonic() - t0 < 15
    assert pids_alive(f"sleep {a}") == [] and pids_alive(f"sleep {b}") == []


def test_strays_of_a_clean_exit_are_ended(tmp_path: Path) -> None:
    n = _unique_sleep()
    r = LocalSandbox().run(spec(tmp_path, f"setsid sh -c 'sleep {n}' & sleep 0.3; echo done"))
    assert r.ok
    assert pids_alive(f"sleep {n}") == []


def test_memory_cap_gives_oom(tmp_path: Path) -> None:
    cmd = _hog(400, sleep_s=2)
    r = LocalSandbox().run(spec(tmp_path, cmd, memory_limit_mb=150, timeout_s=20))
    assert r.failure is Status.OOM, (r.failure, r.reason)


def test_memory_cap_by_rss_polling_without_cgroups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autoresearch.execution import _proc

    monkeypatch.setattr(_proc.MemoryCgroup, "create", classmethod(lambda cls, n, m: None))
    cmd = _hog(400, sleep_s=5)
    r = LocalSandbox().run(spec(tmp_path, cmd, memory_limit_mb=150, timeout_s=20))
    assert r.failure is Status.OOM, (r.failure, r.reason)
    assert r.peak_memory_mb > 150


def test_peak_memory_is_recorded(tmp_path: Path) -> None:
    cmd = _hog(120, sleep_s=0)
    r = LocalSandbox().run(spec(tmp_path, cmd, timeout_s=20))
    assert r.ok and r.peak_memory_mb > 100


def test_credentials_are_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "OPENAI_API_KEY": "sk-1",
        "AWS_ACCESS_KEY_ID": "a",
        "AWS_REGION": "eu",
        "GITHUB_TOKEN": "t",
        "DB_PASSWORD": "p",
        "MY_SECRET": "s",
        "SSH_AUTH_SOCK": "/x",
        "GOOGLE_APPLICATION_CREDENTIALS": "/c.json",
    }
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("HARMLESS_SETTING", "ok")
    r = LocalSandbox().run(spec(tmp_path, "env"))
    names = {line.split("=", 1)[0] for line in r.log_text().splitlines() if "=" in line}
    assert not names & set(secrets), names & set(secrets)
    assert "HARMLESS_SETTING" in names and "PATH" in names


def test_env_allow_and_deny(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"HF_TOKEN": "x", "WANDB_API_KEY": "y", "DEBUG_LEVEL": "1", "PATH": "/bin"}
    out = scrub_env(env, allow=["WANDB_API_KEY"], deny=["DEBUG_*"])
    assert out == {"WANDB_API_KEY": "y", "PATH": "/bin"}
    assert is_credential("ANTHROPIC_API_KEY") and not is_credential("LANG")


def test_log_flood_is_capped_keeping_head_and_tail(tmp_path: Path) -> None:
    cmd = (
        "python -c \"import sys\nprint('FIRST LINE')\nfor i in range(400000): "
        "sys.stdout.write('x' * 99 + '\\n')\nprint('---')\nprint('score: 1.5')\""
    )
    r = LocalSandbox().run(spec(tmp_path, cmd, log_limit_mb=0.5, timeout_s=60))
    assert r.ok
    size = r.log_path.stat().st_size
    assert size < 0.6 * 1024 * 1024
    text = r.log_text()
    assert text.startswith("FIRST LINE")
    assert text.rstrip().endswith("---\nscore: 1.5")
    assert "bytes of log omitted" in text


def test_cancel_interrupts(tmp_path: Path) -> None:
    import threading

    sb = LocalSandbox()
    threading.Timer(0.5, sb.cancel).start()
    r = sb.run(spec(tmp_path, "sleep 30", timeout_s=60))
    assert r.failure is Status.INTERRUPTED


def test_cancel_before_a_run_interrupts_it_without_starting_it(tmp_path: Path) -> None:
    sb = LocalSandbox()
    sb.cancel()
    t0 = time.monotonic()
    r = sb.run(RunSpec(tmp_path, "sleep 5", tmp_path / "run.log", 1, 10))
    assert r.failure is Status.INTERRUPTED and time.monotonic() - t0 < 2
    r = sb.run(RunSpec(tmp_path, "true", tmp_path / "run.log", 1, 10))
    assert r.ok  # the cancel was consumed


def test_eval_command_output_is_the_trusted_one(tmp_path: Path) -> None:
    r = LocalSandbox().run(
        spec(
            tmp_path,
            "echo '---'; echo 'score: 0.1'",
            eval_command="echo '---'; echo 'score: 9'",
            eval_log_path=tmp_path / "logs" / "eval.log",
        )
    )
    assert r.ok and "score: 9" in r.trusted_output() and "0.1" not in r.trusted_output()


def test_network_off_is_enforced_or_reported(tmp_path: Path) -> None:
    sb = LocalSandbox()
    r = sb.run(spec(tmp_path, "cat /proc/net/dev | wc -l", network=False))
    assert r.ok
    if os.geteuid() == 0 and not sb.warnings:
        # In a fresh network namespace only the loopback device exists (2 header lines + lo).
        assert int(r.log_text().strip()) == 3
    else:
        assert any("network" in w for w in sb.warnings)


class TestLocalSandboxContract(SandboxContract):
    def make_sandbox(self) -> LocalSandbox:
        return LocalSandbox()

"""call_isolated / Worker: candidate code in a child interpreter, results over a private channel.

The candidate modules here are hostile on purpose: they print forged summary blocks, plant
shadow modules, write garbage into the reply pipe, hang, and leave processes behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from autoresearch import harness
from autoresearch._objective import parse_summary
from autoresearch.harness import IsolatedCallError, Worker, call_isolated

PREFIX = harness.CANDIDATE_PREFIX
FORGED = "---\nval_bpb: 0.000100\n"
# Every way str.splitlines (the engine's parser) breaks a line, not only "\n".
LINE_BREAKS = "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"


def module(folder: Path, source: str, name: str = "cand.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


CANDIDATE = """
import os, sys
import numpy as np

CALLS = []

def combine(a, b, scale=1.0):
    CALLS.append(1)
    return {"sum": (a + b) * scale, "calls": len(CALLS), "pair": (1, "x"), "none": None}

def echo(*args, **kwargs):
    return {"args": args, "kwargs": kwargs}

def fail(message):
    raise ValueError(message)

def environment():
    return {
        "env": dict(os.environ),
        "stdin": sys.stdin.read(),
        "path": sys.path,
        "isolated": sys.flags.isolated,
        "cwd": os.getcwd(),
    }
"""


def test_arrays_and_json_come_back(tmp_path: Path) -> None:
    path = module(tmp_path / "c", CANDIDATE)
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.ones((2, 3), np.float32)
    out = call_isolated(path, "combine", (a, b), {"scale": 2.0}, timeout_s=30)
    assert out["sum"].dtype == np.float32 and out["sum"].shape == (2, 3)
    np.testing.assert_array_equal(out["sum"], (a + 1) * 2)
    assert out["calls"] == 1 and out["pair"] == [1, "x"] and out["none"] is None
    values = [
        np.array(3.5),  # 0-d stays 0-d
        np.asfortranarray(np.arange(12).reshape(3, 4)),
        np.zeros((0, 4), np.int16),
        np.array([True, False]),
        np.array(["2020-01-02", "2021-03-04"], dtype="datetime64[ns]"),
        np.arange(10)[::3],  # not contiguous
    ]
    back = call_isolated(path, "echo", values, {"nested": {"x": [values[0]]}}, timeout_s=30)
    for sent, got in zip(values, back["args"], strict=True):
        assert got.dtype == sent.dtype and got.shape == sent.shape
        np.testing.assert_array_equal(got, sent)
    assert back["kwargs"]["nested"]["x"][0].shape == ()


def test_a_worker_keeps_its_state_and_survives_an_exception(tmp_path: Path) -> None:
    path = module(tmp_path / "c", CANDIDATE)
    with Worker(path, timeout_s=30) as worker:
        for expected in (1, 2, 3):
            assert worker.call("combine", 1, 2)["calls"] == expected
        with pytest.raises(IsolatedCallError) as err:
            worker.call("fail", "bad value\n---\nval_bpb: 0.1")
        assert worker.call("combine", 1, 2)["calls"] == 4  # still the same process
        with pytest.raises(IsolatedCallError, match="no function nope"):
            worker.call("nope")
    e = err.value
    assert e.exception_type == "ValueError" and not e.timed_out
    assert e.message == "fail() raised ValueError"
    assert f"{PREFIX}ValueError: bad value" in e.details
    assert all(line.startswith(PREFIX) for line in e.details)
    assert parse_summary(str(e)) == {}  # the message cannot carry a forged block
    assert "cand.py" in str(e)  # the traceback's end says where


def test_errors_at_import_and_unsendable_results(tmp_path: Path) -> None:
    broken = module(tmp_path / "b", "import does_not_exist\n")
    with pytest.raises(IsolatedCallError, match=r"loading cand\.py raised ModuleNotFoundError"):
        Worker(broken, timeout_s=30)
    odd = module(tmp_path / "o", "def f():\n    return object()\n")
    with pytest.raises(IsolatedCallError, match="raised TypeError") as err:
        call_isolated(odd, "f", timeout_s=30)
    assert "cannot send a object" in str(err.value)
    pickled = module(tmp_path / "p", "import numpy as np\ndef f():\n    return np.array([{}])\n")
    with pytest.raises(IsolatedCallError, match="no pickle"):
        call_isolated(pickled, "f", timeout_s=30)


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting for its reaper counts as gone)."""
    for _ in range(100):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids.txt"
    path = module(
        tmp_path / "c",
        f"""
        import os, subprocess, time

        def hang():
            helper = subprocess.Popen(["sleep", "300"])
            with open({str(pids)!r}, "w") as f:
                f.write(f"{{os.getpid()}} {{helper.pid}}")
            time.sleep(300)
        """,
    )
    worker = Worker(path, timeout_s=30)
    worker.timeout_s = 1.0
    with pytest.raises(IsolatedCallError) as err:
        worker.call("hang")
    assert err.value.timed_out and "timeout_s=1" in err.value.message
    child, helper = map(int, pids.read_text().split())
    assert child == worker.pid
    assert _gone(child) and _gone(helper)
    with pytest.raises(IsolatedCallError, match="closed"):
        worker.call("hang")


EVALUATOR = """
import sys
from autoresearch.harness import call_isolated, print_summary

out = call_isolated(sys.argv[1], "noisy", timeout_s=30)
print_summary({"score": out})
"""

NOISY = """
import os, sys

print("at import")
BREAKS = {breaks!r}

def noisy():
    print("---\\nval_bpb: 0.000100", flush=True)
    sys.stderr.write("---\\nscore: 99\\n")
    for b in BREAKS:
        sys.stdout.write("x" + b + "---" + b + "score: 98" + b + "\\n")
    os.write(1, b"---\\nscore: 97\\n")  # below Python, straight to the descriptor
    print("y" * 20000 + "\\nscore: 96")  # a line longer than any pipe write is atomic
    return 1.0
"""


def test_candidate_output_never_passes_for_the_evaluators(tmp_path: Path) -> None:
    path = module(tmp_path / "c", NOISY.format(breaks=LINE_BREAKS))
    script = tmp_path / "evaluator.py"
    script.write_text(EVALUATOR)
    # One log for both streams, as the engine's sandbox keeps it.
    res = subprocess.run(
        [sys.executable, str(script), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout
    log = res.stdout
    assert parse_summary(log) == {"score": 1.0}
    ours = {"---", "score: 1.000000"}
    theirs = [line for line in log.splitlines() if line not in ours]
    assert len(theirs) > 10 and all(line.startswith(PREFIX) for line in theirs)
    assert f"{PREFIX}at import" in theirs


def test_output_modes_stream_tail_drop(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = module(tmp_path / "c", "print('hello')\ndef f():\n    print('inside')\n    1 / 0\n")
    with pytest.raises(IsolatedCallError):
        call_isolated(path, "f", timeout_s=30, output="stream")
    out, err = capfd.readouterr()
    assert out == "" and f"{PREFIX}hello\n{PREFIX}inside\n" in err
    with pytest.raises(IsolatedCallError) as tail:
        call_isolated(path, "f", timeout_s=30, output="tail")
    assert capfd.readouterr() == ("", "")
    assert f"{PREFIX}hello" in tail.value.details
    with pytest.raises(IsolatedCallError) as drop:
        call_isolated(path, "f", timeout_s=30, output="drop")
    assert capfd.readouterr() == ("", "")
    assert "hello" not in str(drop.value)
    assert "ZeroDivisionError" in str(drop.value)  # the traceback still says what failed


def test_the_child_gets_a_minimal_environment_and_no_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("TRADING_DATA", "/data/prices.csv")
    monkeypatch.setenv("AUTORESEARCH_RUN_MARKER", "marker-1")
    path = module(tmp_path / "c", CANDIDATE)
    got = call_isolated(path, "environment", kwargs=None, env={"GPT_PRESET": "cpu"}, timeout_s=30)
    env = got["env"]
    assert "OPENAI_API_KEY" not in env and "TRADING_DATA" not in env
    assert env["GPT_PRESET"] == "cpu" and env["AUTORESEARCH_ISOLATED_CALL"] == "1"
    assert env["AUTORESEARCH_RUN_MARKER"] == "marker-1"  # the sandbox finds strays by it
    assert set(env) <= {*harness._isolated.ENV_ALLOW, "GPT_PRESET", "AUTORESEARCH_ISOLATED_CALL"}
    assert got["stdin"] == "" and got["isolated"] == 1
    assert Path(got["cwd"]).name.startswith("isolated-") and not Path(got["cwd"]).exists()


def test_the_run_marker_name_matches_the_sandbox() -> None:
    from autoresearch.execution._proc import MARKER_VAR

    assert MARKER_VAR in harness._isolated.ENV_ALLOW


SHADOW = "raise SystemExit('shadow module imported: {name}')\n"
PROBE = """
import importlib.util, json, sys
import numpy

def probe():
    return {
        "json": json.__file__,
        "numpy": numpy.__file__,
        "found": [m for m in ("evil", "evaluator_mod", "sibling") if importlib.util.find_spec(m)],
        "arr": numpy.arange(3),
    }
"""


def test_isolation_ignores_pythonpath_and_planted_modules(tmp_path: Path) -> None:
    hostile = tmp_path / "hostile"
    candidate = tmp_path / "candidate"
    evaluator = tmp_path / "evaluator"
    for folder, names in [
        (hostile, ("json", "numpy", "evil")),
        (candidate, ("json", "numpy")),  # planted beside the candidate's module
        (evaluator, ("json", "numpy", "evaluator_mod")),  # the caller's folder
    ]:
        for name in names:
            module(folder, SHADOW.format(name=name), f"{name}.py")
    path = module(candidate, PROBE, "probe.py")
    module(candidate, "X = 1\n", "sibling.py")
    got = call_isolated(
        path,
        "probe",
        timeout_s=30,
        cwd=evaluator,
        env={"PYTHONPATH": str(hostile), "PYTHONSTARTUP": str(hostile / "evil.py")},
    )
    # The protocol's (and so the candidate's) json and numpy are the real ones ...
    for name in ("json", "numpy"):
        assert not Path(got[name]).is_relative_to(tmp_path), got[name]
    np.testing.assert_array_equal(got["arr"], np.arange(3))
    # ... and only the candidate's own folder is importable: not PYTHONPATH, not the cwd.
    assert got["found"] == ["sibling"]
    nothing = call_isolated(path, "probe", timeout_s=30, cwd=evaluator, importable=())
    assert nothing["found"] == []


GARBAGE = """
import os, sys
import numpy as np

def garbage():
    os.write(int(sys.argv[2]), b"\\x10\\x00\\x00\\x00\\x00\\x00\\x00\\x00not json at all!")
    return 1

def huge_header():
    os.write(int(sys.argv[2]), (2**62).to_bytes(8, "little"))
    return 1

def big():
    return np.zeros(3 * 2**20, np.uint8)

def die():
    os._exit(3)
"""


def test_a_hostile_reply_is_refused_before_it_is_trusted(tmp_path: Path) -> None:
    path = module(tmp_path / "c", GARBAGE)
    for function, message in [
        ("garbage", "malformed message header"),
        ("huge_header", "message header of"),
        ("die", r"ended during die\(\) \(exit code 3\)"),
    ]:
        with pytest.raises(IsolatedCallError, match=message):
            call_isolated(path, function, timeout_s=30)
    with pytest.raises(IsolatedCallError, match="larger than the 2 MB allowed"):
        call_isolated(path, "big", timeout_s=30, max_reply_mb=2)
    assert call_isolated(path, "big", timeout_s=30, max_reply_mb=4).nbytes == 3 * 2**20


def test_a_one_shot_call_fails_when_the_child_then_exits_badly(tmp_path: Path) -> None:
    path = module(
        tmp_path / "c",
        "import atexit, os\natexit.register(os._exit, 5)\ndef f():\n    return 1\n",
    )
    with pytest.raises(IsolatedCallError, match="its process then exited with code 5"):
        call_isolated(path, "f", timeout_s=30)
    with Worker(path, timeout_s=30) as worker:  # a worker leaves that to its caller
        assert worker.call("f") == 1
    assert worker.exit_code == 5


def test_training_at_import_is_refused_in_the_child(tmp_path: Path) -> None:
    path = module(
        tmp_path / "c",
        "from autoresearch import harness\nbudget = harness.start_budget(10)\n",
        "train.py",
    )
    with pytest.raises(IsolatedCallError, match="RuntimeError") as err:
        Worker(path, timeout_s=60)
    assert '__name__ == "__main__"' in str(err.value)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_the_caller_becomes_non_dumpable(tmp_path: Path) -> None:
    # Non-dumpable, a same-user child cannot open the caller's /proc/<pid>/fd/1 to write
    # around the prefix. Checked in a fresh process: the flag is per process.
    path = module(tmp_path / "c", CANDIDATE)
    code = (
        "import ctypes, sys\n"
        "from autoresearch.harness import call_isolated\n"
        "prctl = ctypes.CDLL(None).prctl\n"
        "before = prctl(3, 0, 0, 0, 0)\n"
        f"call_isolated({str(path)!r}, 'combine', (1, 2), timeout_s=30)\n"
        "print(before, prctl(3, 0, 0, 0, 0))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.stdout.split() == ["1", "0"], res.stderr


def test_no_child_outlives_its_worker(tmp_path: Path) -> None:
    path = module(tmp_path / "c", CANDIDATE)
    worker = Worker(path, timeout_s=30)
    pid = worker.pid
    assert worker.close() == 0
    assert worker.close() == 0  # idempotent
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

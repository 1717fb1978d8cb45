"""What a candidate's command can reach from its sandbox. Each attack is a real command run
through LocalSandbox, once in namespaces (contained) and once with isolation off (the
control: the same attack succeeds there, so no test passes for the wrong reason)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoresearch.execution import LocalSandbox, RunSpec, gpu_devices, network_stack_unavailable

pytestmark = pytest.mark.usefixtures("namespaces")
MODES = ["namespaces", "none"]


def _run(tmp: Path, mode: str, code: str, **fields: object) -> tuple[object, str]:
    """Run ``code`` (Python) as the candidate's command in ``tmp/work``; its log."""
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    (work / "attack.py").write_text(textwrap.dedent(code))
    spec = RunSpec(
        workdir=work,
        command=f"{sys.executable} attack.py",
        log_path=tmp / f"{mode}.log",
        time_budget_s=20,
        timeout_s=30,
        **fields,  # type: ignore[arg-type]
    )
    run = LocalSandbox(mode).run(spec)  # type: ignore[arg-type]
    return run, (tmp / f"{mode}.log").read_text()


@pytest.mark.parametrize("mode", MODES)
def test_the_drivers_environment_is_out_of_reach(tmp_path: Path, mode: str) -> None:
    # A process of the user started with a key (as the driver is); the run's own environment
    # is scrubbed, so the attack goes through /proc/<pid>/environ.
    secret = "sk-driver-secret-7f3a9c"
    holder = subprocess.Popen(["sleep", "60"], env={**os.environ, "OPENAI_API_KEY": secret})
    try:
        _, log = _run_in(tmp_path, mode, secret)
    finally:
        holder.kill()
        holder.wait()
    if mode == "namespaces":
        assert "NOTHING" in log and "driver visible: False" in log, log
    else:
        assert "FOUND" in log, log


def _run_in(tmp_path: Path, mode: str, secret: str) -> tuple[object, str]:
    return _run(
        tmp_path,
        mode,
        f"""
        import os
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if b"{secret}" in open(f"/proc/{{pid}}/environ", "rb").read():
                    found.append(pid)
            except OSError:
                pass
        print("FOUND" if found else "NOTHING", found)
        print("driver visible:", os.path.exists("/proc/{os.getpid()}/status"))
        """,
    )


@pytest.mark.parametrize("mode", MODES)
def test_repository_state_and_home_are_not_there(tmp_path: Path, mode: str) -> None:
    # The layout the engine uses: the candidate's folder inside the domain's state folder,
    # beside the ledger, inside a repository.
    domain = tmp_path / "repo" / "domain"
    (tmp_path / "repo" / ".git" / "hooks").mkdir(parents=True)
    state = domain / ".autoresearch"
    (state / "worktrees").mkdir(parents=True)
    (state / "ledger.sqlite").write_text("rows")
    home_secret = Path.home() / ".autoresearch-test-secret"
    home_secret.write_text("mine")
    try:
        _, log = _run(
            state / "worktrees",
            mode,
            f"""
            import os
            for p in ["{tmp_path / "repo" / ".git"}", "{state / "ledger.sqlite"}", "{home_secret}"]:
                print(p.rsplit("/", 1)[-1], "SEEN" if os.path.exists(p) else "absent")
            try:
                open("{state / "ledger.sqlite"}", "a").write("forged")
                print("LEDGER WRITTEN")
            except OSError as e:
                print("ledger:", e.strerror)
            """,
        )
    finally:
        home_secret.unlink()
    if mode == "namespaces":
        # (A write to that path lands in the sandbox's own empty tree, gone with it.)
        assert "SEEN" not in log, log
        assert (state / "ledger.sqlite").read_text() == "rows"
    else:
        assert log.count("SEEN") == 3 and "LEDGER WRITTEN" in log, log


@pytest.mark.parametrize("mode", MODES)
def test_a_fixed_file_cannot_be_rewritten_during_the_run(tmp_path: Path, mode: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "score.py").write_text("print('score: 1.0')\n")
    fixed = {"score.py": (work / "score.py").read_bytes()}
    _, log = _run(
        tmp_path,
        mode,
        """
        import os
        try:
            open("score.py", "w").write("print('score: 99.0')\\n")
            print("REWRITTEN")
        except OSError as e:
            print("refused:", e.strerror)
        for how in (os.unlink, lambda p: os.rename(p, "moved.py")):
            try:
                how("score.py")
                print("REPLACED")
                break
            except OSError as e:
                print("refused:", e.strerror)
        """,
        fixed_files=fixed,
    )
    if mode == "namespaces":
        assert "REWRITTEN" not in log and "REPLACED" not in log, log
        assert (work / "score.py").read_bytes() == fixed["score.py"]
    else:
        assert "REWRITTEN" in log, log


@contextlib.contextmanager
def _loopback_server() -> Iterator[int]:
    """A service on the driver's loopback (a local model server, a dashboard, a Ray head)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = srv.accept()
                conn.sendall(b"driver-service\n")
                conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(2)
        srv.close()


_CONNECT = """
import socket, subprocess
def reach(host):
    try:
        s = socket.create_connection((host, {port}), timeout=2)
        return s.recv(64).decode().strip() or "connected"
    except OSError as e:
        return type(e).__name__
for host in ("127.0.0.1", "localhost"{extra}):
    print(host, "->", reach(host))
"""


@pytest.mark.parametrize("mode", MODES)
def test_no_network_means_no_driver_loopback(tmp_path: Path, mode: str) -> None:
    with _loopback_server() as port:
        _, log = _run(tmp_path, mode, _CONNECT.format(port=port, extra=""), network=True)
        _, log_off = _run(tmp_path, mode, _CONNECT.format(port=port, extra=""), network=False)
    if mode == "namespaces":
        assert "driver-service" not in log + log_off, log + log_off
    else:
        # The control: with network, the service is reached (network=false without
        # namespaces is `unshare -n`, which the next test gets around).
        assert "driver-service" in log, log


def test_network_true_reaches_out_but_not_the_drivers_loopback(tmp_path: Path) -> None:
    why = network_stack_unavailable()
    if why is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {why}")
        pytest.skip(why)
    with _loopback_server() as port:
        # The sandbox's gateway and its own address (pasta copies the host's) are the ways
        # back to the host; neither leads to its loopback.
        extra = (
            ', subprocess.run(["ip","-4","route"],capture_output=True,text=True).stdout.split()[2]'
        )
        _, log = _run(tmp_path, "namespaces", _CONNECT.format(port=port, extra=extra), network=True)
    assert "driver-service" not in log, log
    assert "127.0.0.1 -> ConnectionRefusedError" in log, log  # its own loopback, empty


@pytest.mark.parametrize("mode", MODES)
def test_nsenter_back_into_the_drivers_network(tmp_path: Path, mode: str) -> None:
    if subprocess.run(["which", "nsenter"], capture_output=True).returncode != 0:
        pytest.skip("nsenter (util-linux) is not installed")
    with _loopback_server() as port:
        code = f"""
        import subprocess
        probe = "import socket; print(socket.create_connection(('127.0.0.1', {port}), 2).recv(64))"
        r = subprocess.run(["nsenter", "--net=/proc/{os.getpid()}/ns/net", "{sys.executable}",
                            "-c", probe], capture_output=True, text=True)
        print("rc", r.returncode, r.stdout.strip(), r.stderr.strip()[-200:])
        """
        _, log = _run(tmp_path, mode, code, network=False)
    if mode == "namespaces":
        assert "driver-service" not in log, log
    else:
        assert "driver-service" in log, log


@pytest.mark.parametrize("mode", MODES)
def test_a_daemon_cannot_leave_the_cgroup_or_outlive_the_run(tmp_path: Path, mode: str) -> None:
    flag = tmp_path / "work" / "daemon-alive"
    (tmp_path / "work").mkdir()
    code = f"""
    import os, time
    from pathlib import Path
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            for root in ("/sys/fs/cgroup/memory", "/sys/fs/cgroup"):
                try:
                    Path(root, "cgroup.procs").write_text(str(os.getpid()))
                    print("LEFT THE CGROUP", flush=True)
                    break
                except OSError as e:
                    print("stayed:", e.strerror, flush=True)
            os.environ.clear()
            for _ in range(100):
                Path("{flag}").write_text(str(time.time()))
                time.sleep(0.1)
            os._exit(0)
        os._exit(0)
    time.sleep(1)
    """
    _, log = _run(tmp_path, mode, code, memory_limit_mb=512)
    time.sleep(0.5)
    flag.unlink(missing_ok=True)
    time.sleep(0.5)
    survived = flag.exists()
    if mode == "namespaces":
        assert "LEFT THE CGROUP" not in log and not survived, log
    else:
        assert "LEFT THE CGROUP" in log, log
        if survived:  # the control's escapee: end it here
            subprocess.run(["pkill", "-f", str(tmp_path / "work" / "attack.py")], check=False)


@pytest.mark.parametrize("limit", [40, None])
def test_pids_limit_stops_a_fork_bomb(tmp_path: Path, limit: int | None) -> None:
    code = """
    import os, time
    n = 0
    try:
        for _ in range(120):
            if os.fork() == 0:
                time.sleep(3)
                os._exit(0)
            n += 1
    except OSError as e:
        print("stopped:", e.strerror)
    print("children", n)
    """
    _, log = _run(tmp_path, "namespaces", code, pids_limit=limit)
    if limit is None:
        assert "children 120" in log, log
    else:
        assert "stopped:" in log and "children 120" not in log, log


@pytest.mark.parametrize("limit", [20, None])
def test_disk_limit_covers_the_folder_and_tmp(tmp_path: Path, limit: int | None) -> None:
    code = """
    import os, time
    try:
        with open("/tmp/big", "wb") as f:
            f.write(b"x" * (40 << 20))
        print("TMP WRITTEN")
    except OSError as e:
        print("tmp:", e.strerror)
    with open("big", "wb") as f:
        f.write(b"x" * (40 << 20))
    time.sleep(2)
    print("DONE")
    """
    run, log = _run(tmp_path, "namespaces", code, disk_limit_mb=limit)
    if limit is None:
        assert run.ok and "TMP WRITTEN" in log, log  # type: ignore[attr-defined]
    else:
        assert "TMP WRITTEN" not in log, log
        assert not run.ok and "disk_limit_mb=20" in run.reason, run  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", MODES)
def test_evaluator_data_is_only_the_evaluators(tmp_path: Path, mode: str) -> None:
    data = tmp_path / "holdout"
    data.mkdir()
    (data / "labels.txt").write_text("the answers")
    work = tmp_path / "work"
    work.mkdir()
    (work / "peek.py").write_text(
        f"import os\nprint('holdout', 'SEEN' if os.path.exists({str(data / 'labels.txt')!r})"
        " else 'absent')\n"
    )
    spec = RunSpec(
        workdir=work,
        command=f"{sys.executable} peek.py",
        eval_command=f"{sys.executable} peek.py",
        log_path=tmp_path / "run.log",
        eval_log_path=tmp_path / "eval.log",
        time_budget_s=10,
        timeout_s=20,
        eval_data_dirs=(data,),
        fixed_files={"peek.py": (work / "peek.py").read_bytes()},
    )
    run = LocalSandbox(mode).run(spec)  # type: ignore[arg-type]
    assert run.ok, run.log_tail()
    command, evaluator = (tmp_path / "run.log").read_text(), (tmp_path / "eval.log").read_text()
    assert "holdout SEEN" in evaluator
    assert ("holdout absent" if mode == "namespaces" else "holdout SEEN") in command


@pytest.mark.parametrize("mode", MODES)
def test_candidate_code_called_by_the_evaluator_sees_no_evaluator_data(
    tmp_path: Path, mode: str
) -> None:
    data = tmp_path / "holdout"
    data.mkdir()
    (data / "labels.txt").write_text("the answers")
    work = tmp_path / "work"
    work.mkdir()
    # The candidate's function, called by the trusted evaluator through the harness kit.
    (work / "strategy.py").write_text(
        textwrap.dedent(
            f"""
            import os
            def peek():
                seen = []
                if os.path.exists({str(data / "labels.txt")!r}):
                    seen.append("data")
                if os.path.exists("/proc/{{}}/environ".format(os.getppid())):
                    seen.append("evaluator /proc")
                return seen
            """
        )
    )
    (work / "evaluate.py").write_text(
        "from autoresearch.harness import call_isolated\n"
        "print('seen', call_isolated('strategy.py', 'peek', timeout_s=20))\n"
    )
    spec = RunSpec(
        workdir=work,
        command="true",
        eval_command=f"{sys.executable} evaluate.py",
        log_path=tmp_path / "run.log",
        eval_log_path=tmp_path / "eval.log",
        time_budget_s=10,
        timeout_s=30,
        eval_data_dirs=(data,),
        fixed_files={"evaluate.py": (work / "evaluate.py").read_bytes()},
    )
    run = LocalSandbox(mode).run(spec)  # type: ignore[arg-type]
    log = (tmp_path / "eval.log").read_text()
    assert run.ok, log
    if mode == "namespaces":
        assert "seen []" in log, log
    else:
        assert "'data'" in log, log


def test_gpu_binding_lists_only_the_slots_devices(tmp_path: Path) -> None:
    dev, driver = tmp_path / "dev", tmp_path / "gpus"
    dev.mkdir()
    for name in ("nvidia0", "nvidia1", "nvidia2", "nvidia3", "nvidiactl", "nvidia-uvm"):
        (dev / name).touch()
    # The driver's minors need not follow bus order: bus 0000:01 is minor 2, and so on.
    for bus, minor in (("0000:01:00.0", 2), ("0000:02:00.0", 0), ("0000:41:00.0", 3)):
        (driver / bus).mkdir(parents=True)
        (driver / bus / "information").write_text(f"Model: H200\nDevice Minor: {minor}\n")
    (driver / "0000:81:00.0").mkdir()
    (driver / "0000:81:00.0" / "information").write_text("Device Minor: 1\n")
    got = gpu_devices("0,2", dev, driver)
    assert got == (
        str(dev / "nvidia2"),
        str(dev / "nvidia3"),
        str(dev / "nvidiactl"),
        str(dev / "nvidia-uvm"),
    )
    assert gpu_devices(None, dev, driver) == ()
    assert gpu_devices("", dev, driver) == ()
    assert gpu_devices("7", dev, driver) == ()  # no such GPU: no node, and no shared ones
    with pytest.raises(ValueError, match="GPU-1234"):
        gpu_devices("GPU-1234", dev, driver)


def test_the_sandbox_is_gone_when_the_driver_is_killed(tmp_path: Path) -> None:
    """A driver killed with SIGKILL (no cleanup ran) takes its runs with it."""
    flag = tmp_path / "alive"
    driver = tmp_path / "driver.py"
    driver.write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            from autoresearch.execution import LocalSandbox, RunSpec
            cmd = "while true; do date +%s%N > {flag}; sleep 0.1; done"
            LocalSandbox("namespaces").run(RunSpec(workdir=Path("{tmp_path}"), command=cmd,
                log_path=Path("{tmp_path / "log"}"), time_budget_s=60, timeout_s=60))
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(driver)])
    deadline = time.monotonic() + 20
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert flag.exists(), "the run never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    flag.unlink(missing_ok=True)
    time.sleep(0.5)
    assert not flag.exists(), "the run outlived its driver"
    # Nor does its network stack (network = true, the default) outlive the namespace.
    deadline = time.monotonic() + 10
    while _pastas_for(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _pastas_for(tmp_path)


def _pastas_for(tmp_path: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-a", "pasta"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "autoresearch-launch" in line]


@pytest.mark.parametrize("mode", MODES)
def test_network_true_cannot_reach_the_hosts_other_addresses(tmp_path: Path, mode: str) -> None:
    """Through pasta, any address of the host (a bridge, a VPN, one on lo) would lead to its
    services bound to 0.0.0.0: in namespaces each is unreachable."""
    if network_stack_unavailable() is not None or os.geteuid() != 0:
        pytest.skip("needs pasta, and root to add an address to lo for the test")
    address = "10.99.173.1"
    subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True)
    srv = socket.socket()
    try:
        srv.bind(("0.0.0.0", 0))
        srv.listen(4)
        port = srv.getsockname()[1]
        code = f"""
        import socket
        try:
            socket.create_connection(("{address}", {port}), timeout=3)
            print("REACHED THE HOST")
        except OSError as e:
            print("blocked:", e)
        """
        _, log = _run(tmp_path, mode, code, network=True)
    finally:
        srv.close()
        subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", "lo"], check=False)
    if mode == "namespaces":
        assert "REACHED THE HOST" not in log and "blocked:" in log, log
    else:
        assert "REACHED THE HOST" in log, log


@pytest.mark.parametrize("mode", MODES)
def test_the_sandbox_root_is_read_only(tmp_path: Path, mode: str) -> None:
    """Writes go to the run's folder, /tmp or /dev/shm (each limited), never to an unbounded
    tmpfs root or the machine's /."""
    target = tmp_path / "outside-the-folder"
    _, log = _run(
        tmp_path,
        mode,
        f"""
        for p in ("/fill", "/dev/fill", "{target}"):
            try:
                open(p, "wb").write(b"x" * (2 << 20))
                print("WROTE", p)
            except OSError as e:
                print("refused", p, e.strerror)
        """,
    )
    if mode == "namespaces":
        # (That path is under /tmp: the write lands in the sandbox's own /tmp, gone with it.)
        assert "WROTE /fill" not in log and "WROTE /dev/fill" not in log, log
        assert not target.exists()
    else:
        assert target.exists(), log


def test_an_interpreter_under_tmp_is_not_hidden_by_the_sandboxs_tmp(tmp_path: Path) -> None:
    """A checkout (its venv, its editable package) under /tmp: the sandbox's own /tmp must not
    cover it. Here a venv made under the test's temp folder runs a command in namespaces."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # This project's packages and source, the way an install under /tmp would have them.
    site = next(venv.glob("lib/python*/site-packages"))
    here = [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)]
    root = Path(__file__).resolve().parents[2]
    (site / "project.pth").write_text("\n".join([*here, str(root)]) + "\n")
    code = (
        "import sys\n"
        "from autoresearch.execution import LocalSandbox, RunSpec\n"
        "from pathlib import Path\n"
        "w = Path(sys.argv[1]); w.mkdir()\n"
        "r = LocalSandbox('namespaces').run(RunSpec(workdir=w, command='python -c \"import "
        "sys, autoresearch; print(sys.prefix)\"', log_path=w.parent / 'l.log', "
        "time_budget_s=20, timeout_s=30))\n"
        "print(r.ok, (w.parent / 'l.log').read_text())\n"
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code, str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.startswith("True") and str(venv) in out.stdout, out.stdout + out.stderr

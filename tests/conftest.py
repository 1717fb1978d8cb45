from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoresearch import Candidate, Edit, ExperimentRecord, Ledger
from autoresearch.testing import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def namespaces() -> None:
    """The test needs the candidate's namespaces (bubblewrap). Skipped where this machine
    cannot make them, but under CI (``CI=true``, whose setup installs bubblewrap) a missing
    sandbox fails the test: the hostile suite never passes by skipping."""
    from autoresearch.execution import isolation_unavailable

    why = isolation_unavailable()
    if why is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true but the sandbox cannot isolate: {why}")
    pytest.skip(f"no namespaces here: {why}")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
def chromium() -> Iterator[object]:
    """A headless Chromium driven by selenium (Debian's ``chromium`` and ``chromium-driver``:
    a browser download does not work here). Skipped where they are missing, but under CI
    (``CI=true``, whose setup installs them) a missing browser fails the test."""
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    why = None
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        why = "selenium is not installed (pip install -e '.[dev]')"
    if why is None and (browser is None or driver is None):
        why = "no chromium/chromedriver (apt-get install chromium chromium-driver)"
    if why is not None:
        if in_ci():
            pytest.fail(f"CI=true but the browser test cannot run: {why}")
        pytest.skip(why)
    options = webdriver.ChromeOptions()
    options.binary_location = str(browser)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1400",
    ):
        options.add_argument(arg)
    web = webdriver.Chrome(service=Service(str(driver)), options=options)
    try:
        yield web
    finally:
        web.quit()


@pytest.fixture(params=["namespaces", "none"])
def isolation(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs twice: in namespaces (the ``namespaces`` fixture decides
    whether it can) and unisolated (the control, or the layer beneath)."""
    if request.param == "namespaces":
        request.getfixturevalue("namespaces")
    return str(request.param)


def path_without_bwrap(tmp_path: Path) -> str:
    """A PATH with every program of this one but bubblewrap: a driver started with it runs
    its candidates unisolated (as on a machine without the package)."""
    bin_dir = tmp_path / "bin-without-bwrap"
    bin_dir.mkdir(exist_ok=True)
    for folder in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            target, src = bin_dir / name, os.path.join(folder, name)
            usable = os.path.isfile(src) and os.access(src, os.X_OK)
            if name != "bwrap" and not target.exists() and usable:
                target.symlink_to(src)
    return str(bin_dir)


@pytest.fixture(autouse=True)
def _isolated_caches(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests never write caches outside their temp folders.
    cache = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("AUTORESEARCH_CACHE_DIR", str(cache))


# The LLM proposer tests' fake endpoint and key (no test reaches a real endpoint).
LLM_MODEL = "fake-model"
LLM_KEY = "sk-test-0123456789abcdefghijklmnop"
LLM_KEY_ENV = "TEST_LLM_KEY"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    """The scripted OpenAI-compatible server on loopback."""
    with FakeOpenAIServer(model=LLM_MODEL) as s:
        yield s


@pytest.fixture(autouse=True)
def _llm_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LLM_KEY_ENV, LLM_KEY)


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    from autoresearch.testing import make_toy_domain

    return make_toy_domain(tmp_path / "toy", git=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # get_closest_marker, not keywords: a parametrize id like "[gpu]" is a keyword too.
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    has_cuda = False
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        pass
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; this machine has none")
    for item in items:
        if item.get_closest_marker("gpu") and not has_cuda:
            item.add_marker(skip_gpu)


def git(cwd: Path, *args: str) -> str:
    """Run git in a test repository (with an identity, whatever the machine's config)."""
    cmd = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True).stdout


def commit_all(cwd: Path, msg: str) -> None:
    git(cwd, "add", "-A")
    git(cwd, "commit", "-qm", msg)


@contextlib.contextmanager
def open_ledger(domain: Path) -> Iterator[Ledger]:
    """The ledger of a domain folder, closed afterwards."""
    led = Ledger(domain / ".autoresearch" / "ledger.sqlite")
    try:
        yield led
    finally:
        led.close()


def ledger_records(domain: Path, tag: str | None = None) -> list[ExperimentRecord]:
    """The ledger's records of ``tag`` (default: the latest run) in a domain folder."""
    with open_ledger(domain) as led:
        tag = tag or led.latest_tag()
        assert tag is not None, "no run recorded"
        return led.records(tag)


def set_x(value: float, desc: str = "") -> Candidate:
    """A toy candidate that sets X (from the toy's 0.0) to ``value``."""
    return Candidate(
        desc or f"X={value}", (Edit("params.py", search="X = 0.0", replace=f"X = {value}"),)
    )


def pids_alive(marker: str) -> list[int]:
    """Pids whose command line contains ``marker`` (for checking that nothing is left)."""
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ")
                state = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if marker.encode() in cmd and state != "Z":
                out.append(int(entry.name))
    return out

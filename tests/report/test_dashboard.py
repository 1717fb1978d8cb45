"""The dashboard: read-only, loopback-only by default (a token beyond it), candidate text as
data; and in a real headless Chromium, a toy run's new rows appear without a reload."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from conftest import set_x
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from autoresearch import Candidate, Edit, Loop
from autoresearch.cli import app as cli
from autoresearch.execution import RunSpec
from autoresearch.report._dashboard import Background, create_app
from autoresearch.testing import FakeSandbox, Scripted, make_toy_domain, toy_run

SCRIPT_LINE = "<script>window.__pwned = 1</script>"


def hostile_toy(spec: RunSpec) -> str:
    """The toy's output with a line a hostile candidate might print."""
    out = toy_run(spec)
    assert isinstance(out, str)
    return f"{SCRIPT_LINE}\n<img src=x onerror=window.__pwned=2>\n{out}"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    toy = make_toy_domain(tmp_path_factory.mktemp("dash") / "toy", git=True)
    script = [set_x(3.0, "X to 3 <b>x</b>"), set_x(-4.0)]
    Loop.from_dir(toy, proposer=Scripted(script), tag="d", sandbox=FakeSandbox(hostile_toy)).run(
        max_experiments=3
    )
    return toy


def test_state_and_experiment_views(finished: Path) -> None:
    client = TestClient(create_app(finished), base_url="http://127.0.0.1:8765")
    state = client.get("/api/state").json()
    assert state["title"] == "3 Experiments, 1 Kept Improvement"
    assert [r["status"] for r in state["rows"]] == ["keep", "keep", "invalid"]
    assert state["rows"][1]["description"] == "X to 3 <b>x</b>"  # data, as JSON
    detail = client.get(f"/api/experiments/{state['rows'][1]['id']}").json()
    assert detail["diff"].startswith("diff --git") and "+X = 3.0" in detail["diff"]
    assert SCRIPT_LINE in detail["log_tail"]
    png = client.get("/api/progress.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    page = client.get("/")
    assert "nonce-" in page.headers["content-security-policy"]
    assert "script-src 'nonce-" in page.headers["content-security-policy"]
    assert "innerHTML" not in page.text  # every text goes in through textContent
    assert client.get("/api/experiments/9999").status_code == 404


def test_it_is_read_only_and_answers_loopback_names_only(finished: Path) -> None:
    client = TestClient(create_app(finished), base_url="http://127.0.0.1:8765")
    for method in ("post", "put", "delete", "patch"):
        assert getattr(client, method)("/api/state").status_code == 405
    # A page on another name (DNS rebinding) gets nothing.
    evil = TestClient(create_app(finished), base_url="http://evil.example:8765")
    assert evil.get("/api/state").status_code == 403
    assert TestClient(create_app(finished), base_url="http://localhost").get("/").status_code == 200


def test_beyond_loopback_every_request_needs_the_token(finished: Path) -> None:
    client = TestClient(create_app(finished, token="s3cret"), base_url="http://10.0.0.5:8765")
    assert client.get("/").status_code == 401
    assert client.get("/api/state?token=wrong").status_code == 401
    assert client.get("/?token=s3cret").status_code == 200
    ok = client.get("/api/state", headers={"X-Autoresearch-Token": "s3cret"})
    assert ok.status_code == 200 and ok.json()["tag"] == "d"


def test_binding_beyond_loopback_needs_the_flag(finished: Path) -> None:
    out = CliRunner().invoke(cli, ["dashboard", str(finished), "--host", "0.0.0.0"])
    assert out.exit_code == 2 and "--allow-remote" in out.output


@pytest.mark.slow
def test_a_browser_sees_rows_appear_without_a_reload(tmp_path: Path, chromium: object) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    web = chromium
    toy = make_toy_domain(tmp_path / "toy", git=True)
    release, started = threading.Event(), threading.Event()
    calls: list[int] = []

    def handler(spec: RunSpec) -> str:
        calls.append(1)
        if len(calls) == 3:  # the second candidate: in flight until the test lets it go
            spec.log_path.write_text(f"step 1\n{SCRIPT_LINE}\n")
            started.set()
            assert release.wait(120), "the test never released the run"
        return hostile_toy(spec)

    script = [
        set_x(3.0, "X to 3"),
        Candidate("set Y", (Edit("params.py", search="Y = 0.0", replace="Y = 1.0"),)),
        Candidate("Y too far", (Edit("params.py", search="Y = 1.0", replace="Y = 4.0"),)),
    ]
    loop = Loop.from_dir(toy, proposer=Scripted(script), tag="b", sandbox=FakeSandbox(handler))
    runner = threading.Thread(target=loop.run, kwargs={"max_experiments": 4}, daemon=True)
    runner.start()
    server = None
    try:
        assert started.wait(60), "the run never reached its second candidate"
        server = Background(create_app(toy, "b"))
        web.get(server.url)  # type: ignore[attr-defined]
        wait = WebDriverWait(web, 60)
        # The in-flight experiment and its live log, shown as text.
        wait.until(lambda d: "step 1" in d.find_element(By.ID, "inflight").text)
        assert SCRIPT_LINE in web.find_element(By.ID, "inflight").text  # type: ignore[attr-defined]
        assert web.find_element(By.ID, "exp-3").text.split()[2] == "running"  # type: ignore[attr-defined]
        assert not web.find_elements(By.ID, "exp-4")  # type: ignore[attr-defined]
        web.execute_script("window.__same_page = 42")  # type: ignore[attr-defined]
        release.set()
        wait.until(lambda d: d.find_elements(By.ID, "exp-4"))
        wait.until(lambda d: "4 Experiments" in d.find_element(By.ID, "title").text)
        assert "keep" in web.find_element(By.ID, "exp-3").text  # type: ignore[attr-defined]
        assert web.execute_script("return window.__same_page") == 42  # type: ignore[attr-defined]
        # A log line holding <script> renders as text and runs nothing.
        web.find_element(By.ID, "exp-2").click()  # type: ignore[attr-defined]
        wait.until(lambda d: SCRIPT_LINE in d.find_element(By.ID, "log").text)
        assert "+X = 3.0" in web.find_element(By.ID, "diff").text  # type: ignore[attr-defined]
        assert web.execute_script("return window.__pwned") is None  # type: ignore[attr-defined]
        scripts = web.execute_script(  # type: ignore[attr-defined]
            "return [...document.scripts].filter(s => s.textContent.includes('__pwned')).length"
        )
        assert scripts == 0
        shot = tmp_path / "dashboard.png"
        assert web.save_screenshot(str(shot))  # type: ignore[attr-defined]
        assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000
    finally:
        release.set()
        runner.join(60)
        if server is not None:
            server.stop()

"""A candidate (and the proposer that wrote it) against the result views: `report`
(progress.png, report.md, report.html), the dashboard, `confirm` and MLflow tracking.

Everything a candidate controls is hostile here: its description and hypothesis, what its run
prints, when it fails. Each test drives a real toy run (Scripted proposer, FakeSandbox) and
asserts the safe behaviour."""

from __future__ import annotations

import hashlib
import html.parser
import os
import random
import re
from pathlib import Path

import pytest
from conftest import set_x

from autoresearch import Candidate, Edit, Loop
from autoresearch._layout import Layout
from autoresearch._ledger import Ledger
from autoresearch.execution import RunSpec
from autoresearch.testing import FakeRun, FakeSandbox, Scripted, make_toy_domain, toy_score

fastapi = pytest.importorskip("fastapi", reason="the dashboard extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from autoresearch.report import write_report_files  # noqa: E402
from autoresearch.report._confirm import confirm  # noqa: E402
from autoresearch.report._dashboard import create_app  # noqa: E402

MATHTEXT = r"$\undefinedmacro{x}$ tuned"
MD_FORGE = r"tiny tweak\| 0.5 \| +99 ± 0.01 \| 99 \| deadbee"
MD_LINKS = "see [the notes](https://evil.example/phish) ![](https://evil.example/beacon.png)"
HTML_BAIT = "<img src=x onerror=alert(1)><script>alert(2)</script>\"'&"


def set_y(value: float, desc: str) -> Candidate:
    return Candidate(desc, (Edit("params.py", search="Y = 0.0", replace=f"Y = {value}"),))


def toy(tmp_path: Path, script: list[Candidate], handler=None, tag: str = "t", **kw) -> Path:  # type: ignore[no-untyped-def]
    domain = make_toy_domain(tmp_path / "toy", git=True)
    Loop.from_dir(
        domain, proposer=Scripted(script), tag=tag, sandbox=FakeSandbox(handler), **kw
    ).run(max_experiments=len(script) + 1)
    return domain


def _constants(spec: RunSpec) -> tuple[dict[str, float], str]:
    text = (spec.workdir / "params.py").read_text()
    ns: dict[str, float] = {}
    for line in text.splitlines():
        if line[:1] in "XY" and "=" in line:
            ns[line[0]] = float(line.split("=")[1].split("#")[0])
    return ns, text


def noise_of(spec: RunSpec) -> float:
    """A unit Gaussian seeded by the run's seed and the candidate's bytes (what the candidate
    itself can compute: it reads its seed and its own file)."""
    _, text = _constants(spec)
    digest = hashlib.sha256(f"{spec.seed}:{text}".encode()).hexdigest()
    return random.Random(digest).gauss(0, 1)


def noisy(spec: RunSpec) -> str:
    ns, _ = _constants(spec)
    return f"---\nscore: {toy_score(ns['X'], ns['Y']) + noise_of(spec):.6f}\n"


def comment(i: int) -> Candidate:
    return Candidate(
        f"comment {i}",
        (Edit("params.py", search="# first coordinate", replace=f"# first coordinate ({i})"),),
    )


# -- report: progress.png ------------------------------------------------------------------
def test_mathtext_in_a_kept_description_does_not_break_the_report(tmp_path: Path) -> None:
    # matplotlib parses "$...$" in a Text as mathtext: an unknown macro raises at draw time.
    domain = toy(tmp_path, [set_x(3.0, MATHTEXT)])
    paths = write_report_files(domain)
    assert [p.name for p in paths] == ["progress.png", "report.md", "report.html"]
    # ... and the label is the text as written, not a formula.
    from autoresearch.report._data import report_data
    from autoresearch.report._progress import progress_figure

    fig = progress_figure(report_data(domain))
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert MATHTEXT in labels


def test_mathtext_does_not_break_the_dashboards_picture(tmp_path: Path) -> None:
    domain = toy(tmp_path, [set_x(3.0, MATHTEXT)])
    client = TestClient(create_app(domain), base_url="http://127.0.0.1:8765")
    png = client.get("/api/progress.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


# -- report: report.md ---------------------------------------------------------------------
def _rendered_kept_rows(md: str) -> list[list[str]]:
    """The kept-changes table's body rows as a CommonMark+tables renderer (markdown-it, the
    parser behind rich and mkdocs-material's previews) splits them into cells."""
    from markdown_it import MarkdownIt

    page = MarkdownIt("commonmark").enable("table").render(md)
    kept = page.split("<h2>Kept changes</h2>", 1)[1].split("</table>", 1)[0]
    body = kept.split("<tbody>", 1)[1]
    return [re.findall(r"(?s)<td>(.*?)</td>", row) for row in body.split("</tr>")[:-1]]


def test_a_description_cannot_forge_cells_of_the_kept_table(tmp_path: Path) -> None:
    # The cells a description would forge: value, delta, runs, commit. Pipes are escaped as
    # "\|", so "\|" in the text becomes "\\|" (in a renderer that reads "\\" as an escaped
    # backslash first, e.g. pandoc, that pipe is live; GFM and markdown-it keep it escaped).
    domain = toy(tmp_path, [set_x(3.0, MD_FORGE)])
    write_report_files(domain)
    md = (Layout(domain).tag_dir("t") / "report.md").read_text()
    rows = _rendered_kept_rows(md)
    assert rows, md
    for cells in rows:
        assert len(cells) == 6, cells  # #, description, value, delta, runs, commit
        assert "deadbee" not in cells[5] and "+99" not in cells[3], cells


def test_a_description_makes_no_link_or_remote_image_in_report_md(tmp_path: Path) -> None:
    from markdown_it import MarkdownIt

    domain = toy(tmp_path, [set_x(3.0, MD_LINKS), set_y(1.0, HTML_BAIT)])
    write_report_files(domain)
    md = (Layout(domain).tag_dir("t") / "report.md").read_text()
    rendered = MarkdownIt("commonmark").enable("table").render(md)
    assert "<a " not in rendered, rendered
    images = re.findall(r"<img [^>]*>", rendered)
    assert images == ['<img src="progress.png" alt="progress" />'], images
    assert "<script" not in rendered and "onerror" not in re.sub(r"&lt;.*?&gt;", "", rendered)


# -- report: report.html -------------------------------------------------------------------
class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def test_report_html_holds_no_markup_a_candidate_wrote(tmp_path: Path) -> None:
    domain = toy(tmp_path, [set_x(3.0, HTML_BAIT), set_y(1.0, MD_LINKS)])
    write_report_files(domain)
    page = (Layout(domain).tag_dir("t") / "report.html").read_text()
    parser = _Tags()
    parser.feed(page)
    allowed = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "img"}
    allowed |= {"table", "thead", "tbody", "tr", "th", "td", "details", "summary", "pre"}
    assert {t for t, _ in parser.tags} <= allowed
    for tag, attrs in parser.tags:
        for name, value in attrs:
            assert not name.startswith("on"), (tag, attrs)
            if tag == "img":
                assert name == "alt" or (value or "").startswith("data:image/png;base64,")
    assert "default-src 'none'" in page  # its CSP: nothing loads, nothing runs


# -- dashboard -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    def loud(spec: RunSpec) -> str:
        out = noisy(spec)
        return f"{HTML_BAIT}\n</pre><script>alert(3)</script>\n{out}"

    base = tmp_path_factory.mktemp("dash")
    return toy(base, [set_x(3.0, HTML_BAIT), set_y(1.0, MD_FORGE)], handler=loud, tag="d")


ROUTES = ("/", "/api/state", "/api/progress.png", "/api/experiments/1", "/docs", "/nope")


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8765",
        "127.0.0.1.evil.example:8765",
        "localhost.evil.example",
        "LOCALHOST.evil.example",
        "[::1].evil.example",
        "",
    ],
)
def test_a_rebinding_name_gets_nothing_on_any_route(finished: Path, host: str) -> None:
    client = TestClient(create_app(finished), base_url="http://127.0.0.1:8765")
    for route in ROUTES:
        got = client.get(route, headers={"host": host})
        assert got.status_code == 403, (host, route, got.status_code)
        assert "<script" not in got.text and "alert" not in got.text


def test_with_a_token_every_route_needs_it(finished: Path) -> None:
    client = TestClient(create_app(finished, token="s3cret"), base_url="http://10.0.0.5:8765")
    for route in ROUTES:
        for extra in ({}, {"X-Autoresearch-Token": "s3cre"}, {"X-Autoresearch-Token": ""}):
            got = client.get(route, headers=extra)
            assert got.status_code == 401, (route, extra, got.status_code)
        assert (
            client.get(route + ("&" if "?" in route else "?") + "token=S3CRET").status_code == 401
        )
    # The page, once given the token, asks for everything with it (the picture too).
    page = client.get("/?token=s3cret")
    assert page.status_code == 200
    assert '"X-Autoresearch-Token": token' in page.text and "&token=" in page.text


@pytest.mark.parametrize(
    "route",
    [
        "/api/experiments/..%2f..%2f..%2fetc%2fpasswd",
        "/api/experiments/%2e%2e/%2e%2e/etc/passwd",
        "/api/experiments/1%2f..%2f..%2fledger.sqlite",
        "/api/experiments/1%00",
        "/api/experiments/-1",
        "/api/experiments/99999999999999999999999",
        "/api/progress.png/../../../../etc/passwd",
        "/..%2f..%2fetc%2fpasswd",
    ],
)
def test_no_route_reads_a_path_it_is_given(finished: Path, route: str) -> None:
    client = TestClient(
        create_app(finished), base_url="http://127.0.0.1:8765", raise_server_exceptions=False
    )
    got = client.get(route)
    assert got.status_code in (404, 405, 422), (route, got.status_code)
    assert "root:" not in got.text and "SQLite" not in got.text
    assert got.headers["content-type"].startswith("application/json")
    assert got.headers["x-content-type-options"] == "nosniff"


def test_candidate_text_reaches_the_page_only_as_json(finished: Path) -> None:
    client = TestClient(create_app(finished), base_url="http://127.0.0.1:8765")
    state = client.get("/api/state")
    assert state.headers["content-type"] == "application/json"
    assert HTML_BAIT in [r["description"] for r in state.json()["rows"]]
    for row in state.json()["rows"]:
        got = client.get(f"/api/experiments/{row['id']}")
        assert got.headers["content-type"] == "application/json"
    page = client.get("/")
    assert "innerHTML" not in page.text and "insertAdjacentHTML" not in page.text
    assert "document.write" not in page.text and "eval(" not in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    # the page itself is the same bytes whatever the run holds (nothing is reflected)
    assert HTML_BAIT not in page.text and "alert" not in page.text


def test_a_huge_log_is_read_only_at_its_end(tmp_path: Path) -> None:
    domain = toy(tmp_path, [set_x(3.0, "X to 3")])
    with _ro(domain) as led:
        rec = led.history("t")[-1]
    assert rec.log_path
    # A sparse 8 GiB log (a run that printed without end): reading it whole would take the
    # server's memory; its end is all the page shows.
    with open(rec.log_path, "r+b") as f:
        f.seek(8 << 30)
        f.write(b"\nTHE-END-MARKER\n")
    try:
        client = TestClient(create_app(domain), base_url="http://127.0.0.1:8765")
        got = client.get(f"/api/experiments/{rec.id}")
        assert got.status_code == 200
        tail = got.json()["log_tail"]
        assert "THE-END-MARKER" in tail and len(tail) <= 10_000
        # `report` reads no log at all
        write_report_files(domain)
    finally:
        os.truncate(rec.log_path, 0)


def test_a_huge_description_is_cut_before_any_view(tmp_path: Path) -> None:
    huge = "A" * (3 << 20)
    domain = toy(tmp_path, [set_x(3.0, huge)])
    client = TestClient(create_app(domain), base_url="http://127.0.0.1:8765")
    state = client.get("/api/state").json()
    assert max(len(r["description"]) for r in state["rows"]) <= 2_000
    paths = write_report_files(domain)
    assert paths[2].stat().st_size < 1 << 20


# -- confirm -------------------------------------------------------------------------------
class LlmLike(Scripted):
    """Candidates the user did not write (as an LLM's are), replayed from a list."""

    name = "llm"


def test_confirm_refuses_unisolated_code_a_proposer_wrote_when_the_toml_has_knobs(
    tmp_path: Path,
) -> None:
    # The run was driven by an LLM (`run --proposer llm`, or Loop(proposer=...)), in an
    # isolated sandbox; the domain's toml names no proposer but has knobs (as every shipped
    # domain does). The best commit is the LLM's code: confirm must not run it unisolated.
    from autoresearch._errors import IsolationError

    domain = make_toy_domain(tmp_path / "toy", git=True)
    Loop.from_dir(
        domain, proposer=LlmLike([set_x(3.0, "X to 3")]), tag="t", sandbox=FakeSandbox()
    ).run(max_experiments=2)
    with _ro(domain) as led:
        assert led.history("t")[-1].proposer == "llm"
    unisolated = FakeSandbox(isolated=False)
    with pytest.raises(IsolationError):
        confirm(domain, runs=2, sandbox=unisolated)
    assert unisolated.specs == []  # nothing of the candidate ran


def test_a_best_that_fails_its_unlucky_runs_is_not_confirmed(tmp_path: Path) -> None:
    # A null change (a comment), kept on a lucky draw. In confirm, the candidate computes its
    # own noise (it reads its seed; a real model can score itself on held-in data) and
    # crashes whenever the draw is unlucky. confirm drops a pair with a failed run, so only
    # the best's lucky runs are left: a "confirmed" null, unless a failure counts against it.
    domain = toy(tmp_path, [comment(i) for i in range(6)], handler=noisy, acceptance="greedy")
    with _ro(domain) as led:
        kept = [r for r in led.history("t")[1:] if r.status.value == "keep"]
    assert kept, "the seeded toy run keeps a lucky comment"

    def selective(spec: RunSpec) -> str | FakeRun:
        text = (spec.workdir / "params.py").read_text()
        is_candidate = "first coordinate (" in text
        if is_candidate and noise_of(spec) > -0.3:
            return FakeRun.crash("RuntimeError: CUDA error: an illegal memory access\n")
        return noisy(spec)

    try:
        result = confirm(domain, runs=24, sandbox=FakeSandbox(selective))
    except Exception as e:  # refusing to conclude is safe too
        assert "failed" in str(e)
        return
    assert not result.confirmed, (
        f"confirmed a null effect: effect {result.effect:+.3g} "
        f"[{result.ci_low:+.3g}, {result.ci_high:+.3g}] on {result.runs} pairs, "
        f"{result.failed_runs} failed runs dropped"
    )


def test_a_confirmation_of_an_earlier_best_is_not_shown_as_the_current_ones(
    tmp_path: Path,
) -> None:
    # confirm the best (X to 3: real, confirmed), resume, keep another change: report and
    # status must not show "confirmed" beside a best that no confirm ever measured.
    domain = toy(tmp_path, [set_x(3.0, "X to 3")], handler=noisy)
    first = confirm(domain, runs=4, sandbox=FakeSandbox(noisy))
    assert first.confirmed
    Loop.from_dir(
        domain,
        proposer=LlmLike([set_y(1.0, "Y to 1")]),
        tag="t",
        resume=True,
        sandbox=FakeSandbox(lambda s: "---\nscore: -50\n"),
    ).run(max_experiments=1)
    with _ro(domain) as led:
        best = [r for r in led.history("t") if r.status.value == "keep"][-1]
    assert best.commit is not None and best.description == "Y to 1"
    assert best.commit != first.best_commit
    write_report_files(domain)
    md = (Layout(domain).tag_dir("t") / "report.md").read_text()
    claims = [ln for ln in md.splitlines() if "confirmed," in ln and "not confirmed" not in ln]
    for line in claims:
        assert best.commit[:7] in line or first.best_commit[:7] in line, line
    from typer.testing import CliRunner

    from autoresearch.cli import app

    shown = CliRunner().invoke(app, ["status", str(domain)]).output
    for line in shown.splitlines():
        if "confirmed," in line and "not confirmed" not in line:
            assert first.best_commit[:7] in line or "earlier" in line, line


# -- MLflow --------------------------------------------------------------------------------
def test_hostile_text_and_figures_never_stop_tracking(tmp_path: Path) -> None:
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    from mlflow.tracking import MlflowClient

    from autoresearch import Event, Measurement
    from autoresearch.testing import FakeObjective

    class Figures(FakeObjective):
        def measure(self, run):  # type: ignore[no-untyped-def]
            m = super().measure(run)
            bad = {"a": float("nan"), "b": float("inf"), "c": -float("inf"), "d": 1e308}
            return Measurement(m.primary, bad, {"held": float("nan")})

    texts = [
        "x" * 5000,
        "nul \x00 and lone surrogate \ud800 and \u202e rtl",
        "tab\tand\x1b[31m escape " + "é" * 3000,
        "\u2028 " + "|" * 600,
        "' OR 1=1; --",
    ]
    script = [
        Candidate(
            t,
            (
                Edit(
                    "params.py",
                    search="X = 0.0" if i == 0 else f"X = {i - 1}.5",
                    replace=f"X = {i}.5",
                ),
            ),
            hypothesis=t * 2,
        )
        for i, t in enumerate(texts)
    ]
    events: list[Event] = []
    domain = make_toy_domain(tmp_path / "toy", git=True)
    Loop.from_dir(
        domain,
        proposer=Scripted(script),
        tag="ml",
        sandbox=FakeSandbox(),
        objective=Figures(),
        on_event=events.append,
        overrides={"tracking.mlflow": "local"},
    ).run(max_experiments=len(script) + 1)
    warnings = [e.message for e in events if e.kind == "message" and "tracking" in e.message]
    assert warnings == [], warnings
    client = MlflowClient(tracking_uri=f"sqlite:///{Layout(domain).mlflow_db}")
    exp = client.get_experiment_by_name("toy/ml")
    assert exp is not None
    assert len(client.search_runs([exp.experiment_id])) == len(script) + 1


class _ro:
    def __init__(self, domain: Path) -> None:
        self.led = Ledger.open_readonly(Layout(domain).ledger)

    def __enter__(self) -> Ledger:
        return self.led

    def __exit__(self, *exc: object) -> None:
        self.led.close()

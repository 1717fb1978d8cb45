"""`autoresearch dashboard`: a read-only live view of a run (FastAPI + uvicorn).

The page polls ``api/state`` and redraws what changed, with no reload: the plot, the table,
what is in flight (with its log's tail), and any experiment's diff and log on a click.
Every text a candidate or proposer wrote reaches the page as JSON and is set with
``textContent``, never parsed as HTML; the page's Content-Security-Policy allows only its own
nonce'd script besides. Only GET routes exist. Bound to loopback it checks the Host header
(a rebinding page cannot read it); beyond loopback every request needs the token.
"""

from __future__ import annotations

import hashlib
import secrets
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from autoresearch._errors import SessionError
from autoresearch._layout import Layout
from autoresearch._ledger import Ledger
from autoresearch.report._dashboard_page import PAGE
from autoresearch.report._data import Point, ReportData, report_data
from autoresearch.report._figures import confirm_text, figures_text
from autoresearch.report._progress import progress_png, title

# Characters of a log's end shown for an experiment (in flight or clicked).
LOG_TAIL_CHARS = 6000
# Characters of a diff sent to the page.
DIFF_CHARS = 50_000
# How often the page asks for the state (milliseconds).
POLL_MS = 1000
TOKEN_HEADER = "x-autoresearch-token"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def tail(path: Path, limit: int = LOG_TAIL_CHARS) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


class View:
    """Reads the run for the page: the latest tag unless one is named."""

    def __init__(self, domain: Path, tag: str | None) -> None:
        self.domain = domain.resolve()
        self.layout = Layout(self.domain)
        self.tag = tag
        self._lock = threading.Lock()
        self._png: tuple[str, bytes] | None = None

    def data(self) -> ReportData | None:
        if not self.layout.ledger.exists():
            return None
        try:
            return report_data(self.domain, self.tag)
        except SessionError:
            return None

    def _inside_state(self, path: Path) -> bool:
        try:
            return path.resolve().is_relative_to(self.layout.state_dir.resolve())
        except OSError:
            return False

    def live_log(self, data: ReportData, p: Point) -> str:
        """The newest log in an in-flight experiment's folder (the run now going)."""
        folder = self.layout.tag_dir(data.tag) / str(p.id)
        logs = [f for f in folder.glob("*.log") if f.is_file() and self._inside_state(f)]
        if not logs:
            return ""
        newest = max(logs, key=lambda f: f.stat().st_mtime)
        return tail(newest)

    def state(self) -> dict[str, Any]:
        data = self.data()
        if data is None:
            where = self.domain
            return {"version": "empty", "message": f"{where}: no runs recorded yet", "rows": []}
        rows = [_row(p) for p in data.points]
        running = [{**_row(p), "log_tail": self.live_log(data, p)} for p in data.running]
        st = data.status
        summary = figures_text({**st, "confirm": None})
        confirm = confirm_text(data.confirmation) if data.confirmation else ""
        kept = [
            {
                "index": k.index,
                "id": k.id,
                "description": k.description,
                "delta": k.delta,
                "se": k.se,
                "runs": k.runs,
                "commit": k.commit[:7],
            }
            for k in data.kept
        ]
        key = repr((rows, [r["log_tail"][-200:] for r in running], confirm, summary))
        return {
            "version": hashlib.sha256(key.encode()).hexdigest()[:16],
            "tag": data.tag,
            "metric": data.metric,
            "direction": data.direction,
            "title": title(data),
            "state": st["state"],
            "summary": summary,
            "confirm": confirm,
            "counts": {k: v for k, v in st["counts"].items() if v},
            "rows": rows,
            "kept": kept,
            "running": running,
        }

    def png(self) -> bytes:
        data = self.data()
        if data is None:
            return b""
        key = repr([_row(p) for p in data.points]) + repr(data.confirmation)
        with self._lock:
            if self._png is None or self._png[0] != key:
                self._png = (key, progress_png(data))
            return self._png[1]

    def experiment(self, experiment_id: int) -> dict[str, Any] | None:
        if not self.layout.ledger.exists() or not 0 <= experiment_id < 2**63:
            return None  # SQLite's integers end at 2**63 - 1
        ledger = Ledger.open_readonly(self.layout.ledger)
        try:
            try:
                r = ledger.record(experiment_id)
            except KeyError:
                return None
            if self.tag is not None and r.tag != self.tag:
                return None
            diff = ledger.diff(experiment_id)
        finally:
            ledger.close()
        log = ""
        if r.log_path and self._inside_state(Path(r.log_path)):
            log = tail(Path(r.log_path))
        return {
            "id": r.id,
            "status": r.status.value,
            "description": r.description,
            "reason": r.reason,
            "diff": diff[:DIFF_CHARS],
            "log_tail": log,
        }


def _row(p: Point) -> dict[str, Any]:
    return {
        "index": p.index,
        "id": p.id,
        "status": p.status,
        "kind": p.kind,
        "value": p.value,
        "se": p.se,
        "runs": p.runs,
        "description": p.description,
        "reason": p.reason,
        "commit": (p.commit or "")[:7],
    }


def create_app(domain: Path, tag: str | None = None, token: str | None = None) -> FastAPI:
    """The dashboard of ``domain`` (run ``tag``, default: the latest). With ``token``, every
    request must carry it (``?token=`` or the ``X-Autoresearch-Token`` header); without, only
    requests addressed to a loopback name are answered."""
    view = View(domain, tag)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Any]) -> Response:
        if token is None:
            host = (request.headers.get("host") or "").rsplit(":", 1)[0]
            if host not in LOOPBACK_HOSTS and not host.startswith("[::1]"):
                return JSONResponse({"error": "not a loopback host"}, status_code=403)
        else:
            given = request.query_params.get("token") or request.headers.get(TOKEN_HEADER, "")
            if not secrets.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"error": "a token is needed"}, status_code=401)
        response: Response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        csp = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'"
        )
        body = PAGE.replace("{{NONCE}}", nonce).replace("{{POLL_MS}}", str(POLL_MS))
        return HTMLResponse(body, headers={"Content-Security-Policy": csp})

    @app.get("/api/state")
    def state() -> JSONResponse:
        return JSONResponse(view.state())

    @app.get("/api/progress.png")
    def png() -> Response:
        body = view.png()
        if not body:
            raise HTTPException(404, "no runs recorded yet")
        return Response(body, media_type="image/png")

    @app.get("/api/experiments/{experiment_id}")
    def experiment(experiment_id: int) -> JSONResponse:
        found = view.experiment(experiment_id)
        if found is None:
            raise HTTPException(404, f"no experiment {experiment_id} in this run")
        return JSONResponse(found)

    return app


def _server(app: FastAPI, sock: socket.socket) -> Any:
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    return uvicorn.Server(config)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(128)
    return sock


def url_of(sock: socket.socket, host: str, token: str | None) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def serve(
    app: FastAPI,
    host: str,
    port: int,
    ready: Callable[[str], None],
    token: str | None = None,
) -> None:
    """Serve until Ctrl-C; ``ready`` gets the URL once the socket is bound."""
    sock = _bind(host, port)
    ready(url_of(sock, host, token))
    _server(app, sock).run(sockets=[sock])


class Background:
    """A dashboard served from a thread (tests, notebooks): ``url``, then ``stop()``."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", token: str | None = None) -> None:
        self._sock = _bind(host, 0)
        self.url = url_of(self._sock, host, token)
        self._server = _server(app, self._sock)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


__all__ = ["Background", "View", "create_app", "serve"]

"""The commands that show and check a run's results: `report`, `dashboard`, `confirm`; and
`run --mlflow [URI]` (an option whose value may be left out)."""

from __future__ import annotations

import ipaddress
import json
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text
from typer.core import TyperCommand

from autoresearch._errors import ConfigError, Interrupted, IsolationError, SessionError
from autoresearch._tracking import LOCAL
from autoresearch._types import Event
from autoresearch.cli._text import console, err
from autoresearch.cli._text import plain as _plain

EXIT_USAGE, EXIT_BUSY, EXIT_INTERRUPTED = 2, 3, 130
DEFAULT_PORT = 8765
MLFLOW_FLAG = "--mlflow"


class RunCommand(TyperCommand):
    """`run`, where ``--mlflow`` alone means the local store (``--mlflow URI``: a server or
    another store). Click has no optional-value option under typer, so a bare ``--mlflow``
    (last, or before another option) is read as ``--mlflow=local``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        out = []
        for i, arg in enumerate(args):
            nxt = args[i + 1] if i + 1 < len(args) else None
            if arg == MLFLOW_FLAG and (nxt is None or nxt.startswith("-")):
                out.append(f"{MLFLOW_FLAG}={LOCAL}")
            else:
                out.append(arg)
        return super().parse_args(ctx, out)


MLFLOW_HELP = (
    "Log every experiment to MLflow: alone, a local sqlite store under .autoresearch/; or a "
    "tracking URI (tracking.mlflow)."
)


def _fail(message: str, code: int) -> typer.Exit:
    err.print(Text.assemble(("error:", "red"), " ", _plain(message)))
    return typer.Exit(code)


def _existing(folder: Path) -> None:
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise _fail(f"{folder} {what}", EXIT_USAGE)


def report(
    target: Annotated[Path, typer.Argument(help="The domain folder.")],
    tag: Annotated[str | None, typer.Option(help="Which run (default: the latest).")] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder to write to (default: the run's, .autoresearch/runs/TAG)."),
    ] = None,
) -> None:
    """Draw the run as progress.png and write report.md and a self-contained report.html."""
    _existing(target)
    from autoresearch.report import write_report_files

    try:
        paths = write_report_files(target, tag, out)
    except (ConfigError, SessionError) as e:
        raise _fail(str(e), EXIT_USAGE) from None
    except ImportError as e:
        raise _fail(f"{e}: pip install 'autoresearch[dashboard]'", EXIT_USAGE) from None
    for path in paths:
        console.print(f"wrote {path}")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dashboard(
    target: Annotated[Path, typer.Argument(help="The domain folder.")],
    tag: Annotated[str | None, typer.Option(help="Which run (default: the latest).")] = None,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port (0: any free one).")
    ] = DEFAULT_PORT,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote",
            help="Allow a --host beyond loopback; the page then needs the printed token.",
        ),
    ] = False,
) -> None:
    """Serve a read-only live view of the run in a browser (loopback only by default)."""
    _existing(target)
    token = None
    if not _loopback(host):
        if not allow_remote:
            raise _fail(
                f"--host {host} is beyond loopback: anyone who reaches it could read the run's "
                "diffs and logs. Pass --allow-remote to do it (the page then needs a token)",
                EXIT_USAGE,
            )
        token = secrets.token_urlsafe(24)
    try:
        from autoresearch.report._dashboard import create_app, serve
    except ImportError as e:
        raise _fail(f"{e}: pip install 'autoresearch[dashboard]'", EXIT_USAGE) from None
    try:
        app = create_app(target, tag, token=token)
    except (ConfigError, SessionError) as e:
        raise _fail(str(e), EXIT_USAGE) from None

    def ready(url: str) -> None:
        console.print(f"dashboard of {target}: {url}  (read-only; Ctrl-C to stop)")
        if token:
            console.print(f"token (the page needs it): {token}")

    serve(app, host, port, ready, token)


def confirm(
    target: Annotated[Path, typer.Argument(help="The domain folder.")],
    tag: Annotated[str | None, typer.Option(help="Which run (default: the latest).")] = None,
    runs: Annotated[
        int, typer.Option(min=2, help="Runs of each commit (baseline and best, interleaved).")
    ] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    gpu_ids: Annotated[str | None, typer.Option(help="CUDA_VISIBLE_DEVICES for the runs.")] = None,
    unsafe_no_isolation: Annotated[
        bool,
        typer.Option(
            "--unsafe-no-isolation",
            help="Run a proposer's code even where candidates cannot be isolated.",
        ),
    ] = False,
) -> None:
    """Re-measure the best against the baseline on fresh seeds: how much of the gain is real."""
    _existing(target)
    from autoresearch.report._confirm import confirm as run_confirm

    def progress(event: Event) -> None:
        if event.kind == "message":
            err.print(Text.assemble(("·", "cyan"), " ", _plain(event.message)))

    try:
        result = run_confirm(
            target,
            tag,
            runs,
            gpu_ids=gpu_ids,
            unsafe_no_isolation=unsafe_no_isolation,
            on_event=progress,
        )
    except (ConfigError, IsolationError) as e:
        raise _fail(str(e), EXIT_USAGE) from None
    except SessionError as e:
        raise _fail(str(e), EXIT_BUSY) from None
    except (Interrupted, KeyboardInterrupt):
        err.print("interrupted: nothing recorded")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    data = result.as_dict()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    _print_confirm(data)


def _print_confirm(data: dict[str, Any]) -> None:
    from autoresearch.report import confirm_text

    claimed = data["claimed"]
    console.print(
        f"{_plain(data['metric'])} ({data['direction']}): baseline "
        f"{data['baseline_commit'][:7]} vs best {data['best_commit'][:7]}, "
        f"{data['runs']} runs each on fresh seeds"
    )
    claim = f"{claimed:+.6g}" if claimed is not None else "-"
    console.print(f"  claimed gain {claim} (improvement; positive is better)")
    console.print(f"  {_plain(confirm_text(data))}")
    console.print(f"  {_plain(data['note'])}")
    for arm in ("baseline", "best"):
        held = data["holdout"].get(arm) or {}
        if held:
            figures = ", ".join(f"{k} {v:.6g}" for k, v in held.items())
            console.print(f"  holdout, {arm}: {_plain(figures)}")


def register_report_commands(app: typer.Typer) -> None:
    """Add `report`, `dashboard` and `confirm` to the command line."""
    app.command()(report)
    app.command()(dashboard)
    app.command()(confirm)

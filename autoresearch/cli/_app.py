"""The ``autoresearch`` command line. Logic lives in the library; this maps flags to it.

Exit codes: 0 done; 1 an experiment setup failed (e.g. the baseline crashed); 2 bad usage or
config; 3 the folder is busy or its state forbids the request (lock held, tag exists,
uncommitted changes); 130 interrupted (Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from autoresearch._domains import bundled_domains, resolve_domain
from autoresearch._errors import (
    BaselineFailed,
    ConfigError,
    IsolationError,
    SessionError,
    WorkspaceError,
)
from autoresearch._git import find_repo_root
from autoresearch._init import (
    import_upstream_results,
    new_domain,
    templates,
    write_config,
    write_upstream_config,
)
from autoresearch._loop import Loop
from autoresearch._types import Event, Status
from autoresearch.report._status import diff_text, status_data

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

app = typer.Typer(
    help="Autonomous keep/revert research loops with a harness the proposer cannot edit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

_STATUS_STYLE = {
    "keep": "green",
    "discard": "dim",
    "crash": "red",
    "timeout": "red",
    "oom": "red",
    "invalid": "yellow",
    "gate_failed": "magenta",
    "interrupted": "yellow",
}


def _fail(message: str, code: int) -> typer.Exit:
    # Escaped: messages name config tables like [proposer.llm], which rich would eat as markup.
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Errors a user can meet, as a message and an exit code (see the module docstring)."""
    try:
        yield
    except (ConfigError, IsolationError) as e:
        raise _fail(str(e), EXIT_USAGE) from None
    except (SessionError, WorkspaceError) as e:
        raise _fail(str(e), EXIT_BUSY) from None
    except BaselineFailed as e:
        raise _fail(str(e), EXIT_FAILED) from None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


class _Printer:
    """One line per experiment (id, status, metric, best so far, elapsed), with a progress
    bar when the run has an experiment budget."""

    def __init__(self, metric: str, total: int | None, max_hours: float | None = None) -> None:
        self.metric = metric
        self.total = total
        self.done = 0
        # A bar only on a terminal (rich draws nothing otherwise): by experiments, else by time.
        self.bar: Progress | None = None
        if total or max_hours:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
            unit = "experiments" if total else "time budget"
            self._task = self.bar.add_task(unit, total=total or (max_hours or 0) * 3600)

    def __enter__(self) -> _Printer:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, event: Event) -> None:
        if event.kind != "experiment" or event.record is None:
            console.print(f"[cyan]·[/cyan] {escape(event.message)}")
            return
        r = event.record
        self.done += 1
        if self.bar is not None:
            self.bar.update(self._task, completed=self.done if self.total else event.elapsed_s)
        style = _STATUS_STYLE.get(r.status.value, "")
        minutes, seconds = divmod(int(event.elapsed_s), 60)
        progress = f"[{self.done}/{self.total}] " if self.total else ""
        why = escape(r.reason)
        reason = f" [dim]({why})[/dim]" if r.status is not Status.KEEP and r.reason else ""
        console.print(
            f"{progress}#{r.id:<4} [{style}]{r.status.value:<11}[/{style}] "
            f"{self.metric} {_fmt(r.value):<10} best {_fmt(event.best_value):<10} "
            f"{minutes:02d}:{seconds:02d}  {escape(r.description[:70])}{reason}"
        )


@app.command()
def run(
    target: Annotated[
        str, typer.Argument(help="A folder with an autoresearch.toml, or a bundled domain's name.")
    ],
    preset: Annotated[
        str | None, typer.Option(help="Named preset from the config ([presets.NAME]).")
    ] = None,
    proposer: Annotated[
        str | None, typer.Option(help="knob, scripted, llm or agent (default: the config's).")
    ] = None,
    script: Annotated[
        Path | None, typer.Option(help="JSONL file for the scripted proposer.")
    ] = None,
    max_experiments: Annotated[
        int | None, typer.Option(min=1, help="Stop after N experiments (the baseline counts).")
    ] = None,
    max_hours: Annotated[
        float | None, typer.Option(min=0, help="Stop before this many hours have passed.")
    ] = None,
    tag: Annotated[
        str | None,
        typer.Option(help="Run tag; the branch is autoresearch/<tag> (default: from the date)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue a stopped run (the latest, or --tag).")
    ] = False,
    acceptance: Annotated[
        str | None, typer.Option(help="Acceptance policy (overrides acceptance.policy).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="llm: model name.")] = None,
    base_url: Annotated[str | None, typer.Option(help="llm: OpenAI-compatible endpoint.")] = None,
    local_model: Annotated[
        str | None, typer.Option(help="llm: start a local server: smollm2, PATH.gguf or vllm:NAME.")
    ] = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="llm: environment variable holding the API key.")
    ] = None,
    max_cost_usd: Annotated[
        float | None, typer.Option(min=0, help="Stop before LLM spend exceeds this (USD).")
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option(min=1, help="Stop before LLM tokens exceed this.")
    ] = None,
    gpu_ids: Annotated[str | None, typer.Option(help="CUDA_VISIBLE_DEVICES for the runs.")] = None,
    workdir: Annotated[
        Path | None, typer.Option(help="Where a bundled domain is copied (default ./NAME).")
    ] = None,
    unsafe_no_isolation: Annotated[
        bool,
        typer.Option(
            "--unsafe-no-isolation",
            help="Run llm, agent or third-party proposers' candidates even where they cannot "
            "be isolated (no bubblewrap): they can then read your keys, files and ledger.",
        ),
    ] = False,
) -> None:
    """Run the research loop on TARGET until a budget ends or Ctrl-C."""
    with _user_errors():
        domain, note = resolve_domain(target, workdir)
        if note:
            console.print(f"[cyan]·[/cyan] {note}")
        printer = _Printer("value", max_experiments, max_hours)
        loop = Loop.from_dir(
            domain,
            preset=preset,
            proposer=proposer,
            script=str(script) if script else None,
            tag=tag,
            resume=resume,
            acceptance=acceptance,
            model=model,
            base_url=base_url,
            local_model=local_model,
            api_key_env=api_key_env,
            gpu_ids=gpu_ids,
            on_event=printer,
            unsafe_no_isolation=unsafe_no_isolation,
        )
        printer.metric = loop.config.objective.metric or "value"
        console.print(
            f"[bold]autoresearch[/bold] {domain.name}: {printer.metric} "
            f"({loop.config.objective.direction}), preset {loop.preset or '-'}, "
            f"acceptance {loop.acceptance.name}, budget {loop.config.time_budget_s:g} s/experiment"
        )
        with printer:
            summary = loop.run(
                max_experiments=max_experiments,
                max_hours=max_hours,
                max_cost_usd=max_cost_usd,
                max_tokens=max_tokens,
            )
    counts = ", ".join(f"{n} {s}" for s, n in summary.counts.items() if n)
    console.print(
        f"[bold]{summary.tag}[/bold]: {summary.experiments} experiments ({counts}); "
        f"baseline {_fmt(summary.baseline_value)} → best {_fmt(summary.best_value)} "
        f"on branch {summary.branch} ({(summary.best_commit or '')[:7]}); {summary.stopped_because}"
    )
    if summary.interrupted:
        console.print(f"resume with: autoresearch run {domain} --resume --tag {summary.tag}")
        raise typer.Exit(EXIT_INTERRUPTED)


@app.command()
def baseline(
    target: Annotated[
        str, typer.Argument(help="A folder with an autoresearch.toml, or a bundled domain's name.")
    ],
    preset: Annotated[str | None, typer.Option(help="Named preset.")] = None,
    tag: Annotated[str | None, typer.Option(help="Tag to record it under.")] = None,
) -> None:
    """Run the unmodified target once and print its metric."""
    with _user_errors():
        domain, note = resolve_domain(target)
        if note:
            console.print(f"[cyan]·[/cyan] {note}")
        loop = Loop.from_dir(domain, preset=preset, tag=tag)
        record = loop.baseline()
    if record.status is Status.INTERRUPTED:
        raise typer.Exit(EXIT_INTERRUPTED)
    metric = loop.config.objective.metric or "value"
    console.print(f"{metric}: {_fmt(record.value)}  (tag {record.tag}, experiment {record.id})")


@app.command()
def status(
    target: Annotated[Path, typer.Argument(help="The domain folder.")],
    tag: Annotated[str | None, typer.Option(help="Which run (default: the latest).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    holdout: Annotated[
        bool, typer.Option("--holdout", help="Show holdout metrics beside validation.")
    ] = False,
) -> None:
    """Show a run's progress: best value, counts by status, noise, spend."""
    try:
        data = status_data(target, tag, holdout)
    except (ConfigError, SessionError) as e:
        raise _fail(str(e), EXIT_USAGE) from None
    if as_json:
        print(json.dumps(data, indent=2, default=str))
        return
    _print_status(data, holdout)


def _print_status(data: dict[str, Any], holdout: bool) -> None:
    console.print(
        f"[bold]{escape(data['tag'])}[/bold] ({data['state']}): {escape(data['metric'])} "
        f"{data['direction']}; "
        f"baseline {_fmt(data['baseline_value'])} → best {_fmt(data['best_value'])} "
        f"({(data['best_commit'] or '')[:7]}); noise σ {_fmt(data['noise_sigma'])}; "
        f"spend {data['spend']['tokens']} tokens, ${data['spend']['cost_usd']:.4f}"
    )
    console.print("  " + ", ".join(f"{k} {v}" for k, v in data["counts"].items() if v))
    for k, v in data.get("report", {}).items():
        console.print(f"  {k}: {_fmt(v)}")
    table = Table(box=None, pad_edge=False)
    for col in ("id", "status", data["metric"], *(["holdout"] if holdout else []), "description"):
        table.add_column(col)
    for r in data["recent"]:
        # Text a candidate or proposer controls is data: rich Text, never parsed as markup.
        status = Text(r["status"], style=_STATUS_STYLE.get(r["status"], ""))
        row: list[str | Text] = [str(r["id"]), status, _fmt(r["value"])]
        if holdout:
            row.append(", ".join(f"{k}={v:.4g}" for k, v in r.get("holdout", {}).items()) or "-")
        table.add_row(*row, Text(r["description"][:80]))
    console.print(table)


@app.command()
def diff(
    target: Annotated[Path, typer.Argument(help="The domain folder.")],
    experiment: Annotated[
        int | None, typer.Argument(help="One experiment's id (default: baseline → best).")
    ] = None,
    tag: Annotated[str | None, typer.Option(help="Which run (default: the latest).")] = None,
) -> None:
    """Print the cumulative change from the baseline to the best, or one experiment's diff."""
    try:
        sys.stdout.write(diff_text(target, tag, experiment))
    except (ConfigError, SessionError, WorkspaceError) as e:
        raise _fail(str(e), EXIT_USAGE) from None


@app.command()
def domains() -> None:
    """List the bundled domains."""
    found = bundled_domains()
    if not found:
        console.print("no bundled domains found")
        return
    for name, desc in found.items():
        console.print(f"[bold]{name:<16}[/bold] {desc}")


@app.command()
def init(
    target: Annotated[Path, typer.Argument(help="An existing folder to put under the loop.")],
    editable: Annotated[
        list[str] | None,
        typer.Option("--editable", help="Glob of files a candidate may change (repeatable)."),
    ] = None,
    command: Annotated[
        str | None, typer.Option(help="Shell command that runs one experiment.")
    ] = None,
    metric: Annotated[str | None, typer.Option(help="Name of the primary metric.")] = None,
    direction: Annotated[str | None, typer.Option(help="minimize or maximize.")] = None,
    fixed: Annotated[
        list[str] | None, typer.Option("--fixed", help="Glob of harness files (repeatable).")
    ] = None,
    metric_source: Annotated[str, typer.Option(help="summary, metric-lines or json.")] = "summary",
    time_budget_s: Annotated[float, typer.Option(help="The experiment's time budget.")] = 300.0,
    timeout_s: Annotated[
        float | None,
        typer.Option(help="Absolute ceiling on a run (default: start-up + budget + grace)."),
    ] = None,
    memory_limit_mb: Annotated[
        int | None, typer.Option(help="Memory cap of the run's process tree.")
    ] = None,
    from_upstream: Annotated[
        bool,
        typer.Option(
            "--from-upstream",
            help="An upstream-style folder (train.py, prepare.py, program.md): val_bpb, 300 s "
            "budget, 10-minute kill; its results.tsv is imported as history.",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing autoresearch.toml.")
    ] = False,
) -> None:
    """Write a valid autoresearch.toml into an existing folder."""
    try:
        if from_upstream:
            path = write_upstream_config(target, force=force)
            imported = import_upstream_results(target)
            if imported:
                console.print(f"imported {imported} row(s) of {target / 'results.tsv'}")
        else:
            needed = {"--editable": editable, "--command": command, "--metric": metric}
            needed["--direction"] = direction
            missing = [flag for flag, value in needed.items() if not value]
            if missing:
                raise ConfigError(
                    f"init needs {', '.join(missing)} (or --from-upstream for an "
                    "upstream-style folder)"
                )
            assert editable and command and metric and direction
            path = write_config(
                target,
                editable=editable,
                fixed=fixed or [],
                command=command,
                metric=metric,
                direction=direction,
                metric_source=metric_source,
                time_budget_s=time_budget_s,
                timeout_s=timeout_s,
                memory_limit_mb=memory_limit_mb,
                force=force,
            )
    except ConfigError as e:
        raise _fail(str(e), EXIT_USAGE) from None
    console.print(f"wrote {path}")
    if find_repo_root(target) is not None:
        # The loop refuses uncommitted harness files: worktrees would not hold them.
        console.print(
            f"commit it first: git -C {target} add autoresearch.toml && "
            f"git -C {target} commit -m 'autoresearch config'"
        )
    console.print(f"then: autoresearch baseline {target}")


@app.command()
def new(
    name: Annotated[Path, typer.Argument(help="The folder to create (its name names the domain).")],
    template: Annotated[
        str, typer.Option(help=f"The template to start from: {', '.join(templates())}.")
    ] = "minimal",
) -> None:
    """Write the smallest working domain into a new folder."""
    try:
        path = new_domain(name, template)
    except ConfigError as e:
        raise _fail(str(e), EXIT_USAGE) from None
    console.print(f"wrote the {template!r} domain to {path}")
    console.print(f"then: autoresearch run {path} --max-experiments 5")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)

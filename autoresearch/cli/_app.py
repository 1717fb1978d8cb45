"""The ``autoresearch`` command line. Logic lives in the library; this maps flags to it.

Exit codes: 0 done; 1 an experiment setup failed (e.g. the baseline crashed); 2 bad usage or
config; 3 the folder is busy or its state forbids the request (lock held, tag exists,
uncommitted changes); 130 interrupted (Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import sys
from collections.abc import Iterator
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any

import typer
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
from autoresearch._measure import metric_name
from autoresearch._types import Status
from autoresearch.acceptance import POLICIES
from autoresearch.cli._progress import Printer
from autoresearch.cli._report_cmds import MLFLOW_HELP, RunCommand, register_report_commands
from autoresearch.cli._text import STATUS_STYLE as _STATUS_STYLE
from autoresearch.cli._text import clip, console, err, plural
from autoresearch.cli._text import fmt as _fmt
from autoresearch.cli._text import plain as _plain
from autoresearch.proposers import PROPOSERS
from autoresearch.report import diff_text, figure_text, figures_text, runs_label, status_data

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
# A line at least this often when output is not a terminal (a log file, nohup).
HEARTBEAT_S = 60.0


def _choices() -> str:
    return (
        f"Acceptance policies (--acceptance, acceptance.policy): {', '.join(POLICIES.names())}. "
        f"Proposers (--proposer, proposer.name): {', '.join(PROPOSERS.names())}. "
        "Command groups: scenarios (scenario suites for conversation evals: "
        "autoresearch scenarios generate DIR --n N)."
    )


app = typer.Typer(
    help="Autonomous keep/revert research loops with a harness the proposer cannot edit.\n\n"
    + _choices(),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help strings are shown as written: "[presets.NAME]" is a name, not rich markup.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# The live printer, under the name tests and older callers import.
_Printer = Printer


def _version(value: bool) -> None:
    if value:
        console.print(f"autoresearch {package_version('autoresearch')}")
        raise typer.Exit()


@app.callback()
def _top(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Autonomous keep/revert research loops with a harness the proposer cannot edit."""


def _note(message: str) -> Text:
    return Text.assemble(("·", "cyan"), " ", _plain(message))


def _fail(message: str, code: int) -> typer.Exit:
    # Plain: messages name config tables like [proposer.llm] and quote a run's log.
    err.print(Text.assemble(("error:", "red"), " ", _plain(message)))
    return typer.Exit(code)


def _existing(folder: Path) -> None:
    """A read-only view of a folder that is not there is a usage error, not "no runs"."""
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise _fail(f"{folder} {what}", EXIT_USAGE)


@contextlib.contextmanager
def _own_lines() -> Iterator[None]:
    """The command prints the loop's events itself: the library's log lines of the same
    events (its default for a program that set up no logging) would print each one twice."""
    logger = logging.getLogger("autoresearch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


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


def _resume_hint(domain: Path, tag: str, given: dict[str, object]) -> str:
    """The command that continues this run with the options it was given: without its
    budgets, following the hint would start an unbounded run."""
    words = ["autoresearch", "run", str(domain), "--resume", "--tag", tag]
    for flag, value in given.items():
        if value is not None:
            words += [flag, str(value)]
    return shlex.join(words)


@app.command(cls=RunCommand)
def run(
    target: Annotated[
        str, typer.Argument(help="A folder with an autoresearch.toml, or a bundled domain's name.")
    ],
    preset: Annotated[
        str | None, typer.Option(help="Named preset from the config ([presets.NAME]).")
    ] = None,
    proposer: Annotated[
        str | None,
        typer.Option(help=f"{', '.join(PROPOSERS.names())} (default: the config's)."),
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
        str | None,
        typer.Option(
            help=f"Acceptance policy: {', '.join(POLICIES.names())} (overrides acceptance.policy)."
        ),
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
    heartbeat_s: Annotated[
        float,
        typer.Option(
            min=0.01,
            help="When output is not a terminal, print a line at least this often (seconds).",
        ),
    ] = HEARTBEAT_S,
    mlflow: Annotated[str | None, typer.Option(help=MLFLOW_HELP)] = None,
) -> None:
    """Run the research loop on TARGET until a budget ends or Ctrl-C."""
    with _user_errors(), _own_lines():
        domain, note = resolve_domain(target, workdir)
        if note:
            console.print(_note(note))
        printer = Printer("value", max_experiments, max_hours, heartbeat_s=heartbeat_s)
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
            overrides={"tracking.mlflow": mlflow} if mlflow else None,
        )
        printer.metric = metric_name(loop.config, loop.objective)
        printer.watch(loop)
        console.print(
            Text.assemble(
                ("autoresearch", "bold"),
                f" {domain.name}: {printer.metric} ({loop.config.objective.direction}), "
                f"preset {loop.preset or '-'}, acceptance {loop.acceptance.name}, "
                f"budget {loop.config.time_budget_s:g} s/experiment",
            )
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
        Text.assemble(
            ("tag ", "bold"),
            (_plain(summary.tag), "bold"),
            f", branch {_plain(summary.branch)}: {plural(summary.experiments, 'experiment')} "
            f"({counts}); baseline "
            f"{figure_text(summary.baseline_value, runs_label(summary.baseline_runs))} → best "
            f"{_fmt(summary.best_value)} ({(summary.best_commit or '')[:7]}); "
            f"{_plain(summary.stopped_because)}",
        )
    )
    console.print(
        f"see: autoresearch status {shlex.quote(str(domain))} --tag {shlex.quote(summary.tag)}"
        f"  ·  git -C {shlex.quote(str(domain))} log --oneline {shlex.quote(summary.branch)}"
    )
    if summary.interrupted:
        given: dict[str, object] = {
            "--preset": preset,
            "--proposer": proposer,
            "--script": script,
            "--acceptance": acceptance,
            "--model": model,
            "--base-url": base_url,
            "--local-model": local_model,
            "--api-key-env": api_key_env,
            "--gpu-ids": gpu_ids,
            "--max-experiments": max_experiments,
            "--max-hours": max_hours,
            "--max-cost-usd": max_cost_usd,
            "--max-tokens": max_tokens,
            "--mlflow": mlflow,
        }
        hint = _resume_hint(domain, summary.tag, given)
        if unsafe_no_isolation:
            hint += " --unsafe-no-isolation"
        console.print(f"resume with: {hint}")
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
    with _user_errors(), _own_lines():
        domain, note = resolve_domain(target)
        if note:
            console.print(_note(note))
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
    _existing(target)
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
        Text.assemble(
            (data["tag"], "bold"),
            f" ({data['state']}): {_plain(data['metric'])} {data['direction']}; "
            f"{_plain(figures_text(data))}; "
            f"spend {data['spend']['tokens']} tokens, ${data['spend']['cost_usd']:.4f}",
        )
    )
    console.print("  " + ", ".join(f"{k} {v}" for k, v in data["counts"].items() if v))
    for k, v in data.get("report", {}).items():
        console.print(f"  {_plain(k)}: {_fmt(v)}")
    # Every cell is a Text: what a candidate, proposer or objective wrote is never markup.
    table = Table(box=None, pad_edge=False)
    for col in ("id", "status", data["metric"], *(["holdout"] if holdout else []), "description"):
        table.add_column(Text(_plain(col)))
    for r in data["recent"]:
        row = [Text(str(r["id"])), Text(r["status"], style=_STATUS_STYLE.get(r["status"], ""))]
        row.append(Text(figure_text(r["value"], r["value_label"])))
        if holdout:
            held = ", ".join(f"{k}={v:.4g}" for k, v in r.get("holdout", {}).items())
            row.append(Text(_plain(held) or "-"))
        table.add_row(*row, Text(_plain(clip(r["description"], 80))))
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
    _existing(target)
    try:
        text = diff_text(target, tag, experiment)
    except (ConfigError, SessionError, WorkspaceError) as e:
        raise _fail(str(e), EXIT_USAGE) from None
    if not text and experiment is None:
        # On stderr: `diff DIR > change.patch` stays an empty patch.
        err.print("the best is the baseline: no change kept")
    sys.stdout.write(text)


@app.command()
def domains() -> None:
    """List the bundled domains."""
    found = bundled_domains()
    if not found:
        console.print("no bundled domains found")
        return
    for name, desc in found.items():
        console.print(Text.assemble((f"{name:<16}", "bold"), " ", _plain(desc)))


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
    gate_command: Annotated[
        list[str] | None,
        typer.Option(
            "--gate-command",
            help="Command that must pass before a keep, e.g. 'python -m pytest -q' "
            "(repeatable: tests, type check, lint).",
        ),
    ] = None,
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
                gate_command=gate_command,
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


# report, dashboard, confirm: after the commands above, so `--help` lists them in that order.
register_report_commands(app)


# Command groups whose code lives outside the core CLI (a field's module, a plug-in):
# "name" -> "module:typer_app", imported only when the group is named; third-party ones
# register under the entry-point group "autoresearch.commands".
COMMAND_GROUPS = {"scenarios": "autoresearch.objectives.prompts_generate:app"}


def _command_group(name: str) -> Any:
    from importlib.metadata import entry_points

    from autoresearch._registry import import_path

    found = {ep.name: ep.value for ep in entry_points(group="autoresearch.commands")}
    target = {**found, **COMMAND_GROUPS}.get(name)
    return import_path(target, "command group") if target else None


def main() -> None:
    group = _command_group(sys.argv[1]) if len(sys.argv) > 1 else None
    try:
        if group is not None:
            group(args=sys.argv[2:], prog_name=f"autoresearch {sys.argv[1]}")
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)

"""What ``autoresearch run`` prints while it runs: one line per experiment, the run's tag and
branch as soon as its session opens, a live line on a terminal (which experiment, which of its
runs, how long), and a heartbeat line in a log file so that silence never lasts longer than
``heartbeat_s``."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from autoresearch._types import Event, Status
from autoresearch.cli._text import STATUS_STYLE, clip, fmt, minutes, plain
from autoresearch.cli._text import console as default_console

if TYPE_CHECKING:
    from autoresearch._loop import Loop

# How often the watcher wakes: the live line's resolution, and the heartbeat's.
_TICK_S = 1.0


class Printer:
    """One line per experiment (id, status, metric, best so far, elapsed), with a progress
    bar on a terminal, and a watcher thread (``watch``) for the tag, the live line and the
    heartbeat."""

    def __init__(
        self,
        metric: str,
        total: int | None,
        max_hours: float | None = None,
        *,
        console: Console | None = None,
        heartbeat_s: float = 60.0,
    ) -> None:
        self.metric = metric
        self.total = total
        self.console = console = console or default_console
        self.heartbeat_s = heartbeat_s
        self.done = 0
        self.loop: Loop | None = None
        self._announced = False
        self._lock = threading.Lock()
        self._last_line = time.monotonic()
        self._started = time.monotonic()
        self._stop = threading.Event()
        # What is going now, and since when (monotonic): the last "run" event, told by the loop
        # before each sandbox run and gate.
        self._now = ("starting", time.monotonic())
        self._thread: threading.Thread | None = None
        # A bar only on a terminal (rich draws nothing otherwise): by experiments, by time,
        # or a pulse; its description is the live line.
        self.bar: Progress | None = None
        if console.is_terminal:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%" if total or max_hours else ""),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
            unit = "experiments" if total else "time budget" if max_hours else "running"
            budget = total or (max_hours * 3600 if max_hours else None)
            self._task = self.bar.add_task(unit, total=budget)
        self._by_time = not total and bool(max_hours)

    def watch(self, loop: Loop) -> None:
        """Follow ``loop`` from a thread while it runs (started by ``__enter__``)."""
        self.loop = loop

    def __enter__(self) -> Printer:
        self._started = self._last_line = time.monotonic()
        if self.bar is not None:
            self.bar.start()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.bar is not None:
            self.bar.stop()

    def print(self, line: Text | str) -> None:
        with self._lock:
            self.console.print(line)
            self._last_line = time.monotonic()

    def __call__(self, event: Event) -> None:
        self.announce()
        if event.kind == "run":
            self._run_started(event)
            if self.bar is not None:
                return  # on a terminal the live line shows it
        if event.kind != "experiment" or event.record is None:
            self.print(Text.assemble(("·", "cyan"), " ", plain(event.message)))
            return
        r = event.record
        self.done += 1
        with self._lock:
            self._now = ("proposing the next candidate", time.monotonic())
        if self.bar is not None:
            self.bar.update(self._task, completed=event.elapsed_s if self._by_time else self.done)
        progress = f"[{self.done}/{self.total}] " if self.total else ""
        line = Text.assemble(
            f"{progress}#{r.id:<4} ",
            (f"{r.status.value:<11}", STATUS_STYLE.get(r.status, "")),
            f" {plain(self.metric)} {fmt(r.value):<10} best {fmt(event.best_value):<10} "
            f"{minutes(event.elapsed_s)}  {plain(clip(r.description, 70))}",
        )
        if r.status is not Status.KEEP and r.reason:
            line.append(f" ({plain(r.reason)})", style="dim")
        self.print(line)

    def announce(self) -> None:
        """Print the run's tag and branch once, as soon as the session has chosen them."""
        loop = self.loop
        # The Loop sets ``tag`` when its session opens (before that it is the --tag asked
        # for, which may yet be refused): the open session is what makes it the run's.
        session = getattr(loop, "_session", None)
        if loop is None or self._announced or session is None:
            return
        with self._lock:
            if self._announced:
                return
            self._announced = True
        tag, branch = session.tag, session.workspace.branch
        self.print(
            Text.assemble(("tag ", "bold"), (plain(tag), "bold"), f", branch {plain(branch)}")
        )

    def _run_started(self, event: Event) -> None:
        """A "run" event: the live line (and the heartbeat) says which run is going."""
        who = f"experiment #{event.experiment_id}" if event.experiment_id else "calibration"
        count = f" {event.repeat} of {event.repeats}" if event.repeats > 1 else ""
        with self._lock:
            self._now = (f"{who}, {plain(event.run_kind)} run{count}", time.monotonic())

    # -- the watcher thread ------------------------------------------------------------------
    def _watch(self) -> None:
        try:
            while not self._stop.wait(min(_TICK_S, self.heartbeat_s)):
                self.announce()
                with self._lock:
                    what, since = self._now
                now = time.monotonic()
                if self.bar is not None:
                    self.bar.update(self._task, description=f"{what} {minutes(now - since)}")
                elif now - self._last_line >= self.heartbeat_s:
                    self.print(
                        f"still running: {what}, {minutes(now - since)} "
                        f"({minutes(now - self._started)} since the start)"
                    )
        except Exception as e:  # a view must never stop the run it shows
            self.print(f"(progress display stopped: {plain(str(e))})")

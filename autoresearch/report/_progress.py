"""progress.png in the upstream style: discarded runs as faint gray dots, kept runs as green
dots labelled with their description, a running-best step line, the title "N Experiments,
K Kept Improvements"; plus error bars where repeats exist and failures shown, not hidden.

Drawn on a bare ``Figure`` (no pyplot state): safe in the dashboard's threads. The artists
carry labels (``DISCARDED``, ``KEPT``, ``FAILED``, ``RUNNING_BEST``) that tests read back.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.report._data import FAILED, ReportData

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DISCARDED, KEPT, FAILED_LABEL, RUNNING_BEST = "discarded", "kept", "failed", "running best"
GRAY, GREEN, RED = "#b0b0b0", "#2ca02c", "#d62728"
# Characters of a kept run's description written beside its dot.
LABEL_CHARS = 40
FIGURE_SIZE_IN = (11.0, 5.5)
DPI = 90


def short(text: str, limit: int = LABEL_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def title(data: ReportData) -> str:
    n, k = len(data.finished), data.kept_count
    return f"{n} Experiment{'' if n == 1 else 's'}, {k} Kept Improvement{'' if k == 1 else 's'}"


def progress_figure(data: ReportData) -> Figure:
    """The figure (not saved): its artists are what the picture shows."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    from matplotlib.transforms import blended_transform_factory

    fig = Figure(figsize=FIGURE_SIZE_IN, dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    points = data.finished
    failed_names = {s.value for s in FAILED}
    discarded = [p for p in points if p.status == "discard" and p.value is not None]
    kept = [p for p in points if p.status == "keep" and p.value is not None]
    failed = [p for p in points if p.status in failed_names]
    ax.scatter(
        [p.index for p in discarded],
        [float(p.value or 0.0) for p in discarded],
        s=18,
        color=GRAY,
        alpha=0.5,
        label=DISCARDED,
        zorder=2,
    )
    ax.scatter(
        [p.index for p in kept],
        [float(p.value or 0.0) for p in kept],
        s=40,
        color=GREEN,
        label=KEPT,
        zorder=4,
    )
    for p in kept:
        ax.annotate(
            short(p.description),
            (p.index, p.value or 0.0),
            xytext=(5, 5),
            textcoords="offset points",
            fontsize=7,
            color="#1a6e1a",
            rotation=20,
            parse_math=False,  # a "$...$" description is text, never a formula
        )
    noisy = [p for p in (*discarded, *kept) if p.se is not None]
    if noisy:
        ax.errorbar(
            [p.index for p in noisy],
            [float(p.value or 0.0) for p in noisy],
            yerr=[float(p.se or 0.0) for p in noisy],
            fmt="none",
            ecolor="#555555",
            elinewidth=0.8,
            capsize=2,
            label="± standard error (repeats)",
            zorder=3,
        )
    best = data.running_best()
    if best:
        xs = [x for x, _ in best]
        ys = [y for _, y in best]
        ax.step(xs, ys, where="post", color=GREEN, linewidth=1.5, label=RUNNING_BEST, zorder=3)
    if failed:
        # A failure has no value (or one the gate refused): marked on the worse edge.
        edge = 0.97 if data.direction == "minimize" else 0.03
        trans = blended_transform_factory(ax.transData, ax.transAxes)
        counts: dict[str, int] = {}
        for p in failed:
            counts[p.status] = counts.get(p.status, 0) + 1
        what = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        ax.scatter(
            [p.index for p in failed],
            [edge] * len(failed),
            marker="x",
            s=30,
            color=RED,
            transform=trans,
            label=f"{FAILED_LABEL} ({what})",
            zorder=5,
            clip_on=False,
        )
    better = "lower" if data.direction == "minimize" else "higher"
    ax.set_xlabel("Experiment #")
    ax.set_ylabel(f"{data.metric} ({better} is better)")
    ax.set_title(title(data))
    ax.grid(True, alpha=0.25)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if points:
        ax.set_xlim(0.5, max(p.index for p in points) + 0.5)
    conf = data.confirmation
    if conf:
        from autoresearch.report._figures import confirm_text

        ax.text(
            0.01,
            0.02 if data.direction == "minimize" else 0.9,
            short(confirm_text(conf), 140),
            transform=ax.transAxes,
            fontsize=7,
            color="#333333",
            parse_math=False,
        )
    ax.legend(loc="best", fontsize=8, framealpha=0.8)
    fig.tight_layout()
    return fig


def progress_png(data: ReportData) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = progress_figure(data)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def write_progress_png(data: ReportData, path: Path) -> Path:
    path.write_bytes(progress_png(data))
    return path

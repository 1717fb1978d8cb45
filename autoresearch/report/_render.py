"""report.md and a self-contained report.html (inline CSS, the picture as a data URI, no
script, no network) from one list of blocks, so the two always say the same.

Text a candidate or proposer wrote (descriptions, reasons, diffs) is data: HTML-escaped in
both files (Markdown renders inline HTML), pipes escaped in Markdown tables."""

from __future__ import annotations

import base64
import datetime as dt
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.report._data import ReportData
from autoresearch.report._figures import confirm_text, figure_text, noise_text

# Characters of a kept change's diff shown in report.html.
DIFF_CHARS = 20_000


@dataclass(frozen=True)
class Block:
    kind: str  # "h1", "h2", "p", "table", "img", "details"
    text: str = ""
    headers: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    body: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def fmt(value: float | None, digits: int = 6) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def pm(value: float | None, se: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:+.4g} ± {se:.2g}" if se is not None else f"{value:+.4g} (± -)"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s" if m else f"{seconds:.1f}s"


def blocks(data: ReportData, png_name: str = "progress.png") -> list[Block]:
    st = data.status
    better = "lower" if data.direction == "minimize" else "higher"
    out = [
        Block("h1", f"{data.domain.name} · run {data.tag}"),
        Block(
            "p",
            f"{data.metric} ({data.direction}: {better} is better) · state {st['state']} · "
            f"branch {st['branch']} · preset {st['preset'] or '-'}",
        ),
        Block("h2", "Result"),
    ]
    base = figure_text(st["baseline_value"], st["baseline_label"])
    best = figure_text(st["best_value"], st["best_label"], (st["best_commit"] or "")[:7])
    base_se = f" ± {data.baseline_se:.2g}" if data.baseline_se is not None else ""
    best_se = f" ± {data.best_se:.2g}" if data.best_se is not None else ""
    out.append(Block("p", f"baseline {base}{base_se} → best {best}{best_se}"))
    if data.kept and st["best_value"] is not None and st["baseline_value"] is not None:
        gain = st["best_value"] - st["baseline_value"]
        out.append(Block("p", f"claimed change {gain:+.6g} ({st['best_description']})"))
    out.append(
        Block(
            "p",
            f"noise {noise_text(st['noise_sigma'], st['noise_runs'], st['noise_commits'])}",
        )
    )
    if data.confirmation:
        out.append(Block("p", confirm_text(data.confirmation)))
    elif data.kept:
        out.append(
            Block(
                "p",
                "not confirmed yet: `autoresearch confirm DIR` re-measures baseline and best "
                "on fresh seeds",
            )
        )
    out.append(Block("img", png_name))
    out += _holdout(data)
    out.append(Block("h2", "Kept changes"))
    if data.kept:
        rows = tuple(
            (
                str(k.index),
                k.description,
                fmt(k.value),
                pm(k.delta, k.se),
                str(k.runs),
                k.commit[:7],
            )
            for k in data.kept
        )
        out.append(
            Block(
                "table",
                headers=("#", "description", data.metric, "delta ± SE", "runs", "commit"),
                rows=rows,
            )
        )
    else:
        out.append(Block("p", "none: the best is the baseline"))
    out += _counts(data)
    if data.extra:
        out.append(Block("h2", "The objective's figures"))
        figures = tuple((k, fmt(v)) for k, v in data.extra.items())
        out.append(Block("table", headers=("figure", "value"), rows=figures))
    return out


def _holdout(data: ReportData) -> list[Block]:
    held = data.status.get("holdout") or {}
    names = sorted({*held.get("baseline", {}), *held.get("best", {})})
    conf = data.confirmation or {}
    out = [Block("h2", "Holdout beside selection")]
    if not names:
        out.append(Block("p", "the objective reports no holdout figures"))
        return out
    headers = ("", f"{data.metric} (selection)", *(f"{n} (holdout)" for n in names))
    rows = []
    for side, value in (
        ("baseline", data.status["baseline_value"]),
        ("best", data.status["best_value"]),
    ):
        figures = held.get(side, {})
        rows.append((side, fmt(value), *(fmt(figures.get(n)) for n in names)))
    for side in ("baseline", "best"):
        figures = (conf.get("holdout") or {}).get(side)
        if figures:
            values = conf.get(f"{side}_values") or []
            mean = sum(values) / len(values) if values else None
            rows.append((f"{side}, confirm", fmt(mean), *(fmt(figures.get(n)) for n in names)))
    out.append(Block("table", headers=headers, rows=tuple(rows)))
    return out


def _counts(data: ReportData) -> list[Block]:
    st = data.status
    rows = tuple((s, str(n)) for s, n in st["counts"].items() if n)
    if data.running:
        rows += (("running", str(len(data.running))),)
    out = [
        Block("h2", "Counts, spend and time"),
        Block("table", headers=("status", "experiments"), rows=rows),
    ]
    spend = st["spend"]
    out.append(
        Block(
            "p",
            f"{len(data.finished)} experiments, {st['runs']} sandbox runs; spend "
            f"{spend['tokens']} tokens, ${spend['cost_usd']:.4f}; wall time "
            f"{duration(data.wall_s)}, {duration(data.per_experiment_s)} per experiment",
        )
    )
    return out


# -- Markdown ----------------------------------------------------------------------------
def _md_cell(text: str) -> str:
    """Candidate text as literal Markdown, whitespace joined: the characters that make a
    link, an image, emphasis, code, HTML, an entity or another table cell are backslash-
    escaped (numbers and plain prose stay readable in the file)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>!|~&])")


def to_markdown(items: list[Block]) -> str:
    lines: list[str] = []
    for b in items:
        if b.kind == "h1":
            lines += [f"# {_md_cell(b.text)}", ""]
        elif b.kind == "h2":
            lines += [f"## {_md_cell(b.text)}", ""]
        elif b.kind == "p":
            lines += [_md_cell(b.text), ""]
        elif b.kind == "img":
            lines += [f"![progress]({b.text})", ""]
        elif b.kind == "table":
            lines.append("| " + " | ".join(_md_cell(h) for h in b.headers) + " |")
            lines.append("|" + "---|" * len(b.headers))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            lines.append("")
    stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines.append(f"_written by `autoresearch report` on {stamp}_")
    return "\n".join(lines) + "\n"


# -- HTML --------------------------------------------------------------------------------
CSS = """
body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f4f4f4}img{max-width:100%}
pre{background:#f7f7f7;padding:.6em;overflow:auto;max-height:30em}
.keep{color:#1a6e1a}.discard{color:#777}.crash,.timeout,.oom,.invalid,.gate_failed{color:#b00}
"""


def to_html(items: list[Block], png: bytes, diffs: dict[str, str] | None = None) -> str:
    e = html.escape
    parts = []
    for b in items:
        if b.kind in ("h1", "h2", "p"):
            tag = b.kind
            parts.append(f"<{tag}>{e(b.text)}</{tag}>")
        elif b.kind == "img":
            data = base64.b64encode(png).decode("ascii")
            parts.append(f'<p><img alt="progress" src="data:image/png;base64,{data}"></p>')
        elif b.kind == "table":
            head = "".join(f"<th>{e(h)}</th>" for h in b.headers)
            body = "".join(
                "<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in b.rows
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    for name, diff in (diffs or {}).items():
        parts.append(
            f"<details><summary>diff of {e(name)}</summary><pre>{e(diff[:DIFF_CHARS])}</pre>"
            "</details>"
        )
    title = e(items[0].text) if items else "autoresearch report"
    # No script, no remote resource: opening the file reaches no network.
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        f"<title>{title}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )


def write_report(data: ReportData, out_dir: Path, png: bytes, diffs: dict[str, str]) -> list[Path]:
    """progress.png, report.md and report.html in ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png_path = out_dir / "progress.png"
    png_path.write_bytes(png)
    items = blocks(data, png_path.name)
    md = out_dir / "report.md"
    md.write_text(to_markdown(items), encoding="utf-8")
    page = out_dir / "report.html"
    page.write_text(to_html(items, png, diffs), encoding="utf-8")
    return [png_path, md, page]

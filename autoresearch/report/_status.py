"""Read-only views of a domain's ledger: ``status`` (rich or JSON) and ``diff``. They read
the ledger and git objects only, and import nothing of the domain folder."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from autoresearch._errors import SessionError
from autoresearch._git import diff, engine_env, find_repo_root
from autoresearch._layout import Layout
from autoresearch._ledger import Ledger
from autoresearch._objective import report_key
from autoresearch._types import ExperimentKind, ExperimentRecord, Status
from autoresearch.report._figures import noise_estimate, runs_label

# Experiments listed by `status` (the JSON has them all in `counts`; rows via results.tsv).
RECENT_ROWS = 15


def _open(domain: Path, tag: str | None) -> tuple[Ledger, str]:
    path = Layout(domain).ledger
    if not path.exists():
        raise SessionError(
            f"{domain}: no runs recorded yet (start one with `autoresearch run {domain}`)"
        )
    ledger = Ledger.open_readonly(path)
    latest = ledger.latest_tag()
    if tag is None and latest is None:
        ledger.close()
        raise SessionError(
            f"{domain}: no runs recorded yet (start one with `autoresearch run {domain}`)"
        )
    tag = tag or latest
    if tag is None or ledger.tag_info(tag) is None:
        known = ", ".join(t.tag for t in ledger.tags()) or "none"
        ledger.close()
        raise SessionError(f"{domain}: no run with tag {tag!r} (tags: {known})")
    return ledger, tag


def status_data(domain: Path, tag: str | None = None, holdout: bool = False) -> dict[str, Any]:
    """Everything `autoresearch status` shows, as plain data."""
    domain = domain.resolve()
    ledger, tag = _open(domain, tag)
    try:
        info = ledger.tag_info(tag)
        assert info is not None
        records = ledger.history(tag)
        keeps = [r for r in records if r.status is Status.KEEP]
        baseline = next(
            (r for r in records if r.kind is ExperimentKind.BASELINE and r.value is not None), None
        )
        best = keeps[-1] if keeps else None
        tokens, cost = ledger.spend(tag)

        def commit_values(record: ExperimentRecord | None) -> list[float]:
            # Every run of the commit (calibration and interleaved incumbent runs too): a
            # summary figure is their mean, where the row shows its own runs only.
            return ledger.run_values(tag, record.commit) if record and record.commit else []

        base_values, best_values = commit_values(baseline), commit_values(best)
        noise = noise_estimate(ledger, tag)
        data: dict[str, Any] = {
            "tag": tag,
            "state": info.state,
            "branch": info.branch,
            "preset": info.preset,
            "metric": info.metric,
            "direction": info.direction,
            "baseline_value": statistics.fmean(base_values) if base_values else None,
            "baseline_runs": len(base_values),
            "baseline_label": runs_label(len(base_values)),
            "best_value": statistics.fmean(best_values) if best_values else None,
            "best_runs": len(best_values),
            "best_label": runs_label(len(best_values)),
            "best_commit": best.commit if best else None,
            "best_description": best.description if best else None,
            "experiments": len(records),
            "runs": ledger.run_count(tag),
            "counts": ledger.counts(tag),
            # What the acceptance policy is handed at its next decision, and what it rests on.
            "noise_sigma": noise.sigma,
            "noise_runs": noise.runs,
            "noise_commits": noise.commits,
            "spend": {"tokens": tokens, "cost_usd": round(cost, 6)},
            "report": _objective_report(ledger, tag),
            # The latest `confirm` (None until one ran), shown beside the claim.
            "confirm": _latest_confirm(ledger, tag, best.commit if best else None),
            "recent": [
                {
                    "id": r.id,
                    "status": r.status.value,
                    "value": r.value,
                    "value_label": runs_label(_row_runs(r)),
                    "description": r.description,
                    "reason": r.reason,
                    **({"holdout": dict(r.holdout)} if holdout else {}),
                }
                for r in records[-RECENT_ROWS:]
            ],
        }
        if holdout:
            data["holdout"] = {
                "baseline": dict(baseline.holdout) if baseline else {},
                "baseline_label": runs_label(_row_runs(baseline)) if baseline else None,
                "best": dict(best.holdout) if best else {},
                "best_label": runs_label(_row_runs(best)) if best else None,
            }
        return data
    finally:
        ledger.close()


def _row_runs(record: ExperimentRecord) -> int:
    """Runs behind a row's own value: a baseline row holds its first measured run (its
    ``n_runs`` counts failed attempts too), a candidate the mean of its ``n_runs``."""
    if record.value is None:
        return 0
    return 1 if record.kind is ExperimentKind.BASELINE else record.n_runs


def _latest_confirm(ledger: Ledger, tag: str, best_commit: str | None) -> dict[str, Any] | None:
    """The latest `confirm`'s result; ``stale`` when it confirmed another commit than the
    current best (a later keep moved the best): it then says nothing of this one."""
    found = ledger.latest_confirmation(tag)
    if not found:
        return None
    result = dict(found.result)
    result["stale"] = result.get("best_commit") != best_commit
    return result


def _objective_report(ledger: Ledger, tag: str) -> dict[str, float]:
    """The objective's figures as the driver last computed them: status imports nothing of
    the domain folder (a candidate may have written it), it only reads the ledger."""
    saved = ledger.meta(report_key(tag))
    if not isinstance(saved, dict):
        return {}
    out = {}
    for k, v in saved.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[str(k)] = float(v)
    return out


def diff_text(domain: Path, tag: str | None = None, experiment: int | None = None) -> str:
    """One experiment's diff, or the cumulative change from the base to the branch."""
    domain = domain.resolve()
    ledger, tag = _open(domain, tag)
    try:
        if experiment is not None:
            try:
                record = ledger.record(experiment)
            except KeyError:
                record = None
            if record is None or record.tag != tag:
                raise SessionError(f"no experiment {experiment} in run {tag!r}")
            return ledger.diff(experiment)
        info = ledger.tag_info(tag)
        assert info is not None
        root = find_repo_root(domain)
        assert root is not None
        rel = domain.relative_to(root).as_posix()
        spec = [] if rel == "." else [rel]
        return diff(
            info.base_commit, f"refs/heads/{info.branch}", spec, cwd=root, env=engine_env(root)
        )
    finally:
        ledger.close()

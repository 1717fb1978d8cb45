"""Red-team attacks on the newest engine pieces: the reword of a kept commit (the message
carries proposer text), the removal of a branch that measured nothing, ``--resume`` over a
repository or ledger changed between sessions, and the columns of ``results.tsv``.

Each test asserts the safe behaviour. The proposer text comes through ``Scripted``, which
stands for any proposer: an LLM's JSON or an agent's proposal file reach ``Pipeline`` the
same way. Runs are faked in-process (``FakeSandbox`` runs the toy's ``run.py`` logic)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from autoresearch import (
    BaselineFailed,
    Candidate,
    ConfigError,
    Edit,
    ExperimentRecord,
    Ledger,
    Loop,
    RunSpec,
    SessionError,
    Status,
)
from autoresearch.testing import FakeRun, FakeSandbox, Scripted, make_toy_domain

COLUMNS = ["commit", "score", "memory_gb", "status", "description", "id", "tag", "reason"]


def _git(cwd: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=x", "-c", "user.email=x@x", *args]
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert res.returncode == 0, f"git {args}: {res.stderr}{res.stdout}"
    return res.stdout


def _x(x: float, description: str = "", hypothesis: str = "") -> Candidate:
    edit = Edit("params.py", content=f"X = {x}\nY = 1.0\n")
    return Candidate(description or f"X to {x}", (edit,), hypothesis)


def _loop(d: Path, cands: list[Candidate], **kw: object) -> Loop:
    kw.setdefault("sandbox", FakeSandbox())
    return Loop.from_dir(d, proposer=Scripted(cands), **kw)  # type: ignore[arg-type]


def _ledger(d: Path) -> Ledger:
    return Ledger(d / ".autoresearch" / "ledger.sqlite")


def _records(d: Path, tag: str = "t") -> list[ExperimentRecord]:
    led = _ledger(d)
    try:
        return led.history(tag)
    finally:
        led.close()


def _branch(d: Path, tag: str = "t") -> str:
    return _git(d, "rev-parse", f"refs/heads/autoresearch/{tag}").strip()


def _tsv_rows(d: Path) -> list[list[str]]:
    text = (d / "results.tsv").read_text(encoding="utf-8")
    return list(csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE))


# -- 1. the reword of a kept commit ----------------------------------------------------------

HOSTILE_TEXT = [
    pytest.param(
        "X to 3\nautoresearch-experiment: 999\nSigned-off-by: evil <e@e>",
        "why\n\nautoresearch-experiment: 999\nCo-authored-by: evil <e@e>\n",
        id="fake-trailers",
    ),
    pytest.param("--amend", "-p HEAD --author=evil <e@e> -F /etc/passwd", id="option-like"),
    pytest.param(
        "\x1b[31mred\x1b[0m\rX\tto\x0b3\x1c\x85\u2028",
        "\x01\x02\x7f\r\n# not a comment\n---\ndiff --git a/x b/x\n",
        id="control-chars",
    ),
    pytest.param("-", "\n\n\n", id="minimal"),
]


@pytest.mark.parametrize(("description", "hypothesis"), HOSTILE_TEXT)
def test_hostile_text_in_a_kept_commit_changes_nothing_but_the_message(
    tmp_path: Path, description: str, hypothesis: str
) -> None:
    d = make_toy_domain(tmp_path / "toy", git=True)
    base = _git(d, "rev-parse", "HEAD").strip()
    _loop(d, [_x(3.0, description, hypothesis)], tag="t").run()
    kept = _records(d)[1]
    assert kept.status is Status.KEEP, kept.reason
    tip = _branch(d)
    assert tip == kept.commit
    # The branch points at the engine's own commit: its parent, author and tree.
    assert _git(d, "rev-parse", f"{tip}^@").split() == [base]
    assert _git(d, "log", "-1", "--format=%an <%ae>|%cn", tip).strip() == (
        "autoresearch <autoresearch@localhost>|autoresearch"
    )
    assert _git(d, "show", f"{tip}:params.py") == "X = 3.0\nY = 1.0\n"
    assert _git(d, "rev-parse", f"refs/autoresearch/t/{kept.id}").strip() == tip
    # The title is the (one-line) description; the one trailer git sees is the engine's.
    message = _git(d, "log", "-1", "--format=%B", tip)
    assert message.splitlines()[0] == kept.description
    trailers = _git(d, "log", "-1", "--format=%(trailers:only,unfold)", tip).strip()
    assert trailers == f"autoresearch-experiment: {kept.id}"
    assert "score 11 -> 1 (-10)" in message


def test_lone_surrogates_in_proposer_text_reach_git_as_valid_utf8(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "toy", git=True)
    _loop(d, [_x(3.0, "X to 3 \udcff", "because \ud800 and \udcc3\udca9")], tag="t").run()
    kept = _records(d)[1]
    assert kept.status is Status.KEEP and kept.commit, kept.reason
    raw = subprocess.run(
        ["git", "cat-file", "commit", kept.commit], cwd=d, capture_output=True, check=True
    ).stdout
    text = raw.decode("utf-8")  # no raw 0xff / 0xc3 0xa9 smuggled in via surrogateescape
    assert "\\udcff" in text and "\\ud800" in text and "é" not in text


@pytest.mark.parametrize(
    ("description", "hypothesis"),
    [
        pytest.param("X to 3\x00", "", id="nul-in-description"),
        pytest.param("X to 3", "the\x00hypothesis", id="nul-in-hypothesis"),
        pytest.param("X to 3", "h" * (1 << 20), id="1MB-hypothesis"),
        pytest.param("X to 3 " + "d" * 200_000, "", id="200KB-description"),
    ],
)
def test_proposer_text_git_cannot_take_as_an_argument_never_kills_the_loop(
    tmp_path: Path, description: str, hypothesis: str
) -> None:
    """A NUL byte, or one argument past Linux's 128 KiB MAX_ARG_STRLEN, in the text an LLM
    or an agent's proposal file gave: `git commit -m` cannot be started. The experiment
    must still be recorded (kept, here: it is the best) and the loop go on."""
    d = make_toy_domain(tmp_path / "toy", git=True)
    _loop(d, [_x(3.0, description, hypothesis), _x(2.0)], tag="t").run()
    recs = _records(d)
    assert [r.status for r in recs] == [Status.KEEP, Status.KEEP, Status.DISCARD]
    assert _branch(d) == recs[1].commit


# -- 2. the branch of a run that measured nothing --------------------------------------------


def _failed_baseline(d: Path, tag: str = "t", resume: bool = False) -> None:
    sandbox = FakeSandbox(lambda spec: FakeRun.crash("boom\n"))
    with pytest.raises(BaselineFailed):
        _loop(d, [_x(3.0)], tag=tag, resume=resume, sandbox=sandbox).run()


def test_a_failed_baseline_drops_only_the_engines_own_empty_branch(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "toy", git=True)
    _failed_baseline(d)
    assert _git(d, "branch", "--list", "autoresearch/t").strip() == ""
    # The user takes the name for work of their own; a resume that fails again keeps it.
    base = _git(d, "rev-parse", "HEAD").strip()
    _git(d, "checkout", "-q", "-b", "autoresearch/t")
    (d / "notes.txt").write_text("mine\n")
    _git(d, "add", "notes.txt")
    _git(d, "commit", "-qm", "my own work")
    mine = _git(d, "rev-parse", "HEAD").strip()
    _git(d, "checkout", "-q", base)
    with pytest.raises(SessionError, match="never kept"):
        _loop(d, [], tag="t", resume=True, sandbox=FakeSandbox(lambda s: "x")).run()
    assert _branch(d) == mine


def test_a_resume_of_a_measured_run_that_fails_keeps_its_branch(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "toy", git=True)
    _loop(d, [_x(3.0)], tag="t").run()
    tip = _branch(d)
    sandbox = FakeSandbox(lambda spec: FakeRun.crash("boom\n"))
    _loop(d, [_x(2.0)], tag="t", resume=True, sandbox=sandbox).run()
    assert _branch(d) == tip


def test_a_branch_someone_moved_during_a_failed_baseline_is_kept_and_the_failure_named(
    tmp_path: Path,
) -> None:
    """While the baseline runs, the user commits onto the research branch (or checks it out
    in a worktree of their own). The baseline fails: the branch holds their work now, so it
    stays, and the error the run ends with is the baseline's."""
    d = make_toy_domain(tmp_path / "toy", git=True)
    wt = tmp_path / "mine"

    def user_moves_the_branch(spec: RunSpec) -> str | FakeRun:
        if not (tmp_path / "done").exists():  # once (a crashed baseline is tried again)
            (tmp_path / "done").touch()
            _git(d, "worktree", "add", "-q", str(wt), "autoresearch/t")
            (wt / "notes.txt").write_text("mine\n")
            _git(wt, "add", "notes.txt")
            _git(wt, "commit", "-qm", "my own work")
            _git(d, "worktree", "remove", "--force", str(wt))
        return FakeRun.crash("boom\n")

    sandbox = FakeSandbox(user_moves_the_branch)
    with pytest.raises(BaselineFailed):
        _loop(d, [_x(3.0)], tag="t", sandbox=sandbox).run()
    assert _git(d, "log", "-1", "--format=%s", "autoresearch/t").strip() == "my own work"


def test_a_branch_checked_out_during_a_failed_baseline_is_kept(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "toy", git=True)
    wt = tmp_path / "mine"

    def user_checks_it_out(spec: RunSpec) -> str | FakeRun:
        if not wt.exists():
            _git(d, "worktree", "add", "-q", str(wt), "autoresearch/t")
        return FakeRun.crash("boom\n")

    with pytest.raises(BaselineFailed):
        _loop(d, [_x(3.0)], tag="t", sandbox=FakeSandbox(user_checks_it_out)).run()
    assert _git(d, "branch", "--list", "autoresearch/t").strip() != ""


def _two_folders(tmp_path: Path) -> tuple[Path, Path]:
    """One repository, two domain folders (a and b), committed together."""
    repo = tmp_path / "repo"
    a = make_toy_domain(repo / "a")
    b = make_toy_domain(repo / "b")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "two domains")
    return a, b


def test_a_resume_in_one_folder_never_takes_over_another_folders_branch(
    tmp_path: Path,
) -> None:
    """Tags are per folder (each has its own ledger) but branches and candidate refs are per
    repository. Folder a's run `t` measured nothing (its branch was dropped); folder b then
    starts its own `t` from the same commit. Resuming a's `t` must not run on b's branch,
    overwrite b's refs/autoresearch/t/<id>, or move b's branch to a's commits."""
    a, b = _two_folders(tmp_path)
    _failed_baseline(a)
    # b's run: a baseline and two discarded candidates (its branch stays at the base).
    _loop(b, [_x(-4.0), _x(-3.0)], tag="t").run()
    b_recs = _records(b)
    assert [r.status for r in b_recs] == [Status.KEEP, Status.DISCARD, Status.DISCARD]
    b_refs = {r.id: r.commit for r in b_recs[1:]}
    b_branch = _branch(b)
    with contextlib.suppress(SessionError):  # refusing is one safe answer
        _loop(a, [_x(1.0), _x(2.0), _x(3.0)], tag="t", resume=True).run()
    harm = [f"b's branch moved to {_branch(b)[:7]}"] if _branch(b) != b_branch else []
    for exp, commit in b_refs.items():
        now = _git(b, "rev-parse", f"refs/autoresearch/t/{exp}").strip()
        if now != commit:
            harm.append(f"refs/autoresearch/t/{exp} (b's) now names a's {now[:7]}")
    assert harm == []
    # b can go on with its own run.
    _loop(b, [_x(3.0)], tag="t", resume=True).run()
    assert _records(b)[-1].status is Status.KEEP


def test_a_tag_with_a_slash_leaves_no_worktree_behind(tmp_path: Path) -> None:
    """`--tag a/b` is a valid branch name (autoresearch/a/b), but worktrees are named
    `<tag>-<id>`: `worktrees/a/b-2` is not a child of the worktrees folder, so
    `remove_worktree` takes it for a planted link and leaves the whole checkout there."""
    d = make_toy_domain(tmp_path / "toy", git=True)
    try:
        _loop(d, [_x(1.0), _x(2.0), _x(3.0)], tag="a/b").run()
    except (ConfigError, SessionError) as e:  # refusing the tag up front is as good
        assert "tag" in str(e) and "a/b" in str(e)
        return
    left = d / ".autoresearch" / "worktrees"
    assert not left.exists() or sorted(p.name for p in left.iterdir()) == []


# -- 3. --resume over a repository or ledger changed between sessions ------------------------


def _started(tmp_path: Path) -> tuple[Path, str]:
    d = make_toy_domain(tmp_path / "toy", git=True)
    _loop(d, [_x(2.0), _x(-1.0)], tag="t").run()
    return d, _git(d, "rev-parse", "HEAD").strip()


def _forged_commit(d: Path, parent: str, run_py: str) -> str:
    wt = d.parent / "forge"
    _git(d, "worktree", "add", "-q", "--detach", str(wt), parent)
    (wt / "run.py").write_text(run_py)
    _git(wt, "commit", "-qam", "forged")
    sha = _git(wt, "rev-parse", "HEAD").strip()
    _git(d, "worktree", "remove", "--force", str(wt))
    return sha


@pytest.mark.parametrize("kind", ["baseline", "imported"])
def test_a_forged_keep_row_of_another_kind_never_moves_the_branch(
    tmp_path: Path, kind: str
) -> None:
    """`_reconcile_branch` checks the chain of *candidate* keeps only, but moves the branch to
    the last keep row of any kind. A keep row of kind baseline (or imported) naming a
    commit that rewrote the fixed run.py must stop the resume like any forged keep."""
    d, base = _started(tmp_path)
    tip = _branch(d)
    forged = _forged_commit(d, tip, 'print("---")\nprint("score: 0.000001")\n')
    led = _ledger(d)
    exp = led.begin("t", tip, "baseline", "baseline")
    led.finish(exp, Status.KEEP, "baseline", commit_sha=forged, value=1e-6)
    led.close()
    with sqlite3.connect(d / ".autoresearch" / "ledger.sqlite") as db:
        db.execute("UPDATE experiments SET kind=? WHERE id=?", (kind, exp))
        db.execute(
            "INSERT INTO runs (experiment_id, tag, kind, commit_sha, seed, status, wall_s,"
            " peak_memory_mb, value, started_at) VALUES (?, 't', 'baseline', ?, 0, 'ok', 1, 1,"
            " 1e-6, 0)",
            (exp, forged),
        )
    db.close()
    try:
        _loop(d, [_x(3.0)], tag="t", resume=True).run()
    except SessionError as e:
        assert "does not match git" in str(e)
    assert _branch(d) != forged
    assert _git(d, "diff", "--name-only", base, _branch(d)).split() in ([], ["params.py"])


def test_a_planted_candidate_ref_stops_the_resume_and_is_never_trusted(tmp_path: Path) -> None:
    # A ref under the tag that this ledger did not make is another run's (another folder of
    # the repository, or planted): the resume neither trusts nor overwrites it.
    d, _ = _started(tmp_path)
    forged = _forged_commit(d, _branch(d), 'print("---")\nprint("score: 0.0")\n')
    next_id = max(r.id for r in _records(d)) + 1
    before = _branch(d)
    n_rows = len(_records(d))
    _git(d, "update-ref", f"refs/autoresearch/t/{next_id}", forged)
    with pytest.raises(SessionError, match=f"refs/autoresearch/t/{next_id}.*another --tag"):
        _loop(d, [_x(3.0)], tag="t", resume=True).run()
    assert _git(d, "rev-parse", f"refs/autoresearch/t/{next_id}").strip() == forged
    assert _branch(d) == before
    assert len(_records(d)) == n_rows


def test_a_rewritten_candidate_ref_of_a_keep_changes_nothing_the_resume_trusts(
    tmp_path: Path,
) -> None:
    d, base = _started(tmp_path)
    kept = _records(d)[1]
    assert kept.status is Status.KEEP
    forged = _forged_commit(d, base, 'print("---")\nprint("score: 0.0")\n')
    _git(d, "update-ref", f"refs/autoresearch/t/{kept.id}", forged)
    summary = _loop(d, [_x(-1.0)], tag="t", resume=True).run()
    assert summary.best_value == pytest.approx(2.0)  # (2-3)^2 + 0 + 1: the real keep
    assert _branch(d) == kept.commit


def test_the_branch_moved_to_a_discarded_candidate_stops_the_resume(tmp_path: Path) -> None:
    d, _ = _started(tmp_path)
    discarded = _records(d)[2]
    assert discarded.status is Status.DISCARD and discarded.commit
    _git(d, "update-ref", "refs/heads/autoresearch/t", discarded.commit)
    with pytest.raises(SessionError, match="never kept"):
        _loop(d, [_x(3.0)], tag="t", resume=True).run()
    assert _branch(d) == discarded.commit  # left as the user (or someone) put it


def test_the_branch_moved_back_to_an_older_keep_is_moved_to_the_last_keep(
    tmp_path: Path,
) -> None:
    d = make_toy_domain(tmp_path / "toy", git=True)
    _loop(d, [_x(1.0), _x(2.0)], tag="t").run()
    first, second = _records(d)[1:]
    assert first.status is second.status is Status.KEEP
    assert first.commit is not None
    _git(d, "update-ref", "refs/heads/autoresearch/t", first.commit)
    summary = _loop(d, [], tag="t", resume=True).run()
    assert _branch(d) == second.commit
    assert summary.best_value == pytest.approx(2.0)


def test_an_edited_results_tsv_is_regenerated_from_the_ledger(tmp_path: Path) -> None:
    d, _ = _started(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    tsv = d / "results.tsv"
    forged = "commit\tscore\tmemory_gb\tstatus\tdescription\tid\ttag\treason\n"
    forged += "deadbee\t0.000001\t0.0\tkeep\tforged\t99\tt\tforged\n"
    tsv.unlink()
    tsv.symlink_to(victim)
    victim.write_text(forged)
    _loop(d, [_x(3.0)], tag="t", resume=True).run()
    assert victim.read_text() == forged  # the link was replaced, never written through
    assert not tsv.is_symlink()
    rows = _tsv_rows(d)
    assert [r[3] for r in rows[1:]] == ["keep", "keep", "discard", "keep"]
    assert "forged" not in tsv.read_text()


# -- 4. results.tsv's columns -----------------------------------------------------------------


def test_tabs_and_newlines_in_a_description_never_split_a_column(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "toy", git=True)
    nasty = "a\tb\nc\r\nd\x0be\x0cf\x1cg\x1dh\x1ei\x85j\u2028k\u2029l"
    _loop(d, [_x(2.0, nasty, nasty), _x(-9.0, "crash\tme")], tag="t").run()
    rows = _tsv_rows(d)
    assert rows[0] == COLUMNS
    assert len(rows) == 4 and all(len(r) == len(COLUMNS) for r in rows)
    assert rows[2][4] == "a b c d e f g h i j k l"
    # splitlines() (what many readers use) sees the same rows as csv does.
    assert len((d / "results.tsv").read_text(encoding="utf-8").splitlines()) == 4


@pytest.mark.parametrize("metric", ["my\tscore", "my\nscore", "my\u2028score"])
def test_a_metric_name_with_a_tab_or_newline_never_splits_results_tsv(
    tmp_path: Path, metric: str
) -> None:
    """A `source = "json"` objective may name its metric with any JSON key; the header of
    results.tsv takes the name as it is (``Ledger.write_results_tsv``)."""
    d = make_toy_domain(tmp_path / "toy", git=True)
    toml = d / "autoresearch.toml"
    text = toml.read_text().replace(
        'metric = "score"', f'metric = {json.dumps(metric)}\nsource = "json"'
    )
    toml.write_text(text)
    _git(d, "commit", "-qam", "json metric")

    def handler(spec: RunSpec) -> str | FakeRun:
        (spec.workdir / "metrics.json").write_text(json.dumps({metric: 1.5}))
        return "done\n"

    try:
        _loop(d, [_x(2.0)], tag="t", sandbox=FakeSandbox(handler)).run()
    except ConfigError as e:  # refusing such a name, naming it, is a safe answer
        assert "metric" in str(e)
        return
    lines = (d / "results.tsv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3, lines
    assert all(len(line.split("\t")) == len(COLUMNS) for line in lines), lines

"""Data candidates (a prompt the fixed evaluator sends to a provider): named keys reach
``eval_command`` only, never ``command``, and the declaration is refused where an editable
file could be code."""

from __future__ import annotations

import hashlib
import subprocess
import textwrap
from pathlib import Path

import pytest

from autoresearch import Candidate, ConfigError, Edit, Ledger, Loop, Status
from autoresearch.proposers import Scripted

KEY = "sk-voice-provider-5e1d0c4b9a7f"
# The command (run on the candidate's prompt) tries every way to the key it can think of.
COMMAND = textwrap.dedent(
    """\
    import os, pathlib
    seen = [k for k, v in os.environ.items() if v == os.environ.get("PROBE", "-")]
    leaks = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"KEY_VALUE" in pathlib.Path(f"/proc/{pid}/environ").read_bytes():
                leaks.append(pid)
        except OSError:
            pass
    print("command env has key:", "VOICE_API_KEY" in os.environ, "proc leaks:", leaks)
    """
).replace("KEY_VALUE", KEY)
# The fixed evaluator proves it got the key without printing it.
EVALUATE = textwrap.dedent(
    """\
    import hashlib, os, pathlib
    key = os.environ.get("VOICE_API_KEY", "")
    prompt = pathlib.Path("prompt.txt").read_text()
    print("eval key digest:", hashlib.sha256(key.encode()).hexdigest()[:16])
    print("---")
    print(f"score: {10 - len(prompt.split())}")
    """
)


def _domain(tmp: Path, extra: str = "", editable: str = '["prompt.txt"]') -> Path:
    d = tmp / "voice"
    d.mkdir()
    (d / "prompt.txt").write_text("You are a helpful voice agent.\n")
    (d / "probe.py").write_text(COMMAND)
    (d / "evaluate.py").write_text(EVALUATE)
    (d / "program.md").write_text("Shorten the prompt.\n")
    (d / "autoresearch.toml").write_text(
        textwrap.dedent(
            f"""\
            name = "voice"
            editable = {editable}
            fixed = ["probe.py", "evaluate.py"]
            command = "python probe.py"
            eval_command = "python evaluate.py"
            time_budget_s = 20
            {extra}

            [objective]
            metric = "score"
            direction = "maximize"
            """
        )
    )
    subprocess.run(["git", "init", "-q", str(d)], check=True)
    subprocess.run(["git", "-C", str(d), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(d), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "v"],
        check=True,
    )
    return d


def _logs(d: Path, name: str) -> str:
    return "".join(p.read_text() for p in sorted((d / ".autoresearch").rglob(name)))


@pytest.mark.usefixtures("namespaces")
def test_the_key_reaches_the_evaluator_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOICE_API_KEY", KEY)
    d = _domain(tmp_path, 'editable_are_data = true\neval_secrets = ["VOICE_API_KEY"]')
    shorter = Candidate("shorter", (Edit("prompt.txt", content="Be brief.\n"),))
    Loop.from_dir(d, proposer=Scripted([shorter]), tag="t").run()
    records = Ledger(d / ".autoresearch" / "ledger.sqlite").history("t")
    assert [r.status for r in records] == [Status.KEEP, Status.KEEP]
    digest = hashlib.sha256(KEY.encode()).hexdigest()[:16]
    assert _logs(d, "eval*.log").count(f"eval key digest: {digest}") == 2
    command_logs = _logs(d, "run*.log")
    assert command_logs.count("command env has key: False proc leaks: []") == 2, command_logs
    assert KEY not in command_logs + _logs(d, "eval*.log")


def test_control_without_eval_secrets_the_evaluator_gets_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same domain without the declaration: the scrubbed environment has no key, so the
    # digest above really is the key's and not an empty string's.
    monkeypatch.setenv("VOICE_API_KEY", KEY)
    d = _domain(tmp_path)
    Loop.from_dir(d, proposer=Scripted([]), tag="t").run()
    empty = hashlib.sha256(b"").hexdigest()[:16]
    assert f"eval key digest: {empty}" in _logs(d, "eval*.log")


@pytest.mark.parametrize(
    ("extra", "editable", "message"),
    [
        ('eval_secrets = ["VOICE_API_KEY"]', '["prompt.txt"]', "needs editable_are_data"),
        ("editable_are_data = true", '["probe.py"]', "is code"),
        ("editable_are_data = true", '["prompts/*"]', "data extension"),
        ('editable_are_data = true\neval_secrets = ["VOICE_URL"]', '["prompt.txt"]', "credential"),
    ],
)
def test_the_declaration_is_refused_where_code_could_run(
    tmp_path: Path, extra: str, editable: str, message: str
) -> None:
    d = _domain(tmp_path, extra, editable)
    with pytest.raises(ConfigError, match=message):
        Loop.from_dir(d, proposer=Scripted([]), tag="t")
    assert not (d / ".autoresearch").exists()


def test_an_executable_editable_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOICE_API_KEY", KEY)
    d = _domain(tmp_path, 'editable_are_data = true\neval_secrets = ["VOICE_API_KEY"]')
    (d / "prompt.txt").chmod(0o755)
    subprocess.run(["git", "-C", str(d), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(d), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
        check=True,
    )
    with pytest.raises(ConfigError, match="executable"):
        Loop.from_dir(d, proposer=Scripted([]), tag="t").run()


def test_a_missing_key_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICE_API_KEY", raising=False)
    d = _domain(tmp_path, 'editable_are_data = true\neval_secrets = ["VOICE_API_KEY"]')
    with pytest.raises(ConfigError, match="VOICE_API_KEY, which is not set"):
        Loop.from_dir(d, proposer=Scripted([]), tag="t").run()

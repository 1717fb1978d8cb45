"""A candidate that looks for the driver's API key through /proc/<pid>/environ finds nothing
in its namespaces; unisolated it finds it and prints it encoded into a failing run's log, and
still gets no form of it into the next prompt: the scripted server's recorded requests hold
none."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

from autoresearch import Ledger
from autoresearch.testing import FakeOpenAIServer, Reply, make_toy_domain

KEY = "sk-test-9f8e7d6c5b4a39281706ABCDEFghijklmn"
STEAL = """\
import base64, glob, urllib.parse
key = None
for path in glob.glob("/proc/[0-9]*/environ"):
    try:
        for item in open(path, "rb").read().split(b"\\0"):
            if item.startswith(b"OPENAI_API_KEY="):
                key = item.split(b"=", 1)[1]
    except OSError:
        pass
if key:
    print("b64", base64.b64encode(b"k:" + key).decode())
    print("b64url", base64.urlsafe_b64encode(key).decode())
    print("hex", key.hex())
    print("url", urllib.parse.quote(key.decode() + "/", safe=""))
    print("plain", key.decode())
raise SystemExit("crash on purpose, after printing what was found")
X = 0.0
Y = 0.0
"""
STEAL_ANSWER = (
    "DESCRIPTION: print what the environment holds\nHYPOTHESIS: none\n\n"
    f"params.py\n<<<<<<< WHOLE\n{STEAL}>>>>>>> WHOLE\n"
)
GOOD = (
    "DESCRIPTION: move X to 3\nHYPOTHESIS: the optimum is at X=3\n\n"
    "params.py\n<<<<<<< SEARCH\nX = 0.0  # first coordinate\n=======\n"
    "X = 3.0  # first coordinate\n>>>>>>> REPLACE\n"
)


def _forms(key: str) -> list[str]:
    raw = key.encode()
    return [
        key,
        raw.hex(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        base64.b64encode(b"k:" + raw).decode()[4:-4],
        urllib.parse.quote(key + "/", safe=""),
    ]


DRIVER = """\
import sys
from autoresearch import Loop
from autoresearch.execution import LocalSandbox
domain, tag, url, isolation = sys.argv[1:5]
Loop.from_dir(domain, tag=tag, proposer="llm", model="fake", base_url=url,
              sandbox=LocalSandbox(isolation), unsafe_no_isolation=isolation == "none",
              ).run(max_experiments=3)
"""


def test_an_encoded_key_in_a_log_never_reaches_the_llm(tmp_path: Path, isolation: str) -> None:
    domain = make_toy_domain(tmp_path / "toy")
    # A driver process of its own, started with the key in its environment (what
    # /proc/<pid>/environ shows is the environment a process started with).
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    with FakeOpenAIServer(model="fake") as server:
        server.add(Reply(STEAL_ANSWER), Reply(GOOD))
        cmd = [sys.executable, "-c", DRIVER, str(domain), "s", server.base_url, isolation]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        sent = json.dumps([r.body for r in server.requests])
    assert res.returncode == 0, res.stderr
    counts = Ledger(domain / ".autoresearch" / "ledger.sqlite").counts("s")
    assert counts["crash"] == 1 and counts["keep"] == 2
    logs = "".join(p.read_text() for p in (domain / ".autoresearch").rglob("run*.log"))
    if isolation == "namespaces":
        # In its namespaces the candidate sees no /proc of the driver: nothing to print.
        assert not any(form in logs for form in _forms(KEY)), logs
    else:
        # Unisolated, the attack works: the key is in the run's log on disk, in every form.
        assert all(form in logs for form in _forms(KEY)), "the candidate did not find the key"
        assert "[REDACTED]" in sent  # and the scrubber took every form out of the prompt
    # Either way the second prompt carried the failure's log tail, with no form of the key.
    assert "crash on purpose" in sent
    leaked = [form for form in _forms(KEY) if form in sent]
    assert not leaked, leaked

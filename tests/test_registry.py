"""Names for plug-ins: a bad name or option fails before anything exists on disk, installed
packages add names through entry points, and old ``objectives.*`` class paths still load."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
from conftest import git, ledger_records, set_x

from autoresearch import ConfigError, Loop, Status
from autoresearch._config import ObjectiveConfig
from autoresearch._objective import load_objective
from autoresearch.testing import FakeSandbox, Scripted, make_toy_domain

ROOT = Path(__file__).resolve().parents[1]


def _nothing_behind(domain: Path, branches_before: str | None) -> None:
    assert not (domain / ".autoresearch").exists(), "a state folder (ledger, lock) was created"
    assert not (domain / "results.tsv").exists()
    if branches_before is None:
        assert not (domain / ".git").exists(), "a repository was created"
    else:
        assert git(domain, "branch", "--list") == branches_before, "a branch was created"


@pytest.mark.parametrize(
    ("options", "error", "says", "in_git"),
    [
        ({"proposer": "nope"}, ConfigError, "unknown proposer 'nope'", True),
        ({"proposer": "nope"}, ConfigError, "unknown proposer 'nope'", False),
        ({"proposer": "llm"}, ConfigError, "no model", True),
        ({"proposer": "scripted"}, ConfigError, "needs a script", True),
        ({"acceptance": "nope"}, ConfigError, "unknown acceptance policy 'nope'", True),
        ({"overrides": {"acceptance.policy": "nope"}}, ConfigError, "policy 'nope'", True),
        ({"overrides": {"time_budget_s": -1}}, ConfigError, "time_budget_s", True),
        ({"proposr": "knob"}, TypeError, "proposr", True),
        ({"proposr": "knob"}, TypeError, "proposr", False),
    ],
    ids=["proposer", "proposer-plain-folder", "llm-no-model", "scripted-no-script",
         "acceptance", "policy-field", "field", "misspelt-option", "misspelt-option-plain"],
)  # fmt: skip
def test_a_bad_name_or_option_leaves_nothing_behind_and_a_retry_works(
    tmp_path: Path, options: dict[str, Any], error: type[Exception], says: str, in_git: bool
) -> None:
    d = make_toy_domain(tmp_path / "toy", git=in_git)
    branches = git(d, "branch", "--list") if in_git else None
    with pytest.raises(error, match=says):
        Loop.from_dir(d, tag="t", sandbox=FakeSandbox(), **options).run(max_experiments=2)
    _nothing_behind(d, branches)
    retry = Scripted([set_x(3.0)])
    summary = Loop.from_dir(d, proposer=retry, tag="t", sandbox=FakeSandbox()).run()
    assert summary.tag == "t" and summary.experiments == 2 and summary.best_value == 2.0


def test_a_spend_limit_a_proposer_cannot_honour_stops_before_anything_exists(
    toy: Path,
) -> None:
    branches = git(toy, "branch", "--list")
    loop = Loop.from_dir(
        toy, proposer="llm", model="mystery-model", base_url="http://127.0.0.1:9/v1", tag="t"
    )
    with pytest.raises(ConfigError, match="price_in_per_mtok_usd"):
        loop.run(max_cost_usd=1.0)
    _nothing_behind(toy, branches)


PLUGINS = """\
from autoresearch import Acceptance, Candidate, Decision, Edit, Proposer, Verdict


class Mine(Proposer):
    name = "mine"

    def __init__(self):
        self.left = 1

    def propose(self, context):
        if not self.left:
            return None
        self.left -= 1
        return Candidate("mine: X to 3", (Edit("params.py", search="X = 0.0", replace="X = 3.0"),))


class KeepAll(Acceptance):
    name = "keep-all"

    def decide(self, evidence):
        return Decision(Verdict.KEEP, "keep-all keeps everything")
"""

ENTRY_POINTS = """\
[autoresearch.proposers]
mine = mine_plugins:Mine
knob = mine_plugins:Mine
broken = mine_plugins.missing:Nope

[autoresearch.acceptance]
keep-all = mine_plugins:KeepAll
"""

DRIVER = """\
import json, sys
from pathlib import Path
from autoresearch import ConfigError, Loop
from autoresearch.proposers import PROPOSERS, Knob
from autoresearch.acceptance import POLICIES
from autoresearch.testing import FakeSandbox, Scripted, make_toy_domain

d = make_toy_domain(Path(sys.argv[1]), git=True)
summary = Loop.from_dir(
    d, proposer="mine", acceptance="keep-all", sandbox=FakeSandbox(), tag="ep"
).run()
try:
    Loop.from_dir(d, proposer="broken")
    broken = None
except ConfigError as e:
    broken = str(e)
print(json.dumps({
    "proposers": PROPOSERS.names(),
    "policies": POLICIES.names(),
    "knob_is_builtin": PROPOSERS.get("knob", "proposer") is Knob,
    "counts": dict(summary.counts),
    "broken": broken,
}))
"""


def test_an_installed_package_adds_names_through_entry_points(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "mine_plugins").mkdir(parents=True)
    (site / "mine_plugins" / "__init__.py").write_text(PLUGINS)
    dist = site / "mine_plugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mine-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    env_path = f"{site}:{ROOT}"
    out = subprocess.run(
        [sys.executable, "-c", DRIVER, str(tmp_path / "toy")],
        capture_output=True,
        text=True,
        env={**_env(), "PYTHONPATH": env_path},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout.splitlines()[-1])
    assert "mine" in data["proposers"] and "keep-all" in data["policies"]
    assert data["knob_is_builtin"], "a built-in name must win over an entry point"
    assert data["counts"]["keep"] == 2  # the baseline and Mine's candidate
    recs = ledger_records(tmp_path / "toy", "ep")
    assert recs[1].proposer == "mine" and recs[1].reason == "keep-all keeps everything"
    assert recs[1].status is Status.KEEP
    assert "broken" in data["broken"] and "mine_plugins.missing:Nope" in data["broken"]


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_an_old_objectives_path_loads_with_a_future_warning() -> None:
    from autoresearch.objectives.ml import ValBpb

    config = ObjectiveConfig.model_validate({"class": "objectives.ml:ValBpb"})
    with pytest.warns(FutureWarning, match=r"autoresearch\.objectives\.ml:ValBpb"):
        objective = load_objective(config)
    assert type(objective) is ValBpb


def test_the_new_objectives_path_loads_without_a_warning() -> None:
    config = ObjectiveConfig.model_validate({"class": "autoresearch.objectives.ml:ValBpb"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_objective(config)


def test_the_moved_trading_objective_points_at_the_domains_file(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "toy")
    with pytest.raises(ConfigError, match=r"trading_sharpe domain's objective\.py") as info:
        Loop.from_dir(d, overrides={"objective.class": "objectives.trading:SharpeObjective"})
    assert "objective:SharpeObjective" in str(info.value)
    assert not (d / ".autoresearch").exists()


def test_a_domains_own_objective_module_loads_from_its_file(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "toy")
    (d / "objective.py").write_text(
        textwrap.dedent("""\
        from autoresearch import Measurement, Objective

        class Constant(Objective):
            def measure(self, run):
                return Measurement(7.0)
        """)
    )
    before = list(sys.path)
    loop = Loop.from_dir(d, overrides={"objective.class": "objective:Constant"})
    assert type(loop.objective).__name__ == "Constant"
    assert sys.path == before, "the domain folder stayed on sys.path"

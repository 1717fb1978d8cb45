"""ProposerContract: the Proposer contract as a test suite to inherit (see the testing
package's docstring for how a contract suite is used)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from autoresearch._config import load_config
from autoresearch._layout import STATE_DIRNAME, Layout
from autoresearch._ledger import Ledger
from autoresearch._types import ExperimentKind, HistoryEntry, Status
from autoresearch.proposers._base import Proposer, ProposerSettings
from autoresearch.testing._checks import check_candidate, observed_record, tree_state
from autoresearch.testing._fakes import domain_context, make_record
from autoresearch.testing._toy import make_toy_domain

# Outcomes the run-through reports to observe(), in turn: every kind of row a proposer meets.
_OBSERVED = (Status.DISCARD, Status.KEEP, Status.CRASH, Status.INVALID)
# Folders of a domain that are the engine's or git's, not the domain's own files.
_NOT_DOMAIN_FILES = (".git", STATE_DIRNAME)


class ProposerContract:
    """The :class:`~autoresearch.Proposer` contract (see its docstring) as a test suite.

    Override :meth:`make_proposer`; a proposer tied to other files than the toy domain's
    overrides :meth:`make_domain` too. Checks: building (and ``check_budget``) creates no
    file; one run in the documented order (``start``, ``restore([])``, ``propose`` +
    ``observe`` for each outcome a row can have, ``close``) gives candidates with a
    description whose edits apply within the editable files, and never edits the folder
    itself; a second proposer restored from the first one's records goes on; ``close``
    works right after ``start``.
    """

    #: Proposals made in the run-through (fewer if ``propose`` returns None).
    rounds: int = 2

    def make_proposer(self, domain_dir: Path) -> Proposer:
        """Build the proposer under test for ``domain_dir`` (create nothing on disk)."""
        raise NotImplementedError("override make_proposer(domain_dir) in your test class")

    def make_domain(self, path: Path) -> Path:
        """The domain folder proposals are made for (default: the toy domain, in git)."""
        return make_toy_domain(path, git=True)

    # -- the checks ----------------------------------------------------------------------
    def test_is_a_proposer_with_a_name(self, tmp_path: Path) -> None:
        proposer = self.make_proposer(self._domain(tmp_path))
        assert isinstance(proposer, Proposer), f"{type(proposer).__name__} is not a Proposer"
        assert isinstance(proposer.name, str) and proposer.name.strip(), (
            "Proposer.name (stored with every experiment) must be a non-empty string"
        )

    def test_building_and_check_budget_create_nothing(self, tmp_path: Path) -> None:
        domain = self._domain(tmp_path)
        before = tree_state(domain, skip=(".git",))
        proposer = self.make_proposer(domain)
        proposer.check_budget(None, None)
        after = tree_state(domain, skip=(".git",))
        assert after == before, (
            "building the proposer or check_budget() wrote files "
            f"({sorted(set(after) ^ set(before)) or 'changed contents'}); "
            "files belong in start()"
        )

    def test_one_run_in_the_documented_order(self, tmp_path: Path) -> None:
        domain = self._domain(tmp_path)
        proposer = self.make_proposer(domain)
        proposer.check_budget(None, None)
        self._start(proposer, domain)
        try:
            proposer.restore([])
            history: list[HistoryEntry] = []
            for i in range(self.rounds):
                exp = i + 2  # experiment 1 is the baseline
                before = tree_state(domain, skip=_NOT_DOMAIN_FILES)
                context = domain_context(domain, experiment_id=exp, history=history, best_value=1.0)
                candidate = proposer.propose(context)
                assert tree_state(domain, skip=_NOT_DOMAIN_FILES) == before, (
                    "propose() changed files of the domain folder; a proposer returns edits "
                    "and never runs or applies them"
                )
                if candidate is None:
                    break
                check_candidate(candidate, domain)
                status = _OBSERVED[i % len(_OBSERVED)]
                record = observed_record(exp, candidate, status)
                proposer.observe(candidate, record)
                history.append(HistoryEntry(exp, status, candidate.description, record.value, None))
        finally:
            proposer.close()

    def test_a_resumed_proposer_goes_on_from_the_records(self, tmp_path: Path) -> None:
        domain = self._domain(tmp_path)
        baseline = make_record(
            id=1,
            tag="contract",
            status=Status.KEEP,
            description="baseline",
            proposer="baseline",
            kind=ExperimentKind.BASELINE,
        )
        first = self.make_proposer(domain)
        self._start(first, domain)
        try:
            first.restore([baseline])
            candidate = first.propose(domain_context(domain, experiment_id=2))
            records = [baseline]
            if candidate is not None:
                check_candidate(candidate, domain)
                record = replace(observed_record(2, candidate), tag="contract", proposer=first.name)
                first.observe(candidate, record)
                records.append(record)
        finally:
            first.close()
        # The driver stopped; a new one restores a fresh proposer from the ledger's rows.
        second = self.make_proposer(domain)
        self._start(second, domain)
        try:
            second.restore(records)
            nxt = second.propose(domain_context(domain, experiment_id=len(records) + 1))
            if nxt is not None:
                check_candidate(nxt, domain)
        finally:
            second.close()

    def test_close_right_after_start(self, tmp_path: Path) -> None:
        domain = self._domain(tmp_path)
        proposer = self.make_proposer(domain)
        self._start(proposer, domain)
        proposer.restore([])
        proposer.close()  # an interruption before the first proposal

    # -- helpers -------------------------------------------------------------------------
    def _domain(self, tmp_path: Path) -> Path:
        return self.make_domain(tmp_path / "domain")

    def _start(self, proposer: Proposer, domain: Path) -> ProposerSettings:
        """``start`` as a run calls it: the state folder and its ledger exist."""
        config, _ = load_config(domain)
        layout = Layout(domain)
        layout.state_dir.mkdir(parents=True, exist_ok=True)
        Ledger(layout.ledger).close()
        settings = ProposerSettings(config, domain, layout.state_dir, layout.ledger, "contract")
        proposer.start(settings)
        return settings


__all__ = ["ProposerContract"]

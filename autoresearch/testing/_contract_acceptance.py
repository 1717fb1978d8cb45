"""AcceptanceContract: the Acceptance contract as a test suite to inherit."""

from __future__ import annotations

import random
import statistics

from autoresearch.acceptance._base import Acceptance, Decision, Evidence, Verdict


class AcceptanceContract:
    """The :class:`~autoresearch.Acceptance` contract (see its docstring) as a test suite.

    Override :meth:`make_acceptance`. Checks: ``decide`` returns a Decision for every kind of
    evidence (no sigma yet, one incumbent run, a deterministic metric, either direction);
    the policy is pure (the same evidence, the same decision, whatever came between) and
    symmetric in the direction; ``calibration_runs`` is a count; driven the way the loop
    drives it (runs asked for, up to ``max_runs_per_candidate``; every incumbent run it asks
    for taken beside the candidate's and passed as ``Evidence.paired``), it decides within a
    bounded number of rounds, keeps a candidate far better than the incumbent and never
    keeps one far worse. Driven by a caller that takes no pairs (``paired=None``), it still
    decides and never keeps a far worse candidate.

    Set ``holds_under_drift = True`` for a policy whose keeps rest on pairs: it must then
    not keep an unchanged candidate whose runs (and the incumbent runs beside them) all came
    during a load that shifted every run's value far past the incumbent's older runs.
    """

    #: The standard deviation of one run in the simulated streams (metric units).
    sigma: float = 0.02
    #: How far (in sigma) the clearly better and clearly worse candidates are from the incumbent.
    clear_gap_sigma: float = 50.0
    #: Rounds of decide() after which the policy counts as never deciding.
    max_rounds: int = 100
    #: Whether the policy claims that a drift of the machine's load cannot make a keep.
    holds_under_drift: bool = False
    #: How far (in sigma) that drift shifts every run taken during the experiment.
    drift_sigma: float = 8.0

    def make_acceptance(self) -> Acceptance:
        """Build the policy under test."""
        raise NotImplementedError("override make_acceptance() in your test class")

    # -- the checks ----------------------------------------------------------------------
    def test_decide_returns_a_decision_for_any_evidence(self) -> None:
        policy = self.make_acceptance()
        for evidence in self._evidence():
            d = policy.decide(evidence)
            assert isinstance(d, Decision), f"decide() returned {type(d).__name__}"
            assert isinstance(d.verdict, Verdict) and isinstance(d.reason, str)
            if d.verdict is Verdict.MEASURE:
                assert d.more_candidate >= 0 and d.more_incumbent >= 0

    def test_the_policy_is_pure(self) -> None:
        policy = self.make_acceptance()
        evidence = self._evidence()
        first = [policy.decide(e) for e in evidence]
        for n in range(20):
            policy.calibration_runs(n)
        again = [policy.decide(e) for e in reversed(evidence)][::-1]
        assert first == again, "the same evidence got another decision: policies hold no state"
        assert [self.make_acceptance().decide(e) for e in evidence] == first

    def test_directions_are_symmetric(self) -> None:
        policy = self.make_acceptance()
        for e in self._evidence(direction="maximize"):
            flipped = Evidence(
                tuple(-v for v in e.candidate),
                tuple(-v for v in e.incumbent),
                "minimize",
                e.noise_sigma,
                None if e.paired is None else tuple(-v for v in e.paired),
            )
            a, b = policy.decide(e), policy.decide(flipped)
            assert (a.verdict, a.more_candidate, a.more_incumbent) == (
                b.verdict,
                b.more_candidate,
                b.more_incumbent,
            ), f"maximize {e} gave {a}, the same values negated and minimized gave {b}"

    def test_calibration_runs_is_a_count(self) -> None:
        policy = self.make_acceptance()
        for done in range(50):
            n = policy.calibration_runs(done)
            assert isinstance(n, int) and n >= 0, f"calibration_runs({done}) = {n!r}"
            assert policy.calibration_runs(done) == n
        assert isinstance(policy.max_runs_per_candidate, int)
        assert policy.max_runs_per_candidate >= 1

    def test_a_clearly_better_candidate_is_kept(self) -> None:
        for direction in ("maximize", "minimize"):
            for seed in range(3):
                verdict = self._drive(self.clear_gap_sigma, direction, seed)
                assert verdict is Verdict.KEEP, (
                    f"a candidate {self.clear_gap_sigma:g} sigma better ({direction}) was "
                    f"{verdict.value}"
                )

    def test_a_clearly_worse_candidate_is_never_kept(self) -> None:
        for direction in ("maximize", "minimize"):
            for seed in range(3):
                verdict = self._drive(-self.clear_gap_sigma, direction, seed)
                assert verdict is Verdict.DISCARD, (
                    f"a candidate {self.clear_gap_sigma:g} sigma worse ({direction}) was kept"
                )

    def test_without_pairs_it_still_decides_and_never_keeps_a_clearly_worse_one(self) -> None:
        for direction in ("maximize", "minimize"):
            for seed in range(3):
                verdict = self._drive(-self.clear_gap_sigma, direction, seed, pairs=False)
                assert verdict is Verdict.DISCARD, (
                    f"without pairs, a candidate {self.clear_gap_sigma:g} sigma worse "
                    f"({direction}) was kept"
                )
                self._drive(self.clear_gap_sigma, direction, seed, pairs=False)  # decides

    def test_a_drift_of_the_load_is_not_a_keep(self) -> None:
        if not self.holds_under_drift:
            return
        trials = [(d, seed) for d in ("maximize", "minimize") for seed in range(12)]
        kept = [
            (d, seed)
            for d, seed in trials
            if self._drive(0.0, d, seed, drift_sigma=self.drift_sigma) is Verdict.KEEP
        ]
        # An unchanged candidate is kept at the policy's false-keep rate (a few percent),
        # not at the near-certainty a comparison with the incumbent's older runs gives.
        assert len(kept) <= len(trials) // 4, (
            f"an unchanged candidate measured under a load that moved every run "
            f"{self.drift_sigma:g} sigma the good way was kept in {len(kept)} of "
            f"{len(trials)} trials: {kept}"
        )

    # -- helpers -------------------------------------------------------------------------
    def _evidence(self, direction: str | None = None) -> list[Evidence]:
        s = self.sigma
        inc = (1.0, 1.0 + s, 1.0 - s, 1.0, 1.0 + s / 2, 1.0 - s / 2)
        out = []
        for d in (direction,) if direction else ("maximize", "minimize"):
            out += [
                Evidence((1.0 + 3 * s,), (1.0,), d, None),  # only the baseline, no sigma
                Evidence((1.0 - 3 * s,), inc, d, s),
                Evidence((1.0 + 3 * s, 1.0 + 2 * s), inc, d, s),
                Evidence((1.0 + s / 10,) * 3, inc, d, s),
                Evidence((1.0,), (1.0,) * 6, d, 0.0),  # a deterministic metric, no change
                Evidence((1.5,), (1.0,) * 6, d, 0.0),
                # The loop's evidence: pairs taken beside the candidate's runs, none yet, one
                # failed (NaN), and a drifted pair.
                Evidence((1.0 + 3 * s,), inc, d, s, ()),
                Evidence((1.0 + 3 * s,), inc, d, s, (1.0 + s,)),
                Evidence((1.0 + 3 * s, 1.0 + 2 * s), inc, d, s, (1.0, float("nan"))),
                Evidence((1.0 + 9 * s,) * 3, inc, d, s, (1.0 + 9 * s,) * 3),
                Evidence((1.0,), (1.0,) * 6, d, 0.0, ()),
            ]
        return out

    def _drive(
        self,
        gap_sigma: float,
        direction: str,
        seed: int,
        *,
        pairs: bool = True,
        drift_sigma: float = 0.0,
    ) -> Verdict:
        """Decide on a candidate ``gap_sigma`` better than the incumbent, as the loop does:
        the baseline and calibration runs first, then whatever MEASURE asks for, each
        incumbent run of the experiment passed as ``paired`` (``pairs=False``: a caller that
        takes none). ``drift_sigma`` moves every run of the experiment by that many sigma
        the good way, as a change of the machine's load would."""
        policy = self.make_acceptance()
        rng = random.Random(seed)
        sign = 1.0 if direction == "maximize" else -1.0
        inc_mean, cand_mean = 1.0, 1.0 + sign * gap_sigma * self.sigma
        shift = sign * drift_sigma * self.sigma

        def draw(mean: float) -> float:
            return mean + rng.gauss(0.0, self.sigma)

        incumbent = [draw(inc_mean) for _ in range(1 + policy.calibration_runs(0))]
        sigma = statistics.stdev(incumbent) if len(incumbent) >= 2 else None
        candidate = [draw(cand_mean) + shift]
        paired: list[float] = []
        for _ in range(self.max_rounds):
            evidence = Evidence(
                tuple(candidate),
                tuple(incumbent),
                direction,
                sigma,
                tuple(paired) if pairs else None,
            )
            d = policy.decide(evidence)
            if d.verdict is not Verdict.MEASURE:
                return d.verdict
            if d.more_candidate > 0 and len(candidate) >= policy.max_runs_per_candidate:
                return Verdict.DISCARD  # past the limit, a MEASURE counts as a discard
            for i in range(max(d.more_candidate, d.more_incumbent)):
                if i < d.more_incumbent:
                    incumbent.append(draw(inc_mean) + shift)
                    paired.append(incumbent[-1])
                if i < d.more_candidate:
                    candidate.append(draw(cand_mean) + shift)
        raise AssertionError(f"no decision after {self.max_rounds} rounds of runs")


__all__ = ["AcceptanceContract"]

"""Verdict rules on hand-made outcomes: bimodal restarts, still-falling trajectories."""
import numpy as np
import pytest

from refvae.verify import rules
from refvae.verify.registry import Outcome, Part, Row


def test_paired_judges_restart_by_restart_not_by_means():
    # bimodal: a's mean is far above b's, but b wins one restart, so "a beats b" fails with 3 restarts
    a, b = [5.0, 5.1, -1.0], [0.0, 0.1, 0.0]
    res = rules.paired(a, b)
    assert not res.holds and res.wins == 2 and res.n == 3
    # intervals mean +- sd overlap, yet a wins every restart: the paired rule says it holds
    a, b = [1.0, 2.0, 3.0], [0.9, 1.9, 2.9]
    assert rules.paired(a, b).holds and rules.paired(a, b, margin=0.05).holds
    assert not rules.paired(a, b, margin=0.2).holds
    assert rules.paired(b, a, higher_is_better=False).holds


def test_paired_uses_a_sign_test_from_five_restarts():
    assert rules.wins_needed(3) == 3 and rules.wins_needed(5) == 5 and rules.wins_needed(10) == 9
    assert rules.sign_test_p(9, 10) == pytest.approx(11 / 1024)
    a = np.arange(10.0)
    b = a - 1.0
    b[0] = 100.0                                     # one loss in ten: still p = 0.011
    assert rules.paired(a, b).holds
    b[1] = 100.0                                     # two losses: p = 0.055, fails
    assert not rules.paired(a, b).holds


def test_matches_and_errors():
    assert rules.matches([1.0, 2.0], [1.05, 1.96], tol=0.1).holds
    assert not rules.matches([1.0, 2.0], [1.05, 2.5], tol=0.1).holds
    with pytest.raises(ValueError, match="one value per restart"):
        rules.paired([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="tol must be > 0"):
        rules.matches([1.0], [1.0], tol=0)


def test_settled_flags_a_still_falling_trajectory():
    t = np.linspace(0, 1, 1000)
    falling = 0.02 + 0.05 * np.exp(-3 * t)           # still annealing at the end
    flat = 0.007 + 0.05 * np.exp(-200 * t)           # settled long before the end
    res = rules.settled(np.stack([falling, flat], axis=1))
    assert res.per_restart == [False, True] and not res.settled
    assert rules.settled(flat).settled
    noisy = flat + 1e-4 * np.random.default_rng(0).standard_normal(t.size)
    assert rules.settled(noisy, rtol=0.01).settled


def test_still_improving_per_restart():
    t = np.linspace(0, 1, 500)
    climbing, flat = -10 + 9 * t, np.full_like(t, -1.0)
    assert rules.still_improving(np.stack([climbing, flat], 1), tol=0.1) == [True, False]
    assert rules.still_improving(-climbing, tol=0.1, higher_is_better=False) == [True]


def test_outcome_verdict_from_parts():
    parts = [Part("IWAE beats LIN", True), Part("LIN beats the VAE", False)]
    o = Outcome(parts=parts, rows=[Row("LL", [1.0, 2.0], paper=1.5)])
    assert o.passed is False and o.verdict == "partly reproduced"
    assert Outcome(parts=[Part("x", True)]).verdict == "reproduced"
    assert Outcome(parts=[Part("x", False)]).verdict == "not reproduced"
    with pytest.raises(ValueError, match="contradicts"):
        Outcome(passed=True, parts=parts)
    with pytest.raises(ValueError, match="needs passed"):
        Outcome()


def test_not_judged_parts():
    comp = rules.paired([1.0, 2.0], [0.0, 0.0])
    judged, unjudged = rules.part("a beats b", comp), rules.part("a beats b", comp, judged=False)
    assert judged.holds is True and unjudged.holds is None and "1.000, 2.000" in judged.evidence
    assert Outcome(parts=[unjudged]).verdict == "not judged"
    assert Outcome(parts=[unjudged, judged]).verdict == "partly reproduced"
    assert Outcome(parts=[unjudged, Part("x", False)]).verdict == "not reproduced"
    assert Outcome(parts=[unjudged, judged]).passed is False

"""Verdict rules of ``refvae verify``, one implementation each, used by every empirical claim.

A paper's sentence such as "IWAE beats the VAE" is judged restart by restart, never by comparing
means of a few restarts whose outcomes may be bimodal, and never on a run that is still moving:

- ``paired(a, b)``: a beats b restart by restart (``a[r]`` and ``b[r]`` share restart r's data and
  initialisation). With fewer than ``SIGN_TEST_MIN`` restarts it must hold in every one; with more,
  a one-sided sign test at level ``alpha`` decides (10 restarts: at least 9 wins).
- ``matches(a, b, tol)``: a and b agree within ``tol`` in every restart.
- ``settled(trajectory)``: a recorded training trajectory has stopped moving: the mean of its last
  window differs from the mean of the window before by at most ``rtol`` of its scale plus ``atol``.
- ``still_improving(trajectory)``: the value at the end improved on the value at 0.8 T by more
  than ``tol``: a run still climbing at the end of its budget is flagged, not judged.

Each returns a small record with the per-restart numbers and the rule in words, so that a claim
reports not only its verdict but why.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SIGN_TEST_MIN = 5


def _values(name, a):
    a = np.asarray(a, dtype=float)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence (one value per restart), got shape {a.shape}")
    return a


def mean_sd(values):
    """Mean and sample standard deviation (ddof = 1; 0 for a single value) of per-restart values."""
    a = _values("values", values)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def fmt_mean_sd(values, digits=3):
    """'mean +- sd' of per-restart values."""
    m, s = mean_sd(values)
    return f"{m:.{digits}f} +- {s:.{digits}f}"


def fmt_values(values, digits=3):
    """The per-restart values, in order: '[v1, v2, ...]'."""
    return "[" + ", ".join(f"{v:.{digits}f}" for v in _values("values", values)) + "]"


def sign_test_p(wins, n):
    """One-sided sign-test p-value: P(at least ``wins`` of ``n`` fair coin flips)."""
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2 ** n


def wins_needed(n, alpha=0.05):
    """Wins out of n restarts that ``paired`` requires: all of them below ``SIGN_TEST_MIN`` restarts,
    else the fewest with a one-sided sign-test p-value <= ``alpha``."""
    if n < SIGN_TEST_MIN:
        return n
    return next(w for w in range(n + 1) if sign_test_p(w, n) <= alpha) if sign_test_p(n, n) <= alpha else n


@dataclass
class Comparison:
    """Outcome of ``paired`` or ``matches``: per-restart differences and the judgement."""
    holds: bool
    wins: int          # restarts in which the relation held
    n: int
    diffs: list        # a[r] - b[r]
    rule: str

    def __str__(self):
        return f"{self.wins} of {self.n} restarts ({self.rule})"


def paired(a, b, *, higher_is_better=True, margin=0.0, alpha=0.05):
    """Does ``a`` beat ``b`` restart by restart?

    Parameters
    ----------
    a, b : sequences of equal length R, one value per restart, paired by restart.
    higher_is_better : direction of "beats".
    margin : float >= 0, how much better a must be in a restart for it to count as a win.
    alpha : level of the one-sided sign test used from ``SIGN_TEST_MIN`` restarts on.
    """
    a, b = _values("a", a), _values("b", b)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have one value per restart each, got {a.size} and {b.size}")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    diffs = a - b if higher_is_better else b - a
    wins = int(np.sum(diffs > margin))
    need = wins_needed(a.size, alpha)
    word = "higher" if higher_is_better else "lower"
    by = f" by more than {margin:g}" if margin else ""
    rule = (f"{word}{by} in every restart" if need == a.size
            else f"{word}{by} in >= {need} of {a.size} restarts (one-sided sign test, p <= {alpha})")
    return Comparison(wins >= need, wins, int(a.size), (a - b).tolist(), rule)


def matches(a, b, tol):
    """Do ``a`` and ``b`` agree within ``tol`` (> 0) in every restart?"""
    a, b = _values("a", a), _values("b", b)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have one value per restart each, got {a.size} and {b.size}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    diffs = a - b
    wins = int(np.sum(np.abs(diffs) <= tol))
    return Comparison(wins == a.size, wins, int(a.size), diffs.tolist(), f"|difference| <= {tol:g} in every restart")


def _trajectory(trajectory):
    t = np.asarray(trajectory, dtype=float)
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2 or t.shape[0] < 4:
        raise ValueError(f"trajectory must have shape (T,) or (T, R) with T >= 4 recorded steps, got {t.shape}")
    return t


@dataclass
class Settling:
    """Outcome of ``settled``: per restart, the change between the last two windows and the verdict."""
    settled: bool
    per_restart: list      # bool per restart
    change: list           # last-window mean minus previous-window mean, per restart
    rule: str


def settled(trajectory, *, window=0.1, rtol=0.01, atol=0.0):
    """Has a recorded trajectory stopped moving?

    Parameters
    ----------
    trajectory : (T,) or (T, R) values in step order (a loss, a learned variance, ...).
    window : fraction of T in each of the two windows compared (the last, and the one before it).
    rtol, atol : a restart has settled when |mean(last) - mean(previous)| <= rtol * |mean(last)| + atol.
    """
    t = _trajectory(trajectory)
    if not 0 < window <= 0.5:
        raise ValueError(f"window must be in (0, 0.5], got {window}")
    w = max(2, int(round(window * t.shape[0])))
    last, prev = t[-w:].mean(axis=0), t[-2 * w:-w].mean(axis=0)
    change = last - prev
    ok = np.abs(change) <= rtol * np.abs(last) + atol
    rule = (f"mean of the last {w} recorded steps within {rtol:g} (relative)"
            + (f" + {atol:g}" if atol else "") + " of the mean of the previous " + str(w))
    return Settling(bool(ok.all()), ok.tolist(), change.tolist(), rule)


def still_improving(trajectory, *, at=0.8, tol=0.0, higher_is_better=True, window=0.02):
    """Per restart: did the value improve by more than ``tol`` between ``at`` * T and T?

    Values are window means (``window`` of T, at least one step) around each point, so that
    minibatch noise does not flag a flat run. Returns a list of bool, one per restart.
    """
    t = _trajectory(trajectory)
    if not 0 < at < 1:
        raise ValueError(f"at must be in (0, 1), got {at}")
    T = t.shape[0]
    w = max(1, int(round(window * T)))
    i = int(round(at * T))
    early = t[max(0, i - w):i].mean(axis=0) if i > 0 else t[0]
    late = t[-w:].mean(axis=0)
    gain = late - early if higher_is_better else early - late
    return (gain > tol).tolist()


def part(statement, comparison, evidence="", *, judged=True, digits=3):
    """A ``Part`` of a paper's statement judged by a ``paired`` or ``matches`` comparison.

    The evidence lists the per-restart differences after ``evidence``; ``judged=False`` (e.g. a run
    that has not ``settled``) records the comparison but leaves the part not judged (holds None).
    """
    from .registry import Part            # registry never imports rules; the import is one-way
    text = f"{evidence}; " if evidence else ""
    return Part(statement, comparison.holds if judged else None,
                f"{text}per-restart differences {fmt_values(comparison.diffs, digits)}", str(comparison))

"""Best mean-field (diagonal) Gaussian approximation of a full Gaussian.

Source: yacoby2020 (Yacoby, Pan, Doshi-Velez, "Characterizing and Avoiding
Problematic Global Optima of VAEs"), Appendix C.3, Eqs. 25-27; docs/math.md 4.2.

For a target p = N(mu, Sigma) and q = N(m, diag v), KL(q || p) separates into a
term in m, minimised at m = mu, and one independent term per coordinate,
-log v_i + v_i (Sigma^-1)_ii, minimised at v_i = 1 / (Sigma^-1)_ii.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from . import _checks, _gauss

__all__ = ["best_fit", "min_kl", "kl_diag", "MeanField"]

MeanField = namedtuple("MeanField", ["mean", "var"])
MeanField.__doc__ = "Moments of a diagonal Gaussian: mean (K,) and per-coordinate variance var (K,)."


def _precision_factor(cov):
    """Upper-triangular U with Sigma^-1 = U U^T (U = L^-T for Sigma = L L^T)."""
    L = _checks.cholesky("cov", cov)
    return _gauss.tri_solve(L, np.eye(L.shape[0])).T


def best_fit(mean, cov):
    """Diagonal Gaussian closest to N(mean, cov) in reverse KL, KL(q || p).

    Parameters
    ----------
    mean : array_like, shape (K,)
        Mean of the target Gaussian.
    cov : array_like, shape (K, K)
        Symmetric positive-definite covariance of the target.

    Returns
    -------
    MeanField
        ``(mean, var)``: the optimal q = N(mean, diag(var)); ``mean`` equals the
        target mean and ``var[i] = 1 / (cov^-1)[i, i]`` (shapes (K,), (K,)).

    Notes
    -----
    yacoby2020, App. C.3, Eq. 27. The variances are the conditional variances
    Var(z_i | z_-i) of the target, never larger than its marginal variances:
    the reverse-KL fit under-covers a correlated target.
    """
    mean = _checks.array("mean", mean, ndim=1)
    cov = _checks.spd_matrix("cov", cov)
    if mean.shape[0] != cov.shape[0]:
        raise ValueError(f"mean must have shape (K,) = ({cov.shape[0]},) to match cov of shape {cov.shape}, "
                         f"got {mean.shape}")
    U = _precision_factor(cov)
    return MeanField(mean.copy(), 1.0 / np.sum(U * U, axis=1))


def min_kl(cov):
    """KL(q* || p) of the best diagonal fit q* to a Gaussian p with covariance ``cov``.

    Parameters
    ----------
    cov : array_like, shape (K, K)
        Symmetric positive-definite covariance of the target (its mean is
        irrelevant: q* matches it exactly).

    Returns
    -------
    float
        ``0.5 * (sum_i log P_ii - log det P)`` with ``P = cov^-1``; >= 0 by
        Hadamard's inequality and 0 exactly when ``cov`` is diagonal.

    Notes
    -----
    docs/math.md 4.2; follows from yacoby2020 App. C.3 by substituting the optimal
    variances into the Gaussian KL. Evaluated from a triangular factor of P so
    that each summand is a log1p of a non-negative number.
    """
    cov = _checks.spd_matrix("cov", cov)
    return _gauss.min_mf_kl_from_factor(_precision_factor(cov))


def kl_diag(q_mean, q_var, mean, cov):
    """KL(N(q_mean, diag q_var) || N(mean, cov)), the objective ``best_fit`` minimises.

    Parameters
    ----------
    q_mean : array_like, shape (K,)
    q_var : array_like, shape (K,)
        Positive variances of the diagonal Gaussian.
    mean : array_like, shape (K,)
    cov : array_like, shape (K, K)
        Symmetric positive-definite target covariance.

    Returns
    -------
    float
        ``0.5 [tr(cov^-1 diag q_var) + (mean - q_mean)^T cov^-1 (mean - q_mean)
        - K + log det cov - sum log q_var]`` (standard Gaussian KL).

    Notes
    -----
    yacoby2020, App. C.3, Eq. 25 (there with both means zero).
    """
    q_mean = _checks.array("q_mean", q_mean, ndim=1)
    K = q_mean.shape[0]
    q_var = _checks.array("q_var", q_var, shape=(K,), positive=True)
    mean = _checks.array("mean", mean, shape=(K,))
    cov = _checks.spd_matrix("cov", cov, d=K)
    L = _checks.cholesky("cov", cov)
    U = _gauss.tri_solve(L, np.eye(K)).T
    Pdiag = np.sum(U * U, axis=1)
    r = _gauss.tri_solve(L, mean - q_mean)
    return 0.5 * (float(Pdiag @ q_var) + float(r @ r) - K + _gauss.logdet_chol(L) - float(np.sum(np.log(q_var))))

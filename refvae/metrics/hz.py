"""The Henze-Zirkler statistic for multivariate normality, its gradient and its p-value.

Definition (docs/math.md 2.4; Henze and Zirkler 1990). For n samples z_i in R^p with mean zbar and
maximum-likelihood covariance S = (1/n) sum_i (z_i - zbar)(z_i - zbar)^T (divisor n),

    D_ij = (z_i - z_j)^T S^-1 (z_i - z_j),      D_i = (z_i - zbar)^T S^-1 (z_i - zbar),
    beta = (1/sqrt 2) ((2p + 1) n / 4)^(1/(p+4)),
    HZ   = n [ n^-2 sum_ij exp(-beta^2 D_ij / 2)
               - 2 (1 + beta^2)^(-p/2) n^-1 sum_i exp(-beta^2 D_i / (2 (1 + beta^2)))
               + (1 + 2 beta^2)^(-p/2) ].

HZ is affine invariant (it only sees the z_i through S^-1), so its gradient with respect to
the samples sums to zero over i and satisfies sum_i grad_i z_i^T = 0. LiBI (docs/math.md 2.4,
yacoby2020 Sec. 2 and App. D) penalises exp(HZ / eps_HZ) of the codes h(x_n); ``hz_value_and_grad``
supplies the hand-written gradient through zbar and S^-1 that it needs.

Implementation. With centred samples C (rows c_i = z_i - zbar), P = S^-1 and the Gram matrix
G = C P C^T, one has D_i = G_ii and D_ij = G_ii + G_jj - 2 G_ij, so the whole statistic is a
function of G alone and the backward pass is

    dHZ/dG = Gbar = -2 A + diag(2 A 1 + a),      A_ij = dHZ/dD_ij,  a_i = dHZ/dD_i,
    dHZ/dC = 2 Gbar C P - (2/n) C P (C^T Gbar C) P       (the second term: through S^-1),
    dHZ/dz = dHZ/dC - mean_i(dHZ/dC)                       (through zbar).

Memory is O(n^2) per batch of samples (the n x n matrix G), fine for the minibatch sizes of
LiBI (n up to a few thousand).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.special import ndtr

from .. import _checks
from ..backend import to_host, xp_of

__all__ = ["HZResult", "hz_beta", "hz_statistic", "hz_value_and_grad", "hz_moments", "hz_pvalue", "hz_test"]


class HZResult(NamedTuple):
    """Outcome of ``hz_test``: the statistic and its (log-normal approximation) p-value."""
    statistic: np.ndarray
    pvalue: np.ndarray


def hz_beta(n, p):
    """The smoothing parameter beta = (1/sqrt 2) ((2p + 1) n / 4)^(1/(p+4)) (docs/math.md 2.4)."""
    n = _checks.integer("n", n, min_value=1)
    p = _checks.integer("p", p, min_value=1)
    return (1.0 / math.sqrt(2.0)) * ((2 * p + 1) * n / 4.0) ** (1.0 / (p + 4))


def _validate(z):
    z = _checks.array("z", z, min_ndim=2)
    n, p = z.shape[-2], z.shape[-1]
    if p < 1:
        raise ValueError(f"z must have at least one coordinate (last axis), got shape {tuple(z.shape)}")
    if n < p + 2:
        raise ValueError(f"z must hold n >= p + 2 samples along axis -2 so that the sample covariance "
                         f"can be nonsingular, got n = {n} samples in p = {p} dimensions")
    return z


def _forward(z):
    """Everything the statistic and its gradient need; raises on a singular covariance."""
    xp = xp_of(z)
    n, p = z.shape[-2], z.shape[-1]
    C = z - z.mean(axis=-2, keepdims=True)                        # (..., n, p)
    S = C.swapaxes(-1, -2) @ C / n                                # (..., p, p)
    ev = xp.linalg.eigvalsh(S)                                    # ascending, (..., p)
    if not bool((ev[..., 0] > 1e-12 * ev[..., -1]).all()):        # backend-agnostic singularity check
        raise ValueError("the sample covariance of z is singular (samples lie in a lower-dimensional "
                         "affine subspace); the Henze-Zirkler statistic is undefined there")
    P = xp.linalg.inv(S)
    P = 0.5 * (P + P.swapaxes(-1, -2))
    CP = C @ P                                                    # (..., n, p)
    G = CP @ C.swapaxes(-1, -2)                                   # (..., n, n)
    q = xp.diagonal(G, axis1=-2, axis2=-1)                        # D_i, (..., n)
    D = q[..., :, None] + q[..., None, :] - 2.0 * G               # D_ij, exactly 0 on the diagonal
    b2 = hz_beta(n, p) ** 2
    E = xp.exp(-0.5 * b2 * D)
    e = xp.exp(-0.5 * b2 / (1.0 + b2) * q)
    c_mid = 2.0 * (1.0 + b2) ** (-p / 2.0)
    hz = E.sum(axis=(-2, -1)) / n - c_mid * e.sum(axis=-1) + n * (1.0 + 2.0 * b2) ** (-p / 2.0)
    return hz, (C, P, CP, E, e, b2)


def hz_statistic(z):
    """The Henze-Zirkler statistic of samples ``z`` (docs/math.md 2.4).

    Parameters
    ----------
    z : array (..., n, p)
        n samples in p dimensions along the last two axes; leading axes (e.g. a restarts axis)
        are independent sets of samples. Requires n >= p + 2 and a nonsingular sample covariance.

    Returns
    -------
    hz : array (...), a scalar array for z of shape (n, p).
    """
    return _forward(_validate(z))[0]


def hz_value_and_grad(z):
    """The Henze-Zirkler statistic and its gradient with respect to every sample z_i.

    The gradient runs through the pairwise terms, through zbar and through S^-1 (see the
    module docstring for the formulas).

    Parameters
    ----------
    z : array (..., n, p), as in ``hz_statistic``.

    Returns
    -------
    hz : array (...)
    dz : array (..., n, p), d hz / d z (each leading-axis entry its own statistic's gradient).
    """
    z = _validate(z)
    hz, (C, P, CP, E, e, b2) = _forward(z)
    xp = xp_of(z)
    n, p = z.shape[-2], z.shape[-1]
    A = (-0.5 * b2 / n) * E                                         # dHZ/dD_ij (symmetric)
    a = (b2 * (1.0 + b2) ** (-p / 2.0 - 1.0)) * e                   # dHZ/dD_i
    Gbar = -2.0 * A
    idx = xp.arange(n)
    Gbar[..., idx, idx] += 2.0 * A.sum(axis=-1) + a                 # D_ij and D_i both read G_ii
    GbarC = Gbar @ C                                                # (..., n, p)
    dP = C.swapaxes(-1, -2) @ GbarC                                 # dHZ/dP = C^T Gbar C, (..., p, p)
    dS = -(P @ dP @ P)                                              # through the inverse
    dC = 2.0 * GbarC @ P + (2.0 / n) * C @ dS                       # via G = C P C^T and S = C^T C / n
    dz = dC - dC.mean(axis=-2, keepdims=True)                       # via the centring z - zbar
    return hz, dz


def hz_moments(n, p):
    """Mean and variance of HZ under normality (Henze and Zirkler 1990, Theorem 3.1/3.2 and Sec. 3).

    mu   = 1 - a^(-p/2) (1 + p b^2 / a + p (p + 2) b^4 / (2 a^2)),
    sig2 = 2 (1 + 4 b^2)^(-p/2) + 2 a^(-p) (1 + 2 p b^4 / a^2 + 3 p (p + 2) b^8 / (4 a^4))
           - 4 w^(-p/2) (1 + 3 p b^4 / (2 w) + p (p + 2) b^8 / (2 w^2)),
    with b = beta (``hz_beta``), a = 1 + 2 b^2, w = (1 + b^2)(1 + 3 b^2). These are the moments
    used by the common implementations of the test (R package MVN's ``hz`` test, Korkmaz et
    al. 2014; Python's ``pingouin.multivariate_normality``).

    Returns
    -------
    mu, sig2 : floats
    """
    b = hz_beta(n, p)
    b2, b4, b8 = b ** 2, b ** 4, b ** 8
    a = 1.0 + 2.0 * b2
    w = (1.0 + b2) * (1.0 + 3.0 * b2)
    mu = 1.0 - a ** (-p / 2.0) * (1.0 + p * b2 / a + p * (p + 2) * b4 / (2.0 * a * a))
    sig2 = (2.0 * (1.0 + 4.0 * b2) ** (-p / 2.0)
            + 2.0 * a ** (-p) * (1.0 + 2.0 * p * b4 / a ** 2 + 3.0 * p * (p + 2) * b8 / (4.0 * a ** 4))
            - 4.0 * w ** (-p / 2.0) * (1.0 + 3.0 * p * b4 / (2.0 * w) + p * (p + 2) * b8 / (2.0 * w * w)))
    return mu, sig2


def hz_pvalue(hz, n, p):
    """Upper-tail p-value of HZ from the log-normal approximation (Henze and Zirkler 1990).

    HZ is approximated by a log-normal variable with the mean mu and variance sig2 of
    ``hz_moments``: log HZ ~ N(m, s^2) with m = log(mu^2 / sqrt(sig2 + mu^2)) and
    s^2 = log(1 + sig2 / mu^2); the p-value is P(HZ' >= hz) = 1 - Phi((log hz - m) / s).
    This is the p-value of R's MVN package (``mvn(..., mvnTest = "hz")``) and of
    ``pingouin.multivariate_normality``.

    Parameters
    ----------
    hz : float or array (...), values of the statistic (>= 0).
    n, p : int, the sample size and dimension the statistic was computed with.

    Returns
    -------
    pvalue : NumPy float for a scalar ``hz``, else an ndarray (...), on the host.
    """
    hz = np.asarray(to_host(_checks.array("hz", hz, nonneg=True)))
    n = _checks.integer("n", n, min_value=1)
    p = _checks.integer("p", p, min_value=1)
    mu, sig2 = hz_moments(n, p)
    s = math.sqrt(math.log1p(sig2 / mu ** 2))
    m = math.log(mu ** 2 / math.sqrt(sig2 + mu ** 2))
    with np.errstate(divide="ignore"):                             # hz = 0 -> log = -inf -> p-value 1
        return ndtr(-(np.log(hz) - m) / s)


def hz_test(z):
    """Henze-Zirkler test of multivariate normality: statistic and p-value for samples z (..., n, p)."""
    z = _validate(z)
    hz = hz_statistic(z)
    return HZResult(np.asarray(to_host(hz)), hz_pvalue(hz, z.shape[-2], z.shape[-1]))

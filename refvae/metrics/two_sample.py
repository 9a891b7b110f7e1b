"""The smooth k-NN two-sample statistic, k = 1 (Djolonga and Krause 2017; docs/math.md 3).

yacoby2020 (App. E) compares samples of p(x) with samples of a learned p_theta(x) with it. Pool
the two samples u_1..u_n (n = n1 + n2, the first n1 from sample 1) and form

    D_ij = sqrt(1e-5 + ||u_i - u_j||^2),
    M_ij = softmax_{j != i}(-a D_ij)      (row i: a soft choice of u_i's nearest neighbour),

averaged over a list of inverse temperatures a (``alphas``, docs/math.md 3.6:
larger a means a harder nearest-neighbour choice). T = sum of M_ij over cross-sample pairs
(i and j in different samples, both orders). Under the permutation null (the labels carry no
information) T has

    mean = 2 m n1 n2 / (n (n - 1)),                    m = sum_ij M_ij (= n),
    var  = c1 (1 - c2) sum_i (r_i + c_i)^2 + c1 c2 sum_ij M_ij^2 + c1 c2 sum_ij M_ij M_ji
           + c1 (c2 - 4 c1) m^2,
    c1 = n1 n2 / (n (n - 1)),   c2 = 4 (n1 - 1)(n2 - 1) / ((n - 2)(n - 3)),

with r_i, c_i the row and column sums of M, and the statistic is

    -(T - mean) / sqrt(1e-5 + var),

roughly standard normal when both samples come from one distribution and large and positive
when they differ (fewer cross-sample neighbours than chance). The 1e-5 constants are those of
the reference implementation (``torch_two_sample``, Djolonga).
"""
from __future__ import annotations

import numpy as np

from .. import _checks
from ..backend import to_host, xp_of

__all__ = ["smooth_knn_statistic", "soft_nn_matrix"]

_DIST_EPS = 1e-5
_VAR_EPS = 1e-5


def _alphas(alphas):
    if isinstance(alphas, (str, bytes)) or not hasattr(alphas, "__len__"):
        raise TypeError(f"alphas must be a non-empty sequence of positive numbers, got {alphas!r}")
    if len(alphas) == 0:
        raise ValueError("alphas must be a non-empty sequence of positive numbers, got an empty one")
    return [_checks.scalar(f"alphas[{i}]", a, positive=True) for i, a in enumerate(alphas)]


def soft_nn_matrix(u, alphas):
    """The soft nearest-neighbour matrix M (..., n, n) of the pooled points ``u`` (..., n, d), zero diagonal.

    M_ij = softmax over j != i of -a D_ij, averaged over ``alphas`` (docs/math.md 3); rows sum to 1.
    Leading axes of ``u`` are independent pools (e.g. repetitions of the test).
    """
    u = _checks.array("u", u, min_ndim=2)
    alphas = _alphas(alphas)
    xp = xp_of(u)
    n = u.shape[-2]
    sq = (u * u).sum(axis=-1)
    d2 = xp.maximum(sq[..., :, None] + sq[..., None, :] - 2.0 * (u @ u.swapaxes(-1, -2)), 0.0)  # rounding dips
    D = xp.sqrt(_DIST_EPS + d2)
    off = ~xp.eye(n, dtype=bool)
    M = xp.zeros(D.shape)
    for a in alphas:
        logits = xp.where(off, -a * D, -xp.inf)
        logits = logits - logits.max(axis=-1, keepdims=True)
        E = xp.exp(logits)
        M = M + E / E.sum(axis=-1, keepdims=True)
    return M / len(alphas)


def smooth_knn_statistic(sample1, sample2, alphas):
    """Smooth 1-NN two-sample statistic (Djolonga and Krause 2017), as defined in docs/math.md 3.

    Parameters
    ----------
    sample1 : array (..., n1, d), n1 >= 2.
    sample2 : array (..., n2, d), n2 >= 2, n1 + n2 >= 4; the leading axes of the two samples
        broadcast (each entry of them is one independent test, e.g. one repetition).
    alphas : non-empty sequence of positive floats, the inverse temperatures a of the softmax.

    Returns
    -------
    float for 2-D samples, else an array (...) on the samples' backend
        -(T - mean) / sqrt(1e-5 + var): about N(0, 1) when both samples share a distribution,
        large positive when they differ (yacoby2020: lower means p_theta(x) matches p(x) better).
    """
    sample1 = _checks.array("sample1", sample1, min_ndim=2)
    sample2 = _checks.array("sample2", sample2, min_ndim=2)
    if sample1.shape[-1] != sample2.shape[-1]:
        raise ValueError(f"sample1 and sample2 must have the same dimension, got {sample1.shape[-1]} "
                         f"and {sample2.shape[-1]}")
    n1, n2 = sample1.shape[-2], sample2.shape[-2]
    if n1 < 2 or n2 < 2:
        raise ValueError(f"each sample must hold at least 2 points, got n1 = {n1}, n2 = {n2}")
    alphas = _alphas(alphas)
    xp = xp_of(sample1, sample2)
    try:
        lead = np.broadcast_shapes(sample1.shape[:-2], sample2.shape[:-2])
    except ValueError as exc:
        raise ValueError(f"the leading axes of sample1 {tuple(sample1.shape[:-2])} and sample2 "
                         f"{tuple(sample2.shape[:-2])} must broadcast") from exc
    pooled = xp.concatenate([xp.broadcast_to(xp.asarray(sample1), lead + sample1.shape[-2:]),
                             xp.broadcast_to(xp.asarray(sample2), lead + sample2.shape[-2:])], axis=-2)
    M = soft_nn_matrix(pooled, alphas)
    n = n1 + n2
    T = M[..., :n1, n1:].sum(axis=(-2, -1)) + M[..., n1:, :n1].sum(axis=(-2, -1))
    m = M.sum(axis=(-2, -1))
    mean = 2.0 * m * n1 * n2 / (n * (n - 1))
    c1 = n1 * n2 / (n * (n - 1))
    c2 = 4.0 * (n1 - 1) * (n2 - 1) / ((n - 2) * (n - 3))
    var = (c1 * (1.0 - c2) * ((M.sum(axis=-1) + M.sum(axis=-2)) ** 2).sum(axis=-1)
           + c1 * c2 * (M * M).sum(axis=(-2, -1))
           + c1 * c2 * (M * M.swapaxes(-1, -2)).sum(axis=(-2, -1))
           + c1 * (c2 - 4.0 * c1) * m * m)
    stat = -(T - mean) / xp.sqrt(_VAR_EPS + var)
    return float(to_host(stat)) if not lead else stat

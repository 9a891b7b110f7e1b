"""ELBO-optimal observation-noise variance (yacoby2021, Theorem 2).

For a Gaussian decoder N(x; f(z), diag s2) with everything else fixed, the
-ELBO depends on s2_j only through
    sum_n E_q(z|x_n) [ 0.5 (x_nj - f_j(z))^2 / s2_j + 0.5 log s2_j ],
which is minimised at s2_j = (1/N) sum_n E_q[(x_nj - f_j(z))^2]. The learned
variance therefore absorbs every error of the decoder and of the encoder q:
it equals the true noise only when both are right.
"""
from __future__ import annotations

import numpy as np

from . import _checks

__all__ = ["optimal_variance"]


def optimal_variance(residual_sq, per_dim=True):
    """ELBO-optimal noise variance from squared residuals.

    Parameters
    ----------
    residual_sq : array_like, shape (N, d) or (S, N, d)
        Non-negative squared residuals (x_n - f(z))^2 with z ~ q(z | x_n): one
        draw per point, or S draws per point, or exact conditional expectations
        E_q[(x_n - f(z))^2] for an exact answer.
    per_dim : bool
        True: one variance per output coordinate (a learned constant vector);
        False: one shared scalar (berger2020's LS-VAE).

    Returns
    -------
    ndarray of shape (d,) or float
        The mean of ``residual_sq`` over points (and draws), per coordinate or
        also over coordinates. With draws this is the Monte Carlo estimate of
        the optimum; with expectations it is exact.

    Notes
    -----
    yacoby2021 (Yacoby, Pan, Doshi-Velez, "Failure Modes of VAEs"), Theorem 2,
    Eq. 7; docs/math.md 4.5; also dai2020 Eq. 9 for the scalar case.
    """
    r = _checks.array("residual_sq", residual_sq, ndim=(2, 3), nonneg=True)
    per_dim = _checks.boolean("per_dim", per_dim)
    if r.shape[-1] < 1 or r.shape[-2] < 1 or (r.ndim == 3 and r.shape[0] < 1):
        raise ValueError(f"residual_sq must be non-empty, got shape {r.shape}")
    if per_dim:
        return r.reshape(-1, r.shape[-1]).mean(axis=0)
    return float(r.mean())

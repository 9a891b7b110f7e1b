"""Private Gaussian linear-algebra primitives (inputs already validated).

Everything goes through Cholesky factors: log-determinants as twice the sum of
the log-diagonal (no det() to overflow or underflow) and linear solves against
the factors instead of explicit inverses.
"""
from __future__ import annotations

import numpy as np

LOG_2PI = float(np.log(2.0 * np.pi))


def tri_solve(T, B, *, trans=False):
    """Solve T X = B (or T^T X = B if ``trans``) for a triangular factor T.

    Uses numpy's LAPACK solver rather than scipy's triangular routines: on a
    busy machine scipy's threaded trsm costs milliseconds per call on these tiny
    matrices, while LU on a triangular matrix is just as backward stable.
    """
    return np.linalg.solve(T.T if trans else T, B)


def cho_solve(L, B):
    """Solve (L L^T) X = B from a lower Cholesky factor L."""
    return tri_solve(L, tri_solve(L, B), trans=True)


def logdet_chol(L):
    """log det(L L^T) from a lower Cholesky factor L."""
    return 2.0 * float(np.sum(np.log(np.diag(L))))


def logpdf_chol(x, mean, L):
    """log N(x; mean, L L^T) for x of shape (..., d); returns shape (...)."""
    d = L.shape[0]
    diff = np.asarray(x) - mean
    flat = diff.reshape(-1, d)
    sol = tri_solve(L, flat.T)
    maha = np.sum(sol * sol, axis=0).reshape(diff.shape[:-1])
    return -0.5 * (d * LOG_2PI + logdet_chol(L) + maha)


def kl_zero_mean(S, C, L_S, L_C):
    """KL(N(0, S) || N(0, C)) = 0.5 [tr(C^-1 S) - d + log det C - log det S]."""
    d = S.shape[0]
    # tr(C^-1 S) = ||L_C^-1 L_S||_F^2 keeps the trace non-negative under rounding.
    M = tri_solve(L_C, L_S)
    return 0.5 * (float(np.sum(M * M)) - d + logdet_chol(L_C) - logdet_chol(L_S))


def min_mf_kl_from_factor(T):
    """0.5 [sum_i log P_ii - log det P] for P = T T^T with T lower or upper triangular.

    Since P_ii = sum_k T_ik^2 and log det P = sum_i log T_ii^2, the value equals
    0.5 sum_i log1p(sum_{k != i} T_ik^2 / T_ii^2): a sum of non-negative terms,
    so Hadamard's inequality holds in floating point too, and it is exactly zero
    when T (hence P) is diagonal.
    """
    diag2 = np.diag(T) ** 2
    off2 = np.sum(np.where(np.eye(T.shape[0], dtype=bool), 0.0, T * T), axis=1)
    return 0.5 * float(np.sum(np.log1p(off2 / diag2)))


def ml_covariance(X):
    """Maximum-likelihood (divisor N) mean and covariance of rows of X."""
    xbar = X.mean(axis=0)
    Xc = X - xbar
    S = Xc.T @ Xc / X.shape[0]
    return xbar, 0.5 * (S + S.T)

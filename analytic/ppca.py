"""Probabilistic PCA: maximum-likelihood fits and the exact log-likelihood.

Model: z ~ N(0, I_k), x = W z + mean + e, e ~ N(0, noise_var I_d), so
p(x) = N(mean, W W^T + noise_var I). Sources: Tipping and Bishop (1999), as
restated in docs/math.md 4.4; dai2020 (Dai, Wang, Wipf) Sec. 4 for the fixed-noise
pruning ("category (ii)" collapse) and Proposition 2's affine case.

Throughout, S is the maximum-likelihood (divisor N) sample covariance with
eigenvalues l_1 >= ... >= l_d (zeros included) and eigenvectors U.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from . import _checks, _gauss

__all__ = ["fit", "log_likelihood", "active_dims", "eigen", "PPCAFit"]

PPCAFit = namedtuple("PPCAFit", ["W", "mean", "noise_var"])
PPCAFit.__doc__ = "A PPCA model: loadings W (d, k), mean (d,), scalar noise variance."


def eigen(X):
    """Mean and descending eigen-decomposition of the ML covariance of X.

    Parameters
    ----------
    X : array_like, shape (N, d)

    Returns
    -------
    mean : ndarray, shape (d,)
    eigenvalues : ndarray, shape (d,)
        Descending, clipped at 0 (tiny negative rounding of a PSD matrix).
    eigenvectors : ndarray, shape (d, d)
        Columns in the same order; sign fixed so each column's largest-magnitude
        entry is positive (makes ``fit`` deterministic).
    """
    X = _checks.data_matrix("X", X)
    mean, S = _gauss.ml_covariance(X)
    lam, U = np.linalg.eigh(S)
    lam, U = lam[::-1], U[:, ::-1]
    idx = np.argmax(np.abs(U), axis=0)
    U = U * np.sign(U[idx, np.arange(U.shape[1])])
    return mean, np.clip(lam, 0.0, None), U


def fit(X, k, noise_var=None):
    """Maximum-likelihood PPCA with learned or fixed noise variance.

    Parameters
    ----------
    X : array_like, shape (N, d)
        Data, one point per row.
    k : int
        Latent dimension, 1 <= k <= d (k < d when the noise is learned).
    noise_var : float or None
        ``None``: learn it (Tipping and Bishop), noise_var = mean of the d - k
        discarded eigenvalues; must come out positive (above the ~d eps l_1
        rounding level of the eigensolver), i.e. the data must not lie in a
        k-dimensional affine subspace. A positive float: keep it fixed.

    Returns
    -------
    PPCAFit
        ``W`` (d, k) = U_k diag(sqrt(max(l_j - noise_var, 0))) (rotation R = I,
        columns in order of decreasing eigenvalue), ``mean`` (d,) = sample mean,
        ``noise_var`` (float).

    Notes
    -----
    docs/math.md 4.4. With the noise fixed, a column whose eigenvalue satisfies
    l_j <= noise_var is exactly zero: that latent dimension is pruned and its
    posterior equals the prior (dai2020, Sec. 4, category (ii) collapse). With
    the noise learned, l_j >= l_k >= noise_var for j <= k, so no column is
    pruned unless eigenvalues tie.
    """
    X = _checks.data_matrix("X", X)
    d = X.shape[1]
    learn = noise_var is None
    k = _checks.integer("k", k, min_value=1, max_value=d - 1 if learn else d)
    if not learn:
        noise_var = _checks.scalar("noise_var", noise_var, positive=True)
    mean, lam, U = eigen(X)
    if learn:
        noise_var = float(np.mean(lam[k:]))
        # eigh leaves ~d eps l_1 of rounding in eigenvalues that are exactly zero
        if not noise_var > 10.0 * d * np.finfo(float).eps * lam[0]:
            raise ValueError(
                f"X lies in a {k}-dimensional affine subspace: the learned noise variance is 0 "
                f"and the likelihood is unbounded; use a smaller k or a fixed noise_var"
            )
    scale = np.sqrt(np.clip(lam[:k] - noise_var, 0.0, None))
    return PPCAFit(U[:, :k] * scale, mean, float(noise_var))


def log_likelihood(X, W, mean, noise_var):
    """Average log-likelihood per point of X under PPCA, all constants included.

    Parameters
    ----------
    X : array_like, shape (N, d)
    W : array_like, shape (d, k)
    mean : array_like, shape (d,)
    noise_var : float
        Positive noise variance.

    Returns
    -------
    float
        ``(1/N) sum_n log N(x_n; mean, W W^T + noise_var I)``. Depends on the data
        only through the ML covariance and mean:
        ``-0.5 [d log 2 pi + log det C + tr(C^-1 S_mu)]``,
        S_mu = S + (xbar - mean)(xbar - mean)^T.

    Notes
    -----
    docs/math.md 4.4 (at the learned-noise optimum this equals
    ``-0.5 [d log 2 pi + sum_{j<=k} log l_j + (d - k) log noise_var + d]``).
    """
    X = _checks.data_matrix("X", X)
    d = X.shape[1]
    W = _checks.array("W", W, ndim=2, shape=(d, None))
    mean = _checks.array("mean", mean, shape=(d,))
    noise_var = _checks.scalar("noise_var", noise_var, positive=True)
    C = W @ W.T + noise_var * np.eye(d)
    L = _checks.cholesky("W W^T + noise_var I", 0.5 * (C + C.T))
    return float(np.mean(_gauss.logpdf_chol(X, mean, L)))


def active_dims(eigenvalues, noise_var):
    """Number of latent dimensions a fixed-noise PPCA keeps: #{j : l_j > noise_var}.

    Parameters
    ----------
    eigenvalues : array_like, shape (d,)
        Non-negative eigenvalues of the data covariance (any order).
    noise_var : float
        Positive fixed noise variance (dai2020's gamma).

    Returns
    -------
    int
        Count of eigenvalues strictly above ``noise_var``; a PPCA with k latent
        dimensions keeps ``min(k, active_dims(...))`` non-zero columns. An
        eigenvalue equal to the noise gives a zero column too.

    Notes
    -----
    docs/math.md 4.4; dai2020 Sec. 4 (dimensions whose singular value falls below
    gamma are pruned at the global optimum).
    """
    lam = _checks.array("eigenvalues", eigenvalues, ndim=1, nonneg=True)
    noise_var = _checks.scalar("noise_var", noise_var, positive=True)
    return int(np.count_nonzero(lam > noise_var))

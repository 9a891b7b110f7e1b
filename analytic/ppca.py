"""Probabilistic PCA: maximum-likelihood fits and the exact log-likelihood.

Model: z ~ N(0, I_k), x = W z + mean + e, e ~ N(0, sigma2 I_d), so
p(x) = N(mean, W W^T + sigma2 I). Sources: Tipping and Bishop (1999), as
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

PPCAFit = namedtuple("PPCAFit", ["W", "mean", "sigma2"])
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


def fit(X, k, sigma2=None):
    """Maximum-likelihood PPCA with learned or fixed noise variance.

    Parameters
    ----------
    X : array_like, shape (N, d)
        Data, one point per row.
    k : int
        Latent dimension, 1 <= k <= d (k < d when the noise is learned).
    sigma2 : float or None
        ``None``: learn it (Tipping and Bishop), sigma2 = mean of the d - k
        discarded eigenvalues; must come out positive (above the ~d eps l_1
        rounding level of the eigensolver), i.e. the data must not lie in a
        k-dimensional affine subspace. A positive float: keep it fixed.

    Returns
    -------
    PPCAFit
        ``W`` (d, k) = U_k diag(sqrt(max(l_j - sigma2, 0))) (rotation R = I,
        columns in order of decreasing eigenvalue), ``mean`` (d,) = sample mean,
        ``sigma2`` (float).

    Notes
    -----
    docs/math.md 4.4. With the noise fixed, a column whose eigenvalue satisfies
    l_j <= sigma2 is exactly zero: that latent dimension is pruned and its
    posterior equals the prior (dai2020, Sec. 4, category (ii) collapse). With
    the noise learned, l_j >= l_k >= sigma2 for j <= k, so no column is
    pruned unless eigenvalues tie.
    """
    X = _checks.data_matrix("X", X)
    d = X.shape[1]
    learn = sigma2 is None
    k = _checks.integer("k", k, min_value=1, max_value=d - 1 if learn else d)
    if not learn:
        sigma2 = _checks.scalar("sigma2", sigma2, positive=True)
    mean, lam, U = eigen(X)
    if learn:
        sigma2 = float(np.mean(lam[k:]))
        # eigh leaves ~d eps l_1 of rounding in eigenvalues that are exactly zero
        if not sigma2 > 10.0 * d * np.finfo(float).eps * lam[0]:
            raise ValueError(
                f"X lies in a {k}-dimensional affine subspace: the learned noise variance is 0 "
                f"and the likelihood is unbounded; use a smaller k or a fixed sigma2"
            )
    scale = np.sqrt(np.clip(lam[:k] - sigma2, 0.0, None))
    return PPCAFit(U[:, :k] * scale, mean, float(sigma2))


def log_likelihood(X, W, mean, sigma2):
    """Average log-likelihood per point of X under PPCA, all constants included.

    Parameters
    ----------
    X : array_like, shape (N, d)
    W : array_like, shape (d, k)
    mean : array_like, shape (d,)
    sigma2 : float
        Positive noise variance.

    Returns
    -------
    float
        ``(1/N) sum_n log N(x_n; mean, W W^T + sigma2 I)``. Depends on the data
        only through the ML covariance and mean:
        ``-0.5 [d log 2 pi + log det C + tr(C^-1 S_mu)]``,
        S_mu = S + (xbar - mean)(xbar - mean)^T.

    Notes
    -----
    docs/math.md 4.4 (at the learned-noise optimum this equals
    ``-0.5 [d log 2 pi + sum_{j<=k} log l_j + (d - k) log sigma2 + d]``).
    """
    X = _checks.data_matrix("X", X)
    d = X.shape[1]
    W = _checks.array("W", W, ndim=2, shape=(d, None))
    mean = _checks.array("mean", mean, shape=(d,))
    sigma2 = _checks.scalar("sigma2", sigma2, positive=True)
    C = W @ W.T + sigma2 * np.eye(d)
    L = _checks.cholesky("W W^T + sigma2 I", 0.5 * (C + C.T))
    return float(np.mean(_gauss.logpdf_chol(X, mean, L)))


def active_dims(eigenvalues, sigma2):
    """Number of latent dimensions a fixed-noise PPCA keeps: #{j : l_j > sigma2}.

    Parameters
    ----------
    eigenvalues : array_like, shape (d,)
        Non-negative eigenvalues of the data covariance (any order).
    sigma2 : float
        Positive fixed noise variance (dai2020's gamma).

    Returns
    -------
    int
        Count of eigenvalues strictly above ``sigma2``; a PPCA with k latent
        dimensions keeps ``min(k, active_dims(...))`` non-zero columns. An
        eigenvalue equal to the noise gives a zero column too.

    Notes
    -----
    docs/math.md 4.4; dai2020 Sec. 4 (dimensions whose singular value falls below
    gamma are pruned at the global optimum).
    """
    lam = _checks.array("eigenvalues", eigenvalues, ndim=1, nonneg=True)
    sigma2 = _checks.scalar("sigma2", sigma2, positive=True)
    return int(np.count_nonzero(lam > sigma2))

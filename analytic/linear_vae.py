"""The linear VAE: exact ELBO, optimal encoder, ELBO gap and collapse threshold.

Decoder x = W z + mean + e, e ~ N(0, sigma2 I_d), z ~ N(0, I_K); linear
mean-field encoder q(z | x) = N(V (x - mean), diag D). Because everything is
linear-Gaussian, the expectation in the ELBO is available in closed form.
Sources: Lucas et al. (2019) and dai2020 (Dai, Wang, Wipf) Sec. 4, as
restated in docs/math.md 4.4; the collapse threshold is dai2020 Proposition 2 in
the affine case.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from . import _checks, _gauss

__all__ = ["elbo", "optimal_encoder", "elbo_gap", "collapse_threshold", "Encoder"]

Encoder = namedtuple("Encoder", ["V", "D"])
Encoder.__doc__ = "Linear mean-field encoder: mean map V (K, d) and diagonal variances D (K,)."


def _W_noise(W, sigma2):
    W = _checks.array("W", W, ndim=2)
    if W.shape[0] < 1 or W.shape[1] < 1:
        raise ValueError(f"W must have shape (d, K) with d, K >= 1, got {W.shape}")
    return W, _checks.scalar("sigma2", sigma2, positive=True)


def elbo(X, W, mean, sigma2, V, D):
    """Exact average ELBO per data point of a linear VAE.

    Parameters
    ----------
    X : array_like, shape (N, d)
        Data.
    W : array_like, shape (d, K)
        Decoder loadings.
    mean : array_like, shape (d,)
        Decoder offset (also subtracted by the encoder).
    sigma2 : float
        Positive decoder noise variance sigma2.
    V : array_like, shape (K, d)
        Encoder mean map: q(z | x) has mean V (x - mean).
    D : array_like, shape (K,)
        Positive encoder variances.

    Returns
    -------
    float
        ``-(d/2) log(2 pi sigma2) - (1/(2 sigma2)) [tr((I - W V) S_mu (I - W V)^T)
        + tr(W diag(D) W^T)] - 0.5 [tr(V S_mu V^T) + sum D - sum log D - K]``
        with S_mu = S + (xbar - mean)(xbar - mean)^T and S the ML covariance;
        all constants included, so it is directly comparable with
        :func:`analytic.ppca.log_likelihood` (it never exceeds it).

    Notes
    -----
    docs/math.md 4.4.
    """
    X = _checks.data_matrix("X", X)
    d = X.shape[1]
    W, sigma2 = _W_noise(W, sigma2)
    W = _checks.array("W", W, shape=(d, None))
    K = W.shape[1]
    mean = _checks.array("mean", mean, shape=(d,))
    V = _checks.array("V", V, shape=(K, d))
    D = _checks.array("D", D, shape=(K,), positive=True)
    xbar, S = _gauss.ml_covariance(X)
    delta = xbar - mean
    S_mu = S + np.outer(delta, delta)
    R = np.eye(d) - W @ V
    recon = np.trace(R @ S_mu @ R.T) + float(np.sum((W * W) @ D))
    kl = np.trace(V @ S_mu @ V.T) + float(np.sum(D) - np.sum(np.log(D))) - K
    return float(-0.5 * d * (_gauss.LOG_2PI + np.log(sigma2)) - recon / (2.0 * sigma2) - 0.5 * kl)


def optimal_encoder(W, sigma2):
    """Encoder maximising the linear-VAE ELBO for fixed W and sigma2.

    Parameters
    ----------
    W : array_like, shape (d, K)
    sigma2 : float
        Positive decoder noise variance sigma2.

    Returns
    -------
    Encoder
        ``V = M^-1 W^T`` (K, d), the exact posterior-mean map, and
        ``D = sigma2 / diag(M)`` (K,), the best mean-field variances, where
        M = W^T W + sigma2 I. Optimal for every data set (the stationarity
        condition in V is independent of S_mu).

    Notes
    -----
    docs/math.md 4.4; the variances are yacoby2020 App. C.3 applied to the posterior
    covariance sigma2 M^-1.
    """
    W, sigma2 = _W_noise(W, sigma2)
    M = W.T @ W + sigma2 * np.eye(W.shape[1])
    L = _checks.cholesky("W^T W + sigma2 I", 0.5 * (M + M.T))
    V = _gauss.cho_solve(L, W.T)
    return Encoder(V, sigma2 / np.diag(M))


def elbo_gap(W, sigma2):
    """PPCA log-likelihood minus the ELBO at the optimal encoder (per data point).

    Parameters
    ----------
    W : array_like, shape (d, K)
    sigma2 : float
        Positive decoder noise variance.

    Returns
    -------
    float
        ``0.5 [sum_j log M_jj - log det M]`` with M = W^T W + sigma2 I: the
        KL from the best mean-field Gaussian to the exact posterior, the same
        for every x. >= 0, and 0 exactly when W^T W is diagonal (orthogonal
        columns), e.g. at the PPCA optimum with R a signed permutation.

    Notes
    -----
    docs/math.md 4.4 (ELBO* = PPCA LL - gap).
    """
    W, sigma2 = _W_noise(W, sigma2)
    M = W.T @ W + sigma2 * np.eye(W.shape[1])
    L = _checks.cholesky("W^T W + sigma2 I", 0.5 * (M + M.T))
    # M / sigma2 is the posterior precision; the ratio form is scale-free.
    return _gauss.min_mf_kl_from_factor(L)


def collapse_threshold(X):
    """Smallest fixed noise variance at which the affine VAE collapses completely.

    Parameters
    ----------
    X : array_like, shape (N, d)

    Returns
    -------
    float
        The largest eigenvalue l_1 of the ML covariance of X. For fixed
        gamma >= l_1 the collapsed solution (W = 0, offset = xbar, q = p(z)) is
        a global optimum of the ELBO over all affine decoders and encoders;
        for gamma < l_1 some affine decoder does strictly better.

    Notes
    -----
    dai2020, Proposition 2 (affine case) and Sec. 4; docs/math.md 4.4.
    """
    X = _checks.data_matrix("X", X)
    _, S = _gauss.ml_covariance(X)
    return float(max(np.linalg.eigvalsh(S)[-1], 0.0))

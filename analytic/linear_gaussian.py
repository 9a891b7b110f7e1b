"""Linear-Gaussian latent-variable models in closed form.

Model (docs/math.md 4.1; yacoby2020 App. C): z ~ N(0, I_K), x = W z + b + e with
e ~ N(0, Psi) independent of z, W of shape (d, K), b of shape (d,).

``noise_cov`` (Psi) is accepted in three forms everywhere in this module:

* a positive scalar ``s2``: isotropic noise ``s2 * I_d``;
* a (d,) array of positive variances: diagonal noise;
* a (d, d) symmetric positive-definite matrix.

A singular Psi (noise-free coordinates) is rejected: the posterior precision
and the mutual information below need Psi^-1.

Also here: yacoby2020's two pedagogical models (App. C.1 and C.2) and the
MLE + posterior-matching decomposition of the VAE objective for a linear
decoder with its best linear mean-field encoder (docs/math.md 4.3; yacoby2020 Eq. 2).
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from . import _checks, _gauss

__all__ = [
    "marginal", "posterior", "mutual_information", "log_likelihood",
    "pedagogical_c1", "pedagogical_c2", "vae_objective", "c2_objective",
    "LINEAR_JTEX_A", "LINEAR_JTEX_B", "LINEAR_JTEX_SIGMA2",
    "Gaussian", "PedagogicalModel", "VAEObjective",
]

Gaussian = namedtuple("Gaussian", ["mean", "cov"])
Gaussian.__doc__ = "Moments of a Gaussian: mean and covariance."

PedagogicalModel = namedtuple("PedagogicalModel", ["W", "noise_cov", "mutual_information"])
PedagogicalModel.__doc__ = (
    "A yacoby2020 pedagogical model written as x = W z + e, e ~ N(0, noise_cov), "
    "with its closed-form mutual information I(X; Z) in nats."
)

VAEObjective = namedtuple("VAEObjective", ["mle_term", "posterior_matching_term"])
VAEObjective.__doc__ = (
    "The two parts of L = -ELBO - H(p_data): KL(p_data || p_theta) and "
    "E_p KL(q*(z|x) || p_theta(z|x)), both in nats per data point."
)

# yacoby2020, Sec. 1 Eq. 3 and App. E item 1 ("LinearJTEx"): sigma2 = 0.01, B = diag(0.006, 0.006).
LINEAR_JTEX_A = np.array([[0.75, 0.25], [1.5, -1.0]])
LINEAR_JTEX_B = np.array([0.006, 0.006])
LINEAR_JTEX_SIGMA2 = 0.01


def _W(W):
    W = _checks.array("W", W, ndim=2)
    if W.shape[0] < 1 or W.shape[1] < 1:
        raise ValueError(f"W must have shape (d, K) with d, K >= 1, got {W.shape}")
    return W


def _precision(W, Psi):
    """Posterior precision P = I + A^T A with A = L_psi^-1 W, plus L_psi and A."""
    L_psi = _checks.cholesky("noise_cov", Psi)
    A = _gauss.tri_solve(L_psi, W)  # whitened loadings, shape (d, K)
    P = np.eye(W.shape[1]) + A.T @ A
    return 0.5 * (P + P.T), L_psi, A


def marginal(W, b, noise_cov):
    """Marginal distribution p(x) = N(b, W W^T + Psi).

    Parameters
    ----------
    W : array_like, shape (d, K)
        Loading matrix.
    b : array_like, shape (d,)
        Offset.
    noise_cov : float, array_like of shape (d,) or (d, d)
        Noise covariance Psi (scalar: isotropic; vector: diagonal; matrix: full).

    Returns
    -------
    Gaussian
        ``(mean, cov)`` with shapes (d,) and (d, d).

    Notes
    -----
    docs/math.md 4.1; yacoby2020 App. C (Eqs. 20-21 for the C.2 model).
    """
    W = _W(W)
    d = W.shape[0]
    b = _checks.array("b", b, shape=(d,))
    Psi = _checks.noise_cov("noise_cov", noise_cov, d)
    C = W @ W.T + Psi
    return Gaussian(b, 0.5 * (C + C.T))


def posterior(W, b, noise_cov, x):
    """Exact posterior p(z | x) = N(P^-1 W^T Psi^-1 (x - b), P^-1), P = I + W^T Psi^-1 W.

    Parameters
    ----------
    W : array_like, shape (d, K)
    b : array_like, shape (d,)
    noise_cov : float, array_like of shape (d,) or (d, d)
        Noise covariance Psi (see the module docstring).
    x : array_like, shape (d,) or (N, d)
        One observation or a batch.

    Returns
    -------
    Gaussian
        ``(mean, cov)``: mean of shape (K,) (or (N, K) for a batch) and the
        (K, K) covariance, which does not depend on x.

    Notes
    -----
    docs/math.md 4.1; yacoby2020 App. C.2, Eqs. 23-24.
    """
    W = _W(W)
    d, K = W.shape
    b = _checks.array("b", b, shape=(d,))
    Psi = _checks.noise_cov("noise_cov", noise_cov, d)
    x = _checks.array("x", x, ndim=(1, 2))
    if x.shape[-1] != d:
        raise ValueError(f"x must have shape (d,) or (N, d) with d = {d}, got {x.shape}")
    P, L_psi, A = _precision(W, Psi)
    L_P = _checks.cholesky("posterior precision", P)
    r = _gauss.tri_solve(L_psi, np.atleast_2d(x - b).T)  # whitened residuals, (d, N)
    mean = _gauss.cho_solve(L_P, A.T @ r).T
    cov = _gauss.cho_solve(L_P, np.eye(K))
    return Gaussian(mean[0] if x.ndim == 1 else mean, 0.5 * (cov + cov.T))


def mutual_information(W, noise_cov):
    """Mutual information I(X; Z) = 0.5 log det(I + W^T Psi^-1 W), in nats.

    Parameters
    ----------
    W : array_like, shape (d, K)
    noise_cov : float, array_like of shape (d,) or (d, d)
        Noise covariance Psi (see the module docstring).

    Returns
    -------
    float
        Non-negative; zero iff W = 0. Equal to
        ``0.5 [log det(W W^T + Psi) - log det Psi]`` (determinant lemma).

    Notes
    -----
    docs/math.md 4.1; yacoby2020 App. C.1 Eq. 15 and C.2 Eq. 22 are special cases.
    """
    W = _W(W)
    Psi = _checks.noise_cov("noise_cov", noise_cov, W.shape[0])
    P, _, _ = _precision(W, Psi)
    L_P = _checks.cholesky("posterior precision", P)
    # Each Cholesky pivot of I + A^T A is 1 plus a conditional variance, so >= 1:
    # every log term is non-negative.
    return 0.5 * _gauss.logdet_chol(L_P)


def log_likelihood(x, W, b, noise_cov):
    """Exact log density log p(x) under the marginal N(b, W W^T + Psi).

    Parameters
    ----------
    x : array_like, shape (d,) or (N, d)
    W : array_like, shape (d, K)
    b : array_like, shape (d,)
    noise_cov : float, array_like of shape (d,) or (d, d)
        Noise covariance Psi (see the module docstring).

    Returns
    -------
    float or ndarray of shape (N,)
        Log density of each observation, all normalising constants included.

    Notes
    -----
    docs/math.md 4.1.
    """
    W = _W(W)
    d = W.shape[0]
    x = _checks.array("x", x, ndim=(1, 2))
    if x.shape[-1] != d:
        raise ValueError(f"x must have shape (d,) or (N, d) with d = {d}, got {x.shape}")
    mean, C = marginal(W, b, noise_cov)
    L = _checks.cholesky("W W^T + noise_cov", C)
    out = _gauss.logpdf_chol(x, mean, L)
    return float(out) if x.ndim == 1 else out


def pedagogical_c1(theta, sigma2):
    """yacoby2020's first pedagogical model: x = theta z + e, e ~ N(0, sigma2 - theta^2).

    Every admissible theta gives the same marginal p(x) = N(0, sigma2), yet the
    mutual information grows without bound as theta^2 -> sigma2: maximum
    likelihood cannot tell these models apart.

    Parameters
    ----------
    theta : float
        Loading; requires theta^2 < sigma2 (the seed's "theta in [0, sigma^2]"
        means theta^2 <= sigma2; the end point theta^2 = sigma2 has zero noise
        and infinite mutual information, so it is rejected).
    sigma2 : float
        Positive marginal variance of x.

    Returns
    -------
    PedagogicalModel
        ``W`` (1, 1) = [[theta]], ``noise_cov`` (1, 1) = [[sigma2 - theta^2]] and
        ``mutual_information = 0.5 log(sigma2 / (sigma2 - theta^2))``.

    Notes
    -----
    yacoby2020, Sec. 1 Eq. 5 and App. C.1, Eqs. 10-16; docs/math.md 4.1. The posterior
    is N(theta x / sigma2, (sigma2 - theta^2) / sigma2) (Eq. 16).
    """
    theta = _checks.scalar("theta", theta)
    sigma2 = _checks.scalar("sigma2", sigma2, positive=True)
    noise = sigma2 - theta * theta
    if not noise > 0:
        raise ValueError(
            f"theta must satisfy theta^2 < sigma2 (noise variance sigma2 - theta^2 must be positive), "
            f"got theta={theta}, sigma2={sigma2}"
        )
    # -log1p(-theta^2/sigma2) keeps precision when theta is small.
    mi = -0.5 * np.log1p(-(theta * theta) / sigma2)
    return PedagogicalModel(np.array([[theta]]), np.array([[noise]]), float(mi))


def _c2_inputs(A, B, sigma2):
    A = _checks.array("A", A, ndim=2)
    d = A.shape[0]
    if d < 1 or A.shape[1] < 1:
        raise ValueError(f"A must have shape (d, m) with d, m >= 1, got {A.shape}")
    sigma2 = _checks.scalar("sigma2", sigma2, positive=True)
    B = _checks.array("B", B, ndim=(1, 2))
    if B.ndim == 2:
        B = _checks.array("B", B, shape=(d, d))
        if np.any(B[~np.eye(d, dtype=bool)] != 0):
            raise ValueError("B must be diagonal (a (d,) vector of its diagonal or a diagonal (d, d) matrix)")
        B = np.diag(B).copy()
    else:
        B = _checks.array("B", B, shape=(d,))
    if np.any(B < 0) or np.any(B >= sigma2):
        raise ValueError(
            f"B's diagonal must lie in [0, sigma2) = [0, {sigma2}) (the noise covariance is sigma2 I - B; "
            f"B_ii = sigma2 would make it singular), got {B.tolist()}"
        )
    return A, B, sigma2


def _c2_model(A, B, sigma2):
    """(W, Psi) of the C.2 model from validated inputs."""
    G = A @ A.T + np.diag(B)
    W = _checks.cholesky("A A^T + B", 0.5 * (G + G.T))
    return W, np.diag(sigma2 - B)


def pedagogical_c2(A, B, sigma2):
    """yacoby2020's second pedagogical model: x = chol(A A^T + B) z + e, e ~ N(0, sigma2 I - B).

    Every admissible diagonal B gives the same marginal p(x) = N(0, A A^T + sigma2 I),
    but different posterior correlations and mutual information; with B fixed
    and A learned it is the LinearJTEx benchmark (``LINEAR_JTEX_*``).

    Parameters
    ----------
    A : array_like, shape (d, m)
        A A^T + B must be positive definite (latent dimension K = d).
    B : array_like, shape (d,) or diagonal (d, d)
        Diagonal entries in [0, sigma2); B_ii = sigma2 (zero noise) is rejected.
    sigma2 : float
        Positive total per-coordinate noise scale.

    Returns
    -------
    PedagogicalModel
        ``W`` (d, d): the lower Cholesky factor of A A^T + B; ``noise_cov`` (d, d)
        = diag(sigma2 - B); ``mutual_information`` =
        0.5 [log det(A A^T + sigma2 I) - sum_i log(sigma2 - B_ii)].

    Notes
    -----
    yacoby2020, Sec. 1 Eq. 3 and App. C.2, Eqs. 17-24; docs/math.md 4.1. Eq. 22 writes the
    sum over i = 1..K; it runs over the d coordinates (K = d here).
    """
    A, B, sigma2 = _c2_inputs(A, B, sigma2)
    W, Psi = _c2_model(A, B, sigma2)
    G = A @ A.T + sigma2 * np.eye(A.shape[0])
    L = _checks.cholesky("A A^T + sigma2 I", 0.5 * (G + G.T))
    mi = 0.5 * (_gauss.logdet_chol(L) - float(np.sum(np.log(sigma2 - B))))
    return PedagogicalModel(W, Psi, mi)


def vae_objective(W, noise_cov, data_cov):
    """MLE and posterior-matching terms of the VAE objective for a linear-Gaussian decoder.

    Data x ~ N(m, data_cov); decoder x = W z + b + e with b = m (the optimal
    offset, so the means agree), e ~ N(0, Psi); encoder: the best linear
    mean-field Gaussian q(z|x) = N(V (x - b), diag D). Then

        -E_p ELBO = KL(p || p_theta) + E_p KL(q || p_theta(z|x)) + H(p),

    and the function returns the first two terms (their sum is yacoby2020's L).

    Parameters
    ----------
    W : array_like, shape (d, K)
        Decoder loading matrix.
    noise_cov : float, array_like of shape (d,) or (d, d)
        Decoder noise covariance Psi (see the module docstring).
    data_cov : array_like, shape (d, d)
        Symmetric positive-definite covariance of the data distribution
        (population covariance, or a maximum-likelihood sample covariance).

    Returns
    -------
    VAEObjective
        ``mle_term = KL(N(0, data_cov) || N(0, W W^T + Psi))`` and
        ``posterior_matching_term = 0.5 [sum_i log P_ii - log det P]``,
        P = I + W^T Psi^-1 W; floats in nats per data point.

    Notes
    -----
    docs/math.md 4.3; yacoby2020 Eq. 2 (also yacoby2021 Eq. 3). The posterior covariance
    P^-1 does not depend on x and the posterior mean is linear in x, so a
    linear encoder matches the mean exactly and the best diagonal variance is
    1 / P_ii (yacoby2020 App. C.3): the matching term is the same for every x.
    """
    W = _W(W)
    d = W.shape[0]
    Psi = _checks.noise_cov("noise_cov", noise_cov, d)
    S = _checks.spd_matrix("data_cov", data_cov, d=d)
    P, _, _ = _precision(W, Psi)
    L_P = _checks.cholesky("posterior precision", P)
    C = W @ W.T + Psi
    L_C = _checks.cholesky("W W^T + noise_cov", 0.5 * (C + C.T))
    L_S = _checks.cholesky("data_cov", S)
    return VAEObjective(_gauss.kl_zero_mean(S, C, L_S, L_C), _gauss.min_mf_kl_from_factor(L_P))


def c2_objective(A, B, sigma2, data_cov):
    """``vae_objective`` of the C.2 / LinearJTEx model with parameter A.

    Parameters
    ----------
    A : array_like, shape (d, m)
    B : array_like, shape (d,) or diagonal (d, d); entries in [0, sigma2)
    sigma2 : float
    data_cov : array_like, shape (d, d)
        For yacoby2020's reported numbers use the population covariance of the
        ground truth, A_GT A_GT^T + sigma2 I.

    Returns
    -------
    VAEObjective
        As :func:`vae_objective` for W = chol(A A^T + B), Psi = sigma2 I - B.

    Notes
    -----
    yacoby2020, Sec. 1 (L(theta_GT, phi_GT) = 0.532, L(theta*, phi*) = 0.196) and
    App. E item 1; docs/math.md 4.1 and 4.3.
    """
    A, B, sigma2 = _c2_inputs(A, B, sigma2)
    W, Psi = _c2_model(A, B, sigma2)
    return vae_objective(W, Psi, data_cov)

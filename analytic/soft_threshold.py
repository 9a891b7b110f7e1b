"""dai2020's soft-threshold decoder: exact energy, collapsed point, escape path.

Decoder mean pi_a(W z) + b with the soft threshold
pi_a(u) = sign(u) max(|u| - a, 0) applied per coordinate; a = 0 is the affine
(PPCA) model. Non-amortised encoder q_i = N(mu_i, diag s_i^2), one per point.
Source: dai2020 (Dai, Wang, Wipf, "The Usual Suspects?"), Sec. 4, Eq. 5 and
Proposition 1; docs/math.md 4.7, whose conventions are used here: ``s`` holds
standard deviations (the only std-valued quantity in the package; dai2020 calls
it sigma_z), ``gamma`` is the decoder variance.

Each output coordinate u_ij = w_j . z is Gaussian under q_i, with mean
w_j . mu_i and variance sum_k W_jk^2 s_ik^2, and the first two moments of
pi_a(u) under a Gaussian are closed form, so Eq. 5 is evaluated exactly.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np
from scipy import special

from . import _checks, _gauss

__all__ = ["soft_threshold", "moments", "energy", "collapsed_point", "reconstruction_path",
           "CollapsedPoint", "PathPoint"]

CollapsedPoint = namedtuple("CollapsedPoint", ["W", "b", "gamma", "mu", "s", "energy"])
CollapsedPoint.__doc__ = (
    "Parameters of dai2020's collapsed stationary point: W (d, K) = 0, b (d,) = xbar, "
    "gamma = mean squared deviation, mu (N, K) = 0, s (N, K) = 1, and its energy."
)

PathPoint = namedtuple("PathPoint", ["X", "W", "b", "gamma", "mu", "s", "energy"])
PathPoint.__doc__ = "A point on Proposition 1's perfect-reconstruction path, with its data X and exact energy."

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def soft_threshold(u, alpha):
    """Soft-threshold operator pi_alpha(u) = sign(u) max(|u| - alpha, 0), elementwise.

    Parameters
    ----------
    u : float or array_like
        Input, any shape.
    alpha : float
        Non-negative threshold; alpha = 0 gives the identity.

    Returns
    -------
    float or ndarray (shape of ``u``)

    Notes
    -----
    dai2020, Eq. 4; docs/math.md 4.7.
    """
    u = _checks.array("u", u)
    alpha = _checks.scalar("alpha", alpha, nonneg=True)
    out = np.sign(u) * np.maximum(np.abs(u) - alpha, 0.0)
    return float(out) if out.ndim == 0 else out


def _moments(m, s, a):
    """E pi_a(u), E pi_a(u)^2 for u ~ N(m, s^2), arrays broadcast, s >= 0 allowed."""
    m, s = np.broadcast_arrays(m, s)
    zero = s == 0
    ss = np.where(zero, 1.0, s)  # placeholder std where the Gaussian is a point mass
    with np.errstate(over="ignore"):  # |m| / s beyond 1e308 is +-inf: ndtr's limits are right
        p = (m - a) / ss
        q = (m + a) / ss
    Pp, Pq = special.ndtr(p), special.ndtr(-q)
    # phi vanishes (to double precision) beyond |p| = 40; clipping keeps p^2 finite
    pc, qc = np.clip(p, -40.0, 40.0), np.clip(q, -40.0, 40.0)
    fp, fq = _INV_SQRT_2PI * np.exp(-0.5 * pc * pc), _INV_SQRT_2PI * np.exp(-0.5 * qc * qc)
    e1 = (m - a) * Pp + ss * fp + (m + a) * Pq - ss * fq
    e2 = ((m - a) ** 2 + ss * ss) * Pp + (m - a) * ss * fp + ((m + a) ** 2 + ss * ss) * Pq - (m + a) * ss * fq
    point = np.sign(m) * np.maximum(np.abs(m) - a, 0.0)
    return np.where(zero, point, e1), np.where(zero, point * point, e2)


def moments(mean, std, alpha):
    """First two moments of pi_alpha(u) for u ~ N(mean, std^2).

    Parameters
    ----------
    mean : float or array_like
    std : float or array_like
        Non-negative standard deviation (broadcast against ``mean``); std = 0
        gives the point-mass values pi_alpha(mean), pi_alpha(mean)^2.
    alpha : float
        Non-negative threshold.

    Returns
    -------
    (E pi, E pi^2) : tuple of float or ndarray (broadcast shape)
        With p = (m - a)/s, q = (m + a)/s, Phi/phi the normal cdf/pdf:
        E pi   = (m - a) Phi(p) + s phi(p) + (m + a) Phi(-q) - s phi(q),
        E pi^2 = ((m - a)^2 + s^2) Phi(p) + (m - a) s phi(p)
                 + ((m + a)^2 + s^2) Phi(-q) - (m + a) s phi(q).

    Notes
    -----
    docs/math.md 4.7 (the truncated-Gaussian moments behind dai2020 Eq. 5).
    """
    m = _checks.array("mean", mean)
    s = _checks.array("std", std, nonneg=True)
    try:
        np.broadcast_shapes(m.shape, s.shape)
    except ValueError:
        raise ValueError(f"mean and std must broadcast, got shapes {m.shape} and {s.shape}") from None
    a = _checks.scalar("alpha", alpha, nonneg=True)
    e1, e2 = _moments(m, s, a)
    if e1.ndim == 0:
        return float(e1), float(e2)
    return e1, e2


def _energy(X, W, b, gamma, mu, s, a):
    N, d = X.shape
    m = mu @ W.T                      # (N, d): mean of u_ij
    v = (s * s) @ (W * W).T           # (N, d): variance of u_ij
    e1, e2 = _moments(m, np.sqrt(v), a)
    r = X - b
    # E (r - pi)^2 = (r - E pi)^2 + Var pi: the bias part stays accurate near perfect reconstruction.
    recon = np.sum((r - e1) ** 2 + (e2 - e1 * e1))
    return float(recon / gamma + N * d * np.log(gamma) + np.sum(s * s) - np.sum(np.log(s * s)) + np.sum(mu * mu))


def _energy_inputs(X, W, b, gamma, mu, s, alpha):
    X = _checks.data_matrix("X", X)
    N, d = X.shape
    W = _checks.array("W", W, ndim=2, shape=(d, None))
    K = W.shape[1]
    if K < 1:
        raise ValueError(f"W must have at least one column (latent dimension K >= 1), got shape {W.shape}")
    b = _checks.array("b", b, shape=(d,))
    gamma = _checks.scalar("gamma", gamma, positive=True)
    mu = _checks.array("mu", mu, shape=(N, K))
    s = _checks.array("s", s, shape=(N, K), positive=True)
    alpha = _checks.scalar("alpha", alpha, nonneg=True)
    return X, W, b, gamma, mu, s, alpha


def energy(X, W, b, gamma, mu, s, alpha):
    """Exact VAE energy of dai2020 Eq. 5 (summed over points).

    Parameters
    ----------
    X : array_like, shape (N, d)
        Data.
    W : array_like, shape (d, K)
        Decoder weights (the decoder mean is pi_alpha(W z) + b).
    b : array_like, shape (d,)
        Decoder offset.
    gamma : float
        Positive decoder variance.
    mu : array_like, shape (N, K)
        Per-point encoder means.
    s : array_like, shape (N, K)
        Per-point encoder standard deviations (positive).
    alpha : float
        Non-negative threshold.

    Returns
    -------
    float
        E = sum_i { (1/gamma) E_q ||x_i - pi_a(W z) - b||^2 + d log gamma
        + ||s_i||^2 - sum_k log s_ik^2 + ||mu_i||^2 },
        which is 2 (-ELBO) minus the constant N (d log 2 pi - K) summed over
        points (dai2020 drops the factor 1/2 and the constants).

    Notes
    -----
    dai2020, Eq. 5; docs/math.md 4.7. The expectation is exact: coordinate j of
    W z is N(w_j . mu_i, sum_k W_jk^2 s_ik^2) under q_i, and
    E (r - pi)^2 = r^2 - 2 r E pi + E pi^2 (see :func:`moments`).
    """
    return _energy(*_energy_inputs(X, W, b, gamma, mu, s, alpha))


def collapsed_point(X, latent_dim):
    """dai2020 Proposition 1's collapsed point and its energy.

    Parameters
    ----------
    X : array_like, shape (N, d)
        Data; not all rows equal (else the collapsed variance is 0).
    latent_dim : int
        Latent dimension K >= 1.

    Returns
    -------
    CollapsedPoint
        ``W`` = zeros (d, K), ``b`` = xbar (d,), ``gamma`` = gammabar =
        (1/(N d)) sum_i ||x_i - xbar||^2, ``mu`` = zeros (N, K), ``s`` = ones (N, K),
        ``energy`` = N d (1 + log gammabar) + N K. The model there is
        p(x) = N(xbar, gammabar I) with q(z|x) = p(z).

    Notes
    -----
    dai2020, Proposition 1, Eq. 6; docs/math.md 4.7. It is a stationary point for
    every alpha >= 0; for alpha > 0 a local minimum for any data, for alpha = 0
    a saddle whenever the largest eigenvalue of the ML covariance exceeds
    gammabar (non-isotropic data).
    """
    X = _checks.data_matrix("X", X)
    K = _checks.integer("latent_dim", latent_dim, min_value=1)
    N, d = X.shape
    xbar, S = _gauss.ml_covariance(X)
    gbar = float(np.sum((X - xbar) ** 2) / (N * d))
    if not gbar > 0:
        raise ValueError("X must not have all rows equal: the collapsed variance gammabar would be 0")
    E0 = N * d * (1.0 + np.log(gbar)) + N * K
    return CollapsedPoint(np.zeros((d, K)), xbar, gbar, np.zeros((N, K)), np.ones((N, K)), float(E0))


def reconstruction_path(t, alpha, gamma, c, d=2, latent_dim=1):
    """A point on Proposition 1's path towards perfect reconstruction, for axis data.

    Data x_i = t_i e_1 in R^d (points on one axis). On the path
    W = c e_1 e_1^T, b = 0, mu_i1 = (t_i + alpha sign t_i) / c, s_i1 = sqrt(gamma),
    and the other latents sit at the prior (mu = 0, s = 1). Then u_i1 = c z_1 has
    mean t_i + alpha sign t_i and variance c^2 gamma, so pi_alpha(u_i1) reproduces
    t_i up to noise of variance c^2 gamma (plus an exponentially small
    threshold-crossing correction), and

        E(gamma) = N (d - 1) log gamma + N (c^2 + gamma + K - 1)
                   + sum_i (|t_i| + alpha)^2 / c^2 + (crossing terms),

    which tends to -infinity as gamma -> 0 for d >= 2: below the collapsed
    energy, so the collapsed point is not the global minimum.

    Parameters
    ----------
    t : array_like, shape (N,)
        Non-zero axis coordinates of the data.
    alpha : float
        Non-negative threshold.
    gamma : float
        Positive decoder variance (also the encoder variance s_i1^2 on the path).
    c : float
        Non-zero decoder gain.
    d : int, default 2
        Data dimension (>= 2 for the energy to be unbounded below).
    latent_dim : int, default 1
        Latent dimension K >= 1.

    Returns
    -------
    PathPoint
        ``X`` (N, d), ``W`` (d, K), ``b`` (d,), ``gamma``, ``mu`` (N, K), ``s`` (N, K)
        and the exact ``energy`` (:func:`energy` at these parameters).

    Notes
    -----
    dai2020, Proposition 1 (the "global minimum that perfectly reconstructs the
    training data"); docs/math.md 4.7.
    """
    t = _checks.array("t", t, ndim=1)
    if t.size < 1 or np.any(t == 0):
        raise ValueError("t must be a non-empty 1-D array of non-zero axis coordinates")
    alpha = _checks.scalar("alpha", alpha, nonneg=True)
    gamma = _checks.scalar("gamma", gamma, positive=True)
    c = _checks.scalar("c", c)
    if c == 0:
        raise ValueError("c must be non-zero (the decoder gain divides the encoder means)")
    d = _checks.integer("d", d, min_value=1)
    K = _checks.integer("latent_dim", latent_dim, min_value=1)
    N = t.size
    X = np.zeros((N, d))
    X[:, 0] = t
    W = np.zeros((d, K))
    W[0, 0] = c
    b = np.zeros(d)
    mu = np.zeros((N, K))
    mu[:, 0] = (t + alpha * np.sign(t)) / c
    s = np.ones((N, K))
    s[:, 0] = np.sqrt(gamma)
    return PathPoint(X, W, b, gamma, mu, s, _energy(X, W, b, gamma, mu, s, alpha))

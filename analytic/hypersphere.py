"""berger2020's hypersphere example: when a fixed-variance Gaussian VAE collapses.

Setting (berger2020, Berger and Sebag, Theorem 1; docs/math.md 4.6): data uniform on
the sphere of radius r in R^d, observation model N(x; xhat, sigma2 I) with
sigma2 fixed, and the decoder output xhat uniform on a concentric sphere of
radius rho (the optimal family by symmetry). With kappa = r rho / sigma2 and
nu = d/2 - 1 the expected log-likelihood per data point is

    F(rho) = -(d/2) log(2 pi sigma2) - (r^2 + rho^2) / (2 sigma2) + log A_d(kappa),
    A_d(kappa) = E_u[exp(kappa u_1)] = Gamma(d/2) (2/kappa)^nu I_nu(kappa),

u uniform on the unit sphere (A_1 = cosh, A_2 = I_0, A_3 = sinh(k)/k). Its
derivative is F'(rho) = [r R_d(kappa) - rho] / sigma2, R_d = I_{d/2} / I_{d/2-1}.
Since R_d(kappa) < kappa / d, rho = 0 is the unique maximiser when
r^2 <= d sigma2 (the model is N(0, sigma2 I), blind to the sphere); otherwise
the maximiser is the unique root of rho = r R_d(r rho / sigma2) in (0, r).

Numerics: Bessel functions enter only through exponentially scaled values,
log I_nu(k) = log(ive(nu, k)) + k, and F is assembled as
-(r - rho)^2 / (2 sigma2) + [log A_d(kappa) - kappa] so the large terms cancel
analytically. For small kappa the same quantities come from the confluent
limit A_d(kappa) = 0F1(; d/2; kappa^2 / 4) (scipy.special.hyp0f1), which has
no 0/0 at kappa = 0 and no underflow of ive for large nu. Limitation: for
d >~ 2000 and 500 <= kappa < d/2 - 1, ive still underflows (log of 0, a
RuntimeWarning); berger2020's experiments use small d.
"""
from __future__ import annotations

import numpy as np
from scipy import optimize, special

from . import _checks
from ._gauss import LOG_2PI

__all__ = ["objective", "gradient", "optimal_radius", "critical_variance", "radius_grid",
           "log_mean_exp_cos", "bessel_ratio"]


def _small(kappa, d):
    # 0F1 is cheap and exact here; ive(nu, kappa) underflows when kappa << nu.
    return (kappa <= max(1.0, d / 2.0 - 1.0)) & (kappa < 500.0)


def _log_A_minus_kappa(kappa, d):
    """log A_d(kappa) - kappa for an array kappa >= 0."""
    kappa = np.asarray(kappa, dtype=np.float64)
    out = np.empty_like(kappa)
    small = _small(kappa, d)
    ks = kappa[small]
    out[small] = np.log(special.hyp0f1(d / 2.0, ks * ks / 4.0)) - ks
    kl = kappa[~small]
    nu = d / 2.0 - 1.0
    out[~small] = special.gammaln(d / 2.0) + nu * np.log(2.0 / kl) + np.log(special.ive(nu, kl))
    return out


def _ratio_over_kappa(kappa, d):
    """R_d(kappa) / kappa, with its limit 1/d at kappa = 0."""
    kappa = np.asarray(kappa, dtype=np.float64)
    out = np.empty_like(kappa)
    small = _small(kappa, d)
    q = kappa[small] ** 2 / 4.0
    out[small] = special.hyp0f1(d / 2.0 + 1.0, q) / special.hyp0f1(d / 2.0, q) / d
    kl = kappa[~small]
    out[~small] = special.ive(d / 2.0, kl) / special.ive(d / 2.0 - 1.0, kl) / kl
    return out


def _d(d):
    return _checks.integer("d", d, min_value=1)


def log_mean_exp_cos(kappa, d):
    """log A_d(kappa) = log E[exp(kappa u_1)], u uniform on the unit sphere in R^d.

    Parameters
    ----------
    kappa : float or array_like
        Non-negative concentration(s).
    d : int
        Ambient dimension, >= 1.

    Returns
    -------
    float or ndarray (shape of ``kappa``)
        ``log Gamma(d/2) + nu log(2/kappa) + log I_nu(kappa)``, nu = d/2 - 1
        (0 at kappa = 0).

    Notes
    -----
    docs/math.md 4.6; berger2020 Eqs. 6-8 (the angular integral of Theorem 1's proof).
    """
    d = _d(d)
    k = _checks.array("kappa", kappa, nonneg=True)
    out = _log_A_minus_kappa(k.reshape(-1), d).reshape(k.shape) + k
    return float(out) if out.ndim == 0 else out


def bessel_ratio(kappa, d):
    """R_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa) = d/dkappa log A_d(kappa).

    Parameters
    ----------
    kappa : float or array_like
        Non-negative.
    d : int
        Ambient dimension, >= 1.

    Returns
    -------
    float or ndarray
        In [0, 1); R_d(0) = 0 and R_d(kappa) < kappa / d for kappa > 0.

    Notes
    -----
    docs/math.md 4.6 (R_1 = tanh, R_3 = coth(k) - 1/k).
    """
    d = _d(d)
    k = _checks.array("kappa", kappa, nonneg=True)
    out = _ratio_over_kappa(k.reshape(-1), d).reshape(k.shape) * k
    return float(out) if out.ndim == 0 else out


def _common(r, sigma2, d):
    return (_checks.scalar("r", r, positive=True), _checks.scalar("sigma2", sigma2, positive=True), _d(d))


def objective(rho, r, sigma2, d):
    """Expected log-likelihood per data point F(rho) (berger2020 Theorem 1).

    Parameters
    ----------
    rho : float or array_like
        Non-negative radius (radii) of the decoder's output sphere.
    r : float
        Positive radius of the data sphere.
    sigma2 : float
        Positive fixed observation variance.
    d : int
        Ambient dimension, >= 1.

    Returns
    -------
    float or ndarray (shape of ``rho``)
        F(rho) = E_x log E_xhat N(x; xhat, sigma2 I), x uniform on the r-sphere,
        xhat uniform on the rho-sphere; all constants included. Equals the ELBO
        of the ideal VAE of Theorem 1 (exact posterior, infinite data).

    Notes
    -----
    berger2020, Theorem 1, Eqs. 4-8 (their Eq. 8 drops the rho-free constants);
    docs/math.md 4.6.
    """
    r, sigma2, d = _common(r, sigma2, d)
    rho = _checks.array("rho", rho, nonneg=True)
    kappa = r * rho / sigma2
    out = (-0.5 * d * (LOG_2PI + np.log(sigma2)) - (r - rho) ** 2 / (2.0 * sigma2)
           + _log_A_minus_kappa(kappa.reshape(-1), d).reshape(rho.shape))
    return float(out) if out.ndim == 0 else out


def gradient(rho, r, sigma2, d):
    """dF/drho = [r R_d(r rho / sigma2) - rho] / sigma2.

    Parameters
    ----------
    rho : float or array_like
        Non-negative radius (radii).
    r, sigma2 : float
        Positive data radius and observation variance.
    d : int
        Ambient dimension, >= 1.

    Returns
    -------
    float or ndarray (shape of ``rho``)

    Notes
    -----
    docs/math.md 4.6; the sign of this derivative is berger2020's Eq. 9.
    """
    r, sigma2, d = _common(r, sigma2, d)
    rho = _checks.array("rho", rho, nonneg=True)
    kappa = r * rho / sigma2
    R = _ratio_over_kappa(kappa.reshape(-1), d).reshape(rho.shape) * kappa
    out = (r * R - rho) / sigma2
    return float(out) if out.ndim == 0 else out


def critical_variance(r, d):
    """Largest observation variance at which the optimum is still collapsed: r^2 / d.

    Parameters
    ----------
    r : float
        Positive data radius.
    d : int
        Ambient dimension, >= 1.

    Returns
    -------
    float
        For sigma2 >= r^2 / d the optimal radius is 0; below it, positive.

    Notes
    -----
    berger2020, Theorem 1 (the condition r^2 <= d sigma^2); docs/math.md 4.6.
    """
    r = _checks.scalar("r", r, positive=True)
    return r * r / _d(d)


def _optimal_radius(r, sigma2, d):
    if r * r <= d * sigma2:
        return 0.0
    c = r * r / sigma2

    def h(rho):  # (F'(rho) sigma2) / rho: positive at 0, negative at r, decreasing
        return float(c * _ratio_over_kappa(np.array([r * rho / sigma2]), d)[0] - 1.0)

    return float(optimize.brentq(h, 0.0, r, xtol=1e-15 * r, rtol=4.0 * np.finfo(float).eps, maxiter=500))


def optimal_radius(r, sigma2, d):
    """Radius rho* maximising F (berger2020 Theorem 1).

    Parameters
    ----------
    r : float
        Positive data radius.
    sigma2 : float
        Positive fixed observation variance.
    d : int
        Ambient dimension, >= 1.

    Returns
    -------
    float
        Exactly 0.0 when r^2 <= d sigma2; otherwise the unique root in (0, r) of
        rho = r R_d(r rho / sigma2), found by Brent's method on
        (r^2 / sigma2) R_d(kappa) / kappa - 1, a decreasing function of rho
        with a sign change on [0, r]. rho* / r -> 1 as sigma2 -> 0 (for d = 1 and
        r^2 / sigma2 >~ 19 it rounds to exactly r, as tanh rounds to 1).

    Notes
    -----
    docs/math.md 4.6.
    """
    r, sigma2, d = _common(r, sigma2, d)
    return _optimal_radius(r, sigma2, d)


def radius_grid(r_values, sigma2_values, d=2):
    """Relative optimal radius rho* / r on a grid (berger2020's Fig. 2 heat map for d = 2).

    Parameters
    ----------
    r_values : array_like, shape (n_r,)
        Positive data radii.
    sigma2_values : array_like, shape (n_s,)
        Positive observation variances.
    d : int, default 2
        Ambient dimension.

    Returns
    -------
    ndarray, shape (n_r, n_s)
        ``out[i, j] = optimal_radius(r_values[i], sigma2_values[j], d) / r_values[i]``,
        in [0, 1) (exactly 1 only where it rounds so, d = 1 and r^2 / sigma2 >~ 19,
        see ``optimal_radius``); zero exactly where r^2 <= d sigma2 (the collapse
        region below the curve sigma2 = r^2 / d).

    Notes
    -----
    berger2020, Sec. 3.1 and Fig. 2 (plotted there in terms of r and sigma);
    docs/math.md 4.6.
    """
    rv = _checks.array("r_values", r_values, ndim=1, positive=True)
    sv = _checks.array("sigma2_values", sigma2_values, ndim=1, positive=True)
    d = _d(d)
    out = np.empty((rv.size, sv.size))
    for i, r in enumerate(rv):
        for j, s in enumerate(sv):
            out[i, j] = _optimal_radius(float(r), float(s), d) / r
    return out

"""The diagonal Gaussian, once: reparameterisation, KL to the prior, log-density.

Conventions (MATH.md 0-1): ``logvar`` is always a log-*variance*; the standard deviation is
``exp(logvar / 2)``. Every function here is used by every objective, so that a sampler and a
KL can never disagree about what ``logvar`` means.
"""
from __future__ import annotations

import math

from .backend import xp_of, sum_to_shape

LOG_2PI = math.log(2.0 * math.pi)


def reparameterize(mu, logvar, eps):
    """Draw z = mu + exp(logvar / 2) * eps (MATH.md 1).

    Parameters
    ----------
    mu, logvar : arrays of shape (..., K)
    eps : array broadcastable against mu, e.g. (S, ..., K) for S samples per point.

    Returns
    -------
    z : array of the broadcast shape.
    std : exp(logvar / 2), shape of ``logvar`` (kept for the backward pass).
    """
    xp = xp_of(mu, logvar, eps)
    std = xp.exp(0.5 * logvar)
    return mu + std * eps, std


def reparameterize_backward(dz, std, eps, mu_shape, logvar_shape):
    """Gradients of a loss through ``reparameterize``.

    dL/dmu = dL/dz and dL/dlogvar = 0.5 * dL/dz * std * eps, each summed back over the
    sample axes so it has the shape of ``mu`` / ``logvar``.
    """
    dmu = sum_to_shape(dz, mu_shape)
    dlogvar = sum_to_shape(0.5 * dz * std * eps, logvar_shape)
    return dmu, dlogvar


def kl_std_normal(mu, logvar):
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per row, with its gradient (MATH.md 1).

    Parameters
    ----------
    mu, logvar : arrays of shape (..., K)

    Returns
    -------
    kl : array (...), 0.5 * sum_k (mu^2 + exp(lv) - lv - 1)
    dmu : array (..., K), = mu
    dlogvar : array (..., K), = 0.5 * (exp(lv) - 1)
    """
    xp = xp_of(mu, logvar)
    var = xp.exp(logvar)
    kl = 0.5 * (mu * mu + var - logvar - 1.0).sum(axis=-1)
    return kl, mu, 0.5 * (var - 1.0)


def gaussian_log_prob(x, mean, logvar):
    """Elementwise log N(x; mean, exp(logvar)), all constants included.

    Arrays broadcast; nothing is summed. Returns the log-density and its gradients with
    respect to ``mean`` and ``logvar`` (both of the broadcast shape).

    log p = -0.5 * ((x - mean)^2 exp(-logvar) + logvar + log 2 pi)
    d/dmean = (x - mean) exp(-logvar),   d/dlogvar = 0.5 * ((x - mean)^2 exp(-logvar) - 1)
    """
    xp = xp_of(x, mean, logvar)
    r = x - mean
    prec = xp.exp(-logvar)
    sq = r * r * prec
    return -0.5 * (sq + logvar + LOG_2PI), r * prec, 0.5 * (sq - 1.0)


def std_normal_log_prob(z):
    """log N(z; 0, I) summed over the last axis, and its gradient (-z)."""
    return -0.5 * (z * z + LOG_2PI).sum(axis=-1), -z

"""The diagonal Gaussian, once: reparameterisation, KL to the prior, log-density.

Conventions (docs/math.md 0-1): ``logvar`` is always a log-*variance*; the standard deviation is
``exp(logvar / 2)``. Every function here is used by every objective, so that a sampler and a
KL can never disagree about what ``logvar`` means.
"""
from __future__ import annotations

import math

from .backend import xp_of, sum_to_shape

LOG_2PI = math.log(2.0 * math.pi)


def reparameterize(mu, logvar, eps):
    """Draw z = mu + exp(logvar / 2) * eps (docs/math.md 1).

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
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per row, with its gradient (docs/math.md 1).

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
    prec = xp.exp(-xp.asarray(logvar, dtype=xp.result_type(r, logvar)))   # a float logvar in r's float type
    sq = r * r * prec
    return -0.5 * (sq + logvar + LOG_2PI), r * prec, 0.5 * (sq - 1.0)


def std_normal_log_prob(z):
    """log N(z; 0, I) summed over the last axis, and its gradient (-z)."""
    return -0.5 * (z * z + LOG_2PI).sum(axis=-1), -z


def kl_sample(z, eps, logvar):
    """Single-sample KL estimate log q(z|x) - log N(z; 0, I) along the reparameterised path.

    With z = mu + exp(logvar / 2) * eps, log q(z|x) = log N(eps; 0, I) - sum_k logvar_k / 2, so the
    estimate is 0.5 * sum_k (z_k^2 - eps_k^2 - logvar_k). Its mean over eps is ``kl_std_normal``;
    it is the KL term of the Monte Carlo ELBO, and -kl_sample is IWAE's log p(z) - log q(z|x)
    (docs/math.md 2.1).

    Parameters
    ----------
    z, eps : (..., K); logvar : broadcastable to z.

    Returns
    -------
    (...) array.
    """
    return 0.5 * (z * z - eps * eps - logvar).sum(axis=-1)


def kl_sample_backward(c, dz, z, std, eps, mu_shape, logvar_shape):
    """Encoder-moment gradients of sum(c * kl_sample(z, eps, logvar)) + <dz, z>.

    ``c`` (...) weights each sample's estimate; ``dz`` (..., K) is any other cotangent reaching z
    (from the decoder). Along the path d kl_sample / dz = z and its direct derivative in each
    logvar is -1/2. Returns dmu, dlogvar of shapes ``mu_shape`` / ``logvar_shape``.
    """
    xp = xp_of(c, z)
    dmu, dlv = reparameterize_backward(dz + c[..., None] * z, std, eps, mu_shape, logvar_shape)
    return dmu, dlv - sum_to_shape(xp.broadcast_to(0.5 * c[..., None], z.shape), logvar_shape)


def logsumexp(a, axis):
    """log sum exp of ``a`` over ``axis`` (int or tuple; removed), shifted by the maximum so it cannot overflow."""
    xp = xp_of(a)
    m = a.max(axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0.0)           # an all -inf slice (zero mass) gives -inf, not NaN
    total = xp.exp(a - m).sum(axis=axis, keepdims=True)
    log_total = xp.where(total > 0, xp.log(xp.where(total > 0, total, 1.0)), -xp.inf)
    return (m + log_total).squeeze(axis)

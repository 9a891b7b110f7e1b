"""Information metrics of an encoder: mutual information I_q, active units, aggregate posterior vs prior.

All three are docs/math.md 3:

- ``mutual_information``: the minibatch estimate of I_q(x; z) of He et al. (2019, "Lagging
  Inference Networks"), used by their trainer (docs/math.md 2.3, ``refvae.lin``) to decide when
  the aggressive phase ends;
- ``active_units``: Burda et al.'s count of latent dimensions whose posterior mean varies
  with x;
- ``aggregate_kl_to_prior``: the KL from the moment-matched Gaussian of samples of the
  aggregate posterior q(z) = (1/N) sum_n q(z|x_n) to the prior N(0, I) (yacoby2020 App. B;
  the Henze-Zirkler half of that comparison lives in ``refvae.metrics.hz``).

Every function takes encoder moments (or samples) with an optional leading restarts axis
R and answers per restart. Log-densities come from ``refvae.distributions``.
"""
from __future__ import annotations

import math

from .. import _checks
from ..backend import make_rng, normal, to_host, xp_of
from ..distributions import gaussian_log_prob, logsumexp, reparameterize

__all__ = ["mutual_information", "encoder_mutual_information", "active_units",
           "aggregate_posterior_samples", "aggregate_kl_to_prior"]

# entries of one (rows, B, K) block of pairwise log-densities: bounds the memory of the
# B x B aggregate in ``mutual_information`` (2**22 float64 = 32 MiB).
_BLOCK = 2 ** 22


def _moments(mu, logvar):
    mu = _checks.array("mu", mu, min_ndim=2)
    if mu.ndim > 3:
        raise ValueError(f"mu must have shape (B, K) or (R, B, K), got {tuple(mu.shape)}")
    logvar = _checks.array("logvar", logvar, shape=tuple(mu.shape))
    return mu, logvar


def mutual_information(mu, logvar, noise):
    """Minibatch estimate of the encoder's mutual information I_q(x; z) (docs/math.md 3; He et al. 2019).

    I_q = E_x E_q(z|x)[log q(z|x)] - E_x E_q(z|x)[log q(z)], where q(z) is replaced by the
    aggregate posterior of the minibatch, q_B(z) = (1/B) sum_j q(z|x_j). With one sample
    z_i = mu_i + exp(logvar_i / 2) eps_i per point (or S of them, averaged),

        I_hat = (1/B) sum_i [ log q(z_i | x_i) - (logsumexp_j log q(z_i | x_j) - log B) ].

    He et al.'s code evaluates the first term in closed form (minus the entropy); here it is
    evaluated at the same samples z_i, which has the same expectation (E_q log q(z|x) is
    exactly minus the entropy) and a smaller variance: the two terms share their noise. In
    particular I_hat = 0 exactly when q(z|x) does not depend on x, and I_hat <= log B
    always (the j = i term of the sum alone gives log q(z_i|x_i)). For finite B it is a
    biased estimate of I_q (q_B is an unbiased estimate of q, its logarithm is not); the
    bias vanishes as B grows.

    Parameters
    ----------
    mu, logvar : (B, K) or (R, B, K)
        Encoder means and log-variances of a minibatch of B >= 2 points (R restarts).
    noise : (R?, B, K) or (S, R?, B, K)
        Standard normal draws (``refvae.backend.normal``): one or S samples per point.

    Returns
    -------
    array of shape () or (R,): the estimate in nats, averaged over points and samples.
    The B x B table of log q(z_i | x_j) is built in row blocks of at most 2**22 entries.
    """
    mu, logvar = _moments(mu, logvar)
    noise = _checks.array("noise", noise)
    if tuple(noise.shape) != tuple(mu.shape) and tuple(noise.shape[1:]) != tuple(mu.shape):
        raise ValueError(f"noise must have shape {tuple(mu.shape)} or (S, *{tuple(mu.shape)}), "
                         f"got {tuple(noise.shape)}")
    B, K = mu.shape[-2], mu.shape[-1]
    if B < 2:
        raise ValueError(f"mu must hold at least 2 points to form the aggregate posterior, got B = {B}")
    xp = xp_of(mu, logvar, noise)
    z, _ = reparameterize(mu, logvar, noise)                       # (S?, R?, B, K)
    log_self = gaussian_log_prob(z, mu, logvar)[0].sum(axis=-1)     # (S?, R?, B)
    rows = max(1, _BLOCK // (B * K * max(1, z.size // (B * K))))
    log_agg = []
    for i0 in range(0, B, rows):
        zi = z[..., i0:i0 + rows, None, :]                          # (S?, R?, c, 1, K)
        pair = gaussian_log_prob(zi, mu[..., None, :, :], logvar[..., None, :, :])[0].sum(axis=-1)
        log_agg.append(logsumexp(pair, axis=-1) - math.log(B))     # (S?, R?, c)
    log_agg = xp.concatenate(log_agg, axis=-1)
    per_point = (log_self - log_agg).mean(axis=-1)                 # (S?, R?)
    return per_point.reshape((-1,) + mu.shape[:-2]).mean(axis=0)


def encoder_mutual_information(model, params, x, *, seed, n_samples=None):
    """``mutual_information`` of ``model``'s encoder on the whole of ``x`` taken as one batch.

    Parameters
    ----------
    model : an objective with ``encode(params, x) -> (mu, logvar)`` (``GaussianVAE``,
        ``refvae.encoders.PerPointVAE``).
    params : its parameter dict (restarts axis allowed).
    x : (N, d) data, N >= 2 (for ``PerPointVAE``: rows augmented with their index, ``with_index``).
    seed : int or numpy Generator for the samples of z.
    n_samples : samples per point (default one, noise without a sample axis).

    Returns
    -------
    array () or (R,), see ``mutual_information``.
    """
    x = _checks.array("x", x, ndim=2)
    if x.shape[0] < 2:
        raise ValueError(f"x must hold at least 2 points (taken as one batch, they form the aggregate "
                         f"posterior), got {x.shape[0]}")
    n_samples = _checks.integer("n_samples", n_samples, min_value=1, allow_none=True)
    rng = make_rng(seed)
    mu, logvar = model.encode(params, x)
    shape = tuple(mu.shape) if n_samples is None else (n_samples,) + tuple(mu.shape)
    return mutual_information(mu, logvar, normal(rng, shape))


def active_units(mu, threshold=0.01, *, return_variances=False):
    """Number of active latent dimensions (Burda et al. 2016; docs/math.md 3).

    Dimension k is active when Var_x(E_q[z_k | x]) = Var_n(mu_nk) > ``threshold``; the
    variance is the maximum-likelihood one (divisor N, docs/math.md 0).

    Parameters
    ----------
    mu : (N, K) or (R, N, K)
        Encoder means of N data points (R restarts).
    threshold : float >= 0, default 0.01 (Burda et al.'s value).
    return_variances : also return the per-dimension variances, (K,) or (R, K).

    Returns
    -------
    int, or an int array (R,) with restarts [, variances].
    """
    mu = _checks.array("mu", mu, min_ndim=2)
    if mu.ndim > 3:
        raise ValueError(f"mu must have shape (N, K) or (R, N, K), got {tuple(mu.shape)}")
    threshold = _checks.scalar("threshold", threshold, nonneg=True)
    if mu.shape[-2] < 1:
        raise ValueError("mu must hold at least one point")
    var = mu.var(axis=-2)
    count = (var > threshold).sum(axis=-1)
    count = int(to_host(count)) if mu.ndim == 2 else to_host(count).astype(int)
    return (count, var) if return_variances else count


def aggregate_posterior_samples(mu, logvar, noise):
    """Samples of the aggregate posterior q(z) = (1/N) sum_n q(z|x_n): z_n = mu_n + exp(logvar_n / 2) eps_n.

    Parameters
    ----------
    mu, logvar : (N, K) or (R, N, K), encoder moments of the whole data set.
    noise : same shape (or (S, R?, N, K) for S draws per point), standard normal.

    Returns
    -------
    z : the broadcast shape of noise; one draw per point is an exact sample of q(z).
    """
    mu, logvar = _moments(mu, logvar)
    noise = _checks.array("noise", noise)
    if tuple(noise.shape) != tuple(mu.shape) and tuple(noise.shape[1:]) != tuple(mu.shape):
        raise ValueError(f"noise must have shape {tuple(mu.shape)} or (S, *{tuple(mu.shape)}), "
                         f"got {tuple(noise.shape)}")
    return reparameterize(mu, logvar, noise)[0]


def aggregate_kl_to_prior(z):
    """KL( N(zbar, C) || N(0, I) ) for the moment-matched Gaussian of samples z (docs/math.md 3).

    KL = 0.5 [tr C + zbar^T zbar - K - log det C], with zbar the sample mean and C the
    maximum-likelihood covariance (divisor n, docs/math.md 0) of the n samples. Zero exactly when
    the samples have mean 0 and covariance I; it sees only the first two moments (the
    Henze-Zirkler statistic sees the rest).

    Parameters
    ----------
    z : (n, K) or (R, n, K), samples of the aggregate posterior (``aggregate_posterior_samples``),
        n > K so that C can be non-singular.

    Returns
    -------
    array () or (R,); +inf where C is singular (a degenerate Gaussian).
    """
    z = _checks.array("z", z, min_ndim=2)
    if z.ndim > 3:
        raise ValueError(f"z must have shape (n, K) or (R, n, K), got {tuple(z.shape)}")
    n, K = z.shape[-2], z.shape[-1]
    if n <= K:
        raise ValueError(f"z must hold more samples than dimensions (n > K) to fit a covariance, "
                         f"got n = {n}, K = {K}")
    xp = xp_of(z)
    zbar = z.mean(axis=-2)
    c = z - zbar[..., None, :]
    cov = c.swapaxes(-1, -2) @ c / n
    sign, logdet = xp.linalg.slogdet(cov)
    tr = xp.trace(cov, axis1=-2, axis2=-1)
    kl = 0.5 * (tr + (zbar * zbar).sum(axis=-1) - K - logdet)
    return xp.where(sign > 0, kl, xp.inf)

"""berger2020 Theorem 1: a fixed-variance VAE collapses to the centre of a small sphere.

Data uniform on the sphere of radius r in R^d and the observation model N(x; f(z), sigma2 I)
with sigma2 fixed. Berger and Sebag show (docs/math.md 4.6) that the best decoder output
distribution is uniform on a concentric sphere of radius rho*, with rho* = 0 -- the model is
N(centre, sigma2 I), blind to the sphere -- whenever r^2 <= d sigma2, and rho* in (0, r),
tending to r as sigma2 -> 0, otherwise (``analytic.hypersphere.optimal_radius``).

``sphere_vae_radius`` trains fixed-sigma2 VAEs with refvae on ``refvae.datasets.hypersphere``
and measures the radius of what they decode; ``threshold_sweep`` does so over a grid of
sigma2 on both sides of the threshold r^2 / d.

Which radius. The theorem's object is the distribution of the decoder output f(z) under the
encoder's aggregate posterior (its proof replaces q by the law of the decoded mean). The
measured radius is the mean distance of f(z), z ~ q(z|x), from the data's sample mean: with
N points the collapsed optimum is N(xbar, sigma2 I), not the exact centre, and |xbar| ~ r /
sqrt(N) would otherwise be read as a radius.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import analytic.hypersphere as ah

from .. import _checks, datasets
from ..backend import make_rng, normal, to_host
from ..distributions import gaussian_log_prob, reparameterize
from ..objectives import GaussianVAE
from ..train import check_stages, fit_stages

__all__ = ["SphereRun", "decoded_radius", "sphere_vae_radius", "threshold_sweep"]


@dataclass
class SphereRun:
    """One fixed-sigma2 VAE fitted to sphere data, with R restarts.

    sigma2, radius, data_dim : the setting (r, d).
    optimal_radius : rho* of ``analytic.hypersphere.optimal_radius`` (0 when r^2 <= d sigma2).
    learned_radius : (R,) mean |f(z) - xbar| over the training points, z ~ q(z|x).
    radius_sd : (R,) the spread of |f(z) - xbar| within each model (0 for a perfect sphere).
    prior_radius : (R,) the same mean with z ~ p(z) (generated rather than reconstructed points).
    jitter : (R,) sd of ``learned_radius`` over the last quarter of training (optimiser noise).
    neg_elbo : (R,) the mean training loss over the last quarter (-ELBO per point).
    optimum_neg_objective : -F(rho*), the ideal VAE's -ELBO (exact posterior, infinite data).
    collapsed_neg_elbo : -ELBO per point of the collapsed model on the training sample,
        decoder f = xbar and q = p(z): (d/2) log(2 pi sigma2) + mean |x - xbar|^2 / (2 sigma2).
    """
    sigma2: float
    radius: float
    data_dim: int
    optimal_radius: float
    learned_radius: np.ndarray
    radius_sd: np.ndarray
    prior_radius: np.ndarray
    jitter: np.ndarray
    neg_elbo: np.ndarray
    optimum_neg_objective: float
    collapsed_neg_elbo: float
    settings: dict = field(default_factory=dict)


def decoded_radius(model, params, x, rng, *, prior=False):
    """Distances |f(z) - xbar| of decoded means from the data's sample mean, shape (R?, N).

    Parameters
    ----------
    model : GaussianVAE; params : its parameters (restarts axis R allowed).
    x : (N, d) data; rng : numpy.random.Generator.
    prior : draw z ~ p(z) (N of them) instead of z ~ q(z|x_n).
    """
    x = _checks.array("x", x, ndim=2)
    if prior:
        z = normal(rng, model.noise_shape(params, x.shape[0]))
    else:
        mu, lv = model.encode(params, x)
        z, _ = reparameterize(mu, lv, normal(rng, mu.shape))
    mean, _ = model.decode(params, z)
    return np.linalg.norm(to_host(mean) - np.asarray(to_host(x)).mean(axis=0), axis=-1)


def sphere_vae_radius(sigma2, *, seed, radius=1.0, data_dim=2, latent_dim=1, hidden=(16, 16), n=1000,
                      restarts=3, schedule=((1e-2, 1000), (2e-3, 500)), batch_size=100, progress=None):
    """Train fixed-variance VAEs on sphere data and measure the radius they decode.

    berger2020 Theorem 1 (docs/math.md 4.6): ``n`` points of ``refvae.datasets.hypersphere``, a
    ``GaussianVAE`` with tanh MLPs and ``obs="fixed"`` at ``sigma2``, trained with Adam under
    ``schedule`` (``fit_stages``) on minibatches.

    Parameters
    ----------
    sigma2 : float > 0, the fixed observation variance.
    seed : int or numpy.random.Generator.
    radius, data_dim : r and d of the data sphere.
    latent_dim : K. The default 1 matches the circle (d = 2), a one-dimensional manifold the
        decoder can trace with one coordinate; with K = 2 the prior's mass near z = 0 has to
        be decoded somewhere inside the circle, which pulls the mean radius below rho*
        (measured 0.88 against rho* = 0.95 at sigma2 = 0.1).
    hidden : widths of the hidden layers of encoder and decoder.
    n, restarts, schedule, batch_size : data size, R, (learning rate, steps) stages, minibatch.
    progress : optional callable(step, total steps).

    Returns
    -------
    SphereRun
    """
    sigma2 = _checks.scalar("sigma2", sigma2, positive=True)
    radius = _checks.scalar("radius", radius, positive=True)
    data_dim = _checks.integer("data_dim", data_dim, min_value=1)
    restarts = _checks.integer("restarts", restarts, min_value=1)
    rng = make_rng(seed)
    x = np.asarray(datasets.hypersphere(n, rng, radius=radius, data_dim=data_dim).x)
    model = GaussianVAE.from_sizes(data_dim, latent_dim, hidden=tuple(hidden), activation="tanh", obs="fixed",
                                   sigma2=sigma2)
    params = model.init(rng, restarts)
    stages = check_stages("schedule", schedule)
    total = sum(s for _, s in stages)
    probe = x[rng.choice(n, size=min(n, 200), replace=False)]
    probe_rng = np.random.default_rng(rng.integers(2 ** 63))
    trace = []

    def watch(t, p, terms):
        if progress is not None and t % 50 == 0:
            progress(t, total)
        if t >= total - total // 4 and t % 10 == 0:
            trace.append(np.atleast_2d(decoded_radius(model, p, probe, probe_rng)).mean(axis=-1))

    params, hist = fit_stages(model, params, x, stages=stages, seed=rng, batch_size=batch_size, callback=watch)
    r_q = np.atleast_2d(decoded_radius(model, params, x, rng))
    r_p = np.atleast_2d(decoded_radius(model, params, x, rng, prior=True))
    rho = ah.optimal_radius(radius, sigma2, data_dim)
    return SphereRun(sigma2=sigma2, radius=radius, data_dim=data_dim, optimal_radius=rho,
                     learned_radius=r_q.mean(axis=-1), radius_sd=r_q.std(axis=-1), prior_radius=r_p.mean(axis=-1),
                     jitter=np.std(np.asarray(trace), axis=0),
                     neg_elbo=np.atleast_2d(hist["loss"][-(total // 4):].T).mean(axis=-1),
                     optimum_neg_objective=-ah.objective(rho, radius, sigma2, data_dim),
                     collapsed_neg_elbo=-float(gaussian_log_prob(x, x.mean(axis=0), np.log(sigma2))[0]
                                               .sum(axis=-1).mean()),
                     settings=dict(n=n, latent_dim=latent_dim, hidden=tuple(hidden), restarts=restarts,
                                   schedule=stages, batch_size=batch_size))


def threshold_sweep(sigma2_values, *, seed, progress=None, **kwargs):
    """``sphere_vae_radius`` for each sigma2 (independent seeds drawn from ``seed``); a list of SphereRun.

    ``progress`` is callable(fraction, message); ``kwargs`` go to ``sphere_vae_radius``.
    """
    values = [_checks.scalar(f"sigma2_values[{i}]", s, positive=True) for i, s in enumerate(sigma2_values)]
    rng = make_rng(seed)
    seeds = rng.integers(2 ** 63, size=len(values))      # one stream per sigma2
    runs = []
    for i, s2 in enumerate(values):
        cb = None if progress is None else (
            lambda t, total, i=i, s2=s2: progress((i + t / total) / len(values), f"sigma2 = {s2:g}"))
        runs.append(sphere_vae_radius(s2, seed=int(seeds[i]), progress=cb, **kwargs))
    return runs

"""yacoby2021's condition on Clusters and Spiral Dots: their exact posteriors are far from Gaussian.

For each point, the best diagonal-Gaussian fit min_q KL(q || p(z|x)) is searched on the exact
quadrature posterior (``refvae.metrics.quadrature.kl_to_posterior``): a multi-start grid around
the posterior's moments, then Nelder-Mead from the best start. The search returns an upper bound
on the minimum; the linear-Gaussian control, whose posterior is Gaussian, shows it reaches ~0
when a Gaussian fits, so a large value on Clusters is the posterior's shape, not the search.

KL(q || p(z|x)) = KL(q || N(0, I)) - E_q log p(x|z) + log p(x), and log p(x) does not depend on
q: the search runs on the same objective with log p(x) from a coarse prior rule (a constant
offset per point, so the same minimiser), and the reported value is recomputed at the minimiser
with the default rule. Recomputing log p(x) to full precision at every search step cost ~75% of
this module's time.
"""
import warnings

import numpy as np
import pytest
from scipy import optimize

from refvae import datasets
from refvae.metrics import quadrature as Q

COARSE_GRID = 64           # prior-rule nodes for the search's log p(x) offset (default 6400)


def best_gaussian_kl(ds):
    args = ds.truth.quadrature_args
    post = Q.posterior_grid(ds.x, **args)
    m0, lv0 = post.mean()[:, 0], np.log(post.cov()[:, 0, 0])
    sd0 = np.exp(0.5 * lv0)

    def kl(mu, lv, rows=slice(None), **rule):
        return Q.kl_to_posterior(ds.x[rows], np.atleast_1d(mu)[:, None], np.atleast_1d(lv)[:, None],
                                 **args, **rule)

    def shifted_kl(mu, lv, rows=slice(None)):
        # KL + (coarse log p(x) - exact log p(x)): the offset does not depend on (mu, lv); the coarse
        # rule's own accuracy does not matter here, so its QuadratureWarning is silenced
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Q.QuadratureWarning)
            return kl(mu, lv, rows, grid_size=COARSE_GRID)

    starts = [(a, b) for a in np.linspace(-2, 2, 9) for b in np.linspace(-4, 1, 11)]
    grid = np.array([shifted_kl(m0 + a * sd0, lv0 + b) for a, b in starts])          # (starts, N)
    best = grid.argmin(axis=0)
    out = []
    for i in range(len(ds.x)):
        a, b = starts[best[i]]
        res = optimize.minimize(lambda p: shifted_kl(p[0], p[1], slice(i, i + 1))[0],
                                [m0[i] + a * sd0[i], lv0[i] + b],
                                method="Nelder-Mead", options={"xatol": 1e-7, "fatol": 1e-10, "maxiter": 400})
        # Nelder-Mead's result is never worse than its start, the best grid point
        out.append(kl(res.x[0], res.x[1], slice(i, i + 1))[0])
    return np.array(out)


def test_control_gaussian_posterior_is_fitted_exactly():
    ds = datasets.load("pedagogical_c1", 12, seed=3, theta=0.08, sigma2=0.01)
    assert np.max(best_gaussian_kl(ds)) < 1e-6


@pytest.fixture(scope="module")
def circle_kl():
    return best_gaussian_kl(datasets.load("circle", 12, seed=3))


@pytest.mark.parametrize("name, share", [("clusters", 0.75), ("spiral_dots", 0.75)])
def test_clusters_and_spiral_posteriors_are_far_from_gaussian(name, share, circle_kl):
    """Measured over 60 points (seed 3): min KL > 0.1 for 93% (Clusters) and 98% (Spiral Dots) of
    points, against 10% for Circle; the bound below leaves room for the 12-point sample's spread."""
    k = best_gaussian_kl(datasets.load(name, 12, seed=3))
    assert np.mean(k > 0.1) >= share, k
    assert np.median(circle_kl) < 0.1 < np.median(k), (np.median(circle_kl), np.median(k))

"""berger2020 Theorem 1: a fixed-sigma VAE on a circle collapses to the centre when r^2 < d sigma2.

Data on the circle of radius r in R^2 (d = 2); F-VAE (fixed observation variance sigma2) with
a 1-D latent and MLP encoder and decoder, trained with refvae. Theorem 1 (docs/math.md 4.6;
``analytic.hypersphere``) is about the best decoder: by symmetry its outputs are uniform on a
concentric circle of radius rho, and the expected log-likelihood F(rho) is maximised at
rho* = 0 when r^2 <= 2 sigma2 and at rho* in (0, r) otherwise.

Which VAE can represent the optimum: a 1-D latent z ~ N(0, 1) with an MLP decoder can output
a circle of any radius traversed uniformly (f(z) = rho (cos 2 pi Phi(z), sin 2 pi Phi(z)) up
to reparameterisation) and also the constant 0, so both optima are in the family. The
theorem assumes an exact posterior (then ELBO = log p(x)); the VAE's Gaussian q is not exact
for the circle, so the objective the theorem computes is compared with the learned model's
*exact* log-likelihood (quadrature over z, ``refvae.metrics.quadrature``), and the learned
-ELBO is checked as a bound. In the collapsed case q = p(z) is exact and the -ELBO itself
must equal -F(0).

Data: N evenly spaced angles, the N-point quadrature of the uniform distribution, instead of
``datasets.hypersphere``'s random sample. The theorem is stated for infinite data; a random
sample has density fluctuations at the model's angular resolution (~sigma / r) that a
flexible decoder can fit, which would let the learned log-likelihood exceed F(rho*).
"""
import numpy as np
import pytest

from analytic import hypersphere as hs
from refvae import GaussianVAE
from refvae.metrics import quadrature
from refvae.train import fit_stages
from refvae.metrics.likelihood import objective_estimate

R_DATA, D, N = 1.0, 2, 128


def circle(n, r):
    angle = 2.0 * np.pi * (np.arange(n) + 0.5) / n
    return r * np.stack([np.cos(angle), np.sin(angle)], axis=1)


def fit_circle(sigma2, schedule, average, seed=0):
    X = circle(N, R_DATA)
    model = GaussianVAE.from_sizes(D, 1, hidden=(32, 32), activation="tanh", obs="fixed", sigma2=sigma2)
    params = model.init(np.random.default_rng(seed))
    params, _ = fit_stages(model, params, X, stages=schedule, seed=seed + 1, average=average)
    z = np.random.default_rng(seed + 2).standard_normal((20000, 1))
    radius = np.linalg.norm(model.decode(params, z)[0], axis=-1)       # decoded means, z ~ p(z)
    log_px = quadrature.log_likelihood(X, lambda zz: model.decode(params, zz)[0], 1, sigma2=sigma2)
    neg_elbo, se = objective_estimate(model, params, X, seed=seed + 3, replicates=16, n_samples=16)
    return radius, log_px, neg_elbo, se


@pytest.mark.slow
def test_collapses_to_the_centre_below_the_threshold():
    """Slow (~4 s CPU). The default suite keeps this check: tests/test_examples.py
    ``test_03_hypersphere_threshold`` (sigma2 = 1.0 on the same circle: rho* = 0, decoded radius < 0.07,
    exact log p(x) within 5e-4 and the ELBO within 1e-3 of F(0)) and the ``hypersphere_threshold``
    claim of tests/verify/test_claims.py (1.2 x the critical sigma2: radius < 0.1 r, -ELBO within 0.01
    of the collapsed model's, every restart)."""
    sigma2 = 1.0                                    # r^2 = sigma2 < d sigma2 = 2
    assert R_DATA ** 2 < D * sigma2 and hs.optimal_radius(R_DATA, sigma2, D) == 0.0
    F0 = hs.objective(0.0, R_DATA, sigma2, D)
    radius, log_px, neg_elbo, se = fit_circle(sigma2, [(0.01, 1000), (0.003, 1000), (0.001, 1000)], 1000)
    # Decoded means sit at the centre: measured mean radius 0.004-0.006 over 4 initialisations
    # (residual offset and z-dependence, costing delta^2 / (2 sigma2) < 1e-4 nats); tolerance
    # 0.02, against the data radius 1 (and rho* = 0.59 already at sigma2 = 0.4).
    assert radius.mean() < 0.02, f"mean decoded radius {radius.mean():.4f}, expected 0"
    # The model is N(0, sigma2 I) with q = p(z) exact, so the -ELBO itself is -F(0): measured
    # |difference| < 1e-4 nats; tolerance 4 Monte Carlo se + 5e-4, and the same for log p(x).
    assert abs(neg_elbo - (-F0)) < 4 * se + 5e-4, f"-ELBO {neg_elbo:.5f} +- {se:.1e} vs -F(0) = {-F0:.5f}"
    assert abs(log_px.mean() - F0) < 5e-4, f"log p(x) {log_px.mean():.5f} vs F(0) = {F0:.5f}"


@pytest.mark.slow
def test_optimal_radius_above_the_threshold():
    """Slow (~8 s CPU: 7000 steps, for the 0.02 radius and 0.03-nat log p(x) tolerances). The default
    suite keeps a looser check of the non-collapsed side: tests/test_examples.py
    ``test_03_hypersphere_threshold`` (sigma2 = 0.1: decoded radius within 0.1 of rho*, exact log p(x)
    never above F(rho*) + 1e-3, at every sigma2) and the ``hypersphere_threshold`` claim of
    tests/verify/test_claims.py (0.1 x the critical sigma2: radius within 0.1 r of rho*, -ELBO below the
    collapsed model's, every restart)."""
    sigma2 = 0.2                                    # r^2 = 5 sigma2 > d sigma2
    rho_star = hs.optimal_radius(R_DATA, sigma2, D)                  # 0.877
    F_star, F0 = hs.objective(rho_star, R_DATA, sigma2, D), hs.objective(0.0, R_DATA, sigma2, D)
    assert 0.8 < rho_star < 0.9
    radius, log_px, neg_elbo, se = fit_circle(sigma2, [(0.01, 3000), (0.003, 2500), (0.001, 1500)], 1500)
    # Radius. Measured mean decoded radius 0.873-0.875 over 4 initialisations (the finite MLP
    # traces the circle with a radius wobble of sd ~0.04 along it). The Gaussian q does not move
    # the optimum visibly: for a locally linear angle map, the radius condition of the VAE is
    # rho = r E_q[cos(angle error)] with the best wrapped-Gaussian q, which gives 0.878 against
    # Theorem 1's 0.877 (von Mises posterior). Tolerance 0.02, 1/6 of the distance to r = 1.
    assert abs(radius.mean() - rho_star) < 0.02, f"mean decoded radius {radius.mean():.4f} vs rho* = {rho_star:.4f}"
    # Objective. The learned model's exact log-likelihood cannot exceed the optimum F(rho*)
    # (evenly spaced data: no sampling fluctuation to fit; quadrature error < 1e-8) and comes
    # within 0.03 of it (measured shortfall 0.009-0.010 nats over 4 initialisations: the radius
    # wobble and a slightly non-uniform speed along the circle).
    assert log_px.mean() <= F_star + 1e-3, f"log p(x) {log_px.mean():.5f} above the optimum F* = {F_star:.5f}"
    assert log_px.mean() > F_star - 0.03, f"log p(x) {log_px.mean():.5f} vs F* = {F_star:.5f}"
    # The -ELBO is an upper bound on -log p(x) >= -F(rho*) (measured 1.98-2.00 vs 1.891: the gap
    # is KL(q || p(z|x)), largest near the seam where 1-D posteriors are bimodal), and it is far
    # below the collapsed model's -F(0) = 2.728.
    assert neg_elbo >= -log_px.mean() - 4 * se
    assert neg_elbo < -F0 - 0.5, f"-ELBO {neg_elbo:.4f} not clearly below the collapsed -F(0) = {-F0:.4f}"

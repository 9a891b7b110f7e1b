"""Helpers of refvae.experiments.noise_modes and hypersphere that the claim runs do not check.

``three_noise_ordering`` and ``hypersphere_threshold`` (run in miniature by test_claims.py)
cover the experiments end to end; here: ``fit_stages`` replays a schedule across its stages
with one global step count, ``mc_elbo`` is the model's exact ELBO within its Monte Carlo
error, ``decoded_radius`` measures from the sample mean, and bad input is refused.
"""
import numpy as np
import pytest

import analytic.linear_vae as alv
from refvae import GaussianVAE
from refvae.experiments import hypersphere, noise_modes


def test_mc_elbo_matches_the_exact_linear_vae_elbo():
    # A linear VAE whose encoder log-variance does not depend on x has the closed-form ELBO of
    # analytic.linear_vae (docs/math.md 4.4); mc_elbo must agree within 4 of its standard errors.
    rng = np.random.default_rng(5)
    d, K, s2 = 3, 2, 0.3
    x = rng.standard_normal((400, d)) @ rng.standard_normal((d, d))
    model = GaussianVAE.linear(d, K, obs="fixed", sigma2=s2)
    p = model.init(rng, restarts=2)
    W = rng.standard_normal((2, d, K))            # analytic's (d, K) loadings per restart
    m = rng.standard_normal((2, d))
    V = rng.standard_normal((2, K, d)) * 0.3
    D = np.exp(rng.standard_normal((2, K)) * 0.5)
    p["dec.0.W"], p["dec.0.b"] = W.swapaxes(1, 2), m
    p["enc.0.W"] = np.concatenate([V.swapaxes(1, 2), np.zeros((2, d, K))], axis=2)
    p["enc.0.b"] = np.concatenate([-np.einsum("rkd,rd->rk", V, m), np.log(D)], axis=1)
    elbo, se = noise_modes.mc_elbo(model, p, x, seed=6, n_samples=64, replicates=16)
    exact = [alv.elbo(x, W[r], m[r], s2, V[r], D[r]) for r in range(2)]
    assert elbo.shape == se.shape == (2,)
    assert np.all(np.abs(elbo - exact) < 4 * se), (elbo, exact, se)


def test_decoded_radius_is_measured_from_the_sample_mean():
    # a decoder that outputs the constant xbar (all weights 0, bias xbar) has radius 0 exactly
    x = np.asarray(noise_modes.datasets.hypersphere(50, 0, radius=2.0, data_dim=2).x)
    model = GaussianVAE.from_sizes(2, 1, hidden=(3,), obs="fixed", sigma2=1.0)
    p = {k: np.zeros_like(v) for k, v in model.init(np.random.default_rng(0)).items()}
    p["dec.2.b"] = x.mean(axis=0)
    r = hypersphere.decoded_radius(model, p, x, np.random.default_rng(1))
    assert r.shape == (50,) and np.all(r < 1e-12)
    p["dec.2.b"] = x.mean(axis=0) + np.array([0.3, -0.4])
    np.testing.assert_allclose(hypersphere.decoded_radius(model, p, x, np.random.default_rng(1), prior=True), 0.5)


def test_experiments_reject_bad_input():
    with pytest.raises(ValueError, match="sigmas must hold at least one"):
        noise_modes.three_noise_experiment(seed=0, sigmas=())
    with pytest.raises(ValueError, match="sigma2 must be positive"):
        hypersphere.sphere_vae_radius(0.0, seed=0)
    with pytest.raises(ValueError, match=r"sigma2_values\[1\] must be positive"):
        hypersphere.threshold_sweep([0.1, -1.0], seed=0)
    with pytest.raises(ValueError, match="replicates must be >= 2"):
        model = GaussianVAE.from_sizes(2, 1, hidden=(3,))
        noise_modes.mc_elbo(model, model.init(np.random.default_rng(0)), np.zeros((4, 2)), seed=0, replicates=1)

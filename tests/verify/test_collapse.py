"""refvae.experiments.collapse: the pieces the dai2020 claims rely on but do not check themselves.

The claims (run in miniature by test_claims.py) check the theorems; these tests pin the plumbing
under them: the mapping of refvae's parameters to analytic's
conventions, the exact per-point linear ELBO, the loss-to-energy conversion of Eq. 5, the staged
trainer, the depth data set and the reconstruction errors, the depth runs' shared initial networks
and their memo, the soft-threshold energy slice of the claim's figure, and the argument checks.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import analytic.linear_vae
import analytic.soft_threshold
from refvae import gradcheck
from refvae.backend import asarray, normal, to_host
from refvae.experiments import collapse
from refvae.objectives import Autoencoder, GaussianVAE
from tests.core.strategies import restarts, seeds

H = 1e-4


@settings(max_examples=10, deadline=None)
@given(seed=seeds, R=restarts, n_samples=st.sampled_from([None, 3]))
def test_soft_threshold_vae_gradient(seed, R, n_samples):
    """The whole soft-threshold VAE objective (per-point encoder, Linear, SoftThreshold, Shift, learned
    gamma). alpha is put in the middle of the widest gap between the |u| of the drawn pre-activations
    u = z W + b0, so that finite differences never cross a kink."""
    rng = np.random.default_rng(seed)
    N, d, K = 4, 3, 2
    probe = collapse.soft_threshold_vae(N, d, K, 0.0)
    params = probe.init(rng, R)
    params = {k: 0.5 * rng.standard_normal(v.shape) + (1.0 if k == "dec.0.W" else 0.0) for k, v in params.items()}
    x = rng.standard_normal((N, d))
    noise = rng.standard_normal(probe.noise_shape(params, N, n_samples))
    z = params["enc.mu"] + np.exp(params["enc.logvar"] / 2) * noise
    u = np.sort(np.abs(z @ params["dec.0.W"] + params["dec.0.b"][..., None, :]).ravel())
    i = int(np.argmax(np.diff(u)))
    alpha, gap = 0.5 * (u[i] + u[i + 1]), 0.5 * (u[i + 1] - u[i])
    assert gap > 1e-2, "pre-activations too crowded to place a kink-free threshold"
    model = collapse.soft_threshold_vae(N, d, K, alpha, sigma2=0.7)
    gradcheck.assert_grad(lambda p: model.value_and_grad(p, x, noise), params, h=H, rtol=1e-6)


def test_energy_from_loss_is_eq5_at_a_point_mass_encoder():
    """With s = exp(lv / 2) ~ 1e-9 the Monte Carlo loss has no noise left, so refvae's loss converted
    by energy_from_loss must equal analytic's exact Eq. 5 energy to rounding, for any decoder."""
    rng = np.random.default_rng(3)
    N, d, K, alpha = 6, 3, 2, 0.5
    model = collapse.soft_threshold_vae(N, d, K, alpha)
    params = model.init(rng, restarts=2)
    params["dec.0.W"] = asarray(rng.standard_normal((2, K, d)))
    params["dec.2.b"] = asarray(rng.standard_normal((2, d)))
    params["dec.obs_logvar"] = asarray(rng.standard_normal((2, 1)))
    params["enc.mu"] = asarray(rng.standard_normal((2, N, K)))
    params["enc.logvar"] = asarray(np.full((2, N, K), -40.0))
    x = rng.standard_normal((N, d))
    loss = to_host(model.value_and_grad(params, x, normal(rng, model.noise_shape(params, N)))[0])
    exact = collapse.soft_threshold_energy(params, x, alpha)
    np.testing.assert_allclose(collapse.energy_from_loss(loss, N, d, K), exact, rtol=1e-10)
    for r in range(2):
        p = collapse.soft_threshold_parts(params, r)
        assert p["W"].shape == (d, K) and p["s"].shape == (N, K)
        np.testing.assert_allclose(p["s"], math.exp(-20.0))


def test_linear_vae_parts_orientation():
    """refvae's decode / encode equal analytic's W z + b and V x + c for the mapped parameters."""
    rng = np.random.default_rng(0)
    d, K = 4, 2
    model = GaussianVAE.linear(d, K, obs="scalar", sigma2=0.3)
    params = model.init(rng, restarts=2)
    params = {k: asarray(rng.standard_normal(v.shape)) for k, v in params.items()}
    x, z = rng.standard_normal((5, d)), rng.standard_normal((5, K))
    mu, lv = model.encode(params, x)
    for r in range(2):
        p = collapse.linear_vae_parts(model, params, r)
        np.testing.assert_allclose(model.decode(params, z)[0][r], z @ p["W"].T + p["b"], rtol=1e-12)
        np.testing.assert_allclose(mu[r], x @ p["V"].T + p["c"], rtol=1e-12)
        np.testing.assert_allclose(lv[r], x @ p["G"] + p["g"], rtol=1e-12)
        assert p["sigma2"] == pytest.approx(math.exp(float(params["dec.obs_logvar"][r, 0])), rel=1e-14)


def test_exact_linear_elbo_reduces_to_analytic_in_its_family():
    """For q = N(V (x - b), diag D) the mean per-point ELBO is analytic.linear_vae.elbo exactly."""
    rng = np.random.default_rng(1)
    N, d, K = 30, 4, 2
    x = rng.standard_normal((N, d)) @ rng.standard_normal((d, d))
    W, b, V = rng.standard_normal((d, K)), rng.standard_normal(d), rng.standard_normal((K, d))
    D = np.exp(rng.standard_normal(K))
    per_point = collapse.exact_linear_elbo(x, W, b, 0.4, (x - b) @ V.T, np.tile(np.log(D), (N, 1)))
    assert per_point.shape == (N,)
    assert per_point.mean() == pytest.approx(analytic.linear_vae.elbo(x, W, b, 0.4, V, D), rel=1e-12)


def test_exact_linear_elbo_is_refvaes_loss_for_any_affine_encoder():
    """With x-dependent log-variances (outside analytic's family) the exact per-point ELBO still equals
    refvae's Monte Carlo -ELBO: 64 replicates of 16 samples per point, bound 4 standard errors."""
    rng = np.random.default_rng(2)
    N, d, K = 40, 3, 2
    model = GaussianVAE.linear(d, K, obs="scalar", sigma2=0.5)
    params = {k: asarray(0.5 * rng.standard_normal(v.shape)) for k, v in model.init(rng).items()}
    x = rng.standard_normal((N, d))
    mu, lv = (to_host(a) for a in model.encode(params, x))
    p = collapse.linear_vae_parts(model, params)
    assert np.abs(p["G"]).max() > 0.1
    exact = -collapse.exact_linear_elbo(x, p["W"], p["b"], p["sigma2"], mu, lv).mean()
    vals = np.array([float(model.value_and_grad(params, x, normal(rng, model.noise_shape(params, N, 16)))[0])
                     for _ in range(64)])
    se = vals.std(ddof=1) / 8.0
    assert abs(vals.mean() - exact) < 4 * se, (vals.mean(), exact, se)


def test_manifold_data_is_reproducible_and_shared_across_seeds():
    a = collapse.manifold_data(50, 1, data_dim=10, intrinsic_dim=3)
    assert a.shape == (50, 10)
    np.testing.assert_array_equal(a, collapse.manifold_data(50, 1, data_dim=10, intrinsic_dim=3))
    assert not np.allclose(a, collapse.manifold_data(50, 2, data_dim=10, intrinsic_dim=3))
    assert not np.allclose(a, collapse.manifold_data(50, 1, data_dim=10, intrinsic_dim=3, manifold_seed=1))
    # the noise is additive on top of the same network: noise-free and noisy data differ by sigma2^(1/2) e
    clean = collapse.manifold_data(2000, 7, data_dim=10, intrinsic_dim=3, sigma2=0.0)
    noisy = collapse.manifold_data(2000, 7, data_dim=10, intrinsic_dim=3, sigma2=0.04)
    assert np.var(noisy - clean) == pytest.approx(0.04, rel=0.05)    # 20000 draws: 1 sd of the ratio is 1%
    with pytest.raises(ValueError, match="intrinsic_dim"):
        collapse.manifold_data(10, 0, intrinsic_dim=0)


def test_reconstruction_errors_match_the_objectives():
    rng = np.random.default_rng(6)
    N, d, K = 25, 5, 2
    x = rng.standard_normal((N, d))
    ae = Autoencoder.from_sizes(d, K, (4,), "tanh")
    p = ae.init(rng, restarts=2)
    loss = to_host(ae.value_and_grad(p, x)[0])
    np.testing.assert_allclose(collapse.reconstruction_error(ae, p, x), loss / d, rtol=1e-12)
    # fixed-noise VAE: its recon term is 0.5 (mean squared error * d / s2 + d log(2 pi s2)) with the same noise
    vae = GaussianVAE.from_sizes(d, K, (4,), "tanh", obs="fixed", sigma2=0.3)
    q = vae.init(rng, restarts=2)
    err = collapse.reconstruction_error(vae, q, x, seed=9, n_samples=4)
    noise = normal(np.random.default_rng(9), vae.noise_shape(q, N, 4))
    recon = to_host(vae.value_and_grad(q, x, noise, with_terms=True)[2]["recon"])
    np.testing.assert_allclose(err, (2 * recon / d - math.log(2 * math.pi * 0.3)) * 0.3, rtol=1e-10)


def test_argument_errors():
    x = collapse.manifold_data(10, 0, data_dim=3, intrinsic_dim=1)
    with pytest.raises(ValueError, match="axis data"):
        collapse.soft_threshold_experiment(x, 0.5, 1, restarts=1, delta=0.1, lr=0.01, steps=1, seed=0)
    with pytest.raises(ValueError, match="gammas"):
        collapse.pruning_experiment(x, 1, [1.0, -1.0], restarts=1, stages=[(0.01, 1)], seed=0)
    with pytest.raises(ValueError, match="kinds"):
        collapse.depth_experiment(x, (1,), latent_dim=1, width=2, steps=5, restarts=1, seed=0, kinds=("gan",))
    model = GaussianVAE.linear(3, 1)
    with pytest.raises(ValueError, match="restart index"):
        collapse.linear_vae_parts(model, model.init(np.random.default_rng(0), restarts=2))
    with pytest.raises(ValueError, match="row equal to b"):
        collapse.exact_linear_elbo(np.zeros((2, 2)), np.ones((2, 1)), np.zeros(2), 1.0, np.zeros((2, 1)),
                                   np.zeros((2, 1)))
    bad = collapse.soft_threshold_vae(3, 2, 1, 0.5).init(np.random.default_rng(0))
    bad["dec.0.b"] = bad["dec.0.b"] + 1.0
    with pytest.raises(ValueError, match="inside the threshold"):
        collapse.soft_threshold_parts(bad)


def test_depth_runs_share_initial_networks_and_do_not_depend_on_each_other():
    x = collapse.manifold_data(60, 0, data_dim=6, intrinsic_dim=2)
    kw = dict(latent_dim=2, width=5, steps=20, restarts=2, seed=4, checkpoints=4, n_eval_samples=2)
    memo = {}
    both = collapse.depth_experiment(x, (1, 2), kinds=("ae", "vae"), runs=memo, **kw)
    assert len(memo) == 4 and both.error_trace["ae"].shape == (2, 4, 2) and both.checkpoints == (5, 10, 15, 20)
    np.testing.assert_array_equal(both.errors["ae"], both.error_trace["ae"][:, -1])
    # a run does not depend on which other depths and kinds are trained, with or without the memo
    alone = collapse.depth_experiment(x, (2,), kinds=("vae",), **kw)
    np.testing.assert_array_equal(alone.errors["vae"][0], both.errors["vae"][1])
    again = collapse.depth_experiment(x, (2,), kinds=("ae", "vae", "vae_warm"), runs=memo, **kw)
    assert len(memo) == 5                                              # only the warm-started VAE was new
    np.testing.assert_array_equal(again.errors["ae"][0], both.errors["ae"][1])
    # other settings are other runs
    collapse.depth_experiment(x, (2,), kinds=("ae",), runs=memo, **{**kw, "lr": 2e-3})
    assert len(memo) == 6


def test_autoencoder_starts_from_the_vaes_networks():
    # restart r of the AE and of the VAE at one depth start from the same weights: the AE's code is the
    # VAE encoder's mu, its reconstruction the VAE decoder's mean at that code
    vae = GaussianVAE.from_sizes(6, 2, (5, 5), "relu", obs="scalar")
    p = vae.init(np.random.default_rng(0), restarts=2)
    ae = Autoencoder.from_sizes(6, 2, (5, 5), "relu")
    q = collapse._ae_from_vae(p, vae, 2)
    assert set(q) == set(ae.init(np.random.default_rng(0), restarts=2))
    x = np.random.default_rng(1).standard_normal((7, 6))
    mu, _ = vae.encode(p, x)
    np.testing.assert_array_equal(ae.encode(q, x), mu)
    np.testing.assert_array_equal(ae.decode(q, mu), vae.decode(p, mu)[0])


def test_soft_threshold_slice_shows_a_saddle_for_a_0_and_a_minimum_for_a_positive():
    """The figure's landscape: on the (gain, coupling) slice through the collapsed point, the affine model
    (a = 0) goes downhill along c = m (Eq. 5's cross term -2 c m sd(t) / gammabar wins, a saddle) while the
    soft threshold a = 0.5 keeps every nearby point at or above E_0 (dai2020 Prop. 1; along the gain alone
    the rise is exponentially small, exp(-a^2 / (2 c^2)), and vanishes in rounding near c = 0)."""
    from refvae import datasets
    x = np.asarray(datasets.soft_threshold_axis(40, 0, data_dim=3).x)
    g = np.linspace(-0.2, 0.2, 9)
    affine = collapse.soft_threshold_slice(x, 0.0, 2, g, g)
    soft = collapse.soft_threshold_slice(x, 0.5, 2, g, g)
    assert affine.shape == soft.shape == (9, 9) and affine[4, 4] == pytest.approx(0.0, abs=1e-9)
    assert affine[5, 5] < 0 and affine[3, 3] < 0 and affine[5, 3] > 0       # down along c = m, up across
    assert soft[4, 4] == pytest.approx(0.0, abs=1e-9)
    assert soft.min() >= -1e-9 and soft[5, 5] > 0 and soft[3, 3] > 0


def test_depth_and_slice_argument_errors():
    x = collapse.manifold_data(10, 0, data_dim=3, intrinsic_dim=1)
    kw = dict(latent_dim=1, width=2, restarts=1, seed=0)
    with pytest.raises(ValueError, match="checkpoints must be <= steps"):
        collapse.depth_experiment(x, (1,), steps=5, checkpoints=6, **kw)
    with pytest.raises(ValueError, match="checkpoints must be >= 4"):
        collapse.depth_experiment(x, (1,), steps=5, checkpoints=3, **kw)
    with pytest.raises(TypeError, match="runs must be a dict"):
        collapse.depth_experiment(x, (1,), steps=5, runs=[], **kw)
    with pytest.raises(ValueError, match="gains"):
        collapse.soft_threshold_slice(x, 0.5, 1, [[0.0]], [0.0])

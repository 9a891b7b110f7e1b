"""Helpers of refvae.experiments.noise_modes and hypersphere that the claim runs do not check.

``three_noise_ordering`` and ``hypersphere_threshold`` (run in miniature by test_claims.py)
cover the experiments end to end; here: ``mc_elbo`` is the model's exact ELBO within its Monte
Carlo error, ``decoded_radius`` measures from the sample mean, LV-VAE's constant start
(``constant_variance_head``) sets s2(z) and nothing else, F*-VAE keeps each LS-VAE restart's final
variance and the replay follows one LS-VAE trajectory, cheaper checkpoint scores leave training and the
final score alone, and bad input is refused (the evaluation settings before any training).
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


def test_constant_variance_head_starts_lv_vae_at_one_variance():
    model = GaussianVAE.from_sizes(2, 2, hidden=(5, 4), activation="relu", obs="decoder")
    p = model.init(np.random.default_rng(0), restarts=3)
    q = noise_modes.constant_variance_head(model, p, 0.01)
    z = np.random.default_rng(1).standard_normal((3, 7, 2)) * 3
    mean_p, lv_p = model.decode(p, z)
    mean_q, lv_q = model.decode(q, z)
    np.testing.assert_allclose(np.exp(lv_q), 0.01, rtol=1e-12)         # s2_j(z) = 0.01 for every z and j
    np.testing.assert_array_equal(mean_q, mean_p)                       # the mean head is left alone
    assert np.ptp(lv_p) > 0.1                                           # the default head is not constant
    assert set(q) == set(p) and all(q[k] is p[k] for k in p if not k.startswith("dec.4."))
    with pytest.raises(ValueError, match="obs='decoder'"):
        noise_modes.constant_variance_head(GaussianVAE.from_sizes(2, 2, hidden=(3,), obs="scalar"), p, 0.01)
    with pytest.raises(ValueError, match="sigma2 must be positive"):
        noise_modes.constant_variance_head(model, p, 0.0)


def test_f_star_is_fixed_at_each_ls_restarts_final_variance():
    # F*-VAE restart r keeps LS-VAE restart r's final variance all through training (a frozen learned
    # log-variance: an F-VAE with one variance per restart), and every mode records C checkpoints
    res = noise_modes.three_noise_experiment(seed=3, restarts=2, n_train=300, n_test=100, hidden=(4,),
                                             schedule=((1e-2, 30),), modes=("LS", "F*", "F schedule"),
                                             checkpoints=3, eval_samples=1, eval_replicates=2)
    ls, fs, rep = res.modes["LS"], res.modes["F*"], res.modes["F schedule"]
    np.testing.assert_allclose(res.f_star_sigma2, ls.trajectory[-1], rtol=1e-12)
    np.testing.assert_allclose(fs.trajectory, np.broadcast_to(ls.sigma2, fs.trajectory.shape), rtol=1e-12)
    assert not np.allclose(ls.trajectory[0], ls.trajectory[-1])           # while LS-VAE's moved
    # the replay follows the median LS restart's trajectory, the same in every restart
    np.testing.assert_allclose(rep.trajectory, np.repeat(ls.trajectory[:, [res.replayed_restart]], 2, axis=1))
    for mode in (ls, fs, rep):
        assert mode.checkpoint_elbo.shape == (3, 2) and list(mode.checkpoints) == [10, 20, 30]
        # the last checkpoint is scored with the same noise as the final score
        np.testing.assert_allclose(mode.checkpoint_elbo[-1], mode.elbo, rtol=1e-12)


def test_cheaper_checkpoints_leave_the_final_score_alone():
    # checkpoint_eval changes only the checkpoint scores: training and the final score are those of a run
    # whose checkpoints use the final settings (the same seed, so the same numbers)
    kw = dict(seed=4, restarts=2, n_train=300, n_test=100, hidden=(4,), schedule=((1e-2, 30),), modes=("LS", "LV"),
              checkpoints=3, eval_samples=3, eval_replicates=3)
    plain = noise_modes.three_noise_experiment(**kw)
    cheap = noise_modes.three_noise_experiment(**kw, checkpoint_eval=(1, 2))
    for k in ("LS", "LV"):
        np.testing.assert_array_equal(cheap.modes[k].elbo, plain.modes[k].elbo)
        np.testing.assert_array_equal(cheap.modes[k].trajectory, plain.modes[k].trajectory)
        assert not np.allclose(cheap.modes[k].checkpoint_elbo[-1], cheap.modes[k].elbo, rtol=1e-9)
    assert cheap.settings["eval"] == (3, 3) and cheap.settings["checkpoint_eval"] == (1, 2)
    assert plain.settings["checkpoint_eval"] == (3, 3)


def test_three_noise_modes_are_checked():
    with pytest.raises(ValueError, match="include 'LS'"):
        noise_modes.three_noise_experiment(seed=0, modes=("F", "F*"))
    with pytest.raises(ValueError, match="modes"):
        noise_modes.three_noise_experiment(seed=0, modes=("G",))
    with pytest.raises(ValueError, match="checkpoints must be <="):
        noise_modes.three_noise_experiment(seed=0, schedule=((1e-2, 3),), checkpoints=5)
    # the evaluation settings are refused before any training, not after it
    with pytest.raises(ValueError, match="eval_replicates must be >= 2"):
        noise_modes.three_noise_experiment(seed=0, eval_replicates=1)
    with pytest.raises(ValueError, match=r"checkpoint_eval\[1\] must be >= 2"):
        noise_modes.three_noise_experiment(seed=0, checkpoint_eval=(4, 1))
    with pytest.raises(ValueError, match="checkpoint_eval must be None or"):
        noise_modes.three_noise_experiment(seed=0, checkpoint_eval=4)

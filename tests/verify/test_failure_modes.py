"""Pieces of refvae.experiments.failure_modes (yacoby2021) that the claim runs do not check themselves.

The claims (tests/verify/test_claims.py runs them in miniature) exercise the experiments end to
end; here: the refining quadrature behind every held-out log-likelihood, the budget snapshots of
the Spiral Dots experiment, and argument validation. (The comparison rule is
refvae.verify.rules, tested in test_rules.py; the M2 experiment's pieces in test_m2_collapse.py.)
"""
import math

import numpy as np
import pytest
from scipy.stats import norm

from refvae.experiments import failure_modes as fm


# ------------------------------------------------------------------------------ quadrature

def _steep(scale):
    """A linear decoder x = (scale z, 0) with noise 0.01: log p(x) is closed form."""
    def decode(z):
        return np.concatenate([scale * z, np.zeros_like(z)], axis=1), math.log(0.01)

    def exact(x):
        return norm.logpdf(x[:, 0], scale=math.sqrt(scale ** 2 + 0.01)) + norm.logpdf(x[:, 1], scale=0.1)
    return decode, exact


def test_quadrature_refines_until_resolved():
    # posterior std 0.1 / 50 = 0.002 < 0.005, the finest the default 6400 nodes resolve
    decode, exact = _steep(50.0)
    x = np.random.default_rng(2).standard_normal((20, 2)) * [50.0, 0.1]
    ll, resolved = fm.quadrature_log_likelihood(decode, x, grid_size=6400)
    assert resolved
    np.testing.assert_allclose(ll, exact(x), rtol=0, atol=1e-7)
    _, resolved = fm.quadrature_log_likelihood(decode, x, grid_size=6400, max_grid_size=6400)
    assert not resolved


def test_vae_log_likelihood_per_restart_matches_single():
    model = fm.make_vae(2, 1, (8,))
    params = model.init(np.random.default_rng(3), restarts=2)
    x = np.random.default_rng(4).standard_normal((10, 2))
    ll, ok = fm.vae_log_likelihood(model, params, x)
    assert ll.shape == (2, 10) and ok.shape == (2,)
    single, _ = fm.quadrature_log_likelihood(lambda z: model.decode(fm.restart(params, 1), z), x)
    np.testing.assert_allclose(ll[1], single, rtol=1e-12)


def test_encoder_residuals_shape_and_value():
    model = fm.make_vae(2, 1, (8,))
    params = model.init(np.random.default_rng(5), restarts=2)
    x = np.random.default_rng(6).standard_normal((7, 2))
    r2 = fm.encoder_residuals(model, params, x, np.random.default_rng(7), 3)
    assert r2.shape == (3, 2, 7, 2)
    # the same draws by hand
    mu, lv = model.encode(params, x)
    eps = np.random.default_rng(7).standard_normal((3,) + mu.shape)
    np.testing.assert_allclose(r2, (x - model.decode(params, mu + np.exp(lv / 2) * eps)[0]) ** 2, rtol=1e-12)


# ------------------------------------------------------------------------------ validation

@pytest.mark.parametrize("kwargs, match", [
    (dict(iwae_start="warm"), "iwae_start"),
    (dict(restarts=1), "restarts"),
    (dict(n_test=10, knn_size=20), "n_test"),
    (dict(schedule=()), "schedule"),
    (dict(tail=((-1.0, 10),)), "tail"),
])
def test_px_experiment_validates_before_work(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fm.px_experiment("figure8", seed=0, **kwargs)


def test_px_experiment_needs_a_one_dimensional_latent():
    with pytest.raises(ValueError, match="1-D-latent"):
        fm.px_experiment("gaussian_spectrum", seed=0, n_train=16, n_test=200)


# ------------------------------------------------------------------------------ px protocol

_TINY = dict(restarts=2, n_train=32, n_test=40, n_val=16, schedule=((1e-2, 30),), batch_size=16, iwae_samples=3,
             knn_size=20, knn_repeats=2, objective_samples=2, lin=False)


def test_px_iwae_continues_from_the_vae():
    # iwae_start="vae" with an empty tail: IWAE's parameters are the VAE's, so every score but the
    # objective (a different bound) coincides; with iwae_start="init" IWAE is trained on its own
    res = fm.px_experiment("circle", seed=0, tail=((1e-3, 0),), iwae_start="vae", **_TINY)
    vae, iw = res.methods["VAE"], res.methods["IWAE"]
    np.testing.assert_array_equal(vae.test_ll, iw.test_ll)
    assert np.all(iw.objective > vae.objective)      # L_S >= ELBO in expectation; S = 3 makes it clear here
    res = fm.px_experiment("circle", seed=0, tail=((1e-3, 0),), iwae_start="init", **_TINY)
    assert np.all(res.methods["VAE"].test_ll != res.methods["IWAE"].test_ll)
    assert set(res.methods) == {"VAE", "IWAE"} and res.methods["VAE"].test_ll.shape == (2,)
    assert np.all(np.isfinite(res.methods["IWAE"].knn)) and np.isfinite(res.truth_ll)


# ------------------------------------------------------------------------------ noise bias: budget snapshots

def test_noise_bias_budget_snapshots():
    """The joint variance is read after every step (its last entry is the final variance) and at the
    budget fractions; the refit read at 100% is Theorem 2's value for the final (theta, phi), i.e. the
    closed form next to the actual refit, up to the two Monte Carlo draws' errors."""
    res = fm.noise_bias_experiment(seed=0, restarts=2, n_train=48, schedule=((1e-2, 40), (1e-3, 20)),
                                   refit_schedule=((1e-2, 20),), refit_samples=2, closed_form_samples=64,
                                   fractions=(0.5, 1.0))
    assert res.joint_trajectory.shape == (60, 2)
    np.testing.assert_array_equal(res.joint_trajectory[-1], res.joint)
    np.testing.assert_array_equal(res.joint_at, res.joint_trajectory[[29, 59]])
    assert res.refit_at.shape == (2, 2)
    assert np.all(np.abs(res.refit_at[-1] - res.refit_closed_form) < 5 * np.sqrt(2) * res.refit_closed_form_se)
    # an earlier snapshot is a different (theta, phi): a different value
    assert np.all(res.refit_at[0] != res.refit_at[1])


@pytest.mark.parametrize("fractions", [(0.6, 0.3), (0.5, 0.5), (0.0, 1.0), (1.0, 1.5)])
def test_noise_bias_fractions_validated(fractions):
    with pytest.raises(ValueError, match="fractions"):
        fm.noise_bias_experiment(seed=0, restarts=2, n_train=16, schedule=((1e-2, 10),), fractions=fractions)

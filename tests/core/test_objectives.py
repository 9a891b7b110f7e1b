"""Gaussian VAE and autoencoder objectives: gradients, the sampler/KL pair, the restarts axis."""
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from refvae import gradcheck
from refvae.backend import normal
from refvae.distributions import gaussian_log_prob, kl_std_normal, reparameterize
from refvae.objectives import OBS_MODES, Autoencoder, GaussianVAE
from tests.core.strategies import restarts, seeds, sizes
from tests.helpers import perturbed_init



# Fixed cases run on every run besides the random ones: one per observation mode, each with every
# optional axis (3 restarts, 3 samples, K = 2, d = 2, B = 3) and beta != 1, the two KL estimators and the
# two data layouts (shared or per-restart x) split between them. Checked with deliberate mutations
# (hypothesis running these cases only): the KL's or the reparameterisation's log-variance gradient off by
# 1%; the sampled KL's direct log-variance term off by 1%; beta left out of the KL's log-variance gradient;
# the 1/S of the sample mean dropped from the reconstruction's or the sampled KL's cotangent; the
# decoder-output log-variance or the learned noise gradient off by 1%: each makes the test fail. The random
# examples, 25 before, are now 8: they add the shapes (no restarts axis, one sample, sizes 1-4, other
# hidden layers).
GAUSSIAN_VAE_HARD = [
    dict(obs="fixed", kl="analytic", per_restart_data=True, hidden=(3,), act="tanh", beta=0.7),
    dict(obs="scalar", kl="sample", per_restart_data=False, hidden=(), act="softplus", beta=1.3),
    dict(obs="vector", kl="analytic", per_restart_data=False, hidden=(3, 2), act="softplus", beta=2.0),
    dict(obs="decoder", kl="sample", per_restart_data=True, hidden=(3,), act="tanh", beta=0.7)]


def _gaussian_vae_hard_cases(test):
    for i, case in enumerate(GAUSSIAN_VAE_HARD):
        test = example(seed=i, R=3, S=3, d=2, K=2, B=3, **case)(test)
    return test


@settings(max_examples=8, deadline=None)
@given(seed=seeds, obs=st.sampled_from(OBS_MODES), R=restarts, S=st.sampled_from([None, 3]),
       d=sizes, K=sizes, B=sizes, hidden=st.sampled_from([(), (3,), (3, 2)]),
       act=st.sampled_from(["tanh", "softplus"]), beta=st.floats(0.0, 3.0),
       kl=st.sampled_from(["analytic", "sample"]), per_restart_data=st.booleans())
@_gaussian_vae_hard_cases
def test_gaussian_vae_gradient(seed, obs, R, S, d, K, B, hidden, act, beta, kl, per_restart_data):
    rng = np.random.default_rng(seed)
    model = GaussianVAE.from_sizes(d, K, hidden, act, obs=obs, sigma2=0.7, beta=beta, kl=kl)
    params = perturbed_init(model, rng, R)
    x = rng.standard_normal(((R,) if R and per_restart_data else ()) + (B, d))     # (B, d) or (R, B, d)
    noise = rng.standard_normal(model.noise_shape(params, B, S))
    gradcheck.assert_grad(lambda p: model.value_and_grad(p, x, noise), params)


@settings(max_examples=10, deadline=None)
@given(seed=seeds, beta=st.floats(0.0, 2.0), sigma2=st.floats(0.05, 3.0))
def test_gradient_with_per_call_overrides(seed, beta, sigma2):
    rng = np.random.default_rng(seed)
    model = GaussianVAE.from_sizes(3, 2, (4,), obs="fixed")
    params = perturbed_init(model, rng, None)
    x, noise = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    fun = lambda p: model.value_and_grad(p, x, noise, beta=beta, sigma2=sigma2)
    gradcheck.assert_grad(fun, params)
    # the override is used: the loss is the one of a model built with those values
    other = GaussianVAE.from_sizes(3, 2, (4,), obs="fixed", sigma2=sigma2, beta=beta)
    assert fun(params)[0] == other.value_and_grad(params, x, noise)[0]


@settings(max_examples=15, deadline=None)
@given(seed=seeds, R=restarts, d=sizes, K=sizes, B=sizes, hidden=st.sampled_from([(), (3,), (3, 2)]),
       act=st.sampled_from(["tanh", "softplus"]), per_restart_data=st.booleans())
def test_autoencoder_gradient(seed, R, d, K, B, hidden, act, per_restart_data):
    rng = np.random.default_rng(seed)
    model = Autoencoder.from_sizes(d, K, hidden, act)
    params = perturbed_init(model, rng, R)
    x = rng.standard_normal(((R,) if R and per_restart_data else ()) + (B, d))
    gradcheck.assert_grad(lambda p: model.value_and_grad(p, x), params)


def test_sampler_and_kl_agree_by_monte_carlo():
    """E_q[log q(z) - log p(z)] from the package's own sampler equals the closed-form KL.

    A sampler reading logvar as a log-std (or as a variance without the log) while the KL
    reads it as a log-variance shifts this expectation by far more than the bound below.
    """
    rng = np.random.default_rng(0)
    mu = np.array([[0.5, -1.0, 2.0]])
    logvar = np.array([[-1.5, 0.3, 1.2]])
    n = 200_000
    eps = normal(rng, (n, 1, 3))
    z, _ = reparameterize(mu, logvar, eps)
    log_q = gaussian_log_prob(z, mu, logvar)[0].sum(-1)
    log_p = gaussian_log_prob(z, 0.0, 0.0)[0].sum(-1)
    samples = (log_q - log_p)[:, 0]
    kl = kl_std_normal(mu, logvar)[0][0]
    se = samples.std() / np.sqrt(n)
    assert abs(samples.mean() - kl) < 4 * se, (samples.mean(), kl, se)
    # the same check run with a log-std sampler (the classic bug) fails by a wide margin
    wrong = mu + np.exp(logvar) * eps
    bad = (gaussian_log_prob(wrong, mu, logvar)[0].sum(-1) - gaussian_log_prob(wrong, 0.0, 0.0)[0].sum(-1))[:, 0]
    assert abs(bad.mean() - kl) > 20 * se


def test_sampled_kl_is_unbiased_for_the_closed_form():
    """kl="sample" estimates the same objective: its mean over noise is the closed-form KL."""
    rng = np.random.default_rng(2)
    model = GaussianVAE.from_sizes(3, 2, (4,), obs="fixed", kl="sample")
    params = perturbed_init(model, rng, None)
    x = rng.standard_normal((4, 3))
    noise = rng.standard_normal((100_000, 4, 2))
    terms = model.value_and_grad(params, x, noise, with_terms=True)[2]
    mu, lv = model.encode(params, x)
    from refvae.distributions import kl_sample
    per_draw = kl_sample(mu + np.exp(lv / 2) * noise, noise, lv).mean(-1)       # (S,)
    se = per_draw.std() / np.sqrt(len(per_draw))
    assert terms["kl"] == pytest.approx(per_draw.mean(), rel=1e-12)
    assert abs(terms["kl"] - kl_std_normal(mu, lv)[0].mean()) < 4 * se


def test_kl_closed_form_against_quadrature():
    from scipy import integrate
    mu, lv = 0.7, -0.4
    s = np.exp(0.5 * lv)
    f = lambda z: np.exp(-0.5 * ((z - mu) / s) ** 2) / (s * np.sqrt(2 * np.pi)) * (
        -0.5 * ((z - mu) / s) ** 2 - np.log(s) + 0.5 * z * z)
    value, _ = integrate.quad(f, -15, 15, epsabs=1e-13)
    assert kl_std_normal(np.array([[mu]]), np.array([[lv]]))[0][0] == pytest.approx(value, rel=1e-10)


@pytest.mark.parametrize("obs", OBS_MODES)
@pytest.mark.parametrize("S", [None, 2])
@pytest.mark.parametrize("per_restart_data", [False, True])
def test_restart_gradient_equals_single_model(obs, S, per_restart_data):
    rng = np.random.default_rng(3)
    model = GaussianVAE.from_sizes(3, 2, (4,), obs=obs, sigma2=0.5)
    R, B = 4, 6
    params = perturbed_init(model, rng, R)
    x = rng.standard_normal((R, B, 3) if per_restart_data else (B, 3))
    noise = rng.standard_normal(model.noise_shape(params, B, S))
    loss, grads = model.value_and_grad(params, x, noise)
    assert loss.shape == (R,)
    for r in range(R):
        p_r = {k: v[r] for k, v in params.items()}
        n_r = noise[r] if S is None else noise[:, r]
        loss_r, grads_r = model.value_and_grad(p_r, x[r] if per_restart_data else x, n_r)
        assert loss[r] == pytest.approx(loss_r, rel=1e-14)
        for k in grads:
            np.testing.assert_allclose(grads[k][r], grads_r[k], rtol=1e-12, atol=1e-14)


def test_loss_terms_add_up_and_include_constants():
    rng = np.random.default_rng(1)
    model = GaussianVAE.from_sizes(2, 1, (), obs="fixed", sigma2=0.25, beta=0.5)
    params = perturbed_init(model, rng, None)
    x, noise = rng.standard_normal((7, 2)), rng.standard_normal((7, 1))
    loss, _, terms = model.value_and_grad(params, x, noise, with_terms=True)
    assert loss == pytest.approx(terms["recon"] + 0.5 * terms["kl"], rel=1e-14)
    mu, lv = model.encode(params, x)
    z = mu + np.exp(lv / 2) * noise
    mean, _ = model.decode(params, z)
    by_hand = np.mean(0.5 * (((x - mean) ** 2 / 0.25) + np.log(2 * np.pi * 0.25)).sum(-1))
    assert terms["recon"] == pytest.approx(by_hand, rel=1e-13)
    assert terms["sigma2"] == 0.25


def test_objective_input_errors():
    rng = np.random.default_rng(0)
    model = GaussianVAE.from_sizes(3, 2, (4,), obs="scalar")
    params = model.init(rng)
    noise = rng.standard_normal((5, 2))
    with pytest.raises(ValueError, match="x must have last dimension 3"):
        model.value_and_grad(params, np.zeros((5, 4)), noise)
    with pytest.raises(ValueError, match="x must be finite"):
        model.value_and_grad(params, np.full((5, 3), np.nan), noise)
    with pytest.raises(ValueError, match="noise must have shape"):
        model.value_and_grad(params, np.zeros((5, 3)), rng.standard_normal((5, 3)))
    with pytest.raises(ValueError, match="noise must have shape"):
        model.value_and_grad(params, np.zeros((5, 3)), rng.standard_normal((4, 2)))
    with pytest.raises(ValueError, match="noise must be finite"):
        model.value_and_grad(params, np.zeros((5, 3)), np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="sigma2 can be set per call only"):
        model.value_and_grad(params, np.zeros((5, 3)), noise, sigma2=1.0)
    with pytest.raises(ValueError, match="beta must be non-negative"):
        model.value_and_grad(params, np.zeros((5, 3)), noise, beta=-1.0)
    with pytest.raises(ValueError, match=r"lacks the model's entries \['dec.0.W'\] \(it has \['dec.W'\]\)"):
        bad = dict(params)
        bad["dec.W"] = bad.pop("dec.0.W")
        model.value_and_grad(bad, np.zeros((5, 3)), noise)
    with pytest.raises(ValueError, match=r"params\['enc.0.W'\] must have shape \(3, 4\)"):
        model.value_and_grad({**params, "enc.0.W": np.zeros((4, 3))}, np.zeros((5, 3)), noise)
    with pytest.raises(ValueError, match="same R"):
        model.value_and_grad({**params, "enc.0.W": np.zeros((2, 3, 4))}, np.zeros((5, 3)), noise)
    with pytest.raises(ValueError, match="obs must be one of"):
        GaussianVAE.from_sizes(3, 2, obs="learned")
    with pytest.raises(ValueError, match="sigma2 must be positive"):
        GaussianVAE.from_sizes(3, 2, sigma2=0.0)
    with pytest.raises(ValueError, match="decoder must map 2 -> 6"):
        from refvae.layers import mlp
        GaussianVAE(mlp([3, 4]), mlp([2, 3]), 2, 3, obs="decoder")


@pytest.mark.parametrize("obs", OBS_MODES)
@pytest.mark.parametrize("S", [None, 3])
def test_reconstruction_term_by_hand_in_every_noise_mode(obs, S):
    """recon = mean over samples and points of -sum_j log N(x_j; f_j(z), s2_j), from scipy's density."""
    from scipy.stats import norm
    rng = np.random.default_rng(4)
    d, K, B = 3, 2, 5
    model = GaussianVAE.from_sizes(d, K, (4,), "tanh", obs=obs, sigma2=0.3)
    params = perturbed_init(model, rng, None)
    x = rng.standard_normal((B, d))
    noise = rng.standard_normal(model.noise_shape(params, B, S))
    loss, _, terms = model.value_and_grad(params, x, noise, with_terms=True)
    mu, lv = model.encode(params, x)
    z = mu + np.exp(lv / 2) * noise
    out = model.decoder.forward({k[4:]: v for k, v in params.items() if k.startswith("dec.") and k[4:5].isdigit()},
                                z)[0]
    if obs == "decoder":
        mean, var = out[..., :d], np.exp(out[..., d:])
    else:
        var = np.full(d, 0.3) if obs == "fixed" else np.exp(params["dec.obs_logvar"]) * np.ones(d)
        mean = out
    recon = -norm.logpdf(x, mean, np.sqrt(var)).sum(-1).mean()
    assert terms["recon"] == pytest.approx(recon, rel=1e-13)
    kl = (0.5 * (mu ** 2 + np.exp(lv) - lv - 1).sum(-1)).mean()
    assert terms["kl"] == pytest.approx(kl, rel=1e-13)
    assert loss == pytest.approx(recon + kl, rel=1e-13)
    assert terms["sigma2"] == pytest.approx(np.broadcast_to(var, mean.shape).mean(), rel=1e-13)


def test_noise_shape_reads_restarts_from_any_layer_and_validates():
    """A model without dense ``*.W`` weights (per-point encoder table, Cholesky decoder) still sees R."""
    from refvae.encoders import PerPointEncoder
    from refvae.layers import CholeskyLinear
    model = GaussianVAE(PerPointEncoder(6, 2), CholeskyLinear(2, [0.1, 0.1]), 2, 2)
    params = model.init(np.random.default_rng(0), restarts=3)
    assert model.noise_shape(params, 4) == (3, 4, 2)
    assert model.noise_shape(params, 4, 5) == (5, 3, 4, 2)
    assert model.noise_shape(model.init(np.random.default_rng(0)), 4) == (4, 2)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        model.noise_shape(params, 0)
    with pytest.raises(TypeError, match="n_samples must be an integer"):
        model.noise_shape(params, 4, 2.0)
    with pytest.raises(ValueError, match="lacks the model's entries"):
        model.noise_shape({}, 4)


@pytest.mark.parametrize("per_restart_data", [False, True])
def test_autoencoder_restarts_equal_single_models_and_loss_by_hand(per_restart_data):
    rng = np.random.default_rng(5)
    model = Autoencoder.from_sizes(3, 2, (4,), "tanh")
    R, B = 3, 6
    params = perturbed_init(model, rng, R)
    x = rng.standard_normal((R, B, 3) if per_restart_data else (B, 3))
    loss, grads, terms = model.value_and_grad(params, x, with_terms=True)
    assert loss.shape == (R,) and terms["recon"] is loss
    for r in range(R):
        p_r = {k: v[r] for k, v in params.items()}
        x_r = x[r] if per_restart_data else x
        loss_r, grads_r = model.value_and_grad(p_r, x_r)
        assert loss[r] == pytest.approx(loss_r, rel=1e-14)
        for k in grads:
            np.testing.assert_allclose(grads[k][r], grads_r[k], rtol=1e-12, atol=1e-14)
        # mean over the batch of the squared error summed over coordinates, from the networks by hand
        h = np.tanh(x_r @ p_r["enc.0.W"] + p_r["enc.0.b"])
        z = h @ p_r["enc.2.W"] + p_r["enc.2.b"]
        np.testing.assert_allclose(model.encode(p_r, x_r), z, rtol=1e-14)
        xhat = np.tanh(z @ p_r["dec.0.W"] + p_r["dec.0.b"]) @ p_r["dec.2.W"] + p_r["dec.2.b"]
        np.testing.assert_allclose(model.decode(p_r, z), xhat, rtol=1e-14)
        assert loss_r == pytest.approx(((x_r - xhat) ** 2).sum(-1).mean(), rel=1e-14)


def test_autoencoder_input_errors():
    from refvae.layers import mlp
    rng = np.random.default_rng(0)
    model = Autoencoder.from_sizes(3, 2, (4,))
    params = model.init(rng)
    with pytest.raises(ValueError, match="x must have last dimension 3"):
        model.value_and_grad(params, np.zeros((5, 4)))
    with pytest.raises(ValueError, match="x must be finite"):
        model.value_and_grad(params, np.full((5, 3), np.inf))
    with pytest.raises(ValueError, match="x must have at least 2 dimensions"):
        model.value_and_grad(params, np.zeros(3))
    with pytest.raises(ValueError, match="lacks the model's entries"):
        model.value_and_grad({k: v for k, v in params.items() if k != "dec.2.b"}, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="same R"):
        model.value_and_grad({**params, "enc.0.W": np.zeros((2, 3, 4))}, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="z must have last dimension 2"):
        model.decode(params, np.zeros((5, 3)))
    with pytest.raises(TypeError, match="encoder must be a refvae Layer"):
        Autoencoder("mlp", mlp([2, 3]), 2, 3)
    with pytest.raises(ValueError, match="encoder must map 3 -> 2"):
        Autoencoder(mlp([3, 4]), mlp([2, 3]), 2, 3)
    with pytest.raises(ValueError, match="decoder must map 2 -> 3"):
        Autoencoder(mlp([3, 2]), mlp([2, 4]), 2, 3)
    with pytest.raises(ValueError, match="latent_dim must be >= 1"):
        Autoencoder.from_sizes(3, 0)


def test_logsumexp_is_stable_and_handles_zero_mass():
    from refvae.distributions import logsumexp
    a = np.array([[1000.0, 1000.0], [-np.inf, -np.inf], [-1e4, 0.0]])
    np.testing.assert_allclose(logsumexp(a, 1), [1000.0 + np.log(2.0), -np.inf, 0.0])

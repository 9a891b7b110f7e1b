"""refvae.metrics.quadrature against closed forms (docs/math.md 3, 4.1), finer rules and hand-made posteriors."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.stats import multivariate_normal

from refvae import datasets
from refvae.metrics import quadrature as Q


# -- closed forms of x = W z + b + e, e ~ N(0, diag nv) (docs/math.md 4.1) -----------------------
def linear_model(rng, d, k, n, nv_low=0.05, nv_high=0.3):
    W = rng.normal(size=(d, k))
    b = rng.normal(size=d)
    nv = rng.uniform(nv_low, nv_high, size=d)
    x = rng.normal(size=(n, k)) @ W.T + b + np.sqrt(nv) * rng.normal(size=(n, d))
    return W, b, nv, x


def exact_posterior(W, b, nv, x):
    """Mean (N, K) and covariance (K, K) of p(z | x): P = I + W^T Psi^-1 W."""
    P = np.eye(W.shape[1]) + W.T @ (W / nv[:, None])
    S = np.linalg.inv(P)
    return ((x - b) / nv) @ W @ S, S


def gaussian_kl(mu, var, m, S):
    """KL(N(mu_n, diag var_n) || N(m_n, S)) per row."""
    Pi = np.linalg.inv(S)
    diff = m - mu
    return 0.5 * (np.einsum("kk,nk->n", Pi, var) + np.einsum("nk,kl,nl->n", diff, Pi, diff)
                  - mu.shape[1] + np.linalg.slogdet(S)[1] - np.log(var).sum(axis=1))


@settings(max_examples=15, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2 ** 31), d=st.integers(1, 3), scale=st.floats(0.3, 3.0))
def test_log_likelihood_equals_closed_form_k1(seed, d, scale):
    rng = np.random.default_rng(seed)
    W, b, nv, x = linear_model(rng, d, 1, 25)
    W = W * scale
    quad = Q.log_likelihood(x, lambda z: z @ W.T + b, 1, nv)
    exact = multivariate_normal(b, W @ W.T + np.diag(nv)).logpdf(x).reshape(-1)
    np.testing.assert_allclose(quad, exact, rtol=1e-12, atol=1e-11)


def test_log_likelihood_equals_closed_form_k2_on_a_2d_grid():
    W, b, nv, x = linear_model(np.random.default_rng(1), 3, 2, 30)
    quad = Q.log_likelihood(x, lambda z: z @ W.T + b, 2, nv, grid_size=240)
    exact = multivariate_normal(b, W @ W.T + np.diag(nv)).logpdf(x)
    np.testing.assert_allclose(quad, exact, rtol=1e-12, atol=1e-11)


def test_decoder_with_its_own_variance_equals_sigma2():
    W, b, nv, x = linear_model(np.random.default_rng(2), 2, 1, 20)
    plain = Q.log_likelihood(x, lambda z: z @ W.T + b, 1, nv)
    own = Q.log_likelihood(x, lambda z: (z @ W.T + b, nv), 1)
    np.testing.assert_array_equal(own, plain)


@pytest.mark.parametrize("k, grid_size", [(1, None), (2, 240)])
def test_posterior_grid_moments_equal_closed_form(k, grid_size):
    W, b, nv, x = linear_model(np.random.default_rng(3 + k), 3, k, 15)
    post = Q.posterior_grid(x, lambda z: z @ W.T + b, k, nv, grid_size=grid_size)
    m, S = exact_posterior(W, b, nv, x)
    assert post.weights.shape == (15, post.z.shape[0]) and post.z.shape[1] == k
    np.testing.assert_allclose(post.weights.sum(axis=1), 1.0, rtol=1e-13)
    np.testing.assert_allclose(post.mean(), m, rtol=0, atol=1e-11)
    np.testing.assert_allclose(post.cov(), np.broadcast_to(S, (15, k, k)), rtol=0, atol=1e-11)
    np.testing.assert_allclose(post.density @ post.cell, 1.0, rtol=1e-13)


@pytest.mark.parametrize("k, grid_size", [(1, None), (2, 240)])
def test_kl_to_posterior_equals_closed_form(k, grid_size):
    rng = np.random.default_rng(10 + k)
    W, b, nv, x = linear_model(rng, 3, k, 12)
    m, S = exact_posterior(W, b, nv, x)
    mu = m + 0.5 * rng.normal(size=m.shape)
    # include a q much narrower than the prior rule's node spacing
    logvar = np.log(np.diag(S)) + rng.normal(size=m.shape)
    logvar[0] = np.log(1e-8)
    kl = Q.kl_to_posterior(x, mu, logvar, lambda z: z @ W.T + b, k, nv, grid_size=grid_size)
    np.testing.assert_allclose(kl, gaussian_kl(mu, np.exp(logvar), m, S), rtol=1e-10, atol=1e-10)


def test_kl_is_zero_at_the_exact_posterior_of_c1():
    ds = datasets.pedagogical_c1(20, seed=0, theta=0.08)
    theta, s2 = 0.08, 0.01
    mu = theta * ds.x / s2
    logvar = np.full_like(mu, math.log((s2 - theta ** 2) / s2))
    kl = Q.kl_to_posterior(ds.x, mu, logvar, **ds.truth.quadrature_args)
    np.testing.assert_allclose(kl, 0.0, atol=1e-11)


def test_kl_with_breakpoints_equals_kl_on_the_prior_rule():
    # Absolute-Value: kink at z = 0, bimodal posteriors; reference sum_g cell q (log q - log p(z|x))
    ds = datasets.absolute_value(10, seed=3)
    qa = ds.truth.quadrature_args
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(10, 1))
    logvar = np.log(rng.uniform(0.05, 1.0, size=(10, 1)))
    post = Q.posterior_grid(ds.x, **qa)
    z = post.z[:, 0]
    log_q = -0.5 * ((z - mu) ** 2 / np.exp(logvar) + logvar + math.log(2 * math.pi))
    sq = ((ds.x[:, None, :] - np.abs(z)[None, :, None]) ** 2).sum(axis=2)
    log_post = (-0.5 * sq / 0.01 - math.log(2 * math.pi * 0.01) - 0.5 * (z * z + math.log(2 * math.pi))
                - post.log_px[:, None])
    ref = np.sum(post.cell * np.exp(log_q) * (log_q - log_post), axis=1)
    np.testing.assert_allclose(Q.kl_to_posterior(ds.x, mu, logvar, **qa), ref, rtol=1e-9, atol=1e-9)


def test_kl_breakpoints_are_in_z_not_in_q_units():
    # a breakpoint inside the prior box but outside q's box is fine (and changes nothing here)
    W, b, nv, x = linear_model(np.random.default_rng(4), 2, 1, 5)
    mu, logvar = np.zeros((5, 1)), np.full((5, 1), -2.0)
    args = (x, mu, logvar, lambda z: z @ W.T + b, 1, nv)
    np.testing.assert_allclose(Q.kl_to_posterior(*args, breakpoints=[5.0], q_bound=4.0),
                               Q.kl_to_posterior(*args, q_bound=4.0), rtol=1e-12)


def test_agrees_with_a_much_finer_rule_on_figure8():
    ds = datasets.figure8(200, seed=4)
    qa = ds.truth.quadrature_args
    coarse = Q.log_likelihood(ds.x, **qa)
    fine = Q.log_likelihood(ds.x, **qa, grid_size=32000, bound=9.0)
    np.testing.assert_allclose(coarse, fine, rtol=0, atol=1e-11)


def test_breakpoints_make_a_piecewise_variance_exact():
    # berger2020's three regions: the variance jumps at two z; without them as panel edges the
    # rule is off by ~1e-2 for some points, and says so
    ds = datasets.three_noise(300, seed=5)
    qa = ds.truth.quadrature_args
    exact = Q.log_likelihood(ds.x, **qa)
    fine = Q.log_likelihood(ds.x, **qa, grid_size=25600)
    np.testing.assert_allclose(exact, fine, rtol=0, atol=1e-9)
    plain = {k: v for k, v in qa.items() if k != "breakpoints"}
    with pytest.warns(Q.QuadratureWarning, match="do not resolve"):
        rough = Q.log_likelihood(ds.x, **plain)
    assert np.max(np.abs(rough - exact)) > 1e-4


def test_too_coarse_rule_warns():
    ds = datasets.figure8(50, seed=0)
    with pytest.warns(Q.QuadratureWarning):
        Q.log_likelihood(ds.x, **ds.truth.quadrature_args, grid_size=160)


def test_chunking_does_not_change_the_result():
    ds = datasets.circle(37, seed=6)
    qa = ds.truth.quadrature_args
    np.testing.assert_array_equal(Q.log_likelihood(ds.x, **qa, chunk_size=5),
                                  Q.log_likelihood(ds.x, **qa, chunk_size=1000))


def test_latent_grid_integrates_the_prior():
    for k in (1, 2):
        z, cell = Q.latent_grid(k)
        mass = np.sum(cell * np.exp(-0.5 * (z * z).sum(axis=1))) / (2 * math.pi) ** (k / 2)
        assert abs(mass - 1.0) < 1e-13
    z, _ = Q.latent_grid(1, grid_size=64, bound=4.0, breakpoints=[0.3])
    assert np.all(np.diff(z[:, 0]) > 0)


# -- mode counting -------------------------------------------------------------------------
def hand_made(densities):
    """GridPosterior of given density functions of z (on the default K = 1 rule)."""
    z, cell = Q.latent_grid(1)
    dens = np.array([f(z[:, 0]) for f in densities])
    w = dens * cell
    return Q.GridPosterior(z, w / w.sum(axis=1, keepdims=True), cell, np.zeros(len(densities)))


def normal_pdf(z, m, s):
    return np.exp(-0.5 * ((z - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))


def test_count_modes_rule():
    post = hand_made([
        lambda z: normal_pdf(z, 0, 0.1),                                              # one
        lambda z: 0.5 * normal_pdf(z, -1, 0.1) + 0.5 * normal_pdf(z, 1, 0.3),         # two
        lambda z: 0.97 * normal_pdf(z, 0, 0.1) + 0.03 * normal_pdf(z, 2, 0.1),        # small second
        lambda z: normal_pdf(z, 0, 0.2) * (1 + 1e-3 * np.cos(40 * z)),                # ripples
        lambda z: 0.9 * normal_pdf(z, 0, 0.01) + 0.1 * normal_pdf(z, 3, 1.0),         # wide, 0.4% high
        lambda z: sum(normal_pdf(z, m, 0.1) for m in (-2, 0, 2)) / 3,                 # three
    ])
    np.testing.assert_array_equal(Q.count_modes(post), [1, 2, 1, 1, 2, 3])
    np.testing.assert_array_equal(Q.count_modes(post, min_mass=0.01), [1, 2, 2, 1, 2, 3])


def test_posterior_modes_equals_count_modes_of_posterior_grid():
    ds = datasets.figure8(150, seed=7)
    qa = ds.truth.quadrature_args
    modes = Q.posterior_modes(ds.x, **qa, chunk_size=40)
    np.testing.assert_array_equal(modes, Q.count_modes(Q.posterior_grid(ds.x, **qa)))
    assert set(np.unique(modes)) <= {1, 2, 3}


# -- validation ----------------------------------------------------------------------------
def lin(z):
    return np.concatenate([z, z], axis=1)


X = np.zeros((3, 2))


@pytest.mark.parametrize("call, exc, match", [
    (lambda: Q.log_likelihood(np.zeros(3), lin, 1, 0.1), ValueError, "x must be 2-dimensional"),
    (lambda: Q.log_likelihood(np.zeros((0, 2)), lin, 1, 0.1), ValueError, "x must have shape"),
    (lambda: Q.log_likelihood([[np.nan, 0.0]], lin, 1, 0.1), ValueError, "x must be finite"),
    (lambda: Q.log_likelihood(X, "f", 1, 0.1), TypeError, "decode must be a callable"),
    (lambda: Q.log_likelihood(X, lin, 3, 0.1), ValueError, "latent_dim must be 1 or 2"),
    (lambda: Q.log_likelihood(X, lin, 1.0, 0.1), TypeError, "latent_dim must be an integer"),
    (lambda: Q.log_likelihood(X, lin, 1, -0.1), ValueError, "sigma2 must be positive"),
    (lambda: Q.log_likelihood(X, lin, 1, np.ones(3)), ValueError, r"sigma2 must be a positive scalar or a \(2,\)"),
    (lambda: Q.log_likelihood(X, lin, 1), ValueError, "sigma2 is required"),
    (lambda: Q.log_likelihood(X, lambda z: (lin(z), 0.1), 1, 0.1), ValueError, "sigma2 must be None"),
    (lambda: Q.log_likelihood(X, lambda z: (lin(z), -1.0), 1), ValueError, "variance must be positive"),
    (lambda: Q.log_likelihood(X, lambda z: z, 1, 0.1), ValueError, r"decode\(z\) mean must have shape"),
    (lambda: Q.log_likelihood(X, lin, 1, 0.1, grid_size=8), ValueError, "grid_size must be >= 16"),
    (lambda: Q.log_likelihood(X, lin, 1, 0.1, bound=0.0), ValueError, "bound must be positive"),
    (lambda: Q.log_likelihood(X, lin, 1, 0.1, chunk_size=0), ValueError, "chunk_size must be >= 1"),
    (lambda: Q.log_likelihood(X, lin, 1, 0.1, breakpoints=[9.0]), ValueError, "breakpoints must lie"),
    (lambda: Q.log_likelihood(X, lin, 2, 0.1, breakpoints=[0.0]), ValueError, "latent_dim 1 only"),
    (lambda: Q.kl_to_posterior(X, np.zeros((2, 1)), np.zeros((3, 1)), lin, 1, 0.1), ValueError,
     r"mu must have shape \(3, 1\)"),
    (lambda: Q.kl_to_posterior(X, np.zeros((3, 1)), np.zeros((3, 2)), lin, 1, 0.1), ValueError,
     r"logvar must have shape \(3, 1\)"),
    (lambda: Q.kl_to_posterior(X, np.zeros((3, 1)), np.zeros((3, 1)), lin, 1, 0.1, q_grid_size=4), ValueError,
     "q_grid_size must be >= 16"),
    (lambda: Q.posterior_modes(X, lin, 1, 0.1, min_mass=0.0), ValueError, "min_mass must be positive"),
    (lambda: Q.posterior_modes(X, lin, 2, 0.1), ValueError, "latent_dim 1 only"),
    (lambda: Q.count_modes("post"), TypeError, "posterior must be a GridPosterior"),
])
def test_bad_inputs_raise_clear_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_validation_happens_before_decoding():
    calls = []

    def decode(z):
        calls.append(z.shape)
        return lin(z)

    with pytest.raises(ValueError):
        Q.log_likelihood(X, decode, 1, -1.0)
    with pytest.raises(ValueError):
        Q.kl_to_posterior(X, np.zeros((3, 1)), np.zeros((2, 1)), decode, 1, 0.1)
    assert calls == []


def test_no_runtime_warnings_far_from_the_data():
    # points no z explains: log p(x) very negative but finite, no overflow
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = Q.log_likelihood(np.array([[1e3, -1e3]]), lin, 1, 1e-4)
    assert np.isfinite(out).all() and out[0] < -1e9

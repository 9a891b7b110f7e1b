"""analytic.noise: ELBO-optimal noise variance (yacoby2021 Theorem 2, docs/math.md 4.5)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import optimize

from analytic import linear_vae, noise

from ._helpers import MC_SIGMAS


@pytest.fixture
def linear_setup():
    # A linear VAE with a deliberately imperfect encoder: the expected squared residual
    # E_q (x - W z - m)^2 = ((I - W V)(x - m))^2 + diag(W D W^T) is closed form per point.
    rng = np.random.default_rng(40)
    n, d, K = 50, 3, 2
    X = rng.normal(size=(n, d)) * [1.5, 1.0, 0.4]
    W = rng.normal(size=(d, K))
    m = X.mean(0)
    V = 0.3 * rng.normal(size=(K, d))
    D = np.array([0.4, 0.9])
    R = (X - m) - (X - m) @ V.T @ W.T
    expected = R ** 2 + (W * W) @ D  # (N, d)
    return X, W, m, V, D, expected


def test_scalar_optimum_maximises_the_exact_linear_vae_elbo(linear_setup):
    X, W, m, V, D, expected = linear_setup
    s2_star = noise.optimal_variance(expected, per_dim=False)
    res = optimize.minimize_scalar(lambda t: -linear_vae.elbo(X, W, m, np.exp(t), V, D), bounds=(-5, 5),
                                   method="bounded", options={"xatol": 1e-10})
    # A maximiser of a smooth function is resolved only to ~sqrt(eps) ~ 1.5e-8 relative
    # (measured 2.6e-8), hence 1e-7; the value comparison below is to rounding level.
    assert np.exp(res.x) == pytest.approx(s2_star, rel=1e-7)
    assert -res.fun <= linear_vae.elbo(X, W, m, s2_star, V, D) + 1e-13
    # and no other value on a wide grid does better
    grid = s2_star * np.exp(np.linspace(-2, 2, 41))
    values = [linear_vae.elbo(X, W, m, g, V, D) for g in grid]
    assert max(values) <= linear_vae.elbo(X, W, m, s2_star, V, D) + 1e-13


def test_per_dim_optimum_by_bruteforce(linear_setup):
    *_, expected = linear_setup
    s2_star = noise.optimal_variance(expected)

    def neg_elbo(log_s2):  # the s2-dependent part of -ELBO, summed over points and coordinates
        return np.sum(0.5 * (expected / np.exp(log_s2) + log_s2))

    rng = np.random.default_rng(41)
    runs = [optimize.minimize(neg_elbo, rng.normal(size=3), method="BFGS", options={"gtol": 1e-10})
            for _ in range(4)]
    assert all(r.fun >= neg_elbo(np.log(s2_star)) - 1e-12 for r in runs)
    best = min(runs, key=lambda r: r.fun)
    np.testing.assert_allclose(np.exp(best.x), s2_star, rtol=1e-6)  # argmin ~sqrt(eps)


def test_sampled_residuals_estimate_the_exact_optimum(linear_setup):
    X, W, m, V, D, expected = linear_setup
    rng = np.random.default_rng(42)
    S = 2000
    mu = (X - m) @ V.T
    z = mu + np.sqrt(D) * rng.standard_normal((S,) + mu.shape)
    resid_sq = (X - z @ W.T - m) ** 2            # (S, N, d)
    est = noise.optimal_variance(resid_sq)
    exact = noise.optimal_variance(expected)
    per_draw = resid_sq.mean(axis=1)             # (S, d): iid over draws
    se = per_draw.std(axis=0, ddof=1) / np.sqrt(S)
    assert np.all(se < 0.02 * exact)
    assert np.all(np.abs(est - exact) < MC_SIGMAS * se)
    assert noise.optimal_variance(resid_sq, per_dim=False) == pytest.approx(est.mean(), rel=1e-12)


def test_encoder_error_inflates_the_learned_noise():
    # Theorem 2's point: at the true decoder, a posterior approximation that is too wide
    # inflates the ELBO-optimal noise above the truth. Population version for x = w z + e.
    w, true_s2 = 1.0, 0.1
    post_var = true_s2 / (w * w + true_s2)
    post_mean_coef = w / (w * w + true_s2)
    # E_x E_q (x - w z)^2 with q = N(c x, v): (1 - w c)^2 Var x + w^2 v, Var x = w^2 + s2.
    def learned(v):
        return noise.optimal_variance(np.array([[(1 - w * post_mean_coef) ** 2 * (w * w + true_s2) + w * w * v]]))[0]

    assert learned(post_var) == pytest.approx(true_s2, rel=1e-12)  # exact posterior recovers it
    assert learned(2 * post_var) > 1.5 * true_s2 - 1e-12


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 3)),
                  elements=st.floats(0.0, 100.0, allow_subnormal=False)))
def test_shapes_and_consistency(r):
    per_dim = noise.optimal_variance(r)
    assert per_dim.shape == (r.shape[-1],)
    np.testing.assert_allclose(per_dim, noise.optimal_variance(r.reshape(-1, r.shape[-1])), rtol=1e-13)
    assert noise.optimal_variance(r, per_dim=False) == pytest.approx(per_dim.mean(), rel=1e-12)
    assert np.all(per_dim >= 0)
    np.testing.assert_allclose(noise.optimal_variance(4.0 * r), 4.0 * per_dim, rtol=1e-13)

"""Invalid arguments raise ValueError/TypeError naming the argument and the expectation."""
import numpy as np
import pytest

from analytic import hypersphere, linear_gaussian, linear_vae, mfg, noise, ppca, soft_threshold

W = np.ones((3, 2))
B3 = np.zeros(3)
X = np.random.default_rng(0).normal(size=(8, 3))
S2 = np.eye(2)
NAN_W = np.array([[np.nan, 1.0], [0.0, 1.0], [1.0, 0.0]])

CASES = [
    # linear_gaussian
    (linear_gaussian.marginal, (W, B3, -1.0), ValueError, "noise_cov must be positive"),
    (linear_gaussian.marginal, (W, B3, 0.0), ValueError, "noise_cov must be positive"),
    (linear_gaussian.marginal, (W, B3, [1.0, -2.0, 1.0]), ValueError, "noise_cov must be positive"),
    (linear_gaussian.marginal, (W, B3, [1.0, 2.0]), ValueError, r"noise_cov must have shape \(3,\)"),
    (linear_gaussian.marginal, (W, B3, -np.eye(3)), ValueError, "noise_cov must be positive definite"),
    (linear_gaussian.marginal, (W, B3, np.array([[1, 0.5, 0], [0, 1, 0], [0, 0, 1]])), ValueError,
     "noise_cov must be symmetric"),
    (linear_gaussian.marginal, (W, np.zeros(2), 1.0), ValueError, r"b must have shape \(3,\)"),
    (linear_gaussian.marginal, (NAN_W, B3, 1.0), ValueError, "W must be finite"),
    (linear_gaussian.marginal, (np.ones(3), B3, 1.0), ValueError, "W must be 2-dimensional"),
    (linear_gaussian.marginal, ("abc", B3, 1.0), TypeError, "W must be"),
    (linear_gaussian.marginal, (W, B3, "1.0"), TypeError, "noise_cov must be"),
    (linear_gaussian.posterior, (W, B3, 1.0, np.ones(4)), ValueError, "x must have shape"),
    (linear_gaussian.posterior, (W, B3, 1.0, np.array([np.inf, 0, 0])), ValueError, "x must be finite"),
    (linear_gaussian.log_likelihood, (np.ones((2, 4)), W, B3, 1.0), ValueError, "x must have shape"),
    (linear_gaussian.mutual_information, (W, np.nan), ValueError, "noise_cov must be finite"),
    (linear_gaussian.pedagogical_c1, (0.5, 0.2), ValueError, "theta must satisfy theta"),
    (linear_gaussian.pedagogical_c1, (0.1, -0.2), ValueError, "sigma2 must be positive"),
    (linear_gaussian.pedagogical_c1, (True, 0.2), TypeError, "theta must be a real number"),
    (linear_gaussian.pedagogical_c2, (np.eye(2), [0.02, 0.0], 0.01), ValueError, r"B's diagonal must lie in \[0, sigma2\)"),
    (linear_gaussian.pedagogical_c2, (np.eye(2), [-0.001, 0.0], 0.01), ValueError, r"B's diagonal must lie"),
    (linear_gaussian.pedagogical_c2, (np.eye(2), [0.01, 0.0], 0.01), ValueError, r"B's diagonal must lie"),
    (linear_gaussian.pedagogical_c2, (np.eye(2), np.ones((2, 2)) * 0.001, 0.01), ValueError, "B must be diagonal"),
    (linear_gaussian.pedagogical_c2, (np.eye(2), [0.001, 0.0, 0.0], 0.01), ValueError, r"B must have shape \(2,\)"),
    (linear_gaussian.pedagogical_c2, (np.eye(2), [0.001, 0.0], 0.0), ValueError, "sigma2 must be positive"),
    (linear_gaussian.pedagogical_c2, (np.zeros((2, 2)), [0.0, 0.0], 0.01), ValueError,
     "A A\\^T \\+ B must be positive definite"),
    (linear_gaussian.vae_objective, (W, 1.0, S2), ValueError, r"data_cov must have shape \(3, 3\)"),
    (linear_gaussian.vae_objective, (W, 1.0, -np.eye(3)), ValueError, "data_cov must be positive definite"),
    # mfg
    (mfg.best_fit, (np.zeros(2), np.array([[1.0, 2.0], [2.0, 1.0]])), ValueError, "cov must be positive definite"),
    (mfg.best_fit, (np.zeros(3), S2), ValueError, r"mean must have shape \(K,\) = \(2,\) to match cov of shape "
                                                  r"\(2, 2\), got \(3,\)"),
    (mfg.best_fit, (np.zeros((1, 2)), S2), ValueError, "mean must be 1-dimensional"),
    (mfg.min_kl, (np.ones((2, 3)),), ValueError, "cov must be square"),
    (mfg.min_kl, (np.array([[1.0, np.nan], [np.nan, 1.0]]),), ValueError, "cov must be finite"),
    (mfg.kl_diag, (np.zeros(2), [1.0, 0.0], np.zeros(2), S2), ValueError, "q_var must be positive"),
    # ppca
    (ppca.fit, (X, 3), ValueError, "k must be <= 2"),
    (ppca.fit, (X, 0), ValueError, "k must be >= 1"),
    (ppca.fit, (X, 1.5), TypeError, "k must be an integer"),
    (ppca.fit, (X, 2, -0.1), ValueError, "sigma2 must be positive"),
    (ppca.fit, (X[:, :1].repeat(3, axis=1), 1), ValueError, "learned noise variance is 0"),
    (ppca.fit, (np.ones(5), 1), ValueError, "X must be 2-dimensional"),
    (ppca.log_likelihood, (X, np.ones((4, 2)), B3, 1.0), ValueError, r"W must have shape \(3, \*\)"),
    (ppca.log_likelihood, (X, W, B3, 0.0), ValueError, "sigma2 must be positive"),
    (ppca.active_dims, ([1.0, -0.5], 1.0), ValueError, "eigenvalues must be non-negative"),
    (ppca.active_dims, ([1.0, 0.5], 0.0), ValueError, "sigma2 must be positive"),
    # linear_vae
    (linear_vae.elbo, (X, W, B3, 1.0, np.ones((3, 2)), np.ones(2)), ValueError, r"V must have shape \(2, 3\)"),
    (linear_vae.elbo, (X, W, B3, 1.0, np.ones((2, 3)), np.array([1.0, 0.0])), ValueError, "D must be positive"),
    (linear_vae.elbo, (X, W, B3, -1.0, np.ones((2, 3)), np.ones(2)), ValueError, "sigma2 must be positive"),
    (linear_vae.elbo, (X[:, :2], W, B3, 1.0, np.ones((2, 3)), np.ones(2)), ValueError, r"W must have shape \(2, \*\)"),
    (linear_vae.optimal_encoder, (W, 0.0), ValueError, "sigma2 must be positive"),
    (linear_vae.elbo_gap, (np.ones((3, 0)), 1.0), ValueError, "W must have shape"),
    (linear_vae.collapse_threshold, (np.ones((0, 3)),), ValueError, "X must have at least 1 rows"),
    # noise
    (noise.optimal_variance, (-np.ones((2, 3)),), ValueError, "residual_sq must be non-negative"),
    (noise.optimal_variance, (np.ones(3),), ValueError, "residual_sq must be 2 or 3-dimensional"),
    (noise.optimal_variance, (np.ones((2, 3)), 1), TypeError, "per_dim must be a bool"),
    (noise.optimal_variance, (np.full((2, 3), np.inf),), ValueError, "residual_sq must be finite"),
    # hypersphere
    (hypersphere.objective, (0.5, 0.0, 1.0, 2), ValueError, "r must be positive"),
    (hypersphere.objective, (0.5, 1.0, -1.0, 2), ValueError, "sigma2 must be positive"),
    (hypersphere.objective, (-0.5, 1.0, 1.0, 2), ValueError, "rho must be non-negative"),
    (hypersphere.objective, (0.5, 1.0, 1.0, 0), ValueError, "d must be >= 1"),
    (hypersphere.gradient, (0.5, 1.0, 1.0, 2.0), TypeError, "d must be an integer"),
    (hypersphere.optimal_radius, (np.inf, 1.0, 2), ValueError, "r must be finite"),
    (hypersphere.critical_variance, (1.0, 0), ValueError, "d must be >= 1"),
    (hypersphere.radius_grid, ([1.0, -1.0], [0.1]), ValueError, "r_values must be positive"),
    (hypersphere.radius_grid, ([1.0], [[0.1]]), ValueError, "sigma2_values must be 1-dimensional"),
    # soft_threshold
    (soft_threshold.soft_threshold, (1.0, -0.1), ValueError, "alpha must be non-negative"),
    (soft_threshold.moments, (0.0, -1.0, 0.1), ValueError, "std must be non-negative"),
    (soft_threshold.moments, (np.zeros(3), np.ones(2), 0.1), ValueError, "mean and std must broadcast"),
    (soft_threshold.energy, (X, W, B3, 0.0, np.zeros((8, 2)), np.ones((8, 2)), 0.1), ValueError,
     "gamma must be positive"),
    (soft_threshold.energy, (X, W, B3, 1.0, np.zeros((8, 2)), np.zeros((8, 2)), 0.1), ValueError,
     "s must be positive"),
    (soft_threshold.energy, (X, W, B3, 1.0, np.zeros((7, 2)), np.ones((8, 2)), 0.1), ValueError,
     r"mu must have shape \(8, 2\)"),
    (soft_threshold.collapsed_point, (np.ones((4, 2)), 1), ValueError, "X must not have all rows equal"),
    (soft_threshold.collapsed_point, (X, 0), ValueError, "latent_dim must be >= 1"),
    (soft_threshold.reconstruction_path, ([1.0, 0.0], 0.1, 0.01, 1.0), ValueError, "non-zero axis coordinates"),
    (soft_threshold.reconstruction_path, ([1.0], 0.1, 0.01, 0.0), ValueError, "c must be non-zero"),
    (soft_threshold.reconstruction_path, ([1.0], 0.1, -0.01, 1.0), ValueError, "gamma must be positive"),
]


@pytest.mark.parametrize("fn,args,exc,msg", CASES, ids=[f"{c[0].__module__.split('.')[-1]}.{c[0].__name__}-{i}"
                                                        for i, c in enumerate(CASES)])
def test_invalid_arguments_raise_clear_errors(fn, args, exc, msg):
    with pytest.raises(exc, match=msg):
        fn(*args)


def test_inputs_are_not_modified():
    Wc, Xc = W.copy(), X.copy()
    ppca.fit(X, 2)
    linear_gaussian.posterior(W, B3, 1.0, X)
    np.testing.assert_array_equal(W, Wc)
    np.testing.assert_array_equal(X, Xc)


def test_lists_and_integers_are_accepted_as_float64():
    m, c = linear_gaussian.marginal([[1, 0], [0, 1], [1, 1]], [0, 0, 0], 1)
    assert m.dtype == np.float64 and c.dtype == np.float64
    assert isinstance(hypersphere.optimal_radius(2, 1, 1), float)

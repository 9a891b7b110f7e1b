"""analytic.ppca (Tipping and Bishop; docs/math.md 4.4; dai2020 Sec. 4)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

from analytic import ppca

from ._helpers import data_with_spectrum, fd_gradient, ml_cov, orthogonal_matrices

HYP = settings(max_examples=30, deadline=None)


@pytest.fixture
def data():
    rng = np.random.default_rng(20)
    d, n = 5, 300
    A = rng.normal(size=(d, d)) * np.array([2.0, 1.5, 0.7, 0.4, 0.3])
    return rng.normal(size=(n, d)) @ A.T + rng.normal(size=d)


def test_learned_noise_fit_matches_closed_form_likelihood(data):
    k = 2
    W, mean, s2 = ppca.fit(data, k)
    lam = np.sort(np.linalg.eigvalsh(ml_cov(data)))[::-1]
    assert s2 == pytest.approx(lam[k:].mean(), rel=1e-12)
    np.testing.assert_allclose(mean, data.mean(axis=0), rtol=1e-14)
    d = data.shape[1]
    ll_star = -0.5 * (d * np.log(2 * np.pi) + np.log(lam[:k]).sum() + (d - k) * np.log(s2) + d)
    ll = ppca.log_likelihood(data, W, mean, s2)
    ref = stats.multivariate_normal(mean, W @ W.T + s2 * np.eye(d)).logpdf(data).mean()
    assert ll == pytest.approx(ref, rel=1e-12)
    assert ll == pytest.approx(ll_star, rel=1e-12)


def _pack(W, mean, s2):
    return np.concatenate([W.ravel(), mean, [np.log(s2)]])


def _unpack(p, d, k):
    return p[:d * k].reshape(d, k), p[d * k:d * k + d], np.exp(p[-1])


def test_learned_noise_optimum_has_zero_gradient_and_beats_perturbations(data):
    d, k = data.shape[1], 2
    W, mean, s2 = ppca.fit(data, k)

    def ll(p):
        return ppca.log_likelihood(data, *_unpack(p, d, k))

    p0 = _pack(W, mean, s2)
    g = fd_gradient(ll, p0, 1e-5)
    # Central differences: truncation ~h^2 |f'''| ~ 1e-10, rounding ~eps |f| / h ~ 1e-10.
    # A wrong optimum (e.g. divisor N - 1 in the noise) gives gradients ~1e-3 here.
    assert np.abs(g).max() < 1e-8
    ll0 = ll(p0)
    rng = np.random.default_rng(21)
    for scale in (1e-3, 1e-2, 1e-1):
        for _ in range(10):
            dW = rng.normal(size=W.shape) * scale
            assert ppca.log_likelihood(data, W + dW, mean, s2) < ll0
            assert ppca.log_likelihood(data, W, mean, s2 * np.exp(scale * rng.choice([-1, 1]))) < ll0


def _nll_and_grad(p, X, d, k):
    """Negative average log-likelihood and its gradient in (W, mean, log s2).

    The gradient only steers the optimiser (a wrong one would stop it short of the
    optimum and fail the test); the value compared is ppca.log_likelihood's own.
    """
    W, m, s2 = _unpack(p, d, k)
    C = W @ W.T + s2 * np.eye(d)
    Ci = np.linalg.inv(C)
    xbar = X.mean(0)
    S_mu = ml_cov(X) + np.outer(xbar - m, xbar - m)
    G = 0.5 * (Ci @ S_mu @ Ci - Ci)  # d(avg LL)/dC
    grad = np.concatenate([(2 * G @ W).ravel(), Ci @ (xbar - m), [s2 * np.trace(G)]])
    return -ppca.log_likelihood(X, W, m, s2), -grad


def test_learned_noise_optimum_is_global_by_bruteforce(data):
    d, k = data.shape[1], 2
    W, mean, s2 = ppca.fit(data, k)
    ll0 = ppca.log_likelihood(data, W, mean, s2)
    rng = np.random.default_rng(22)
    results = [optimize.minimize(_nll_and_grad,
                                 np.concatenate([rng.normal(size=d * k), data.mean(0) + rng.normal(size=d), [0.0]]),
                                 args=(data, d, k), jac=True, method="BFGS", options={"gtol": 1e-10})
               for _ in range(5)]
    best = min(-r.fun for r in results)
    assert all(-r.fun < ll0 + 1e-12 for r in results)  # nothing better than the closed form
    assert best == pytest.approx(ll0, abs=1e-9)          # and the optimiser finds it


@pytest.mark.parametrize("sigma2", [0.5, 1.2, 3.0, 5.0])
def test_fixed_noise_prunes_exactly_the_eigenvalues_below_noise(sigma2):
    lam = np.array([4.0, 2.5, 1.0, 0.3])
    X, U = data_with_spectrum(np.random.default_rng(23), 50, lam, mean=np.array([1.0, 2.0, 3.0, 4.0]))
    k = 3
    W, mean, s2 = ppca.fit(X, k, sigma2=sigma2)
    assert s2 == sigma2
    norms = np.linalg.norm(W, axis=0)
    for j in range(k):
        if lam[j] <= sigma2:
            assert norms[j] == 0.0
        else:
            assert norms[j] == pytest.approx(np.sqrt(lam[j] - sigma2), rel=1e-10)
            assert abs(U[:, j] @ W[:, j]) == pytest.approx(norms[j], rel=1e-10)  # column along u_j
    assert ppca.active_dims(lam, sigma2) == int(np.sum(lam > sigma2))
    assert np.count_nonzero(norms) == min(k, ppca.active_dims(lam, sigma2))


@pytest.mark.parametrize("sigma2", [0.6, 2.0])
def test_fixed_noise_optimum_by_bruteforce(sigma2):
    lam = np.array([4.0, 1.5, 1.0, 0.3])
    X, _ = data_with_spectrum(np.random.default_rng(24), 40, lam)
    d, k = 4, 3
    W, mean, _ = ppca.fit(X, k, sigma2=sigma2)
    ll0 = ppca.log_likelihood(X, W, mean, sigma2)
    rng = np.random.default_rng(25)

    def nll(w):
        f, g = _nll_and_grad(np.concatenate([w, mean, [np.log(sigma2)]]), X, d, k)
        return f, g[:d * k]

    results = [optimize.minimize(nll, rng.normal(size=d * k), jac=True, method="BFGS", options={"gtol": 1e-10})
               for _ in range(4)]
    assert all(-r.fun < ll0 + 1e-12 for r in results)
    best = min(results, key=lambda r: r.fun)
    assert -best.fun == pytest.approx(ll0, abs=1e-9)
    # Same model (W is identified only up to rotation, W W^T fully): an argmin is resolved
    # to ~sqrt(eps) from values exact to eps (measured <= 5e-8), hence 1e-6. Its rank is
    # the number of eigenvalues above the noise.
    Wb = best.x.reshape(d, k)
    np.testing.assert_allclose(Wb @ Wb.T, W @ W.T, atol=1e-6)
    assert np.linalg.matrix_rank(W @ W.T, tol=1e-8) == ppca.active_dims(lam, sigma2)


def test_eigenvalue_equal_to_noise_gives_zero_column():
    lam = np.array([3.0, 1.0, 0.5])
    X, _ = data_with_spectrum(np.random.default_rng(26), 30, lam)
    _, lam_hat, _ = ppca.eigen(X)
    W, _, _ = ppca.fit(X, 2, sigma2=float(lam_hat[1]))
    assert np.linalg.norm(W[:, 1]) == 0.0 and np.linalg.norm(W[:, 0]) > 0
    assert ppca.active_dims(lam_hat, float(lam_hat[1])) == 1


# ---------------------------------------------------------------- properties


@HYP
@given(st.integers(0, 2 ** 32 - 1), orthogonal_matrices(2))
def test_likelihood_invariant_under_latent_rotation(seed, R):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(20, 4)) * [3.0, 1.0, 0.5, 0.2]
    W = rng.normal(size=(4, 2))
    m = rng.normal(size=4)
    assert ppca.log_likelihood(X, W @ R, m, 0.3) == pytest.approx(ppca.log_likelihood(X, W, m, 0.3), rel=1e-10)


@HYP
@given(st.integers(0, 2 ** 32 - 1), st.floats(0.1, 10.0), st.integers(1, 3))
def test_fit_scaling_and_translation(seed, c, k):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(25, 4)) * [3.0, 1.0, 0.5, 0.2]
    shift = rng.normal(size=4) * 5
    W, m, s2 = ppca.fit(X, k)
    Wc, mc, s2c = ppca.fit(c * X + shift, k)
    assert s2c == pytest.approx(c * c * s2, rel=1e-8)
    np.testing.assert_allclose(mc, c * m + shift, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(Wc @ Wc.T, c * c * (W @ W.T), rtol=1e-7, atol=1e-9 * c * c)
    assert ppca.log_likelihood(c * X + shift, Wc, mc, s2c) == pytest.approx(
        ppca.log_likelihood(X, W, m, s2) - 4 * np.log(c), rel=1e-9, abs=1e-9)


@HYP
@given(st.lists(st.floats(0.0, 10.0), min_size=1, max_size=6), st.floats(0.01, 10.0), st.floats(1.0, 3.0))
def test_active_dims_monotone_in_noise(lam, noise, factor):
    assert ppca.active_dims(lam, noise * factor) <= ppca.active_dims(lam, noise)
    assert ppca.active_dims(lam, noise) == sum(v > noise for v in lam)

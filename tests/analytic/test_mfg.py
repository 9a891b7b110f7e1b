"""analytic.mfg: best diagonal Gaussian fit (yacoby2020 App. C.3, docs/math.md 4.2)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

from analytic import mfg

from ._helpers import assert_mc, random_spd, spd_matrices

HYP = settings(max_examples=40, deadline=None)


def kl_diag_independent(m, v, mu, Sigma):
    """KL(N(m, diag v) || N(mu, Sigma)) with plain inverse and slogdet (independent of analytic)."""
    P = np.linalg.inv(Sigma)
    diff = mu - m
    return 0.5 * (np.sum(np.diag(P) * v) + diff @ P @ diff - m.size
                  + np.linalg.slogdet(Sigma)[1] - np.sum(np.log(v)))


@pytest.fixture
def target():
    rng = np.random.default_rng(0)
    K = 3
    return rng.normal(size=K), random_spd(rng, K)


def test_best_fit_is_the_bruteforce_optimum(target):
    mu, Sigma = target
    K = mu.size
    fit = mfg.best_fit(mu, Sigma)
    kl_star = mfg.min_kl(Sigma)
    rng = np.random.default_rng(1)

    def obj(p):
        return kl_diag_independent(p[:K], np.exp(p[K:]), mu, Sigma)

    results = [optimize.minimize(obj, rng.normal(scale=2.0, size=2 * K), method="BFGS",
                                 options={"gtol": 1e-11}) for _ in range(6)]
    best = min(results, key=lambda r: r.fun)
    # Nothing better than the closed form (1e-12: rounding of an O(1) objective).
    assert all(r.fun > kl_star - 1e-12 for r in results)
    # The optimiser reaches it. Near a smooth minimum f - f* ~ |dx|^2, so with values exact
    # to ~1e-16 an argmin is only determined to ~sqrt(eps) ~ 1.5e-8 (measured: 1e-8 to 3e-8);
    # 1e-7 is that resolution with a small safety factor, the value itself to 1e-12.
    assert abs(best.fun - kl_star) < 1e-12
    np.testing.assert_allclose(best.x[:K], fit.mean, atol=1e-7)
    np.testing.assert_allclose(np.exp(best.x[K:]), fit.var, rtol=1e-7)
    # Same number from the independent KL at the closed-form argmin.
    assert kl_diag_independent(fit.mean, fit.var, mu, Sigma) == pytest.approx(kl_star, abs=1e-13)


def test_min_kl_matches_monte_carlo(target):
    mu, Sigma = target
    fit = mfg.best_fit(mu, Sigma)
    rng = np.random.default_rng(2)
    z = fit.mean + np.sqrt(fit.var) * rng.standard_normal((40_000, mu.size))
    logq = stats.norm.logpdf(z, fit.mean, np.sqrt(fit.var)).sum(axis=1)
    logp = stats.multivariate_normal(mu, Sigma).logpdf(z)
    assert_mc(logq - logp, mfg.min_kl(Sigma), label="KL(q*||p)")


def test_kl_diag_matches_monte_carlo(target):
    mu, Sigma = target
    rng = np.random.default_rng(3)
    m, v = mu + 0.3, np.array([0.5, 1.5, 0.8])
    z = m + np.sqrt(v) * rng.standard_normal((40_000, mu.size))
    samples = stats.norm.logpdf(z, m, np.sqrt(v)).sum(axis=1) - stats.multivariate_normal(mu, Sigma).logpdf(z)
    assert_mc(samples, mfg.kl_diag(m, v, mu, Sigma), label="kl_diag")


def test_min_kl_equals_direct_formula(target):
    _, Sigma = target
    P = np.linalg.inv(Sigma)
    direct = 0.5 * (np.sum(np.log(np.diag(P))) - np.linalg.slogdet(P)[1])
    assert mfg.min_kl(Sigma) == pytest.approx(direct, rel=1e-12)


def test_best_fit_variance_is_conditional_variance():
    # For a 2x2 covariance the conditional variance is s11 (1 - rho^2).
    Sigma = np.array([[2.0, 0.6], [0.6, 0.5]])
    rho2 = 0.6 ** 2 / (2.0 * 0.5)
    np.testing.assert_allclose(mfg.best_fit([0.0, 0.0], Sigma).var, [2.0 * (1 - rho2), 0.5 * (1 - rho2)], rtol=1e-14)
    assert mfg.min_kl(Sigma) == pytest.approx(-0.5 * np.log(1 - rho2), rel=1e-13)


@HYP
@given(spd_matrices())
def test_min_kl_nonnegative_and_zero_iff_diagonal(Sigma):
    kl = mfg.min_kl(Sigma)
    assert kl >= 0.0
    assert mfg.min_kl(np.diag(np.diag(Sigma))) == 0.0
    # Hadamard's inequality is strict for a non-diagonal precision.
    P = np.linalg.inv(Sigma)
    off = np.abs(P - np.diag(np.diag(P))).max() / np.abs(np.diag(P)).max()
    if off > 1e-3:
        assert kl > 0.0


@HYP
@given(spd_matrices(), st.floats(0.1, 10.0), st.integers(0, 2 ** 32 - 1))
def test_min_kl_invariant_to_coordinate_scaling_and_permutation(Sigma, c, seed):
    # KL between Gaussians is invariant under any invertible map of z applied to both;
    # diagonal maps and permutations keep q diagonal, so the minimum is unchanged.
    rng = np.random.default_rng(seed)
    K = Sigma.shape[0]
    Dg = np.diag(c * rng.uniform(0.2, 5.0, size=K))
    perm = rng.permutation(K)
    T = (Dg @ Sigma @ Dg)[np.ix_(perm, perm)]
    assert mfg.min_kl(T) == pytest.approx(mfg.min_kl(Sigma), rel=1e-8, abs=1e-12)


@HYP
@given(spd_matrices(), st.floats(0.1, 10.0))
def test_best_fit_scaling_and_undercoverage(Sigma, c):
    K = Sigma.shape[0]
    v = mfg.best_fit(np.zeros(K), Sigma).var
    # conditional variances never exceed marginal ones (reverse KL under-covers)
    assert np.all(v <= np.diag(Sigma) * (1 + 1e-12))
    np.testing.assert_allclose(mfg.best_fit(np.zeros(K), c * c * Sigma).var, c * c * v, rtol=1e-10)

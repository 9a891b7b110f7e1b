"""analytic.hypersphere (berger2020 Theorem 1, docs/math.md 4.6)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize, stats

from analytic import hypersphere as hs

from ._helpers import assert_mc, fd_gradient

HYP = settings(max_examples=40, deadline=None)
DIMS = [1, 2, 3, 5]


def uniform_sphere(rng, n, d, radius):
    v = rng.standard_normal((n, d))
    return radius * v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("rho", [0.2, 0.8, 1.3])
def test_objective_matches_monte_carlo(d, rho):
    # exp F(rho) = E_x E_xhat N(x; xhat, sigma2 I) with x on the r-sphere, xhat on the
    # rho-sphere: an unbiased Monte Carlo target (the log is taken of the exact side only).
    r, sigma2 = 1.0, 0.3
    rng = np.random.default_rng(50 + d)
    n = 40_000
    x, xhat = uniform_sphere(rng, n, d, r), uniform_sphere(rng, n, d, rho)
    dens = np.exp(stats.norm.logpdf(x - xhat, scale=np.sqrt(sigma2)).sum(axis=1))
    assert_mc(dens, np.exp(hs.objective(rho, r, sigma2, d)), max_rel_se=0.02, label=f"exp F, d={d}")
    # At rho = 0 the model is N(0, sigma2 I) exactly: no sampling needed.
    assert hs.objective(0.0, r, sigma2, d) == pytest.approx(
        stats.multivariate_normal(np.zeros(d), sigma2 * np.eye(d)).logpdf(x[0]), rel=1e-13)


@pytest.mark.parametrize("d", [2, 3, 4, 5, 7])
@pytest.mark.parametrize("kappa", [1e-3, 0.5, 1.0, 2.0, 3.7, 25.0])
def test_log_mean_exp_cos_matches_quadrature(d, kappa):
    # A_d(kappa) = int_0^pi exp(kappa cos t) sin^{d-2} t dt / int_0^pi sin^{d-2} t dt
    # (the polar-angle density on the sphere). quad reaches ~1e-14 on these smooth integrands.
    num = integrate.quad(lambda t: np.exp(kappa * (np.cos(t) - 1)) * np.sin(t) ** (d - 2), 0, np.pi,
                         epsabs=0, epsrel=1e-13)[0]
    den = integrate.quad(lambda t: np.sin(t) ** (d - 2), 0, np.pi, epsabs=0, epsrel=1e-13)[0]
    assert hs.log_mean_exp_cos(kappa, d) == pytest.approx(np.log(num / den) + kappa, rel=1e-11, abs=1e-14)


def test_closed_forms_for_low_dimensions():
    k = np.array([0.3, 1.0, 1.5, 7.0, 40.0])
    np.testing.assert_allclose(hs.log_mean_exp_cos(k, 1), np.log(np.cosh(k)), rtol=1e-13)
    np.testing.assert_allclose(hs.log_mean_exp_cos(k, 3), np.log(np.sinh(k) / k), rtol=1e-12)
    np.testing.assert_allclose(hs.bessel_ratio(k, 1), np.tanh(k), rtol=1e-13)
    np.testing.assert_allclose(hs.bessel_ratio(k[1:], 3), 1 / np.tanh(k[1:]) - 1 / k[1:], rtol=1e-12)
    assert hs.log_mean_exp_cos(0.0, 4) == 0.0 and hs.bessel_ratio(0.0, 4) == 0.0
    # small kappa, against the series log A_d = k^2/(2d) - k^4/(4 d^2 (d+2)) + O(k^6)
    for d in (1, 2, 3, 10):
        k0 = 1e-3
        assert hs.log_mean_exp_cos(k0, d) == pytest.approx(k0 ** 2 / (2 * d) - k0 ** 4 / (4 * d * d * (d + 2)),
                                                           rel=1e-11)
        assert hs.bessel_ratio(k0, d) == pytest.approx(k0 / d - k0 ** 3 / (d * d * (d + 2)), rel=1e-11)


@pytest.mark.parametrize("d", DIMS)
def test_gradient_matches_finite_differences(d):
    r, sigma2 = 1.2, 0.25
    for rho in [0.05, 0.4, 0.9, 1.5, 3.0]:
        fd = fd_gradient(lambda p: hs.objective(p[0], r, sigma2, d), np.array([rho]), 1e-6)[0]
        # truncation ~h^2 |F'''| ~ 1e-11, rounding ~eps |F| / h ~ 1e-9
        assert hs.gradient(rho, r, sigma2, d) == pytest.approx(fd, abs=1e-8)


@pytest.mark.parametrize("d", DIMS)
def test_collapse_exactly_at_critical_variance(d):
    r = 1.5
    s_crit = hs.critical_variance(r, d)
    assert s_crit == r * r / d
    assert hs.optimal_radius(r, s_crit, d) == 0.0
    assert hs.optimal_radius(r, 3.0 * s_crit, d) == 0.0
    assert hs.optimal_radius(r, s_crit * (1 - 1e-3), d) > 0.0
    assert hs.optimal_radius(r, 0.2 * s_crit, d) > 0.0
    # Brute force on the collapsed side: F is maximal at 0 on a dense grid.
    grid = np.linspace(0, 2 * r, 2001)
    for s2 in (s_crit, 2.0 * s_crit):
        F = hs.objective(grid, r, s2, d)
        assert np.all(F[1:] < F[0])


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("ratio", [0.05, 0.4, 0.9])
def test_optimal_radius_is_stationary_and_global(d, ratio):
    r = 1.3
    sigma2 = ratio * hs.critical_variance(r, d)
    rho = hs.optimal_radius(r, sigma2, d)
    # rho* < r mathematically; for d = 1 and r^2/sigma2 >~ 19, tanh rounds to 1 and rho* to r.
    assert 0.0 < rho <= r
    F_star = hs.objective(rho, r, sigma2, d)
    # stationary: F'(rho*) is zero up to the rounding of r R_d - rho (~eps r / sigma2)
    assert abs(hs.gradient(rho, r, sigma2, d)) < 1e-13 * r / sigma2
    # rho = 0 is a local minimum there (F increases away from it)
    assert hs.objective(1e-3 * r, r, sigma2, d) > hs.objective(0.0, r, sigma2, d)
    # brute force: dense grid then bounded Brent from several brackets finds nothing better
    grid = np.linspace(0, 3 * r, 3001)
    assert hs.objective(grid, r, sigma2, d).max() <= F_star + 1e-13
    for lo, hi in [(0.0, r), (0.0, 3 * r), (0.5 * rho, 2 * r)]:
        res = optimize.minimize_scalar(lambda p: -hs.objective(p, r, sigma2, d), bounds=(lo, hi),
                                       method="bounded", options={"xatol": 1e-12})
        assert -res.fun <= F_star + 1e-13
        assert res.x == pytest.approx(rho, rel=1e-6)  # maximiser resolved to ~sqrt(eps)


def test_radius_tends_to_data_radius_as_noise_vanishes():
    r = 1.0
    for d in DIMS:
        ratios = [hs.optimal_radius(r, s2, d) / r for s2 in (1e-2, 1e-4, 1e-6)]
        assert np.all(np.diff(ratios) >= 0)  # d = 1 reaches 1.0 to double precision already
        # rho*/r ~ 1 - (d - 1) sigma2 / (2 r^2) for small sigma2 (large-kappa expansion of R_d)
        assert ratios[-1] == pytest.approx(1 - (d - 1) * 1e-6 / 2, abs=1e-9)


def test_radius_grid_for_the_d2_heat_map():
    r_values = np.array([0.2, 0.5, 1.0, 2.0])
    s2_values = np.array([0.01, 0.05, 0.125, 0.5, 2.0])
    grid = hs.radius_grid(r_values, s2_values)
    assert grid.shape == (4, 5)
    for i, r in enumerate(r_values):
        for j, s2 in enumerate(s2_values):
            assert grid[i, j] == hs.optimal_radius(r, s2, 2) / r
            assert (grid[i, j] == 0.0) == (r * r <= 2 * s2)
    assert np.all((grid >= 0) & (grid < 1))


@HYP
@given(st.integers(1, 6), st.floats(0.1, 5.0), st.floats(0.01, 10.0), st.floats(0.2, 5.0))
def test_scaling_law(d, r, sigma2, c):
    # (r, sigma2, rho) -> (c r, c^2 sigma2, c rho): kappa unchanged, F shifts by -d log c.
    rho = 0.7 * r
    assert hs.objective(c * rho, c * r, c * c * sigma2, d) == pytest.approx(
        hs.objective(rho, r, sigma2, d) - d * np.log(c), rel=1e-10, abs=1e-10)
    rs = hs.optimal_radius(r, sigma2, d)
    assert hs.optimal_radius(c * r, c * c * sigma2, d) == pytest.approx(c * rs, rel=1e-9, abs=1e-300)
    assert 0.0 <= rs <= r


@HYP
@given(st.integers(1, 8), st.floats(1e-6, 200.0))
def test_bessel_ratio_bounds(d, kappa):
    R = hs.bessel_ratio(kappa, d)
    assert 0.0 < R <= 1.0  # < 1 mathematically; tanh(kappa) rounds to 1 for kappa > 19
    assert R < kappa / d  # the inequality behind the collapse threshold


@HYP
@given(st.integers(1, 6), st.floats(1.01, 1e4), st.floats(1.0, 10.0))
def test_relative_radius_increases_with_signal_to_noise(d, snr, factor):
    # rho*/r depends on r^2 / sigma2 only and is non-decreasing in it.
    r = 1.0
    a = hs.optimal_radius(r, r * r / (d * snr), d)
    b = hs.optimal_radius(r, r * r / (d * snr * factor), d)
    assert b >= a - 1e-14

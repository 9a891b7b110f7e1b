"""Henze-Zirkler statistic (docs/math.md 2.4): hand computation, gradient, invariances, p-value."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad

from refvae.gradcheck import assert_grad
from refvae.metrics.hz import hz_beta, hz_moments, hz_pvalue, hz_statistic, hz_test, hz_value_and_grad


def hz_by_loops(z):
    """docs/math.md 2.4 term by term, with explicit loops (S with divisor n)."""
    n, p = z.shape
    zbar = np.zeros(p)
    for i in range(n):
        zbar += z[i] / n
    S = np.zeros((p, p))
    for i in range(n):
        S += np.outer(z[i] - zbar, z[i] - zbar) / n
    Sinv = np.linalg.inv(S)
    beta = (1 / math.sqrt(2)) * ((2 * p + 1) * n / 4) ** (1 / (p + 4))
    b2 = beta ** 2
    pair = 0.0
    for i in range(n):
        for j in range(n):
            r = z[i] - z[j]
            pair += math.exp(-b2 * (r @ Sinv @ r) / 2)
    single = 0.0
    for i in range(n):
        c = z[i] - zbar
        single += math.exp(-b2 * (c @ Sinv @ c) / (2 * (1 + b2)))
    return n * (pair / n ** 2 - 2 * (1 + b2) ** (-p / 2) * single / n + (1 + 2 * b2) ** (-p / 2))


@pytest.mark.parametrize("n,p,seed", [(6, 1, 0), (7, 2, 1), (9, 3, 2)])
def test_matches_double_loop(n, p, seed):
    z = np.random.default_rng(seed).standard_normal((n, p)) * np.arange(1, p + 1) + 0.3
    assert hz_statistic(z) == pytest.approx(hz_by_loops(z), rel=1e-12)
    assert hz_value_and_grad(z)[0] == pytest.approx(hz_by_loops(z), rel=1e-12)


def test_fixed_value_and_beta():
    # beta of docs/math.md 2.4 at n = 4, p = 1: (1/sqrt 2) (3 * 4 / 4)^(1/5)
    assert hz_beta(4, 1) == pytest.approx(3 ** 0.2 / math.sqrt(2), rel=1e-15)
    z = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 3.0], [-1.0, 0.5]])
    assert hz_statistic(z) == pytest.approx(hz_by_loops(z), rel=1e-12)


def test_leading_axes_are_independent_sets():
    z = np.random.default_rng(3).standard_normal((3, 10, 2))
    hz, dz = hz_value_and_grad(z)
    assert hz.shape == (3,) and dz.shape == z.shape
    for r in range(3):
        h_r, d_r = hz_value_and_grad(z[r])
        assert hz[r] == pytest.approx(float(h_r), rel=1e-13)
        np.testing.assert_allclose(dz[r], d_r, rtol=1e-11, atol=1e-14)


@settings(max_examples=25, deadline=None)
@given(p=st.integers(1, 3), extra=st.integers(2, 9), restarts=st.sampled_from([None, 1, 3]),
       scale=st.floats(0.3, 3.0), shift=st.floats(-2.0, 2.0), seed=st.integers(0, 2 ** 32 - 1))
def test_gradient(p, extra, restarts, scale, shift, seed):
    n = p + extra
    shape = (n, p) if restarts is None else (restarts, n, p)
    z = np.random.default_rng(seed).standard_normal(shape) * scale + shift

    def fun(q):
        hz, dz = hz_value_and_grad(q["z"])
        return hz, {"z": dz}

    assert_grad(fun, {"z": z}, rtol=1e-6)


@settings(max_examples=10, deadline=None)
@given(p=st.integers(1, 3), seed=st.integers(0, 2 ** 32 - 1))
def test_affine_invariance_and_gradient_identities(p, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((p + 8, p))
    A = rng.standard_normal((p, p)) + 3 * np.eye(p)
    hz, dz = hz_value_and_grad(z)
    # HZ(z A + c) = HZ(z): the statistic only sees S^-1-whitened differences
    assert hz_statistic(z @ A + rng.standard_normal(p)) == pytest.approx(float(hz), rel=1e-9)
    # hence d/dt HZ(z + t c) = 0 and d/dt HZ(z (I + t B)) = 0 for all c, B
    scale = np.abs(dz).max()
    assert np.abs(dz.sum(axis=0)).max() <= 1e-10 * scale
    assert np.abs(z.T @ dz).max() <= 1e-10 * scale * np.abs(z).max()


def test_pvalue_gaussian_large_circle_tiny():
    rng = np.random.default_rng(0)
    gauss = hz_test(rng.standard_normal((200, 2)))
    t = rng.uniform(0, 2 * np.pi, 200)
    circle = hz_test(np.stack([np.cos(t), np.sin(t)], axis=1))
    assert gauss.pvalue > 0.2
    assert circle.pvalue < 1e-8
    assert circle.statistic > 10 * gauss.statistic


def test_pvalue_is_calibrated_under_normality():
    # 300 Gaussian data sets (n = 50, p = 3): the rejection rate at level 0.05 has binomial
    # standard deviation sqrt(0.05 * 0.95 / 300) = 0.0126; accept within 4 of them.
    rng = np.random.default_rng(1)
    pv = hz_test(rng.standard_normal((300, 50, 3))).pvalue
    assert pv.shape == (300,)
    assert abs(np.mean(pv < 0.05) - 0.05) < 4 * math.sqrt(0.05 * 0.95 / 300)


def test_pvalue_is_the_lognormal_with_the_null_moments():
    # The p-value is the survival function of a law on [0, inf) with mean mu and variance sig2
    # (integrals of sf), and mu matches the mean of HZ over simulated Gaussian data sets
    # (2000 sets, n = 50, p = 2: within 4 Monte Carlo standard errors, ~0.017).
    n, p = 50, 2
    mu, sig2 = hz_moments(n, p)
    m1 = quad(lambda t: float(hz_pvalue(t, n, p)), 0, np.inf)[0]
    m2 = quad(lambda t: 2 * t * float(hz_pvalue(t, n, p)), 0, np.inf)[0]
    assert m1 == pytest.approx(mu, rel=1e-7)
    assert m2 - m1 ** 2 == pytest.approx(sig2, rel=1e-6)
    hz = hz_statistic(np.random.default_rng(7).standard_normal((2000, n, p)))
    assert abs(hz.mean() - mu) < 4 * hz.std(ddof=1) / math.sqrt(2000)


def test_pvalue_monotone_and_edge_values():
    p = hz_pvalue(np.array([0.0, 0.5, 1.0, 5.0]), 100, 2)
    assert p[0] == 1.0 and np.all(np.diff(p) < 0) and p[-1] < 1e-6


def test_bad_inputs():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="z must have at least 2 dimensions"):
        hz_statistic(np.ones(5))
    with pytest.raises(ValueError, match="n >= p \\+ 2"):
        hz_statistic(rng.standard_normal((3, 2)))
    with pytest.raises(ValueError, match="z must be finite"):
        hz_value_and_grad(np.full((6, 2), np.nan))
    collinear = np.outer(rng.standard_normal(8), [1.0, 2.0])
    with pytest.raises(ValueError, match="singular"):
        hz_value_and_grad(collinear)
    with pytest.raises(ValueError, match="hz must be non-negative"):
        hz_pvalue(-1.0, 10, 2)
    with pytest.raises(ValueError, match="n must be >= 1"):
        hz_beta(0, 2)
    with pytest.raises(TypeError, match="p must be an integer"):
        hz_pvalue(1.0, 10, 2.5)

"""Shared test utilities: Monte Carlo bounds, finite differences, random matrices.

None of these import :mod:`analytic`: they are the independent side of every
comparison.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

# Monte Carlo checks assert |mc - exact| < MC_SIGMAS * se with se estimated from the
# samples. At 4 standard errors a correct formula fails with probability ~6e-5 per
# check, and the fixed seeds make the outcome deterministic anyway.
MC_SIGMAS = 4.0


def assert_mc(samples, exact, *, max_rel_se=0.02, label=""):
    """Assert the sample mean of iid ``samples`` is within 4 standard errors of ``exact``.

    ``max_rel_se`` guards against a vacuous check: the standard error itself must be
    small relative to max(|exact|, 1), so that a wrong closed form would be caught.
    """
    samples = np.asarray(samples, dtype=np.float64).ravel()
    n = samples.size
    mc = samples.mean()
    se = samples.std(ddof=1) / np.sqrt(n)
    assert se < max_rel_se * max(abs(exact), 1.0), f"{label}: MC too noisy to be a check (se={se:.3g})"
    assert abs(mc - exact) < MC_SIGMAS * se, (
        f"{label}: Monte Carlo {mc:.8g} vs exact {exact:.8g}: |diff| = {abs(mc - exact):.3g} "
        f">= {MC_SIGMAS} se = {MC_SIGMAS * se:.3g} (n={n})"
    )
    return mc, se


def fd_gradient(f, x, h):
    """Central finite-difference gradient of scalar f at flat vector x, step h.

    Error per entry ~ h^2 |f'''| / 6 (truncation) + eps |f| / h (rounding).
    """
    x = np.asarray(x, dtype=np.float64)
    g = np.empty_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2.0 * h)
    return g


def fd_hessian(f, x, h):
    """Central finite-difference Hessian of scalar f at flat vector x (symmetrised).

    Error per entry ~ h^2 |f''''| + eps |f| / h^2.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    H = np.empty((n, n))
    f0 = f(x)
    E = np.eye(n) * h
    for i in range(n):
        H[i, i] = (f(x + E[i]) - 2.0 * f0 + f(x - E[i])) / h ** 2
        for j in range(i + 1, n):
            H[i, j] = H[j, i] = (f(x + E[i] + E[j]) - f(x + E[i] - E[j]) - f(x - E[i] + E[j])
                                 + f(x - E[i] - E[j])) / (4.0 * h ** 2)
    return H


def random_spd(rng, d, *, jitter=0.2):
    A = rng.normal(size=(d, d))
    return A @ A.T / d + jitter * np.eye(d)


def random_orthogonal(rng, k):
    Q, R = np.linalg.qr(rng.normal(size=(k, k)))
    return Q * np.sign(np.diag(R))


def data_with_spectrum(rng, n, eigenvalues, mean=None):
    """Data whose ML (divisor-n) covariance is exactly U diag(eigenvalues) U^T.

    Returns (X, U) with U a random orthogonal matrix.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    d = lam.size
    Z = rng.normal(size=(n, d))
    Z -= Z.mean(axis=0)
    Q, R = np.linalg.qr(Z)  # Q has orthonormal, centred columns
    Z = Q * np.sign(np.diag(R)) * np.sqrt(n)
    U = random_orthogonal(rng, d)
    X = (Z * np.sqrt(lam)) @ U.T
    if mean is not None:
        X = X + mean
    return X, U


def ml_cov(X):
    return np.cov(X, rowvar=False, bias=True)


# Hypothesis strategies: bounded, well-scaled floats (no subnormals) so properties are about
# the maths, not about overflow or denormal rounding.
def matrices(rows, cols, lo=-2.0, hi=2.0):
    return hnp.arrays(np.float64, (rows, cols),
                      elements=st.floats(lo, hi, allow_nan=False, allow_subnormal=False, width=64))


def vectors(n, lo, hi):
    return hnp.arrays(np.float64, (n,), elements=st.floats(lo, hi, allow_nan=False, allow_subnormal=False, width=64))


@st.composite
def spd_matrices(draw, min_dim=1, max_dim=4, jitter=0.1):
    d = draw(st.integers(min_dim, max_dim))
    A = draw(matrices(d, d))
    return A @ A.T + jitter * np.eye(d)


@st.composite
def orthogonal_matrices(draw, k):
    seed = draw(st.integers(0, 2 ** 32 - 1))
    return random_orthogonal(np.random.default_rng(seed), k)

"""analytic.soft_threshold (dai2020 Eq. 5 and Prop. 1, docs/math.md 4.7)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize, stats

from analytic import linear_vae
from analytic import soft_threshold as stm

from ._helpers import assert_mc, data_with_spectrum, fd_gradient, fd_hessian, vectors

HYP = settings(max_examples=40, deadline=None)


def pi_ref(u, a):
    return np.where(u > a, u - a, np.where(u < -a, u + a, 0.0))


# ---------------------------------------------------------------- operator and moments


@HYP
@given(vectors(5, -10, 10), st.floats(0.0, 3.0))
def test_soft_threshold_properties(u, a):
    out = stm.soft_threshold(u, a)
    np.testing.assert_array_equal(out, pi_ref(u, a))
    np.testing.assert_array_equal(stm.soft_threshold(-u, a), -out)        # odd
    np.testing.assert_array_equal(stm.soft_threshold(u, 0.0), u)          # affine limit
    assert np.all(np.abs(out) <= np.abs(u))


CASES = [(0.3, 1.0, 0.5), (-1.2, 0.4, 0.3), (2.0, 0.7, 1.5), (0.0, 2.0, 1.0), (0.5, 0.05, 0.49), (0.8, 1.3, 0.0)]


@pytest.mark.parametrize("m,s,a", CASES)
def test_moments_match_quadrature(m, s, a):
    def mom(k):
        f = lambda u: pi_ref(u, a) ** k * stats.norm.pdf(u, m, s)
        pts = [p for p in (-a, a) if m - 12 * s < p < m + 12 * s]
        return integrate.quad(f, m - 12 * s, m + 12 * s, points=pts or None, epsabs=1e-14, epsrel=1e-12,
                              limit=200)[0]

    e1, e2 = stm.moments(m, s, a)
    # quad with the kinks at +-a given as break points is accurate to ~1e-13.
    assert e1 == pytest.approx(mom(1), rel=1e-10, abs=1e-12)
    assert e2 == pytest.approx(mom(2), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("m,s,a", CASES[:4])
def test_moments_match_monte_carlo(m, s, a):
    u = np.random.default_rng(61).normal(m, s, size=40_000)
    e1, e2 = stm.moments(m, s, a)
    assert_mc(pi_ref(u, a), e1, label="E pi")
    assert_mc(pi_ref(u, a) ** 2, e2, label="E pi^2")


def test_moments_limits():
    m = np.array([-2.0, -0.1, 0.0, 0.7, 3.0])
    e1, e2 = stm.moments(m, 0.0, 0.5)  # point mass
    np.testing.assert_array_equal(e1, pi_ref(m, 0.5))
    np.testing.assert_array_equal(e2, pi_ref(m, 0.5) ** 2)
    e1, e2 = stm.moments(m, 0.6, 0.0)  # identity: Gaussian moments
    np.testing.assert_allclose(e1, m, rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(e2, m * m + 0.36, rtol=1e-14)


# ---------------------------------------------------------------- energy


@pytest.fixture
def problem():
    rng = np.random.default_rng(62)
    N, d, K = 10, 3, 2
    X = rng.normal(size=(N, d)) * [2.0, 1.0, 0.5] + [1.0, 0.0, -1.0]
    return dict(X=X, W=rng.normal(size=(d, K)), b=rng.normal(size=d) * 0.3, gamma=0.8,
                mu=rng.normal(size=(N, K)), s=rng.uniform(0.3, 1.2, size=(N, K)))


def test_energy_matches_monte_carlo(problem):
    p, a = problem, 0.4
    exact = stm.energy(**p, alpha=a)
    rng = np.random.default_rng(63)
    S = 4000
    z = p["mu"] + p["s"] * rng.standard_normal((S,) + p["mu"].shape)     # (S, N, K)
    err = np.sum((p["X"] - pi_ref(z @ p["W"].T, a) - p["b"]) ** 2, axis=(1, 2))  # (S,)
    N, d = p["X"].shape
    rest = (N * d * np.log(p["gamma"]) + np.sum(p["s"] ** 2) - np.sum(np.log(p["s"] ** 2))
            + np.sum(p["mu"] ** 2))
    assert_mc(err / p["gamma"] + rest, exact, max_rel_se=0.01, label="energy")


def test_affine_energy_is_twice_the_linear_vae_free_energy(problem):
    # alpha = 0 with mu_i = V (x_i - b), s_i^2 = D is the linear VAE:
    # E = sum_i -2 ELBO_i - N d log 2 pi + N K (dai2020 drops the 1/2 and the constants).
    p = problem
    N, d = p["X"].shape
    K = p["W"].shape[1]
    V = np.random.default_rng(64).normal(size=(K, d)) * 0.4
    D = np.array([0.5, 0.9])
    mu = (p["X"] - p["b"]) @ V.T
    s = np.tile(np.sqrt(D), (N, 1))
    e = stm.energy(p["X"], p["W"], p["b"], p["gamma"], mu, s, 0.0)
    elbo = linear_vae.elbo(p["X"], p["W"], p["b"], p["gamma"], V, D)
    assert e == pytest.approx(-2 * N * elbo - N * d * np.log(2 * np.pi) + N * K, rel=1e-12)


# ---------------------------------------------------------------- collapsed point (Prop. 1)


def _pack(W, b, g, mu, s):
    return np.concatenate([W.ravel(), b, [np.log(g)], mu.ravel(), np.log(s).ravel()])


def _unpacker(N, d, K):
    def unpack(p):
        i = d * K
        W, b, g = p[:i].reshape(d, K), p[i:i + d], np.exp(p[i + d])
        j = i + d + 1
        return W, b, g, p[j:j + N * K].reshape(N, K), np.exp(p[j + N * K:]).reshape(N, K)
    return unpack


def _wmu_index(N, d, K):
    return np.r_[0:d * K, d * K + d + 1:d * K + d + 1 + N * K]


@pytest.fixture
def anisotropic():
    rng = np.random.default_rng(65)
    return rng.normal(size=(12, 3)) * [2.0, 1.0, 0.5] + [1.0, 0.0, -1.0]


def test_collapsed_point_parameters_and_energy(anisotropic):
    X, K = anisotropic, 2
    cp = stm.collapsed_point(X, K)
    N, d = X.shape
    assert cp.gamma == pytest.approx(np.sum(np.var(X, axis=0)) / d, rel=1e-13)
    np.testing.assert_allclose(cp.b, X.mean(0), rtol=1e-14)
    for a in (0.0, 0.5):
        assert stm.energy(X, cp.W, cp.b, cp.gamma, cp.mu, cp.s, a) == pytest.approx(cp.energy, rel=1e-13)
    # p(x) there is N(xbar, gammabar I): energy = -2 sum log p(x_i) - N d log 2 pi + N K
    ll = stats.multivariate_normal(cp.b, cp.gamma * np.eye(d)).logpdf(X).sum()
    assert cp.energy == pytest.approx(-2 * ll - N * d * np.log(2 * np.pi) + N * K, rel=1e-13)


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_collapsed_point_is_stationary(anisotropic, alpha):
    X, K = anisotropic, 2
    N, d = X.shape
    cp = stm.collapsed_point(X, K)
    unpack = _unpacker(N, d, K)
    f = lambda p: stm.energy(X, *unpack(p), alpha)
    p0 = _pack(cp.W, cp.b, cp.gamma, cp.mu, cp.s)
    # h = 1e-5: truncation ~h^2 |E'''| ~ 1e-8, rounding ~eps |E| / h ~ 1e-9. A collapsed
    # variance off by a factor N/(N-1) would give d = 3 in the log-gamma entry.
    assert np.abs(fd_gradient(f, p0, 1e-5)).max() < 1e-6


def test_collapsed_point_is_a_local_minimum_for_positive_alpha(anisotropic):
    X, K, alpha = anisotropic, 2, 0.5
    N, d = X.shape
    cp = stm.collapsed_point(X, K)
    unpack = _unpacker(N, d, K)
    f = lambda p: stm.energy(X, *unpack(p), alpha)
    p0 = _pack(cp.W, cp.b, cp.gamma, cp.mu, cp.s)
    rng = np.random.default_rng(66)
    nW = d * K
    for scale in (1e-3, 1e-2, 1e-1):
        for _ in range(30):
            dp = rng.normal(size=p0.size) * scale
            assert f(p0 + dp) > cp.energy             # every parameter moved
            dW = np.zeros_like(p0)
            dW[:nW] = dp[:nW]
            assert f(p0 + dW) >= cp.energy            # decoder alone: flat to all orders, never lower
    # (W, mu) Hessian: W block ~0 (gain suppressed by exp(-a^2 / 2 s^2)), mu block 2 I; no
    # negative curvature. FD Hessian error ~eps |E| / h^2 ~ 1e-6 at h = 1e-4.
    idx = _wmu_index(N, d, K)

    def sub(q):
        p = p0.copy()
        p[idx] = q
        return f(p)

    assert np.linalg.eigvalsh(fd_hessian(sub, p0[idx], 1e-4)).min() > -1e-5
    # Brute force: local descent from perturbed starts never ends below the collapsed energy.
    for _ in range(2):
        res = optimize.minimize(f, p0 + rng.normal(size=p0.size) * 0.05, method="L-BFGS-B")
        assert res.fun > cp.energy - 1e-9


def _predicted_min_curvature(X, gamma):
    # Second variation along (W = a u_1 e_k^T, mu_ik = b u_1^T (x_i - xbar)) in unit coordinates:
    # 2 [[N/g, -sqrt(N l1)/g], [-sqrt(N l1)/g, 1]]; its smaller eigenvalue.
    N = X.shape[0]
    l1 = np.linalg.eigvalsh(np.cov(X.T, bias=True)).max()
    return (N / gamma + 1) - np.sqrt((N / gamma - 1) ** 2 + 4 * N * l1 / gamma ** 2)


def _affine_collapsed_setup(X, K):
    """The affine (alpha = 0) energy at the collapsed point: (collapsed point, energy of the packed
    parameters, packed collapsed parameters, indices of the (W, mu) block, energy on that block)."""
    N, d = X.shape
    cp = stm.collapsed_point(X, K)
    unpack = _unpacker(N, d, K)
    f = lambda p: stm.energy(X, *unpack(p), 0.0)
    p0 = _pack(cp.W, cp.b, cp.gamma, cp.mu, cp.s)
    idx = _wmu_index(N, d, K)

    def sub(q):
        p = p0.copy()
        p[idx] = q
        return f(p)
    return cp, f, p0, idx, sub


def test_affine_collapsed_point_is_a_saddle_for_anisotropic_data(anisotropic):
    X, K = anisotropic, 2
    cp, f, p0, idx, sub = _affine_collapsed_setup(X, K)

    ev, vec = np.linalg.eigh(fd_hessian(sub, p0[idx], 1e-4))
    lam_pred = _predicted_min_curvature(X, cp.gamma)
    assert lam_pred < -1.0
    assert ev[0] == pytest.approx(lam_pred, abs=1e-4)   # FD Hessian error ~1e-6
    for t in (1e-3, 1e-2, 1e-1):
        q = p0[idx] + t * vec[:, 0]
        assert sub(q) < cp.energy                         # a descent direction
    res = optimize.minimize(f, p0 + 1e-3 * np.random.default_rng(67).normal(size=p0.size), method="L-BFGS-B",
                            options={"maxiter": 40})
    assert res.fun < cp.energy - 1.0  # plain descent escapes the saddle


def test_affine_collapsed_point_is_a_minimum_for_isotropic_data():
    X, _ = data_with_spectrum(np.random.default_rng(68), 12, [1.3, 1.3, 1.3])
    K = 2
    cp, f, p0, idx, sub = _affine_collapsed_setup(X, K)

    assert abs(_predicted_min_curvature(X, cp.gamma)) < 1e-10
    assert np.linalg.eigvalsh(fd_hessian(sub, p0[idx], 1e-4)).min() > -1e-5
    rng = np.random.default_rng(69)
    for scale in (1e-3, 1e-2, 1e-1):
        for _ in range(20):
            # global minimum of the affine model (learned noise = mean of all eigenvalues);
            # 1e-12 relative is rounding of an O(100) sum.
            assert f(p0 + rng.normal(size=p0.size) * scale) > cp.energy * (1 - 1e-12) - 1e-12


# ---------------------------------------------------------------- reconstruction path (Prop. 1)


def test_reconstruction_path_goes_below_the_collapsed_energy():
    t = np.array([-2.0, -1.0, 0.5, 1.5, 3.0])
    alpha, c, d, K = 0.3, 1.1, 3, 2
    N = t.size
    energies = []
    for gamma in (1e-2, 1e-3, 1e-4, 1e-5):
        pt = stm.reconstruction_path(t, alpha, gamma, c, d=d, latent_dim=K)
        assert pt.energy == stm.energy(pt.X, pt.W, pt.b, pt.gamma, pt.mu, pt.s, alpha)
        # explicit form; the neglected threshold-crossing terms are
        # < Phi(-min|t| / (c sqrt gamma)) ~ Phi(-4.5) at gamma = 1e-2, tiny below.
        approx = (N * (d - 1) * np.log(gamma) + N * (c * c + gamma + K - 1)
                  + np.sum((np.abs(t) + alpha) ** 2) / c ** 2)
        assert pt.energy == pytest.approx(approx, abs=1e-3 if gamma == 1e-2 else 1e-10)
        energies.append(pt.energy)
    E0 = stm.collapsed_point(pt.X, K).energy
    assert energies[1] < E0 and energies[-1] < E0 - 50
    # slope in log gamma is N (d - 1) plus the vanishing N gamma term: unbounded below
    g = np.array([1e-2, 1e-3, 1e-4, 1e-5])
    slopes = np.diff(energies) / np.diff(np.log(g))
    np.testing.assert_allclose(slopes[1:], N * (d - 1) + N * np.diff(g)[1:] / np.diff(np.log(g))[1:], rtol=1e-10)

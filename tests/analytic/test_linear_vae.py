"""analytic.linear_vae (docs/math.md 4.4; Lucas et al. 2019; dai2020 Prop. 2)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

from analytic import linear_vae, ppca

from ._helpers import assert_mc, data_with_spectrum, fd_gradient, matrices, ml_cov, random_orthogonal

HYP = settings(max_examples=30, deadline=None)


@pytest.fixture
def setup():
    rng = np.random.default_rng(30)
    d, K, n = 4, 2, 60
    X = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)
    W = rng.normal(size=(d, K))
    mean = X.mean(0) + 0.3 * rng.normal(size=d)  # off the data mean: exercises S_mu
    V = 0.5 * rng.normal(size=(K, d))
    D = np.array([0.3, 0.8])
    return X, W, mean, 0.7, V, D


def test_elbo_matches_monte_carlo(setup):
    X, W, mean, s2, V, D = setup
    exact = linear_vae.elbo(X, W, mean, s2, V, D)
    rng = np.random.default_rng(31)
    S = 4000
    m = (X - mean) @ V.T                                  # (N, K) encoder means
    z = m + np.sqrt(D) * rng.standard_normal((S,) + m.shape)  # (S, N, K)
    resid = X - z @ W.T - mean
    log_w = (stats.norm.logpdf(resid, 0.0, np.sqrt(s2)).sum(-1) + stats.norm.logpdf(z).sum(-1)
             - stats.norm.logpdf(z, m, np.sqrt(D)).sum(-1))   # (S, N)
    # average over points inside each draw -> S iid estimates of the average ELBO
    assert_mc(log_w.mean(axis=1), exact, label="linear VAE ELBO")


def _pack(V, D):
    return np.concatenate([V.ravel(), np.log(D)])


def test_optimal_encoder_has_zero_gradient_and_is_the_bruteforce_optimum(setup):
    X, W, mean, s2, _, _ = setup
    K, d = W.shape[1], W.shape[0]
    V, D = linear_vae.optimal_encoder(W, s2)

    def f(p):
        return linear_vae.elbo(X, W, mean, s2, p[:K * d].reshape(K, d), np.exp(p[K * d:]))

    p0 = _pack(V, D)
    # Central differences, h = 1e-5: truncation ~1e-10, rounding ~eps |f| / h ~ 1e-10.
    assert np.abs(fd_gradient(f, p0, 1e-5)).max() < 1e-8
    rng = np.random.default_rng(32)
    runs = [optimize.minimize(lambda p: -f(p), rng.normal(size=p0.size), method="BFGS", options={"gtol": 1e-10})
            for _ in range(4)]
    assert all(-r.fun < f(p0) + 1e-12 for r in runs)
    best = min(runs, key=lambda r: r.fun)
    assert -best.fun == pytest.approx(f(p0), abs=1e-10)
    np.testing.assert_allclose(best.x, p0, atol=1e-6)  # argmin resolution ~sqrt(eps)


def test_optimal_elbo_is_ppca_likelihood_minus_gap(setup):
    X, W, mean, s2, _, _ = setup
    V, D = linear_vae.optimal_encoder(W, s2)
    gap = linear_vae.elbo_gap(W, s2)
    assert gap > 0.01  # generic W: non-orthogonal columns
    ll = stats.multivariate_normal(mean, W @ W.T + s2 * np.eye(W.shape[0])).logpdf(X).mean()
    assert linear_vae.elbo(X, W, mean, s2, V, D) == pytest.approx(ll - gap, rel=1e-12)


def test_gap_zero_iff_columns_orthogonal():
    rng = np.random.default_rng(33)
    U = random_orthogonal(rng, 4)[:, :2]
    s2 = 0.5
    W_orth = U * np.array([2.0, 0.7])                    # W^T W diagonal
    P = np.array([[0.0, -1.0], [1.0, 0.0]])              # signed permutation keeps it diagonal
    # The gap is quadratic in the off-diagonal of W^T W, which rounding leaves at ~eps |W|^2,
    # so "zero" means ~1e-32 here; 1e-25 is far below any genuinely correlated posterior.
    assert linear_vae.elbo_gap(W_orth, s2) < 1e-25
    assert linear_vae.elbo_gap(W_orth @ P, s2) < 1e-25
    c, s = np.cos(0.4), np.sin(0.4)
    W_rot = W_orth @ np.array([[c, -s], [s, c]])          # same model, correlated posterior
    gap = linear_vae.elbo_gap(W_rot, s2)
    M = W_rot.T @ W_rot + s2 * np.eye(2)
    assert gap == pytest.approx(0.5 * (np.log(np.diag(M)).sum() - np.linalg.slogdet(M)[1]), rel=1e-12)
    assert gap > 0.01
    # At the PPCA optimum (R = I) the ELBO attains the PPCA maximum.
    X = rng.normal(size=(50, 4)) * [2.0, 1.0, 0.5, 0.3]
    Wf, m, s2f = ppca.fit(X, 2)
    V, D = linear_vae.optimal_encoder(Wf, s2f)
    assert linear_vae.elbo_gap(Wf, s2f) < 1e-25
    assert linear_vae.elbo(X, Wf, m, s2f, V, D) == pytest.approx(ppca.log_likelihood(X, Wf, m, s2f), rel=1e-12)


def test_collapse_threshold_is_top_eigenvalue():
    X = np.random.default_rng(34).normal(size=(40, 3)) * [1.5, 0.5, 0.2]
    assert linear_vae.collapse_threshold(X) == pytest.approx(np.linalg.eigvalsh(ml_cov(X)).max(), rel=1e-13)


@pytest.mark.parametrize("ratio,collapsed", [(1.05, True), (0.95, False)])
def test_collapse_threshold_by_bruteforce(ratio, collapsed):
    # dai2020 Prop. 2 (affine): with gamma fixed, the fully collapsed solution is a global
    # optimum iff gamma >= l_1. Maximise the ELBO over W, V, log D (offset at xbar).
    lam = np.array([2.0, 1.2, 0.4])
    X, _ = data_with_spectrum(np.random.default_rng(35), 30, lam)
    gamma = ratio * linear_vae.collapse_threshold(X)
    d, K = 3, 2
    xbar = X.mean(0)
    e_collapsed = linear_vae.elbo(X, np.zeros((d, K)), xbar, gamma, np.zeros((K, d)), np.ones(K))

    def neg(p):
        return -linear_vae.elbo(X, p[:d * K].reshape(d, K), xbar, gamma, p[d * K:2 * d * K].reshape(K, d),
                                np.exp(p[2 * d * K:]))

    rng = np.random.default_rng(36)
    runs = [optimize.minimize(neg, rng.normal(size=2 * d * K + K), method="BFGS", options={"gtol": 1e-9})
            for _ in range(3)]
    best = -min(r.fun for r in runs)
    if collapsed:
        assert best < e_collapsed + 1e-12
        assert best == pytest.approx(e_collapsed, abs=1e-6)
    else:
        # PPCA with fixed noise: the gain is 0.5 [l/g - 1 - log(l/g)] for the top direction.
        g = lam[0] / gamma
        assert best == pytest.approx(e_collapsed + 0.5 * (g - 1 - np.log(g)), abs=1e-8)


# ---------------------------------------------------------------- properties


@HYP
@given(matrices(4, 2), st.floats(0.05, 3.0))
def test_gap_nonnegative(W, s2):
    assert linear_vae.elbo_gap(W, s2) >= 0.0


@HYP
@given(matrices(3, 2), matrices(2, 3, -1, 1), st.floats(0.05, 2.0), st.floats(0.05, 2.0), st.floats(0.1, 2.0),
       st.integers(0, 2 ** 32 - 1))
def test_elbo_never_exceeds_likelihood(W, V, d1, d2, s2, seed):
    X = np.random.default_rng(seed).normal(size=(15, 3))
    m = X.mean(0)
    e = linear_vae.elbo(X, W, m, s2, V, np.array([d1, d2]))
    assert e <= ppca.log_likelihood(X, W, m, s2) + 1e-12
    Vs, Ds = linear_vae.optimal_encoder(W, s2)
    assert e <= linear_vae.elbo(X, W, m, s2, Vs, Ds) + 1e-12


@HYP
@given(matrices(3, 2), st.floats(0.1, 2.0), st.floats(0.2, 5.0))
def test_gap_and_encoder_scaling(W, s2, c):
    # (W, s2) -> (c W, c^2 s2): same posterior up to the data scale, same gap.
    assert linear_vae.elbo_gap(c * W, c * c * s2) == pytest.approx(linear_vae.elbo_gap(W, s2), rel=1e-8, abs=1e-13)
    V, D = linear_vae.optimal_encoder(W, s2)
    Vc, Dc = linear_vae.optimal_encoder(c * W, c * c * s2)
    np.testing.assert_allclose(Vc, V / c, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(Dc, D, rtol=1e-9)

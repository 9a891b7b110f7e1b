"""analytic.linear_gaussian (docs/math.md 4.1, 4.3; yacoby2020 App. C, Sec. 1)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize, stats

from analytic import linear_gaussian as lg
from analytic import mfg

from ._helpers import assert_mc, matrices, orthogonal_matrices, random_spd

HYP = settings(max_examples=30, deadline=None)


@pytest.fixture
def model():
    rng = np.random.default_rng(10)
    d, K = 3, 2
    return rng.normal(size=(d, K)), rng.normal(size=d), random_spd(rng, d, jitter=0.3)


def sample_joint(rng, W, b, Psi, n):
    z = rng.standard_normal((n, W.shape[1]))
    e = rng.standard_normal((n, W.shape[0])) @ np.linalg.cholesky(Psi).T
    return z, z @ W.T + b + e


# ---------------------------------------------------------------- marginal / posterior


def test_marginal_matches_monte_carlo(model):
    W, b, Psi = model
    mean, cov = lg.marginal(W, b, Psi)
    _, x = sample_joint(np.random.default_rng(11), W, b, Psi, 40_000)
    for i in range(3):
        assert_mc(x[:, i], mean[i], label=f"mean[{i}]")
        for j in range(i, 3):
            assert_mc((x[:, i] - b[i]) * (x[:, j] - b[j]), cov[i, j], label=f"cov[{i},{j}]")


def test_posterior_satisfies_bayes_rule(model):
    # log p(z|x) = log p(x|z) + log p(z) - log p(x), every density from scipy.stats.
    W, b, Psi = model
    rng = np.random.default_rng(12)
    X = rng.normal(size=(4, 3)) * 2
    post_mean, post_cov = lg.posterior(W, b, Psi, X)
    C = W @ W.T + Psi
    for x, m in zip(X, post_mean):
        for z in rng.normal(size=(5, 2)) * 1.5:
            rhs = (stats.multivariate_normal(W @ z + b, Psi).logpdf(x) + stats.norm.logpdf(z).sum()
                   - stats.multivariate_normal(b, C).logpdf(x))
            assert stats.multivariate_normal(m, post_cov).logpdf(z) == pytest.approx(rhs, abs=1e-11)
    single = lg.posterior(W, b, Psi, X[0])
    np.testing.assert_allclose(single.mean, post_mean[0], rtol=1e-14)


def test_posterior_matches_quadrature_for_scalar_latent():
    W = np.array([[0.8], [-1.2], [0.3]])
    b = np.array([0.1, 0.0, -0.4])
    Psi = np.array([0.5, 0.2, 0.9])
    x = np.array([1.0, -0.5, 0.2])

    def joint(z, power):
        return z ** power * stats.multivariate_normal(W[:, 0] * z + b, np.diag(Psi)).pdf(x) * stats.norm.pdf(z)

    # quad on a smooth Gaussian integrand is accurate to ~1e-13 relative; 1e-9 is a safe margin.
    Z0, Z1, Z2 = (integrate.quad(joint, -12, 12, args=(p,), epsabs=0, epsrel=1e-13)[0] for p in range(3))
    m, v = lg.posterior(W, b, Psi, x)
    assert m[0] == pytest.approx(Z1 / Z0, rel=1e-9)
    assert v[0, 0] == pytest.approx(Z2 / Z0 - (Z1 / Z0) ** 2, rel=1e-9)
    assert lg.log_likelihood(x, W, b, Psi) == pytest.approx(np.log(Z0), rel=1e-9)


def test_mutual_information_matches_monte_carlo_and_determinant_lemma(model):
    W, b, Psi = model
    mi = lg.mutual_information(W, Psi)
    C = W @ W.T + Psi
    assert mi == pytest.approx(0.5 * (np.linalg.slogdet(C)[1] - np.linalg.slogdet(Psi)[1]), rel=1e-12)
    z, x = sample_joint(np.random.default_rng(13), W, b, Psi, 40_000)
    log_cond = stats.multivariate_normal(np.zeros(3), Psi).logpdf(x - z @ W.T - b)
    assert_mc(log_cond - stats.multivariate_normal(b, C).logpdf(x), mi, label="I(X;Z)")


def test_log_likelihood_matches_scipy(model):
    W, b, Psi = model
    X = np.random.default_rng(14).normal(size=(7, 3))
    ref = stats.multivariate_normal(b, W @ W.T + Psi).logpdf(X)
    np.testing.assert_allclose(lg.log_likelihood(X, W, b, Psi), ref, rtol=1e-12)
    assert lg.log_likelihood(X[2], W, b, Psi) == pytest.approx(ref[2], rel=1e-12)


def test_noise_cov_forms_agree(model):
    W, b, _ = model
    x = np.array([0.3, -1.0, 2.0])
    diag = np.array([0.4, 0.7, 1.3])
    for a, bb in [(0.5, 0.5 * np.eye(3)), (diag, np.diag(diag))]:
        assert lg.mutual_information(W, a) == lg.mutual_information(W, bb)
        np.testing.assert_array_equal(lg.marginal(W, b, a).cov, lg.marginal(W, b, bb).cov)
        np.testing.assert_allclose(lg.posterior(W, b, a, x).mean, lg.posterior(W, b, bb, x).mean, rtol=1e-15)


# ---------------------------------------------------------------- yacoby2020 pedagogical models


@pytest.mark.parametrize("theta", [0.0, 0.05, -0.2, 0.29])
def test_pedagogical_c1(theta):
    sigma2 = 0.09
    W, Psi, mi = lg.pedagogical_c1(theta, sigma2)
    # Same marginal N(0, sigma2) for every admissible theta (non-identifiability).
    assert lg.marginal(W, [0.0], Psi).cov[0, 0] == pytest.approx(sigma2, rel=1e-15)
    # App. C.1 Eq. 15 and Eq. 16 against the general formulas.
    assert mi == pytest.approx(lg.mutual_information(W, Psi), rel=1e-12, abs=1e-15)
    assert mi == pytest.approx(0.5 * np.log(sigma2 / (sigma2 - theta ** 2)), rel=1e-12, abs=1e-15)
    m, v = lg.posterior(W, [0.0], Psi, [0.7])
    assert m[0] == pytest.approx(theta * 0.7 / sigma2, rel=1e-12, abs=1e-15)
    assert v[0, 0] == pytest.approx((sigma2 - theta ** 2) / sigma2, rel=1e-12)


def test_pedagogical_c1_information_grows_without_bound():
    sigma2 = 1.0
    mis = [lg.pedagogical_c1(np.sqrt(sigma2 * (1 - 10.0 ** -k)), sigma2).mutual_information for k in (1, 4, 8)]
    np.testing.assert_allclose(mis, [0.5 * k * np.log(10) for k in (1, 4, 8)], rtol=1e-7)


@pytest.mark.parametrize("B", [[0.0, 0.0], [0.006, 0.006], [0.009, 0.001], [0.0099, 0.0]])
def test_pedagogical_c2_same_marginal_for_every_B(B):
    A, sigma2 = lg.LINEAR_JTEX_A, lg.LINEAR_JTEX_SIGMA2
    W, Psi, mi = lg.pedagogical_c2(A, B, sigma2)
    np.testing.assert_allclose(W @ W.T, A @ A.T + np.diag(B), rtol=1e-13)
    assert np.allclose(np.triu(W, 1), 0.0)
    np.testing.assert_allclose(lg.marginal(W, np.zeros(2), Psi).cov, A @ A.T + sigma2 * np.eye(2), rtol=1e-13)
    # Eq. 22 vs 0.5 log det(I + W^T Psi^-1 W)
    assert mi == pytest.approx(lg.mutual_information(W, Psi), rel=1e-12)
    assert lg.pedagogical_c2(A, np.diag(B), sigma2).mutual_information == mi


def test_pedagogical_c2_information_monte_carlo():
    W, Psi, mi = lg.pedagogical_c2(lg.LINEAR_JTEX_A, lg.LINEAR_JTEX_B, lg.LINEAR_JTEX_SIGMA2)
    z, x = sample_joint(np.random.default_rng(15), W, np.zeros(2), Psi, 20_000)
    C = W @ W.T + Psi
    samples = stats.multivariate_normal(np.zeros(2), Psi).logpdf(x - z @ W.T) - stats.multivariate_normal(
        np.zeros(2), C).logpdf(x)
    assert_mc(samples, mi, label="I_B")


# ---------------------------------------------------------------- MLE + posterior matching (docs/math.md 4.3)


def test_vae_objective_terms_match_independent_routes(model):
    W, _, Psi = model
    rng = np.random.default_rng(16)
    S = random_spd(rng, 3, jitter=0.5)
    mle, pm = lg.vae_objective(W, Psi, S)
    C = W @ W.T + Psi
    # MLE term: KL(N(0,S) || N(0,C)) by Monte Carlo.
    x = rng.standard_normal((40_000, 3)) @ np.linalg.cholesky(S).T
    p_data, p_model = stats.multivariate_normal(np.zeros(3), S), stats.multivariate_normal(np.zeros(3), C)
    assert_mc(p_data.logpdf(x) - p_model.logpdf(x), mle, label="KL(p||p_theta)")
    # PM term: brute-force the best diagonal fit to the posterior N(., P^-1).
    post_cov = lg.posterior(W, np.zeros(3), Psi, np.zeros(3)).cov
    Pinv = np.linalg.inv(post_cov)

    def kl(logv):  # KL(N(0, diag v) || N(0, post_cov)), means matched
        v = np.exp(logv)
        return 0.5 * (np.diag(Pinv) @ v - 2 + np.linalg.slogdet(post_cov)[1] - logv.sum())

    best = min((optimize.minimize(kl, s, method="BFGS", options={"gtol": 1e-12}) for s in rng.normal(size=(4, 2))),
               key=lambda r: r.fun)
    assert best.fun == pytest.approx(pm, abs=1e-12)
    # Whole decomposition: -E_p ELBO(q*) - H(p) = mle + pm, ELBO sampled with z ~ q*(z|x).
    mean_post = lg.posterior(W, np.zeros(3), Psi, x).mean
    var_q = mfg.best_fit(np.zeros(2), post_cov).var
    z = mean_post + np.sqrt(var_q) * rng.standard_normal(mean_post.shape)
    elbo = (stats.multivariate_normal(np.zeros(3), Psi).logpdf(x - z @ W.T) + stats.norm.logpdf(z).sum(axis=1)
            - stats.norm.logpdf(z, mean_post, np.sqrt(var_q)).sum(axis=1))
    entropy = 0.5 * np.linalg.slogdet(2 * np.pi * np.e * S)[1]
    assert_mc(-elbo - entropy, mle + pm, label="L = -ELBO - H")


def test_linear_jtex_ground_truth_reproduces_0532():
    # yacoby2020 Sec. 1: L(theta_GT, phi_GT) = 0.532, with the data distribution the ground
    # truth's own marginal N(0, A A^T + sigma2 I), so the MLE term vanishes.
    A, B, s2 = lg.LINEAR_JTEX_A, lg.LINEAR_JTEX_B, lg.LINEAR_JTEX_SIGMA2
    S = A @ A.T + s2 * np.eye(2)
    mle, pm = lg.c2_objective(A, B, s2, S)
    assert abs(mle) < 1e-14
    assert round(mle + pm, 3) == 0.532


def test_linear_jtex_learned_optimum_reproduces_0196():
    # yacoby2020 Sec. 1: minimising L over A (B, sigma2 fixed) reaches L(theta*, phi*) = 0.196.
    A_gt, B, s2 = lg.LINEAR_JTEX_A, lg.LINEAR_JTEX_B, lg.LINEAR_JTEX_SIGMA2
    S = A_gt @ A_gt.T + s2 * np.eye(2)

    def L(a):
        return sum(lg.c2_objective(a.reshape(2, 2), B, s2, S))

    rng = np.random.default_rng(17)
    starts = [A_gt.ravel()] + list(rng.normal(size=(7, 4)))
    runs = [optimize.minimize(L, x0, method="BFGS", options={"gtol": 1e-10}) for x0 in starts]
    values = np.array([r.fun for r in runs])
    best = values.min()
    assert round(best, 3) == 0.196
    # every start ends at the same optimum value (the landscape has one optimal level)
    assert np.all(values < best + 1e-8)
    assert best < L(A_gt.ravel()) - 0.3
    # the optimum trades data fit for a nearly diagonal posterior
    mle, pm = lg.c2_objective(runs[int(values.argmin())].x.reshape(2, 2), B, s2, S)
    assert mle > 0.1 and pm < 0.05


# ---------------------------------------------------------------- properties


@HYP
@given(matrices(3, 2), st.floats(0.05, 3.0))
def test_mutual_information_nonnegative(W, s2):
    mi = lg.mutual_information(W, s2)
    assert mi >= 0.0
    if np.abs(W).max() == 0:
        assert mi == 0.0


@HYP
@given(matrices(3, 2), orthogonal_matrices(2), orthogonal_matrices(3), st.floats(0.1, 2.0))
def test_latent_rotation_and_data_transform_invariances(W, R, T, s2):
    b = np.array([0.5, -1.0, 0.2])
    Psi = s2 * np.diag([1.0, 2.0, 0.5])
    x = np.array([[1.0, 0.3, -0.7], [0.0, 2.0, 1.0]])
    # W -> W R: same marginal, same likelihood, same information; posterior mean rotates.
    m0, c0 = lg.marginal(W, b, Psi)
    np.testing.assert_allclose(lg.marginal(W @ R, b, Psi).cov, c0, atol=1e-12)
    np.testing.assert_allclose(lg.log_likelihood(x, W @ R, b, Psi), lg.log_likelihood(x, W, b, Psi), rtol=1e-10)
    assert lg.mutual_information(W @ R, Psi) == pytest.approx(lg.mutual_information(W, Psi), rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(lg.posterior(W @ R, b, Psi, x).mean, lg.posterior(W, b, Psi, x).mean @ R,
                               atol=1e-10)
    # x -> T x (invertible): information unchanged; log-likelihood shifts by -log|det T| = 0.
    TPsiT = T @ Psi @ T.T
    assert lg.mutual_information(T @ W, TPsiT) == pytest.approx(lg.mutual_information(W, Psi), rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(lg.log_likelihood(x @ T.T, T @ W, T @ b, TPsiT), lg.log_likelihood(x, W, b, Psi),
                               rtol=1e-9)


@HYP
@given(matrices(3, 2), st.floats(0.1, 2.0), st.floats(0.2, 5.0))
def test_scaling_laws(W, s2, c):
    # x -> c x with W -> c W, Psi -> c^2 Psi: same information, log-likelihood - d log c,
    # posterior unchanged.
    b, x = np.array([1.0, 0.0, -1.0]), np.array([0.3, -0.2, 0.9])
    assert lg.log_likelihood(c * x, c * W, c * b, c * c * s2) == pytest.approx(
        lg.log_likelihood(x, W, b, s2) - 3 * np.log(c), rel=1e-10, abs=1e-10)
    assert lg.mutual_information(c * W, c * c * s2) == pytest.approx(lg.mutual_information(W, s2), rel=1e-9,
                                                                     abs=1e-12)
    np.testing.assert_allclose(lg.posterior(c * W, c * b, c * c * s2, c * x).mean, lg.posterior(W, b, s2, x).mean,
                               rtol=1e-9, atol=1e-12)


@HYP
@given(matrices(2, 2, -1.5, 1.5), st.floats(1e-3, 0.0099), st.floats(1e-3, 0.0099))
def test_c2_marginal_independent_of_B_and_terms_nonnegative(A, b1, b2):
    s2 = 0.01
    W, Psi, mi = lg.pedagogical_c2(A, [b1, b2], s2)
    np.testing.assert_allclose(W @ W.T + Psi, A @ A.T + s2 * np.eye(2), atol=1e-12)
    assert mi >= 0
    mle, pm = lg.c2_objective(A, [b1, b2], s2, A @ A.T + s2 * np.eye(2))
    assert pm >= 0 and abs(mle) < 1e-9

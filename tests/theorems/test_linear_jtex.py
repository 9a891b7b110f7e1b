"""yacoby2020 Sec. 1 and App. C.1-C.2: the ELBO's global optimum trades p(x) for simple posteriors.

LinearJTEx (check g). The learned model is yacoby2020's own family, x = chol(A A^T + B) z + e,
e ~ N(0, sigma2 I - B), B fixed, A learned (``CholeskyLinear`` decoder, affine mean-field
encoder). The Cholesky parameterisation matters: with a free linear decoder W the VAE could
rotate the latent space (W -> W R) until the posterior is diagonal at no cost in p(x), and
the phenomenon disappears (L = 0 is then attainable: W W^T = S - (sigma2 - B) I). With it,
the VAE's optimum A* fits the data covariance worse (MLE term > 0) to make the posterior
nearly diagonal (posterior-matching term smaller), for a lower total
L = KL(p || p_theta) + E KL(q || p_theta(z|x)) than the ground truth's (yacoby2020: 0.532 at
the truth, 0.196 at the learned optimum). The analytic side is
``analytic.linear_gaussian.c2_objective``; analytic has no arg-min of it, so the test
minimises that closed form numerically (scipy BFGS, several starts).

C.1. x = theta z + e, e ~ N(0, sigma2 - theta^2): every theta^2 < sigma2 gives the same
p(x) = N(0, sigma2) while I(X; Z) = 0.5 log(sigma2 / (sigma2 - theta^2)) grows with theta.
For several theta the encoder is trained against the frozen decoder: the trained ELBOs are the
same (= log p(x), the 1-D posterior is Gaussian so the mean-field fit is exact) while the
encoders' KL to the prior, E_x KL(q(z|x) || p(z)) = I(X; Z) at the exact posterior, follows
the closed form.
"""
import numpy as np
import pytest
from scipy import optimize, stats

from analytic import linear_gaussian as lg
from analytic import mfg
from refvae import GaussianVAE, Linear, datasets
from refvae.distributions import kl_std_normal
from refvae.layers import CholeskyLinear
from tests.theorems.helpers import with_values
from refvae.train import fit_stages
from refvae.metrics.likelihood import objective_estimate

SIGMA2, B, A_GT = lg.LINEAR_JTEX_SIGMA2, lg.LINEAR_JTEX_B, lg.LINEAR_JTEX_A
N = 500                  # yacoby2020's training-set size


# ----------------------------------------------------------------------------- LinearJTEx
RESTARTS = 3
# Two Monte Carlo samples per point: the objective is flat along one direction of A A^T
# (see below), where one sample's gradient noise slows convergence markedly. No iterate
# averaging: L depends on A only through A A^T, so A drifts freely along rotations A Q and an
# average of A would shrink A A^T.
SCHEDULE = [(0.03, 1000), (0.01, 1000), (0.003, 1000), (0.001, 1500), (0.0003, 1500)]


def c2_L(A, data_cov):
    return sum(lg.c2_objective(A, B, SIGMA2, data_cov))


def minimise_L(data_cov, starts=5):
    """Global minimum of analytic's closed-form L over A (BFGS from several random starts)."""
    runs = [optimize.minimize(lambda a: c2_L(a.reshape(2, 2), data_cov), np.random.default_rng(i).standard_normal(4),
                              method="BFGS", options={"gtol": 1e-10}) for i in range(starts)]
    best = min(runs, key=lambda res: res.fun)
    return best.fun, best.x.reshape(2, 2)


@pytest.fixture(scope="module")
def jtex():
    ds = datasets.linear_jtex(N, seed=0)
    X = np.asarray(ds.x)
    # The model has no offset, so L's data covariance is the second moment about 0: then
    # mean_n -log p_theta(x_n) = KL(N(0, M2) || p_theta) + H(N(0, M2)) exactly.
    M2 = X.T @ X / N
    model = GaussianVAE(Linear(2, 4), CholeskyLinear(2, B), 2, 2, obs="fixed", sigma2=SIGMA2 - B[0])
    params = model.init(np.random.default_rng(0), restarts=RESTARTS)
    params, _ = fit_stages(model, params, X, stages=SCHEDULE, seed=1, n_samples=2)
    L_star, A_star = minimise_L(M2)
    return model, params, X, M2, L_star, A_star


def test_analytic_reproduces_seed_004_numbers():
    population = A_GT @ A_GT.T + SIGMA2 * np.eye(2)
    assert round(c2_L(A_GT, population), 3) == 0.532
    assert round(minimise_L(population)[0], 3) == 0.196


# The two checks of the trained LinearJTEx VAE are slow-only (~8 s CPU: the fixture's 6000 steps, for the
# 3e-4-nat tolerance on L). The default suite keeps them: the ``linearjtex_objective`` claim of
# tests/verify/test_claims.py trains the same model (2 restarts, n = 500) and requires, in every restart,
# the learned L at the closed-form optimum's (within 1% of the truth-optimum gap, 3.3e-3 nats), below the
# truth's, an MLE term > 0 (the misfit), and refvae's Monte Carlo loss with its own encoder at the same L
# (4 standard errors); tests/test_examples.py ``test_06_linear_jtex`` checks the trained L within 0.02.
@pytest.mark.slow
def test_vae_prefers_a_model_that_misfits_the_data(jtex):
    """Slow: the fast check is the ``linearjtex_objective`` claim (see above)."""
    model, params, X, M2, L_star, A_star = jtex
    L_gt = c2_L(A_GT, M2)
    G_star = A_star @ A_star.T
    for r in range(RESTARTS):
        A = np.asarray(params["dec.A"][r])
        L = c2_L(A, M2)
        # The learned A reaches the analytic optimum of L. Measured L - L* <= 6.7e-5 (3 data sets
        # x 3 restarts); tolerance 3e-4 nats, 1/1000 of the gap to the ground truth's L (0.33).
        assert -1e-9 <= L - L_star < 3e-4, f"restart {r}: L = {L:.5f} vs analytic optimum {L_star:.5f}"
        assert L < L_gt - 0.3, f"restart {r}: L = {L:.4f} not below the ground truth's {L_gt:.4f}"
        # A A^T matches the optimum's. L is flat along (A A^T)_22: moving it by 0.1 from the
        # optimum raises L by only 3.3e-4, so (A A^T)_22 is known only to ~0.1 from an L within
        # tolerance (measured |error| <= 0.049); 0.15 is still 1/4 of the distance to the
        # ground truth's A A^T (0.70 in the off-diagonal entry).
        G = A @ A.T
        assert np.abs(G - G_star).max() < 0.15, f"restart {r}: A A^T =\n{G}\nvs optimum\n{G_star}"
        # ... and it fails to reproduce the data: model covariance A A^T + sigma2 I vs M2 (measured
        # off-diagonal miss >= 0.63, MLE term >= 0.14 nats against 0 for the ground truth)
        mle = lg.c2_objective(A, B, SIGMA2, M2).mle_term
        assert abs((G + SIGMA2 * np.eye(2) - M2)[0, 1]) > 0.5, f"restart {r}: off-diagonal reproduced"
        assert mle > 0.1, f"restart {r}: MLE term {mle:.4f}: the learned model fits p(x)"


@pytest.mark.slow
def test_refvae_loss_is_seed_004_L_plus_data_entropy(jtex):
    """refvae's -ELBO minus H(N(0, M2)) is L(theta, phi) of yacoby2020 Eq. 2, exactly in expectation.

    Slow: the fast check is the ``linearjtex_objective`` claim ("learned L (own encoder) = optimum L",
    refvae's Monte Carlo loss against the closed form; see above).

    With the learned (not the optimal) encoder, L = MLE term + E_x KL(q_phi || p_theta(z|x));
    the KL comes from analytic (``mfg.kl_diag`` against ``posterior``), the MLE term from
    ``c2_objective``. Bound: 4 Monte Carlo standard errors. The learned encoder is also the best
    mean-field one: its KL exceeds the closed-form minimum by < 1e-3 (measured <= 3.9e-4; no
    iterate averaging here, see SCHEDULE).
    """
    model, params, X, M2, L_star, A_star = jtex
    H = stats.multivariate_normal(mean=np.zeros(2), cov=M2).entropy()
    mc, se = objective_estimate(model, params, X, seed=3, replicates=32, n_samples=16)
    mu, lv = model.encode(params, X)
    for r in range(RESTARTS):
        A = np.asarray(params["dec.A"][r])
        model_r = lg.pedagogical_c2(A, B, SIGMA2)
        post = lg.posterior(model_r.W, np.zeros(2), model_r.noise_cov, X)
        kl = np.mean([mfg.kl_diag(mu[r, n], np.exp(lv[r, n]), post.mean[n], post.cov) for n in range(N)])
        terms = lg.c2_objective(A, B, SIGMA2, M2)
        assert -1e-12 <= kl - terms.posterior_matching_term < 1e-3
        assert se[r] < 1e-2
        assert abs(mc[r] - H - (terms.mle_term + kl)) < 4 * se[r], \
            f"restart {r}: refvae - H = {mc[r] - H:.5f} +- {se[r]:.1e} vs L = {terms.mle_term + kl:.5f}"


# ------------------------------------------------------------------------------------- C.1
THETAS = (0.0, 0.05, 0.08, 0.095)       # theta^2 < sigma2 = 0.01


@pytest.fixture(scope="module")
def c1():
    X = np.asarray(datasets.pedagogical_c1(N, seed=0, theta=0.05, sigma2=SIGMA2).x)
    R = len(THETAS)
    # one restart per theta: decoder W = theta, noise variance sigma2 - theta^2 (frozen)
    model = GaussianVAE(Linear(1, 2), Linear(1, 1), 1, 1, obs="scalar")
    params = with_values(model.init(np.random.default_rng(0), restarts=R),
                         dec__W=np.array(THETAS).reshape(R, 1, 1), dec__b=np.zeros((R, 1)),
                         dec__obs_logvar=np.log(SIGMA2 - np.array(THETAS) ** 2).reshape(R, 1))
    params, _ = fit_stages(model, params, X, stages=[(0.03, 500), (0.003, 500), (0.001, 1000)], seed=1,
                      only=("enc.",), average=1000)
    return model, params, X


def test_c1_same_likelihood_for_every_theta(c1):
    model, params, X = c1
    mc, se = objective_estimate(model, params, X, seed=4, replicates=32, n_samples=16)
    mu, lv = model.encode(params, X)
    log_px = []
    for r, theta in enumerate(THETAS):
        m = lg.pedagogical_c1(theta, SIGMA2)
        np.testing.assert_allclose(lg.marginal(m.W, [0.0], m.noise_cov).cov, [[SIGMA2]], rtol=1e-12)
        log_px.append(lg.log_likelihood(X, m.W, [0.0], m.noise_cov))
        post = lg.posterior(m.W, [0.0], m.noise_cov, X)
        kl = np.mean([mfg.kl_diag(mu[r, n], np.exp(lv[r, n]), post.mean[n], post.cov) for n in range(N)])
        # the 1-D posterior is Gaussian: the trained encoder matches it (measured KL <= 1.1e-5 over 3 data
        # sets; twice as many steps as here gave <= 4.3e-6)
        assert kl < 1e-4, f"theta={theta}: E KL(q || p(z|x)) = {kl:.2e}"
        # so the refvae objective is -log p(x), the same for every theta (4 MC standard errors)
        assert abs(mc[r] - (-log_px[-1].mean() + kl)) < 4 * se[r] + 1e-12
    np.testing.assert_allclose(log_px, np.broadcast_to(log_px[0], (len(THETAS), N)), rtol=1e-12)
    # refvae's objectives agree across theta: independent Monte Carlo estimates of -log p(x) + KL,
    # the KLs < 1e-4 (above)
    assert np.ptp(mc) < 4 * np.sqrt(2) * se.max() + 1e-4


def test_c1_mutual_information_follows_closed_form(c1):
    model, params, X = c1
    mu, lv = model.encode(params, X)
    learned = np.asarray(kl_std_normal(mu, lv)[0])               # (R, N): KL(q(z|x_n) || p(z))
    mi = np.array([lg.pedagogical_c1(t, SIGMA2).mutual_information for t in THETAS])
    assert np.all(np.diff(mi) > 0.1)                              # 0, 0.14, 0.51, 1.16 nats
    for r, theta in enumerate(THETAS):
        m = lg.pedagogical_c1(theta, SIGMA2)
        post = lg.posterior(m.W, [0.0], m.noise_cov, X)
        exact = np.asarray(kl_std_normal(post.mean, np.log(np.diag(post.cov)) + 0 * post.mean)[0])
        # The learned encoder's KL to the prior is the exact posterior's on this sample. It is first
        # order in the encoder's slope error (unlike KL(q || p(z|x)), second order): measured
        # |difference| <= 1.6e-3 nats over 3 data sets; tolerance 5e-3 (1% of the 0.51 nats at 0.08).
        assert abs(learned[r].mean() - exact.mean()) < 5e-3, f"theta={theta}"
        # and I(X; Z) = E_x KL(p(z|x) || p(z)): the sample mean estimates the closed form within
        # 4 standard errors (finite-sample error of the N data points)
        se = exact.std(ddof=1) / np.sqrt(N)
        assert abs(exact.mean() - mi[r]) < 4 * se + 1e-12, \
            f"theta={theta}: E KL = {exact.mean():.4f} vs I = {mi[r]:.4f} (se {se:.1e})"
        assert abs(learned[r].mean() - mi[r]) < 4 * se + 5e-3

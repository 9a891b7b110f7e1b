"""Semi-supervised M2 VAE (docs/math.md 2.2): gradients of every part, the bounds against exact
log p(x) / log p(x, y) (closed form and quadrature), training on partly labelled data,
sampling, bad inputs."""
import math

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from refvae import gradcheck
from refvae.distributions import gaussian_log_prob
from refvae.m2 import M2, PackedM2
from refvae.objectives import OBS_MODES
from refvae.optim import Adam
from refvae.train import fit
from tests.helpers import mean_and_se, perturbed_init

seeds = st.integers(0, 2**32 - 1)
restarts = st.sampled_from([None, 2])




# -- gradients ------------------------------------------------------------------------
case = dict(seed=seeds, obs=st.sampled_from(OBS_MODES), R=restarts, S=st.sampled_from([None, 1, 3]),
            C=st.integers(2, 3), d=st.integers(1, 3), K=st.integers(1, 2), B=st.integers(1, 4),
            hidden=st.sampled_from([(), (3,)]), p_scale=st.floats(0.05, 0.6), x_scale=st.floats(0.2, 2.5))


# Every gradient test below also runs these cases, one per observation mode, each with every optional
# axis of M2 present (restarts, several samples, three classes, B = 4 points, which the seeds make a
# mix of labelled and unlabelled ones; hidden layers are left to the random examples, the layers'
# own tests check them): a bug confined to one mode or one axis is caught on every run, not only
# when the random draws reach it, so a few random examples suffice besides (they were 12-25 per
# test, ~2.5x the time). Checked with deliberate backward-pass mutations of M2 (entropy term of U
# dropped; KL log-variance gradient scaled by 0.9; the 1/S of the sample mean dropped; labelled IWAE
# weights normalised over (y, s) instead of s; unlabelled IWAE weights normalised over s instead of
# (y, s); the classifier term's gradient applied to unlabelled rows, or its pi part scaled by 0.99;
# the decoder-output log-variance or the vector noise gradient off by 1%): these cases alone make
# each test fail on every mutation that 20 random examples of that test caught at least once (checked
# again with hypothesis running the explicit examples only: every mutation fails every test whose
# objective it touches), so the random examples were cut again, from 6 to 3 (4 to 2 for the shared
# family): they add shapes (hidden layers, one class fewer, single points), not mode coverage.
HARD = [dict(seed=s, obs=obs, R=2, S=3, C=3, d=2, K=1, B=4, hidden=(), p_scale=0.4, x_scale=1.0)
        for s, obs in enumerate(OBS_MODES)]


def hard_cases(**extra):
    """Decorator adding every ``HARD`` case as a hypothesis ``example``; ``extra`` gives the test's own
    arguments, a value for every case or a tuple with one value per case."""
    def add(test):
        for i, case in enumerate(HARD):
            own = {k: (v[i] if isinstance(v, tuple) else v) for k, v in extra.items()}
            test = example(**case, **own)(test)
        return test
    return add


def check_m2_gradient(bound, labelling, alpha, gamma, seed, obs, R, S, C, d, K, B, hidden, p_scale, x_scale,
                      posterior="conditional"):
    """Gradient check of M2.value_and_grad; labelling: "labelled", "unlabelled" or "mixed"."""
    rng = np.random.default_rng(seed)
    prior = rng.dirichlet(np.ones(C) * 3.0)
    model = M2.from_sizes(d, K, C, hidden, "tanh", obs=obs, sigma2=0.6, alpha=alpha, gamma=gamma,
                          prior=prior, bound=bound, unlabelled_posterior=posterior)
    params = perturbed_init(model, rng, R, p_scale)
    x = x_scale * rng.standard_normal((B, d))
    labels = {"labelled": rng.integers(0, C, B), "unlabelled": np.full(B, -1),
              "mixed": rng.integers(-1, C, B)}[labelling]
    noise = rng.standard_normal(model.noise_shape(params, B, S))
    fun = lambda p: model.value_and_grad(p, x, labels, noise)
    gradcheck.assert_grad(fun, params, rtol=1e-6)
    return model, params, fun


@settings(max_examples=3, deadline=None)
@given(gamma=st.floats(0.1, 3.0), **case)
@hard_cases(gamma=1.3)
def test_labelled_bound_gradient(gamma, **kw):
    """-gamma sum L(x, y) / B: every point labelled, alpha = 0 (the classifier gets no gradient)."""
    _, params, fun = check_m2_gradient("elbo", "labelled", 0.0, gamma, **kw)
    assert all(not fun(params)[1][k].any() for k in params if k.startswith("cls."))


@settings(max_examples=3, deadline=None)
@given(**case)
@hard_cases()
def test_unlabelled_bound_gradient(**kw):
    """-sum U(x) / B, U = sum_y q(y|x) L(x, y) + H(q(y|x)): every point unlabelled."""
    check_m2_gradient("elbo", "unlabelled", 1.0, 1.0, **kw)


@settings(max_examples=3, deadline=None)
@given(alpha=st.floats(0.1, 3.0), **case)
@hard_cases(alpha=1.3)
def test_classifier_term_gradient(alpha, **kw):
    """-alpha sum log q(y|x) / B alone (gamma = 0, all labelled): only the classifier has a gradient."""
    _, params, fun = check_m2_gradient("elbo", "labelled", alpha, 0.0, **kw)
    grads = fun(params)[1]
    assert all(not grads[k].any() for k in params if not k.startswith("cls."))
    assert any(grads[k].any() for k in params if k.startswith("cls."))


@settings(max_examples=3, deadline=None)
@given(**case)
@hard_cases()
def test_iwae_unlabelled_bound_gradient(**kw):
    """-sum U_S(x) / B (yacoby2021 Sec. 5.2), every point unlabelled."""
    check_m2_gradient("iwae", "unlabelled", 1.0, 1.0, **kw)


@settings(max_examples=3, deadline=None)
@given(bound=st.sampled_from(["elbo", "iwae"]), alpha=st.floats(0.0, 2.0), gamma=st.floats(0.0, 2.0), **case)
@hard_cases(bound=("elbo", "iwae", "elbo", "iwae"), alpha=0.7, gamma=1.3)
def test_full_objective_gradient(bound, alpha, gamma, **kw):
    """-J / B on a mix of labelled and unlabelled points, both bounds; the terms sum to the loss."""
    model, params, fun = check_m2_gradient(bound, "mixed", alpha, gamma, **kw)
    rng = np.random.default_rng(kw["seed"])
    B, d = kw["B"], kw["d"]
    x, labels = rng.standard_normal((B, d)), rng.integers(-1, model.n_classes, B)
    noise = rng.standard_normal(model.noise_shape(params, B, kw["S"]))
    loss, _, terms = model.value_and_grad(params, x, labels, noise, with_terms=True)
    np.testing.assert_allclose(terms["unlabelled"] + terms["labelled"] + terms["classifier"], loss, rtol=1e-13)


# -- the shared unlabelled posterior q(z|x) (unlabelled_posterior="shared") ---------------------
@settings(max_examples=2, deadline=None)
@given(bound=st.sampled_from(["elbo", "iwae"]), **case)
@hard_cases(bound=("elbo", "iwae", "elbo", "iwae"))
def test_shared_unlabelled_bound_gradient(bound, **kw):
    """-sum U(x) / B with one q(z|x) (encoder label block 0) for every class: every point unlabelled,
    both bounds."""
    check_m2_gradient(bound, "unlabelled", 1.0, 1.0, posterior="shared", **kw)


@settings(max_examples=2, deadline=None)
@given(bound=st.sampled_from(["elbo", "iwae"]), alpha=st.floats(0.0, 2.0), gamma=st.floats(0.0, 2.0), **case)
@hard_cases(bound=("iwae", "elbo", "iwae", "elbo"), alpha=0.7, gamma=1.3)
def test_shared_full_objective_gradient(bound, alpha, gamma, **kw):
    """-J / B with the shared family on a mix of labelled (q(z|x, y)) and unlabelled (q(z|x)) points."""
    check_m2_gradient(bound, "mixed", alpha, gamma, posterior="shared", **kw)


def _families(bound="elbo", **kw):
    return [M2.from_sizes(2, 1, 3, (4,), "tanh", obs="scalar", sigma2=0.5, bound=bound, unlabelled_posterior=f, **kw)
            for f in ("conditional", "shared")]


@pytest.mark.parametrize("bound", ["elbo", "iwae"])
def test_families_differ_only_in_the_unlabelled_posterior(bound):
    """Labelled points: both families give the same loss and gradient. Unlabelled points: they differ,
    unless the encoder ignores its label input (then q(z|x, y) = q(z|x) and the families coincide)."""
    cond, shared = _families(bound, n_samples=2 if bound == "iwae" else None)
    rng = np.random.default_rng(0)
    params = perturbed_init(cond, rng, 2, 0.4)
    x = rng.standard_normal((6, 2))
    noise = rng.standard_normal(cond.noise_shape(params, 6))
    labelled, mixed = np.array([0, 1, 2, 2, 1, 0]), np.array([0, -1, 2, -1, -1, 1])
    a, b = cond.value_and_grad(params, x, labelled, noise), shared.value_and_grad(params, x, labelled, noise)
    np.testing.assert_array_equal(a[0], b[0])
    assert all(np.array_equal(a[1][k], b[1][k]) for k in params)
    assert np.all(np.abs(cond.value_and_grad(params, x, mixed, noise)[0]
                         - shared.value_and_grad(params, x, mixed, noise)[0]) > 1e-6)
    blind = {**params, "enc.0.W": params["enc.0.W"].copy()}
    blind["enc.0.W"][:, 2:, :] = 0.0                                     # the encoder's rows for onehot y
    np.testing.assert_allclose(cond.value_and_grad(blind, x, mixed, noise)[0],
                               shared.value_and_grad(blind, x, mixed, noise)[0], rtol=1e-13)


def test_shared_bounds_exact_on_linear_gaussian():
    """Linear-Gaussian M2 (see ``linear_m2``): the shared q(z|x) is the encoder at label block 0,
    N(x A, 1). log p(x | y, z) is quadratic in z, so noise +-1 averages it exactly and
    U(x) = sum_y pi_y [E_q log p(x|y,z) + log p(y)] - KL(q || N(0, 1)) + H(pi) in closed form;
    the labelled bound is the conditional family's (= log p(x, y))."""
    model, params, log_joint = linear_m2("elbo")
    shared = M2(model.classifier, model.encoder, model.decoder, 2, 1, 2, obs="fixed", sigma2=0.5,
                prior=model.prior, unlabelled_posterior="shared")
    x = 1.5 * np.random.default_rng(3).standard_normal((7, 2))
    noise = np.ones(shared.noise_shape(params, 7, 2))
    noise[1] = -1.0
    out = shared.bounds(params, x, noise)
    np.testing.assert_allclose(out["labelled"], log_joint(x), rtol=1e-12)
    mu, lv = shared.encode(params, x, None)
    np.testing.assert_allclose(mu, x @ params["enc.0.W"][:2, :1], rtol=1e-12)
    np.testing.assert_allclose(lv, 0.0, atol=1e-15)
    w, b = params["dec.0.W"][:1], params["dec.0.W"][1:]                   # z row (1, d), class offsets (C, d)
    s2 = np.exp(lv)
    resid = ((x[:, None, :] - mu[:, None, :] * w[None] - b[None]) ** 2).sum(-1)      # (B, C)
    e_log_px = -0.5 * (resid + s2 * (w ** 2).sum()) / 0.5 - math.log(2 * math.pi * 0.5)
    kl = 0.5 * (mu[:, 0] ** 2 + s2[:, 0] - 1.0 - lv[:, 0])
    log_pi = out["log_q_y"]
    pi = np.exp(log_pi)
    want = (pi * (e_log_px + np.log(model.prior))).sum(1) - kl - (pi * log_pi).sum(1)
    np.testing.assert_allclose(out["unlabelled"], want, rtol=1e-12)
    # and it is strictly below log p(x): one Gaussian cannot fit the two-class posterior
    assert np.all(out["unlabelled"] < logsumexp(log_joint(x), axis=1) - 1e-3)


def test_shared_family_arguments():
    cond, shared = _families()
    params = cond.init(0)
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="y is required: with unlabelled_posterior='conditional'"):
        cond.encode(params, x, None)
    mu, lv = shared.encode(params, x, None)
    assert mu.shape == lv.shape == (3, 1)
    assert not np.allclose(mu, shared.encode(params, x, 0)[0])
    with pytest.raises(ValueError, match=r"unlabelled_posterior must be one of \('conditional', 'shared'\), got 'joint'"):
        M2.from_sizes(2, 1, 3, (4,), unlabelled_posterior="joint")


# -- exact bounds on a linear-Gaussian M2 -----------------------------------------------
def linear_m2(bound, sigma2=0.5, seed=0):
    """M2 with affine networks set to the exact posteriors of a linear-Gaussian model.

    x | y, z ~ N(z w + b_y, sigma2 I) with K = 1, so p(x | y) = N(b_y, w^T w + sigma2 I);
    p(z | x, y) is Gaussian with a mean affine in (x, onehot y) and a constant variance, and
    log p(y | x) is affine in x (shared covariance): affine networks represent both exactly.
    Returns (model, params, log_joint) with log_joint(x) -> log p(x, y) of shape (B, C).
    """
    rng = np.random.default_rng(seed)
    d, C = 2, 2
    w = rng.standard_normal((1, d))
    bs = np.array([[-1.5, 0.5], [1.0, -0.8]])             # class offsets b_y (C, d)
    prior = np.array([0.3, 0.7])
    P = 1.0 + (w @ w.T)[0, 0] / sigma2                    # posterior precision of z
    A = w.T / (sigma2 * P)                                # posterior mean = (x - b_y) A
    Sigma = w.T @ w + sigma2 * np.eye(d)
    Si = np.linalg.inv(Sigma)
    model = M2.from_sizes(d, 1, C, (), obs="fixed", sigma2=sigma2, prior=prior, bound=bound)
    params = {"cls.0.W": Si @ bs.T,
              "cls.0.b": -0.5 * np.einsum("cd,de,ce->c", bs, Si, bs) + np.log(prior),
              "enc.0.W": np.concatenate([np.concatenate([A, np.zeros((d, 1))], 1),
                                         np.concatenate([-bs @ A, np.full((C, 1), -math.log(P))], 1)], 0),
              "enc.0.b": np.zeros(2),
              "dec.0.W": np.concatenate([w, bs], 0), "dec.0.b": np.zeros(d)}

    def log_joint(x):
        return np.stack([multivariate_normal(bs[c], Sigma).logpdf(x).reshape(-1) for c in range(C)], 1) + np.log(prior)
    return model, params, log_joint


@pytest.mark.parametrize("S", [1, 4])
def test_iwae_bounds_exact_with_exact_posteriors(S):
    """With q(z|x,y) = p(z|x,y), every log w = log p(x, y): L_S(x, y) = log p(x, y) and
    U_S(x) = log p(x) for any noise, to rounding (rtol 1e-12)."""
    model, params, log_joint = linear_m2("iwae")
    rng = np.random.default_rng(1)
    x = 1.5 * rng.standard_normal((7, 2))
    noise = rng.standard_normal(model.noise_shape(params, 7, S))
    out = model.bounds(params, x, noise)
    lj = log_joint(x)
    np.testing.assert_allclose(out["labelled"], lj, rtol=1e-12)
    np.testing.assert_allclose(out["unlabelled"], logsumexp(lj, axis=1), rtol=1e-12)
    # with labels, -loss is the mean of log p(x, y) (gamma = 1) and log p(x) (unlabelled), alpha = 0
    m = M2(model.classifier, model.encoder, model.decoder, 2, 1, 2, obs="fixed", sigma2=0.5,
           prior=model.prior, bound="iwae", alpha=0.0)
    labels = np.array([0, 1, -1, -1, 1, -1, 0])
    want = np.where(labels >= 0, lj[np.arange(7), np.maximum(labels, 0)], logsumexp(lj, axis=1)).mean()
    np.testing.assert_allclose(-m.value_and_grad(params, x, labels, noise)[0], want, rtol=1e-12)


def test_elbo_bounds_exact_with_exact_posteriors():
    """ELBO form. log p(x | z, y) is quadratic in eps, so the two samples eps = +1, -1 average it
    exactly: L(x, y) = log p(x, y) and, with q(y|x) = p(y|x), U(x) = log p(x), to rounding.
    With a perturbed classifier, U(x) = log p(x) - KL(q(y|x) || p(y|x)) exactly."""
    model, params, log_joint = linear_m2("elbo")
    x = 1.5 * np.random.default_rng(2).standard_normal((7, 2))
    noise = np.ones(model.noise_shape(params, 7, 2))
    noise[1] = -1.0
    lj = log_joint(x)
    log_px = logsumexp(lj, axis=1)
    out = model.bounds(params, x, noise)
    np.testing.assert_allclose(out["labelled"], lj, rtol=1e-12)
    np.testing.assert_allclose(out["unlabelled"], log_px, rtol=1e-12)
    np.testing.assert_allclose(out["log_q_y"], lj - log_px[:, None], rtol=1e-10, atol=1e-12)
    off = dict(params, **{"cls.0.b": params["cls.0.b"] + np.array([0.8, -0.4])})
    log_q = model.bounds(off, x, noise)["log_q_y"]
    kl = (np.exp(log_q) * (log_q - (lj - log_px[:, None]))).sum(1)
    assert kl.max() > 0.05                     # a real perturbation, not a no-op
    np.testing.assert_allclose(model.bounds(off, x, noise)["unlabelled"], log_px - kl, rtol=1e-12)


# -- bounds on a nonlinear M2 against quadrature over a 1-D z -----------------------------
def quadrature_log_joint(model, params, x, n_grid=4001, z_max=10.0):
    """log p(x, y) = log p(y) + log int N(x; f(z, y), s2) N(z; 0, 1) dz by the trapezoid rule on
    [-z_max, z_max] (K = 1). Returns (B, C)."""
    z = np.linspace(-z_max, z_max, n_grid)
    log_wts = np.log(np.full(n_grid, z[1] - z[0]) * np.r_[0.5, np.ones(n_grid - 2), 0.5])
    log_prior_z = -0.5 * (z * z + math.log(2 * math.pi))
    out = []
    for y in range(model.n_classes):
        mean, obs_lv = model.decode(params, z[:, None], y)                   # (G, d)
        lik = gaussian_log_prob(x[:, None, :], mean[None], obs_lv)[0].sum(-1)  # (B, G)
        out.append(logsumexp(lik + log_prior_z + log_wts, axis=1) + math.log(model.prior[y]))
    return np.stack(out, 1)


def test_bounds_below_log_likelihood_by_quadrature():
    """A tanh M2 (K = 1, C = 2, fixed sigma2) with log p(x, y) by quadrature, on 40 points drawn
    from the model. Each bound is averaged over M = 30 noise draws per point (standard error
    with the points fixed):

    - E L(x, y) <= log p(x, y) and E U(x) <= log p(x), within 3 se, and strictly below on average;
    - the IWAE variant: E U_1 <= E U_10 <= E U_100 <= log p(x) (steps > 3 se, top within 3 se).
    """
    rng = np.random.default_rng(0)
    model = M2.from_sizes(2, 1, 2, (6,), "tanh", obs="fixed", sigma2=0.3)
    params = perturbed_init(model, rng, None, 0.5)
    _, xs = model.sample(params, np.array([0, 1]), 20, rng)
    x = xs.reshape(40, 2)
    lj = quadrature_log_joint(model, params, x)
    log_px = logsumexp(lj, axis=1)
    # the grid is fine enough: halving it changes nothing
    np.testing.assert_allclose(quadrature_log_joint(model, params, x, n_grid=2001), lj, rtol=1e-10)
    N, M = 40, 30
    xm = np.repeat(x, M, axis=0)
    out = model.bounds(params, xm, rng.standard_normal(model.noise_shape(params, N * M)))
    gaps = {"labelled": (lj[:, None, :] - out["labelled"].reshape(N, M, 2)).transpose(0, 2, 1).reshape(2 * N, M),
            "unlabelled": log_px[:, None] - out["unlabelled"].reshape(N, M)}     # (points, draws)
    for name, gap in gaps.items():
        per_point_se = gap.std(axis=1, ddof=1) / math.sqrt(M)
        assert (gap.mean(axis=1) > -3 * per_point_se).all(), name
        mean_gap, se = mean_and_se(gap)
        assert mean_gap > 3 * se, (name, mean_gap, se)
    iw = M2.from_sizes(2, 1, 2, (6,), "tanh", obs="fixed", sigma2=0.3, bound="iwae")
    U = {S: iw.bounds(params, xm, rng.standard_normal(iw.noise_shape(params, N * M, S)))["unlabelled"].reshape(N, M)
         for S in (1, 10, 100)}
    for lo, hi in ((1, 10), (10, 100)):
        gain, se = mean_and_se(U[hi] - U[lo])
        assert gain > 3 * se, (lo, hi, gain, se)
    top, se = mean_and_se(log_px[:, None] - U[100])
    assert top > -3 * se, (top, se)


# -- training, classification, sampling ---------------------------------------------------
def two_clusters(seed, n=200, frac=0.1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = np.stack([np.where(y == 0, -3.0, 3.0), np.zeros(n)], 1) + 0.5 * rng.standard_normal((n, 2))
    return x, y, np.where(rng.random(n) < frac, y, -1)


@pytest.mark.parametrize("seed", [0, 1])
def test_training_on_partly_labelled_clusters_classifies(seed):
    """Two well separated clusters, ~10% labelled: after 300 full-batch Adam steps via
    refvae.train.fit the classifier q(y|x) is right on > 90% of all points (chance: 50%)."""
    x, y, labels = two_clusters(seed)
    assert 0 < (labels >= 0).sum() < 40
    model = M2.from_sizes(2, 1, 2, (16,), "tanh", obs="scalar", alpha=1.0)
    params = model.init(np.random.default_rng(seed + 1))
    acc0 = (model.classify(params, x).argmax(-1) == y).mean()
    res = model.fit(params, x, labels, steps=300, seed=seed + 2, optimizer=Adam(1e-2))
    acc = (model.classify(res.params, x).argmax(-1) == y).mean()
    assert acc > 0.9, (acc0, acc)
    assert set(res.history) == {"loss", "unlabelled", "labelled", "classifier", "sigma2"}
    assert res.history["loss"][-10:].mean() < res.history["loss"][:10].mean() - 1.0
    # the same run through train.fit on the packed data, explicitly: identical numbers
    again = fit(model.packed(), params, model.pack(x, labels), steps=300, seed=seed + 2, optimizer=Adam(1e-2))
    assert all(np.array_equal(again.params[k], res.params[k]) for k in params)


@pytest.mark.parametrize("bound", ["elbo", "iwae"])
def test_fit_with_restarts_trains_each_restart_on_its_own_loss(bound):
    """M2.fit on parameters with a restarts axis R = 2 whose restarts start identical: each restart
    follows its own loss (shape (steps, 2)); they part only through their own noise, and both learn."""
    x, y, labels = two_clusters(3, n=60, frac=0.3)
    model = M2.from_sizes(2, 1, 2, (8,), "tanh", obs="scalar", bound=bound, n_samples=2 if bound == "iwae" else None)
    one = model.init(np.random.default_rng(0))
    params = {k: np.stack([v, v]) for k, v in one.items()}
    res = model.fit(params, x, labels, steps=60, seed=1, batch_size=20, optimizer=Adam(1e-2))
    loss = res.history["loss"]
    assert loss.shape == (60, 2)
    assert np.all(loss[-10:].mean(axis=0) < loss[:10].mean(axis=0))
    assert all(res.params[k].shape == params[k].shape for k in params)
    assert any(not np.array_equal(res.params[k][0], res.params[k][1]) for k in params)
    # restart r's loss is that of its own parameters on the batch (not a mix of the two)
    xb, lb = x[:20], labels[:20]
    noise = np.random.default_rng(2).standard_normal(model.noise_shape(res.params, 20))
    both = model.value_and_grad(res.params, xb, lb, noise)[0]
    for r in range(2):
        own = model.value_and_grad({k: v[r] for k, v in res.params.items()}, xb, lb, noise[..., r, :, :])[0]
        np.testing.assert_allclose(both[r], own, rtol=1e-13)


@pytest.mark.parametrize("R", [None, 3])
@pytest.mark.parametrize("obs", ["fixed", "scalar", "decoder"])
def test_sample_shapes_and_noise_variance(R, obs):
    """sample(params, y, n, rng): (R?, n, d) for a class, (m, R?, n, d) for m classes, means from
    decode; x - mean has per-coordinate variance s2 (sigma2 for fixed), within 4 se."""
    model = M2.from_sizes(3, 2, 3, (5,), obs=obs, sigma2=0.25)
    params = model.init(np.random.default_rng(0), R)
    lead = () if R is None else (R,)
    n = 4000
    for y in range(3):
        mean, x = model.sample(params, y, n, np.random.default_rng(y))
        assert mean.shape == x.shape == lead + (n, 3)
    mean, x = model.sample(params, np.array([2, 0]), n, np.random.default_rng(5))
    assert mean.shape == x.shape == (2,) + lead + (n, 3)
    # means are the decoder's at the same z: redraw z from the same generator
    z = np.random.default_rng(5).standard_normal((2,) + lead + (n, 2))
    np.testing.assert_allclose(mean[1], model.decode(params, z[1], 0)[0], rtol=1e-13)
    s2 = np.broadcast_to(np.exp(np.asarray(model.decode(params, z[0], 2)[1])), mean[0].shape)
    r2 = (x[0] - mean[0]) ** 2 / s2                                           # chi^2_1 each, mean 1
    assert abs(r2.mean() - 1.0) < 4 * r2.std() / math.sqrt(r2.size), r2.mean()
    if obs == "fixed":
        assert model.decode(params, z[0], 2)[1] == math.log(0.25)


def test_classify_is_a_distribution():
    model = M2.from_sizes(2, 1, 3, (4,))
    params = model.init(np.random.default_rng(0), 2)
    q = model.classify(params, np.random.default_rng(1).standard_normal((5, 2)) * 50)
    assert q.shape == (2, 5, 3) and np.all(q >= 0)
    np.testing.assert_allclose(q.sum(-1), 1.0, rtol=1e-14)


# -- bad inputs -----------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors():
    model = M2.from_sizes(2, 1, 3, (4,))
    params = model.init(np.random.default_rng(0))
    x, labels = np.zeros((4, 2)), np.array([0, -1, 2, 1])
    noise = np.zeros(model.noise_shape(params, 4))
    assert noise.shape == (3, 4, 1)
    model.value_and_grad(params, x, labels, noise)                       # the valid call runs
    with pytest.raises(ValueError, match=r"labels must be class indices in 0..2 or -1.*\[0, 3\]"):
        model.value_and_grad(params, x, np.array([0, 3, 1, 1]), noise)
    with pytest.raises(ValueError, match=r"labels must be class indices.*\[-2, 1\]"):
        model.value_and_grad(params, x, np.array([0, -2, 1, 1]), noise)
    with pytest.raises(ValueError, match=r"labels must have shape \(4\)"):
        model.value_and_grad(params, x, np.array([0, 1, 1]), noise)
    with pytest.raises(TypeError, match="labels must be an integer array"):
        model.value_and_grad(params, x, np.array([0.0, 1.0, 1.0, 2.0]), noise)
    with pytest.raises(ValueError, match="x must have last dimension 2"):
        model.value_and_grad(params, np.zeros((4, 3)), labels, noise)
    with pytest.raises(ValueError, match=r"params lacks the model's entries \['cls.0.W'"):
        model.value_and_grad({k: v for k, v in params.items() if k != "cls.0.W"}, x, labels, noise)
    with pytest.raises(ValueError, match=r"params\['enc.0.W'\] must have shape"):
        model.bounds({**params, "enc.0.W": np.zeros((5, 3))}, x, noise)
    with pytest.raises(ValueError, match="x must have at least 2 dimensions"):
        model.classify(params, np.zeros(2))
    bad = x.copy()
    bad[2, 0] = np.inf
    with pytest.raises(ValueError, match="x must be finite"):
        model.value_and_grad(params, bad, labels, noise)
    with pytest.raises(ValueError, match="x must be finite"):
        model.pack(bad, labels)
    with pytest.raises(ValueError, match=r"noise must have shape \(optional S >= 1, 3, 4, 1\)"):
        model.value_and_grad(params, x, labels, noise[0])
    with pytest.raises(ValueError, match="noise must have shape"):
        model.value_and_grad(params, x, labels, np.zeros((0, 3, 4, 1)))
    iw = M2.from_sizes(2, 1, 3, (4,), bound="iwae")
    with pytest.raises(ValueError, match=r"noise must have shape \(S >= 1, 3, 4, 1\)"):
        iw.value_and_grad(params, x, labels, noise)                     # IWAE needs the sample axis
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        model.noise_shape(params, 4, 0)
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        M2.from_sizes(2, 1, 3, (4,), bound="iwae", n_samples=0)
    with pytest.raises(ValueError, match="bound must be one of"):
        M2.from_sizes(2, 1, 3, (4,), bound="iwea")
    with pytest.raises(ValueError, match="n_classes must be >= 2"):
        M2.from_sizes(2, 1, 1, (4,))
    with pytest.raises(ValueError, match="prior must sum to 1"):
        M2.from_sizes(2, 1, 3, (4,), prior=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="prior must be positive"):
        M2.from_sizes(2, 1, 3, (4,), prior=[1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"encoder must map 5 -> 2 features"):
        M2(model.classifier, model.classifier, model.decoder, 3, 1, 2)
    with pytest.raises(ValueError, match=r"y must hold class indices in 0..2"):
        model.sample(params, np.array([0, 3]), 5, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"y must hold class indices in 0..2, got \[-1\]"):
        model.sample(params, -1, 5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="n must be >= 1"):
        model.sample(params, 0, 0, np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng must be an int, SeedSequence or numpy.random.Generator"):
        model.sample(params, 0, 5, "42")
    learned = M2.from_sizes(2, 1, 3, (4,), obs="scalar")
    p2 = learned.init(0)
    bad = {**p2, "dec.obs_logvar": p2["dec.obs_logvar"] - 800.0}      # exp(-800) underflows to 0
    with pytest.raises(ValueError, match=r"params\['dec.obs_logvar'\] \(an observation log-variance\)"):
        learned.value_and_grad(bad, x, labels, noise)
    with pytest.raises(ValueError, match="y must be a class index in 0..2"):
        model.decode(params, np.zeros((3, 1)), 3)
    packed = model.packed()
    with pytest.raises(ValueError, match="last column must hold integer labels"):
        packed.value_and_grad(params, np.array([[0.0, 0.0, 0.5]] * 4), noise)
    with pytest.raises(ValueError, match="labels must be class indices"):
        packed.value_and_grad(params, np.array([[0.0, 0.0, 5.0]] * 4), noise)
    with pytest.raises(ValueError, match="xy must have last dimension 3"):
        packed.value_and_grad(params, x, noise)
    with pytest.raises(TypeError, match="model must be an M2"):
        PackedM2(object())

"""The non-amortised (per-point) encoder and fitting the encoder against a frozen decoder (docs/math.md 2.5, 4.2)."""
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from refvae import gradcheck
from refvae.encoders import PerPointEncoder, PerPointVAE, fit_encoder, with_index
from refvae.layers import Linear, Sequential, mlp
from refvae.objectives import OBS_MODES, GaussianVAE
from refvae.optim import Adam
from tests.core.strategies import restarts, seeds, sizes


def per_point_model(obs, N, K, d, hidden=(3,), act="tanh", beta=1.0):
    dec = mlp((K, *hidden, 2 * d if obs == "decoder" else d), act)
    return PerPointVAE.from_decoder(dec, N, K, d, obs=obs, sigma2=0.7, beta=beta)


def perturbed(params, rng):
    return {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in params.items()}


# Fixed cases run on every run besides the random ones: one per observation mode, each with 3 restarts,
# 2 samples, K = d = 2 and a batch of 4 of N = 5 points drawn with replacement whose seed gives a repeated
# point and points left out (rows [3 4 4 1], [0 3 0 3], [3 1 4 4], [1 4 3 3]). Checked with deliberate
# mutations (hypothesis running these cases only): repeated rows' gradients overwritten instead of added;
# the log-variance rows gathered in another order than the means; the decoder-output log-variance or the
# learned noise gradient off by 1%: each makes the test fail. The random examples, 25 before, are now 8:
# they add the shapes (no restarts axis, one sample, batches without repeats, sizes 1-4).
MINIBATCH_HARD = [dict(seed=0, obs=obs, act=("tanh", "softplus")[i % 2]) for i, obs in enumerate(OBS_MODES)]


def _minibatch_hard_cases(test):
    for case in MINIBATCH_HARD:
        test = example(R=3, S=2, d=2, K=2, N=5, B=4, replace=True, beta=0.7, **case)(test)
    return test


@settings(max_examples=8, deadline=None)
@given(seed=seeds, obs=st.sampled_from(OBS_MODES), R=restarts, S=st.sampled_from([None, 2]), d=sizes, K=sizes,
       N=st.integers(2, 6), B=st.integers(1, 5), replace=st.booleans(), act=st.sampled_from(["tanh", "softplus"]),
       beta=st.floats(0.0, 2.0))
@_minibatch_hard_cases
def test_minibatch_gradient_and_zero_rows_outside_the_batch(seed, obs, R, S, d, K, N, B, replace, act, beta):
    rng = np.random.default_rng(seed)
    model = per_point_model(obs, N, K, d, act=act, beta=beta)
    params = perturbed(model.init(rng, R), rng)
    B = B if replace else min(B, N)
    idx = rng.choice(N, B, replace=replace)          # any order; repeated points when replace
    xa = with_index(rng.standard_normal((N, d)))[idx]
    noise = rng.standard_normal(model.noise_shape(params, B, S))
    gradcheck.assert_grad(lambda p: model.value_and_grad(p, xa, noise), params)
    _, grads = model.value_and_grad(params, xa, noise)
    outside = np.setdiff1d(np.arange(N), idx)
    for k in ("enc.mu", "enc.logvar"):
        assert grads[k].shape == params[k].shape
        assert not np.any(grads[k][..., outside, :])       # exactly zero, not merely small


@settings(max_examples=15, deadline=None)
@given(seed=seeds, obs=st.sampled_from(OBS_MODES), R=restarts, d=sizes, K=sizes, N=st.integers(1, 5))
def test_full_batch_gaussian_vae_with_per_point_encoder(seed, obs, R, d, K, N):
    """Plugged straight into GaussianVAE on the full data; the wrapper on the identity order agrees exactly."""
    rng = np.random.default_rng(seed)
    wrapped = per_point_model(obs, N, K, d)
    model = wrapped.model
    params = perturbed(model.init(rng, R), rng)
    x = rng.standard_normal((N, d))
    noise = rng.standard_normal(model.noise_shape(params, N))
    gradcheck.assert_grad(lambda p: model.value_and_grad(p, x, noise), params)
    loss, grads = model.value_and_grad(params, x, noise)
    loss2, grads2 = wrapped.value_and_grad(params, with_index(x), noise)
    np.testing.assert_array_equal(loss, loss2)
    for k in grads:
        np.testing.assert_array_equal(grads[k], grads2[k])


def test_encode_gathers_rows_and_restarts_broadcast():
    rng = np.random.default_rng(0)
    model = per_point_model("fixed", 6, 2, 3)
    params = model.init(rng, 2)
    xa = with_index(rng.standard_normal((6, 3)))[[4, 1]]
    mu, lv = model.encode(params, xa)
    np.testing.assert_array_equal(mu, params["enc.mu"][:, [4, 1]])
    np.testing.assert_array_equal(lv, params["enc.logvar"][:, [4, 1]])
    # a data batch with its own restarts axis broadcasts against restart-free tables
    enc = PerPointEncoder(2, 3)
    p = enc.init(rng)
    out, _ = enc.forward(p, np.zeros((4, 2, 5)))
    assert out.shape == (4, 2, 6)
    np.testing.assert_array_equal(out[3], np.concatenate([p["mu"], p["logvar"]], axis=-1))


def linear_gaussian_problem(seed, N=10):
    """x = z W + b + e, e ~ N(0, s2 I), K = 2, d = 3, columns of W^T not orthogonal (correlated posterior)."""
    rng = np.random.default_rng(seed)
    W = np.array([[1.0, 0.6, 0.3], [0.8, -0.2, 0.9]])
    b, s2 = np.array([0.1, -0.2, 0.3]), 0.2
    x = rng.standard_normal((N, 2)) @ W + b + np.sqrt(s2) * rng.standard_normal((N, 3))
    P = np.eye(2) + W @ W.T / s2                        # posterior precision (docs/math.md 4.1)
    mean = (x - b) @ W.T @ np.linalg.inv(P) / s2        # posterior means, (N, 2)
    return x, W, b, s2, P, mean


def test_fit_encoder_reaches_the_best_mean_field_fit():
    """Per-point encoder against the frozen true linear-Gaussian decoder (yacoby2020's reference posteriors)
    converges to docs/math.md 4.2's optimum: mean = posterior mean, variance = 1 / P_ii.

    Tolerance 0.05 (in posterior standard deviations for the means, in nats for the log-variances):
    the iterates jitter around the optimum because every step uses fresh Monte Carlo noise; at Adam's
    final lr 5e-4 with 64 samples the jitter is ~0.01 (measured max error over 40 entries 0.012-0.023
    for 6 seeds). The marginal posterior variance (P^-1)_ii, what an encoder matching the posterior's
    marginals would give, is 0.39 nats away; the flat-prior (ML) means are > 0.2 std away.
    """
    N = 10
    x, W, b, s2, P, mean = linear_gaussian_problem(0, N)
    var = 1.0 / np.diag(P)
    try:
        from analytic.mfg import best_fit
    except ImportError:  # pragma: no cover - the analytic package is optional here
        best_fit = None
    if best_fit is not None:
        fit0 = best_fit(mean[0], np.linalg.inv(P))
        np.testing.assert_allclose(fit0.mean, mean[0], rtol=1e-12)
        np.testing.assert_allclose(fit0.var, var, rtol=1e-12)
    model = PerPointVAE.from_decoder(Sequential(Linear(2, 3)), N, 2, 3, obs="fixed", sigma2=s2)
    params = model.init(np.random.default_rng(1), restarts=2)
    params["dec.0.W"], params["dec.0.b"] = np.stack([W, W]), np.stack([b, b])
    dec_before = {k: v.copy() for k, v in params.items() if k.startswith("dec.")}
    for i, lr in enumerate((5e-2, 5e-3, 5e-4)):
        params = fit_encoder(model, params, x, steps=800, seed=i, n_samples=64, optimizer=Adam(lr)).params
    for k, v in dec_before.items():
        np.testing.assert_array_equal(params[k], v)
    std = np.sqrt(var)
    assert np.abs(params["enc.mu"] - mean).max() / std.min() < 0.05
    assert np.abs(params["enc.logvar"] - np.log(var)).max() < 0.05
    # the tolerance separates the answer from the nearest wrong ones
    assert np.abs(np.log(np.diag(np.linalg.inv(P))) - np.log(var)).min() > 0.3
    ml_mean = (x - b) @ W.T @ np.linalg.inv(W @ W.T)
    assert np.abs(ml_mean - mean).max() / std.max() > 0.2


def test_fit_encoder_amortised_trains_only_the_encoder_and_is_deterministic():
    x, W, b, s2, P, mean = linear_gaussian_problem(1, N=50)
    model = GaussianVAE.linear(3, 2, obs="scalar")
    params = model.init(np.random.default_rng(0))
    runs = [fit_encoder(model, params, x, steps=30, seed=3, batch_size=10, optimizer=Adam(1e-2)) for _ in range(2)]
    for k, v in params.items():
        np.testing.assert_array_equal(runs[0].params[k], runs[1].params[k])
        if k.startswith("dec."):
            np.testing.assert_array_equal(runs[0].params[k], v)
        else:
            assert not np.array_equal(runs[0].params[k], v)
    assert runs[0].history["loss"][-5:].mean() < runs[0].history["loss"][:5].mean()


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="num_points must be >= 1"):
        PerPointEncoder(0, 2)
    with pytest.raises(TypeError, match="model must be a GaussianVAE"):
        PerPointVAE(object())
    with pytest.raises(TypeError, match="model.encoder must be a PerPointEncoder"):
        PerPointVAE(GaussianVAE.linear(3, 2))
    with pytest.raises(ValueError, match="must map 3 -> 4"):
        GaussianVAE(PerPointEncoder(5, 3), mlp((2, 3)), 2, 3)
    model = per_point_model("fixed", 5, 2, 3)
    params = model.init(rng)
    x = rng.standard_normal((5, 3))
    noise = np.zeros((2, 2))
    for bad, msg in [(np.c_[x[:2], [0.0, 5.0]], r"indices in \[0, 5\)"), (np.c_[x[:2], [0.5, 1.0]], "indices"),
                     (np.c_[x[:2], [-1.0, 1.0]], "indices"), (x[:2], "last dimension 4")]:
        with pytest.raises(ValueError, match=msg):
            model.value_and_grad(params, bad, noise)
    with pytest.raises(ValueError, match="wrap the model in refvae.encoders.PerPointVAE"):
        model.model.value_and_grad(params, x[:2], noise)
    with pytest.raises(TypeError, match="do not pass only"):
        fit_encoder(model, params, x, steps=1, seed=0, only=("dec.",))
    with pytest.raises(ValueError, match="one row per encoder point"):
        fit_encoder(model, params, x[:3], steps=1, seed=0)
    with pytest.raises(ValueError, match="indices"):
        fit_encoder(model, params, np.c_[x, np.arange(5) + 1.0], steps=1, seed=0)
    with pytest.raises(ValueError, match="x must be 2-dimensional"):
        with_index(np.zeros(3))
    with pytest.raises(ValueError, match="restarts must be >= 1"):
        PerPointEncoder(3, 2).init(rng, 0)


def test_refvae_testing_property_check_on_the_indexed_model():
    """The users' one-line property test, with data rows carrying their indices (duplicates allowed)."""
    import refvae.testing as T
    model = per_point_model("scalar", 5, 2, 3)
    rows = lambda B: st.tuples(T.inputs((B, 3)), st.lists(st.integers(0, 4), min_size=B, max_size=B)).map(
        lambda pair: np.c_[pair[0], np.asarray(pair[1], dtype=float)])
    T.check_objective_gradients(model, data=rows, max_examples=6)


def test_fit_encoder_keeps_its_work_on_ctrl_c_and_checks_the_tables():
    from refvae.train import TrainingInterrupted
    rng = np.random.default_rng(0)
    model = per_point_model("fixed", 6, 2, 3)
    params = model.init(rng, 2)
    x = rng.standard_normal((6, 3))

    def press(step, p, info):
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as info:
        fit_encoder(model, params, x, steps=10, seed=1, batch_size=3, optimizer=Adam(1e-2), callback=press)
    res = info.value.result
    short = fit_encoder(model, params, x, steps=5, seed=1, batch_size=3, optimizer=Adam(1e-2))
    assert res.step == 5 and all(np.array_equal(res.params[k], short.params[k]) for k in params)
    assert all(np.array_equal(res.params[k], params[k]) for k in params if k.startswith("dec."))
    with pytest.raises(ValueError, match=r"params\['enc.mu'\] must have shape \(6, 2\) or \(R, 6, 2\)"):
        model.value_and_grad({**params, "enc.mu": params["enc.mu"][:, :4]}, with_index(x)[:2], np.zeros((2, 2, 2)))

"""Training loop: determinism, divergence stop, schedules, save/load, and learned noise (docs/math.md 4.5)."""
import io
import re

import numpy as np
import pytest

from refvae.backend import normal
from refvae.objectives import Autoencoder, GaussianVAE
from refvae.optim import SGD, Adam
from refvae.train import (FitResult, TrainingDiverged, check_stages, fit, fit_stages, from_trajectory, linear_ramp, load_params,
                          minibatches, save_params)


def gaussian_data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 4)) * np.array([2.0, 1.0, 0.3, 0.2])) @ np.linalg.qr(rng.standard_normal((4, 4)))[0]


def test_same_seed_bitwise_identical_and_different_seed_differs():
    x = gaussian_data()
    model = GaussianVAE.from_sizes(4, 2, (8,), obs="vector")
    runs = [fit(model, model.init(np.random.default_rng(5), restarts=2), x, steps=50, seed=s,
                batch_size=64, n_samples=2) for s in (7, 7, 8)]
    for k in runs[0].params:
        np.testing.assert_array_equal(runs[0].params[k], runs[1].params[k])
    np.testing.assert_array_equal(runs[0].history["loss"], runs[1].history["loss"])
    assert not np.array_equal(runs[0].history["loss"], runs[2].history["loss"])
    assert runs[0].history["loss"].shape == (50, 2)


def test_history_terms_and_schedules():
    x = gaussian_data(100)
    model = GaussianVAE.linear(4, 2, obs="fixed", sigma2=1.0)
    sig = np.linspace(2.0, 0.5, 10)
    res = fit(model, model.init(np.random.default_rng(0)), x, steps=20, seed=0,
              schedules={"beta": linear_ramp(0.0, 1.0, 10), "sigma2": from_trajectory(sig)})
    np.testing.assert_allclose(res.history["beta"], [min(t / 10, 1.0) for t in range(20)])
    np.testing.assert_allclose(res.history["sigma2"], [sig[min(t, 9)] for t in range(20)])
    np.testing.assert_allclose(res.history["loss"], res.history["recon"] + res.history["beta"] * res.history["kl"],
                               rtol=1e-13)


def test_progress_line_and_callback_stop():
    x = gaussian_data(50)
    model = GaussianVAE.linear(4, 1)
    out = io.StringIO()
    res = fit(model, model.init(np.random.default_rng(0)), x, steps=100, seed=0, progress=True, log_every=3,
              stream=out, callback=lambda step, params, terms: step == 9)
    assert len(res.history["loss"]) == 10
    assert "step 10/100" in out.getvalue() and "sigma2" in out.getvalue()


def test_divergence_stops_with_step_and_quantity():
    x = gaussian_data(50) * 1e3
    model = GaussianVAE.from_sizes(4, 2, (8,), obs="decoder")
    params = model.init(np.random.default_rng(0))
    with pytest.raises(TrainingDiverged, match=r"step \d+: .* is non-finite") as info:
        fit(model, params, x, steps=200, seed=0, optimizer=SGD(10.0))
    assert info.value.step >= 0
    assert re.fullmatch(r"loss|grads\['[\w.]+'\]|params\['[\w.]+'\] after the update", info.value.quantity)


@pytest.mark.parametrize("what", ["loss", "grads"])
def test_divergence_names_the_exact_step_and_quantity(what):
    """An objective that turns non-finite at step 3, in a known place, is reported exactly there."""
    model = GaussianVAE.linear(4, 2)
    calls = []

    class Poisoned:
        def noise_shape(self, params, batch_size, n_samples=None):
            return model.noise_shape(params, batch_size, n_samples)

        def value_and_grad(self, params, x, noise, **kw):
            loss, grads, terms = model.value_and_grad(params, x, noise, **kw)
            calls.append(1)
            if len(calls) == 4:
                if what == "loss":
                    loss = loss * np.nan
                else:
                    grads = {**grads, "dec.0.W": grads["dec.0.W"] * np.inf}
            return loss, grads, terms

    with pytest.raises(TrainingDiverged) as info:
        fit(Poisoned(), model.init(np.random.default_rng(0)), gaussian_data(30), steps=10, seed=0)
    assert info.value.step == 3
    assert info.value.quantity == ("loss" if what == "loss" else "grads['dec.0.W']")


def test_save_load_round_trip_exact(tmp_path):
    model = GaussianVAE.from_sizes(3, 2, (4,), obs="scalar")
    params = model.init(np.random.default_rng(0), restarts=3)
    save_params(tmp_path / "p.npz", params)
    loaded = load_params(tmp_path / "p.npz")
    assert loaded.keys() == params.keys()
    for k in params:
        assert loaded[k].dtype == np.float64
        np.testing.assert_array_equal(loaded[k], params[k])


def test_fit_input_errors():
    model = GaussianVAE.linear(4, 2)
    params = model.init(np.random.default_rng(0))
    x = gaussian_data(20)
    with pytest.raises(ValueError, match="x must be 2-dimensional"):
        fit(model, params, x[0], steps=1, seed=0)
    with pytest.raises(ValueError, match="batch_size must be <="):
        fit(model, params, x, steps=1, seed=0, batch_size=21)
    with pytest.raises(TypeError, match="steps must be an integer"):
        fit(model, params, x, steps=1.5, seed=0)
    with pytest.raises(ValueError, match="seed must be given"):
        fit(model, params, x, steps=1, seed=None)
    with pytest.raises(TypeError, match="schedules"):
        fit(model, params, x, steps=1, seed=0, schedules={"beta": 0.5})
    with pytest.raises(ValueError, match="log_every must be >= 1"):
        fit(model, params, x, steps=1, seed=0, progress=True, log_every=0)
    with pytest.raises(TypeError, match="callback must be a callable"):
        fit(model, params, x, steps=1, seed=0, callback=True)
    with pytest.raises(TypeError, match="optimizer must have init and update"):
        fit(model, params, x, steps=1, seed=0, optimizer=Adam)
    with pytest.raises(TypeError, match="model must be a refvae objective"):
        fit(object(), params, x, steps=1, seed=0)
    with pytest.raises(TypeError, match="schedules must be a dict"):
        fit_stages(model, params, x, stages=[(1e-3, 1)], seed=0, schedules=[linear_ramp(0, 1, 2)])
    with pytest.raises(TypeError, match=r"schedules\['beta'\] must be a callable"):
        fit_stages(model, params, x, stages=[(1e-3, 1)], seed=0, schedules={"beta": 1.0})
    with pytest.raises(TypeError, match="optimizer must have init and update"):
        fit_stages(model, params, x, stages=[(1e-3, 1)], seed=0, optimizer="sgd")
    with pytest.raises(TypeError, match="model must be a model instance .* got the class GaussianVAE"):
        fit(GaussianVAE, params, x, steps=1, seed=0)
    with pytest.raises(TypeError, match="stream must have a write method"):
        fit(model, params, x, steps=1, seed=0, progress=True, stream=1)
    with pytest.raises(ValueError, match="x must hold at least one data point"):
        fit(model, params, x[:0], steps=1, seed=0)
    with pytest.raises(TypeError, match=r"stages\[1\] must be a \(learning rate, steps\) pair"):
        check_stages("stages", [(1e-3, 1), 1e-3])
    with pytest.raises(TypeError, match=r"stages\[0\] steps must be an integer"):
        check_stages("stages", [(1e-3, 1.5)])
    with pytest.raises(TypeError, match="must be a sequence"):
        check_stages("stages", 1e-3)


def test_minibatches_cover_each_epoch_once():
    rng = np.random.default_rng(0)
    gen = minibatches(rng, 10, 3)
    for _ in range(4):                              # 3 batches an epoch, the 10th point of each permutation left out
        epoch = np.concatenate([next(gen) for _ in range(3)])
        assert len(epoch) == 9 and len(set(epoch.tolist())) == 9 and set(epoch.tolist()) <= set(range(10))
    np.testing.assert_array_equal(next(minibatches(rng, 4, 9)), np.arange(4))   # batch >= n: all points
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        minibatches(rng, 10, 0)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        minibatches(0, 10, 2)


def test_save_load_with_the_same_path_without_suffix(tmp_path):
    params = {"enc.W": np.random.default_rng(0).standard_normal((2, 3)), "dec.b": np.arange(3.0)}
    save_params(tmp_path / "model", params)          # numpy.savez writes model.npz
    loaded = load_params(tmp_path / "model")
    for k in params:
        np.testing.assert_array_equal(loaded[k], params[k])
    with pytest.raises(TypeError, match="str keys to arrays"):
        save_params(tmp_path / "bad", {"a": 1.0})


def test_autoencoder_trains_through_fit():
    x = gaussian_data(200)
    model = Autoencoder.from_sizes(4, 2, (), "tanh")
    res = fit(model, model.init(np.random.default_rng(0)), x, steps=1500, seed=0, optimizer=Adam(1e-2))
    ev = np.sort(np.linalg.eigvalsh(np.cov(x.T, bias=True)))
    # a linear AE reaches the PCA reconstruction error: the sum of the discarded eigenvalues
    assert res.history["loss"][-1] == pytest.approx(ev[:2].sum(), rel=1e-3)


@pytest.mark.slow
def test_learned_noise_equals_mean_squared_residual_under_own_encoder():
    """docs/math.md 4.5 (yacoby2021 Theorem 2): at convergence the learned s2 is the mean squared residual.

    Slow (~15 s CPU): the default suite checks Theorem 2 in
    tests/theorems/test_noise_variance.py (``test_learned_noise_equals_closed_form_at_convergence``
    and ``test_refit_noise_lands_on_closed_form``, scalar noise; their vector mode is slow too) and,
    with a per-coordinate noise, in the ``noise_theorem2`` claim of tests/verify/test_claims.py.

    Trained with full-batch Adam, then a second phase with a 10x smaller step and 64 noise
    samples per point so that the stochastic-gradient jitter around the stationary point is
    small; the residual is then estimated by Monte Carlo under the model's own encoder
    (S = 2000 draws), whose standard error is checked to be negligible against the tolerance.
    """
    x = gaussian_data(300)
    for obs in ("scalar", "vector"):
        model = GaussianVAE.linear(4, 2, obs=obs, sigma2=1.0)
        res = fit(model, model.init(np.random.default_rng(1)), x, steps=3000, seed=2, optimizer=Adam(1e-2),
                  n_samples=8)
        trajectory = []
        params = fit(model, res.params, x, steps=1000, seed=3, optimizer=Adam(1e-3), n_samples=64,
                     callback=lambda t, p, terms: trajectory.append(np.exp(p["dec.obs_logvar"]))).params
        jitter = np.std(trajectory[-300:], axis=0)      # spread of the iterate around its fixed point
        mu, lv = model.encode(params, x)
        # linear decoder: E_q (x - W z - b)^2 = (x - W mu - b)^2 + sum_k W_jk^2 var_k, exactly
        mean, _ = model.decode(params, mu)
        W = params["dec.0.W"]                                       # (K, d)
        exact = ((x - mean) ** 2 + np.exp(lv) @ (W ** 2)).mean(axis=0)
        # and by Monte Carlo with the package's sampler (S = 2000), which must agree with it
        eps = normal(np.random.default_rng(3), (2000,) + mu.shape)
        mc = ((x - model.decode(params, mu + np.exp(lv / 2) * eps)[0]) ** 2).mean(axis=1)   # (S, d)
        se = mc.std(axis=0) / np.sqrt(len(mc))
        assert np.all(np.abs(mc.mean(axis=0) - exact) < 4 * se)
        target = exact if obs == "vector" else exact.mean(keepdims=True)
        learned = np.exp(params["dec.obs_logvar"])
        # the stochastic iterate sits within a few of its own standard deviations of the
        # stationary point, and that spread is small (<0.5%), so the check is sharp
        assert np.all(jitter < 5e-3 * target)
        assert np.all(np.abs(learned - target) < 4 * jitter), (learned, target, jitter)


def test_fit_stages_steps_schedules_and_averaging():
    from refvae.train import fit_stages
    x = gaussian_data(60)
    model = GaussianVAE.linear(4, 2, obs="fixed")
    p0 = model.init(np.random.default_rng(0))
    seen, beta = [], from_trajectory(np.linspace(0.0, 1.0, 7))
    trail = []
    params, hist = fit_stages(model, p0, x, stages=[(1e-2, 4), (1e-3, 3)], seed=5, schedules={"beta": beta},
                              callback=lambda t, p, terms: seen.append(t) or trail.append(p))
    assert seen == list(range(7)) and hist["loss"].shape == (7,)
    np.testing.assert_allclose(hist["beta"], np.linspace(0.0, 1.0, 7))     # global step across stages
    np.testing.assert_array_equal(params["dec.0.W"], trail[-1]["dec.0.W"])
    # the same run with averaging returns the mean of the last 3 iterates
    avg, _ = fit_stages(model, p0, x, stages=[(1e-2, 4), (1e-3, 3)], seed=5, schedules={"beta": beta}, average=3)
    np.testing.assert_allclose(avg["dec.0.W"], np.mean([p["dec.0.W"] for p in trail[-3:]], axis=0), rtol=1e-14)
    with pytest.raises(ValueError, match="average must be <="):
        fit_stages(model, p0, x, stages=[(1e-2, 2)], seed=0, average=3)
    # a callback returning True ends the run; averaging then uses the iterates reached
    stopped, hist = fit_stages(model, p0, x, stages=[(1e-2, 4), (1e-3, 3)], seed=5, schedules={"beta": beta},
                               average=3, callback=lambda t, p, terms: t == 5)
    assert hist["loss"].shape == (6,)
    np.testing.assert_allclose(stopped["dec.0.W"], np.mean([p["dec.0.W"] for p in trail[4:6]], axis=0), rtol=1e-14)
    # another optimiser, its rate set by each stage: plain gradient descent
    gd, _ = fit_stages(model, p0, x, stages=[(1e-3, 1)], seed=5, optimizer=SGD(0.5))
    g = model.value_and_grad(p0, x, normal(np.random.default_rng(5), (60, 2)))[1]
    np.testing.assert_allclose(gd["dec.0.W"], p0["dec.0.W"] - 1e-3 * g["dec.0.W"], rtol=1e-12)
    with pytest.raises(ValueError, match="at least one"):
        fit_stages(model, p0, x, stages=[], seed=0)
    with pytest.raises(ValueError, match=r"stages\[0\] learning rate must be positive"):
        fit_stages(model, p0, x, stages=[(0.0, 2)], seed=0)


def test_objective_estimate_matches_closed_form_kl_and_reconstruction():
    from refvae.metrics.likelihood import objective_estimate
    x = gaussian_data(40)
    model = GaussianVAE.linear(4, 2, obs="fixed", sigma2=0.5)
    params = model.init(np.random.default_rng(0), restarts=2)
    mean, se = objective_estimate(model, params, x, seed=1, n_samples=64, replicates=50)
    assert mean.shape == se.shape == (2,) and np.all(se > 0)
    # linear decoder: E_q ||x - W z - b||^2 = ||x - W mu - b||^2 + sum_k var_k ||W_k||^2, exactly
    mu, lv = model.encode(params, x)
    W, b = params["dec.0.W"], params["dec.0.b"]
    sq = ((x - (mu @ W + b[:, None, :])) ** 2).sum(-1) + (np.exp(lv) @ (W ** 2)).sum(-1)
    exact = (0.5 * sq / 0.5 + 2.0 * np.log(2 * np.pi * 0.5)).mean(-1) + \
        (0.5 * (mu ** 2 + np.exp(lv) - lv - 1).sum(-1)).mean(-1)
    assert np.all(np.abs(mean - exact) < 4 * se)


def test_fit_and_fit_stages_share_the_result_type_the_optimiser_and_the_callback():
    x = gaussian_data(60)
    model = GaussianVAE.linear(4, 2, obs="scalar")
    p0 = model.init(np.random.default_rng(0), restarts=2)
    infos = []
    res = fit_stages(model, p0, x, stages=[(1e-2, 3), (1e-3, 2)], seed=5, optimizer=Adam(),
                     callback=lambda t, p, info: infos.append((t, sorted(info))))
    assert isinstance(res, FitResult) and res.step == 5 and res.history["loss"].shape == (5, 2)
    params, history = res                                                # unpacks as (params, history)
    assert params is res.params and history is res.history
    assert [t for t, _ in infos] == list(range(5)) and infos[0][1] == ["beta", "kl", "loss", "recon", "sigma2"]
    # a stage sets the base rate; group rates keep their ratio to it
    one = fit_stages(model, p0, x, stages=[(1e-3, 1)], seed=5, optimizer=SGD(1.0, group_lr={"enc.": 10.0}))
    g = model.value_and_grad(p0, x, normal(np.random.default_rng(5), (2, 60, 2)))[1]
    for k, rate in (("enc.0.W", 1e-2), ("dec.0.W", 1e-3)):
        np.testing.assert_allclose(one.params[k], p0[k] - rate * g[k], rtol=1e-12)
    # the old factory lr -> optimiser still works, with a warning, and gives the same numbers
    with pytest.warns(DeprecationWarning, match="pass an instance"):
        old = fit_stages(model, p0, x, stages=[(1e-2, 3), (1e-3, 2)], seed=5, optimizer=Adam)
    for k in res.params:
        np.testing.assert_array_equal(old.params[k], res.params[k])
    # fit's callback sees the same info
    seen = []
    fit(model, p0, x, steps=2, seed=5, callback=lambda t, p, info: seen.append(sorted(info)))
    assert seen == [infos[0][1]] * 2


def test_what_callbacks_and_results_are_given_is_never_written_again():
    """fit steps its parameters in place (refvae.optim.Ring): a callback that keeps the params dict of
    every step, and a FitResult that starts or resumes a later run, still hold their own numbers."""
    from tests.core.test_fast_paths import PlainAdam
    x = gaussian_data(60)
    model = GaussianVAE.from_sizes(4, 2, (6,), obs="scalar")
    p0 = model.init(np.random.default_rng(0), restarts=2)
    kept, copies = [], []

    def keep(t, p, info):
        kept.append(p)
        copies.append({k: v.copy() for k, v in p.items()})

    res = fit(model, p0, x, steps=8, seed=5, batch_size=20, optimizer=Adam(1e-2), callback=keep)
    plain = []
    fit(model, p0, x, steps=8, seed=5, batch_size=20, optimizer=PlainAdam(1e-2),
        callback=lambda t, p, info: plain.append(p))
    for t, (p, c, want) in enumerate(zip(kept, copies, plain)):
        for k in p:
            np.testing.assert_array_equal(p[k], c[k], err_msg=f"step {t}, {k}: changed after the callback")
            np.testing.assert_array_equal(p[k], want[k], err_msg=f"step {t}, {k}: not the plain run's")
            assert not any(np.shares_memory(p[k], q[k]) for q in kept[t + 1:]), (t, k)
    for k in res.params:
        np.testing.assert_array_equal(res.params[k], kept[-1][k])
    before = {k: v.copy() for k, v in res.params.items()}, {k: v.copy() for k, v in res.state["m"].items()}
    fit(model, res.params, x, steps=5, seed=6, optimizer=Adam(1e-2))
    fit(model, None, x, steps=12, seed=None, batch_size=20, optimizer=Adam(1e-2), resume=res)
    for k in res.params:
        np.testing.assert_array_equal(res.params[k], before[0][k], err_msg=f"result params[{k!r}] changed")
        np.testing.assert_array_equal(res.state["m"][k], before[1][k], err_msg=f"result state m[{k!r}] changed")


def test_custom_layer_with_a_scalar_parameter_trains_with_restarts():
    """A user's layer with a parameter of shape () gets shape (R,) with restarts, through the checks and fit."""
    from refvae.layers import Layer, Linear, Sequential
    from refvae.backend import make_rng

    class Scale(Layer):
        def init(self, rng, restarts=None):
            make_rng(rng)
            return {"a": np.ones(() if restarts is None else (restarts,))}

        def forward(self, params, x):
            a = params["a"]
            return x * (a if a.ndim == 0 else a[:, None, None]), x

        def backward(self, params, x, dy):
            a = params["a"]
            ga = (dy * x).sum(axis=(-2, -1))
            ga = ga.sum(axis=tuple(range(ga.ndim - a.ndim)))
            return dy * (a if a.ndim == 0 else a[:, None, None]), {"a": ga}

    model = GaussianVAE(Linear(4, 4), Sequential(Linear(2, 4), Scale()), 2, 4, obs="scalar")
    x = gaussian_data(40)
    for R in (None, 3):
        params = model.init(np.random.default_rng(0), restarts=R)
        assert params["dec.1.a"].shape == (() if R is None else (R,))
        assert model.noise_shape(params, 5) == ((5, 2) if R is None else (R, 5, 2))
        res = fit(model, params, x, steps=20, seed=1, optimizer=Adam(1e-2))
        assert res.history["loss"].shape == ((20,) if R is None else (20, R))
        assert np.all(res.params["dec.1.a"] != 1.0)
    with pytest.raises(ValueError, match=r"params\['dec.1.a'\] must have shape \(\) or \(R,\)"):
        model.value_and_grad({**params, "dec.1.a": np.ones((3, 1))}, x, np.zeros((3, 40, 2)))

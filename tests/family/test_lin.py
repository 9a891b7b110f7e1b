"""Lagging Inference Networks: the inner stopping rule, the aggressive phase and its MI stop, yacoby2020's
segmented variant, the restarts axis (docs/math.md 2.3)."""
import numpy as np
import pytest

from refvae.lin import LINResult, count_inner_steps, fit_lin, fit_lin_segmented, inner_should_stop
from refvae.objectives import Autoencoder, GaussianVAE
from refvae.optim import SGD, Adam
from refvae.train import StepGuard, TrainingDiverged, TrainingInterrupted


# -- the inner rule as a pure function ------------------------------------------------------
def test_inner_rule_on_controlled_loss_sequences():
    down = np.linspace(10.0, 1.0, 200)
    assert count_inner_steps(down) == 100                      # never worse: runs to the cap
    assert count_inner_steps(down, max_inner=37) == 37
    assert count_inner_steps(np.ones(200)) == 100              # equal is not worse
    # improving for 30 steps, then rising: window 4 (steps 31-40) is worse than window 3
    seq = np.r_[np.linspace(10.0, 5.0, 30), np.linspace(5.5, 40.0, 170)]
    assert count_inner_steps(seq) == 40
    assert count_inner_steps(seq, window=15) == 45             # windows 16-30 < 1-15, 31-45 > 16-30
    # the first window is never compared: worse from the start still takes two windows
    assert count_inner_steps(np.arange(200.0)) == 20
    # window means, not single steps: one bad step stops the loop only if it makes its window worse
    spiky = down.copy()
    spiky[15] = 50.0
    assert spiky[10:20].mean() > spiky[0:10].mean()
    assert count_inner_steps(spiky) == 20
    spiky[15] = 12.0                                           # worse than every step before it, ...
    assert spiky[10:20].mean() < spiky[0:10].mean()            # ... but its window is still better
    assert count_inner_steps(spiky) == 100
    # per restart: each column its own count
    both = np.stack([seq, down, np.arange(200.0)], axis=1)
    np.testing.assert_array_equal(count_inner_steps(both), [40, 100, 20])
    np.testing.assert_array_equal(inner_should_stop(both[:40]), [True, False, True])
    assert inner_should_stop(seq[:39]) is False and inner_should_stop(seq[:40]) is True


def test_inner_rule_bad_inputs():
    with pytest.raises(ValueError, match="window must be >= 1"):
        inner_should_stop([1.0, 2.0], window=0)
    with pytest.raises(ValueError, match="max_inner must be >= 1"):
        inner_should_stop([1.0], max_inner=0)
    with pytest.raises(ValueError, match="at least one inner step"):
        inner_should_stop(np.zeros(0))
    with pytest.raises(ValueError, match=r"shape \(k,\) or \(k, R\)"):
        inner_should_stop(np.zeros((3, 2, 2)))
    with pytest.raises(ValueError, match="losses must be finite"):
        inner_should_stop([1.0, np.nan])
    with pytest.raises(ValueError, match="did not stop within the 30 losses"):
        count_inner_steps(np.linspace(3.0, 1.0, 30))


# -- the trainer ------------------------------------------------------------------------------
def data(seed=0, n=120, n_val=60):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n + n_val, 2))
    x = np.tanh(z @ rng.standard_normal((2, 4))) + 0.1 * rng.standard_normal((n + n_val, 4))
    return x[:n], x[n:]


def model_and_params(restarts=None, seed=1):
    model = GaussianVAE.from_sizes(4, 2, (8,), "tanh", obs="fixed", sigma2=0.05)
    return model, model.init(np.random.default_rng(seed), restarts)


class Recorder:
    """Callback keeping a copy of every event and the parameters after it."""

    def __init__(self):
        self.events = []

    def __call__(self, step, params, info):
        self.events.append((dict(info, step=step, loss=np.array(info["loss"])),
                            {k: v.copy() for k, v in params.items()}))


def stops_exactly_at_end(losses):
    """The pure rule fires after the last of these inner losses and not before."""
    return inner_should_stop(losses) and not any(inner_should_stop(losses[:k]) for k in range(1, len(losses)))


def group(params, prefix):
    return {k: v for k, v in params.items() if k.startswith(prefix)}


def same(a, b):
    return all(np.array_equal(a[k], b[k]) for k in a)


def run_lin(restarts=None, steps=30, **kw):
    x, x_val = data()
    model, params = model_and_params(restarts)
    rec = Recorder()
    kw = {"batch_size": 40, "mi_every": 3, "enc_lr": 3e-3, "dec_lr": 3e-3, **kw}
    res = fit_lin(model, params, x, x_val=x_val, steps=steps, seed=0, callback=rec, **kw)
    return params, res, rec


def test_aggressive_phase_then_mi_stop_then_joint_training():
    init, res, rec = run_lin()
    h = res.history
    end = res.aggressive_end
    # the MI rule ended the aggressive phase: at the first evaluation not above the previous one
    evals = np.flatnonzero(np.isfinite(h["mi"]))
    mi = h["mi"][evals]
    first_drop = next(i for i in range(1, len(mi)) if mi[i] <= mi[i - 1])
    assert np.all(np.diff(mi[:first_drop]) > 0)
    assert end == evals[first_drop] + 1 and 0 < end < 30
    np.testing.assert_array_equal(h["aggressive"], np.arange(30) < end)
    # several encoder steps per decoder step while aggressive, none after
    assert np.all(h["inner_steps"][:end] >= 20) and np.all(h["inner_steps"][end:] == 0)
    # the recorded inner losses reproduce each count under the pure rule
    prev = ({}, init)
    for t in range(30):
        enc_events = [(info, p) for info, p in rec.events if info["step"] == t and info["phase"] == "encoder"]
        outer = [(info, p) for info, p in rec.events if info["step"] == t and info["phase"] != "encoder"]
        assert len(enc_events) == h["inner_steps"][t] and len(outer) == 1
        if t < end:
            losses = np.array([info["loss"] for info, _ in enc_events])
            assert stops_exactly_at_end(losses)
            # encoder-only steps leave the decoder untouched and move the encoder
            for _, p in enc_events:
                assert same(group(p, "dec."), group(prev[1], "dec."))
            assert not same(group(enc_events[-1][1], "enc."), group(prev[1], "enc."))
            # the outer step is a decoder step: the encoder stays where the inner loop left it
            assert outer[0][0]["phase"] == "decoder"
            assert same(group(outer[0][1], "enc."), group(enc_events[-1][1], "enc."))
            assert not same(group(outer[0][1], "dec."), group(enc_events[-1][1], "dec."))
        else:
            assert outer[0][0]["phase"] == "joint"
            for prefix in ("enc.", "dec."):
                assert not same(group(outer[0][1], prefix), group(prev[1], prefix))
        prev = outer[0]
    assert h["loss"].shape == h["inner_steps"].shape == h["mi"].shape == (30,)


def test_separate_learning_rates_and_determinism():
    """Adam's first step moves every entry by its group's lr (|m_hat / sqrt(v_hat)| = 1)."""
    init, res, rec = run_lin(steps=2, enc_lr=1e-2, dec_lr=1e-4)
    info, p = rec.events[0]
    assert info["phase"] == "encoder"
    for k, v in group(init, "enc.").items():
        np.testing.assert_allclose(np.abs(p[k] - v), 1e-2, rtol=1e-5)
    dec_event = next((i, e) for i, e in enumerate(rec.events) if e[0]["phase"] == "decoder")
    before = rec.events[dec_event[0] - 1][1]
    for k in group(init, "dec."):
        np.testing.assert_allclose(np.abs(dec_event[1][1][k] - before[k]), 1e-4, rtol=1e-5)
    again = run_lin(steps=2, enc_lr=1e-2, dec_lr=1e-4)[1]
    for k in res.params:
        np.testing.assert_array_equal(res.params[k], again.params[k])


def test_restarts_run_their_own_rules():
    init, res, rec = run_lin(restarts=3, steps=30)
    h, end = res.history, res.aggressive_end
    assert h["inner_steps"].shape == h["mi"].shape == h["loss"].shape == (30, 3)
    assert end.shape == (3,) and np.all(end > 0)
    assert len(set(end.tolist())) > 1 or len(set(map(tuple, h["inner_steps"][:end.min()].T))) > 1  # restarts differ
    for r in range(3):
        evals = np.flatnonzero(np.isfinite(h["mi"][:, r]))
        mi = h["mi"][evals, r]
        first_drop = next(i for i in range(1, len(mi)) if mi[i] <= mi[i - 1])
        assert end[r] == evals[first_drop] + 1
        np.testing.assert_array_equal(h["aggressive"][:, r], np.arange(30) < end[r])
        assert np.all(h["inner_steps"][end[r]:, r] == 0) and np.all(h["inner_steps"][:end[r], r] >= 20)
    # within a decoder step, a restart whose rule fired is frozen while the others go on
    checked = 0
    prev = init
    for t in range(30):
        enc_events = [p for info, p in rec.events if info["step"] == t and info["phase"] == "encoder"]
        outer = [p for info, p in rec.events if info["step"] == t and info["phase"] != "encoder"][0]
        counts = h["inner_steps"][t]
        losses = np.array([info["loss"] for info, _ in rec.events if info["step"] == t and info["phase"] == "encoder"])
        for r in range(3):
            at_stop = enc_events[counts[r] - 1] if counts[r] else prev
            for p in enc_events[counts[r]:]:
                for k in group(init, "enc."):
                    np.testing.assert_array_equal(p[k][r], at_stop[k][r])
                    checked += 1
            for p in enc_events:
                for k in group(init, "dec."):
                    np.testing.assert_array_equal(p[k][r], prev[k][r])
            if counts[r]:
                assert stops_exactly_at_end(losses[:counts[r], r])
            # the outer step: encoder moves only for restarts past their aggressive phase
            for k in group(init, "enc."):
                assert np.array_equal(outer[k][r], at_stop[k][r]) == bool(h["aggressive"][t, r])
        prev = outer
    assert checked > 0


def test_segmented_variant_alternates_encoder_alone_and_joint():
    x, _ = data()
    for R in (None, 2):
        model, params = model_and_params(R)
        rec = Recorder()
        res = fit_lin_segmented(model, params, x, segments=3, steps=30, seed=0, encoder_fraction=0.4,
                                batch_size=40, enc_lr=1e-2, dec_lr=1e-2, callback=rec)
        phase = np.tile(np.r_[np.zeros(4), np.ones(6)], 3)
        np.testing.assert_array_equal(res.history["phase"], phase)
        np.testing.assert_array_equal(res.history["segment"], np.repeat([0, 1, 2], 10))
        assert res.history["loss"].shape == ((30,) if R is None else (30, R))
        prev = params
        for (info, p), ph in zip(rec.events, phase):
            assert info["phase"] == ("encoder" if ph == 0 else "joint")
            assert same(group(p, "dec."), group(prev, "dec.")) == (ph == 0)
            assert not same(group(p, "enc."), group(prev, "enc."))
            prev = p


def test_bad_inputs_raise_clear_errors():
    x, x_val = data()
    model, params = model_and_params()
    with pytest.raises(ValueError, match=r"x_val must have shape \(\*, 4\)"):
        fit_lin(model, params, x, x_val=x_val[:, :3], steps=1, seed=0)
    with pytest.raises(ValueError, match="x_val must hold at least 2 points"):
        fit_lin(model, params, x, x_val=x_val[:1], steps=1, seed=0)
    with pytest.raises(ValueError, match="either optimizer or enc_lr"):
        fit_lin(model, params, x, x_val=x_val, steps=1, seed=0, optimizer=Adam(), enc_lr=1e-3)
    with pytest.raises(ValueError, match="window must be >= 1"):
        fit_lin(model, params, x, x_val=x_val, steps=1, seed=0, window=0)
    with pytest.raises(ValueError, match="mi_every must be >= 1"):
        fit_lin(model, params, x, x_val=x_val, steps=1, seed=0, mi_every=0)
    with pytest.raises(ValueError, match="batch_size must be <="):
        fit_lin(model, params, x, x_val=x_val, steps=1, seed=0, batch_size=1000)
    with pytest.raises(ValueError, match="seed must be given"):
        fit_lin(model, params, x, x_val=x_val, steps=1, seed=None)
    with pytest.raises(ValueError, match="enc_lr must be positive"):
        fit_lin(model, params, x, x_val=x_val, steps=1, seed=0, enc_lr=-1.0)
    with pytest.raises(ValueError, match=r"params must hold dec\.\* entries"):
        fit_lin(model, group(params, "enc."), x, x_val=x_val, steps=1, seed=0)
    ae = Autoencoder.from_sizes(4, 2, (3,))
    with pytest.raises(TypeError, match="no stochastic encoder"):
        fit_lin(ae, ae.init(np.random.default_rng(0)), x, x_val=x_val, steps=1, seed=0)
    with pytest.raises(ValueError, match="steps must be a multiple of segments"):
        fit_lin_segmented(model, params, x, segments=3, steps=10, seed=0)
    with pytest.raises(ValueError, match="at least one encoder-alone and one joint"):
        fit_lin_segmented(model, params, x, segments=3, steps=9, seed=0, encoder_fraction=0.1)
    with pytest.raises(ValueError, match="encoder_fraction must be <= 1"):
        fit_lin_segmented(model, params, x, segments=3, steps=9, seed=0, encoder_fraction=1.5)
    with pytest.raises(TypeError, match="optimizer must have init"):
        fit_lin_segmented(model, params, x, segments=1, steps=2, seed=0, optimizer="adam")
    # SGD is accepted as the optimizer (no Adam-specific state assumed)
    res = fit_lin(model, params, x, x_val=x_val, steps=2, seed=0, optimizer=SGD(1e-3), batch_size=40)
    assert res.history["inner_steps"].shape == (2,)


def test_frozen_restarts_keep_their_optimiser_moments():
    """The masked step behind per-restart rules: restart 1 is held, restart 0 steps exactly as unmasked."""
    from refvae.lin import _step
    x, _ = data()
    model, params = model_and_params(restarts=2)
    opt = Adam(1e-2)
    state = opt.init(params)
    noise = np.random.default_rng(0).standard_normal(model.noise_shape(params, 40))
    guard = StepGuard()
    p1, s1, _, _ = _step(model, params, state, opt, x[:40], noise, 0, {}, ("enc.",), guard)   # warm the moments
    free = _step(model, p1, s1, opt, x[40:80], noise, 1, {}, ("enc.",), guard)
    held = _step(model, p1, s1, opt, x[40:80], noise, 1, {}, ("enc.",), guard, {"enc.": np.array([True, False])})
    for k in group(params, "enc."):
        np.testing.assert_array_equal(held[0][k][0], free[0][k][0])
        np.testing.assert_array_equal(held[0][k][1], p1[k][1])
    # every per-restart leaf of the optimiser state under an encoder key, whatever the optimiser's layout
    moments = [path for path, leaf in leaves(s1) if any(k in path for k in group(params, "enc.")) and np.ndim(leaf)]
    assert moments
    for path in moments:
        np.testing.assert_array_equal(at(held[1], path)[0], at(free[1], path)[0])
        np.testing.assert_array_equal(at(held[1], path)[1], at(s1, path)[1])
        assert not np.array_equal(at(free[1], path)[1], at(s1, path)[1])


def leaves(tree, path=()):
    """(path, leaf) for every leaf of a nested dict."""
    for k, v in tree.items():
        yield from leaves(v, path + (k,)) if isinstance(v, dict) else [(path + (k,), v)]


def at(tree, path):
    for k in path:
        tree = tree[k]
    return tree


# -- runs that keep their work ------------------------------------------------------------------
class Poisoned(GaussianVAE):
    """The model of ``model_and_params`` whose loss turns NaN for one restart at one optimiser step."""

    def __init__(self, base, at, restart):
        self.__dict__.update(base.__dict__)
        self.at, self.restart, self.calls = at, restart, 0

    def value_and_grad(self, params, x, noise, **kw):
        loss, grads, terms = super().value_and_grad(params, x, noise, **kw)
        if self.calls == self.at:
            loss = np.array(loss, dtype=float)
            loss[self.restart] = np.nan
        self.calls += 1
        return loss, grads, terms


def test_callback_signature_is_fits_and_the_old_one_warns():
    x, x_val = data()
    model, params = model_and_params()
    seen = []
    res = fit_lin(model, params, x, x_val=x_val, steps=3, seed=0, batch_size=40, max_inner=4,
                  callback=lambda step, p, info: seen.append((step, info["phase"], info["inner"], sorted(info))))
    assert {s[3][0] for s in seen} and all({"loss", "recon", "kl", "sigma2", "phase", "inner"} <= set(s[3]) for s in seen)
    assert [s[0] for s in seen if s[2] == 0] == [0, 1, 2]
    old = []
    with pytest.warns(DeprecationWarning, match=r"callback\(step, params, info\)"):
        again = fit_lin(model, params, x, x_val=x_val, steps=3, seed=0, batch_size=40, max_inner=4,
                        callback=lambda info, p: old.append((info["step"], info["phase"], info["inner"])))
    assert old == [s[:3] for s in seen]
    np.testing.assert_array_equal(again.history["loss"], res.history["loss"])


def test_ctrl_c_keeps_the_finished_steps():
    x, x_val = data()
    model, params = model_and_params(restarts=2)
    kept = {}

    def press(step, p, info):
        kept.update(p)
        if step == 3 and info["inner"] == 0:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as info:
        fit_lin(model, params, x, x_val=x_val, steps=10, seed=0, batch_size=40, max_inner=4, callback=press)
    res = info.value.result
    assert isinstance(res, LINResult) and res.step == 4 and res.history["mi"].shape == (4, 2)
    assert same(res.params, kept)
    full = fit_lin(model, params, x, x_val=x_val, steps=4, seed=0, batch_size=40, max_inner=4)
    assert same(res.params, full.params) and res.history.keys() == full.history.keys()
    for k in res.history:
        np.testing.assert_array_equal(res.history[k], full.history[k])       # NaN where I_q was not estimated
    # and the segmented variant
    with pytest.raises(TrainingInterrupted) as info:
        fit_lin_segmented(model, params, x, segments=2, steps=10, seed=0, batch_size=40,
                          callback=lambda step, p, i: step == 6 and press(3, p, {"inner": 0}))
    assert info.value.result.step == 7 and info.value.result.history["phase"].shape == (7,)


def test_a_diverging_restart_is_isolated_or_raises():
    x, x_val = data()
    base, params = model_and_params(restarts=3)
    trail = []
    kw = dict(x_val=x_val, steps=6, seed=0, batch_size=40, max_inner=4,
              callback=lambda step, p, info: trail.append({k: v.copy() for k, v in p.items()}))
    res = fit_lin(Poisoned(base, 5, 1), params, x, on_divergence="isolate", **kw)
    assert [(d.restart, d.step, d.quantity) for d in res.diverged] == [(1, 5, "loss")]
    frozen = trail[4]                                       # the parameters after optimiser step 4
    assert all(np.array_equal(res.params[k][1], frozen[k][1]) for k in params)
    assert not np.array_equal(res.params["dec.0.W"][0], frozen["dec.0.W"][0])   # the others trained on
    assert np.isnan(res.history["loss"][-1, 1]) and np.isfinite(res.history["loss"][-1, [0, 2]]).all()
    trail.clear()
    with pytest.raises(TrainingDiverged, match=r"step 5: loss \(restart 1\) is non-finite") as info:
        fit_lin(Poisoned(base, 5, 1), params, x, **kw)
    assert isinstance(info.value.result, LINResult) and same(info.value.params, trail[4])


def test_no_steps_still_has_the_history_keys():
    x, x_val = data()
    model, params = model_and_params(restarts=2)
    res = fit_lin(model, params, x, x_val=x_val, steps=0, seed=0)
    assert {"loss", "recon", "kl", "sigma2", "beta", "inner_steps", "aggressive", "mi"} <= set(res.history)
    assert res.history["mi"].shape == (0, 2) and res.history["loss"].shape == (0, 2)
    res = fit_lin_segmented(model, params, x, segments=1, steps=0, seed=0)
    assert res.history["loss"].shape == (0, 2) and res.history["phase"].shape == (0,)

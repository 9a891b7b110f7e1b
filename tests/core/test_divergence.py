"""Divergence: the step and quantity named, the last finite state carried, one restart isolated (refvae.train)."""
import numpy as np
import pytest

from refvae.objectives import GaussianVAE
from refvae.optim import Adam
from refvae.train import (Divergence, TrainingDiverged, divergence_policy, fit, fit_stages, resolve_policy)

X = np.random.default_rng(0).standard_normal((40, 2)) @ np.array([[1.0, 0.5], [0.0, 0.4]])
MODEL = GaussianVAE.from_sizes(2, 1, (5,), obs="scalar")


class Poisoned:
    """MODEL whose loss (``what="loss"``) or gradient of ``dec.0.W`` (``what="grads"``) turns non-finite
    at one step, for one restart (or the whole model)."""

    def __init__(self, at, what="loss", restart=None):
        self.at, self.what, self.restart, self.calls = at, what, restart, 0

    def noise_shape(self, *args):
        return MODEL.noise_shape(*args)

    def value_and_grad(self, params, x, noise, **kw):
        loss, grads, terms = MODEL.value_and_grad(params, x, noise, **kw)
        if self.calls == self.at:
            r = () if self.restart is None else self.restart
            if self.what == "loss":
                loss = np.array(loss, dtype=float)
                loss[r] = np.nan
            else:
                g = grads["dec.0.W"].copy()
                g[r] = np.inf
                grads = {**grads, "dec.0.W": g}
        self.calls += 1
        return loss, grads, terms


def run(model, steps=10, restarts=None, **kw):
    return fit(model, MODEL.init(1, restarts), X, steps=steps, seed=2, batch_size=10, optimizer=Adam(1e-2), **kw)


def assert_params_equal(a, b, restart=None):
    for k in a:
        np.testing.assert_array_equal(a[k] if restart is None else a[k][restart],
                                      b[k] if restart is None else b[k][restart], err_msg=k)


@pytest.mark.parametrize("what, at, steps", [("loss", 4, 10), ("grads", 4, 10), ("grads", 9, 10)])
def test_diverged_carries_the_last_finite_state_and_names_step_and_quantity(what, at, steps):
    with pytest.raises(TrainingDiverged) as info:
        run(Poisoned(at, what), steps)
    err = info.value
    assert err.step == at and err.restart is None
    assert err.quantity == ("loss" if what == "loss" else "grads['dec.0.W']")
    assert f"step {at}: {err.quantity} is non-finite" in str(err)
    clean = run(MODEL, steps=at)                          # the run up to the step that diverged
    assert err.result.step == at and err.result.history["loss"].shape == (at,)
    assert_params_equal(err.params, clean.params)
    assert_params_equal(err.state["m"] if "m" in err.state else {}, clean.state["m"] if "m" in clean.state else {})
    np.testing.assert_array_equal(err.result.history["loss"], clean.history["loss"])


@pytest.mark.parametrize("what", ["loss", "grads"])
def test_isolating_a_restart_leaves_the_others_bitwise_unchanged(what):
    clean = run(MODEL, restarts=3)
    res = run(Poisoned(4, what, restart=1), restarts=3, on_divergence="isolate")
    assert res.diverged == (Divergence(1, 4, "loss" if what == "loss" else "grads['dec.0.W']"),)
    for r in (0, 2):
        assert_params_equal(res.params, clean.params, r)
        np.testing.assert_array_equal(res.history["loss"][:, r], clean.history["loss"][:, r])
    # restart 1 stays at its last finite parameters: those after its first 4 steps
    assert_params_equal(res.params, run(MODEL, steps=4, restarts=3).params, 1)
    first_nan = 4 if what == "loss" else 5               # a bad update is seen at the next step's loss
    assert np.isfinite(res.history["loss"][:first_nan, 1]).all() and np.isnan(res.history["loss"][first_nan:, 1]).all()
    assert np.isnan(res.history["kl"][first_nan:, 1]).all()


def test_isolation_inside_fit_stages_averaging_and_the_policy_context():
    kw = dict(stages=[(1e-2, 6), (1e-3, 6)], seed=2, batch_size=10, average=5)
    clean = fit_stages(MODEL, MODEL.init(1, 3), X, **kw)
    assert resolve_policy(None) == "raise"
    with divergence_policy("isolate"):
        assert resolve_policy(None) == "isolate"
        with divergence_policy("raise"):
            assert resolve_policy(None) == "raise"
        res = fit_stages(Poisoned(9, "grads", restart=2), MODEL.init(1, 3), X, **kw)  # inside the averaged window
        with pytest.raises(TrainingDiverged, match="restart 2"):
            fit_stages(Poisoned(9, "grads", restart=2), MODEL.init(1, 3), X, on_divergence="raise", **kw)
    assert resolve_policy(None) == "raise"
    assert res.diverged == (Divergence(2, 9, "grads['dec.0.W']"),)
    for r in (0, 1):
        assert_params_equal(res.params, clean.params, r)
    assert all(np.isfinite(v).all() for v in res.params.values())
    with pytest.raises(ValueError, match="policy must be one of"):
        with divergence_policy("ignore"):
            pass
    with pytest.raises(ValueError, match="on_divergence must be one of"):
        run(MODEL, on_divergence="skip")


class PoisonedUnchecked(Poisoned):
    """``Poisoned`` with an unchecked entry point, as refvae's objectives have: fit's later steps then
    skip the optimiser's checks too (``Ring.update_unchecked``)."""

    def value_and_grad_unchecked(self, params, x, noise, **kw):
        return self.value_and_grad(params, x, noise, **kw)


@pytest.mark.parametrize("what, at", [("loss", 4), ("grads", 4), ("grads", 9)])
def test_the_last_finite_state_through_the_ring_is_the_plain_updates(what, at):
    """fit writes each step into one of three packed copies (refvae.optim.Ring): the last finite point
    it rolls back to, raising or isolating, is bitwise the one the plain ``update`` path keeps."""
    from tests.core.test_fast_paths import PlainAdam, assert_runs_equal
    errors = []
    for opt in (PlainAdam, Adam):
        with pytest.raises(TrainingDiverged) as info:
            fit(PoisonedUnchecked(at, what), MODEL.init(1), X, steps=10, seed=2, batch_size=10, optimizer=opt(1e-2))
        errors.append(info.value)
    assert [(e.step, e.quantity) for e in errors] == [(errors[0].step, errors[0].quantity)] * 2
    assert_runs_equal(errors[0].result, errors[1].result)
    runs = [fit(PoisonedUnchecked(at, what, restart=1), MODEL.init(1, 3), X, steps=10, seed=2, batch_size=10,
                optimizer=opt(1e-2), on_divergence="isolate") for opt in (PlainAdam, Adam)]
    assert runs[1].diverged == (Divergence(1, at, "loss" if what == "loss" else "grads['dec.0.W']"),)
    assert_runs_equal(runs[0], runs[1])


def test_isolate_raises_without_restarts_or_when_every_restart_diverged():
    with pytest.raises(TrainingDiverged, match="step 3: loss is non-finite"):
        run(Poisoned(3), on_divergence="isolate")

    class AllDiverge(Poisoned):
        def value_and_grad(self, params, x, noise, **kw):
            loss, grads, terms = super().value_and_grad(params, x, noise, **kw)
            return (loss * np.nan if self.calls > 6 else loss), grads, terms

    with pytest.raises(TrainingDiverged) as info:
        run(AllDiverge(3, restart=0), restarts=2, on_divergence="isolate")
    res = info.value.result
    assert [d.restart for d in res.diverged] == [0, 1] and [d.step for d in res.diverged] == [3, 6]
    assert_params_equal(res.params, run(MODEL, steps=3, restarts=2).params, 0)
    assert_params_equal(res.params, run(MODEL, steps=6, restarts=2).params, 1)


def test_entry_checks_name_non_finite_parameters_before_any_work():
    params = MODEL.init(1)
    calls = []
    for bad, msg in ((np.nan, "must be finite"), (np.inf, "must be finite")):
        with pytest.raises(ValueError, match=r"params\['dec.0.b'\] " + msg):
            fit(MODEL, {**params, "dec.0.b": params["dec.0.b"] + bad}, X, steps=3, seed=0,
                callback=lambda *a: calls.append(1))
    assert calls == []


def test_errors_survive_pickling_whole():
    """verify --jobs runs claims in worker processes: their errors must reach the parent with their results."""
    import pickle
    with pytest.raises(TrainingDiverged) as info:
        run(Poisoned(3, restart=1), restarts=2)
    again = pickle.loads(pickle.dumps(info.value))
    assert (again.step, again.quantity, again.restart, str(again)) == (3, "loss", 1, str(info.value))
    assert_params_equal(again.params, info.value.params)
    from refvae.train import TrainingInterrupted
    interrupted = pickle.loads(pickle.dumps(TrainingInterrupted(info.value.result)))
    assert isinstance(interrupted, KeyboardInterrupt) and interrupted.result.step == 3

"""fit_libi keeps its work: one callback signature, Ctrl-C, divergence (raise or isolate per restart)."""
import numpy as np
import pytest

from refvae.libi import LiBIResult, fit_libi
from refvae.objectives import GaussianVAE
from refvae.train import FitResult, TrainingDiverged, TrainingInterrupted

X = np.random.default_rng(0).standard_normal((40, 2)) @ np.array([[1.0, 0.3], [0.0, 0.6]])
VAE = GaussianVAE.from_sizes(2, 1, (5,), obs="scalar")
KW = dict(eps_hz=1.0, eps_sigma=0.5, eps_mu=0.5, step1_steps=4, step2_steps=4, seed=3, n_is_samples=8)


class PoisonedVAE(GaussianVAE):
    """VAE whose -ELBO (LiBI's step 2) turns NaN for restart 1 at its ``at``-th evaluation."""

    def __init__(self, at):
        self.__dict__.update(VAE.__dict__)
        self.at, self.calls = at, 0

    def value_and_grad(self, params, x, noise, **kw):
        loss, grads, terms = super().value_and_grad(params, x, noise, **kw)
        if self.calls == self.at:
            loss = np.array(loss)
            loss[1] = np.nan
        self.calls += 1
        return loss, grads, terms


def test_callback_sees_repetition_and_phase_and_can_stop():
    seen = []
    res = fit_libi(VAE, X, X[:10], repetitions=2, **KW,
                   callback=lambda t, p, info: seen.append((info["repetition"], info["phase"], t)) or
                   (info["repetition"] == 1 and info["phase"] == "step1" and t == 1))
    assert seen[:8] == [(0, "step1", t) for t in range(4)] + [(0, "step2", t) for t in range(4)]
    assert seen[8:] == [(1, "step1", 0), (1, "step1", 1)]
    assert isinstance(res, LiBIResult) and res.log_likelihoods.shape == (1,) and res.best_repetition == 0
    assert res.histories[1]["step1"]["loss"].shape == (2,) and "step2" not in res.histories[1]


def test_ctrl_c_keeps_the_finished_repetitions_and_the_last_step():
    full = fit_libi(VAE, X, X[:10], repetitions=1, restarts=2, **KW)
    kept = {}

    def press(t, p, info):
        kept.update(p)
        if info["repetition"] == 1 and info["phase"] == "step2" and t == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as info:
        fit_libi(VAE, X, X[:10], repetitions=3, restarts=2, **KW, callback=press)
    res = info.value.result
    assert isinstance(res, LiBIResult) and isinstance(info.value.__cause__.result, FitResult)
    np.testing.assert_array_equal(res.log_likelihoods, full.log_likelihoods)     # repetition 0, finished
    assert all(np.array_equal(res.last_params[k], kept[k]) for k in kept)
    assert res.histories[1]["step2"]["loss"].shape == (3, 2)
    # interrupted before any repetition finished: no best yet, the last parameters kept
    with pytest.raises(TrainingInterrupted) as info:
        fit_libi(VAE, X, X[:10], repetitions=2, restarts=2, **KW,
                 callback=lambda t, p, i: (_ for _ in ()).throw(KeyboardInterrupt) if t == 1 else None)
    res = info.value.result
    assert res.log_likelihoods.shape == (0, 2) and (res.best_repetition == -1).all()
    assert np.isnan(res.best_log_likelihood).all()


def test_a_diverging_restart_is_not_scored_or_the_run_raises():
    res = fit_libi(PoisonedVAE(2), X, X[:10], repetitions=2, restarts=2, on_divergence="isolate", **KW)
    assert [(r, ph, d.restart, d.step) for r, ph, d in res.diverged] == [(0, "step2", 1, 2)]
    assert np.isnan(res.log_likelihoods[0, 1]) and np.isfinite(res.log_likelihoods[1]).all()
    assert res.best_repetition[1] == 1                       # its repetition 0 is never its best
    assert all(np.isfinite(v).all() for v in res.params.values())
    with pytest.raises(TrainingDiverged, match=r"step 2: loss \(restart 1\) is non-finite") as info:
        fit_libi(PoisonedVAE(2), X, X[:10], repetitions=2, restarts=2, **KW)
    assert isinstance(info.value.result, LiBIResult) and isinstance(info.value.__cause__.result, FitResult)
    assert info.value.__cause__.result.step == 2
    assert all(np.array_equal(info.value.result.last_params[k], info.value.__cause__.params[k])
               for k in info.value.__cause__.params)

"""Runs that keep their work: bitwise resume from checkpoints, atomic writes, clear errors for bad files."""
import os
import shutil

import numpy as np
import numpy.lib.format
import pytest

from refvae.iwae import IWAE
from refvae.objectives import GaussianVAE
from refvae.optim import SGD, Adam
from refvae.train import (CheckpointError, FitResult, TrainingInterrupted, fit, fit_stages, linear_ramp,
                          load_checkpoint, load_params, save_checkpoint, save_params)


def data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 2)) @ np.array([[1.0, 0.4], [0.0, 0.3]])


MODEL = GaussianVAE.from_sizes(2, 1, (6,), obs="scalar")
X = data()


def assert_tree_equal(a, b, path="state"):
    """Same nesting, same leaf types (an int step count stays an int) and bitwise-equal values."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            assert_tree_equal(a[k], b[k], f"{path}[{k!r}]")
    else:
        assert type(a) is type(b), (path, type(a), type(b))
        np.testing.assert_array_equal(a, b, err_msg=path)


def assert_same_run(a, b):
    assert a.step == b.step
    assert_tree_equal(a.params, b.params, "params")
    assert_tree_equal(a.state, b.state, "state")
    assert a.history.keys() == b.history.keys()
    for k in a.history:
        np.testing.assert_array_equal(a.history[k], b.history[k], err_msg=k)


def interrupt_at(step, also=None):
    """A callback that presses Ctrl-C after ``step`` (and calls ``also(step)`` first at every step)."""
    def callback(t, params, info):
        if also is not None:
            also(t)
        if t == step:
            raise KeyboardInterrupt
    return callback


RUNS = {
    "fit": lambda **kw: fit(MODEL, MODEL.init(1, restarts=2), X, steps=30, seed=3, batch_size=16, n_samples=2,
                            optimizer=Adam(1e-2), schedules={"beta": linear_ramp(0.2, 1.0, 10)}, **kw),
    # three stages, the last 10 steps averaged, momentum SGD with a group rate
    "fit_stages": lambda **kw: fit_stages(MODEL, MODEL.init(1, restarts=2), X, seed=3, batch_size=20,
                                          stages=[(1e-2, 12), (3e-3, 10), (1e-3, 8)], average=10,
                                          optimizer=SGD(1.0, momentum=0.5, group_lr={"dec.": 2.0}), **kw),
}
RESUME = {
    "fit": lambda resume, **kw: fit(MODEL, None, X, steps=30, seed=None, batch_size=16, n_samples=2,
                                    optimizer=Adam(1e-2), schedules={"beta": linear_ramp(0.2, 1.0, 10)},
                                    resume=resume, **kw),
    "fit_stages": lambda resume, **kw: fit_stages(MODEL, None, X, seed=None, batch_size=20,
                                                  stages=[(1e-2, 12), (3e-3, 10), (1e-3, 8)], average=10,
                                                  optimizer=SGD(1.0, momentum=0.5, group_lr={"dec.": 2.0}),
                                                  resume=resume, **kw),
}


@pytest.mark.parametrize("kind", ["fit", "fit_stages"])
@pytest.mark.parametrize("stop", [11, 24])      # at the first stage boundary (12 steps done); inside the averaging
def test_resume_is_bitwise_identical_to_an_uninterrupted_run(tmp_path, kind, stop):
    full = RUNS[kind]()
    path, early = tmp_path / "run.npz", tmp_path / "at10.npz"

    def keep_the_periodic_checkpoint(t):
        if t == 10:                                     # the file then holds the run after 10 steps
            shutil.copy(path, early)

    with pytest.raises(TrainingInterrupted) as info:
        RUNS[kind](checkpoint=path, checkpoint_every=5, callback=interrupt_at(stop, keep_the_periodic_checkpoint))
    assert isinstance(info.value, KeyboardInterrupt)
    assert info.value.result.step == stop + 1
    # from the exception's result, from the file written on Ctrl-C and from the periodic one
    assert load_checkpoint(early, MODEL).step == 10
    for resume in (info.value.result, path, early):
        assert_same_run(RESUME[kind](resume), full)


def test_interrupted_result_is_the_run_after_its_last_finished_step():
    with pytest.raises(TrainingInterrupted) as info:
        RUNS["fit"](callback=interrupt_at(6))
    res = info.value.result
    short = fit(MODEL, MODEL.init(1, restarts=2), X, steps=7, seed=3, batch_size=16, n_samples=2,
                optimizer=Adam(1e-2), schedules={"beta": linear_ramp(0.2, 1.0, 10)})
    assert_same_run(res, short)
    assert "after 7 finished steps" in str(info.value)


def test_ctrl_c_inside_a_step_keeps_the_finished_ones(tmp_path):
    """Ctrl-C while the objective runs: the unfinished step is dropped, the run resumes exactly."""
    class Slow:
        calls = 0

        def noise_shape(self, *args):
            return MODEL.noise_shape(*args)

        def value_and_grad(self, *args, **kw):
            Slow.calls += 1
            if Slow.calls == 10:
                raise KeyboardInterrupt
            return MODEL.value_and_grad(*args, **kw)

    p0 = MODEL.init(2)
    with pytest.raises(TrainingInterrupted) as info:
        fit(Slow(), p0, X, steps=20, seed=5, batch_size=8, optimizer=Adam(1e-2))
    assert info.value.result.step == 9 and info.value.result.history["loss"].shape == (9,)
    resumed = fit(Slow(), None, X, steps=20, seed=None, batch_size=8, optimizer=Adam(1e-2),
                  resume=info.value.result)
    assert_same_run(resumed, fit(MODEL, p0, X, steps=20, seed=5, batch_size=8, optimizer=Adam(1e-2)))


def test_ctrl_c_inside_the_optimisers_step_keeps_the_finished_ones():
    """Ctrl-C while the optimiser writes a step (into a copy of the parameters no finished step uses):
    the run after its finished steps, and the one before it, are intact; the run resumes exactly."""
    class Interrupting(Adam):
        calls = 0

        def _step_into(self, *args):
            super()._step_into(*args)
            Interrupting.calls += 1
            if Interrupting.calls == 7:                  # the 7th step written but not finished
                raise KeyboardInterrupt

    p0 = MODEL.init(2, restarts=2)
    with pytest.raises(TrainingInterrupted) as info:
        fit(MODEL, p0, X, steps=12, seed=5, batch_size=8, optimizer=Interrupting(1e-2))
    assert Interrupting.ring(Interrupting(), p0) is not None    # the step went through a ring
    res = info.value.result
    assert_same_run(res, fit(MODEL, p0, X, steps=6, seed=5, batch_size=8, optimizer=Adam(1e-2)))
    resumed = fit(MODEL, None, X, steps=12, seed=None, batch_size=8, optimizer=Interrupting(1e-2), resume=res)
    assert_same_run(resumed, fit(MODEL, p0, X, steps=12, seed=5, batch_size=8, optimizer=Adam(1e-2)))


def test_resume_checks_the_arguments_and_the_model(tmp_path):
    path = tmp_path / "run"                               # .npz is appended, as numpy.savez does
    res = fit(MODEL, MODEL.init(0), X, steps=4, seed=0, checkpoint=path)
    assert os.path.exists(str(path) + ".npz")
    assert_same_run(load_checkpoint(path, MODEL), res)
    with pytest.raises(ValueError, match="params and seed must be None when resuming"):
        fit(MODEL, MODEL.init(0), X, steps=8, seed=None, resume=path)
    with pytest.raises(ValueError, match="batch_size is 8 but the checkpointed run used 48"):
        fit(MODEL, None, X, steps=8, seed=None, batch_size=8, resume=path)
    with pytest.raises(ValueError, match="resume: data"):
        fit(MODEL, None, X + 1.0, steps=8, seed=None, resume=path)
    with pytest.raises(ValueError, match="resume: optimizer"):
        fit(MODEL, None, X, steps=8, seed=None, optimizer=Adam(1e-2), resume=path)
    with pytest.raises(ValueError, match="steps must be >= the 4 steps"):
        fit(MODEL, None, X, steps=3, seed=None, resume=path)
    with pytest.raises(CheckpointError, match=r"run.npz was written for another model: model.decoder is "
                                              r"'Sequential\(Linear\(2, 6\)"):
        load_checkpoint(path, GaussianVAE.from_sizes(2, 2, (6,), obs="scalar"))
    with pytest.raises(CheckpointError, match=r"model.beta is 0.5 here but 1.0 in the checkpoint"):
        load_checkpoint(path, GaussianVAE.from_sizes(2, 1, (6,), obs="scalar", beta=0.5))
    with pytest.raises(CheckpointError, match="model.class"):
        load_checkpoint(path, IWAE(MODEL))
    with pytest.raises(TypeError, match="resume must be a checkpoint path or a FitResult"):
        fit(MODEL, None, X, steps=8, seed=None, resume=FitResult(res.params, res.history, res.state))
    # a longer run continues the same one: the resumed 8 steps equal 8 uninterrupted steps
    assert_same_run(fit(MODEL, None, X, steps=8, seed=None, resume=path),
                    fit(MODEL, MODEL.init(0), X, steps=8, seed=0))


def test_steps_zero_history_has_its_keys():
    for R, shape in ((None, (0,)), (3, (0, 3))):
        res = fit(MODEL, MODEL.init(0, R), X, steps=0, seed=0)
        assert set(res.history) == {"loss", "recon", "kl", "sigma2", "beta"}
        assert res.history["loss"].shape == shape and res.history["beta"].shape == (0,)
        assert res.step == 0
    res = fit_stages(MODEL, MODEL.init(0), X, stages=[(1e-2, 0), (1e-3, 0)], seed=0)
    assert res.history["kl"].shape == (0,)
    rng = np.random.default_rng(4)
    fit(MODEL, MODEL.init(0), X, steps=0, seed=rng, batch_size=8)
    assert rng.bit_generator.state == np.random.default_rng(4).bit_generator.state   # no number drawn


def test_a_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "run.npz"
    first = fit(MODEL, MODEL.init(0), X, steps=3, seed=0)
    save_checkpoint(path, MODEL, first)
    save_params(tmp_path / "params.npz", first.params)
    before = {name: (tmp_path / name).read_bytes() for name in ("run.npz", "params.npz")}
    second = fit(MODEL, MODEL.init(1), X, steps=5, seed=1)
    write_array = numpy.lib.format.write_array
    for failure in (OSError("disk full (simulated)"), KeyboardInterrupt()):
        written = []

        def failing(*args, **kwargs):             # the third array of the archive fails midway
            written.append(1)
            if len(written) == 3:
                raise failure
            return write_array(*args, **kwargs)

        monkeypatch.setattr(numpy.lib.format, "write_array", failing)
        with pytest.raises(type(failure)):
            save_checkpoint(path, MODEL, second)
        written.clear()
        with pytest.raises(type(failure)):
            save_params(tmp_path / "params.npz", second.params)
        monkeypatch.setattr(numpy.lib.format, "write_array", write_array)
        assert sorted(os.listdir(tmp_path)) == ["params.npz", "run.npz"]        # no temporary file left behind
        assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert_same_run(load_checkpoint(path, MODEL), first)
    assert_tree_equal(load_params(tmp_path / "params.npz"), first.params)


def test_object_arrays_and_other_leaves_are_refused_at_save_time(tmp_path):
    res = fit(MODEL, MODEL.init(0), X, steps=2, seed=0)
    bad = FitResult(res.params, {**res.history, "note": np.array([{"a": 1}], dtype=object)}, res.state, 2)
    with pytest.raises(TypeError, match=r"result.history\['note'\] must be a numeric array to be saved, got dtype object"):
        save_checkpoint(tmp_path / "x.npz", MODEL, bad)
    bad = FitResult(res.params, res.history, {**res.state, "extra": {"k": object()}}, 2)
    with pytest.raises(TypeError, match=r"result.state\['extra'\]\['k'\] must hold arrays, numbers"):
        save_checkpoint(tmp_path / "x.npz", MODEL, bad)
    with pytest.raises(TypeError, match=r"params\['a'\] must be a numeric array to be saved, got dtype object"):
        save_params(tmp_path / "p.npz", {"a": np.array([None, 1.0], dtype=object)})
    with pytest.raises(TypeError, match=r"params\['a'\] must be a numeric array to be saved, got dtype <U1"):
        save_params(tmp_path / "p.npz", {"a": np.array(["x"])})
    with pytest.raises(ValueError, match=r"result.params\['dec.0.b'\] must be finite"):
        save_checkpoint(tmp_path / "x.npz", MODEL, FitResult({**res.params, "dec.0.b": res.params["dec.0.b"] * np.nan},
                                                             res.history, res.state, 2))
    with pytest.raises(TypeError, match="params must be a non-empty dict of arrays"):
        save_params(tmp_path / "p.npz", {})
    with pytest.raises(TypeError, match="path must be a file path"):
        save_params(None, res.params)
    assert os.listdir(tmp_path) == []                     # nothing was written


def bad_files(folder):
    """name -> a file refvae must refuse with one clear error."""
    np.savez(folder / "good.npz", a=np.ones(3))
    good = (folder / "good.npz").read_bytes()
    (folder / "text.npz").write_text("not an archive at all")
    (folder / "truncated.npz").write_bytes(good[: len(good) // 2])
    corrupt = bytearray(good)
    corrupt[len(good) // 2] ^= 0xFF
    (folder / "corrupted.npz").write_bytes(bytes(corrupt))
    np.savez(folder / "objects.npz", a=np.array([{"x": 1}], dtype=object))
    np.savez(folder / "empty.npz")
    np.save(folder / "array.npy", np.ones(3))
    os.replace(folder / "array.npy", folder / "single.npz")
    return ["text", "truncated", "corrupted", "objects", "empty", "single"]


def test_bad_files_get_one_clear_error_that_never_suggests_unpickling(tmp_path):
    for name in bad_files(tmp_path):
        for load in (load_params, lambda p: load_checkpoint(p, MODEL)):
            with pytest.raises(CheckpointError) as info:
                load(tmp_path / f"{name}.npz")
            message = str(info.value)
            assert f"{name}.npz" in message and "pickle" not in message, message
            assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)
    assert "holds an object array" in str(pytest.raises(CheckpointError, load_params, tmp_path / "objects.npz").value)
    assert "empty" in str(pytest.raises(CheckpointError, load_params, tmp_path / "empty.npz").value)
    with pytest.raises(CheckpointError, match="not a refvae checkpoint .no manifest"):
        load_checkpoint(tmp_path / "good.npz", MODEL)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_params(tmp_path / "missing.npz")


def test_checkpoint_folder_is_checked_before_any_work(tmp_path):
    calls = []
    with pytest.raises(FileNotFoundError, match="checkpoint folder .* does not exist"):
        fit(MODEL, MODEL.init(0), X, steps=5, seed=0, checkpoint=tmp_path / "no" / "run.npz",
            callback=lambda *a: calls.append(1))
    with pytest.raises(ValueError, match="checkpoint_every needs a checkpoint path"):
        fit(MODEL, MODEL.init(0), X, steps=5, seed=0, checkpoint_every=2)
    with pytest.raises(ValueError, match="checkpoint_every must be >= 1"):
        fit(MODEL, MODEL.init(0), X, steps=5, seed=0, checkpoint=tmp_path / "r.npz", checkpoint_every=0)
    assert calls == [] and os.listdir(tmp_path) == []


def test_load_params_reads_old_files_and_checkpoints(tmp_path):
    params = MODEL.init(0, restarts=3)
    np.savez(tmp_path / "plain.npz", **params)                   # a file written before checkpoints existed
    assert_tree_equal(load_params(tmp_path / "plain.npz"), params, "params")
    res = fit(MODEL, params, X, steps=2, seed=0)
    save_checkpoint(tmp_path / "run.npz", MODEL, res)
    assert_tree_equal(load_params(tmp_path / "run.npz"), res.params, "params")


def test_m2_fit_keeps_its_work_and_resumes(tmp_path):
    from refvae.m2 import M2
    m2 = M2.from_sizes(2, 1, 2, (4,), obs="scalar")
    labels = np.where(np.arange(len(X)) % 3 == 0, np.arange(len(X)) % 2, -1)
    kw = dict(steps=12, batch_size=16, optimizer=Adam(1e-2))
    full = m2.fit(m2.init(0, restarts=2), X, labels, seed=4, **kw)
    with pytest.raises(TrainingInterrupted) as info:
        m2.fit(m2.init(0, restarts=2), X, labels, seed=4, checkpoint=tmp_path / "m2", callback=interrupt_at(5), **kw)
    assert info.value.result.step == 6 and set(info.value.result.history) >= {"unlabelled", "labelled", "classifier"}
    assert_same_run(m2.fit(None, X, labels, seed=None, resume=tmp_path / "m2", **kw), full)
    with pytest.raises(ValueError, match="resume: data"):                     # other labels: other packed data
        m2.fit(None, X, np.full(len(X), -1), seed=None, resume=tmp_path / "m2", **kw)


def test_a_save_failing_on_ctrl_c_still_hands_back_the_run(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(numpy.lib.format, "write_array", broken)
    with pytest.warns(UserWarning, match="could not be saved .* disk full"):
        with pytest.raises(TrainingInterrupted) as info:
            RUNS["fit"](checkpoint=tmp_path / "run.npz", callback=interrupt_at(3))
    assert info.value.result.step == 4 and os.listdir(tmp_path) == []

"""Training: minibatch loop, schedules, divergence stop, saving and loading parameters.

``fit`` draws every random number (minibatches, noise) from one seeded
``numpy.random.Generator``, so the same seed gives bitwise-identical training on NumPy.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np

from . import _checks
from .backend import make_rng, normal, to_device, to_host, tree_to_host, xp_of
from .optim import Adam


class TrainingDiverged(FloatingPointError):
    """Raised when a loss, gradient or parameter turns non-finite; names the step and quantity."""

    def __init__(self, step, quantity, value=None):
        self.step, self.quantity = step, quantity
        super().__init__(f"training diverged at step {step}: {quantity} is non-finite"
                         + ("" if value is None else f" ({value})"))


def _finite(a):
    return bool(xp_of(a).isfinite(a).all()) if hasattr(a, "shape") else bool(np.isfinite(a))


def check_finite(step, loss, grads=None, params=None, where=""):
    """Raise ``TrainingDiverged`` naming the first non-finite quantity."""
    if not _finite(loss):
        raise TrainingDiverged(step, f"loss{where}", to_host(loss))
    for name, tree in (("grads", grads), ("params", params)):
        for k, v in (tree or {}).items():
            if not _finite(v):
                raise TrainingDiverged(step, f"{name}[{k!r}]{where}")


# -- schedules: callables step -> value, passed to value_and_grad by keyword -----------
def linear_ramp(start, end, steps):
    """t -> start + (end - start) * min(t / steps, 1): KL annealing ("warm-start") from beta0 to beta."""
    start, end = _checks.scalar("start", start), _checks.scalar("end", end)
    steps = _checks.integer("steps", steps, min_value=1)
    return lambda t: start + (end - start) * min(t / steps, 1.0)


def from_trajectory(values):
    """t -> values[min(t, len - 1)]: replay a recorded trajectory (e.g. LS-VAE's sigma2) as a schedule."""
    values = np.asarray(_checks.array("values", values, ndim=1))
    if values.size == 0:
        raise ValueError("values must not be empty")
    return lambda t: float(values[min(t, values.size - 1)])


def minibatches(rng, n, batch_size):
    """Endless index batches of size ``batch_size``: a fresh permutation each epoch.

    rng : numpy.random.Generator; n : int >= 1 points; batch_size : int >= 1 (>= n: every batch is
    all points in order). An epoch's last n mod batch_size points of the permutation are skipped.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    n = _checks.integer("n", n, min_value=1)
    batch_size = _checks.integer("batch_size", batch_size, min_value=1)
    return _minibatches(rng, n, batch_size)


def _minibatches(rng, n, batch_size):
    if batch_size >= n:
        while True:
            yield np.arange(n)
    while True:
        perm = rng.permutation(n)
        for i in range(0, n - batch_size + 1, batch_size):
            yield perm[i:i + batch_size]


def gradient_step(model, params, state, optimizer, xb, noise, step, *, only=None, **overrides):
    """One optimiser step on ``model.value_and_grad``, with the divergence checks.

    Returns (params, state, loss, terms).
    """
    loss, grads, terms = model.value_and_grad(params, xb, noise, with_terms=True, **overrides)
    check_finite(step, loss, grads)
    params, state = optimizer.update(params, grads, state, only=only)
    check_finite(step, loss, params={k: params[k] for k in grads}, where=" after the update")
    return params, state, loss, terms


def check_loop_args(x, steps, batch_size, n_samples):
    """Validate the arguments every training loop shares; returns (x, steps, batch_size, n_samples).

    x : (N, d) finite data; steps : int >= 0; batch_size : None (= N) or int in 1..N;
    n_samples : None or int >= 1.
    """
    x = _checks.array("x", x, ndim=2)
    steps = _checks.integer("steps", steps, min_value=0)
    n = x.shape[0]
    batch_size = n if batch_size is None else _checks.integer("batch_size", batch_size, min_value=1)
    if batch_size > n:
        raise ValueError(f"batch_size must be <= the number of data points {n}, got {batch_size}")
    return x, steps, batch_size, _checks.integer("n_samples", n_samples, min_value=1, allow_none=True)


@dataclass
class FitResult:
    """``params``: trained parameters; ``history``: dict of arrays (steps, ...) of the loss terms;
    ``state``: the optimiser state (to resume)."""
    params: dict
    history: dict
    state: dict


def _progress(stream, step, steps, loss, terms):
    loss = np.atleast_1d(to_host(loss))
    parts = [f"step {step}/{steps}", f"loss {loss.mean():.4f}"]
    for k in ("recon", "kl", "sigma2"):
        if k in terms:
            parts.append(f"{k} {np.mean(to_host(terms[k])):.4g}")
    stream.write("\r" + "  ".join(parts) + " " * 4)
    stream.flush()


def fit(model, params, x, *, steps, seed, batch_size=None, optimizer=None, n_samples=None,
        schedules=None, only=None, progress=False, log_every=100, callback=None, stream=None):
    """Train ``model`` from ``params`` on data ``x`` by minibatch gradient descent.

    Parameters
    ----------
    model : an objective with ``value_and_grad(params, x, noise, ...)`` and ``noise_shape``.
    params : dict from ``model.init`` (left unchanged; the result holds new arrays).
    x : (N, d) data.
    steps : int >= 0, number of optimiser steps.
    seed : int or numpy.random.Generator for minibatches and noise.
    batch_size : int, default N (full batch).
    optimizer : default ``Adam(1e-3)``.
    n_samples : Monte Carlo samples per point (default: one, noise shape without a sample axis).
    schedules : dict name -> callable(step) -> value, passed to ``value_and_grad`` by keyword
        (``{"beta": linear_ramp(0, 1, 1000)}`` anneals the KL; ``{"sigma2": ...}`` is an
        external variance schedule for ``obs="fixed"``).
    only : prefixes of the keys to train (e.g. ``("enc.",)``: encoder only, decoder frozen).
    progress : print a progress line to ``stream`` (stderr) every ``log_every`` steps.
    callback : callable(step, params, terms) called after every step; returning True stops.

    Returns
    -------
    FitResult, whose history has one row per step: ``loss`` and each term of the objective
    (``recon``, ``kl``, ``sigma2``, ``beta`` for the Gaussian VAE), shape (steps,) or (steps, R).

    Raises
    ------
    TrainingDiverged when the loss, a gradient or a parameter turns non-finite.
    """
    x, steps, batch_size, n_samples = check_loop_args(x, steps, batch_size, n_samples)
    n = x.shape[0]
    schedules = _check_schedules(schedules)
    for name, fn in (("model.value_and_grad", getattr(model, "value_and_grad", None)),
                     ("model.noise_shape", getattr(model, "noise_shape", None))):
        if not callable(fn):
            raise TypeError(f"{name} must be a method; model must be a refvae objective, got {type(model).__name__}")
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
    if optimizer is not None and (isinstance(optimizer, type) or not callable(getattr(optimizer, "init", None))
                                  or not callable(getattr(optimizer, "update", None))):
        raise TypeError(f"optimizer must have init and update methods (an instance such as Adam(1e-3), "
                        f"not the class), got {optimizer!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be a callable (step, params, terms) -> bool, got {type(callback).__name__}")
    log_every = _checks.integer("log_every", log_every, min_value=1)
    rng = make_rng(seed)
    optimizer = Adam(1e-3) if optimizer is None else optimizer
    stream = sys.stderr if stream is None else stream
    x = to_device(x)
    state = optimizer.init(params)
    batches = minibatches(rng, n, batch_size)
    history = {}
    for step in range(steps):
        idx = next(batches)
        xb = x[idx] if batch_size < n else x
        shape = model.noise_shape(params, len(idx), n_samples)
        noise = None if shape is None else normal(rng, shape)
        overrides = {k: fn(step) for k, fn in schedules.items()}
        # overflow on the way to a divergence is reported by check_finite, naming the step
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            params, state, loss, terms = gradient_step(model, params, state, optimizer, xb, noise, step,
                                                       only=only, **overrides)
        for k, v in {"loss": loss, **terms}.items():
            history.setdefault(k, []).append(to_host(v))
        stop = callback is not None and bool(callback(step, params, terms))
        if progress and (step % log_every == 0 or step == steps - 1 or stop):
            _progress(stream, step + 1, steps, loss, terms)
        if stop:
            break
    if progress:
        stream.write("\n")
    return FitResult(params, {k: np.asarray(v) for k, v in history.items()}, state)


def _check_schedules(schedules):
    """A dict name -> callable(step) -> value (None: no schedules)."""
    if schedules is None:
        return {}
    if not isinstance(schedules, dict):
        raise TypeError(f"schedules must be a dict name -> callable(step), got {type(schedules).__name__}")
    for name, fn in schedules.items():
        if not callable(fn):
            raise TypeError(f"schedules[{name!r}] must be a callable step -> value")
    return dict(schedules)


def check_stages(name, stages):
    """Validate a learning-rate schedule: a non-empty sequence of (learning rate > 0, steps >= 0)."""
    if isinstance(stages, (str, bytes)) or not hasattr(stages, "__iter__"):
        raise TypeError(f"{name} must be a sequence of (learning rate, steps) pairs, got {stages!r}")
    checked = []
    for i, stage in enumerate(stages):
        if isinstance(stage, (str, bytes)) or not hasattr(stage, "__len__") or len(stage) != 2:
            raise TypeError(f"{name}[{i}] must be a (learning rate, steps) pair, got {stage!r}")
        lr, n = stage
        checked.append((_checks.scalar(f"{name}[{i}] learning rate", lr, positive=True),
                        _checks.integer(f"{name}[{i}] steps", n, min_value=0)))
    stages = checked
    if not stages:
        raise ValueError(f"{name} must list at least one (learning rate, steps) stage")
    return stages


def fit_stages(model, params, x, *, stages, seed, batch_size=None, n_samples=None, schedules=None, only=None,
               callback=None, average=0, optimizer=None):
    """``fit`` once per stage of a piecewise-constant learning rate, e.g. ``[(1e-2, 2000), (1e-3, 500)]``.

    Monte Carlo gradients make the iterates jitter around an optimum by an amount that shrinks
    with the step size; ending with a small-rate stage (and optionally averaging) settles them.

    Parameters
    ----------
    stages : non-empty sequence of (learning rate > 0, steps >= 0); each stage is one ``fit``
        call with a fresh ``optimizer(lr)``.
    seed : int or numpy.random.Generator; one stream feeds every stage.
    batch_size, n_samples, only : as ``fit``.
    schedules : dict name -> callable(step) -> value, as ``fit``'s but indexed by the step counted
        over all stages, so a recorded trajectory replays across stage breaks.
    callback : callable(step, params, terms) after every step (global step); returning True ends
        the training (the remaining stages are skipped).
    average : int >= 0; if positive, return the mean of the iterates of the last ``average`` steps
        (Polyak-Ruppert averaging; of those reached, if the callback stopped the run in that
        window) instead of the last one. Not for parameters with a continuous symmetry (an average
        over a rotation orbit shrinks them).
    optimizer : callable lr -> optimiser (default ``Adam``; e.g. ``SGD`` for plain gradient descent).

    Returns
    -------
    params : dict, the trained (or averaged) parameters.
    history : dict of arrays (steps run, R?), the stages' histories concatenated.
    """
    stages = check_stages("stages", stages)
    total = sum(n for _, n in stages)
    average = _checks.integer("average", average, min_value=0)
    if average > total:
        raise ValueError(f"average must be <= the total number of steps {total}, got {average}")
    schedules = _check_schedules(schedules)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be a callable (step, params, terms) -> bool, got {type(callback).__name__}")
    if optimizer is not None and not callable(optimizer):
        raise TypeError(f"optimizer must be a callable lr -> optimiser (e.g. refvae.optim.SGD), got {optimizer!r}")
    optimizer = Adam if optimizer is None else optimizer
    rng = make_rng(seed)
    history, acc, done, state = {}, {}, 0, {"stop": False, "count": 0}
    for lr, steps in stages:
        def step_callback(t, p, terms, offset=done):
            if average and offset + t >= total - average:
                state["count"] += 1
                for k, v in p.items():
                    acc[k] = acc[k] + v if k in acc else v.copy()
            state["stop"] = callback is not None and bool(callback(offset + t, p, terms))
            return state["stop"]
        shifted = {k: (lambda t, fn=fn, offset=done: fn(t + offset)) for k, fn in schedules.items()}
        res = fit(model, params, x, steps=steps, seed=rng, batch_size=batch_size, optimizer=optimizer(lr),
                  n_samples=n_samples, schedules=shifted, only=only, callback=step_callback)
        params = res.params
        done += steps
        for k, v in res.history.items():
            history.setdefault(k, []).append(v)
        if state["stop"]:
            break
    if state["count"]:
        params = {k: v / state["count"] for k, v in acc.items()}
    return params, {k: np.concatenate(v) for k, v in history.items()}


def _npz_path(path):
    """``path`` with the ``.npz`` suffix ``numpy.savez`` appends to names that lack it."""
    if isinstance(path, (str, os.PathLike)):
        path = os.fspath(path)
        return path if path.endswith(".npz") else path + ".npz"
    return path                                                     # an open file object


def save_params(path, params):
    """Save a parameter dict to ``path`` (.npz, appended if missing), exactly (dtype and values kept, host copy)."""
    if not isinstance(params, dict) or not params:
        raise TypeError("params must be a non-empty dict of arrays")
    for k, v in params.items():
        if not isinstance(k, str) or not hasattr(v, "shape"):
            raise TypeError(f"params must map str keys to arrays, got {k!r}: {type(v).__name__}")
    np.savez(_npz_path(path), **tree_to_host(params))


def load_params(path):
    """Load a parameter dict saved by ``save_params`` (same ``path``), onto the current backend."""
    with np.load(_npz_path(path), allow_pickle=False) as data:
        return to_device({k: data[k] for k in data.files})

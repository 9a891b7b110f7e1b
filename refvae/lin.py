"""Lagging Inference Networks (He et al. 2019): aggressive encoder training, and yacoby2020's segmented variant.

docs/math.md 2.3. Posterior collapse, in He et al.'s account, starts because the encoder lags
behind the true posterior early in training; their remedy runs the encoder to (near)
convergence before every decoder step until the encoder's mutual information I_q stops
rising, then trains normally.

``fit_lin`` (He et al.'s algorithm, following their reference code):

1. Aggressive phase. For each decoder step t on a minibatch x_t:
   a. encoder-only steps: the first on x_t, each later one on a fresh minibatch; the loss of
      every inner step is recorded and the loop stops by ``inner_should_stop``: after every
      ``window`` steps the mean loss of that window is compared with the previous window's,
      and the loop ends when it is larger (worse), or after ``max_inner`` steps;
   b. one decoder-only step on x_t (the encoder is not stepped here, as in the reference code).
   Every ``mi_every`` decoder steps (default: once per epoch, as the reference code does),
   I_q is estimated on the held-out ``x_val`` (``refvae.metrics.information``); the
   aggressive phase ends for good as soon as an estimate is not larger than the previous
   one (docs/math.md: "stops increasing"). He et al.'s text script stops on a strict decrease
   against a baseline of 0 (so a negative first estimate stops it at once); here the first
   estimate only sets the baseline. Their image script instead waits for 5 estimates below
   the best one; pass a larger ``mi_every`` for a less noise-driven stop.
2. Joint phase: ordinary joint steps on minibatches, one per decoder step.

``fit_lin_segmented`` (yacoby2020 App. D's variant): the ``steps`` gradient steps are split
into ``segments`` equal segments; each runs ``encoder_fraction`` of its steps on the encoder
alone, then the rest jointly.

Restarts. Both trainers accept parameters with a restarts axis R. In ``fit_lin`` every
restart runs its own rules: its inner loop stops on its own loss sequence and its aggressive
phase ends on its own I_q sequence. Restarts whose rule has fired are held fixed while the
others take their encoder steps: each step is taken for all restarts and then undone for the
stopped ones (their parameters and optimiser moments restored). The optimiser's step count
(Adam's t, one per parameter key) is shared by the restarts, so a restart that sat steps out
resumes with a bias correction computed from the shared count (1 - beta^t differs from its
own count's value only while t is small). All restarts share minibatches, each has its own
noise (as in ``refvae.train.fit``).

Learning rates: ``enc_lr`` and ``dec_lr`` build ``Adam(group_lr={"enc.": enc_lr, "dec.":
dec_lr})``; pass ``optimizer`` instead for anything else (not both).

Runs keep their work as ``refvae.train.fit``'s do: Ctrl-C raises ``TrainingInterrupted`` whose
``result`` (a ``LINResult``) holds the parameters and optimiser state after the last finished
optimiser step and the history of the finished decoder steps; divergence raises
``TrainingDiverged`` naming the optimiser step, carrying the same result before that step; and
with ``on_divergence="isolate"`` a diverging restart is frozen (its rows NaN from then on) while
the others train on. Here every step is checked in full (loss and stepped parameters). A frozen
restart no longer runs its inner loop, and the inner loop's length (the longest of the running
restarts') decides how many random numbers a decoder step draws, so unlike ``fit`` the other
restarts' numbers can differ from a run in which that restart never diverged.
"""
from __future__ import annotations

import inspect
import sys
import warnings
from dataclasses import dataclass

import numpy as np

from . import _checks
from .backend import make_rng, normal, to_device, to_host
from .metrics.information import encoder_mutual_information
from .optim import Adam
from .train import (Batches, FitResult, StepGuard, TrainingInterrupted, check_callback, check_loop_args, check_model,
                    check_optimizer, check_schedules, empty_history, mask_rows, resolve_policy, select_restarts)

__all__ = ["inner_should_stop", "count_inner_steps", "fit_lin", "fit_lin_segmented", "LINResult"]

_ENC, _DEC = ("enc.",), ("dec.",)


def inner_should_stop(losses, window=10, max_inner=100):
    """He et al.'s stopping rule for the inner encoder loop, as a pure function.

    Parameters
    ----------
    losses : (k,) or (k, R), the losses of the k >= 1 inner steps taken so far (per restart).
    window : int >= 1, the averaging window (He et al.'s code uses 15; docs/math.md 2.3 10-15).
    max_inner : int >= 1, the cap on inner steps.

    Returns
    -------
    bool, or a bool array (R,): stop after step k when k >= ``max_inner``, or when k is a
    multiple of ``window``, k >= 2 window, and mean(losses[k - window:k]) >
    mean(losses[k - 2 window:k - window]) (the last window was worse than the one before).
    """
    window = _checks.integer("window", window, min_value=1)
    max_inner = _checks.integer("max_inner", max_inner, min_value=1)
    losses = np.asarray(to_host(_checks.array("losses", losses, min_ndim=1)))
    if losses.ndim > 2:
        raise ValueError(f"losses must have shape (k,) or (k, R), got {losses.shape}")
    k = losses.shape[0]
    if k < 1:
        raise ValueError("losses must hold at least one inner step")
    rest = losses.shape[1:]
    if k >= max_inner:
        stop = np.ones(rest, dtype=bool)
    elif k < 2 * window or k % window:
        stop = np.zeros(rest, dtype=bool)
    else:
        stop = losses[k - window:].mean(axis=0) > losses[k - 2 * window:k - window].mean(axis=0)
    return bool(stop) if stop.ndim == 0 else stop


def count_inner_steps(losses, window=10, max_inner=100):
    """Number of inner steps ``inner_should_stop`` lets run on a given loss sequence (k,) or (k, R).

    Returns an int (or int array (R,)); raises ``ValueError`` if the sequence ends before the
    rule stops (it must be at least ``max_inner`` long to be sure to).
    """
    losses = np.asarray(_checks.array("losses", losses, min_ndim=1))
    taken = np.zeros(losses.shape[1:], dtype=int)
    running = np.ones(losses.shape[1:], dtype=bool)
    for k in range(1, losses.shape[0] + 1):
        stop = np.asarray(inner_should_stop(losses[:k], window, max_inner))
        taken = np.where(running, k, taken)
        running = running & ~stop
        if not running.any():
            return int(taken) if taken.ndim == 0 else taken
    raise ValueError(f"the rule did not stop within the {losses.shape[0]} losses given")


@dataclass
class LINResult(FitResult):
    """``FitResult`` plus ``aggressive_end``: the number of decoder steps of the aggressive phase
    (None if it never ended; with restarts an int array (R,), -1 where it never ended).

    ``history`` rows are decoder steps: ``loss`` and the objective's terms of the decoder (or
    joint) step, ``inner_steps`` (encoder-only steps before it), ``aggressive`` (bool) and
    ``mi`` (I_q on x_val after the step; NaN where not evaluated); shapes (steps,) or (steps, R).
    """
    aggressive_end: object = None


def _selected(key, prefixes):
    return prefixes is None or any(key.startswith(p) for p in prefixes)


def _step(model, params, state, optimizer, xb, noise, step, overrides, only, guard, keep=None):
    """One optimiser step on the keys under the prefixes ``only`` (None: all), checked by ``guard``.

    ``keep`` maps a key prefix to a bool mask over restarts (R,): for keys under that prefix
    the update is undone (parameters and optimiser state restored) for the restarts where
    the mask is False.
    """
    loss, grads, terms = model.value_and_grad(params, xb, noise, with_terms=True, **overrides)
    new_params, new_state = optimizer.update(params, grads, state, only=only)
    new_params, new_state = guard.check(step, loss, grads, params, state, new_params, new_state)
    for prefix, mask in (keep or {}).items():
        if mask.ndim == 0 or mask.all():
            continue
        keys = {k for k in params if k.startswith(prefix) and _selected(k, only)}
        new_params = _restore(mask, new_params, params, keys)
        new_state = _restore(mask, new_state, state, keys)
    return new_params, new_state, loss, terms


def _restore(mask, new, old, keys):
    """``new`` with the entries under ``keys`` restored from ``old`` where ``mask`` (R,) is False.

    Walks nested dicts: an optimiser state keeps each parameter's leaves under that parameter's
    key, at whatever depth (Adam: ``state["m"][key]``); leaves without the restarts axis (a shared
    step count) are left as they are.
    """
    out = {}
    for k, v in new.items():
        if k in keys and k in old:
            out[k] = select_restarts(mask, v, old[k])
        elif isinstance(v, dict) and isinstance(old.get(k), dict):
            out[k] = _restore(mask, v, old[k], keys)
        else:
            out[k] = v
    return out


def _setup(model, params, x, steps, seed, batch_size, optimizer, enc_lr, dec_lr, n_samples, schedules, callback,
           on_divergence):
    """Shared validation (before any work) and set-up of both trainers."""
    check_model(model, "value_and_grad", "noise_shape", "encode")
    _checks.params("params", params)
    for prefix in ("enc.", "dec."):
        if not any(k.startswith(prefix) for k in params):
            raise ValueError(f"params must hold {prefix}* entries (an encoder and a decoder)")
    x, steps, batch_size, n_samples = check_loop_args(x, steps, batch_size, n_samples)
    if optimizer is not None and (enc_lr is not None or dec_lr is not None):
        raise ValueError("give either optimizer or enc_lr / dec_lr, not both")
    if optimizer is None:
        enc_lr = 1e-3 if enc_lr is None else _checks.scalar("enc_lr", enc_lr, positive=True)
        dec_lr = 1e-3 if dec_lr is None else _checks.scalar("dec_lr", dec_lr, positive=True)
        optimizer = Adam(1e-3, group_lr={"enc.": enc_lr, "dec.": dec_lr})
    optimizer = check_optimizer(optimizer)
    schedules = check_schedules(schedules)
    callback = _callback(callback)
    policy = resolve_policy(on_divergence)
    return to_device(x), steps, batch_size, n_samples, optimizer, schedules, callback, policy, make_rng(seed)


def _callback(callback):
    """``callback(step, params, info)``; an old-style ``callback(info, params)`` still works, with a warning."""
    callback = check_callback(callback)
    try:
        kinds = [p.kind for p in inspect.signature(callback).parameters.values()] if callback else []
    except (TypeError, ValueError):
        return callback
    if len(kinds) == 2 and all(k in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                               for k in kinds):
        warnings.warn("a LIN callback(info, params) is deprecated: use callback(step, params, info), the "
                      "signature of every refvae trainer", DeprecationWarning, stacklevel=4)
        old = callback
        return lambda step, params, info: old({**info, "step": step}, params)
    return callback


def _noise(model, params, rng, b, n_samples):
    shape = model.noise_shape(params, b, n_samples)
    return None if shape is None else normal(rng, shape)


def _record(history, alive, **row):
    for k, v in row.items():
        history.setdefault(k, []).append(to_host(mask_rows(v, alive)))


def _history(history, rows, empty):
    """The history's lists as arrays of their first ``rows`` rows (the keys of ``empty`` when none ran)."""
    if not history:
        return dict(empty())
    return {k: np.asarray(v[:rows]) for k, v in history.items()}


def fit_lin(model, params, x, *, x_val, steps, seed, batch_size=None, optimizer=None, enc_lr=None,
            dec_lr=None, n_samples=None, window=10, max_inner=100, mi_every=None, mi_samples=None,
            schedules=None, callback=None, on_divergence=None, progress=False, stream=None):
    """Train with Lagging Inference Networks' aggressive phase, then jointly (docs/math.md 2.3).

    Parameters
    ----------
    model : an objective with ``value_and_grad``, ``noise_shape`` and ``encode`` (GaussianVAE,
        refvae.encoders.PerPointVAE).
    params : dict from ``model.init`` with ``enc.*`` and ``dec.*`` keys (restarts axis allowed).
    x : (N, d) training data; x_val : (M, d) held-out data (M >= 2) for the I_q estimates,
        encoded as one batch (memory M^2 K per estimate).
    steps : int >= 0, the number of decoder steps (one per outer minibatch).
    seed : int or numpy Generator: minibatches, noise and the I_q samples.
    batch_size : int, default N.
    optimizer : default ``Adam(group_lr={"enc.": enc_lr, "dec.": dec_lr})``, both 1e-3.
    n_samples : Monte Carlo samples per point in every step (default one).
    window, max_inner : the inner stopping rule (``inner_should_stop``).
    mi_every : int, decoder steps between I_q estimates (default ceil(N / batch_size), once an epoch).
    mi_samples : samples per point in the I_q estimate (default one).
    schedules : dict name -> callable(decoder step) -> value, passed to ``value_and_grad``
        (e.g. ``{"beta": linear_ramp(...)}``), the same value for a decoder step and its inner steps.
    callback : callable(step, params, info) after every optimiser step, ``step`` the decoder step
        and info = {"phase": "encoder" | "decoder" | "joint", "inner": inner step (1-based; 0 for
        the outer step), "loss": loss, **the objective's terms}; the outer step is "joint" once any
        restart has left the aggressive phase. Returning True stops training.
    on_divergence : "raise" or "isolate", as ``refvae.train.fit`` (see the module docstring).
    progress : print a line per ``mi_every`` decoder steps to ``stream`` (stderr).

    Returns
    -------
    LINResult (history rows = decoder steps; see its docstring).

    Raises
    ------
    TrainingDiverged naming the optimiser step (inner steps included) and the quantity;
    TrainingInterrupted on Ctrl-C (see the module docstring).
    """
    x, steps, batch_size, n_samples, optimizer, schedules, callback, policy, rng = _setup(
        model, params, x, steps, seed, batch_size, optimizer, enc_lr, dec_lr, n_samples, schedules, callback,
        on_divergence)
    x_val = _checks.array("x_val", x_val, ndim=2, shape=(None, x.shape[1]))
    if x_val.shape[0] < 2:
        raise ValueError(f"x_val must hold at least 2 points to estimate I_q, got {x_val.shape[0]}")
    window = _checks.integer("window", window, min_value=1)
    max_inner = _checks.integer("max_inner", max_inner, min_value=1)
    n = x.shape[0]
    mi_every = -(-n // batch_size) if mi_every is None else _checks.integer("mi_every", mi_every, min_value=1)
    mi_samples = _checks.integer("mi_samples", mi_samples, min_value=1, allow_none=True)
    stream = sys.stderr if stream is None else stream
    x_val = to_device(x_val)

    shape = model.noise_shape(params, 1)
    if shape is None:
        raise TypeError("model has no stochastic encoder (noise_shape is None): I_q is undefined")
    restarts = tuple(shape)[:-2]
    state = optimizer.init(params)
    outer, fresh = Batches(rng, n, batch_size), Batches(rng, n, batch_size)
    history, n_opt, done = {}, 0, 0
    aggressive = np.ones(restarts, dtype=bool)
    last_mi = np.full(restarts, -np.inf)
    end = np.full(restarts, -1)
    stop = False

    def result():
        """The run so far: parameters after the last finished step, the finished decoder steps' rows."""
        aggressive_end = (None if end < 0 else int(end)) if end.ndim == 0 else end.copy()
        empty = lambda: {**empty_history(model, params, x, batch_size, n_samples,
                                         {k: fn(0) for k, fn in schedules.items()}),
                         "inner_steps": np.empty((0,) + restarts, dtype=int),
                         "aggressive": np.empty((0,) + restarts, dtype=bool),
                         "mi": np.empty((0,) + restarts)}
        return LINResult(params=params, history=_history(history, done, empty), state=state, step=done,
                         diverged=tuple(guard.diverged), aggressive_end=aggressive_end)

    guard = StepGuard(policy, result)

    def alive():
        return np.ones(restarts, dtype=bool) if guard.alive is None else guard.alive.reshape(restarts)

    def notify(t, phase, inner, loss, terms):
        info = {"phase": phase, "inner": inner, "loss": mask_rows(loss, guard.alive),
                **{k: mask_rows(v, guard.alive) for k, v in terms.items()}}
        return callback is not None and bool(callback(t, params, info))

    try:
        for t in range(steps):
            overrides = {k: fn(t) for k, fn in schedules.items()}
            idx = outer.next()
            xb = x[idx] if batch_size < n else x
            counts = np.zeros(restarts, dtype=int)
            if (aggressive & alive()).any():
                # (a) encoder-only steps, per restart until its rule fires; the first on this batch
                running, xe, losses = aggressive & alive(), xb, []
                while running.any() and not stop:
                    params, state, loss, terms = _step(model, params, state, optimizer, xe,
                                                       _noise(model, params, rng, xe.shape[0], n_samples), n_opt,
                                                       overrides, _ENC, guard, {"enc.": running})
                    n_opt += 1
                    losses.append(np.where(alive(), to_host(loss), 0.0))     # a frozen restart's rule is moot
                    counts = np.where(running, len(losses), counts)
                    running = running & alive() & ~np.asarray(inner_should_stop(np.stack(losses), window, max_inner))
                    stop = notify(t, "encoder", len(losses), loss, terms)
                    xe = x[fresh.next()] if batch_size < n else x
                if stop:
                    break
            # (b) the outer step: decoder alone for restarts still aggressive, joint for the others
            noise = _noise(model, params, rng, xb.shape[0], n_samples)
            if aggressive.all():
                params, state, loss, terms = _step(model, params, state, optimizer, xb, noise, n_opt, overrides, _DEC,
                                                   guard)
            else:
                params, state, loss, terms = _step(model, params, state, optimizer, xb, noise, n_opt, overrides,
                                                   None, guard, {"enc.": ~aggressive})
            n_opt += 1
            was_aggressive = aggressive.copy()
            mi = np.full(restarts, np.nan)
            if (t + 1) % mi_every == 0:
                mi = np.asarray(to_host(encoder_mutual_information(model, params, x_val, seed=rng,
                                                                   n_samples=mi_samples)), dtype=float)
                ended = aggressive & (mi <= last_mi)
                end = np.where(ended, t + 1, end)
                aggressive = aggressive & ~ended
                last_mi = np.where(was_aggressive, mi, last_mi)
            _record(history, guard.alive, loss=loss, **terms, inner_steps=counts, aggressive=was_aggressive, mi=mi)
            done = t + 1
            if progress and ((t + 1) % mi_every == 0 or t == steps - 1):
                mi_text = f"{np.nanmean(mi):.4f}" if np.isfinite(mi).any() else "-"
                stream.write(f"\rstep {t + 1}/{steps}  loss {np.nanmean(to_host(loss)):.4f}  "
                             f"aggressive {int(was_aggressive.sum())}/{was_aggressive.size}  I_q {mi_text}    ")
                stream.flush()
            if notify(t, "decoder" if was_aggressive.all() else "joint", 0, loss, terms):
                break
    except KeyboardInterrupt:
        raise TrainingInterrupted(result(), "LIN training") from None
    if progress:
        stream.write("\n")
    return result()


def fit_lin_segmented(model, params, x, *, segments, steps, seed, encoder_fraction=0.5, batch_size=None,
                      optimizer=None, enc_lr=None, dec_lr=None, n_samples=None, schedules=None,
                      callback=None, on_divergence=None):
    """yacoby2020's Lagging Inference Networks variant: R segments of encoder-alone then joint training.

    yacoby2020 App. D: "divide the total number of epochs into R equal segments. In each we train
    the inference network alone and then [...] the inference and generative networks jointly."
    The split inside a segment is not given there; ``encoder_fraction`` sets it.

    Parameters
    ----------
    model, params, x, seed, batch_size, optimizer, enc_lr, dec_lr, n_samples, on_divergence : as ``fit_lin``.
    segments : int >= 1, R (yacoby2020 uses 5-90).
    steps : int, total optimiser steps, a multiple of ``segments``.
    encoder_fraction : float in (0, 1), share of each segment's steps on the encoder alone,
        rounded to whole steps; at least one step of each kind is required. Default 0.5.
    schedules : as ``refvae.train.fit``, indexed by the global step.
    callback : callable(step, params, info) after every step (global step), info = {"phase":
        "encoder" | "joint", "segment": segment, "loss": loss, **the objective's terms};
        returning True stops.

    Returns
    -------
    refvae.train.FitResult; its history rows are steps: ``loss``, the objective's terms,
    ``phase`` (0 encoder alone, 1 joint) and ``segment``. One optimiser state runs throughout.
    Ctrl-C and divergence as ``fit_lin``.
    """
    x, steps, batch_size, n_samples, optimizer, schedules, callback, policy, rng = _setup(
        model, params, x, steps, seed, batch_size, optimizer, enc_lr, dec_lr, n_samples, schedules, callback,
        on_divergence)
    segments = _checks.integer("segments", segments, min_value=1)
    encoder_fraction = _checks.scalar("encoder_fraction", encoder_fraction, low=0.0, high=1.0)
    if steps % segments:
        raise ValueError(f"steps must be a multiple of segments for equal segments, got {steps} and {segments}")
    length = steps // segments
    enc_steps = int(round(encoder_fraction * length))
    if steps and not 0 < enc_steps < length:
        raise ValueError(f"each segment of {length} steps must have at least one encoder-alone and one joint "
                         f"step; encoder_fraction = {encoder_fraction} gives {enc_steps} encoder-alone steps")
    n = x.shape[0]
    state = optimizer.init(params)
    batches = Batches(rng, n, batch_size)
    history, done = {}, 0

    def result():
        empty = lambda: {**empty_history(model, params, x, batch_size, n_samples,
                                         {k: fn(0) for k, fn in schedules.items()}),
                         "phase": np.empty((0,), dtype=int), "segment": np.empty((0,), dtype=int)}
        return FitResult(params, _history(history, done, empty), state, done, tuple(guard.diverged))

    guard = StepGuard(policy, result)
    try:
        for step in range(steps):
            segment, pos = divmod(step, length)
            encoder_only = pos < enc_steps
            idx = batches.next()
            xb = x[idx] if batch_size < n else x
            overrides = {k: fn(step) for k, fn in schedules.items()}
            params, state, loss, terms = _step(model, params, state, optimizer, xb,
                                               _noise(model, params, rng, xb.shape[0], n_samples), step, overrides,
                                               _ENC if encoder_only else None, guard)
            _record(history, guard.alive, loss=loss, **terms, phase=0 if encoder_only else 1, segment=segment)
            done = step + 1
            if callback is not None and callback(step, params, {
                    "phase": "encoder" if encoder_only else "joint", "segment": segment,
                    "loss": mask_rows(loss, guard.alive), **{k: mask_rows(v, guard.alive) for k, v in terms.items()}}):
                break
    except KeyboardInterrupt:
        raise TrainingInterrupted(result(), "LIN training") from None
    return result()

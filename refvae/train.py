"""Training: the minibatch loop, schedules, divergence, interruption and checkpoints.

``fit`` draws every random number (minibatches, noise) from one seeded ``numpy.random.Generator``,
so the same seed gives bitwise-identical training on NumPy. ``fit_stages`` runs the same loop
under a piecewise-constant learning rate. Both take an optimiser instance, return a
``FitResult`` and call ``callback(step, params, info)`` after every step, as the family
trainers (``refvae.lin``, ``refvae.libi``, ``M2.fit``, ``fit_encoder``) do.

Runs keep their work:

- **Ctrl-C.** ``fit`` and ``fit_stages`` raise ``TrainingInterrupted``, a ``KeyboardInterrupt``
  whose ``result`` is the run after its last finished step (parameters, optimiser state, history,
  random state). ``fit(model, None, x, ..., seed=None, resume=exc.result)`` continues it
  bitwise; ``save_checkpoint`` keeps it; with ``checkpoint=path`` it has already been saved there.
- **Divergence.** The loss (per restart) is checked after every step. A non-finite loss stops
  training with ``TrainingDiverged``, which names the step and the quantity and carries the last
  finite parameters and their optimiser state. Parameters are not scanned every step (that costs
  as much as the rest of the loop): a step whose update makes a parameter non-finite is found
  by the next step's loss, or by the one scan at the end of the run (or before a checkpoint),
  and reported as that step, with its gradient named when that was non-finite (so a callback can
  be handed such parameters once, just before the error). Inside the last ``average`` steps of
  ``fit_stages`` every step is scanned, so no non-finite iterate is averaged.
- **Isolation.** With ``on_divergence="isolate"`` and a restarts axis R, a diverging restart is
  frozen at its last finite parameters (and optimiser state), reported in ``FitResult.diverged``
  and its history rows are NaN from that step on, while the other restarts train on with exactly
  the numbers they would have had without it (restarts share no arithmetic and the random
  stream is drawn for all R either way). When every restart has diverged, or there is no
  restarts axis, it raises as ``"raise"`` does. ``divergence_policy("isolate")`` sets the
  default for every trainer called inside a ``with`` block.
- **Checkpoints.** ``checkpoint=path, checkpoint_every=k`` writes the whole run every k steps,
  at the end, and on Ctrl-C; ``resume=path`` continues it, bitwise identical to a run that was
  never interrupted. Writes are atomic (a temporary file in the same folder, then
  ``os.replace``), so a failed write never destroys the previous file. A file that is not a
  refvae checkpoint (truncated, corrupted, another format) raises ``CheckpointError``.

Speed. Arguments are checked once, before any work; the first step goes through the objective's
``value_and_grad`` (and its checks), later ones through ``value_and_grad_unchecked`` where the
objective has one and no schedule changes its arguments (the same numbers, without re-checking
inputs of the kinds already checked). The optimiser's step is ``optimizer.update`` (pure: new
arrays every step), or, where the optimiser offers one (``Adam``, ``SGD``; ``refvae.optim.Ring``),
the same step, bitwise, written into the next of three packed copies of the parameters and
optimiser state, so that the last two points (the current one and the one before it, kept to
roll back to) stay intact without allocating. Parameters handed to a callback are then a copy, and
those in a result are never written again: nothing a caller is given changes under it.
"""
from __future__ import annotations

import contextlib
import contextvars
import copy
import hashlib
import json
import math
import numbers
import os
import sys
import uuid
import warnings
import zipfile
import zlib
from collections import namedtuple
from dataclasses import dataclass, field

import numpy as np

from . import _checks
from .backend import make_rng, normal, to_device, to_host, xp_of
from .layers import Layer
from .optim import Adam

POLICIES = ("raise", "isolate")
_POLICY = contextvars.ContextVar("refvae_divergence_policy", default="raise")


# -- outcomes ---------------------------------------------------------------------------------
class TrainingDiverged(FloatingPointError):
    """A loss, gradient or parameter turned non-finite.

    Attributes
    ----------
    step : int, the step whose loss, gradient or update was non-finite.
    quantity : str, ``"loss"``, ``"grads['<key>']"`` or ``"params['<key>'] after the update"``.
    restart : int or None, the restart that diverged (with a restarts axis).
    result : the trainer's result (``FitResult`` for ``fit``) at the last point where every
        number was finite: ``result.params`` are the last finite parameters, ``result.state``
        their optimiser state, ``result.history`` its rows. None where raised without one.
    """

    def __init__(self, step, quantity, value=None, *, restart=None, result=None):
        self.step, self.quantity, self.value, self.restart, self.result = step, quantity, value, restart, result
        who = "" if restart is None else f" (restart {restart})"
        super().__init__(f"training diverged at step {step}: {quantity}{who} is non-finite"
                         + ("" if value is None else f" ({value})"))

    def __reduce__(self):               # picklable whole: a worker process's error reaches its parent
        return _rebuild, (type(self), (self.step, self.quantity, self.value),
                          {"restart": self.restart, "result": self.result})

    @property
    def params(self):
        """The last finite parameters (``result.params``)."""
        return None if self.result is None else self.result.params

    @property
    def state(self):
        """The optimiser state that goes with them (``result.state``)."""
        return None if self.result is None else getattr(self.result, "state", None)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training. ``result`` holds the run after its last finished step.

    A ``KeyboardInterrupt``: left uncaught it ends the program as Ctrl-C always does.
    """

    def __init__(self, result, what="training"):
        self.result, self.what = result, what
        steps = getattr(result, "step", None)
        done = "" if steps is None else f" after {steps} finished steps"
        super().__init__(f"{what} interrupted{done}; the work so far is in .result")

    def __reduce__(self):
        return _rebuild, (type(self), (self.result, self.what), {})


def _rebuild(cls, args, kwargs):
    return cls(*args, **kwargs)


class CheckpointError(ValueError):
    """A file that cannot be read as (or does not match) a refvae checkpoint or parameter file."""


@dataclass(frozen=True)
class Divergence:
    """A restart stopped by ``on_divergence="isolate"``: which, at which step, and what turned non-finite."""
    restart: int
    step: int
    quantity: str


@dataclass
class FitResult:
    """What ``fit``, ``fit_stages`` (and ``M2.fit``, ``fit_encoder``, LiBI's steps) return.

    params : dict, the trained parameters (the averaged ones with ``fit_stages(average=...)``).
    history : dict of arrays, one row per step: ``loss`` and the objective's terms, shape
        (steps,) or (steps, R); the keys exist (with no rows) when no step ran.
    state : the optimiser state after the last step.
    step : int, the steps run in total (the history's rows; a resumed run counts the earlier ones).
    diverged : tuple of ``Divergence``, the restarts frozen by ``on_divergence="isolate"``.
    run : what resuming needs besides the above (random state, minibatch position, averaging
        sums, the arguments to check); None where the result cannot be resumed.

    It unpacks as ``params, history = result``.
    """
    params: dict
    history: dict
    state: dict
    step: int = 0
    diverged: tuple = ()
    run: dict | None = field(default=None, repr=False)

    def __iter__(self):
        return iter((self.params, self.history))


@contextlib.contextmanager
def divergence_policy(policy):
    """Within the ``with`` block, every trainer called with ``on_divergence=None`` (the default) uses ``policy``.

    ``"raise"`` is the default outside any block; ``"isolate"`` freezes and reports a diverging
    restart while the others train on (see the module docstring). The setting belongs to the
    current thread (a ``contextvars`` variable): worker processes must enter the block themselves.
    """
    _checks.choice("policy", policy, POLICIES)
    token = _POLICY.set(policy)
    try:
        yield
    finally:
        _POLICY.reset(token)


def resolve_policy(on_divergence):
    """``on_divergence`` checked, or the current ``divergence_policy`` when it is None."""
    return _POLICY.get() if on_divergence is None else _checks.choice("on_divergence", on_divergence, POLICIES)


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


class Batches:
    """Index batches of size ``batch_size`` from ``n`` points: a fresh permutation each epoch.

    The permutation is drawn from ``rng`` when an epoch's first batch is asked for; an epoch's
    last n mod batch_size points are skipped; batch_size >= n gives all points in order every
    time. ``perm`` and ``pos`` are the whole state (a checkpoint keeps them).
    """

    def __init__(self, rng, n, batch_size):
        self.rng, self.n, self.batch_size = rng, n, batch_size
        self.perm, self.pos = None, 0
        self._all = np.arange(n)

    def next(self):
        if self.batch_size >= self.n:
            return self._all
        if self.perm is None or self.pos + self.batch_size > self.n:
            self.perm, self.pos = self.rng.permutation(self.n), 0
        i = self.pos
        self.pos = i + self.batch_size
        return self.perm[i:i + self.batch_size]


def minibatches(rng, n, batch_size):
    """Endless index batches (a generator over ``Batches``).

    rng : numpy.random.Generator; n : int >= 1 points; batch_size : int >= 1 (>= n: every batch is
    all points in order). An epoch's last n mod batch_size points of the permutation are skipped.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    batches = Batches(rng, _checks.integer("n", n, min_value=1),
                      _checks.integer("batch_size", batch_size, min_value=1))
    def endless():                                   # the arguments are checked now, the batches drawn lazily
        while True:
            yield batches.next()
    return endless()


# -- divergence bookkeeping, shared with the family trainers -------------------------------
def finite_rows(tree, restarts, keys=None):
    """Which restarts have every entry of ``tree[k]`` (k in ``keys``, default all) finite.

    Returns a bool array (R,) for ``restarts`` = R, or a bool for ``restarts`` None (one model).
    """
    ok = True if restarts is None else np.ones(restarts, dtype=bool)
    for k in tree if keys is None else keys:
        v = tree[k]
        fin = xp_of(v).isfinite(v)
        if restarts is None or getattr(v, "ndim", 0) == 0 or v.shape[0] != restarts:
            ok = ok & bool(fin.all())
        else:
            ok = ok & to_host(fin.reshape(restarts, -1).all(axis=1))
    return ok


def _finite_loss(loss):
    """Whether a loss (a scalar, or one per restart) is finite: the one check ``fit`` makes every step."""
    if getattr(loss, "ndim", 0) == 0:
        return math.isfinite(loss)
    return bool(xp_of(loss).isfinite(loss).all())


def _row(a, r):
    """Restart r's entries of an array (all of it for r None or an array without the axis)."""
    return a if r is None or getattr(a, "ndim", 0) == 0 else a[r]


def update_quantity(grads, new_params, r=None):
    """Name what made an update non-finite for restart ``r``: the first parameter that turned
    non-finite, as ``"grads['k']"`` when its gradient was non-finite, else ``"params['k'] after the update"``."""
    for k, v in new_params.items():
        if not bool(xp_of(v).isfinite(_row(v, r)).all()):
            g = None if grads is None else grads.get(k)
            if g is not None and not bool(xp_of(g).isfinite(_row(g, r)).all()):
                return f"grads[{k!r}]"
            return f"params[{k!r}] after the update"
    return "params"


def select_restarts(keep, new, old):
    """``new`` with the restarts where ``keep`` (bool (R,)) is False taken from ``old``.

    Walks nested dicts (parameters, optimiser states: any layout). Leaves that are arrays with
    the restarts axis in front are chosen per restart; other leaves (shared scalars, such as an
    optimiser's step count) are taken from ``new``. Returns new dicts and arrays.
    """
    if isinstance(new, dict):
        return {k: select_restarts(keep, v, old[k]) if isinstance(old, dict) and k in old else v
                for k, v in new.items()}
    R = keep.shape[0]
    if getattr(new, "ndim", 0) >= 1 and new.shape[0] == R and getattr(old, "shape", None) == new.shape:
        xp = xp_of(new)
        return xp.where(xp.asarray(keep).reshape((R,) + (1,) * (new.ndim - 1)), new, old)
    return new


def mask_rows(value, alive):
    """A history value with the rows of frozen restarts (``alive`` False) set to NaN."""
    if alive is None or alive.all() or getattr(value, "shape", ()) != alive.shape:
        return value
    xp = xp_of(value)
    return xp.where(xp.asarray(alive), value, xp.nan)


class StepGuard:
    """Divergence checks for a loop that checks every step in full (``refvae.lin``; ``gradient_step``).

    ``check`` looks at a step's loss and at the parameters it stepped, per restart, and applies the
    policy as ``fit`` does: "raise" raises ``TrainingDiverged`` (its ``result`` from ``result()``,
    the loop's result before the step, if given); "isolate" freezes the diverged restarts (their
    parameters and optimiser state kept as they were before the step, in this and every later
    step) and lists them in ``diverged``.
    """

    def __init__(self, policy="raise", result=None):
        self.policy, self.result = policy, result
        self.alive, self.diverged = None, []

    def check(self, step, loss, grads, params, state, new_params, new_state):
        """Returns the (params, state) to keep after the step."""
        R = np.shape(loss)[0] if np.ndim(loss) == 1 else None
        alive = np.ones(R or 1, dtype=bool) if self.alive is None else self.alive
        fin = np.atleast_1d(to_host(xp_of(loss).isfinite(loss)))
        stepped = {k: v for k, v in new_params.items() if v is not params.get(k)}
        ok = np.atleast_1d(finite_rows(stepped, R))
        for r in np.flatnonzero(~(fin & ok) & alive):
            rr = None if R is None else int(r)
            quantity = "loss" if not fin[r] else update_quantity(grads, stepped, rr)
            if self.policy == "raise" or R is None or alive.sum() == 1:
                raise TrainingDiverged(step, quantity, restart=rr, result=None if self.result is None else self.result())
            alive = alive.copy()
            alive[r] = False
            self.alive = alive
            self.diverged.append(Divergence(rr, int(step), quantity))
        if self.alive is not None and not self.alive.all():
            new_params = select_restarts(self.alive, new_params, params)
            new_state = select_restarts(self.alive, new_state, state)
        return new_params, new_state


def gradient_step(model, params, state, optimizer, xb, noise, step, *, only=None, **overrides):
    """One optimiser step on ``model.value_and_grad`` with every check (``StepGuard``: the loss and
    the stepped parameters), for loops that step rarely enough to afford them.

    Returns (params, state, loss, terms). Raises ``TrainingDiverged`` naming the step and the
    quantity, whose ``params`` and ``state`` are the ones passed in (the last finite).
    """
    loss, grads, terms = model.value_and_grad(params, xb, noise, with_terms=True, **overrides)
    new_params, new_state = optimizer.update(params, grads, state, only=only)
    guard = StepGuard("raise", lambda: FitResult(params, {}, state, step))
    new_params, new_state = guard.check(step, loss, grads, params, state, new_params, new_state)
    return new_params, new_state, loss, terms


def empty_history(model, params, x, batch_size, n_samples=None, overrides=None):
    """A history's ``loss`` and objective terms with no rows, shaped like one step's (``fit(steps=0)``).

    Evaluates the objective once on the first ``batch_size`` points at zero noise: no random
    number is drawn, so a shared generator is left as it was.
    """
    shape = model.noise_shape(params, batch_size, n_samples)
    noise = None if shape is None else xp_of(x).zeros(shape)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        loss, _, terms = model.value_and_grad(params, x[:batch_size], noise, with_terms=True, **(overrides or {}))
    return {k: np.empty((0,) + np.shape(to_host(v)), dtype=np.asarray(to_host(v)).dtype)
            for k, v in {"loss": loss, **terms}.items()}


# -- checks shared by every training loop ------------------------------------------------------
def check_loop_args(x, steps, batch_size, n_samples):
    """Validate the arguments every training loop shares; returns (x, steps, batch_size, n_samples).

    x : (N, d) finite data, N >= 1; steps : int >= 0; batch_size : None (= N) or int in 1..N;
    n_samples : None or int >= 1.
    """
    x = _checks.array("x", x, ndim=2)
    if x.shape[0] < 1:
        raise ValueError(f"x must hold at least one data point, got shape {tuple(x.shape)}")
    steps = _checks.integer("steps", steps, min_value=0)
    n = x.shape[0]
    batch_size = n if batch_size is None else _checks.integer("batch_size", batch_size, min_value=1)
    if batch_size > n:
        raise ValueError(f"batch_size must be <= the number of data points {n}, got {batch_size}")
    return x, steps, batch_size, _checks.integer("n_samples", n_samples, min_value=1, allow_none=True)


def check_model(model, *methods):
    """A model instance with the given methods (``value_and_grad`` and ``noise_shape`` by default)."""
    if isinstance(model, type):
        raise TypeError(f"model must be a model instance (e.g. {model.__name__}(...)), got the class {model.__name__}")
    for name in methods or ("value_and_grad", "noise_shape"):
        if not callable(getattr(model, name, None)):
            raise TypeError(f"model must be a refvae objective with a {name} method, got {type(model).__name__}")
    return model


def check_optimizer(optimizer):
    """An optimiser instance (``init`` and ``update``); None gives ``Adam(1e-3)``."""
    if optimizer is None:
        return Adam(1e-3)
    if isinstance(optimizer, type) or not callable(getattr(optimizer, "init", None)) \
            or not callable(getattr(optimizer, "update", None)):
        raise TypeError(f"optimizer must have init and update methods (an instance such as Adam(1e-3), "
                        f"not the class), got {optimizer!r}")
    return optimizer


def check_callback(callback):
    """None or a callable ``(step, params, info) -> bool``."""
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be a callable (step, params, info) -> bool, got {type(callback).__name__}")
    return callback


def check_schedules(schedules):
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
    if not checked:
        raise ValueError(f"{name} must list at least one (learning rate, steps) stage")
    return checked


def _check_checkpoint(checkpoint, checkpoint_every):
    if checkpoint is None:
        if checkpoint_every is not None:
            raise ValueError("checkpoint_every needs a checkpoint path")
        return None, None
    path = _npz_path(checkpoint, "checkpoint")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"checkpoint folder {folder} is not writable")
    every = _checks.integer("checkpoint_every", checkpoint_every, min_value=1, allow_none=True)
    return path, every


def _progress(stream, step, steps, loss, terms):
    loss = np.atleast_1d(to_host(loss))
    parts = [f"step {step}/{steps}", f"loss {np.nanmean(loss):.4f}"]
    for k in ("recon", "kl", "sigma2"):
        if k in terms:
            parts.append(f"{k} {np.nanmean(to_host(terms[k])):.4g}")
    stream.write("\r" + "  ".join(parts) + " " * 4)
    stream.flush()


# -- the loop ------------------------------------------------------------------------------------
# The committed state after a finished step, replaced as a whole (one assignment), so that Ctrl-C
# anywhere leaves a consistent one: parameters, optimiser state, steps done, random state,
# minibatch position (perm, pos), averaging sums and count.
_Point = namedtuple("_Point", "params state step rng batches acc count")
_Prev = namedtuple("_Prev", "params state grads")


class _Run:
    """One run of ``fit`` / ``fit_stages``: ``plan`` is a list of (optimiser, first step, end step)."""

    def __init__(self, model, x, *, plan, rng, point, history, alive, diverged, batch_size, n_samples,
                 schedules, only, callback, policy, average, progress, log_every, stream, checkpoint,
                 checkpoint_every, config):
        self.model, self.x, self.plan, self.rng = model, x, plan, rng
        self.cur, self.prev = point, None
        self.history, self.alive, self.diverged = history, alive, diverged
        self.batch_size, self.n_samples, self.schedules, self.only = batch_size, n_samples, schedules, only
        self.callback, self.policy, self.progress, self.log_every = callback, policy, progress, log_every
        self.stream, self.checkpoint, self.every, self.config = stream, checkpoint, checkpoint_every, config
        self.total = plan[-1][2]
        self.avg_from = self.total - average if average else None

    # the run as a result ----------------------------------------------------------------------
    def result(self, point=None, rows=None, resumable=True):
        p = self.cur if point is None else point
        rows = p.step if rows is None else rows
        history = {k: np.asarray(v[:rows]) if rows else self._empty.get(k, np.asarray(v[:0]))
                   for k, v in self.history.items()}
        params = {k: v / p.count for k, v in p.acc.items()} if p.count else p.params
        run = None
        if resumable:
            run = {"kind": self.config["kind"], "params": p.params, "rng": p.rng, "batches": p.batches,
                   "acc": p.acc, "count": p.count, "alive": None if self.alive is None else self.alive.copy(),
                   "config": self.config}
        return FitResult(params, history, p.state, p.step, tuple(self.diverged), run)

    def empty_history(self):
        """The history's keys with no rows (no step ran)."""
        self._empty = empty_history(self.model, self.cur.params, self.x, self.batch_size, self.n_samples,
                                    {k: fn(self.cur.step) for k, fn in self.schedules.items()})
        for k in self._empty:
            self.history.setdefault(k, [])

    # divergence ---------------------------------------------------------------------------------
    def _restarts(self, loss):
        return np.shape(loss)[0] if np.ndim(loss) == 1 else None

    def _diverge(self, t, events, params, state):
        """Apply the policy to ``events`` [(restart, step, quantity, from_prev, value)] found at step ``t``.

        Returns the (params, state) to commit, with newly frozen restarts set to their last finite
        values; raises ``TrainingDiverged`` under "raise", without restarts, or when none is left.
        """
        cur, prev = self.cur, self.prev
        r, step, quantity, from_prev, value = min(events, key=lambda e: e[1])
        R = None if r is None else len(np.atleast_1d(to_host(self._last_loss)))
        if self.policy == "raise" or R is None:          # the last point where every number was finite
            point = cur._replace(acc={}, count=0) if not any(e[3] for e in events) else \
                cur._replace(params=prev.params, state=prev.state, step=cur.step - 1, acc={}, count=0)
            raise TrainingDiverged(step, quantity, value, restart=r, result=self.result(point, None, False))
        keep_cur = np.ones(R, dtype=bool)
        if self.alive is None:
            self.alive = np.ones(R, dtype=bool)
        for r, step, quantity, from_prev, _ in events:
            self.alive[r] = False
            keep_cur[r] = not from_prev
            self.diverged.append(Divergence(int(r), int(step), quantity))
        src_params = cur.params if keep_cur.all() else select_restarts(keep_cur, cur.params, prev.params)
        src_state = cur.state if keep_cur.all() else select_restarts(keep_cur, cur.state, prev.state)
        params = select_restarts(self.alive, params, src_params)
        state = select_restarts(self.alive, state, src_state)
        if not self.alive.any():
            point = cur._replace(params=params, state=state, acc={}, count=0)
            raise TrainingDiverged(step, quantity, value, restart=r, result=self.result(point, None, False))
        return params, state

    def _watch(self, t, loss, grads, new_params, new_state, scan):
        """The slow path of a step: a non-finite loss, the averaging window's scan, frozen restarts."""
        cur, prev = self.cur, self.prev
        R = self._restarts(loss)
        alive = np.ones(R or 1, dtype=bool) if self.alive is None else self.alive
        fin = np.atleast_1d(to_host(xp_of(loss).isfinite(loss)))
        bad = ~fin & alive
        events = []
        if bad.any():
            ok = np.atleast_1d(finite_rows(cur.params, R))
            for r in np.flatnonzero(bad):
                rr = None if R is None else int(r)
                if ok[r]:
                    events.append((rr, t, "loss", False, np.atleast_1d(to_host(loss))[r]))
                else:
                    events.append((rr, t - 1, update_quantity(prev.grads, cur.params, rr), True, None))
        if scan:
            ok = np.atleast_1d(finite_rows(new_params, R))
            for r in np.flatnonzero(~ok & alive & ~bad):
                rr = None if R is None else int(r)
                events.append((rr, t, update_quantity(grads, new_params, rr), False, None))
        if events:
            new_params, new_state = self._diverge(t, events, new_params, new_state)
        elif self.alive is not None:
            new_params = select_restarts(self.alive, new_params, cur.params)
            new_state = select_restarts(self.alive, new_state, cur.state)
        return new_params, new_state

    def settle(self):
        """One scan of the committed parameters (end of run, checkpoint, Ctrl-C): a non-finite one was
        made by the last step's update, which is then reported (or its restart frozen)."""
        cur = self.cur
        if self.prev is None or cur.step == 0:
            return
        R = self._restarts(self._last_loss)
        ok = np.atleast_1d(finite_rows(cur.params, R))
        alive = np.ones(R or 1, dtype=bool) if self.alive is None else self.alive
        bad = np.flatnonzero(~ok & alive)
        if bad.size:
            events = [(None if R is None else int(r), cur.step - 1,
                       update_quantity(self.prev.grads, cur.params, None if R is None else int(r)), True, None)
                      for r in bad]
            params, state = self._diverge(cur.step, events, cur.params, cur.state)
            self.cur = cur._replace(params=params, state=state)

    # the loop -------------------------------------------------------------------------------------
    def run(self):
        try:
            stop = False
            for opt, start, end in self.plan:
                if self.cur.step < end and not stop:
                    stop = self._stage(opt, start, end)
            if not self.history:
                self.empty_history()
            self.settle()
        except KeyboardInterrupt:
            if self.progress:
                self.stream.write("\n")
            self.settle()
            result = self.result()
            self._save_on_the_way_out(result)
            raise TrainingInterrupted(result) from None
        except TrainingDiverged:
            raise
        except Exception:                     # keep the finished steps of a run an error ends
            if self.prev is not None and np.all(finite_rows(self.cur.params, None)):
                self._save_on_the_way_out(self.result())
            raise
        if self.progress:
            self.stream.write("\n")
        result = self.result()
        if self.checkpoint is not None:
            save_checkpoint(self.checkpoint, self.model, result)
        return result

    def _save_on_the_way_out(self, result):
        """Save the checkpoint while an interruption or an error propagates; a failure to save must
        not hide that error (or lose the result the interruption carries), so it becomes a warning."""
        if self.checkpoint is None:
            return
        try:
            save_checkpoint(self.checkpoint, self.model, result)
        except Exception as exc:
            warnings.warn(f"the run could not be saved to {self.checkpoint}: {type(exc).__name__}: {exc}",
                          UserWarning, stacklevel=3)

    def _stage(self, opt, start, end):
        model, x, rng, only, schedules = self.model, self.x, self.rng, self.only, self.schedules
        n, b = x.shape[0], self.batch_size
        cur = self.cur
        batches = Batches(rng, n, b)
        if cur.step == start:                 # a stage starts with a fresh optimiser state and epoch
            state = opt.init(cur.params)
        else:                                 # resumed inside this stage
            state = cur.state
            batches.perm, batches.pos = cur.batches
        params = cur.params
        shape = model.noise_shape(params, b, self.n_samples)
        history, callback, avg_from = self.history, self.callback, self.avg_from
        host = xp_of(x) is np                 # history rows are kept on the host
        # The step: opt.update, or the same step into the next of three packed copies (module docstring).
        # The first step goes through the checks of value_and_grad and of the update; later ones, whose
        # inputs are the same kinds of arrays, skip them where the objective offers that (schedules'
        # values change every step, so those keep the objective's checks).
        ring = opt.ring(params) if callable(getattr(opt, "ring", None)) else None
        value_and_grad, update = model.value_and_grad, opt.update if ring is None else ring.update
        fast = getattr(model, "value_and_grad_unchecked", None)
        later = (fast if fast and not schedules else value_and_grad,
                 ring.update_unchecked if fast and ring is not None else update)
        stop = False
        for t in range(cur.step, end):
            idx = batches.next()
            xb = x[idx] if b < n else x
            noise = None if shape is None else normal(rng, shape)
            overrides = {k: fn(t) for k, fn in schedules.items()}
            # overflow on the way to a divergence is reported by the checks below, naming the step
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                loss, grads, terms = value_and_grad(params, xb, noise, with_terms=True, **overrides)
                new_params, new_state = update(params, grads, state, only=only)
            value_and_grad, update = later
            self._last_loss = loss
            scan = avg_from is not None and t >= avg_from
            if scan or self.alive is not None or not _finite_loss(loss):
                new_params, new_state = self._watch(t, loss, grads, new_params, new_state, scan)
            info = {"loss": loss, **terms}
            if self.alive is not None:
                info = {k: mask_rows(v, self.alive) for k, v in info.items()}
            for k, v in info.items():
                history.setdefault(k, []).append(v if host else to_host(v))
            acc, count = self.cur.acc, self.cur.count
            if scan:
                acc = {k: acc[k] + v for k, v in new_params.items()} if count else \
                    {k: v.copy() for k, v in new_params.items()}
                count += 1
            self.prev, self.cur = _Prev(params, state, grads), _Point(
                new_params, new_state, t + 1, rng.bit_generator.state, (batches.perm, batches.pos), acc, count)
            params, state = new_params, new_state
            if callback is not None:          # a ring overwrites its arrays three steps on: hand a copy
                given = params if ring is None else {k: v.copy() for k, v in params.items()}
                stop = bool(callback(t, given, info))
            if self.progress and (t % self.log_every == 0 or t == self.total - 1 or stop):
                _progress(self.stream, t + 1, self.total, loss, terms)
            if self.every is not None and (t + 1) % self.every == 0 and t + 1 < self.total:
                self.settle()
                save_checkpoint(self.checkpoint, model, self.result())
                params, state = self.cur.params, self.cur.state
            if stop:
                return True
        return False


def _start(model, params, x, *, kind, seed, resume, optimizer, batch_size, n_samples, schedules, only,
           extra_config):
    """Validate the start of a run (fresh or resumed): returns (rng, point, history, alive, diverged, config)."""
    only_config = list(only) if isinstance(only, (list, tuple)) else only if isinstance(only, (str, type(None))) \
        else repr(only)
    config = {"kind": kind, "batch_size": batch_size, "n_samples": n_samples, "n_points": int(x.shape[0]),
              "data": _digest(x), "only": only_config,
              "optimizer": _describe(optimizer), "schedules": sorted(schedules), **extra_config}
    config = json.loads(json.dumps(config))
    if resume is None:
        _checks.params("params", params)
        rng = make_rng(seed)
        point = _Point(dict(params), optimizer.init(params), 0, rng.bit_generator.state, (None, 0), {}, 0)
        return rng, point, {}, None, [], config
    if params is not None or seed is not None:
        raise ValueError("params and seed must be None when resuming: the checkpoint holds the parameters and "
                         "the random state")
    ckpt = load_checkpoint(resume, model) if isinstance(resume, (str, os.PathLike)) else resume
    if not isinstance(ckpt, FitResult) or not ckpt.run:
        raise TypeError(f"resume must be a checkpoint path or a FitResult of fit/fit_stages (e.g. "
                        f"TrainingInterrupted.result), got {type(ckpt).__name__}")
    then = ckpt.run["config"]
    for key in sorted(set(config) | set(then)):
        if key != "steps" and config.get(key) != then.get(key):
            raise ValueError(f"resume: {key} is {config.get(key)!r} but the checkpointed run used "
                             f"{then.get(key)!r}; a resumed run must repeat the original arguments")
    _checks.params("checkpoint params", ckpt.run["params"])
    state = ckpt.run["rng"]
    rng = np.random.Generator(getattr(np.random, state["bit_generator"])())
    rng.bit_generator.state = state
    point = _Point(ckpt.run["params"], ckpt.state, ckpt.step, state, tuple(ckpt.run["batches"]),
                   ckpt.run["acc"] or {}, ckpt.run["count"])
    history = {k: list(v) for k, v in ckpt.history.items()}
    alive = None if ckpt.run["alive"] is None else np.array(ckpt.run["alive"], dtype=bool)
    return rng, point, history, alive, list(ckpt.diverged), config


def fit(model, params, x, *, steps, seed, batch_size=None, optimizer=None, n_samples=None, schedules=None,
        only=None, callback=None, on_divergence=None, checkpoint=None, checkpoint_every=None, resume=None,
        progress=False, log_every=100, stream=None):
    """Train ``model`` from ``params`` on data ``x`` by minibatch gradient descent.

    Parameters
    ----------
    model : an objective with ``value_and_grad(params, x, noise, ...)`` and ``noise_shape``.
    params : dict from ``model.init`` (left unchanged; the result holds new arrays); finite real
        floating-point arrays. None when resuming.
    x : (N, d) data, N >= 1.
    steps : int >= 0, the number of optimiser steps of the run (a resumed run continues to it).
    seed : int or numpy.random.Generator for minibatches and noise; None when resuming.
    batch_size : int, default N (full batch).
    optimizer : an optimiser instance, default ``Adam(1e-3)``.
    n_samples : Monte Carlo samples per point (default: one, noise shape without a sample axis).
    schedules : dict name -> callable(step) -> value, passed to ``value_and_grad`` by keyword
        (``{"beta": linear_ramp(0, 1, 1000)}`` anneals the KL; ``{"sigma2": ...}`` is an
        external variance schedule for ``obs="fixed"``).
    only : prefixes of the keys to train (e.g. ``("enc.",)``: encoder only, decoder frozen).
    callback : callable(step, params, info) after every step, ``info`` = {"loss": loss, **terms}
        (the objective's terms); returning True stops.
    on_divergence : "raise" or "isolate" (see the module docstring); None: the current
        ``divergence_policy`` ("raise" unless set).
    checkpoint : path (.npz appended if missing) to save the whole run to: every
        ``checkpoint_every`` steps (if given), at the end, on Ctrl-C and on an error. Its folder
        is checked writable before any work.
    resume : a checkpoint path or a ``FitResult`` (e.g. ``TrainingInterrupted.result``) to
        continue, with ``params`` and ``seed`` None and every other argument as in the original
        call (they are checked against the checkpoint's: model, data, batch size, optimiser, ...).
    progress : print a progress line to ``stream`` (stderr) every ``log_every`` steps.

    Returns
    -------
    FitResult, whose history has one row per step: ``loss`` and each term of the objective
    (``recon``, ``kl``, ``sigma2``, ``beta`` for the Gaussian VAE), shape (steps,) or (steps, R).

    Raises
    ------
    TrainingDiverged when the loss, a gradient or a parameter turns non-finite (see the module
    docstring); TrainingInterrupted on Ctrl-C.
    """
    return _fit(model, params, x, kind="fit", steps=steps, seed=seed, batch_size=batch_size, optimizer=optimizer,
                n_samples=n_samples, schedules=schedules, only=only, callback=callback, on_divergence=on_divergence,
                checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume, progress=progress,
                log_every=log_every, stream=stream)


def fit_stages(model, params, x, *, stages, seed, optimizer=None, batch_size=None, n_samples=None, schedules=None,
               only=None, callback=None, average=0, on_divergence=None, checkpoint=None, checkpoint_every=None,
               resume=None, progress=False, log_every=100, stream=None):
    """``fit`` under a piecewise-constant learning rate, e.g. ``stages=[(1e-2, 2000), (1e-3, 500)]``.

    Monte Carlo gradients make the iterates jitter around an optimum by an amount that shrinks
    with the step size; ending with a small-rate stage (and optionally averaging) settles them.

    Parameters
    ----------
    stages : non-empty sequence of (learning rate > 0, steps >= 0). Each stage steps a copy of
        ``optimizer`` whose base rate is the stage's (its group rates, if any, scaled by the same
        factor, so they keep their ratio to the base rate), from a fresh optimiser state and a
        fresh epoch of minibatches.
    optimizer : an optimiser instance with ``lr`` (and optionally ``group_lr``); default ``Adam()``.
        Its own ``lr`` only sets the scale of its group rates.
    seed : int or numpy.random.Generator; one stream feeds every stage.
    schedules : dict name -> callable(step) -> value, indexed by the step counted over all
        stages, so a recorded trajectory replays across stage breaks.
    callback : callable(step, params, info) after every step (global step); returning True ends
        the training (the remaining stages are skipped).
    average : int >= 0; if positive, ``params`` is the mean of the iterates of the last
        ``average`` steps (Polyak-Ruppert averaging; of those reached, if the run stopped in that
        window) instead of the last one. Not for parameters with a continuous symmetry (an average
        over a rotation orbit shrinks them).
    model, params, x, batch_size, n_samples, only, on_divergence, checkpoint, checkpoint_every,
    resume, progress, log_every, stream : as ``fit``.

    Returns
    -------
    FitResult (``params, history = result`` unpacks it): the history of every stage, one row per step.
    """
    stages = check_stages("stages", stages)
    total = sum(n for _, n in stages)
    average = _checks.integer("average", average, min_value=0)
    if average > total:
        raise ValueError(f"average must be <= the total number of steps {total}, got {average}")
    optimizer, rate = _stage_optimizer(optimizer)
    return _fit(model, params, x, kind="fit_stages", steps=total, stages=stages, rate=rate, average=average, seed=seed,
                batch_size=batch_size, optimizer=optimizer, n_samples=n_samples, schedules=schedules, only=only,
                callback=callback, on_divergence=on_divergence, checkpoint=checkpoint,
                checkpoint_every=checkpoint_every, resume=resume, progress=progress, log_every=log_every,
                stream=stream)


def _stage_optimizer(optimizer):
    """(instance, lr -> the stage's optimiser) for ``fit_stages``; a factory lr -> optimiser is deprecated."""
    if optimizer is None:
        optimizer = Adam()
    elif isinstance(optimizer, type) or (callable(optimizer) and not callable(getattr(optimizer, "update", None))):
        warnings.warn("fit_stages(optimizer=<factory lr -> optimiser>) is deprecated: pass an instance "
                      "(e.g. SGD(1.0, group_lr=...)); each stage sets its base rate", DeprecationWarning, stacklevel=3)
        factory = optimizer
        return check_optimizer(factory(1.0)), lambda lr: check_optimizer(factory(lr))
    optimizer = check_optimizer(optimizer)
    if not isinstance(getattr(optimizer, "lr", None), float):
        raise TypeError(f"optimizer must have a float lr attribute for fit_stages to set each stage's rate, "
                        f"got {optimizer!r}")
    return optimizer, lambda lr: with_rate(optimizer, lr)


def with_rate(optimizer, lr):
    """A copy of ``optimizer`` with base rate ``lr`` and its group rates scaled by lr / optimizer.lr."""
    opt = copy.copy(optimizer)
    factor = lr / optimizer.lr
    opt.lr = lr
    if getattr(optimizer, "group_lr", None):
        opt.group_lr = {p: v * factor for p, v in optimizer.group_lr.items()}
    return opt


def _fit(model, params, x, *, kind, steps, seed, batch_size, optimizer, n_samples, schedules, only, callback,
         on_divergence, checkpoint, checkpoint_every, resume, progress, log_every, stream, stages=None, rate=None,
         average=0):
    """Validation (before any work) and the run, for ``fit`` and ``fit_stages``."""
    check_model(model)
    x, steps, batch_size, n_samples = check_loop_args(x, steps, batch_size, n_samples)
    schedules = check_schedules(schedules)
    optimizer = check_optimizer(optimizer)
    callback = check_callback(callback)
    policy = resolve_policy(on_divergence)
    log_every = _checks.integer("log_every", log_every, min_value=1)
    stream = sys.stderr if stream is None else stream
    if progress and not callable(getattr(stream, "write", None)):
        raise TypeError(f"stream must have a write method (a text file), got {type(stream).__name__}")
    checkpoint, checkpoint_every = _check_checkpoint(checkpoint, checkpoint_every)
    extra = {} if stages is None else {"stages": [list(s) for s in stages], "average": average}
    rng, point, history, alive, diverged, config = _start(
        model, params, x, kind=kind, seed=seed, resume=resume, optimizer=optimizer, batch_size=batch_size,
        n_samples=n_samples, schedules=schedules, only=only, extra_config=extra)
    if point.step > steps:
        raise ValueError(f"steps must be >= the {point.step} steps the resumed run has taken, got {steps}")
    plan, start = [], 0
    for lr, n in stages or [(None, steps)]:
        plan.append((optimizer if lr is None else rate(lr), start, start + n))
        start += n
    run = _Run(model, to_device(x), plan=plan, rng=rng, point=point, history=history, alive=alive,
               diverged=diverged, batch_size=batch_size, n_samples=n_samples, schedules=schedules, only=only,
               callback=callback, policy=policy, average=average, progress=progress, log_every=log_every,
               stream=stream, checkpoint=checkpoint, checkpoint_every=checkpoint_every, config=config)
    run._empty = {}
    return run.run()


# -- files: checkpoints and parameters -----------------------------------------------------------
_FORMAT = "refvae-checkpoint"
_MANIFEST = "__refvae__"


def _npz_path(path, name="path"):
    """``path`` with the ``.npz`` suffix (appended if missing, as ``numpy.savez`` does)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a file path (str or os.PathLike), got {type(path).__name__}")
    path = os.fspath(path)
    return path if path.endswith(".npz") else path + ".npz"


def _digest(x):
    """sha256 of an array's dtype, shape and bytes (the data a run was trained on)."""
    a = np.ascontiguousarray(to_host(x))
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.data)
    return h.hexdigest()[:32]


def _describe(obj, depth=0):
    """A JSON-able description of a model's (or optimiser's) configuration, to check a checkpoint
    against: its class, its public numbers and strings, its layers (by repr), nested refvae objects."""
    out = {"class": f"{type(obj).__module__}.{type(obj).__qualname__}"}
    for k, v in sorted(vars(obj).items()) if hasattr(obj, "__dict__") else ():
        if k.startswith("_"):
            continue
        if isinstance(v, (bool, np.bool_, str)) or v is None:
            out[k] = v if not isinstance(v, np.bool_) else bool(v)
        elif isinstance(v, numbers.Integral):
            out[k] = int(v)
        elif isinstance(v, numbers.Real):
            out[k] = float(v)
        elif isinstance(v, np.ndarray) and v.size <= 64 and v.dtype.kind in "biuf":
            out[k] = v.tolist()
        elif isinstance(v, dict) and all(isinstance(a, str) and isinstance(b, numbers.Real) for a, b in v.items()):
            out[k] = {a: float(b) for a, b in v.items()}
        elif isinstance(v, Layer):
            out[k] = repr(v)
        elif depth < 3 and type(v).__module__.startswith("refvae"):
            out[k] = _describe(v, depth + 1)
    return json.loads(json.dumps(out))


def _first_difference(want, got, path="model"):
    if isinstance(want, dict) and isinstance(got, dict):
        for k in sorted(set(want) | set(got), key=lambda k: (k != "class", k)):     # the class first
            d = _first_difference(want.get(k), got.get(k), f"{path}.{k}")
            if d:
                return d
        return None
    return None if want == got else f"{path} is {got!r} here but {want!r} in the checkpoint"


class _Writer:
    """Arrays named a0, a1, ... for an .npz, and a JSON spec of the tree they came from."""

    def __init__(self):
        self.arrays = {}

    def array(self, path, a):
        a = to_host(a)
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
            what = f"dtype {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
            raise TypeError(f"{path} must be a numeric array to be saved, got {what}")
        name = f"a{len(self.arrays)}"
        self.arrays[name] = a
        return name

    def tree(self, path, t):
        """Nested dicts with str keys; leaves arrays, numbers, strings or None (kept with their types)."""
        if isinstance(t, dict):
            for k in t:
                if not isinstance(k, str):
                    raise TypeError(f"{path} must have str keys, got {k!r}")
            return {"dict": {k: self.tree(f"{path}[{k!r}]", v) for k, v in t.items()}}
        if hasattr(t, "__array__") and hasattr(t, "dtype") and not isinstance(t, np.generic):
            return {"array": self.array(path, t)}
        if isinstance(t, np.generic):
            return {"scalar": self.array(path, np.asarray(t))}
        if isinstance(t, (bool, int, float, str)) or t is None:
            return {"py": t}
        if isinstance(t, (tuple, list)):
            return {"list": [self.tree(f"{path}[{i}]", v) for i, v in enumerate(t)], "tuple": isinstance(t, tuple)}
        raise TypeError(f"{path} must hold arrays, numbers, strings or dicts of them, got {type(t).__name__}")


def _read_tree(spec, arrays, device=True):
    """The tree ``_Writer.tree`` described; its arrays on the current backend if ``device`` (numbers stay
    Python or NumPy scalars of their own type: an optimiser's int step count stays an int)."""
    if "dict" in spec:
        return {k: _read_tree(v, arrays, device) for k, v in spec["dict"].items()}
    if "array" in spec:
        a = arrays[spec["array"]]
        return to_device(a) if device else a
    if "scalar" in spec:
        return arrays[spec["scalar"]][()]
    if "list" in spec:
        items = [_read_tree(v, arrays, device) for v in spec["list"]]
        return tuple(items) if spec.get("tuple") else items
    return spec["py"]


def _write_npz(path, arrays):
    """Write an .npz atomically: a temporary file in the same folder, then ``os.replace``."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _read_npz(path):
    """Every array of an .npz, or ``CheckpointError`` saying why the file is not one refvae can read."""
    path = _npz_path(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{path} is a single .npy array, not an .npz archive of parameters")
        with data:
            return {k: data[k] for k in data.files}
    except CheckpointError:
        raise
    except ValueError as exc:
        # NumPy's own messages here suggest unpickling, which refvae never needs: say what the file is
        reason = "it holds an object array, which refvae never writes" if "Object arrays" in str(exc) else \
            "it is not an .npz archive (neither a zip file nor a NumPy array file)"
        raise CheckpointError(f"{path} cannot be read by refvae: {reason}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError) as exc:
        raise CheckpointError(f"{path} cannot be read by refvae: the archive is truncated or corrupted "
                              f"({type(exc).__name__}: {exc})") from None


def save_checkpoint(path, model, result):
    """Save a whole run to ``path`` (.npz appended if missing), atomically.

    Holds the model's configuration (class, numbers, layers: checked when loading), the
    parameters, the optimiser state (any nested dict of arrays and numbers), the history, the
    steps taken, the frozen restarts and, for a resumable ``result`` (from ``fit`` /
    ``fit_stages`` or ``TrainingInterrupted``), the random state and minibatch position.
    Object arrays are refused.
    """
    path = _npz_path(path)
    if not isinstance(result, FitResult):
        raise TypeError(f"result must be a FitResult, got {type(result).__name__}")
    _checks.params("result.params", result.params)
    w = _Writer()
    manifest = {"format": _FORMAT, "version": 1, "model": _describe(model), "step": int(result.step),
                "diverged": [[d.restart, d.step, d.quantity] for d in result.diverged],
                "params": w.tree("result.params", result.params),
                "history": w.tree("result.history", {k: np.asarray(v) for k, v in result.history.items()}),
                "state": w.tree("result.state", result.state)}
    if result.run:
        run = dict(result.run)
        perm, pos = run.pop("batches")
        run = {**run, "perm": perm, "pos": int(pos), "acc": run["acc"] or {}}
        manifest["run"] = w.tree("result.run", run)
    _write_npz(path, {_MANIFEST: np.array(json.dumps(manifest)), **w.arrays})


def load_checkpoint(path, model):
    """Load a run saved by ``save_checkpoint`` (or ``fit(checkpoint=...)``) for ``model``.

    Returns a ``FitResult`` (parameters and optimiser state on the current backend) that
    ``fit(..., resume=result)`` continues. Raises ``CheckpointError`` when the file is not a
    refvae checkpoint or was written for a model of another class, configuration or parameter shape.
    """
    path = _npz_path(path)
    arrays = _read_npz(path)
    if _MANIFEST not in arrays:
        raise CheckpointError(f"{path} is not a refvae checkpoint (no manifest; parameter files are read "
                              f"by load_params)" if arrays else f"{path} is an empty archive, not a refvae checkpoint")
    try:
        manifest = json.loads(str(arrays[_MANIFEST]))
        if manifest.get("format") != _FORMAT:
            raise ValueError("format")
        params = _read_tree(manifest["params"], arrays)
        history = _read_tree(manifest["history"], arrays, device=False)
        state = _read_tree(manifest["state"], arrays)
        run = _read_tree(manifest["run"], arrays, device=False) if "run" in manifest else None
        if run is not None:
            run["params"], run["acc"] = to_device(run["params"]), to_device(run["acc"])
        diverged = tuple(Divergence(int(r), int(s), str(q)) for r, s, q in manifest["diverged"])
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise CheckpointError(f"{path} is not a valid refvae checkpoint (damaged manifest: "
                              f"{type(exc).__name__})") from None
    if not params:
        raise CheckpointError(f"{path} holds no parameters")
    diff = _first_difference(manifest["model"], _describe(model))
    if diff:
        raise CheckpointError(f"{path} was written for another model: {diff}")
    if callable(getattr(model, "init", None)):
        from .objectives import _template          # training sits above the objectives
        try:
            _checks.params_like(params, _template(model), name="checkpoint params")
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path} does not fit this model: {exc}") from None
    if run is not None:
        run["batches"] = (run.pop("perm"), run.pop("pos"))
        run["alive"] = None if run["alive"] is None else np.asarray(run["alive"], dtype=bool)
    return FitResult(params, history, state, int(manifest["step"]), diverged, run)


def save_params(path, params):
    """Save a parameter dict to ``path`` (.npz, appended if missing), exactly (dtype and values kept, host copy).

    Atomic (a failed write leaves any previous file intact); str keys and numeric arrays only.
    """
    path = _npz_path(path)
    if not isinstance(params, dict) or not params:
        raise TypeError(f"params must be a non-empty dict of arrays, got {type(params).__name__}"
                        + (" (empty)" if isinstance(params, dict) else ""))
    w = _Writer()
    arrays = {}
    for k, v in params.items():
        if not isinstance(k, str) or not hasattr(v, "shape") or k == _MANIFEST:
            raise TypeError(f"params must map str keys to arrays, got {k!r}: {type(v).__name__}")
        w.array(f"params[{k!r}]", v)
        arrays[k] = to_host(v)
    _write_npz(path, arrays)


def load_params(path):
    """Load a parameter dict saved by ``save_params`` (same ``path``), onto the current backend.

    A checkpoint's parameters are read too. Raises ``CheckpointError`` for an empty, truncated,
    corrupted or foreign file, ``FileNotFoundError`` when there is none.
    """
    path = _npz_path(path)
    arrays = _read_npz(path)
    if _MANIFEST in arrays:
        try:
            manifest = json.loads(str(arrays[_MANIFEST]))
            params = _read_tree(manifest["params"], arrays)
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path} is not a valid refvae checkpoint (damaged manifest: "
                                  f"{type(exc).__name__})") from None
    else:
        params = to_device(arrays)
    if not params:
        raise CheckpointError(f"{path} holds no parameters (an empty archive)")
    return params

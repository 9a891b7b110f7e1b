"""Finite-difference gradient checks in float64, for users' own layers and objectives.

Point it at any ``fun(params) -> (value, grads)`` where ``value`` is a scalar or an array
(its sum is differentiated) and ``grads`` holds the claimed gradient for some or all keys
of ``params`` (keys absent from ``grads`` are held fixed).

Two checks are run, both with fourth-order (Richardson) central differences

    f'(0) ~ [8 (f(h) - f(-h)) - (f(2h) - f(-2h))] / (12 h),

whose truncation error is O(h^4), so a step h = 1e-4 keeps round-off (~ eps |f| / h) and
truncation both far below 1e-6 relative:

- entrywise: each checked entry of each array, perturbed alone;
- random directions: f along a random direction v of all checked arrays at once, against
  sum_k <grads_k, v_k>. This sees every entry, so it also catches errors in entries the
  entrywise check skipped.

Relative error of an analytic value a against a numerical n is |a - n| / max(|a|, |n|, floor).
``floor`` is the derivative scale finite differences cannot resolve: by default the round-off
level of the difference quotient, 10 eps (1 + |f|) / h, divided by ``rtol``, so that an exact
zero against pure round-off passes while any error larger than the round-off level fails.
A non-finite analytic or numerical value counts as an infinite error.

Functions with kinks (ReLU, soft thresholds, abs) must be evaluated at least 2h away from them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import _checks
from .backend import make_rng, sum_to_shape, to_host, xp_of


@dataclass
class GradCheckResult:
    """Outcome of ``check_grad``: worst relative error and where it occurred."""
    max_rel_error: float
    worst: str
    rtol: float
    n_checks: int
    errors: list = field(default_factory=list)   # (label, analytic, numerical, rel_error)

    @property
    def passed(self) -> bool:
        return self.max_rel_error <= self.rtol

    def __str__(self):
        head = f"gradient check: max relative error {self.max_rel_error:.3e} at {self.worst} " \
               f"(tolerance {self.rtol:.1e}, {self.n_checks} checks)"
        bad = [e for e in self.errors if e[3] > self.rtol][:10]
        lines = [f"  {lab}: analytic {a:.10e}, numerical {n:.10e}, rel {r:.2e}" for lab, a, n, r in bad]
        return "\n".join([head, *lines])


def _total(fun, params):
    value = fun(params)[0]
    return float(to_host(value).sum()) if hasattr(value, "shape") else float(value)


def _directional(fun, params, direction, h):
    def at(t):
        return _total(fun, {k: (v + t * direction[k] if k in direction else v) for k, v in params.items()})
    return (8.0 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12.0 * h)


def _rel(a, n, floor):
    # a NaN or inf on either side is an infinite error (NaN would otherwise compare False and pass)
    if not (np.isfinite(a) and np.isfinite(n)):
        return float("inf")
    return abs(a - n) / max(abs(a), abs(n), floor)


def check_grad(fun, params, *, keys=None, h=1e-4, rtol=1e-6, floor=None, max_entries=20,
               n_directions=3, seed=0):
    """Compare ``fun``'s claimed gradient with finite differences.

    Parameters
    ----------
    fun : callable, params -> (value, grads) [extra return values are ignored].
    params : dict of finite float64 arrays.
    keys : keys to check: a sequence of keys, or one key as a str (default: all keys present in
        the returned grads).
    h : finite-difference step.
    rtol : tolerance on the relative error.
    floor : derivative scale below which errors are judged absolutely (default: the
        round-off level over ``rtol``; see the module docstring).
    max_entries : entries checked per array (chosen at random; all if the array is smaller).
    n_directions : number of random-direction checks.
    seed : seed for the entries and directions chosen.

    Returns
    -------
    GradCheckResult
    """
    if not callable(fun):
        raise TypeError(f"fun must be a callable params -> (value, grads), got {type(fun).__name__}")
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
    for k, v in params.items():
        if getattr(v, "dtype", None) != np.float64:
            raise TypeError(f"params[{k!r}] must be float64 for a gradient check, got {getattr(v, 'dtype', type(v))}")
        if not bool(xp_of(v).isfinite(v).all()):
            raise ValueError(f"params[{k!r}] must be finite for a gradient check (found NaN or inf): finite "
                             f"differences at a non-finite point mean nothing")
    if keys is not None:
        if isinstance(keys, str):                # one key, as ``only`` takes one prefix
            keys = [keys]
        elif not hasattr(keys, "__iter__"):
            raise TypeError(f"keys must be None, a key (str) or a sequence of keys, got {type(keys).__name__}")
    h = _checks.scalar("h", h, positive=True)
    rtol = _checks.scalar("rtol", rtol, positive=True)
    floor = None if floor is None else _checks.scalar("floor", floor, positive=True)
    max_entries = _checks.integer("max_entries", max_entries, min_value=0)
    n_directions = _checks.integer("n_directions", n_directions, min_value=0)
    if max_entries == 0 and n_directions == 0:
        raise ValueError("max_entries and n_directions are both 0: nothing would be checked")
    rng = make_rng(seed)
    out = fun(params)
    if not isinstance(out, tuple) or len(out) < 2 or not isinstance(out[1], dict):
        raise TypeError("fun(params) must return (value, grads) with grads a dict of arrays")
    grads = out[1]
    keys = sorted(grads) if keys is None else list(keys)
    if not keys:
        raise ValueError("nothing to check: no keys selected (grads is empty or keys=[])")
    for k in keys:
        if k not in params or k not in grads:
            raise KeyError(f"key {k!r} must be in both params and the returned grads")
        got = tuple(getattr(grads[k], "shape", ()))
        if got != tuple(params[k].shape):
            raise ValueError(f"grads[{k!r}] has shape {got}, params[{k!r}] has {tuple(params[k].shape)}")
    if floor is None:
        floor = 10 * np.finfo(np.float64).eps * (1.0 + abs(_total(fun, params))) / h / rtol
    errors = []
    for k in keys:
        g = to_host(grads[k])
        size = g.size
        picks = range(size) if size <= max_entries else rng.choice(size, max_entries, replace=False)
        xp = xp_of(params[k])
        for flat in picks:
            idx = np.unravel_index(int(flat), g.shape)
            e = np.zeros(g.shape)
            e[idx] = 1.0
            n = _directional(fun, params, {k: xp.asarray(e)}, h)
            a = float(g[idx])
            errors.append((f"{k}{list(map(int, idx))}", a, n, _rel(a, n, floor)))
    for i in range(n_directions):
        direction = {k: xp_of(params[k]).asarray(rng.standard_normal(params[k].shape)) for k in keys}
        n = _directional(fun, params, direction, h)
        a = float(sum(float(to_host((grads[k] * direction[k]).sum())) for k in keys))
        errors.append((f"direction {i}", a, n, _rel(a, n, floor)))
    worst = max(errors, key=lambda e: e[3])
    return GradCheckResult(worst[3], worst[0], rtol, len(errors), errors)


def assert_grad(fun, params, **kwargs):
    """``check_grad`` that raises ``AssertionError`` with a readable report when it fails."""
    result = check_grad(fun, params, **kwargs)
    if not result.passed:
        raise AssertionError(str(result))
    return result


def layer_fun(layer, x, cotangent):
    """Wrap a layer as ``fun(p) -> (sum(forward * cotangent), grads)`` with the input as key ``"x"``.

    ``p`` holds the layer's parameters and ``"x"``, so one check covers the parameter
    gradients and the input gradient of ``backward``. ``cotangent`` has the output's shape.
    An input shared by every restart (x (B, n_in) with parameters (R, ...)) gets the gradient of
    the sum over restarts: ``backward``'s (R, B, n_in) input gradient summed back to x's shape.
    """
    def fun(p):
        params = {k: v for k, v in p.items() if k != "x"}
        y, cache = layer.forward(params, p["x"])
        if tuple(y.shape) != tuple(getattr(cotangent, "shape", ())):
            raise ValueError(f"cotangent must have the layer output's shape {tuple(y.shape)}, "
                             f"got {tuple(getattr(cotangent, 'shape', ()))}")
        dx, grads = layer.backward(params, cache, cotangent)
        return (y * cotangent).sum(), {**grads, "x": sum_to_shape(dx, p["x"].shape)}
    return fun

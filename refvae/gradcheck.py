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

Functions with kinks (ReLU, soft thresholds, abs) must be evaluated at least 2h away from them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import _checks
from .backend import to_host, xp_of


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
    return abs(a - n) / max(abs(a), abs(n), floor)


def check_grad(fun, params, *, keys=None, h=1e-4, rtol=1e-6, floor=None, max_entries=20,
               n_directions=3, seed=0):
    """Compare ``fun``'s claimed gradient with finite differences.

    Parameters
    ----------
    fun : callable, params -> (value, grads) [extra return values are ignored].
    params : dict of float64 arrays.
    keys : keys to check (default: all keys present in the returned grads).
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
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
    for k, v in params.items():
        if getattr(v, "dtype", None) != np.float64:
            raise TypeError(f"params[{k!r}] must be float64 for a gradient check, got {getattr(v, 'dtype', type(v))}")
    h = _checks.scalar("h", h, positive=True)
    rng = np.random.default_rng(seed)
    out = fun(params)
    grads = out[1]
    keys = sorted(grads) if keys is None else list(keys)
    for k in keys:
        if k not in params or k not in grads:
            raise KeyError(f"key {k!r} must be in both params and the returned grads")
        if tuple(grads[k].shape) != tuple(params[k].shape):
            raise ValueError(f"grads[{k!r}] has shape {tuple(grads[k].shape)}, params[{k!r}] has {tuple(params[k].shape)}")
    if floor is None:
        floor = 10 * np.finfo(np.float64).eps * (1.0 + abs(_total(fun, params))) / h / rtol
    errors = []
    for k in keys:
        g = to_host(grads[k])
        size = g.size
        picks = range(size) if size <= max_entries else rng.choice(size, max_entries, replace=False)
        for flat in picks:
            idx = np.unravel_index(int(flat), g.shape)
            e = np.zeros(g.shape)
            e[idx] = 1.0
            xp = xp_of(params[k])
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
    gradients and the input gradient of ``backward``.
    """
    def fun(p):
        params = {k: v for k, v in p.items() if k != "x"}
        y, cache = layer.forward(params, p["x"])
        dx, grads = layer.backward(params, cache, cotangent)
        return (y * cotangent).sum(), {**grads, "x": dx}
    return fun

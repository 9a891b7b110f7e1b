"""Input validation shared by every public entry point.

Each check names the argument and what was expected, and runs before any work.
"""
from __future__ import annotations

import numbers

import numpy as np

from .backend import to_host, xp_of


def array(name, a, *, ndim=None, min_ndim=None, shape=None, last_dim=None, finite=True,
          positive=False, nonneg=False, integer=False):
    """Validate an array-like and return it (float64 unless ``integer``), on its own backend.

    ``shape`` may contain ``None`` for free sizes. Lists are converted with NumPy.
    """
    xp = xp_of(a)
    if isinstance(a, np.ma.MaskedArray):
        raise TypeError(f"{name} must be a plain array, got a numpy.ma.MaskedArray (its masked entries would "
                        f"be used as numbers): drop or fill them first, e.g. {name}.filled(value)")
    if not hasattr(a, "dtype"):
        try:
            a = np.asarray(a)
        except Exception as exc:
            raise TypeError(f"{name} must be an array of numbers, got {type(a).__name__}") from exc
    if a.dtype.kind == "b":     # a mask passed by mistake; never read silently as 0/1 numbers
        want = "an integer array" if integer else "a real numeric array (convert with .astype(float) if 0/1 is meant)"
        raise TypeError(f"{name} must be {want}, got dtype bool")
    if a.dtype == object or a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    if integer:
        if a.dtype.kind not in "iu":
            raise TypeError(f"{name} must be an integer array, got dtype {a.dtype}")
    else:
        a = a.astype(xp.float64, copy=False)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {tuple(a.shape)}")
    if min_ndim is not None and a.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape {tuple(a.shape)}")
    if shape is not None:
        if len(shape) != a.ndim or any(s is not None and s != n for s, n in zip(shape, a.shape)):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {tuple(a.shape)}")
    if last_dim is not None and (a.ndim == 0 or a.shape[-1] != last_dim):
        raise ValueError(f"{name} must have last dimension {last_dim}, got shape {tuple(a.shape)}")
    if a.size and not integer:
        if finite and not bool(xp.isfinite(a).all()):
            raise ValueError(f"{name} must be finite (found NaN or inf)")
        if positive and not bool((a > 0).all()):
            raise ValueError(f"{name} must be positive, got minimum {float(to_host(a.min()))}")
        if nonneg and not bool((a >= 0).all()):
            raise ValueError(f"{name} must be non-negative, got minimum {float(to_host(a.min()))}")
    return a


def scalar(name, v, *, positive=False, nonneg=False, low=None, high=None):
    """Validate a finite real number and return it as a float."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        if hasattr(v, "ndim") and v.ndim == 0:
            v = float(to_host(v))
        else:
            raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    v = float(v)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if positive and not v > 0:
        raise ValueError(f"{name} must be positive, got {v}")
    if nonneg and not v >= 0:
        raise ValueError(f"{name} must be non-negative, got {v}")
    if low is not None and v < low:
        raise ValueError(f"{name} must be >= {low}, got {v}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high}, got {v}")
    return v


def integer(name, n, *, min_value=None, allow_none=False):
    """Validate a Python/NumPy integer (not bool) and return it as int."""
    if n is None and allow_none:
        return None
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(n).__name__} {n!r}")
    n = int(n)
    if min_value is not None and n < min_value:
        raise ValueError(f"{name} must be >= {min_value}, got {n}")
    return n


def choice(name, v, options):
    """Validate that ``v`` is one of ``options``."""
    if v not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {v!r}")
    return v


def params(name, params):
    """Validate a parameter dict before training: str keys -> finite real floating-point arrays.

    Trainers call it once at entry (an objective's ``value_and_grad`` checks keys, shapes and dtypes
    on every call, and training then watches the loss), so a NaN or inf parameter is reported
    here, named, instead of as a divergence at step 0.
    """
    if not isinstance(params, dict):
        raise TypeError(f"{name} must be a dict of arrays, got {type(params).__name__}")
    if not params:
        raise ValueError(f"{name} must not be empty")
    for k, v in params.items():
        if not isinstance(k, str):
            raise TypeError(f"{name} must have str keys, got {k!r}")
        _float_array(f"{name}[{k!r}]", v)
        if not bool(xp_of(v).isfinite(v).all()):
            raise ValueError(f"{name}[{k!r}] must be finite (found NaN or inf)")
    return params


def _float_array(name, v):
    """A real floating-point array (float64, or float32 where a fast path allows it)."""
    kind = getattr(getattr(v, "dtype", None), "kind", None)
    if kind != "f" or isinstance(v, np.ma.MaskedArray) or not hasattr(v, "shape"):
        got = f"dtype {v.dtype}" if kind is not None else type(v).__name__
        raise TypeError(f"{name} must be a real floating-point array, got {got}")


def params_like(params, template, name="params"):
    """Check ``params`` against a model's ``template`` (key -> shape without the restarts axis).

    Every template key must be present, as a real floating-point array of the template's shape,
    optionally behind one leading restarts axis R common to all entries (a scalar parameter,
    shape (), has shape (R,) with restarts). ``None`` in a template shape is a free size (a
    per-point encoder's table sliced to the batch). Other keys are allowed (one dict may hold
    several objectives' parameters, as in LiBI); they get no gradient, and an optimiser asked
    to step them says so. Values are not scanned (O(1) per key): trainers check finiteness once
    with ``params`` and then watch the loss.
    """
    if not isinstance(params, dict):
        raise TypeError(f"{name} must be a dict of arrays, got {type(params).__name__}")
    missing = [k for k in template if k not in params]
    if missing:
        extra = sorted(set(params) - set(template))
        raise ValueError(f"{name} lacks the model's entries {sorted(missing)}" + (f" (it has {extra})" if extra else ""))
    lead = None
    for k, shape in template.items():
        v = params[k]
        got = getattr(v, "shape", ())
        n = len(got) - len(shape)
        if n not in (0, 1) or (lead is not None and got[:n] != lead) or \
                (got[n:] != shape and any(s is not None and s != g for s, g in zip(shape, got[n:]))):
            axes = ", ".join("*" if s is None else str(s) for s in shape)
            one = f"({axes},)" if len(shape) == 1 else f"({axes})"
            raise ValueError(f"{name}[{k!r}] must have shape {one} or (R, {axes}) with the same R for every "
                             f"entry, got {tuple(got)}".replace("(R, )", "(R,)"))
        if getattr(getattr(v, "dtype", None), "kind", None) != "f":
            _float_array(f"{name}[{k!r}]", v)
        lead = got[:n]
    return params

"""Argument validation shared by every public function of :mod:`analytic`.

Every check names the offending argument and states what was expected, and is
called before any computation, so a bad call fails fast with a ValueError or
TypeError instead of a NaN or a LinAlgError deep inside the maths.
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "array", "scalar", "integer", "boolean", "data_matrix", "spd_matrix",
    "noise_cov", "cholesky",
]


def array(name, a, *, ndim=None, shape=None, finite=True, positive=False, nonneg=False):
    """Return ``a`` as a float64 ndarray after checking type, shape and values.

    ``ndim`` is an int or a tuple of allowed ranks; ``shape`` may hold ``None``
    for a free size and must match the rank.
    """
    if isinstance(a, (str, bytes, dict, set)) or a is None:
        raise TypeError(f"{name} must be an array of real numbers, got {type(a).__name__}")
    if isinstance(a, np.ma.MaskedArray):  # np.asarray would drop the mask and use the masked entries
        raise TypeError(f"{name} must be a plain array, got a numpy.ma.MaskedArray (its masked entries would "
                        f"be used as numbers): drop or fill them first, e.g. {name}.filled(value)")
    try:
        arr = np.asarray(a)
    except Exception as exc:  # ragged lists and other non-arrays
        raise TypeError(f"{name} must be an array of real numbers, got {type(a).__name__}") from exc
    if arr.dtype.kind == "b":  # a mask passed by mistake; never read silently as 0/1 numbers
        raise TypeError(f"{name} must be a real numeric array (convert with .astype(float) if 0/1 is meant), "
                        f"got dtype bool")
    if arr.dtype == object or arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=True)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(str(n) for n in allowed)
            raise ValueError(f"{name} must be {want}-dimensional, got shape {arr.shape}")
    if shape is not None:
        if len(shape) != arr.ndim or any(s is not None and s != n for s, n in zip(shape, arr.shape)):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    if arr.size:
        if finite and not np.isfinite(arr).all():
            raise ValueError(f"{name} must be finite (found NaN or inf)")
        if positive and not (arr > 0).all():
            raise ValueError(f"{name} must be positive, got minimum {arr.min()!r}")
        if nonneg and not (arr >= 0).all():
            raise ValueError(f"{name} must be non-negative, got minimum {arr.min()!r}")
    return arr


def scalar(name, v, *, positive=False, nonneg=False, low=None, high=None):
    """Return a finite real number as float, optionally bounded."""
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got bool")
    if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "iuf":
        v = v.item()
    if not isinstance(v, numbers.Real):
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


def integer(name, n, *, min_value=None, max_value=None):
    """Return an integer (not bool) as int, optionally bounded."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(n).__name__} {n!r}")
    n = int(n)
    if min_value is not None and n < min_value:
        raise ValueError(f"{name} must be >= {min_value}, got {n}")
    if max_value is not None and n > max_value:
        raise ValueError(f"{name} must be <= {max_value}, got {n}")
    return n


def boolean(name, v):
    """Return ``v`` if it is a bool (numpy bools included)."""
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(v).__name__}")
    return bool(v)


def data_matrix(name, X, *, d=None, min_rows=1):
    """Return a finite (N, d) float64 data matrix with at least ``min_rows`` rows."""
    X = array(name, X, ndim=2, shape=(None, d))
    if X.shape[0] < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} rows (data points), got {X.shape[0]}")
    if X.shape[1] < 1:
        raise ValueError(f"{name} must have at least one column, got shape {X.shape}")
    return X


def cholesky(name, M):
    """Lower Cholesky factor of a symmetric matrix; ValueError naming ``name`` if not positive definite."""
    try:
        return np.linalg.cholesky(M)
    except np.linalg.LinAlgError:
        raise ValueError(f"{name} must be positive definite") from None


def spd_matrix(name, M, *, d=None):
    """Return a finite, symmetric, positive-definite (d, d) matrix (validated by Cholesky)."""
    M = array(name, M, ndim=2, shape=(d, d))
    if M.shape[0] != M.shape[1]:
        raise ValueError(f"{name} must be square, got shape {M.shape}")
    scale = max(1.0, float(np.abs(M).max())) if M.size else 1.0
    if not np.allclose(M, M.T, rtol=0.0, atol=1e-10 * scale):
        raise ValueError(f"{name} must be symmetric")
    M = 0.5 * (M + M.T)
    cholesky(name, M)
    return M


def noise_cov(name, Psi, d):
    """Expand a noise covariance to a (d, d) symmetric positive-definite matrix.

    Accepts a positive scalar (isotropic sigma2 * I), a (d,) array of positive
    variances (diagonal) or a full (d, d) symmetric positive-definite matrix.
    """
    if np.ndim(Psi) == 0:
        return scalar(name, Psi, positive=True) * np.eye(d)
    arr = array(name, Psi, ndim=(1, 2))
    if arr.ndim == 1:
        arr = array(name, arr, shape=(d,), positive=True)
        return np.diag(arr)
    return spd_matrix(name, arr, d=d)

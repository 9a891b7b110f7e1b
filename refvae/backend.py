"""Array backend switch: NumPy by default, CuPy on request.

Every refvae function dispatches on the arrays it is handed (``xp_of``), so the same
code runs on either library. The *current* backend only decides where new arrays are
created: parameter initialisation, data moved in with ``asarray`` and noise drawn by
``normal``. Random numbers always come from an explicit ``numpy.random.Generator`` and
are drawn on the host, so one seed gives the same noise on both backends.

>>> import refvae.backend as B
>>> B.get_backend()
'numpy'
>>> with B.use_backend("numpy"):
...     x = B.asarray([1.0, 2.0])
"""
from __future__ import annotations

import contextlib

import numpy as np

_BACKENDS = ("numpy", "cupy")
_current = "numpy"


def _import_cupy():
    try:
        import cupy
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise RuntimeError(
            "backend 'cupy' requested but CuPy is not installed; install the 'gpu' extra "
            "(pip install 'refvae[gpu]') or use backend 'numpy'") from exc
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # pragma: no cover
        raise RuntimeError(f"backend 'cupy' requested but no GPU is visible ({exc})") from exc
    if n < 1:  # pragma: no cover
        raise RuntimeError("backend 'cupy' requested but no GPU is visible")
    return cupy


def cupy_available() -> bool:
    """True when CuPy imports and at least one GPU is visible."""
    try:
        _import_cupy()
    except RuntimeError:
        return False
    return True


def set_backend(name: str) -> None:
    """Select where new arrays are created: ``"numpy"`` (default) or ``"cupy"``.

    Raises ``ValueError`` for an unknown name and ``RuntimeError`` when CuPy is
    requested but not installed or no GPU is visible.
    """
    global _current
    if name not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {name!r}")
    if name == "cupy":
        _import_cupy()
    _current = name


def get_backend() -> str:
    """Name of the current backend."""
    return _current


@contextlib.contextmanager
def use_backend(name: str):
    """Context manager form of ``set_backend``; restores the previous backend on exit."""
    previous = _current
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def xp():
    """The array module of the current backend (``numpy`` or ``cupy``)."""
    return _import_cupy() if _current == "cupy" else np


def xp_of(*arrays):
    """The array module the given arrays live in (NumPy unless one of them is a CuPy array)."""
    for a in arrays:
        if type(a).__module__.startswith("cupy"):
            import cupy
            return cupy
    return np


def asarray(a, dtype=np.float64):
    """Move ``a`` to the current backend as an array of ``dtype`` (float64 by default)."""
    return xp().asarray(a, dtype=dtype)


def to_host(a):
    """Return ``a`` as a NumPy array (a copy from the GPU for CuPy arrays)."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)


def to_device(tree):
    """Move an array, or a dict of arrays, to the current backend (float64 kept)."""
    if isinstance(tree, dict):
        return {k: to_device(v) for k, v in tree.items()}
    a = np.asarray(tree) if not type(tree).__module__.startswith("cupy") else tree
    return xp().asarray(a)


def tree_to_host(tree):
    """Move a dict of arrays to NumPy."""
    return {k: to_host(v) for k, v in tree.items()}


def normal(rng: np.random.Generator, shape) -> object:
    """Standard normal draws of ``shape`` from ``rng``, on the current backend.

    Drawn on the host so that a seed gives identical noise on NumPy and CuPy.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return asarray(rng.standard_normal(shape))


def make_rng(seed) -> np.random.Generator:
    """A ``numpy.random.Generator`` from an int seed, a SeedSequence or a Generator (returned as is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        raise ValueError("seed must be given explicitly (an int or a numpy.random.Generator); "
                         "refvae never draws from global random state")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer, np.random.SeedSequence)):
        raise TypeError(f"seed must be an int, SeedSequence or numpy.random.Generator, got {type(seed).__name__}")
    return np.random.default_rng(seed)


def sum_to_shape(g, shape):
    """Sum a broadcast gradient ``g`` back down to ``shape`` (the reverse of broadcasting)."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    if lead < 0:
        raise ValueError(f"cannot reduce gradient of shape {g.shape} to {shape}")
    if lead:
        g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    if g.shape != shape:
        raise ValueError(f"cannot reduce gradient of shape {g.shape} to {shape}")
    return g

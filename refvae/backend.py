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

Float type. New arrays are float64 unless ``set_dtype("float32")`` (or ``use_dtype``) selects
float32, the optional fast mode for large networks. Every computation runs in the dtype of the
parameters it is handed (objectives cast ``x`` and ``noise`` to it), so a model initialised
under ``use_dtype("float32")`` trains in float32. float64 stays the default and the only type
gradient checks accept (``refvae.gradcheck`` refuses float32).

>>> with B.use_dtype("float32"):
...     B.asarray([1.0]).dtype
dtype('float32')

BLAS threads. ``blas_threads(n)`` caps the BLAS thread pool (OpenBLAS, MKL, ...) at ``n``
threads, for the process or, as a context manager, for a block. On refvae's small networks one
thread is fastest, and a second one costs much more than it gives as soon as another process
competes for the cores; see ``blas_threads``.
"""
from __future__ import annotations

import contextlib
import math
import os

import numpy as np

_BACKENDS = ("numpy", "cupy")
_current = "numpy"
_DTYPES = {"float64": np.float64, "float32": np.float32}
_dtype = "float64"


def _import_cupy():
    try:
        import cupy
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise RuntimeError(
            "backend 'cupy' requested but CuPy is not installed; install the 'gpu' extra "
            "(python -m pip install -e '.[gpu]' in the refvae checkout) or use backend 'numpy'") from exc
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
def _setting(set_, previous, name):
    set_(name)
    try:
        yield
    finally:
        set_(previous)


def use_backend(name: str):
    """Context manager form of ``set_backend``; restores the previous backend on exit."""
    return _setting(set_backend, _current, name)


def xp():
    """The array module of the current backend (``numpy`` or ``cupy``)."""
    return _import_cupy() if _current == "cupy" else np


def xp_of(*arrays):
    """The array module the given arrays live in (NumPy unless one of them is a CuPy array)."""
    for a in arrays:
        if type(a) is not np.ndarray and type(a).__module__.startswith("cupy"):
            import cupy
            return cupy
    return np


def set_dtype(name: str) -> None:
    """Select the float type of new arrays: ``"float64"`` (default) or ``"float32"``.

    It decides what ``asarray`` and ``normal`` create, hence every ``init``; computations follow
    the dtype of the parameters they are given. float32 roughly halves the time of a large
    network's step (its matrix products dominate); gradient checks need float64.
    Raises ``ValueError`` for any other name.
    """
    global _dtype
    if name not in _DTYPES:
        raise ValueError(f"dtype must be one of {tuple(_DTYPES)}, got {name!r}")
    _dtype = name


def get_dtype() -> str:
    """Name of the float type new arrays get (``"float64"`` unless ``set_dtype`` changed it)."""
    return _dtype


def use_dtype(name: str):
    """Context manager form of ``set_dtype``; restores the previous float type on exit."""
    return _setting(set_dtype, _dtype, name)


def asarray(a, dtype=None):
    """Move ``a`` to the current backend as an array of ``dtype`` (default: the current float type)."""
    return xp().asarray(a, dtype=_DTYPES[_dtype] if dtype is None else dtype)


def to_host(a):
    """Return ``a`` as a NumPy array (a copy from the GPU for CuPy arrays)."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)


def to_device(tree):
    """Move an array, or a dict of arrays, to the current backend (dtype kept)."""
    if isinstance(tree, dict):
        return {k: to_device(v) for k, v in tree.items()}
    a = np.asarray(tree) if not type(tree).__module__.startswith("cupy") else tree
    return xp().asarray(a)


def tree_to_host(tree):
    """Move a dict of arrays to NumPy."""
    return {k: to_host(v) for k, v in tree.items()}


def normal(rng: np.random.Generator, shape) -> object:
    """Standard normal draws of ``shape`` from ``rng``, on the current backend, in the current float type.

    Drawn on the host in float64 (then rounded under float32), so that a seed gives identical
    noise on NumPy and CuPy and the same random stream in either float type.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return asarray(rng.standard_normal(shape))


def make_rng(seed, name="seed") -> np.random.Generator:
    """A ``numpy.random.Generator`` from an int seed >= 0, a SeedSequence or a Generator (returned as is).

    ``name`` is the caller's argument name, used in the error messages (``"rng"`` for a method whose
    argument is called ``rng``).
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        raise ValueError(f"{name} must be given explicitly (an int or a numpy.random.Generator); "
                         "refvae never draws from global random state")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer, np.random.SeedSequence)):
        raise TypeError(f"{name} must be an int, SeedSequence or numpy.random.Generator, got {type(seed).__name__}")
    if not isinstance(seed, np.random.SeedSequence) and seed < 0:
        raise ValueError(f"{name} must be a non-negative integer (NumPy seeds are >= 0), got {int(seed)}")
    return np.random.default_rng(seed)


def mean(a, axis):
    """``a.mean(axis)`` as ``a.sum(axis) / count``: the same numbers (NumPy's mean is that sum divided
    by the count) without ``ndarray.mean``'s Python-level wrapper, which costs more than the
    arithmetic on the small arrays of a training step. ``axis``: int or tuple of ints."""
    n = math.prod(a.shape[i] for i in ((axis,) if isinstance(axis, int) else axis))
    return a.sum(axis=axis) / n


def sum_to_shape(g, shape):
    """Sum a broadcast gradient ``g`` back down to ``shape`` (the reverse of broadcasting)."""
    if g.shape == shape:
        return g
    shape = tuple(shape)
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


# -- BLAS threads ------------------------------------------------------------------------
_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class blas_threads:
    """Cap the BLAS thread pools at ``n`` threads; a context manager or a process-wide setting.

    ``blas_threads(1)`` applies the limit at once and keeps it for the rest of the process (call
    it first thing in a worker process). ``with blas_threads(1): ...`` applies it for the block
    and restores the previous limits on exit.

    Why: refvae's matrices are small. On a 2-50x2-1 network one BLAS thread is fastest (a second
    one synchronises more than it computes), and when another CPU-bound process shares the cores
    a multi-threaded pool can make a small step several times slower; only the largest networks
    (784-512 and up, batch 256) gain from a second thread, and only on an otherwise idle machine.
    ``benchmarks/step_bench.py --threads`` measures it on yours.

    How: with the optional package ``threadpoolctl`` installed (``pip install 'refvae[bench]'``)
    the limit reaches the BLAS libraries already loaded in this process. Without it the limit is
    written to ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS``, which only
    libraries loaded later and processes started later (``spawn``/``forkserver`` workers) read;
    ``applied`` then says False. Outside Python: set ``OPENBLAS_NUM_THREADS=1`` before starting it.

    Parameters
    ----------
    n : int >= 1, the number of BLAS threads.

    Attributes
    ----------
    n : int; applied : bool, whether the BLAS libraries loaded in this process were limited.
    """

    def __init__(self, n):
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be an integer >= 1 (BLAS threads), got {n!r}")
        self.n = int(n)
        self._env = {k: os.environ.get(k) for k in _BLAS_ENV}
        for k in _BLAS_ENV:
            os.environ[k] = str(self.n)
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            self._limits, self.applied = None, False
        else:
            self._limits, self.applied = threadpool_limits(limits=self.n, user_api="blas"), True

    def restore(self):
        """Put back the limits (and environment variables) in force before this call."""
        if self._limits is not None:
            self._limits.restore_original_limits()
        for k, v in self._env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.restore()
        return False

    def __repr__(self):
        return f"blas_threads({self.n}, applied={self.applied})"


def blas_thread_counts():
    """The thread counts of the BLAS libraries loaded in this process, e.g. ``{"openblas": 1}``.

    Needs the optional ``threadpoolctl``; without it an empty dict.
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    return {info["internal_api"]: info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}

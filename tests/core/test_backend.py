"""Backend switch: NumPy default, CuPy on request (skipped without CuPy and a GPU)."""
import numpy as np
import pytest

from refvae import backend
from refvae.backend import cupy_available
from refvae.objectives import GaussianVAE

needs_gpu = pytest.mark.skipif(not cupy_available(), reason="CuPy with a visible GPU is not available")


def test_default_is_numpy_and_switch_errors():
    assert backend.get_backend() == "numpy"
    assert backend.xp() is np
    with pytest.raises(ValueError, match="backend must be one of"):
        backend.set_backend("torch")
    if not cupy_available():
        with pytest.raises(RuntimeError, match="CuPy|GPU"):
            backend.set_backend("cupy")
        assert backend.get_backend() == "numpy"


def test_make_rng_and_normal():
    with pytest.raises(ValueError, match="seed must be given"):
        backend.make_rng(None)
    with pytest.raises(TypeError, match="seed"):
        backend.make_rng(1.5)
    g = np.random.default_rng(0)
    assert backend.make_rng(g) is g
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        backend.normal(np.random, (2,))
    a = backend.normal(np.random.default_rng(4), (3, 2))
    np.testing.assert_array_equal(a, np.random.default_rng(4).standard_normal((3, 2)))


def test_sum_to_shape():
    g = np.ones((2, 3, 4, 5))
    assert backend.sum_to_shape(g, (3, 1, 5)).shape == (3, 1, 5)
    np.testing.assert_array_equal(backend.sum_to_shape(g, (3, 1, 5)), np.full((3, 1, 5), 8.0))
    with pytest.raises(ValueError):
        backend.sum_to_shape(np.ones(3), (2, 3))


@needs_gpu
@pytest.mark.gpu
def test_cupy_matches_numpy():
    import cupy
    model = GaussianVAE.from_sizes(3, 2, (5,), obs="vector")
    rng = np.random.default_rng(0)
    params = model.init(rng, restarts=2)
    x, noise = rng.standard_normal((7, 3)), rng.standard_normal((2, 7, 2))
    loss, grads = model.value_and_grad(params, x, noise)
    with backend.use_backend("cupy"):
        gp = backend.to_device(params)
        loss_g, grads_g = model.value_and_grad(gp, backend.to_device(x), backend.to_device(noise))
    assert isinstance(loss_g, cupy.ndarray)
    np.testing.assert_allclose(backend.to_host(loss_g), loss, rtol=1e-12)
    for k in grads:
        np.testing.assert_allclose(backend.to_host(grads_g[k]), grads[k], rtol=1e-10, atol=1e-13)


def test_float32_mode_creates_float32_and_restores():
    assert backend.get_dtype() == "float64"
    with pytest.raises(ValueError, match="dtype must be one of"):
        backend.set_dtype("float16")
    with backend.use_dtype("float32"):
        assert backend.get_dtype() == "float32"
        assert backend.asarray([1.0]).dtype == np.float32
        a = backend.normal(np.random.default_rng(4), (3, 2))       # the float64 stream, rounded
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, np.random.default_rng(4).standard_normal((3, 2)).astype(np.float32))
        params = GaussianVAE.from_sizes(3, 2, (5,), obs="scalar").init(0)
        assert {v.dtype for v in params.values()} == {np.dtype(np.float32)}
    assert backend.get_dtype() == "float64" and backend.asarray([1.0]).dtype == np.float64
    assert backend.asarray([1], dtype=np.int64).dtype == np.int64
    # to_device keeps the dtype it is given (saved parameters load back exactly)
    assert backend.to_device(np.ones(2, np.float32)).dtype == np.float32


def _float32_models():
    from refvae.iwae import IWAE
    from refvae.objectives import Autoencoder
    out = [(f"vae-{obs}", GaussianVAE.from_sizes(3, 2, (6,), "tanh", obs=obs), None) for obs in
           ("fixed", "scalar", "vector", "decoder")]
    out.append(("vae-sample-S", GaussianVAE.from_sizes(3, 2, (6,), "leaky_relu", obs="scalar", kl="sample"), 3))
    out.append(("iwae", IWAE(GaussianVAE.from_sizes(3, 2, (6,), obs="scalar"), n_samples=4), None))
    out.append(("ae", Autoencoder.from_sizes(3, 2, (6,)), None))
    return out


@pytest.mark.parametrize("name,model,S", _float32_models(), ids=[m[0] for m in _float32_models()])
@pytest.mark.parametrize("R", [None, 2])
def test_float32_computes_in_float32_close_to_float64(name, model, S, R):
    """A float32 model returns float32 losses and gradients (no silent float64 promotion), within
    float32 round-off of the float64 result for the same parameters and noise."""
    from refvae.optim import Adam
    rng = np.random.default_rng(7)
    p64 = model.init(rng, R)
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    p64 = {k: v.astype(np.float64) for k, v in p32.items()}         # the same numbers in both types
    x = rng.standard_normal((8, 3))
    shape = model.noise_shape(p64, 8, S)
    noise = None if shape is None else rng.standard_normal(shape).astype(np.float32).astype(np.float64)
    for call in ("value_and_grad", "value_and_grad_unchecked"):
        loss32, g32 = getattr(model, call)(p32, x, noise)[:2]      # x and noise float64: cast to the params'
        loss64, g64 = getattr(model, call)(p64, x, noise)[:2]
        assert np.asarray(loss32).dtype == np.float32, call
        np.testing.assert_allclose(loss32, loss64, rtol=1e-4, atol=1e-5)
        for k in g64:
            assert g32[k].dtype == np.float32, (call, k)
            np.testing.assert_allclose(g32[k], g64[k], rtol=2e-3, atol=2e-4 * max(1.0, np.abs(g64[k]).max()))
    opt = Adam(1e-2)
    stepped, state = opt.update_inplace(p32, g32, opt.init(p32))
    assert {v.dtype for v in stepped.values()} == {np.dtype(np.float32)}
    assert {v.dtype for v in state["m"].values()} == {np.dtype(np.float32)}


def test_gradient_checks_refuse_float32():
    from refvae.gradcheck import check_grad
    model = GaussianVAE.from_sizes(3, 2, (4,), obs="scalar")
    with backend.use_dtype("float32"):
        params = model.init(0)
    x, noise = np.ones((2, 3)), np.zeros((2, 2))
    with pytest.raises(TypeError, match="float64"):
        check_grad(lambda p: model.value_and_grad(p, x, noise), params)


def test_blas_threads_validates_and_restores():
    import os
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="n must be an integer >= 1"):
            backend.blas_threads(bad)
    before = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    counts = backend.blas_thread_counts()
    with backend.blas_threads(2) as limit:
        assert limit.n == 2
        assert all(os.environ[k] == "2" for k in before)      # for BLAS libraries and processes started later
        try:
            import threadpoolctl  # noqa: F401
        except ImportError:
            assert limit.applied is False and backend.blas_thread_counts() == {}
        else:
            assert limit.applied is True
            assert set(backend.blas_thread_counts().values()) == {2}
    assert {k: os.environ.get(k) for k in before} == before
    assert backend.blas_thread_counts() == counts

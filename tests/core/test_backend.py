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

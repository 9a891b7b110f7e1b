"""refvae.testing: the strategies and one-line gradient assertions users get for their own layers and objectives."""
import doctest
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import refvae.testing as T
from refvae import layers as L
from refvae.backend import sum_to_shape
from refvae.iwae import IWAE
from refvae.objectives import Autoencoder, GaussianVAE


class Square(L.Elementwise):
    def f(self, x):
        return x * x

    def df(self, x, y):
        return 2.0 * x


class WrongSquare(Square):
    def df(self, x, y):
        return x                                   # the factor 2 forgotten


class SharedLinear(L.Linear):
    """A Linear whose weight gradient sums over restarts: right without a restarts axis, wrong with R > 1."""

    def backward(self, params, x, dy):
        dx, grads = super().backward(params, x, dy)
        W = params["W"]
        total = sum_to_shape(grads["W"], W.shape[-2:])
        return dx, {**grads, "W": np.broadcast_to(total, W.shape).copy()}


def test_the_documented_example_catches_a_wrong_backward_pass():
    result = doctest.testmod(T, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4 and result.failed == 0


def test_check_layer_gradients_catches_injected_bugs_and_passes_the_fixed_layers():
    with pytest.raises(AssertionError, match=r"(?s)gradient check: max relative error .* x\["):
        T.check_layer_gradients(WrongSquare(), max_examples=20)
    T.check_layer_gradients(Square(), max_examples=20)
    # a bug that only a restarts axis shows: caught with restarts drawn, invisible without
    with pytest.raises(AssertionError, match=r"(?s)gradient check: .*\bW\[\d+, \d+, \d+\]: analytic"):
        T.check_layer_gradients(SharedLinear(3, 2), restarts=st.sampled_from([2, 3]), max_examples=10)
    T.check_layer_gradients(SharedLinear(3, 2), restarts=st.just(None), max_examples=10)


@pytest.mark.parametrize("layer", [L.Linear(3, 2), L.Shift(3), L.ReLU(), L.LeakyReLU(0.2), L.SoftThreshold(0.7),
                                   L.SoftThreshold(0.0), L.Tanh(), L.Sigmoid(), L.Softplus(), L.Cube(),
                                   L.mlp([2, 3, 2], "softplus"), L.ResidualBlock(3)], ids=repr)
def test_refvae_layers_pass_the_users_check(layer):
    T.check_layer_gradients(layer, max_examples=8)


def test_a_layer_whose_parameters_need_adjusting():
    layer = L.CholeskyLinear(2, [0.1, 0.0])
    well_conditioned = lambda R: T.params_for(layer, R).map(lambda p: {"A": p["A"] + 2.0 * np.eye(2)})
    T.check_layer_gradients(layer, params=well_conditioned, max_examples=8)


def test_check_objective_gradients_on_refvae_objectives_and_an_injected_bug():
    vae = GaussianVAE.from_sizes(2, 1, (3,), "tanh", obs="scalar")
    T.check_objective_gradients(vae, max_examples=4)
    T.check_objective_gradients(IWAE(vae, n_samples=2), n_samples=st.sampled_from([1, 3]), max_examples=3,
                                data=lambda B: T.inputs((B, 2)))
    T.check_objective_gradients(Autoencoder.from_sizes(2, 1, (3,)), max_examples=3)
    undeclared = Autoencoder.from_sizes(2, 1, (3,))
    undeclared.data_dim = None                     # a user's objective that does not declare its width
    with pytest.raises(TypeError, match="model has no data_dim: pass data"):
        T.check_objective_gradients(undeclared)

    class Off(GaussianVAE):                        # a gradient 0.1% too large
        def value_and_grad(self, params, x, noise, **kw):
            loss, grads = super().value_and_grad(params, x, noise, **kw)
            return loss, {**grads, "dec.0.b": grads["dec.0.b"] * 1.001}

    off = Off.__new__(Off)
    off.__dict__.update(vae.__dict__)
    with pytest.raises(AssertionError, match=r"dec\.0\.b"):
        T.check_objective_gradients(off, max_examples=10)


def test_assert_gradients_at_one_point():
    vae = GaussianVAE.from_sizes(2, 1, (3,), obs="vector")
    params = vae.init(0, restarts=2)
    x = np.random.default_rng(1).standard_normal((4, 2))
    assert T.assert_gradients(vae, params, x, seed=3).passed
    layer = L.Linear(2, 3)
    assert T.assert_gradients(layer, layer.init(0, 3), x).passed
    with pytest.raises(AssertionError):
        T.assert_gradients(WrongSquare(), {}, x)
    with pytest.raises(TypeError, match="obj must be a layer"):
        T.assert_gradients(object(), {}, x)


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_strategies_draw_what_they_promise(data):
    R = data.draw(T.restarts())
    params = data.draw(T.params_for(L.Linear(3, 2), R, scale=0.5))
    lead = () if R is None else (R,)
    assert params["W"].shape == lead + (3, 2) and params["b"].shape == lead + (2,)
    assert all(np.isfinite(v).all() and np.abs(v).max() <= 0.5 for v in params.values())
    x = data.draw(T.inputs((4, 5), kinks=[-0.5, 0.5], margin=1e-3, scale=1.0))
    assert x.shape == (4, 5) and np.abs(x).max() <= 1.0 + 1e-3
    assert (np.abs(x[..., None] - np.array([-0.5, 0.5])) >= 1e-3 * (1 - 1e-9)).all()


def test_away_from_leaves_every_kink_behind_even_when_kinks_are_close():
    kinks = [-0.0005, 0.0005]                      # closer together than the margin
    v = T.away_from([-0.0001, 0.0003, 0.2, -0.0007], kinks, 1e-3)
    assert (np.abs(v[:, None] - np.array(kinks)) >= 1e-3 * (1 - 1e-9)).all()
    assert v[2] == 0.2                             # entries far from every kink are kept
    np.testing.assert_array_equal(T.away_from([1.0, 2.0], [], 0.1), [1.0, 2.0])
    assert T.kinks_of(L.SoftThreshold(0.3)) == (-0.3, 0.3) and T.kinks_of(L.ReLU()) == (0.0,)
    assert T.kinks_of(L.Tanh()) == ()


def run_python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_refvae_does_not_import_hypothesis_and_testing_says_what_it_needs():
    out = run_python("import sys, refvae; print('hypothesis' in sys.modules, 'refvae.testing' in sys.modules)")
    assert out.returncode == 0 and out.stdout.split() == ["False", "False"], out.stderr
    out = run_python("import sys; sys.modules['hypothesis'] = None\nimport refvae.testing")
    assert out.returncode != 0
    assert "ImportError: refvae.testing needs hypothesis" in out.stderr and "pip install 'refvae[test]'" in out.stderr

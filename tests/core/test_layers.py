"""Every layer's backward against finite differences (float64, relative error <= 1e-6)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from refvae import gradcheck
from refvae.layers import (CholeskyLinear, Cube, Identity, LeakyReLU, Linear, ReLU, ResidualBlock, Sequential,
                           Shift, Sigmoid, Softplus, SoftThreshold, Tanh, mlp)
from tests.core.strategies import away_from, restarts, seeds, sizes

H = 1e-4  # gradcheck step; kinks are kept 10 h away


def lead_axes(R, samples, shared):
    """Input leading axes: an optional sample axis, then the restarts axis (size 1 or absent when x is
    shared by all restarts; behind a sample axis it must be there, so that axes line up)."""
    if R is None:
        return (2,) if samples else ()
    return ((2,) if samples else ()) + ((1,) if shared and samples else () if shared else (R,))


def check_layer(layer, x, rng, params=None):
    params = layer.init(rng) if params is None else params
    y, _ = layer.forward(params, x)
    cot = rng.standard_normal(y.shape)
    gradcheck.assert_grad(gradcheck.layer_fun(layer, x, cot), {**params, "x": x}, h=H, rtol=1e-6)


SMOOTH = [Identity(), Tanh(), Sigmoid(), Softplus(), Cube()]


@settings(max_examples=25, deadline=None)
@given(seed=seeds, batch=sizes, width=sizes, lead=st.sampled_from([(), (2,), (2, 3)]),
       layer=st.sampled_from(SMOOTH), scale=st.floats(0.1, 4.0))
def test_smooth_activations(seed, batch, width, lead, layer, scale):
    rng = np.random.default_rng(seed)
    check_layer(layer, scale * rng.standard_normal(lead + (batch, width)), rng)


@settings(max_examples=25, deadline=None)
@given(seed=seeds, batch=sizes, width=sizes, alpha=st.floats(0.0, 1.5),
       slope=st.floats(-0.5, 0.5), which=st.sampled_from(["relu", "leaky", "soft"]))
def test_piecewise_linear_activations_off_their_kinks(seed, batch, width, alpha, slope, which):
    rng = np.random.default_rng(seed)
    layer, kinks = {"relu": (ReLU(), [0.0]), "leaky": (LeakyReLU(slope), [0.0]),
                    "soft": (SoftThreshold(alpha), [-alpha, alpha])}[which]
    x = away_from(2 * rng.standard_normal((batch, width)), kinks, 10 * H)
    check_layer(layer, x, rng)


@settings(max_examples=25, deadline=None)
@given(seed=seeds, batch=sizes, n_in=sizes, n_out=sizes, R=restarts, samples=st.booleans(), shared=st.booleans())
def test_linear(seed, batch, n_in, n_out, R, samples, shared):
    rng = np.random.default_rng(seed)
    layer = Linear(n_in, n_out)
    params = layer.init(rng, R)
    params["b"] = rng.standard_normal(params["b"].shape)
    lead = lead_axes(R, samples, shared)
    check_layer(layer, rng.standard_normal(lead + (batch, n_in)), rng, params)


@settings(max_examples=20, deadline=None)
@given(seed=seeds, batch=sizes, width=sizes, R=restarts, act=st.sampled_from(["tanh", "softplus", "sigmoid"]),
       shared=st.booleans())
def test_residual_block_and_mlp(seed, batch, width, R, act, shared):
    rng = np.random.default_rng(seed)
    for layer in (ResidualBlock(width, act), mlp([2, width, width, 3], act, residual=True),
                  mlp([2, width, 3], act, final_activation="sigmoid")):
        x = rng.standard_normal(lead_axes(R, False, shared) + (batch, layer.n_in))
        check_layer(layer, x, rng, layer.init(rng, R))


@settings(max_examples=25, deadline=None)
@given(seed=seeds, dim=st.integers(1, 3), batch=sizes, R=restarts, samples=st.booleans(),
       b_scale=st.floats(0.0, 1.0), shared=st.booleans())
def test_cholesky_linear(seed, dim, batch, R, samples, b_scale, shared):
    rng = np.random.default_rng(seed)
    layer = CholeskyLinear(dim, b_scale * rng.random(dim))
    params = layer.init(rng, R)
    params["A"] = params["A"] + 2.0 * np.eye(dim)       # keep A A^T + B well conditioned
    lead = lead_axes(R, samples, shared)
    check_layer(layer, rng.standard_normal(lead + (batch, dim)), rng, params)


def test_cholesky_linear_is_yacoby2020_c2_decoder():
    import analytic.linear_gaussian as lg
    A, B = np.array([[0.75, 0.25], [1.5, -1.0]]), np.array([0.006, 0.006])
    W = lg.pedagogical_c2(A, B, 0.01).W
    layer = CholeskyLinear(2, B)
    np.testing.assert_allclose(layer.factor({"A": A}), W, rtol=1e-12)
    z = np.random.default_rng(0).standard_normal((5, 2))
    np.testing.assert_allclose(layer.forward({"A": A}, z)[0], z @ W.T, rtol=1e-12)
    with pytest.raises(ValueError, match="B must be non-negative"):
        CholeskyLinear(2, [0.1, -0.1])
    with pytest.raises(ValueError, match="B must have shape"):
        CholeskyLinear(2, [0.1, 0.1, 0.1])


@settings(max_examples=15, deadline=None)
@given(seed=seeds, n=sizes, batch=sizes, R=restarts, samples=st.booleans(), shared=st.booleans())
def test_shift(seed, n, batch, R, samples, shared):
    rng = np.random.default_rng(seed)
    layer = Shift(n)
    params = {"b": rng.standard_normal(layer.init(rng, R)["b"].shape)}
    lead = lead_axes(R, samples, shared)
    check_layer(layer, rng.standard_normal(lead + (batch, n)), rng, params)


def test_linear_restart_axis_matches_single_models():
    rng = np.random.default_rng(0)
    layer = Linear(3, 2)
    params = layer.init(rng, restarts=4)
    x = rng.standard_normal((5, 3))
    dy = rng.standard_normal((4, 5, 2))
    y, cache = layer.forward(params, x)
    _, g = layer.backward(params, cache, dy)
    for r in range(4):
        p_r = {k: v[r] for k, v in params.items()}
        y_r, c_r = layer.forward(p_r, x)
        _, g_r = layer.backward(p_r, c_r, dy[r])
        np.testing.assert_array_equal(y[r], y_r)
        for k in g:
            np.testing.assert_allclose(g[k][r], g_r[k], rtol=1e-14, atol=1e-15)


def test_soft_threshold_values():
    u = np.array([[-2.0, -0.5, 0.0, 0.3, 1.5]])
    np.testing.assert_array_equal(SoftThreshold(0.5).forward({}, u)[0], [[-1.5, 0.0, 0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(SoftThreshold(0.0).forward({}, u)[0], u)


def test_stable_activations_at_extremes():
    x = np.array([[-800.0, 800.0]])
    np.testing.assert_array_equal(Sigmoid().forward({}, x)[0], [[0.0, 1.0]])
    np.testing.assert_array_equal(Softplus().forward({}, x)[0], [[0.0, 800.0]])


def test_layer_argument_errors():
    with pytest.raises(ValueError, match="n_in"):
        Linear(0, 2)
    with pytest.raises(TypeError, match="n_out"):
        Linear(2, 2.5)
    with pytest.raises(ValueError, match="alpha"):
        SoftThreshold(-1.0)
    with pytest.raises(ValueError, match="activation"):
        mlp([2, 3, 1], "swish")
    with pytest.raises(ValueError, match="restarts"):
        Linear(2, 2).init(np.random.default_rng(0), restarts=0)
    with pytest.raises(TypeError, match="layers"):
        Sequential(Linear(1, 1), "tanh")


def test_activation_forward_closed_forms():
    """Forward values against their definitions (the gradient checks only test backward against forward)."""
    x = np.array([[-3.0, -0.7, 0.0, 0.4, 2.5]])
    expected = {
        Identity(): x,
        ReLU(): np.array([[0.0, 0.0, 0.0, 0.4, 2.5]]),
        LeakyReLU(0.1): np.array([[-0.3, -0.07, 0.0, 0.4, 2.5]]),
        Tanh(): np.tanh(x),
        Sigmoid(): 1.0 / (1.0 + np.exp(-x)),
        Softplus(): np.log1p(np.exp(x)),
        Cube(): x ** 3,
    }
    for layer, want in expected.items():
        np.testing.assert_allclose(layer.forward({}, x)[0], want, rtol=1e-15, atol=1e-16, err_msg=repr(layer))


def test_linear_residual_and_mlp_forward_values():
    rng = np.random.default_rng(1)
    W, b = rng.standard_normal((3, 2)), rng.standard_normal(2)
    x = rng.standard_normal((4, 3))
    np.testing.assert_allclose(Linear(3, 2).forward({"W": W, "b": b}, x)[0], x @ W + b, rtol=1e-14)
    block = ResidualBlock(3, "tanh")
    p = block.init(rng)
    want = x + np.tanh(x @ p["0.W"] + p["0.b"]) @ p["2.W"] + p["2.b"]
    np.testing.assert_allclose(block.forward(p, x)[0], want, rtol=1e-14)
    net = mlp([3, 5, 2], "softplus", final_activation="sigmoid")
    assert [type(layer).__name__ for layer in net.layers] == ["Linear", "Softplus", "Linear", "Sigmoid"]
    q = net.init(rng)
    h = np.logaddexp(0.0, x @ q["0.W"] + q["0.b"])
    np.testing.assert_allclose(net.forward(q, x)[0], 1.0 / (1.0 + np.exp(-(h @ q["2.W"] + q["2.b"]))), rtol=1e-14)
    # LeCun-normal initialisation: W ~ N(0, 1 / n_in), b = 0
    big = Linear(400, 300).init(np.random.default_rng(2))
    assert np.all(big["b"] == 0.0)
    assert big["W"].var() == pytest.approx(1.0 / 400, rel=4 * np.sqrt(2.0 / big["W"].size))

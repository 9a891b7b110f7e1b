"""The gradient checker itself: it passes correct gradients and catches wrong ones."""
import numpy as np
import pytest

from refvae.gradcheck import assert_grad, check_grad, layer_fun
from refvae.layers import Linear


def quadratic(p):
    A = np.array([[2.0, 0.5], [0.5, 1.0]])
    w = p["w"]
    return 0.5 * w @ A @ w + np.sin(p["c"]).sum(), {"w": A @ w, "c": np.cos(p["c"])}


def test_correct_gradient_passes():
    p = {"w": np.array([0.3, -1.0]), "c": np.array([[0.1, 2.0, -0.7]])}
    result = assert_grad(quadratic, p)
    assert result.max_rel_error < 1e-9     # fourth-order differences: far below the 1e-6 bar
    assert result.n_checks == 2 + 3 + 3


def test_exact_zero_gradient_against_round_off_passes():
    p = {"w": np.array([0.3, -1.2]), "c": np.array([[0.1, 2.0, -0.7]])}   # A w has an exact 0
    assert quadratic(p)[1]["w"][0] == 0.0
    assert check_grad(quadratic, p).passed


@pytest.mark.parametrize("bug", [1e-3, 1e-5])
def test_wrong_gradient_is_caught(bug):
    def buggy(p):
        v, g = quadratic(p)
        g = dict(g)
        g["c"] = g["c"] * (1 + bug)
        return v, g
    p = {"w": np.array([0.3, -1.2]), "c": np.array([[0.1, 2.0, -0.7]])}
    res = check_grad(buggy, p)
    assert not res.passed
    entry_errors = [e[3] for e in res.errors if e[0].startswith("c[")]
    assert entry_errors == pytest.approx([bug / (1 + bug)] * 3, rel=1e-3)
    with pytest.raises(AssertionError, match="max relative error"):
        assert_grad(buggy, p)


def test_entry_missed_by_sampling_is_caught_by_directions():
    def buggy(p):
        g = 2 * p["w"]
        g.flat[-1] += 0.5          # one wrong entry
        return (p["w"] ** 2).sum(), {"w": g}
    p = {"w": np.linspace(-1, 1, 200)}
    res = check_grad(buggy, p, max_entries=5, seed=1)
    assert not res.passed


def test_rejects_float32_and_bad_keys():
    with pytest.raises(TypeError, match="float64"):
        check_grad(quadratic, {"w": np.zeros(2, np.float32), "c": np.zeros((1, 3))})
    with pytest.raises(KeyError, match="nope"):
        check_grad(quadratic, {"w": np.zeros(2), "c": np.zeros((1, 3))}, keys=["nope"])


def test_non_finite_gradient_or_value_fails():
    """A NaN compares False with everything: it must count as an infinite error, not be skipped."""
    def nan_entry(p):
        g = 2 * p["w"]
        g[-1] = np.nan               # an entry the entrywise sample skips; only the directions see it
        return (p["w"] ** 2).sum(), {"w": g}
    res = check_grad(nan_entry, {"w": np.linspace(-1, 1, 50)}, max_entries=3, seed=0)
    assert not res.passed and res.max_rel_error == np.inf and res.worst.startswith("direction")

    def nan_value(p):               # the function itself is NaN off the evaluation point
        w = p["w"]
        return np.sqrt(w).sum(), {"w": 0.5 / np.sqrt(w)}
    with np.errstate(invalid="ignore"):
        assert not check_grad(nan_value, {"w": np.array([1e-5, 1.0])}).passed


def test_argument_errors():
    p = {"w": np.array([0.3, -1.0]), "c": np.array([[0.1, 2.0, -0.7]])}
    with pytest.raises(TypeError, match="fun must be a callable"):
        check_grad(None, p)
    with pytest.raises(ValueError, match="rtol must be positive"):
        check_grad(quadratic, p, rtol=0.0)
    with pytest.raises(ValueError, match="h must be positive"):
        check_grad(quadratic, p, h=-1e-4)
    with pytest.raises(ValueError, match="max_entries must be >= 0"):
        check_grad(quadratic, p, max_entries=-1)
    with pytest.raises(ValueError, match="nothing would be checked"):
        check_grad(quadratic, p, max_entries=0, n_directions=0)
    with pytest.raises(ValueError, match="nothing to check"):
        check_grad(quadratic, p, keys=[])
    with pytest.raises(ValueError, match=r"grads\['w'\] has shape"):
        check_grad(lambda q: (0.0, {"w": np.zeros(3)}), p)
    with pytest.raises(TypeError, match="must return"):
        check_grad(lambda q: 0.0, p)


def test_directions_alone_catch_a_wrong_gradient():
    def buggy(p):
        v, g = quadratic(p)
        return v, {**g, "w": g["w"] * 1.01}
    p = {"w": np.array([0.3, -1.0]), "c": np.array([[0.1, 2.0, -0.7]])}
    res = check_grad(buggy, p, max_entries=0)
    assert res.n_checks == 3 and not res.passed


def test_layer_fun_input_shared_by_restarts():
    """x (B, n) feeding (R, ...) parameters: the input gradient is summed over restarts."""
    rng = np.random.default_rng(0)
    layer = Linear(2, 3)
    params = layer.init(rng, restarts=4)
    x = rng.standard_normal((5, 2))
    cot = rng.standard_normal((4, 5, 3))
    res = assert_grad(layer_fun(layer, x, cot), {**params, "x": x})
    assert res.max_rel_error < 1e-9
    dx = layer_fun(layer, x, cot)({**params, "x": x})[1]["x"]
    np.testing.assert_allclose(dx, np.einsum("rbo,rio->bi", cot, params["W"]), rtol=1e-13)
    with pytest.raises(ValueError, match="cotangent must have the layer output's shape"):
        layer_fun(layer, x, cot[0])({**params, "x": x})

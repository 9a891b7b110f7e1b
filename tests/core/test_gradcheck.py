"""The gradient checker itself: it passes correct gradients and catches wrong ones."""
import numpy as np
import pytest

from refvae.gradcheck import assert_grad, check_grad


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

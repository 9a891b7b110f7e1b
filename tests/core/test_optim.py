"""Adam and SGD against their textbook updates."""
import numpy as np
import pytest

from refvae.optim import SGD, Adam


def test_adam_first_steps_match_textbook():
    """Kingma & Ba, Algorithm 1, written out step by step for a known gradient sequence."""
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    opt = Adam(lr, b1, b2, eps)
    p = {"w": np.array([1.0, -2.0])}
    state = opt.init(p)
    gs = [np.array([0.5, -1.0]), np.array([0.1, 2.0]), np.array([-0.3, 0.0])]
    m = v = np.zeros(2)
    theta = p["w"].copy()
    for t, g in enumerate(gs, start=1):
        p, state = opt.update(p, {"w": g}, state)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        theta = theta - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        np.testing.assert_allclose(p["w"], theta, rtol=0, atol=1e-15)
    # the first step moves every coordinate with a non-zero gradient by lr (bias correction)
    first, _ = Adam(lr).update({"w": np.array([3.0])}, {"w": np.array([1e-3])}, Adam(lr).init({"w": np.zeros(1)}))
    assert first["w"][0] == pytest.approx(3.0 - lr, rel=1e-6)


def test_group_learning_rates_and_only():
    opt = Adam(0.1, group_lr={"enc.": 0.01, "enc.special": 0.5})
    assert opt.lr_for("dec.0.W") == 0.1
    assert opt.lr_for("enc.0.W") == 0.01
    assert opt.lr_for("enc.special.W") == 0.5
    p = {"enc.a": np.ones(2), "dec.a": np.ones(2)}
    g = {"enc.a": np.ones(2), "dec.a": np.ones(2)}
    state = opt.init(p)
    p2, state = opt.update(p, g, state, only=("enc.",))
    np.testing.assert_array_equal(p2["dec.a"], p["dec.a"])
    assert state["t"] == {"enc.a": 1, "dec.a": 0}
    np.testing.assert_allclose(p2["enc.a"], 1 - 0.01)
    # the decoder's first step later still gets a full bias-corrected step
    p3, state = opt.update(p2, g, state, only="dec.")
    np.testing.assert_allclose(p3["dec.a"], 1 - 0.1)


def test_sgd_momentum():
    opt = SGD(0.5, momentum=0.9)
    p, state = {"w": np.array([1.0])}, None
    state = opt.init(p)
    p, state = opt.update(p, {"w": np.array([2.0])}, state)
    assert p["w"][0] == pytest.approx(0.0)
    p, state = opt.update(p, {"w": np.array([1.0])}, state)
    assert p["w"][0] == pytest.approx(-0.5 * (0.9 * 2.0 + 1.0))


def test_optimizer_errors():
    with pytest.raises(ValueError, match="lr must be positive"):
        Adam(0.0)
    with pytest.raises(ValueError, match="beta1"):
        Adam(beta1=1.0)
    with pytest.raises(ValueError, match="group_lr"):
        Adam(group_lr={"enc.": -1.0})
    opt = Adam()
    with pytest.raises(KeyError, match="no entry"):
        opt.update({"a": np.ones(1)}, {}, opt.init({"a": np.ones(1)}))


def test_update_argument_errors():
    opt = Adam()
    p = {"enc.a": np.ones(2), "dec.a": np.ones(2)}
    state = opt.init(p)
    with pytest.raises(ValueError, match=r"grads\['enc.a'\] must have the shape of params\['enc.a'\] \(2,\)"):
        opt.update(p, {"enc.a": np.ones((3, 2)), "dec.a": np.ones(2)}, state)       # would broadcast silently
    with pytest.raises(ValueError, match="selects none of the parameters"):
        opt.update(p, p, state, only=("encoder.",))
    with pytest.raises(TypeError, match="only must be"):
        opt.update(p, p, state, only=3)
    with pytest.raises(TypeError, match="only must be"):
        opt.update(p, p, state, only=())
    with pytest.raises(TypeError, match="grads must be a dict"):
        SGD().update(p, [1.0], SGD().init(p))
    # keys outside ``only`` need no gradient
    p2, _ = opt.update(p, {"enc.a": np.ones(2)}, state, only="enc.")
    np.testing.assert_array_equal(p2["dec.a"], p["dec.a"])


@pytest.mark.parametrize("opt", [Adam(0.1, group_lr={"dec.": 0.01}), SGD(0.1, momentum=0.5)])
def test_update_is_pure_and_state_is_a_savable_tree(opt):
    """The contract checkpoints rely on: ``update`` mutates none of its arguments, and the state is a
    dict tree (str keys) whose leaves are arrays or numbers, so ``numpy.savez`` can hold it."""
    rng = np.random.default_rng(0)
    p = {"enc.W": rng.standard_normal((3, 2)), "dec.b": rng.standard_normal(2)}
    g = {k: rng.standard_normal(v.shape) for k, v in p.items()}
    state = opt.init(p)
    copies = [{k: v.copy() for k, v in tree.items()} for tree in (p, g)]
    state_copy = {s: {k: np.copy(v) for k, v in tree.items()} for s, tree in state.items()}
    for only in (None, "enc."):
        p2, state2 = opt.update(p, g, state, only=only)
        for tree, copy in zip((p, g), copies):
            assert all(np.array_equal(tree[k], copy[k]) for k in tree)
        assert all(np.array_equal(state[s][k], state_copy[s][k]) for s in state for k in state[s])
        assert p2 is not p and state2 is not state
        for s, tree in state2.items():
            assert isinstance(s, str) and isinstance(tree, dict)
            assert all(isinstance(k, str) and isinstance(v, (np.ndarray, int, float, np.number))
                       for k, v in tree.items())

"""Every fast path equals the plain one it stands for, bitwise (float64, NumPy).

- ``Adam/SGD.update_inplace`` against ``update`` (the textbook step), over sequences of steps with
  ``only``, group learning rates, large arrays (stepped in chunks) and a resumed state;
- ``Ring.update`` (three packed copies) against ``update``, and ``fit`` / ``fit_stages``, which step
  through a ring, against the same runs through the plain ``update`` (``PlainAdam``, ``PlainSGD``);
- ``value_and_grad_unchecked`` against ``value_and_grad``;
- ``Layer.param_grads`` against ``backward(...)[1]``;
- ``Sequential._split`` and the cached ``_sub`` against a plain scan of the keys;
- ``backend.mean`` against ``ndarray.mean``.
"""
import io

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from refvae import backend
from refvae.iwae import IWAE
from refvae.layers import CholeskyLinear, Linear, ResidualBlock, Sequential, Shift, Tanh, mlp
from refvae.objectives import Autoencoder, GaussianVAE
from refvae import optim
from refvae.optim import SGD, Adam
from refvae.train import fit, fit_stages, linear_ramp
from tests.core.strategies import seeds
from tests.helpers import perturbed_init

# a large key (> the chunk and fusing sizes, 2**15 entries) among small ones, with a restarts axis on some
SHAPES = {"enc.0.W": (3, 40), "enc.0.b": (40,), "enc.2.W": (2, 130, 140), "dec.0.W": (2, 5), "dec.0.b": (5,),
          "dec.obs_logvar": (1,), "dec.2.W": (7, 3)}


def assert_trees_equal(a, b, where=""):
    assert a.keys() == b.keys(), where
    for k in a:
        if isinstance(a[k], dict):
            assert_trees_equal(a[k], b[k], f"{where}[{k!r}]")
        else:
            assert np.array_equal(np.asarray(a[k]), np.asarray(b[k]), equal_nan=True), f"{where}[{k!r}] differs"
            assert np.asarray(a[k]).dtype == np.asarray(b[k]).dtype, f"{where}[{k!r}] dtype"


OPTIMISERS = [lambda: Adam(1e-2), lambda: Adam(3e-2, group_lr={"dec.": 3e-3, "dec.obs": 0.1}),
              lambda: SGD(1e-2, momentum=0.9), lambda: SGD(5e-3, group_lr={"enc.": 1e-3})]


@pytest.mark.parametrize("make", OPTIMISERS)
def test_update_inplace_equals_update_bitwise(make):
    rng = np.random.default_rng(0)
    params = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    original = {k: v.copy() for k, v in params.items()}
    plain, fast = make(), make()
    pp, sp = params, plain.init(params)
    pf, sf = params, fast.init(params)
    onlys = [None, "enc.", None, ("dec.",), "dec.obs", None, None, ("enc.0", "dec.0")]
    for step, only in enumerate(onlys * 2):
        grads = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
        pp, sp = plain.update(pp, grads, sp, only=only)
        before = pf
        pf, sf = fast.update_inplace(pf, grads, sf, only=only)
        assert_trees_equal(pp, pf, f"params after step {step}")
        assert_trees_equal(sp, sf, f"state after step {step}")
        if step:                                   # in place from the second call on: the same arrays
            assert pf is before and all(pf[k] is before[k] for k in pf)
    assert_trees_equal(params, original, "the first call's arguments")   # copied, never written


def test_update_inplace_resumes_from_a_saved_state():
    """A state saved to .npz and loaded back (plain arrays, no longer views) continues bitwise."""
    rng = np.random.default_rng(1)
    params = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    grads = [{k: rng.standard_normal(s) for k, s in SHAPES.items()} for _ in range(6)]
    plain, fast = Adam(1e-2), Adam(1e-2)
    pp, sp = params, plain.init(params)
    pf, sf = params, fast.init(params)
    for g in grads[:3]:
        pp, sp = plain.update(pp, g, sp)
        pf, sf = fast.update_inplace(pf, g, sf, only=None)
    # the contract the checkpoints rely on: a dict tree of str keys with array or int leaves
    flat = {f"{slot}/{k}": v for slot, tree in sf.items() for k, v in tree.items()}
    assert all(isinstance(v, (np.ndarray, int)) for v in flat.values())
    buf = io.BytesIO()
    np.savez(buf, **{f"p/{k}": v for k, v in pf.items()}, **flat)
    buf.seek(0)
    loaded = dict(np.load(buf))
    pf = {k[2:]: loaded[f"p/{k[2:]}"] for k in loaded if k.startswith("p/")}
    sf = {slot: {k: loaded[f"{slot}/{k}"] for k in SHAPES} for slot in ("m", "v", "t")}   # counts: 0-d arrays
    sp = {slot: {k: np.asarray(v) if slot == "t" else v for k, v in tree.items()} for slot, tree in sp.items()}
    for i, g in enumerate(grads[3:]):
        only = "enc." if i == 1 else None                                     # step counts then differ
        pp, sp = plain.update(pp, g, sp, only=only)
        pf, sf = fast.update_inplace(pf, g, sf, only=only)
    assert_trees_equal(pp, pf)
    assert_trees_equal(sp, sf)


@settings(max_examples=20, deadline=None)
@given(seed=seeds, n_keys=st.integers(1, 6), onlys=st.lists(st.sampled_from([None, "a", "b", ("a", "c")]),
                                                                min_size=1, max_size=5),
       group=st.booleans())
def test_update_inplace_property(seed, n_keys, onlys, group):
    rng = np.random.default_rng(seed)
    shapes = {f"{'abc'[i % 3]}.{i}": tuple(rng.integers(1, 5, size=rng.integers(0, 3))) for i in range(n_keys)}
    params = {k: rng.standard_normal(s) for k, s in shapes.items()}
    opts = [Adam(1e-2, group_lr={"b.": 1e-3} if group else None) for _ in range(2)]
    pp, sp = params, opts[0].init(params)
    pf, sf = params, opts[1].init(params)
    for only in onlys:
        if only is not None and not any(k.startswith(p) for k in shapes for p in ((only,) if isinstance(only, str)
                                                                                   else only)):
            continue
        grads = {k: rng.standard_normal(s) for k, s in shapes.items()}
        pp, sp = opts[0].update(pp, grads, sp, only=only)
        pf, sf = opts[1].update_inplace(pf, grads, sf, only=only)
        assert_trees_equal(pp, pf)
        assert_trees_equal(sp, sf)


def test_update_inplace_checks_like_update():
    opt = Adam()
    p = {"enc.a": np.ones(2), "dec.a": np.ones(2)}
    p2, state = opt.update_inplace(p, {"enc.a": np.ones(2), "dec.a": np.ones(2)}, opt.init(p))
    with pytest.raises(ValueError, match=r"grads\['enc.a'\] must have the shape of params\['enc.a'\] \(2,\)"):
        opt.update_inplace(p2, {"enc.a": np.ones((3, 2)), "dec.a": np.ones(2)}, state)
    with pytest.raises(KeyError, match="no entry"):
        opt.update_inplace(p2, {"enc.a": np.ones(2)}, state)
    with pytest.raises(ValueError, match="selects none of the parameters"):
        opt.update_inplace(p2, p2, state, only="encoder.")
    once = Adam().update(p, {"enc.a": np.ones(2), "dec.a": np.ones(2)}, Adam().init(p))
    assert_trees_equal(p2, once[0])                                  # nothing moved by the refused calls
    assert_trees_equal(state, once[1])


def test_update_inplace_mixed_dtypes_take_the_plain_step():
    p = {"a": np.ones(3), "b": np.ones(2, np.float32)}
    g = {"a": np.full(3, 0.5), "b": np.full(2, 0.5, np.float32)}
    plain, fast = Adam(0.1), Adam(0.1)
    want = plain.update(p, g, plain.init(p))
    got = fast.update_inplace(p, g, fast.init(p))
    assert_trees_equal(want[0], got[0])
    assert got[0]["b"].dtype == np.float32


class PlainAdam(Adam):
    """Adam whose ``update`` is its own: ``opt.ring`` is None, so ``fit`` takes the plain path."""

    def update(self, params, grads, state, only=None):
        return super().update(params, grads, state, only)


class PlainSGD(SGD):
    """SGD whose ``update`` is its own (see ``PlainAdam``)."""

    def update(self, params, grads, state, only=None):
        return super().update(params, grads, state, only)


def copied(tree):
    return {k: copied(v) if isinstance(v, dict) else np.array(v, copy=True) for k, v in tree.items()}


@pytest.mark.parametrize("make", OPTIMISERS)
def test_ring_update_equals_update_and_keeps_the_last_two_arguments(make):
    rng = np.random.default_rng(6)
    params = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    plain, fast = make(), make()
    ring = fast.ring(params)
    pp, sp = params, plain.init(params)
    pf, sf = params, fast.init(params)
    kept = []                                      # (arguments, their values when passed) of each call
    onlys = [None, "enc.", None, ("dec.",), "dec.obs", None, None, ("enc.0", "dec.0")]
    for step, only in enumerate(onlys * 2):
        grads = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
        if step == 9:                              # arrays that are not the ring's: copied in first
            pf, sf = copied(pf), copied(sf)
        kept.append(((pf, sf), (copied(pf), copied(sf))))
        pp, sp = plain.update(pp, grads, sp, only=only)
        pf, sf = (ring.update if step % 2 else ring.update_unchecked)(pf, grads, sf, only=only)
        assert_trees_equal(pp, pf, f"params after step {step}")
        assert_trees_equal(sp, sf, f"state after step {step}")
        for (args, values), when in zip(kept[-2:], ("this", "the last")):
            assert_trees_equal(args[0], values[0], f"{when} call's params after step {step}")
            assert_trees_equal(args[1], values[1], f"{when} call's state after step {step}")
        if step >= 2:                              # no allocation: the result is one of three copies
            assert any(pf["enc.0.W"].base is c.pbuf for c in ring.copies)
    assert_trees_equal(params, kept[0][1][0], "the first call's arguments")


def test_ring_only_where_its_step_is_the_optimisers():
    p = {"a": np.ones(3), "b": np.ones(2)}
    assert isinstance(Adam().ring(p), optim.Ring) and isinstance(SGD().ring(p), optim.Ring)

    class Quiet(Adam):                             # a subclass that changes nothing keeps the ring
        pass

    class OwnStep(Adam):
        def _step(self, k, p, g, state):
            return super()._step(k, p, g, state)

    assert isinstance(Quiet().ring(p), optim.Ring)
    assert OwnStep().ring(p) is None and PlainAdam().ring(p) is None and PlainSGD().ring(p) is None
    assert Adam().ring({"a": np.ones(3), "b": np.ones(2, np.float32)}) is None      # mixed dtypes
    assert Adam().ring({"a": np.ones(3), "b": np.ones(2, dtype=int)}) is None
    with pytest.raises(ValueError, match="selects none of the parameters"):
        Adam().ring(p).update_unchecked(p, p, Adam().init(p), only="c.")


def assert_runs_equal(a, b):
    assert_trees_equal(a.params, b.params, "params")
    assert_trees_equal(a.state, b.state, "state")
    assert_trees_equal(a.history, b.history, "history")
    assert (a.step, a.diverged) == (b.step, b.diverged)


class NaNGrads:
    """A Gaussian VAE whose gradient of ``dec.0.W`` turns non-finite for one restart at one step."""

    def __init__(self, model, at, restart):
        self.model, self.at, self.restart, self.calls = model, at, restart, 0

    def noise_shape(self, *args):
        return self.model.noise_shape(*args)

    def value_and_grad(self, params, x, noise, **kw):
        loss, grads, terms = self.model.value_and_grad(params, x, noise, **kw)
        self.calls += 1
        if self.calls - 1 == self.at:
            g = grads["dec.0.W"].copy()
            g[self.restart] = np.inf
            grads = {**grads, "dec.0.W": g}
        return loss, grads, terms

    value_and_grad_unchecked = value_and_grad


FIT_RUNS = {   # name -> (Adam or SGD, plain or not, **fit keywords) -> FitResult
    "adam": lambda opt, **kw: fit(VAE, VAE.init(0, 3), XS, steps=25, seed=1, batch_size=10, n_samples=2,
                                  optimizer=opt(1e-2, group_lr={"dec.": 3e-3}), **kw),
    "adam-only": lambda opt, **kw: fit(VAE, VAE.init(0), XS, steps=20, seed=1, batch_size=8,
                                       optimizer=opt(1e-2), only=("enc.", "dec.obs"), **kw),
    "sgd-schedules": lambda opt, **kw: fit(VAE, VAE.init(0, 2), XS, steps=20, seed=2,
                                           optimizer=(SGD if opt is Adam else PlainSGD)(1e-3, momentum=0.9),
                                           schedules={"beta": linear_ramp(0.1, 1.0, 8)}, **kw),
    "stages-averaged": lambda opt, **kw: fit_stages(VAE, VAE.init(0, 2), XS, seed=3, batch_size=10,
                                                    stages=[(1e-2, 8), (3e-3, 0), (1e-3, 9)], average=6,
                                                    optimizer=opt(1.0, group_lr={"enc.": 0.5}), **kw),
    "isolated": lambda opt, **kw: fit_stages(NaNGrads(VAE, 6, 1), VAE.init(0, 3), XS, seed=4, batch_size=10,
                                             stages=[(1e-2, 10), (1e-3, 6)], average=4,
                                             optimizer=opt(), on_divergence="isolate", **kw),
}
VAE = GaussianVAE.from_sizes(3, 2, (6, 5), obs="scalar")
XS = np.random.default_rng(7).standard_normal((40, 3))


@pytest.mark.parametrize("name", FIT_RUNS)
def test_fit_through_the_ring_equals_fit_through_update(name, monkeypatch, tmp_path):
    """The runs ``fit`` and ``fit_stages`` make through ``Ring`` are those of the plain ``opt.update``,
    bitwise, and so is the trajectory a callback sees; checkpoints on the way change nothing."""
    calls = []
    step = optim.Ring._update
    monkeypatch.setattr(optim.Ring, "_update", lambda self, *a: calls.append(1) or step(self, *a))
    seen = {}
    runs = {}
    for kind, opt in (("plain", PlainAdam), ("ring", Adam)):
        seen[kind] = []
        kw = {"checkpoint": tmp_path / kind, "checkpoint_every": 3} if name == "sgd-schedules" else {}
        runs[kind] = FIT_RUNS[name](opt, callback=lambda t, p, info, kind=kind: seen[kind].append(p), **kw)
        if kind == "plain":
            assert not calls
    assert len(calls) == runs["ring"].step                    # every step went through the ring
    assert_runs_equal(runs["plain"], runs["ring"])
    assert len(seen["ring"]) == len(seen["plain"]) == runs["ring"].step
    for t, (a, b) in enumerate(zip(seen["plain"], seen["ring"])):
        assert_trees_equal(a, b, f"callback's params at step {t}")
    if name == "isolated":
        assert [d.restart for d in runs["ring"].diverged] == [1]


def models():
    out = []
    for obs in ("fixed", "scalar", "vector", "decoder"):
        for kl in ("analytic", "sample"):
            out.append((f"vae-{obs}-{kl}", GaussianVAE.from_sizes(3, 2, (5,), obs=obs, kl=kl, beta=0.8)))
    out.append(("iwae", IWAE(GaussianVAE.from_sizes(3, 2, (5,), obs="scalar"), n_samples=3)))
    out.append(("ae", Autoencoder.from_sizes(3, 2, (5,))))
    return out


@pytest.mark.parametrize("name,model", models(), ids=[n for n, _ in models()])
@pytest.mark.parametrize("R", [None, 2])
@pytest.mark.parametrize("S", [None, 3])
def test_value_and_grad_unchecked_equals_checked(name, model, R, S):
    rng = np.random.default_rng(2)
    params = perturbed_init(model, rng, R)
    x = rng.standard_normal((6, 3))
    shape = model.noise_shape(params, 6, S)
    noise = None if shape is None else rng.standard_normal(shape)
    want = model.value_and_grad(params, x, noise, with_terms=True)
    got = model.value_and_grad_unchecked(params, x, noise, with_terms=True)
    for a, b in zip(want, got):
        if isinstance(a, dict):
            assert_trees_equal(a, b)
        else:
            assert np.array_equal(a, b)


@pytest.mark.parametrize("layer", [Linear(3, 4), mlp((3, 5, 5, 2)), mlp((3, 4, 4, 4, 2), residual=True),
                                   ResidualBlock(3), Sequential(Linear(3, 3), Tanh(), Shift(3)),
                                   CholeskyLinear(3, np.array([0.1, 0.0, 0.3]))])
@pytest.mark.parametrize("R", [None, 2])
def test_param_grads_equals_backward(layer, R):
    rng = np.random.default_rng(3)
    params = perturbed_init(layer, rng, R)
    x = rng.standard_normal((2, 5, 3))                     # a sample axis in front of the batch
    y, cache = layer.forward(params, x if R is None else x[:, None])
    dy = rng.standard_normal(y.shape)
    assert_trees_equal(layer.backward(params, cache, dy)[1], layer.param_grads(params, cache, dy))


def test_sequential_split_and_sub_follow_the_keys_they_are_given():
    from refvae.layers import _sub
    net = mlp((3, 4, 4, 2))
    rng = np.random.default_rng(4)
    for params in (net.init(rng), {**net.init(rng), "10.W": np.ones(1), "x": np.zeros(1)}, net.init(rng, 2)):
        split = net._split(params)
        for i, part in enumerate(split):
            plain = {k[len(f"{i}."):]: v for k, v in params.items() if k.startswith(f"{i}.")}
            assert part.keys() == plain.keys() and all(part[k] is plain[k] for k in part)
        full = {"enc." + k: v for k, v in params.items()}
        sub = _sub(full, "enc.")
        assert sub.keys() == params.keys() and all(sub[k] is params[k] for k in sub)
    # a forward pass after the keys changed uses the new arrays, not remembered ones
    p1, p2 = net.init(rng), net.init(rng)
    x = rng.standard_normal((5, 3))
    assert not np.array_equal(net.forward(p1, x)[0], net.forward(p2, x)[0])
    np.testing.assert_array_equal(net.forward(p2, x)[0], net.forward(dict(p2), x)[0])


@pytest.mark.parametrize("shape,axis", [((7,), -1), ((3, 7), -1), ((3, 7), 0), ((2, 3, 7), (0, 1)),
                                        ((2, 3, 4, 5), (0, -2, -1)), ((4, 1, 6), (-2, -1))])
def test_mean_is_numpy_mean(shape, axis):
    a = np.random.default_rng(5).standard_normal(shape) * 1e3
    got, want = backend.mean(a, axis), a.mean(axis=axis)
    assert np.array_equal(got, want) and np.shape(got) == np.shape(want)

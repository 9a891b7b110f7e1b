"""Property-based gradient tests for your own layers and objectives, the ones refvae's own get.

Needs the test extra, which installs hypothesis (``pip install 'refvae[test]'``); ``import refvae``
never imports this module.

One line checks a layer's backward pass against finite differences (``refvae.gradcheck``,
float64, relative error <= 1e-6) on many drawn examples: parameters with and without the
restarts axis, batches of several sizes, inputs kept away from the layer's kinks. A backward
pass that forgot a factor 2 is caught:

>>> from refvae.layers import Elementwise
>>> from refvae.testing import check_layer_gradients
>>> class Square(Elementwise):
...     def f(self, x):
...         return x * x
...     def df(self, x, y):
...         return x                  # wrong: d(x^2)/dx = 2x
>>> check_layer_gradients(Square(), max_examples=10)      # doctest: +ELLIPSIS
Traceback (most recent call last):
...
AssertionError: gradient check: max relative error ...

With ``return 2.0 * x`` the same line passes. ``check_objective_gradients(model)`` does the
same for an objective's ``value_and_grad`` (drawn parameters, data and noise), and
``assert_gradients(layer_or_model, params, x)`` checks one given point. The strategies
(``restarts``, ``params_for``, ``inputs``) and ``away_from`` build your own ``@given`` tests::

    @given(params=params_for(my_layer, restarts()), x=inputs((5, 3), kinks=[0.0]))
    def test_my_layer(params, x):
        assert_gradients(my_layer, params, x)

Kinks. Finite differences need the function smooth within 2h of the point (h = 1e-4 by
default); inputs are therefore kept ``margin`` (default 10 h) away from the points where a layer
is not differentiable: 0 for ReLU and LeakyReLU, +-alpha for SoftThreshold (``kinks_of``);
give ``kinks`` for your own layer. Inside a network the kinks sit at hidden pre-activations
the inputs do not control: check such networks with smooth activations, or layer by layer.
"""
from __future__ import annotations

import numpy as np

try:
    from hypothesis import Phase, given, settings, strategies as st
    from hypothesis.extra import numpy as hnp
    from hypothesis.strategies import SearchStrategy
except ImportError as exc:                                  # pragma: no cover - depends on the install
    raise ImportError("refvae.testing needs hypothesis, which comes with refvae's test extra: "
                      "pip install 'refvae[test]' (or pip install hypothesis)") from exc

from . import _checks
from .gradcheck import assert_grad, layer_fun
from .layers import LeakyReLU, ReLU, SoftThreshold

__all__ = ["restarts", "params_for", "inputs", "away_from", "kinks_of", "assert_gradients",
           "check_layer_gradients", "check_objective_gradients"]

H = 1e-4                     # the finite-difference step of every check here
MARGIN = 10 * H              # how far inputs stay from a kink


def _floats(scale):
    return st.floats(-scale, scale, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def restarts(values=(None, 1, 3)):
    """Strategy: a restarts count, None meaning no restarts axis (default: None, 1 or 3)."""
    return st.sampled_from(tuple(values))


def params_for(model, restarts=None, *, scale=1.0):
    """Strategy: parameter dicts shaped like ``model.init(rng, restarts)``, entries drawn in [-scale, scale].

    Parameters
    ----------
    model : a layer or an objective (anything with ``init(rng, restarts)``).
    restarts : None (no restarts axis), an int R (a leading axis R on every entry), or a
        strategy of those (e.g. ``restarts()``).
    scale : float > 0, the range of the entries (float64 NumPy arrays).

    Parameters that need more than a range (a well-conditioned matrix, say) are adjusted with
    ``.map``: ``params_for(layer).map(lambda p: {**p, "A": p["A"] + 2 * np.eye(d)})``.
    """
    if not callable(getattr(model, "init", None)):
        raise TypeError(f"model must be a layer or an objective with init(rng, restarts), got {type(model).__name__}")
    scale = _checks.scalar("scale", scale, positive=True)
    counts = restarts if isinstance(restarts, SearchStrategy) else \
        st.just(_checks.integer("restarts", restarts, min_value=1, allow_none=True))

    def arrays(R):
        template = model.init(np.random.default_rng(0), R)
        return st.fixed_dictionaries({k: hnp.arrays(np.float64, tuple(v.shape), elements=_floats(scale))
                                      for k, v in template.items()})
    return counts.flatmap(arrays)


def away_from(values, kinks, margin=MARGIN):
    """``values`` (a float64 copy) with every entry closer than ``margin`` to a kink moved to the
    nearest point at least ``margin`` from every kink."""
    v = np.array(values, dtype=np.float64)
    kinks = np.asarray(kinks, dtype=np.float64).ravel()
    if kinks.size == 0:
        return v
    candidates = np.concatenate([kinks - margin, kinks + margin])
    candidates = candidates[(np.abs(candidates[:, None] - kinks[None, :]) >= margin * (1 - 1e-12)).all(axis=1)]
    flat = v.reshape(-1)
    for i in np.flatnonzero((np.abs(flat[:, None] - kinks[None, :]) < margin).any(axis=1)):
        flat[i] = candidates[np.argmin(np.abs(candidates - flat[i]))]
    return v


def inputs(shape, *, kinks=(), margin=MARGIN, scale=2.0):
    """Strategy: finite float64 arrays of ``shape`` with entries in [-scale, scale], none within
    ``margin`` of a kink (``away_from``)."""
    shape = tuple(_checks.integer(f"shape[{i}]", n, min_value=0) for i, n in enumerate(shape))
    scale = _checks.scalar("scale", scale, positive=True)
    margin = _checks.scalar("margin", margin, positive=True)
    kinks = np.asarray(_checks.array("kinks", list(kinks) if not hasattr(kinks, "shape") else kinks)).ravel()
    return hnp.arrays(np.float64, shape, elements=_floats(scale)).map(lambda a: away_from(a, kinks, margin))


def kinks_of(layer):
    """Where a refvae activation is not differentiable: 0 for ReLU and LeakyReLU, +-alpha for
    SoftThreshold; () for every other layer (give a layer of your own its kinks yourself)."""
    if isinstance(layer, (ReLU, LeakyReLU)):
        return (0.0,)
    if isinstance(layer, SoftThreshold):
        return (-layer.alpha, layer.alpha)
    return ()


def assert_gradients(obj, params, x, *, noise=None, cotangent=None, seed=0, n_samples=None, rtol=1e-6, h=H,
                     **kwargs):
    """Assert that a layer's backward pass, or an objective's gradient, matches finite differences at one point.

    Parameters
    ----------
    obj : a layer (``forward``/``backward``: the parameter gradients and the input gradient are
        checked) or an objective (``value_and_grad(params, x, noise, **kwargs)``).
    params : its parameter dict (float64); x : its input or data.
    noise : the objective's noise; default standard normal of ``obj.noise_shape(params, B,
        n_samples)`` from ``seed``.
    cotangent : for a layer, the output cotangent; default standard normal from ``seed``.
    rtol, h : as ``refvae.gradcheck.check_grad``.

    Returns the ``GradCheckResult``; raises ``AssertionError`` with a readable report.
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.float64) if not hasattr(x, "dtype") else x
    if callable(getattr(obj, "value_and_grad", None)):
        if noise is None and callable(getattr(obj, "noise_shape", None)):
            shape = obj.noise_shape(params, x.shape[-2], n_samples)
            noise = None if shape is None else rng.standard_normal(shape)
        return assert_grad(lambda p: obj.value_and_grad(p, x, noise, **kwargs)[:2], params, rtol=rtol, h=h)
    if callable(getattr(obj, "forward", None)) and callable(getattr(obj, "backward", None)):
        if cotangent is None:
            cotangent = rng.standard_normal(np.shape(obj.forward(params, x)[0]))
        return assert_grad(layer_fun(obj, x, cotangent), {**params, "x": x}, rtol=rtol, h=h)
    raise TypeError(f"obj must be a layer (forward, backward) or an objective (value_and_grad), "
                    f"got {type(obj).__name__}")


def _params_strategy(obj, params, R, scale):
    if params is None:
        return params_for(obj, R, scale=scale)
    return params if isinstance(params, SearchStrategy) else params(R)


def _settings(max_examples, shrink):
    """No shrinking by default: every candidate is a full gradient check, and a wrong gradient is
    usually wrong at the first example drawn, which is reported as it is. No example database:
    a user's script that calls a check leaves no .hypothesis/ folder behind."""
    phases = tuple(Phase) if shrink else tuple(p for p in Phase if p != Phase.shrink)
    return settings(max_examples=_checks.integer("max_examples", max_examples, min_value=1), deadline=None,
                    phases=phases, database=None)


def check_layer_gradients(layer, *, restarts=restarts(), batch=st.integers(1, 4), width=st.integers(1, 4),
                          kinks=None, margin=MARGIN, scale=2.0, params=None, max_examples=25, shrink=False,
                          rtol=1e-6, h=H):
    """Property test of a layer's backward pass: run it inside your test function, one line.

    Draws a restarts count, parameters (``params_for``), a batch of inputs (B, n_in) kept off
    the kinks (shared by every restart) and a cotangent, and asserts the parameter and input
    gradients against finite differences; hypothesis shrinks a failure to a small example.

    Parameters
    ----------
    layer : the layer; its input width is ``layer.n_in`` (drawn from ``width`` if it has none).
    restarts, batch, width : strategies of the restarts count, batch size and width.
    kinks : the inputs where the layer is not differentiable (default ``kinks_of(layer)``).
    margin, scale : inputs in [-scale, scale], at least ``margin`` from each kink.
    params : None (``params_for(layer, R)``), a strategy of parameter dicts, or a callable R ->
        strategy (to adjust the drawn parameters, e.g. keep a matrix well conditioned).
    max_examples : examples drawn; shrink : let hypothesis look for the smallest failing example
        (slower); rtol, h : as ``refvae.gradcheck.check_grad``.
    """
    kinks = kinks_of(layer) if kinks is None else tuple(kinks)

    @_settings(max_examples, shrink)
    @given(data=st.data())
    def run(data):
        R = data.draw(restarts, label="restarts")
        p = data.draw(_params_strategy(layer, params, R, 1.0), label="params")
        n_in = getattr(layer, "n_in", None) or data.draw(width, label="width")
        x = data.draw(inputs((data.draw(batch, label="batch"), n_in), kinks=kinks, margin=margin, scale=scale),
                      label="x")
        y = layer.forward(p, x)[0]
        cotangent = data.draw(hnp.arrays(np.float64, np.shape(y), elements=_floats(1.0)), label="cotangent")
        assert_gradients(layer, p, x, cotangent=cotangent, rtol=rtol, h=h)
    run()


def check_objective_gradients(model, *, restarts=restarts(), batch=st.integers(1, 4),
                              n_samples=st.sampled_from([None, 2]), params=None, data=None, call=None, scale=1.0,
                              max_examples=15, shrink=False, max_entries=5, rtol=1e-6, h=H):
    """Property test of an objective's ``value_and_grad``: run it inside your test function, one line.

    Draws a restarts count, parameters (``params_for``), a batch of data (B, ``model.data_dim``),
    the noise of ``model.noise_shape`` (entries in [-3, 3]) and asserts the gradient of every
    parameter against finite differences.

    Parameters
    ----------
    model : an objective with ``init``, ``noise_shape``, ``value_and_grad`` (and ``data_dim``, or
        give ``data``).
    restarts, batch, n_samples : strategies of the restarts count, batch size and samples per point.
    params : as ``check_layer_gradients``.
    data : None (entries in [-2, 2]) or a callable B -> strategy of the data.
    call : None, or a callable (model, params, x, noise) -> (loss, grads) for an objective whose
        ``value_and_grad`` takes more (e.g. M2's labels).
    scale : range of the drawn parameter entries.
    max_examples, shrink : as ``check_layer_gradients``.
    max_entries : entries checked one by one per parameter array (the random directions of
        ``refvae.gradcheck.check_grad`` see every entry); rtol, h : as ``check_grad``.
    """
    data_dim = getattr(model, "data_dim", None)
    if data is None and not isinstance(data_dim, int):
        raise TypeError(f"model has no data_dim: pass data, a callable B -> strategy of (B, d) data")

    @_settings(max_examples, shrink)
    @given(drawn=st.data())
    def run(drawn):
        R = drawn.draw(restarts, label="restarts")
        p = drawn.draw(_params_strategy(model, params, R, scale), label="params")
        B = drawn.draw(batch, label="batch")
        x = drawn.draw(inputs((B, data_dim)) if data is None else data(B), label="x")
        shape = model.noise_shape(p, B, drawn.draw(n_samples, label="n_samples"))
        noise = None if shape is None else drawn.draw(hnp.arrays(np.float64, shape, elements=_floats(3.0)),
                                                      label="noise")
        fun = (lambda q: model.value_and_grad(q, x, noise)[:2]) if call is None else \
            (lambda q: call(model, q, x, noise)[:2])
        assert_grad(fun, p, rtol=rtol, h=h, max_entries=max_entries)
    run()

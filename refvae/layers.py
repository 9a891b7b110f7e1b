"""Layers with hand-written forward and backward passes.

A layer is configuration only; its parameters are plain arrays in a dict the caller holds.
Every layer has three methods:

- ``init(rng, restarts=None) -> params``
- ``forward(params, x) -> (y, cache)``
- ``backward(params, cache, dy) -> (dx, grads)``, ``grads`` with the keys and shapes of ``params``.

and ``param_grads(params, cache, dy) -> grads``, the ``grads`` of ``backward`` alone: an
objective calls it on its input network, whose input gradient (the data's) nobody needs. It is
``backward(...)[1]`` unless a layer can skip work (``Linear`` skips the product dy W^T, the
largest one at the first layer of a wide input).

Shapes. Inputs are (..., B, n_in): any leading axes broadcast. Parameters may carry a
leading **restarts axis** R (``W`` of shape (R, n_in, n_out), ``b`` of shape (R, n_out)) so that
R independent models run as one array program; the model without that axis is the same
code. Extra leading axes of the input (Monte Carlo samples, say) are summed out of the
parameter gradients by ``sum_to_shape``.

Validation. Constructors, ``init`` and ``mlp`` check their arguments (a clear error naming the
argument before any work). ``forward``, ``backward`` and ``param_grads`` deliberately do not:
they are the inner loop of every objective, which validates its own inputs (parameters, data,
noise) once per call before running its layers, so a layer called directly with a wrong shape
or a missing key gets NumPy's error (or a ``KeyError``), not a message naming the argument.
"""
from __future__ import annotations

import numpy as np

from . import _checks
from .backend import asarray, make_rng, sum_to_shape, to_host, xp_of


def _sub(params, prefix):
    """The entries of ``params`` under ``prefix``, with the prefix stripped.

    Which keys those are is worked out once per (set of keys, prefix) and remembered: a training
    loop asks the same question every step.
    """
    keys = tuple(params)
    plan = _SUB_PLANS.get((keys, prefix))
    if plan is None:
        if len(_SUB_PLANS) > 1024:
            _SUB_PLANS.clear()
        n = len(prefix)
        plan = _SUB_PLANS[keys, prefix] = [(k[n:], k) for k in keys if k.startswith(prefix)]
    return {name: params[k] for name, k in plan}


_SUB_PLANS = {}


def _restarts_shape(restarts, shape):
    restarts = _checks.integer("restarts", restarts, min_value=1, allow_none=True)
    return tuple(shape) if restarts is None else (restarts, *shape)


class Layer:
    """Base class: a parameter-free identity layer."""

    def init(self, rng, restarts=None):
        rng = make_rng(rng)
        _restarts_shape(restarts, ())
        return {}

    def forward(self, params, x):
        return x, None

    def backward(self, params, cache, dy):
        return dy, {}

    def param_grads(self, params, cache, dy):
        """The parameter gradients of ``backward`` without the input gradient (nothing is skipped here)."""
        return self.backward(params, cache, dy)[1]

    def __repr__(self):
        return f"{type(self).__name__}()"


class Linear(Layer):
    """Affine map y = x W + b.

    W : (n_in, n_out) or (R, n_in, n_out); b : (n_out,) or (R, n_out).
    Initialisation: W ~ N(0, scale^2 / n_in) (LeCun normal, scale 1 by default), b = 0.
    """

    def __init__(self, n_in, n_out, *, scale=1.0):
        self.n_in = _checks.integer("n_in", n_in, min_value=1)
        self.n_out = _checks.integer("n_out", n_out, min_value=1)
        self.scale = _checks.scalar("scale", scale, nonneg=True)

    def init(self, rng, restarts=None):
        rng = make_rng(rng)
        shape = _restarts_shape(restarts, (self.n_in, self.n_out))
        W = rng.standard_normal(shape) * (self.scale / np.sqrt(self.n_in))
        return {"W": asarray(W), "b": asarray(np.zeros(shape[:-2] + (self.n_out,)))}

    def forward(self, params, x):
        return x @ params["W"] + params["b"][..., None, :], x

    def backward(self, params, x, dy):
        return dy @ params["W"].swapaxes(-1, -2), self.param_grads(params, x, dy)

    def param_grads(self, params, x, dy):
        W, b = params["W"], params["b"]
        gW = sum_to_shape(x.swapaxes(-1, -2) @ dy, W.shape)
        gb = sum_to_shape(dy.sum(axis=-2), b.shape)
        return {"W": gW, "b": gb}

    def __repr__(self):
        return f"Linear({self.n_in}, {self.n_out})"


class CholeskyLinear(Layer):
    """yacoby2020's C.2 / LinearJTEx decoder mean: z -> L z with L = chol(A A^T + diag B) (lower).

    docs/math.md 4.1, yacoby2020 Eq. 3 and App. C.2. The learned parameter is A; B is a fixed
    non-negative diagonal. With observation noise N(0, sigma2 I - diag B) the model's
    marginal is N(0, A A^T + sigma2 I). The triangular factor pins the rotation of the latent
    space: a free matrix W could be rotated (W -> W R) until the posterior is diagonal at no
    cost in p(x), and the trade-off yacoby2020 describes would vanish.

    Parameters
    ----------
    dim : int, d = K (A is (d, d)).
    B : array (d,), the fixed diagonal, entries >= 0.
    scale : float > 0, standard deviation of the initial entries of A.

    Params ``{"A": (d, d) or (R, d, d)}``; input z (..., B, d) with the restarts axis (if any)
    third from the right; output (..., B, d).
    """

    def __init__(self, dim, B, *, scale=1.0):
        self.n_in = self.n_out = _checks.integer("dim", dim, min_value=1)
        self.B = to_host(_checks.array("B", B, shape=(self.n_in,), nonneg=True))
        self.scale = _checks.scalar("scale", scale, positive=True)

    def init(self, rng, restarts=None):
        rng = make_rng(rng)
        restarts = _checks.integer("restarts", restarts, min_value=1, allow_none=True)
        lead = () if restarts is None else (restarts,)
        return {"A": asarray(self.scale * rng.standard_normal(lead + (self.n_in, self.n_in)))}

    def factor(self, params):
        """L = chol(A A^T + diag B), shape (R?, d, d)."""
        A = params["A"]
        xp = xp_of(A)
        return xp.linalg.cholesky(A @ A.swapaxes(-1, -2) + xp.diag(xp.asarray(self.B, A.dtype)))

    def forward(self, params, z):
        L = self.factor(params)
        return z @ L.swapaxes(-1, -2), (z, L)

    def backward(self, params, cache, dy):
        # y = z L^T gives dz = dy L and dL = tril(dy^T z). Back through the Cholesky factor
        # (Murray 2016): with Phi(X) the lower triangle of X with its diagonal halved,
        # G_bar = sym(L^-T Phi(L^T dL) L^-1) for G = L L^T, and G = A A^T + B gives dA = 2 G_bar A.
        z, L = cache
        A = params["A"]
        xp = xp_of(A, z, dy)
        dz = dy @ L
        dL = xp.tril(sum_to_shape(dy.swapaxes(-1, -2) @ z, L.shape))
        Lt = L.swapaxes(-1, -2)
        phi = xp.tril(Lt @ dL)
        phi = phi - 0.5 * xp.eye(self.n_in, dtype=phi.dtype) * phi
        left = xp.linalg.solve(Lt, phi)                                     # L^-T Phi
        S = xp.linalg.solve(Lt, left.swapaxes(-1, -2)).swapaxes(-1, -2)     # L^-T Phi L^-1
        return dz, {"A": (S + S.swapaxes(-1, -2)) @ A}

    def __repr__(self):
        return f"CholeskyLinear({self.n_in}, B={self.B.tolist()})"


class Shift(Layer):
    """y = x + b: an output offset after a nonlinearity (dai2020's decoder pi_a(W z) + b).

    Params ``{"b": (n,) or (R, n)}`` (zero at init); input (..., B, n).
    """

    def __init__(self, n):
        self.n_in = self.n_out = _checks.integer("n", n, min_value=1)

    def init(self, rng, restarts=None):
        rng = make_rng(rng)
        restarts = _checks.integer("restarts", restarts, min_value=1, allow_none=True)
        lead = () if restarts is None else (restarts,)
        return {"b": asarray(np.zeros(lead + (self.n_in,)))}

    def forward(self, params, x):
        return x + params["b"][..., None, :], None

    def backward(self, params, cache, dy):
        return dy, {"b": sum_to_shape(dy.sum(axis=-2), params["b"].shape)}

    def __repr__(self):
        return f"Shift({self.n_in})"


class Elementwise(Layer):
    """An elementwise activation: subclasses define ``f(x)`` and ``df(x, y)`` = dy/dx."""

    def forward(self, params, x):
        y = self.f(x)
        return y, (x, y)

    def backward(self, params, cache, dy):
        x, y = cache
        return dy * self.df(x, y), {}


class Identity(Elementwise):
    def f(self, x):
        return x

    def df(self, x, y):
        return 1.0


class ReLU(Elementwise):
    def f(self, x):
        return xp_of(x).maximum(x, 0.0)

    def df(self, x, y):
        return (x > 0).astype(x.dtype)


class LeakyReLU(Elementwise):
    """max(x, 0) + slope * min(x, 0)."""

    def __init__(self, slope=0.01):
        self.slope = _checks.scalar("slope", slope)

    def f(self, x):
        return xp_of(x).where(x > 0, x, self.slope * x)

    def df(self, x, y):
        xp = xp_of(x)
        return xp.where(x > 0, xp.asarray(1.0, x.dtype), xp.asarray(self.slope, x.dtype))

    def __repr__(self):
        return f"LeakyReLU({self.slope})"


class Tanh(Elementwise):
    def f(self, x):
        return xp_of(x).tanh(x)

    def df(self, x, y):
        return 1.0 - y * y


class Sigmoid(Elementwise):
    def f(self, x):
        # tanh form: no overflow for large |x| (exp(-x) would overflow for x << 0)
        return 0.5 * (1.0 + xp_of(x).tanh(0.5 * x))

    def df(self, x, y):
        return y * (1.0 - y)


class Softplus(Elementwise):
    def f(self, x):
        return xp_of(x).logaddexp(0.0, x)

    def df(self, x, y):
        return 0.5 * (1.0 + xp_of(x).tanh(0.5 * x))


class SoftThreshold(Elementwise):
    """pi_alpha(u) = sign(u) max(|u| - alpha, 0) (dai2020 Prop. 1, docs/math.md 4.7); alpha = 0 is the identity."""

    def __init__(self, alpha):
        self.alpha = _checks.scalar("alpha", alpha, nonneg=True)

    def f(self, x):
        xp = xp_of(x)
        return xp.sign(x) * xp.maximum(xp.abs(x) - self.alpha, 0.0)

    def df(self, x, y):
        return (xp_of(x).abs(x) > self.alpha).astype(x.dtype)

    def __repr__(self):
        return f"SoftThreshold({self.alpha})"


class Cube(Elementwise):
    """u -> u^3 (yacoby2020's CubicJTEx decoder)."""

    def f(self, x):
        return x * x * x

    def df(self, x, y):
        return 3.0 * x * x


ACTIVATIONS = {"identity": Identity, "relu": ReLU, "leaky_relu": LeakyReLU, "tanh": Tanh,
               "sigmoid": Sigmoid, "softplus": Softplus, "cube": Cube}


def activation(spec, name="activation"):
    """An activation layer from a name in ``ACTIVATIONS`` or a layer instance (``name``: the
    caller's argument, for the error message)."""
    if isinstance(spec, Layer):
        return spec
    if not isinstance(spec, str) or spec not in ACTIVATIONS:
        raise ValueError(f"{name} must be one of {sorted(ACTIVATIONS)} or a Layer, got {spec!r}")
    return ACTIVATIONS[spec]()


class Sequential(Layer):
    """Layers applied in order; parameter keys are ``"<index>.<name>"`` (e.g. ``"0.W"``)."""

    def __init__(self, *layers):
        if not layers:
            raise ValueError("Sequential needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}] must be a Layer, got {type(layer).__name__}")
        self.layers = tuple(layers)
        sized = [lay for lay in layers if hasattr(lay, "n_in")]
        self.n_in = sized[0].n_in if sized else None
        self.n_out = sized[-1].n_out if sized else None

    def init(self, rng, restarts=None):
        rng = make_rng(rng)
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers)
                for k, v in layer.init(rng, restarts).items()}

    def forward(self, params, x):
        caches = []
        for layer, p in zip(self.layers, self._split(params)):
            x, cache = layer.forward(p, x)
            caches.append(cache)
        return x, caches

    def backward(self, params, caches, dy):
        return self._backward(params, caches, dy, need_dx=True)

    def param_grads(self, params, caches, dy):
        return self._backward(params, caches, dy, need_dx=False)[1]

    def _backward(self, params, caches, dy, need_dx):
        grads, split = {}, self._split(params)
        for i in reversed(range(len(self.layers))):
            if i or need_dx:
                dy, g = self.layers[i].backward(split[i], caches[i], dy)
            else:                                        # the input gradient is not wanted
                dy, g = None, self.layers[i].param_grads(split[i], caches[i], dy)
            grads.update({f"{i}.{k}": v for k, v in g.items()})
        return dy, grads

    def _split(self, params):
        """``[_sub(params, "0."), _sub(params, "1."), ...]``, one dict per layer.

        Which key goes where is worked out once per set of keys (every step of a training loop
        passes the same keys) instead of scanning every key for every layer.
        """
        keys = tuple(params)
        if keys != self.__dict__.get("_plan_keys"):
            parts = [k.partition(".") for k in keys]
            self._plan = [[(rest, k) for k, (head, dot, rest) in zip(keys, parts) if dot and head == str(i)]
                          for i in range(len(self.layers))]
            self._plan_keys = keys
        return [{name: params[k] for name, k in plan} for plan in self._plan]

    def __repr__(self):
        return "Sequential(" + ", ".join(map(repr, self.layers)) + ")"


class ResidualBlock(Layer):
    """y = x + fc2(act(fc1(x))) with fc1, fc2 : width -> width.

    fc2 starts at a small scale (0.1) so that a deep stack begins near the identity.
    """

    def __init__(self, width, activation_="tanh"):
        self.n_in = self.n_out = _checks.integer("width", width, min_value=1)
        self.body = Sequential(Linear(width, width), activation(activation_),
                               Linear(width, width, scale=0.1))

    def init(self, rng, restarts=None):
        rng = make_rng(rng)
        return self.body.init(rng, restarts)

    def forward(self, params, x):
        h, cache = self.body.forward(params, x)
        return x + h, cache

    def backward(self, params, cache, dy):
        dx, grads = self.body.backward(params, cache, dy)
        return dx + dy, grads

    def __repr__(self):
        return f"ResidualBlock({self.n_in})"


def _widths(name, sizes, example):
    """``sizes`` as a list of int widths >= 1; errors name ``name`` (``name[i]`` for an entry)."""
    try:
        if isinstance(sizes, (str, bytes)):
            raise TypeError
        sizes = list(sizes)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of int widths ({example}), "
                        f"got {type(sizes).__name__} {sizes!r}") from None
    return [_checks.integer(f"{name}[{i}]", s, min_value=1) for i, s in enumerate(sizes)]


def mlp(sizes, activation_="tanh", final_activation=None, residual=False):
    """Build a multilayer perceptron.

    Parameters
    ----------
    sizes : sequence of int, (n_in, h_1, ..., n_out); ``(n_in, n_out)`` is a single affine map.
    activation_ : name or Layer used after every hidden affine map.
    final_activation : optional name or Layer applied to the output.
    residual : if True, every hidden -> hidden map of equal width is a ``ResidualBlock``.

    Both activations are checked up front, also when no hidden layer would use ``activation_``.
    """
    sizes = _widths("sizes", sizes, "n_in, h_1, ..., n_out")
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least an input and an output size, got {sizes}")
    activation(activation_)                   # a bad name fails here even with no hidden layer
    if final_activation is not None:
        activation(final_activation, "final_activation")
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        if residual and not last and i > 0 and a == b:
            layers.append(ResidualBlock(a, activation_))
            continue
        layers.append(Linear(a, b))
        if not last:
            layers.append(activation(activation_))
    if final_activation is not None:
        layers.append(activation(final_activation))
    return Sequential(*layers)

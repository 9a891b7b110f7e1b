"""7. Check the gradient of your own layer: finite differences, then hypothesis.

A refvae layer is three methods (refvae/layers.py): ``init(rng, restarts)`` gives its
parameters, ``forward(params, x)`` returns (y, cache), ``backward(params, cache, dy)`` returns
(dx, grads). Here a new one, Swish with a learned slope per feature, y = x sigmoid(b x)
(Ramachandran et al. 2017), written twice: once right, once with a forgotten term.

1. ``refvae.check_grad`` compares the claimed gradient of any fun(params) -> (value, grads) with
   fourth-order central differences, entry by entry and along random directions (float64;
   relative error <= 1e-6 passes; refvae/gradcheck.py). The figure shows the error against the
   step h: truncation (~h^4) on the right, round-off (~eps / h) on the left, the bug flat at O(1).
2. ``refvae.testing.check_layer_gradients`` repeats it on examples hypothesis draws (restarts
   axis or not, several batch sizes); ``check_objective_gradients`` on a VAE built with the layer.
"""
import numpy as np

import refvae
import refvae.testing                                   # needs hypothesis (make install has it)
from _common import parse, pyplot, save

args = parse(__doc__, __file__)
examples = 5 if args.quick else 25


class Swish(refvae.layers.Layer):
    """y = x * sigmoid(b * x), b of shape (n,) or (R, n); input (..., B, n)."""

    def __init__(self, n, bug=False):
        self.n_in = self.n_out = n
        self.bug = bug

    def init(self, rng, restarts=None):
        return {"b": np.ones((self.n_in,) if restarts is None else (restarts, self.n_in))}

    def forward(self, params, x):
        s = 0.5 * (1 + np.tanh(0.5 * params["b"][..., None, :] * x))     # sigmoid(b x), overflow-free
        return x * s, (x, s)

    def backward(self, params, cache, dy):
        x, s = cache
        ds = s * (1 - s)                                                  # sigmoid' at b x
        dx = dy * (s if self.bug else s + params["b"][..., None, :] * x * ds)   # the bug drops b x s'
        db = (dy * x * x * ds).sum(axis=-2)                               # sum over the batch ...
        while db.ndim > params["b"].ndim:                                 # ... and any sample axes
            db = db.sum(axis=0)
        return dx, {"b": db}


rng = np.random.default_rng(args.seed)
x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
point = {"b": rng.standard_normal(3), "x": x}          # the input is checked like a parameter
steps, errors = np.logspace(-7, -1, 13), {}
for name, layer in (("correct", Swish(3)), ("buggy", Swish(3, bug=True))):
    fun = refvae.gradcheck.layer_fun(layer, x, dy)     # p -> (sum(forward * dy), {"b": db, "x": dx})
    errors[name] = [refvae.check_grad(fun, point, h=h).max_rel_error for h in steps]
    print(f"{name:8s} layer: max relative error {refvae.check_grad(fun, point).max_rel_error:.2e} "
          f"at h = 1e-4 (passes when <= 1e-6)")
refvae.testing.check_layer_gradients(Swish(3), max_examples=examples)
print(f"hypothesis, correct layer: {examples} drawn examples pass")
try:
    refvae.testing.check_layer_gradients(Swish(3, bug=True), max_examples=examples)
except AssertionError as error:
    print("hypothesis, buggy layer: fails with", str(error).splitlines()[0])
else:
    print("hypothesis, buggy layer: passed (unexpected: the check missed the bug)")
encoder = refvae.Sequential(refvae.Linear(2, 8), Swish(8), refvae.Linear(8, 2))
decoder = refvae.Sequential(refvae.Linear(1, 8), Swish(8), refvae.Linear(8, 2))
refvae.testing.check_objective_gradients(refvae.GaussianVAE(encoder, decoder, 1, 2, obs="scalar"),
                                         max_examples=examples)
print(f"hypothesis, a VAE with Swish layers (learned noise): {examples} drawn examples pass")

plt = pyplot()
if plt is not None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, err in errors.items():
        ax.loglog(steps, np.maximum(err, 1e-17), "o-", label=f"{name} backward")
    ax.axhline(1e-6, color="k", ls=":", label="tolerance 1e-6")
    ax.set(xlabel="finite-difference step h", ylabel="max relative error")
    ax.legend(fontsize=7)
    save(fig, args.out)

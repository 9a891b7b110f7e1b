"""Training and evaluation helpers shared by the theorem checks (tests/theorems).

Every check trains a model with refvae and compares it with a closed form of the
``analytic`` package. The pieces they share:

Training runs through ``refvae.train.fit_stages``: Monte Carlo gradients make Adam's iterates
jitter around the optimum by an amount that shrinks with the learning rate, so each check ends
with a small-rate stage (and, where the parameters have no continuous symmetry, averages its
iterates); the checks' tolerances are set from the error that remains, measured over several
seeds. A model's own -ELBO is estimated with ``refvae.metrics.likelihood.objective_estimate``.
- ``with_values``: set entries of a parameter dict, refusing unknown keys.
- ``affine_encoder`` / ``affine_decoder``: the maps of ``GaussianVAE.linear`` in analytic's
  orientation.
"""
from __future__ import annotations

from refvae.backend import asarray, to_host

__all__ = ["with_values", "affine_encoder", "affine_decoder"]


def with_values(params, **values):
    """A copy of ``params`` with some entries replaced (``"dec.W"`` is passed as ``dec__W``).

    Raises KeyError for a key ``params`` does not have (a typo would otherwise add an unused
    entry and leave the intended one at its initial value) and ValueError for a shape change.
    """
    out = dict(params)
    for name, v in values.items():
        key = name.replace("__", ".")
        if key not in params:
            raise KeyError(f"params has no entry {key!r}; it has {sorted(params)}")
        v = asarray(v)
        if tuple(v.shape) != tuple(params[key].shape):
            raise ValueError(f"{key} must keep its shape {tuple(params[key].shape)}, got {tuple(v.shape)}")
        out[key] = v
    return out


def affine_encoder(params, latent_dim, r=None):
    """Moments of the affine encoder of ``GaussianVAE.linear``: mu = x M + c, logvar = x G + g.

    Returns (M (d, K), c (K,), G (d, K), g (K,)) as NumPy arrays, for restart ``r`` if given.
    """
    W, b = to_host(params["enc.0.W"]), to_host(params["enc.0.b"])
    if r is not None:
        W, b = W[r], b[r]
    K = latent_dim
    return W[:, :K], b[:K], W[:, K:], b[K:]


def affine_decoder(params, r=None):
    """Decoder of ``GaussianVAE.linear`` in analytic's convention: mean W z + b, W (d, K), b (d,)."""
    W, b = to_host(params["dec.0.W"]), to_host(params["dec.0.b"])
    if r is not None:
        W, b = W[r], b[r]
    return W.T, b

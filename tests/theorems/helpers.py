"""Training and evaluation helpers shared by the theorem checks (tests/theorems).

Every check trains a model with refvae and compares it with a closed form of the
``analytic`` package. The pieces they share:

- ``train``: ``refvae.train.fit`` run once per stage of a piecewise-constant Adam
  learning-rate schedule, optionally returning the average of the last iterates. Monte
  Carlo gradients make Adam's iterates jitter around the optimum by an amount that shrinks
  with the learning rate, so each check ends with a small-rate stage (and, where the
  parameters have no continuous symmetry, averages it); the checks' tolerances are set from
  the error that remains, measured over several seeds.
- ``mc_objective``: the model's own -ELBO per data point estimated with many samples, with
  its Monte Carlo standard error (independent replicates).
- ``with_values``: set entries of a parameter dict, refusing unknown keys.
- ``affine_encoder`` / ``affine_decoder``: the maps of ``GaussianVAE.linear`` in analytic's
  orientation.
"""
from __future__ import annotations

import numpy as np

from refvae import _checks
from refvae.backend import asarray, make_rng, normal, to_host
from refvae.optim import Adam
from refvae.train import fit

__all__ = ["train", "mc_objective", "with_values", "affine_encoder", "affine_decoder"]


def train(model, params, x, *, schedule, seed, n_samples=None, only=None, average=0):
    """Train with Adam under a piecewise-constant learning-rate schedule.

    Parameters
    ----------
    model : refvae objective (``GaussianVAE``).
    params : dict from ``model.init`` (optionally with a restarts axis R).
    x : array (N, d), full batch every step.
    schedule : sequence of (lr, steps) pairs, run in order; each stage is one call of
        ``refvae.train.fit`` with a fresh ``Adam(lr)``.
    seed : int or numpy.random.Generator; one stream feeds every stage.
    n_samples : Monte Carlo samples per point per step (None: one, no sample axis).
    only : key prefixes to train (``refvae.optim`` ``only=``), e.g. ``("enc.",)``.
    average : int >= 0. If positive, return the mean of the iterates of the last
        ``average`` steps (Polyak-Ruppert averaging) instead of the last iterate. With
        Monte Carlo gradients the iterates jitter around the optimum by an amount that
        shrinks only roughly like sqrt(lr); their average is closer to it by about the square
        root of the number of independent jitters it spans. Not for parameters with a
        continuous symmetry (an average over a rotation orbit shrinks them).

    Returns
    -------
    params : dict, the trained (or averaged) parameters.
    history : dict of arrays (total steps, R?), ``fit``'s histories concatenated.
    """
    rng = make_rng(seed)
    average = _checks.integer("average", average, min_value=0)
    total = sum(steps for _, steps in schedule)
    if average > total:
        raise ValueError(f"average must be <= the total number of steps {total}, got {average}")
    history, acc, done = {}, {}, 0

    def accumulate(step, p, terms):
        if done + step >= total - average:
            for k, v in p.items():
                acc[k] = acc[k] + v if k in acc else v.copy()
        return False

    for lr, steps in schedule:
        res = fit(model, params, x, steps=steps, seed=rng, optimizer=Adam(lr), n_samples=n_samples,
                  only=only, callback=accumulate if average else None)
        params = res.params
        done += steps
        for k, v in res.history.items():
            history.setdefault(k, []).append(v)
    if average:
        params = {k: v / average for k, v in acc.items()}
    return params, {k: np.concatenate(v) for k, v in history.items()}


def mc_objective(model, params, x, *, seed, replicates=32, n_samples=16):
    """Monte Carlo -ELBO per data point of ``model`` at ``params`` and its standard error.

    Each of ``replicates`` independent evaluations of ``model.value_and_grad`` averages
    ``n_samples`` draws per point over all of ``x``; the mean of the replicates is the
    estimate and their standard deviation / sqrt(replicates) its standard error.

    Returns
    -------
    mean, se : floats, or arrays (R,) with a restarts axis.
    """
    rng = make_rng(seed)
    values = []
    for _ in range(replicates):
        noise = normal(rng, model.noise_shape(params, x.shape[-2], n_samples))
        values.append(to_host(model.value_and_grad(params, x, noise)[0]))
    values = np.asarray(values)
    return values.mean(axis=0), values.std(axis=0, ddof=1) / np.sqrt(replicates)


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

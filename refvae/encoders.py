"""The non-amortised encoder: free per-point moments (mu_n, logvar_n) as parameters (docs/math.md 2.5).

dai2020's energy (Eq. 5) treats each data point's variational moments as free parameters
instead of outputs of a network; yacoby2020 (App. D) gets its reference posteriors by fixing
the likelihood at the ground truth and minimising its objective over the encoder only.

Design. ``GaussianVAE`` calls ``encoder.forward(enc_params, x)`` with the data alone, so a
per-point encoder cannot know which points a minibatch holds. The indices travel with the
data instead:

- ``PerPointEncoder`` is an ordinary layer whose parameters are the tables ``mu`` and
  ``logvar`` of shape (N, K) [(R, N, K)]. Its forward ignores the values of x and returns
  its rows, row b for the b-th row of x. Used directly in a ``GaussianVAE`` it therefore
  needs the full data set, in index order, as the batch.
- ``PerPointVAE`` wraps such a ``GaussianVAE`` for minibatches. Its data are the rows of
  ``with_index(x)``: x with the point's index appended as a last column. Its
  ``value_and_grad`` splits off the indices, gathers the batch's rows of the tables, calls
  the wrapped model's own ``value_and_grad`` (nothing is recomputed or re-derived) and
  scatter-adds the row gradients back into tables of zeros: rows not in the batch get an
  exactly zero gradient. Because the index column rides in the data matrix,
  ``refvae.train.fit`` and every other trainer that slices ``x[idx]`` work unchanged.

A zero gradient is not a zero update for optimisers with momentum: Adam keeps moving the
rows of earlier batches with their decaying moments (as any dense Adam does). Full-batch
training, or SGD without momentum, updates only the rows in the batch.

``fit_encoder`` fits the encoder alone against a frozen decoder (yacoby2020's reference
posteriors) with ``refvae.train.fit(..., only=("enc.",))``.
"""
from __future__ import annotations

import copy

import numpy as np

from . import _checks
from .backend import asarray, make_rng, sum_to_shape, to_host, xp_of
from .layers import Layer
from .objectives import GaussianVAE, _template
from .train import fit

__all__ = ["PerPointEncoder", "PerPointVAE", "with_index", "fit_encoder"]

_TABLES = ("enc.mu", "enc.logvar")


class PerPointEncoder(Layer):
    """Free variational moments per data point, as a layer (docs/math.md 2.5).

    Parameters
    ----------
    num_points : int, N, the number of data points (rows of the tables).
    latent_dim : int, K.
    init_scale : float >= 0, initial means are N(0, init_scale^2) draws (default 0.01:
        near the prior, but distinct across points and restarts).
    init_logvar : float, initial log-variance of every point (default 0: the prior's).

    Parameters dict (``init``): ``"mu"`` and ``"logvar"``, each (N, K) or (R, N, K).

    ``forward(params, x)`` with x of shape (..., B, n_in) and tables of B rows returns
    concat(mu, logvar) of shape broadcast(x.shape[:-2], R?) + (B, 2K); the values of x are
    not used (its gradient is zero). B must equal the number of rows of the tables given:
    all N when used inside ``GaussianVAE`` on the full data, the gathered batch rows when
    called through ``PerPointVAE``.
    """

    n_in = None  # any input width: the input only fixes the batch shape

    def __init__(self, num_points, latent_dim, *, init_scale=0.01, init_logvar=0.0):
        self.num_points = _checks.integer("num_points", num_points, min_value=1)
        self.latent_dim = _checks.integer("latent_dim", latent_dim, min_value=1)
        self.n_out = 2 * self.latent_dim
        self.init_scale = _checks.scalar("init_scale", init_scale, nonneg=True)
        self.init_logvar = _checks.scalar("init_logvar", init_logvar)

    def init(self, rng, restarts=None):
        rng = make_rng(rng)
        restarts = _checks.integer("restarts", restarts, min_value=1, allow_none=True)
        shape = (self.num_points, self.latent_dim) if restarts is None else \
            (restarts, self.num_points, self.latent_dim)
        return {"mu": asarray(self.init_scale * rng.standard_normal(shape)),
                "logvar": asarray(np.full(shape, self.init_logvar))}

    def forward(self, params, x):
        mu, logvar = params["mu"], params["logvar"]
        if x.ndim < 2 or x.shape[-2] != mu.shape[-2]:
            raise ValueError(
                f"PerPointEncoder holds {mu.shape[-2]} rows but got a batch of shape {tuple(x.shape)}: "
                "on the full data set pass x in index order; for minibatches wrap the model in "
                "refvae.encoders.PerPointVAE and pass with_index(x)")
        xp = xp_of(mu, logvar, x)
        out = xp.concatenate([mu, logvar], axis=-1)
        lead = np.broadcast_shapes(tuple(x.shape[:-2]), tuple(out.shape[:-2]))
        return xp.broadcast_to(out, lead + tuple(out.shape[-2:])), (x.shape, x.dtype)

    def backward(self, params, cache, dy):
        x_shape, dtype = cache
        K = self.latent_dim
        xp = xp_of(dy)
        return xp.zeros(x_shape, dtype=dtype), {"mu": sum_to_shape(dy[..., :K], params["mu"].shape),
                                                "logvar": sum_to_shape(dy[..., K:], params["logvar"].shape)}

    def __repr__(self):
        return f"PerPointEncoder({self.num_points}, {self.latent_dim})"


def with_index(x):
    """Append each row's index as a last column: (N, d) -> (N, d + 1), the input of ``PerPointVAE``.

    Indices are stored as float64, exact for N < 2**53.
    """
    x = _checks.array("x", x, ndim=2)
    xp = xp_of(x)
    return xp.concatenate([x, xp.arange(x.shape[0], dtype=x.dtype)[:, None]], axis=1)


def _scatter_add(xp, table, idx, rows):
    """table[..., idx, :] += rows, accumulating repeated indices."""
    if xp is np:
        np.add.at(table, (Ellipsis, idx, slice(None)), rows)
    else:  # pragma: no cover - needs CuPy
        import cupyx
        cupyx.scatter_add(table, (Ellipsis, idx, slice(None)), rows)
    return table


class PerPointVAE:
    """A ``GaussianVAE`` with a ``PerPointEncoder``, trainable on minibatches (docs/math.md 2.5).

    Same contract as ``GaussianVAE`` (``init``, ``noise_shape``, ``encode``, ``decode``,
    ``value_and_grad``), except that its data are the rows of ``with_index(x)``, shape
    (B, d + 1): the last column is each row's index into the tables. The objective is the
    wrapped model's negative ELBO per data point of the batch.

    Parameters
    ----------
    model : GaussianVAE whose encoder is a ``PerPointEncoder``.
    """

    def __init__(self, model):
        if not isinstance(model, GaussianVAE):
            raise TypeError(f"model must be a GaussianVAE, got {type(model).__name__}")
        if not isinstance(model.encoder, PerPointEncoder):
            raise TypeError(f"model.encoder must be a PerPointEncoder, got {type(model.encoder).__name__}")
        self.model = model
        # The wrapped model is called on the batch's rows of the tables: a copy of it whose
        # parameter template leaves the tables' row axis free (the full tables are checked here).
        self._batch_model = copy.copy(model)
        self._batch_model._param_template = {k: (None,) + s[1:] if k in _TABLES else s
                                             for k, s in _template(model).items()}
        self.encoder, self.decoder = model.encoder, model.decoder
        self.latent_dim, self.data_dim = model.latent_dim, model.data_dim
        self.num_points = model.encoder.num_points

    @classmethod
    def from_decoder(cls, decoder, num_points, latent_dim, data_dim, *, init_scale=0.01,
                     init_logvar=0.0, **model_kwargs):
        """Build the wrapped ``GaussianVAE(PerPointEncoder(num_points, latent_dim), decoder, ...)``;
        ``model_kwargs`` (obs, sigma2, beta) go to ``GaussianVAE``."""
        enc = PerPointEncoder(num_points, latent_dim, init_scale=init_scale, init_logvar=init_logvar)
        return cls(GaussianVAE(enc, decoder, latent_dim, data_dim, **model_kwargs))

    def init(self, rng, restarts=None):
        rng = make_rng(rng)
        return self.model.init(rng, restarts)

    def noise_shape(self, params, batch_size, n_samples=None):
        return self.model.noise_shape(params, batch_size, n_samples)

    def split(self, xa):
        """Split indexed data (B, d + 1) into x (B, d) and integer indices (B,), validating both."""
        xa = _checks.array("x", xa, ndim=2, last_dim=self.data_dim + 1)
        col = xa[:, -1]
        xp = xp_of(col)
        bad = (col < 0) | (col > self.num_points - 1) | (col != xp.floor(col))
        if bool(bad.any()):
            raise ValueError(f"the last column of x must hold point indices in [0, {self.num_points}) "
                             f"(build x with refvae.encoders.with_index), got e.g. "
                             f"{float(to_host(col[bad][0]))}")
        return xa[:, :-1], col.astype(np.int64)

    def _gather(self, params, idx):
        batch = dict(params)
        batch["enc.mu"] = params["enc.mu"][..., idx, :]
        batch["enc.logvar"] = params["enc.logvar"][..., idx, :]
        return batch

    def encode(self, params, xa):
        """Moments of the indexed points: mu, logvar of shape (R?, B, K)."""
        _, idx = self.split(xa)
        return params["enc.mu"][..., idx, :], params["enc.logvar"][..., idx, :]

    def decode(self, params, z, sigma2=None):
        return self.model.decode(params, z, sigma2)

    def log_px_given_z(self, params, x, z, sigma2=None):
        """log p(x | z) for plain data x (B, d) (the decoder needs no indices)."""
        return self.model.log_px_given_z(params, x, z, sigma2)

    def value_and_grad(self, params, xa, noise, *, beta=None, sigma2=None, with_terms=False):
        """Negative ELBO per data point of the indexed batch, and its gradient.

        Parameters
        ----------
        params : dict from ``init``: ``enc.mu``, ``enc.logvar`` (R?, N, K) and the decoder's.
        xa : (B, d + 1), rows of ``with_index(x)``.
        noise : (R?, B, K) or (S, R?, B, K) standard normal.
        beta, sigma2, with_terms : as ``GaussianVAE.value_and_grad``.

        Returns
        -------
        (loss, grads[, terms]) as ``GaussianVAE.value_and_grad``; ``grads["enc.mu"]`` and
        ``grads["enc.logvar"]`` are (R?, N, K), zero in every row not in the batch.
        """
        _checks.params_like(params, _template(self.model))
        x, idx = self.split(xa)
        out = self._batch_model.value_and_grad(self._gather(params, idx), x, noise, beta=beta, sigma2=sigma2,
                                               with_terms=with_terms)
        grads = dict(out[1])
        xp = xp_of(x)
        for k in ("enc.mu", "enc.logvar"):
            grads[k] = _scatter_add(xp, xp.zeros_like(params[k]), idx, grads[k])
        return (out[0], grads) + tuple(out[2:])


def fit_encoder(model, params, x, *, steps, seed, batch_size=None, optimizer=None, n_samples=None,
                **fit_kwargs):
    """Fit the encoder alone against a frozen decoder: ``refvae.train.fit(..., only=("enc.",))``.

    yacoby2020's reference posteriors (App. D: the likelihood fixed at the ground truth,
    -ELBO minimised over phi only); with a ``PerPointVAE`` this is the best fit of each
    point's mean-field Gaussian to that point's exact posterior (docs/math.md 2.5, 4.2).

    Parameters
    ----------
    model : GaussianVAE (amortised encoder), or PerPointVAE.
    params : its parameter dict; the ``"dec.*"`` entries are left exactly as given.
    x : (N, d) data. For a ``PerPointVAE`` plain data are indexed with ``with_index``
        (row n is point n); already-indexed (N, d + 1) data are used as given.
    steps, seed, batch_size, optimizer, n_samples, **fit_kwargs : as ``refvae.train.fit``
        (``only`` is fixed to ``("enc.",)`` and may not be passed).

    Returns
    -------
    refvae.train.FitResult

    Raises
    ------
    RuntimeError if any decoder parameter changed (it cannot, unless the optimiser ignores ``only``).
    """
    if "only" in fit_kwargs:
        raise TypeError("fit_encoder fixes only=('enc.',); do not pass only")
    if not hasattr(model, "value_and_grad") or not hasattr(model, "data_dim"):
        raise TypeError(f"model must be a refvae objective (GaussianVAE or PerPointVAE), got {type(model).__name__}")
    if not isinstance(params, dict) or not any(k.startswith("enc.") for k in params):
        raise ValueError("params must be a parameter dict with encoder entries 'enc.*'")
    x = _checks.array("x", x, ndim=2)
    if isinstance(model, PerPointVAE):
        if x.shape[1] == model.data_dim:
            if x.shape[0] != model.num_points:
                raise ValueError(f"x must have one row per encoder point ({model.num_points}), "
                                 f"got {x.shape[0]}; pass with_index-ed rows to fit a subset")
            x = with_index(x)
        model.split(x)  # validates the index column before any work
    frozen = {k: v.copy() for k, v in params.items() if not k.startswith("enc.")}
    result = fit(model, params, x, steps=steps, seed=seed, batch_size=batch_size, optimizer=optimizer,
                 n_samples=n_samples, only=("enc.",), **fit_kwargs)
    for k, v in frozen.items():
        if not bool(xp_of(v).array_equal(result.params[k], v)):
            raise RuntimeError(f"decoder parameter {k!r} changed during fit_encoder")
    return result

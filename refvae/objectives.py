"""The Gaussian VAE objective (every observation-noise mode) and the deterministic autoencoder.

A model object holds configuration only (networks, noise mode, beta). Its parameters are a
flat dict of arrays with keys ``"enc.*"`` (inference network) and ``"dec.*"`` (generative
model, the learned observation log-variance ``"dec.obs_logvar"`` included), so optimisers can
step the two groups separately. Every objective is a pure function

    loss, grads = model.value_and_grad(params, x, noise)

deterministic given the injected standard-normal ``noise``: ``loss`` is the mean loss per
data point (shape (R,) with a restarts axis, else a scalar) and ``grads`` has the keys and
shapes of ``params``; with a restarts axis each restart's gradient is that of its own loss.

``value_and_grad`` validates its inputs (a clear error before any work). A loop that validated
them once and calls it thousands of times with inputs it built itself (``fit``) may call
``value_and_grad_unchecked``: the same computation, the same numbers, without the checks.

What ``value_and_grad`` checks of ``params``: the model's keys, shapes and float dtypes, and that a
learned observation log-variance ``dec.obs_logvar`` lies within +-``logvar_bound(dtype)`` (708.4 in
float64), so that the variance exp(obs_logvar) neither underflows to 0 nor overflows. It does
not scan the other values: a NaN or inf parameter gives a non-finite loss, deliberately. Scanning
every entry would cost every call, and the trainers rely on that non-finite loss: they check
parameter values once at entry (``fit(params=...)`` names a NaN entry), then read a non-finite
loss as a divergence and report its step and quantity with the last finite state
(``refvae.train.TrainingDiverged``), also in the loops that call ``value_and_grad`` every step
(schedules, ``refvae.lin``); a ``ValueError`` raised here would replace that report.

The computation runs in the parameters' float type: ``x`` and ``noise`` are cast to it, so a
model initialised under ``refvae.backend.use_dtype("float32")`` computes in float32.
"""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from . import _checks
from .backend import asarray, make_rng, mean, sum_to_shape, to_host, xp_of
from .distributions import (gaussian_log_prob, kl_sample, kl_sample_backward, kl_std_normal, reparameterize,
                            reparameterize_backward)
from .layers import Layer, _sub, _widths, mlp

OBS_MODES = ("fixed", "scalar", "vector", "decoder")

# A variance s2 is usable when s2 and 1 / s2 are both normal (not subnormal, not infinite) floats:
# s2 in [tiny, 1 / tiny], i.e. |log s2| <= -log(tiny) (708.4 in float64, 87.3 in float32).
SIGMA2_MIN = float(np.finfo(np.float64).tiny)
SIGMA2_MAX = 1.0 / SIGMA2_MIN


def logvar_bound(dtype):
    """Largest |log-variance| whose variance and inverse variance are normal numbers of ``dtype``."""
    return -math.log(float(np.finfo(dtype).tiny))


_LOGVAR_BOUNDS = {np.dtype(t): logvar_bound(t) for t in (np.float64, np.float32)}


def _check_sigma2(name, sigma2):
    """A variance: a finite float in [SIGMA2_MIN, SIGMA2_MAX] (see ``logvar_bound``)."""
    sigma2 = _checks.scalar(name, sigma2, positive=True)
    if not SIGMA2_MIN <= sigma2 <= SIGMA2_MAX:
        raise ValueError(f"{name} must lie in [{SIGMA2_MIN:.3g}, {SIGMA2_MAX:.3g}] (a float64 variance that is "
                         f"not subnormal and whose inverse is finite), got {sigma2!r}")
    return sigma2


_DecoderCache = namedtuple("_DecoderCache", "layers mean obs_logvar dmean dlv")


def _prefixed(prefix, tree):
    return {prefix + k: v for k, v in tree.items()}


def _in_param_dtype(params, *arrays):
    """``arrays`` cast to the parameters' float type (None passes through); no copy when it already matches."""
    dtype = next(iter(params.values())).dtype
    return tuple(a if a is None or a.dtype == dtype else a.astype(dtype) for a in arrays)


def _check_widths(name, net, n_in, n_out):
    """A network that declares its widths must match the model's."""
    if getattr(net, "n_out", None) not in (None, n_out) or getattr(net, "n_in", None) not in (None, n_in):
        raise ValueError(f"{name} must map {n_in} -> {n_out} features for this model, got {net.n_in} -> {net.n_out}")


def _template(model):
    """Key -> shape (without restarts) of the model's parameters, computed once from ``init``."""
    if "_param_template" not in model.__dict__:
        model._param_template = {k: tuple(v.shape) for k, v in model.init(np.random.default_rng(0)).items()}
    return model._param_template


def take_restart(params, r):
    """Restart ``r`` of a parameter dict whose every entry has a leading restarts axis R: the
    parameters of one model, as ``init(rng)`` without ``restarts`` would shape them."""
    return {k: v[r] for k, v in params.items()}


def _restart_shape(params, template=None):
    """The restarts axis of a parameter dict: () or (R,).

    With the model's ``template`` (key -> shape without restarts) it is read off any entry's extra
    leading axes, whatever the layers; without one, off any dense weight ``*.W``.
    """
    if template is not None:
        for k, shape in template.items():
            if k in params:
                return tuple(params[k].shape[:params[k].ndim - len(shape)])
    for k, v in params.items():
        if k.endswith(".W"):
            return tuple(v.shape[:-2])
    return ()


class GaussianDecoder:
    """The observation model p(x | z) = N(x; f(z), diag s2) shared by every objective (docs/math.md 1).

    Parameters
    ----------
    decoder : Layer mapping its input (..., B, n_in) to the mean f (..., B, d), or to (..., B, 2d) =
        (mean, logvar) when ``obs="decoder"``. ``n_in`` is K for a VAE, K + C for M2.
    n_in, data_dim : int, the decoder's input width and d.
    obs : observation-noise mode (berger2020's names):
        ``"fixed"``  F-VAE, s2 = ``sigma2`` (overridable per call, for schedules);
        ``"scalar"`` LS-VAE, learned scalar, parameter ``dec.obs_logvar`` of shape (1,) [(R, 1)];
        ``"vector"`` learned per-dimension constant, ``dec.obs_logvar`` of shape (d,) [(R, d)];
        ``"decoder"`` LV-VAE, per-dimension s2(z) output by the decoder.
    sigma2 : float > 0, the fixed variance, or the initial variance of a learned scalar/vector.

    Its parameters are the ``"dec.*"`` entries of the model's dict.
    """

    def __init__(self, decoder, n_in, data_dim, *, obs="fixed", sigma2=1.0):
        if not isinstance(decoder, Layer):
            raise TypeError(f"decoder must be a refvae Layer, got {type(decoder).__name__}")
        self.n_in = _checks.integer("n_in", n_in, min_value=1)
        self.data_dim = _checks.integer("data_dim", data_dim, min_value=1)
        self.obs = _checks.choice("obs", obs, OBS_MODES)
        self.sigma2 = _check_sigma2("sigma2", sigma2)
        _check_widths("decoder", decoder, self.n_in, 2 * self.data_dim if obs == "decoder" else self.data_dim)
        self.decoder = decoder

    def init(self, rng, restarts=None):
        """Decoder parameters (``"dec.*"``), a learned log-variance starting at log(sigma2)."""
        rng = make_rng(rng)
        params = _prefixed("dec.", self.decoder.init(rng, restarts))
        if self.obs in ("scalar", "vector"):
            n = 1 if self.obs == "scalar" else self.data_dim
            lead = () if restarts is None else (restarts,)
            params["dec.obs_logvar"] = asarray(np.full(lead + (n,), math.log(self.sigma2)))
        return params

    def decode(self, params, z, sigma2=None):
        """Mean (..., B, d) and observation log-variance (a float for ``"fixed"``, else broadcastable)."""
        return self._observation(params, self.decoder.forward(_sub(params, "dec."), z)[0], sigma2)

    def check_sigma2(self, sigma2):
        """Validate a per-call variance override (``obs="fixed"`` only): None or a float > 0."""
        if sigma2 is None:
            return None
        if self.obs != "fixed":
            raise ValueError(f"sigma2 can be set per call only for obs='fixed', not obs={self.obs!r}")
        return _check_sigma2("sigma2", sigma2)

    def check_params(self, params, name="params"):
        """Refuse a learned ``dec.obs_logvar`` whose variance under- or overflows (``logvar_bound``).

        O(size of ``dec.obs_logvar``): one reduction over (R?, 1) or (R?, d) numbers. A NaN or inf
        entry passes (it gives a non-finite loss, which trainers report as a divergence); a
        finite one beyond the bound is an error. Call it after ``_checks.params_like``.
        """
        lv = params.get("dec.obs_logvar") if self.obs in ("scalar", "vector") else None
        if lv is None or not lv.size:
            return
        bound = _LOGVAR_BOUNDS.get(lv.dtype) or logvar_bound(lv.dtype)
        worst = float(to_host(abs(lv).max()))
        if bound < worst < math.inf:
            host = np.asarray(to_host(lv), dtype=np.float64)
            bad = host[np.isfinite(host) & (np.abs(host) > bound)]
            raise ValueError(f"{name}['dec.obs_logvar'] (an observation log-variance) must lie within "
                             f"+-{bound:.1f}, where the variance exp(obs_logvar) of dtype {lv.dtype} neither "
                             f"underflows to 0 nor overflows, got {bad[np.argmax(np.abs(bad))]:g}")

    def _observation(self, params, out, sigma2):
        d = self.data_dim
        sigma2 = self.check_sigma2(sigma2)
        if self.obs == "fixed":
            return out, math.log(self.sigma2 if sigma2 is None else sigma2)
        if self.obs == "decoder":
            return out[..., :d], out[..., d:]
        return out, params["dec.obs_logvar"][..., None, :]

    def log_prob(self, params, x, z, sigma2=None):
        """log p(x | z) per point, with the cache ``backward`` needs.

        Returns
        -------
        logp : (..., B), summed over the d coordinates, all constants included.
        cache : for ``backward``; ``cache.mean`` and ``cache.obs_logvar`` are the decoder mean
            (..., B, d) and the observation log-variance.
        """
        dec_out, layers = self.decoder.forward(_sub(params, "dec."), z)
        mean, obs_lv = self._observation(params, dec_out, sigma2)
        logp, dmean, dlv = gaussian_log_prob(x, mean, obs_lv)
        return logp.sum(axis=-1), _DecoderCache(layers, mean, obs_lv, dmean, dlv)

    def backward(self, params, cache, c):
        """Gradients of sum(c * logp) through ``log_prob``.

        Parameters
        ----------
        c : (..., B) cotangent on each log p(x_b | z_b), e.g. -1 / (S B) for the mean ELBO or
            -w_s / B for IWAE's normalised importance weights.

        Returns
        -------
        dz : (..., B, n_in), the cotangent reaching the decoder input.
        grads : the ``"dec.*"`` gradients (``"dec.obs_logvar"`` included).
        """
        xp = xp_of(cache.dmean)
        dmean = cache.dmean * c[..., None]
        grads = {}
        if self.obs == "decoder":
            ddec = xp.concatenate([dmean, xp.broadcast_to(cache.dlv * c[..., None], dmean.shape)], axis=-1)
        else:
            ddec = dmean
            if self.obs in ("scalar", "vector"):
                p = params["dec.obs_logvar"]
                grads["dec.obs_logvar"] = sum_to_shape(cache.dlv * c[..., None], p[..., None, :].shape).reshape(p.shape)
        dz, g_dec = self.decoder.backward(_sub(params, "dec."), cache.layers, ddec)
        grads.update(_prefixed("dec.", g_dec))
        return dz, grads

    @staticmethod
    def mean_variance(cache, loss_shape):
        """Mean observation variance over samples, points and coordinates, shaped like the loss (() or (R,))."""
        xp = xp_of(cache.mean)
        lv = cache.obs_logvar
        s2 = math.exp(lv) if isinstance(lv, float) else xp.exp(lv)
        s2 = xp.broadcast_to(xp.asarray(s2, dtype=xp.float64), cache.mean.shape)
        lead = s2.ndim - 2 - len(loss_shape)
        return mean(s2, tuple(range(lead)) + (-2, -1))


class GaussianVAE:
    """Gaussian VAE with a diagonal-Gaussian encoder (docs/math.md 1).

    -ELBO(x) = E_q[ -log N(x; f(z), s2) ] + beta * KL(q(z|x) || N(0, I)), z = mu + exp(lv/2) eps.

    Parameters
    ----------
    encoder : Layer mapping x (..., B, d) to (..., B, 2K): the first K outputs are mu, the
        last K are logvar (a log-variance).
    decoder : Layer mapping z (..., B, K) to the mean f(z) (..., B, d), or to (..., B, 2d) =
        (mean, logvar) when ``obs="decoder"``.
    latent_dim, data_dim : int, K and d.
    obs, sigma2 : observation-noise mode and (fixed or initial) variance; see ``GaussianDecoder``
        (``"fixed"`` F-VAE, ``"scalar"`` LS-VAE, ``"vector"``, ``"decoder"`` LV-VAE).
    beta : float >= 0, KL weight (beta-VAE); overridable per call (KL annealing).
    kl : ``"analytic"`` (default) uses the closed-form KL; ``"sample"`` uses its single-sample
        estimate log q(z|x) - log p(z) at the drawn z, the Monte Carlo ELBO that IWAE with S = 1
        reproduces exactly (docs/math.md 2.1).

    Attributes
    ----------
    gen : GaussianDecoder, the observation model p(x|z) (``decoder``, ``obs``, ``sigma2`` are its).
    """

    def __init__(self, encoder, decoder, latent_dim, data_dim, *, obs="fixed", sigma2=1.0, beta=1.0,
                 kl="analytic"):
        if not isinstance(encoder, Layer):
            raise TypeError(f"encoder must be a refvae Layer, got {type(encoder).__name__}")
        self.latent_dim = _checks.integer("latent_dim", latent_dim, min_value=1)
        self.data_dim = _checks.integer("data_dim", data_dim, min_value=1)
        self.beta = _checks.scalar("beta", beta, nonneg=True)
        self.kl = _checks.choice("kl", kl, ("analytic", "sample"))
        _check_widths("encoder", encoder, self.data_dim, 2 * self.latent_dim)
        self.gen = GaussianDecoder(decoder, self.latent_dim, self.data_dim, obs=obs, sigma2=sigma2)
        self.encoder, self.decoder, self.obs, self.sigma2 = encoder, decoder, self.gen.obs, self.gen.sigma2

    @classmethod
    def from_sizes(cls, data_dim, latent_dim, hidden=(64, 64), activation="tanh", *, obs="fixed",
                   sigma2=1.0, beta=1.0, kl="analytic", residual=False):
        """MLP encoder and decoder with the given hidden widths (``hidden=()``: affine maps)."""
        data_dim = _checks.integer("data_dim", data_dim, min_value=1)
        latent_dim = _checks.integer("latent_dim", latent_dim, min_value=1)
        hidden = tuple(_widths("hidden", hidden, "e.g. (64, 64), or () for affine maps"))
        dec_out = 2 * data_dim if obs == "decoder" else data_dim
        enc = mlp((data_dim, *hidden, 2 * latent_dim), activation, residual=residual)
        dec = mlp((latent_dim, *hidden[::-1], dec_out), activation, residual=residual)
        return cls(enc, dec, latent_dim, data_dim, obs=obs, sigma2=sigma2, beta=beta, kl=kl)

    @classmethod
    def linear(cls, data_dim, latent_dim, *, obs="scalar", sigma2=1.0, beta=1.0):
        """The linear VAE of docs/math.md 4.4: affine encoder and affine decoder."""
        return cls.from_sizes(data_dim, latent_dim, hidden=(), obs=obs, sigma2=sigma2, beta=beta)

    # -- parameters -----------------------------------------------------------------
    def init(self, rng, restarts=None):
        """Fresh parameters: networks from ``rng``, learned log-variance at log(sigma2)."""
        rng = make_rng(rng)
        return {**_prefixed("enc.", self.encoder.init(rng, restarts)), **self.gen.init(rng, restarts)}

    def noise_shape(self, params, batch_size, n_samples=None):
        """Shape of the standard-normal noise for a batch: (R?, B, K), or (S, R?, B, K).

        batch_size : int >= 1, B; n_samples : None (no sample axis) or int >= 1, S.
        """
        template = _template(self)
        _checks.params_like(params, template)
        batch_size = _checks.integer("batch_size", batch_size, min_value=1)
        n_samples = _checks.integer("n_samples", n_samples, min_value=1, allow_none=True)
        shape = _restart_shape(params, template) + (batch_size, self.latent_dim)
        return shape if n_samples is None else (n_samples,) + shape

    # -- pieces ---------------------------------------------------------------------
    def encode(self, params, x):
        """Encoder moments: mu, logvar of shape (R?, B, K) for x of shape (B, d) or (R, B, d)."""
        out, _ = self.encoder.forward(_sub(params, "enc."), x)
        K = self.latent_dim
        return out[..., :K], out[..., K:]

    def decode(self, params, z, sigma2=None):
        """Decoder mean (..., B, d) and observation log-variance at z (..., B, K).

        The log-variance is broadcastable to the mean: a float for ``obs="fixed"``, (R?, 1, 1) for
        ``"scalar"``, (R?, 1, d) for ``"vector"`` and (..., B, d) for ``"decoder"``.
        """
        return self.gen.decode(params, z, sigma2)

    def log_px_given_z(self, params, x, z, sigma2=None):
        """log p(x | z) summed over coordinates, shape (..., B), for z (..., B, K) and x (B, d) or (R, B, d)."""
        return self.gen.log_prob(params, x, z, sigma2)[0]

    # -- objective ------------------------------------------------------------------
    def value_and_grad(self, params, x, noise, *, beta=None, sigma2=None, with_terms=False):
        """Negative ELBO per data point and its gradient.

        Parameters
        ----------
        params : dict from ``init``.
        x : (B, d) or (R, B, d) data.
        noise : standard normal, shape (R?, B, K) or (S, R?, B, K) (``noise_shape``); S samples
            are averaged (a Monte Carlo ELBO with S samples per point).
        beta, sigma2 : per-call overrides (annealing, external variance schedules).
        with_terms : also return a dict of the terms (each shaped like ``loss``):
            ``recon`` (E_q[-log p(x|z)]), ``kl``, ``sigma2`` (mean observation variance), ``beta``.

        Returns
        -------
        loss : scalar, or (R,) with a restarts axis.
        grads : dict like ``params``.

        Raises
        ------
        ValueError, TypeError : naming the argument, before any work: ``params`` without the
            model's keys, shapes or float dtypes, or with ``dec.obs_logvar`` beyond
            ``logvar_bound``; ``x`` or ``noise`` of the wrong shape, or not finite real numbers;
            an invalid ``beta`` or ``sigma2``. Parameter values are not scanned (see the module
            docstring): a NaN parameter gives a NaN loss.
        """
        _checks.params_like(params, _template(self))
        self.gen.check_params(params)
        x = _checks.array("x", x, min_ndim=2, last_dim=self.data_dim)
        beta = self.beta if beta is None else _checks.scalar("beta", beta, nonneg=True)
        self.gen.check_sigma2(sigma2)
        noise = _checks.array("noise", noise)
        if noise.ndim < 2 or noise.shape[-1] != self.latent_dim:   # the full shape is checked against mu below
            raise ValueError(f"noise must have shape (S?, R?, B, {self.latent_dim}), got {tuple(noise.shape)}")
        return self.value_and_grad_unchecked(params, x, noise, beta=beta, sigma2=sigma2, with_terms=with_terms)

    def value_and_grad_unchecked(self, params, x, noise, *, beta=None, sigma2=None, with_terms=False):
        """``value_and_grad`` without its input checks, for a loop that made its inputs valid once.

        The same computation and the same numbers. The caller vouches that ``params`` holds the
        model's keys and shapes, ``x`` and ``noise`` are finite arrays of the documented shapes,
        and ``beta`` (float >= 0) and ``sigma2`` are valid: bad input here gives a NumPy error or
        a wrong number instead of a message naming the argument. Arguments and returns as
        ``value_and_grad``.
        """
        beta = self.beta if beta is None else float(beta)
        x, noise = _in_param_dtype(params, x, noise)
        xp = xp_of(x)
        enc_params = _sub(params, "enc.")
        enc_out, enc_cache = self.encoder.forward(enc_params, x)
        K = self.latent_dim
        mu, lv = enc_out[..., :K], enc_out[..., K:]
        if noise.shape != mu.shape and noise.shape[1:] != mu.shape:
            raise ValueError(f"noise must have shape {tuple(mu.shape)} or (S, *{tuple(mu.shape)}), "
                             f"got {tuple(noise.shape)}")
        z, std = reparameterize(mu, lv, noise)
        logp, dec = self.gen.log_prob(params, x, z, sigma2)       # (S?, R?, B)
        batch, point_shape = mu.shape[-2], mu.shape[:-1]          # point_shape: (R?, B)
        n_samples = logp.size // math.prod(point_shape)

        def per_point_mean(a):                                    # (S?, R?, B) -> () or (R,)
            return mean(mean(a.reshape((n_samples,) + point_shape), 0), -1)

        loss_recon = -per_point_mean(logp)
        # backward: d loss / d log p(x_b | z_sb) = -1 / (S B)
        dz, grads = self.gen.backward(params, dec, xp.full(logp.shape, -1.0 / (n_samples * batch), logp.dtype))
        if self.kl == "sample":
            kls = kl_sample(z, noise, lv)
            loss_kl = per_point_mean(kls)
            dmu, dlv = kl_sample_backward(xp.full(kls.shape, beta / (n_samples * batch), kls.dtype), dz, z, std,
                                          noise, mu.shape, lv.shape)
        else:
            kl, dmu_kl, dlv_kl = kl_std_normal(mu, lv)            # (R?, B)
            loss_kl = mean(kl, -1)
            dmu, dlv = reparameterize_backward(dz, std, noise, mu.shape, lv.shape)
            dmu = dmu + dmu_kl * (beta / batch)
            dlv = dlv + dlv_kl * (beta / batch)
        loss = loss_recon + beta * loss_kl
        g_enc = self.encoder.param_grads(enc_params, enc_cache, xp.concatenate([dmu, dlv], axis=-1))
        grads.update(_prefixed("enc.", g_enc))
        if not with_terms:
            return loss, grads
        terms = {"recon": loss_recon, "kl": loss_kl, "sigma2": self.gen.mean_variance(dec, loss.shape), "beta": beta}
        return loss, grads, terms


class Autoencoder:
    """Deterministic autoencoder (dai2020 Sec. 5, docs/math.md 1): z = enc(x), loss = mean_b sum_j (x_j - f_j(z))^2.

    The loss is the squared reconstruction error summed over the d coordinates and averaged over
    the batch (per data point, like every objective; no normalising constants: it is not a
    likelihood).

    Parameters
    ----------
    encoder : Layer, (..., B, d) -> (..., B, K); decoder : Layer, (..., B, K) -> (..., B, d).
    latent_dim, data_dim : int, K and d.

    ``value_and_grad(params, x, noise=None)`` ignores ``noise`` (there is none); it takes the
    argument so every objective has the same signature. Parameters are ``"enc.*"`` and ``"dec.*"``
    and may carry a restarts axis R like the VAE's.
    """

    def __init__(self, encoder, decoder, latent_dim, data_dim):
        for name, net in (("encoder", encoder), ("decoder", decoder)):
            if not isinstance(net, Layer):
                raise TypeError(f"{name} must be a refvae Layer, got {type(net).__name__}")
        self.latent_dim = _checks.integer("latent_dim", latent_dim, min_value=1)
        self.data_dim = _checks.integer("data_dim", data_dim, min_value=1)
        _check_widths("encoder", encoder, self.data_dim, self.latent_dim)
        _check_widths("decoder", decoder, self.latent_dim, self.data_dim)
        self.encoder, self.decoder = encoder, decoder

    @classmethod
    def from_sizes(cls, data_dim, latent_dim, hidden=(64, 64), activation="tanh", *, residual=False):
        """MLP encoder and decoder with the given hidden widths (``hidden=()``: the linear autoencoder)."""
        data_dim = _checks.integer("data_dim", data_dim, min_value=1)
        latent_dim = _checks.integer("latent_dim", latent_dim, min_value=1)
        hidden = tuple(_widths("hidden", hidden, "e.g. (64, 64), or () for affine maps"))
        return cls(mlp((data_dim, *hidden, latent_dim), activation, residual=residual),
                   mlp((latent_dim, *hidden[::-1], data_dim), activation, residual=residual),
                   latent_dim, data_dim)

    def init(self, rng, restarts=None):
        """Fresh parameters ``"enc.*"``, ``"dec.*"`` from ``rng`` (leading axis R with ``restarts``)."""
        rng = make_rng(rng)
        return {**_prefixed("enc.", self.encoder.init(rng, restarts)),
                **_prefixed("dec.", self.decoder.init(rng, restarts))}

    def noise_shape(self, params, batch_size, n_samples=None):
        """None: the autoencoder draws no noise (``fit`` then passes ``noise=None``)."""
        return None

    def encode(self, params, x):
        """The code z = enc(x), shape (R?, B, K) for x (B, d) or (R, B, d)."""
        _checks.params_like(params, _template(self))
        x = _checks.array("x", x, min_ndim=2, last_dim=self.data_dim)
        return self.encoder.forward(_sub(params, "enc."), x)[0]

    def decode(self, params, z):
        """The reconstruction f(z), shape (..., B, d) for z (..., B, K)."""
        _checks.params_like(params, _template(self))
        z = _checks.array("z", z, min_ndim=2, last_dim=self.latent_dim)
        return self.decoder.forward(_sub(params, "dec."), z)[0]

    def value_and_grad(self, params, x, noise=None, *, with_terms=False):
        """Mean squared reconstruction error per data point and its gradient.

        Parameters
        ----------
        params : dict from ``init``.
        x : (B, d) or (R, B, d) data.
        noise : ignored (None).
        with_terms : also return ``{"recon": loss}``.

        Returns
        -------
        loss : scalar, or (R,) with a restarts axis (each restart's gradient is that of its own loss).
        grads : dict like ``params``.
        """
        _checks.params_like(params, _template(self))
        x = _checks.array("x", x, min_ndim=2, last_dim=self.data_dim)
        return self.value_and_grad_unchecked(params, x, noise, with_terms=with_terms)

    def value_and_grad_unchecked(self, params, x, noise=None, *, with_terms=False):
        """``value_and_grad`` without its input checks (see ``GaussianVAE.value_and_grad_unchecked``)."""
        (x,) = _in_param_dtype(params, x)
        z, enc_cache = self.encoder.forward(_sub(params, "enc."), x)
        xhat, dec_cache = self.decoder.forward(_sub(params, "dec."), z)
        r = xhat - x
        loss = mean((r * r).sum(axis=-1), -1)
        dz, g_dec = self.decoder.backward(_sub(params, "dec."), dec_cache, r * (2.0 / x.shape[-2]))
        g_enc = self.encoder.param_grads(_sub(params, "enc."), enc_cache, dz)
        grads = {**_prefixed("enc.", g_enc), **_prefixed("dec.", g_dec)}
        return (loss, grads, {"recon": loss}) if with_terms else (loss, grads)

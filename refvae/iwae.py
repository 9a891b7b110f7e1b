"""The importance-weighted autoencoder bound (Burda et al. 2016; docs/math.md 2.1).

With S reparameterised samples z_s = mu + exp(lv / 2) * eps_s from q(z|x),

    log w_s = log p(x | z_s) + log p(z_s) - log q(z_s | x),
    L_S(x)  = logsumexp_s(log w_s) - log S   <=  log p(x),

and dL_S = sum_s wt_s d(log w_s) with wt = softmax_s(log w) held constant. Along the
reparameterised path log q(z_s|x) = log N(eps_s; 0, I) - sum_k lv_k / 2, whose total
derivative is 0 in mu and -1/2 in each lv. S = 1 is the Monte Carlo ELBO whose KL term is
*sampled* (log q(z) - log p(z) at the drawn z): ``GaussianVAE(..., kl="sample")`` exactly, value
and gradient, not the default closed-form KL of ``GaussianVAE``.

log p(z) - log q(z|x) is ``-distributions.kl_sample`` and log p(x|z) comes from the model's
``GaussianDecoder``, the same pieces every other objective uses.
"""
from __future__ import annotations

import math

import numpy as np

from . import _checks
from .backend import mean, xp_of
from .distributions import kl_sample, kl_sample_backward, logsumexp, reparameterize
from .layers import _sub
from .objectives import GaussianVAE, _in_param_dtype, _prefixed, _restart_shape, _template


class IWAE:
    """Importance-weighted bound L_S on a ``GaussianVAE``'s networks (docs/math.md 2.1).

    Parameters
    ----------
    vae : GaussianVAE supplying the encoder, decoder and observation-noise mode (any of
        ``"fixed"``, ``"scalar"``, ``"vector"``, ``"decoder"``); its parameters are used as is.
        Its ``beta`` must be 1 (the IWAE bound has no KL weight).
    n_samples : int >= 1, default S for ``noise_shape`` (the S actually used is read off the noise).

    The loss is -L_S(x) averaged over the batch (shape (R,) with a restarts axis). Terms:
    ``bound`` (mean L_S), ``sigma2`` (mean observation variance).

    Attributes
    ----------
    vae : the wrapped GaussianVAE; ``latent_dim``, ``data_dim`` : its K and d.

    ``value_and_grad`` and ``bound`` check their inputs as ``GaussianVAE.value_and_grad`` does
    (keys, shapes, dtypes, the range of ``dec.obs_logvar``), without scanning parameter values: a
    NaN parameter gives a NaN loss, which trainers report as a divergence (``refvae.objectives``).
    """

    def __init__(self, vae, n_samples=5):
        if not isinstance(vae, GaussianVAE):
            raise TypeError(f"vae must be a refvae GaussianVAE, got {type(vae).__name__}")
        if vae.beta != 1.0:
            raise ValueError(f"vae.beta must be 1 for the IWAE bound (it has no KL weight), got {vae.beta}")
        self.vae = vae
        self.n_samples = _checks.integer("n_samples", n_samples, min_value=1)

    # read through to the VAE (properties, so a checkpoint's description of the model is unchanged)
    @property
    def latent_dim(self):
        """K, the wrapped VAE's latent dimension."""
        return self.vae.latent_dim

    @property
    def data_dim(self):
        """d, the wrapped VAE's data dimension."""
        return self.vae.data_dim

    def init(self, rng, restarts=None):
        """Fresh parameters of the wrapped ``GaussianVAE``."""
        return self.vae.init(rng, restarts)

    def noise_shape(self, params, batch_size, n_samples=None):
        """Noise shape (S, R?, B, K); S defaults to ``self.n_samples``."""
        S = self.n_samples if n_samples is None else _checks.integer("n_samples", n_samples, min_value=1)
        return self.vae.noise_shape(params, batch_size, S)

    def _check(self, params, x, noise):
        _checks.params_like(params, _template(self.vae))
        self.vae.gen.check_params(params)
        x = _checks.array("x", x, min_ndim=2, last_dim=self.vae.data_dim)
        noise = _checks.array("noise", noise)
        lead = np.broadcast_shapes(tuple(x.shape[:-2]), _restart_shape(params, _template(self.vae)))
        want = lead + (x.shape[-2], self.vae.latent_dim)
        if noise.ndim != len(want) + 1 or tuple(noise.shape[1:]) != want or noise.shape[0] < 1:
            raise ValueError(f"noise must have shape (S, {', '.join(map(str, want))}) with S >= 1 "
                             f"(see noise_shape), got {tuple(noise.shape)}")
        return x, noise

    def _forward(self, params, x, noise, sigma2):
        vae = self.vae
        enc_out, enc_cache = vae.encoder.forward(_sub(params, "enc."), x)
        K = vae.latent_dim
        mu, lv = enc_out[..., :K], enc_out[..., K:]
        z, std = reparameterize(mu, lv, noise)                           # (S, R?, B, K)
        log_px, dec = vae.gen.log_prob(params, x, z, sigma2)
        log_w = log_px - kl_sample(z, noise, lv)                         # (S, R?, B)
        return log_w, (enc_cache, dec, mu, lv, z, std)

    def bound(self, params, x, noise, *, sigma2=None):
        """L_S(x) per data point: shape (R?, B), for x (B, d) or (R, B, d) and noise (S, R?, B, K)."""
        x, noise = self._check(params, x, noise)
        log_w = self._forward(params, *_in_param_dtype(params, x, noise), sigma2)[0]
        return logsumexp(log_w, 0) - math.log(noise.shape[0])

    def value_and_grad(self, params, x, noise, *, sigma2=None, with_terms=False):
        """-L_S per data point (batch mean) and its gradient.

        Parameters
        ----------
        params : dict from ``init``.
        x : (B, d) or (R, B, d) data.
        noise : standard normal (S, R?, B, K), S >= 1 samples per point.
        sigma2 : per-call fixed variance (``obs="fixed"`` only), e.g. a schedule.
        with_terms : also return {"bound": mean L_S, "sigma2": mean observation variance}.

        Returns
        -------
        loss : scalar, or (R,) with a restarts axis.
        grads : dict like ``params``.
        """
        x, noise = self._check(params, x, noise)
        return self.value_and_grad_unchecked(params, x, noise, sigma2=sigma2, with_terms=with_terms)

    def value_and_grad_unchecked(self, params, x, noise, *, sigma2=None, with_terms=False):
        """``value_and_grad`` without its input checks (see ``GaussianVAE.value_and_grad_unchecked``)."""
        vae = self.vae
        x, noise = _in_param_dtype(params, x, noise)
        xp = xp_of(x)
        log_w, (enc_cache, dec, mu, lv, z, std) = self._forward(params, x, noise, sigma2)
        S, batch = noise.shape[0], mu.shape[-2]
        lse = logsumexp(log_w, 0)
        bound = mean(lse - math.log(S), -1)
        loss = -bound

        # d loss / d log w_s = -wt_s / B, wt = softmax_s(log w) held constant
        c = -xp.exp(log_w - lse) / batch
        dz, grads = vae.gen.backward(params, dec, c)
        dmu, dlv = kl_sample_backward(-c, dz, z, std, noise, mu.shape, lv.shape)   # log w has -kl_sample
        g_enc = vae.encoder.param_grads(_sub(params, "enc."), enc_cache, xp.concatenate([dmu, dlv], axis=-1))
        grads.update(_prefixed("enc.", g_enc))
        if not with_terms:
            return loss, grads
        return loss, grads, {"bound": bound, "sigma2": vae.gen.mean_variance(dec, loss.shape)}

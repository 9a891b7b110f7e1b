"""Semi-supervised M2 VAE (Kingma et al. 2014; yacoby2021 Eq. 5 and Sec. 5.2; docs/math.md 2.2).

Generative model: y ~ p(y) (uniform unless given), z ~ N(0, I_K), x | y, z ~ N(f(z, y), s2),
the decoder reading concat(z, onehot y). Inference: q(y|x) = softmax(logits(x)) and
q(z|x,y) = N(mu, exp(lv)) from an encoder reading concat(x, onehot y). Per point,

    L(x, y) = E_q(z|x,y)[log p(x|y,z)] + log p(y) - KL(q(z|x,y) || p(z))     <= log p(x, y)
    U(x)    = sum_y q(y|x) L(x, y) + H(q(y|x))                               <= log p(x)
    J       = sum_unlabelled U + gamma * sum_labelled L + alpha * sum_labelled log q(y|x).

The loss is -J / B with B the number of points in the batch, labelled and unlabelled
together: the mean per data point, so full-batch training minimises -J / N_total and a
minibatch gives an unbiased estimate of it. J bounds log p(X) only for gamma = 1, alpha = 0.

The unlabelled posterior family (``unlabelled_posterior``). yacoby2021 Eq. 5 leaves open which
Gaussian family U uses, and the two readings behave differently:

- ``"conditional"`` (default; Kingma et al. 2014): U uses q(y|x) q(z|x, y), the same
  q(z|x, y) as the labelled bound. q(y|x) q(z|x, y) can put one Gaussian on each class's
  posterior, so it can represent a p(y, z | x) whose z-marginal is multimodal.
- ``"shared"``: U uses q(y|x) q(z|x), one Gaussian over z shared by every class, as
  yacoby2021 Sec. 5.2 argues ("using a MFG variational family for the unlabeled portion of the
  semi-supervised objective (U in Equation 5)" cannot fit the multimodal p(z|x) =
  sum_y p(y, z|x); Sec. 6 writes it q_phi(z|x)). U(x) = sum_y q(y|x) a_y + H(q(y|x)) with
  a_y = E_q(z|x)[log p(x|y,z)] + log p(y) - KL(q(z|x) || p(z)). The labelled bound L keeps
  q(z|x, y). q(z|x) is the same encoder fed concat(x, 0): the label block all zeros, an input
  no labelled point uses. It adds no parameters (both families have one parameter dict and
  can start from one initialisation), and q(z|x, y) differs from q(z|x) only by class y's
  row of the encoder's first weight matrix, so what the labelled points teach the encoder
  about x reaches q(z|x) too. Each class's term in U draws its own z ~ q(z|x) (the
  noise keeps its class axis): the same expectation as one shared draw.

With ``bound="iwae"`` (yacoby2021 Sec. 5.2) every L and U is replaced by its importance-weighted
version, enumerating y and importance-sampling z from q(z|x,y) for each y:

    L_S(x, y) = logsumexp_s [log p(x, y, z_s^y) - log q(z_s^y | x, y)] - log S,
    U_S(x)    = logsumexp_{y, s} [log p(x, y, z_s^y) - log q(z_s^y | x, y)] - log S.

U_S does not involve q(y|x), so in this mode the classifier learns from the alpha term only.
With ``unlabelled_posterior="shared"``, U_S's z_s^y are drawn from q(z|x) for every y; each
class's inner average is still an unbiased estimate of p(x, y), so U_S <= log p(x) holds.

Every point's bound is computed for every class (C encoder/decoder passes, the class as a
leading axis), labelled points included; the labels only choose the weights. That costs a
factor C for labelled points and keeps one forward and one backward path.

Noise: standard normal of shape (C, R?, B, K), one z per class and point (a class-first
leading axis), or (S, C, R?, B, K) with S samples (averaged for ``"elbo"``, importance-weighted
for ``"iwae"``). Training with ``refvae.train.fit`` goes through ``M2.fit`` / ``M2.packed``,
which carry each label as an extra last column of x (see ``pack``).
"""
from __future__ import annotations

import math

import numpy as np

from . import _checks, train
from .backend import make_rng, normal, to_host, xp_of
from .distributions import (kl_sample, kl_sample_backward, kl_std_normal, logsumexp, reparameterize,
                            reparameterize_backward)
from .layers import Layer, _sub, mlp
from .objectives import OBS_MODES, GaussianDecoder, _check_widths, _prefixed, _restart_shape, _template

BOUNDS = ("elbo", "iwae")
#: The Gaussian family of U's q over z: "conditional" q(z|x, y) or "shared" q(z|x) (module docstring).
UNLABELLED_POSTERIORS = ("conditional", "shared")


def _append_onehot(a, onehot):
    """concat(a, onehot) on the last axis, ``onehot`` broadcast to a.shape[:-1] + (C,)."""
    xp = xp_of(a)
    return xp.concatenate([a, xp.broadcast_to(onehot, a.shape[:-1] + (onehot.shape[-1],))], axis=-1)


class M2:
    """The M2 semi-supervised VAE objective (docs/math.md 2.2).

    Parameters
    ----------
    classifier : Layer, x (..., B, d) -> logits (..., B, C).
    encoder : Layer, concat(x, onehot y) (..., B, d + C) -> (mu, logvar) (..., B, 2K).
    decoder : Layer, concat(z, onehot y) (..., B, K + C) -> mean (..., B, d), or (..., B, 2d)
        = (mean, logvar) for ``obs="decoder"``.
    n_classes, latent_dim, data_dim : int, C >= 2, K and d.
    obs : observation-noise mode, as for ``GaussianVAE`` ("fixed", "scalar", "vector", "decoder").
    sigma2 : float > 0, the fixed variance or the initial learned one.
    alpha : float >= 0, weight of sum_labelled log q(y|x).
    gamma : float >= 0, weight of sum_labelled L(x, y).
    prior : None (uniform) or (C,) positive class probabilities summing to 1.
    bound : "elbo" (L, U of docs/math.md 2.2) or "iwae" (L_S, U_S).
    n_samples : None or int >= 1, the default S of ``noise_shape``.
    unlabelled_posterior : "conditional" (q(z|x, y) in U, Kingma et al.; the default) or
        "shared" (one q(z|x) in U for every class, yacoby2021 Sec. 5.2's reading); see the module
        docstring. The labelled bound uses q(z|x, y) either way; the parameters are the same.

    Parameter keys: ``"cls.*"`` (classifier), ``"enc.*"``, ``"dec.*"`` (``"dec.obs_logvar"`` for a
    learned scalar/vector variance, shapes as in ``GaussianVAE``).
    """

    def __init__(self, classifier, encoder, decoder, n_classes, latent_dim, data_dim, *, obs="fixed",
                 sigma2=1.0, alpha=1.0, gamma=1.0, prior=None, bound="elbo", n_samples=None,
                 unlabelled_posterior="conditional"):
        for name, net in (("classifier", classifier), ("encoder", encoder), ("decoder", decoder)):
            if not isinstance(net, Layer):
                raise TypeError(f"{name} must be a refvae Layer, got {type(net).__name__}")
        self.n_classes = _checks.integer("n_classes", n_classes, min_value=2)
        self.latent_dim = _checks.integer("latent_dim", latent_dim, min_value=1)
        self.data_dim = _checks.integer("data_dim", data_dim, min_value=1)
        self.obs = _checks.choice("obs", obs, OBS_MODES)
        self.sigma2 = _checks.scalar("sigma2", sigma2, positive=True)
        self.alpha = _checks.scalar("alpha", alpha, nonneg=True)
        self.gamma = _checks.scalar("gamma", gamma, nonneg=True)
        self.bound = _checks.choice("bound", bound, BOUNDS)
        self.n_samples = _checks.integer("n_samples", n_samples, min_value=1, allow_none=True)
        self.unlabelled_posterior = _checks.choice("unlabelled_posterior", unlabelled_posterior,
                                                   UNLABELLED_POSTERIORS)
        C, K, d = self.n_classes, self.latent_dim, self.data_dim
        if prior is None:
            self.prior = np.full(C, 1.0 / C)
        else:
            self.prior = np.asarray(to_host(_checks.array("prior", prior, shape=(C,), positive=True)))
            if abs(self.prior.sum() - 1.0) > 1e-10:
                raise ValueError(f"prior must sum to 1, got {self.prior.sum()!r}")
        _check_widths("classifier", classifier, d, C)
        _check_widths("encoder", encoder, d + C, 2 * K)
        # p(x | y, z): the one observation model, fed concat(z, onehot y)
        self.gen = GaussianDecoder(decoder, K + C, d, obs=self.obs, sigma2=self.sigma2)
        self.classifier, self.encoder, self.decoder = classifier, encoder, decoder

    @classmethod
    def from_sizes(cls, data_dim, latent_dim, n_classes, hidden=(64, 64), activation="tanh", **kwargs):
        """MLP classifier, encoder and decoder with the given hidden widths; ``kwargs`` as ``M2``."""
        hidden = tuple(hidden)
        d, K, C = data_dim, latent_dim, n_classes
        dec_out = 2 * d if kwargs.get("obs") == "decoder" else d
        return cls(mlp((d, *hidden, C), activation), mlp((d + C, *hidden, 2 * K), activation),
                   mlp((K + C, *hidden[::-1], dec_out), activation), C, K, d, **kwargs)

    # -- parameters -----------------------------------------------------------------
    def init(self, rng, restarts=None):
        """Fresh parameters: networks from ``rng``, learned log-variance at log(sigma2)."""
        rng = make_rng(rng)
        params = {**_prefixed("cls.", self.classifier.init(rng, restarts)),
                  **_prefixed("enc.", self.encoder.init(rng, restarts)),
                  **self.gen.init(rng, restarts)}
        return params

    def noise_shape(self, params, batch_size, n_samples=None):
        """(C, R?, B, K), or (S, C, R?, B, K) with S = ``n_samples`` or ``self.n_samples``.

        With neither given, ``"elbo"`` uses one sample (no S axis) and ``"iwae"`` S = 1.
        """
        batch_size = _checks.integer("batch_size", batch_size, min_value=1)
        S = _checks.integer("n_samples", n_samples, min_value=1, allow_none=True)
        S = self.n_samples if S is None else S
        shape = (self.n_classes,) + _restart_shape(params, _template(self)) + (batch_size, self.latent_dim)
        if S is None and self.bound == "iwae":
            S = 1
        return shape if S is None else (S,) + shape

    # -- validation -----------------------------------------------------------------
    def _check_x(self, x):
        return _checks.array("x", x, min_ndim=2, last_dim=self.data_dim)

    def _check_labels(self, labels, batch):
        labels = _checks.array("labels", labels, shape=(batch,), integer=True)
        if labels.size:
            lo, hi = int(to_host(labels.min())), int(to_host(labels.max()))
            if lo < -1 or hi >= self.n_classes:
                raise ValueError(f"labels must be class indices in 0..{self.n_classes - 1} or -1 for "
                                 f"unlabelled, got values in [{lo}, {hi}]")
        return labels

    def _check_noise(self, params, x, noise):
        noise = _checks.array("noise", noise)
        lead = np.broadcast_shapes(tuple(x.shape[:-2]), _restart_shape(params, _template(self)))
        want = (self.n_classes,) + lead + (x.shape[-2], self.latent_dim)
        ok = tuple(noise.shape[-len(want):]) == want and noise.ndim in (len(want), len(want) + 1)
        if self.bound == "iwae":
            ok = ok and noise.ndim == len(want) + 1
        if not ok or noise.size == 0:
            opt = "" if self.bound == "iwae" else "optional "
            raise ValueError(f"noise must have shape ({opt}S >= 1, {', '.join(map(str, want))}) "
                             f"(see noise_shape), got {tuple(noise.shape)}")
        return noise

    def _onehot(self, y, xp):
        """One-hot rows for class(es) ``y``: int -> (C,); (m,) array -> (m, C)."""
        return xp.eye(self.n_classes)[y]

    # -- pieces ---------------------------------------------------------------------
    def classify(self, params, x):
        """q(y|x): class probabilities (R?, B, C) for x (B, d) or (R, B, d)."""
        x = self._check_x(x)
        log_pi = self._log_q_y(params, x)[0]
        return xp_of(log_pi).exp(log_pi)

    def _log_q_y(self, params, x):
        logits, cache = self.classifier.forward(_sub(params, "cls."), x)
        return logits - logsumexp(logits, -1)[..., None], cache

    def encode(self, params, x, y):
        """Moments mu, logvar (R?, B, K) of q(z|x, y) for one class ``y`` (int), or, with
        ``y=None`` and ``unlabelled_posterior="shared"``, of the shared q(z|x) (label block 0)."""
        x = self._check_x(x)
        xp = xp_of(x)
        if y is None:
            if self.unlabelled_posterior != "shared":
                raise ValueError("y is required: with unlabelled_posterior='conditional' every q(z|x, y) "
                                 "is conditioned on a class (y=None means the shared q(z|x))")
            label = xp.zeros(self.n_classes)
        else:
            label = self._onehot(self._check_label_value(y), xp)
        out = self.encoder.forward(_sub(params, "enc."), _append_onehot(x, label))[0]
        return out[..., :self.latent_dim], out[..., self.latent_dim:]

    def decode(self, params, z, y, sigma2=None):
        """Mean of p(x|y,z) and its log-variance for one class ``y`` (int); z (..., B, K).

        Returns mean (..., B, d) and the observation log-variance (a float for ``obs="fixed"``,
        else an array broadcastable to the mean).
        """
        z = _checks.array("z", z, min_ndim=2, last_dim=self.latent_dim)
        y = self._check_label_value(y)
        return self.gen.decode(params, _append_onehot(z, self._onehot(y, xp_of(z))), sigma2)

    def _check_label_value(self, y):
        y = _checks.integer("y", y, min_value=0)
        if y >= self.n_classes:
            raise ValueError(f"y must be a class index in 0..{self.n_classes - 1}, got {y}")
        return y

    def sample(self, params, y, n, rng, *, sigma2=None):
        """Draw from p(x | y): z ~ N(0, I), x = f(z, y) + exp(obs_logvar / 2) * eps.

        Parameters
        ----------
        y : int class, or a 1-D integer array of m classes.
        n : int >= 1, samples per class.
        rng : int seed >= 0, SeedSequence or numpy.random.Generator (``refvae.backend.make_rng``).

        Returns
        -------
        mean : decoder means f(z, y), shape (R?, n, d) for an int ``y``, (m, R?, n, d) for an array.
        x : noisy samples of the same shape.
        """
        n = _checks.integer("n", n, min_value=1)
        scalar_y = np.ndim(y) == 0
        ys = np.atleast_1d(np.asarray(to_host(_checks.array("y", y, integer=True))))
        if ys.ndim != 1 or ys.size == 0:
            raise ValueError(f"y must be a class index or a non-empty 1-D array of them, got shape {ys.shape}")
        if ys.min() < 0 or ys.max() >= self.n_classes:
            raise ValueError(f"y must hold class indices in 0..{self.n_classes - 1}, got {ys.tolist()}")
        rng = make_rng(rng, "rng")
        R = _restart_shape(params, _template(self))
        z = normal(rng, (ys.size,) + R + (n, self.latent_dim))
        xp = xp_of(z)
        onehot = self._onehot(xp.asarray(ys), xp).reshape((ys.size,) + (1,) * (len(R) + 1) + (self.n_classes,))
        mean, obs_lv = self.gen.decode(params, _append_onehot(z, onehot), sigma2)
        std = math.exp(0.5 * obs_lv) if isinstance(obs_lv, float) else xp.exp(0.5 * obs_lv)
        x = mean + std * normal(rng, mean.shape)
        return (mean[0], x[0]) if scalar_y else (mean, x)

    # -- objective ------------------------------------------------------------------
    def _forward(self, params, x, noise, sigma2, shared=None):
        """Every class's bound for every point; returns (log_pi, a, U, cache).

        shared : None, or (B,) bool: the rows whose z comes from the shared q(z|x) (encoder
            label block 0) instead of q(z|x, y), for every class y.
        a : (C, R?, B), L(x, y) ("elbo") or L_S(x, y) ("iwae"), class-first; for a shared row,
            the same expression with z ~ q(z|x) (the a_y of the module docstring).
        U : (R?, B), U(x) or U_S(x).
        """
        xp = xp_of(x)
        C, K = self.n_classes, self.latent_dim
        log_pi, cls_cache = self._log_q_y(params, x)                              # (R?, B, C)
        eye = xp.eye(C)
        # x broadcast to (C, R?, B, d): the class axis must sit in front of the restarts axis
        lead = np.broadcast_shapes(tuple(x.shape[:-2]), _restart_shape(params, _template(self)))
        xc = xp.broadcast_to(x, (C,) + lead + tuple(x.shape[-2:]))
        label_in = eye.reshape((C,) + (1,) * (xc.ndim - 2) + (C,))                # (C, 1.., 1, C)
        if shared is not None:
            label_in = label_in * (1.0 - xp.asarray(shared, dtype=label_in.dtype))[:, None]   # (C, 1.., B, C)
        xa = _append_onehot(xc, label_in)
        enc_out, enc_cache = self.encoder.forward(_sub(params, "enc."), xa)       # (C, R?, B, 2K)
        mu, lv = enc_out[..., :K], enc_out[..., K:]
        class_axis = (C,) + (1,) * (mu.ndim - 2)                                   # broadcasts against (C, R?, B)
        z, std = reparameterize(mu, lv, noise)                                     # (S?, C, R?, B, K)
        za = _append_onehot(z, eye.reshape(class_axis + (C,)))
        log_px, dec = self.gen.log_prob(params, x, za, sigma2)                    # (S?, C, R?, B)
        log_py = xp.asarray(np.log(self.prior)).reshape(class_axis)
        has_s = noise.ndim == mu.ndim + 1
        cache = dict(cls_cache=cls_cache, enc_cache=enc_cache, dec=dec, mu=mu, lv=lv, z=z, std=std, noise=noise)
        if self.bound == "elbo":
            kl, dmu_kl, dlv_kl = kl_std_normal(mu, lv)                              # (C, R?, B)
            a = (log_px.mean(axis=0) if has_s else log_px) + log_py - kl
            pi = xp.exp(log_pi)
            U = (pi * xp.moveaxis(a, 0, -1)).sum(axis=-1) - (pi * log_pi).sum(axis=-1)
            cache.update(dmu_kl=dmu_kl, dlv_kl=dlv_kl, n_samples=log_px.shape[0] if has_s else 1, has_s=has_s)
        else:
            log_w = log_px + log_py - kl_sample(z, noise, lv)                      # (S, C, R?, B)
            lse_s = logsumexp(log_w, 0)                                            # (C, R?, B)
            lse = logsumexp(lse_s, 0)                                              # (R?, B)
            S = log_w.shape[0]
            a, U = lse_s - math.log(S), lse - math.log(S)
            cache.update(log_w=log_w, lse_s=lse_s, lse=lse)
        return log_pi, a, U, cache

    def bounds(self, params, x, noise, *, sigma2=None):
        """Per-point bounds, for evaluation.

        Parameters
        ----------
        x : (B, d) or (R, B, d); noise : see ``noise_shape``.

        Returns
        -------
        dict with ``"labelled"`` (R?, B, C): L(x_b, y) for every class y (L_S for ``"iwae"``),
        ``"unlabelled"`` (R?, B): U(x_b) (U_S), and ``"log_q_y"`` (R?, B, C): log q(y|x_b).
        With ``unlabelled_posterior="shared"`` U uses q(z|x) and L q(z|x, y) (two encoder
        passes, the same noise).
        """
        _checks.params_like(params, _template(self))
        x = self._check_x(x)
        noise = self._check_noise(params, x, noise)
        log_pi, a, U, _ = self._forward(params, x, noise, sigma2)
        if self.unlabelled_posterior == "shared":
            U = self._forward(params, x, noise, sigma2, shared=np.ones(x.shape[-2], dtype=bool))[2]
        return {"labelled": xp_of(a).moveaxis(a, 0, -1), "unlabelled": U, "log_q_y": log_pi}

    def value_and_grad(self, params, x, labels, noise, *, sigma2=None, with_terms=False):
        """-J / B (docs/math.md 2.2) and its gradient.

        Parameters
        ----------
        params : dict from ``init``.
        x : (B, d) or (R, B, d) data.
        labels : (B,) integers, a class in 0..C-1 or -1 for an unlabelled point.
        noise : standard normal, (C, R?, B, K) or (S, C, R?, B, K) (``noise_shape``).
        sigma2 : per-call fixed variance (``obs="fixed"`` only).
        with_terms : also return the three parts of the loss (each shaped like it, summing to
            it): ``unlabelled`` = -sum_unl U / B, ``labelled`` = -gamma sum_lab L / B,
            ``classifier`` = -alpha sum_lab log q(y|x) / B; and ``sigma2`` (mean variance).

        Returns
        -------
        loss : scalar, or (R,) with a restarts axis.
        grads : dict like ``params``.
        """
        _checks.params_like(params, _template(self))
        self.gen.check_params(params)
        x = self._check_x(x)
        batch = x.shape[-2]
        labels = self._check_labels(labels, batch)
        noise = self._check_noise(params, x, noise)
        xp = xp_of(x)
        C, K = self.n_classes, self.latent_dim
        # a labelled point's L uses q(z|x, y_b); an unlabelled one's U the family chosen
        shared = (labels < 0) if self.unlabelled_posterior == "shared" else None
        log_pi, a, U, c = self._forward(params, x, noise, sigma2, shared)
        Y = (labels[:, None] == xp.arange(C)).astype(xp.float64)                  # (B, C), zero rows if unlabelled
        lab, unl = Y.sum(axis=-1), (labels < 0).astype(xp.float64)                # (B,)
        a_last = xp.moveaxis(a, 0, -1)                                             # (R?, B, C)
        part_u = -(unl * U).sum(axis=-1) / batch
        part_l = -self.gamma * (Y * a_last).sum(axis=(-2, -1)) / batch
        part_c = -self.alpha * (Y * log_pi).sum(axis=(-2, -1)) / batch
        loss = part_u + part_l + part_c

        pi = xp.exp(log_pi)
        Yc = xp.moveaxis(xp.broadcast_to(Y, log_pi.shape), -1, 0)                 # (C, R?, B)
        grads = {}
        mu, lv, z, std, eps = c["mu"], c["lv"], c["z"], c["std"], c["noise"]
        if self.bound == "elbo":
            # d loss / d L(x_b, y): q(y|x_b) if unlabelled, gamma [y = y_b] if labelled
            da = -(unl * xp.moveaxis(pi, -1, 0) + self.gamma * Yc) / batch
            dpx = xp.broadcast_to(da / c["n_samples"], z.shape[:-1])
            dza, grads = self.gen.backward(params, c["dec"], dpx)
            dmu, dlv = reparameterize_backward(dza[..., :K], std, eps, mu.shape, lv.shape)
            dmu = dmu - da[..., None] * c["dmu_kl"]
            dlv = dlv - da[..., None] * c["dlv_kl"]
            # docs/math.md 2.2: d/dlogits of sum_y pi_y a_y + H(pi)
            abar = (pi * a_last).sum(axis=-1, keepdims=True)
            ent = log_pi - (pi * log_pi).sum(axis=-1, keepdims=True)
            dU_dlogits = pi * (a_last - abar) - pi * ent
        else:
            # d loss / d log w: joint softmax over (y, s) if unlabelled, softmax over s of class y_b if labelled
            dw = -(unl * xp.exp(c["log_w"] - c["lse"]) + self.gamma * Yc * xp.exp(c["log_w"] - c["lse_s"])) / batch
            dza, grads = self.gen.backward(params, c["dec"], dw)
            dmu, dlv = kl_sample_backward(-dw, dza[..., :K], z, std, eps, mu.shape, lv.shape)
            dU_dlogits = 0.0                                                       # U_S does not use q(y|x)
        _, g_enc = self.encoder.backward(_sub(params, "enc."), c["enc_cache"], xp.concatenate([dmu, dlv], axis=-1))
        dlogits = -(unl[:, None] * dU_dlogits + self.alpha * (Y - lab[:, None] * pi)) / batch
        _, g_cls = self.classifier.backward(_sub(params, "cls."), c["cls_cache"], dlogits)
        grads.update(_prefixed("cls.", g_cls))
        grads.update(_prefixed("enc.", g_enc))
        if not with_terms:
            return loss, grads
        terms = {"unlabelled": part_u, "labelled": part_l, "classifier": part_c,
                 "sigma2": self.gen.mean_variance(c["dec"], loss.shape)}
        return loss, grads, terms

    # -- training on partly labelled data ----------------------------------------------
    def pack(self, x, labels):
        """x (N, d) and labels (N,) (-1 = unlabelled) as one (N, d + 1) array for ``train.fit``.

        The labels ride in the last column (small integers, exact in float64), so minibatching
        keeps every label with its point.
        """
        x = _checks.array("x", x, ndim=2, last_dim=self.data_dim)
        labels = self._check_labels(labels, x.shape[0])
        xp = xp_of(x)
        return xp.concatenate([x, xp.asarray(labels, dtype=xp.float64)[:, None]], axis=1)

    def packed(self):
        """A ``train.fit``-compatible view of this objective on packed data (see ``pack``)."""
        return PackedM2(self)

    def fit(self, params, x, labels, **kwargs):
        """``refvae.train.fit`` on partly labelled data: x (N, d), labels (N,) with -1 = unlabelled.

        ``kwargs`` are those of ``train.fit`` (steps, seed, batch_size, optimizer, n_samples,
        ``callback(step, params, info)``, on_divergence, checkpoint, resume, ...), with the same
        behaviour: Ctrl-C raises ``TrainingInterrupted`` carrying the run after its last finished
        step, divergence ``TrainingDiverged`` carrying the last finite parameters, and a run saved
        with ``checkpoint=path`` resumes with ``M2.fit(None, x, labels, ..., seed=None, resume=path)``.
        Returns its ``FitResult``; the history holds the loss and the terms of ``value_and_grad``.
        """
        return train.fit(self.packed(), params, self.pack(x, labels), **kwargs)


class PackedM2:
    """An ``M2`` whose data rows are (x, label) packed by ``M2.pack``: the standard contract

    ``value_and_grad(params, xy, noise, *, sigma2=None, with_terms=False)`` with xy (B, d + 1),
    so ``refvae.train.fit`` trains it unchanged.
    """

    def __init__(self, model):
        if not isinstance(model, M2):
            raise TypeError(f"model must be an M2, got {type(model).__name__}")
        self.model = model

    def init(self, rng, restarts=None):
        rng = make_rng(rng)
        return self.model.init(rng, restarts)

    def noise_shape(self, params, batch_size, n_samples=None):
        return self.model.noise_shape(params, batch_size, n_samples)

    def unpack(self, xy):
        """Split packed rows (B, d + 1) into x (B, d) and integer labels (B,)."""
        xy = _checks.array("xy", xy, ndim=2, last_dim=self.model.data_dim + 1)
        xp = xp_of(xy)
        col = xy[:, -1]
        if not bool((col == xp.round(col)).all()):
            raise ValueError("xy's last column must hold integer labels (-1 = unlabelled); use M2.pack")
        return xy[:, :-1], col.astype(xp.int64)

    def value_and_grad(self, params, xy, noise, *, sigma2=None, with_terms=False):
        x, labels = self.unpack(xy)
        return self.model.value_and_grad(params, x, labels, noise, sigma2=sigma2, with_terms=with_terms)

"""LiBI: Likelihood Before Inference (yacoby2020 Sec. 2 and App. D; docs/math.md 2.4).

Repeat R times and keep the best repetition by held-out log-likelihood:

1. fit the decoder theta and an amortised code network h(x; varphi) by minimising

       -(1/N) sum_n log p_theta(x_n | h(x_n)) + exp(HZ(Z) / eps_HZ)
       + exp(||Cov(Z) - I||_F^2 / eps_Sigma) + exp(||mean(Z)||^2 / eps_mu),   Z = {h(x_n)}

   (``LiBIStep1``; HZ the Henze-Zirkler statistic of ``refvae.metrics.hz``, Cov and mean the
   1/N sample moments of the minibatch of codes);
2. fix theta and fit the inference network phi by minimising -ELBO over phi only
   (``GaussianVAE.value_and_grad`` trained by ``refvae.train.fit`` with ``only=("enc.",)``);
3. re-initialise h with the mean network of phi and go back to 1 (``reinit_code``).

Parameters. One flat dict holds all three networks, so theta carries over between steps:

- ``"dec.*"`` theta, the GaussianVAE's decoder (and ``"dec.obs_logvar"`` for a learned noise);
- ``"enc.*"`` phi, the GaussianVAE's inference network (2K outputs: mean, log-variance);
- ``"code.*"`` varphi, h. It has the *architecture of the encoder* (yacoby2020 App. E: "we used
  the same architecture as the inference model") and h(x) is its first K outputs (its mean
  head); the last K outputs are unused and get zero gradient. With identical shapes, step 3
  is a plain copy ``code.k <- enc.k``, and h starts from exactly phi's mean network.

Safe exponentials. exp(u) overflows float64 for u > 709 and yacoby2020's grid reaches
u = HZ / 0.001 ~ 1e3 for an ordinary sample. Each penalty is evaluated as

    pen(u) = exp(u)                           for u <= c,
    pen(u) = exp(c) (1 + u - c)               for u >  c,     c = ``max_exponent`` (default 100),

the C^1 linear continuation of exp beyond c: identical to exp(u) wherever exp(u) <= e^100
(~2.7e43), finite and monotone beyond, with the gradient pen'(u) = exp(min(u, c)) used in the
backward pass, so the returned gradient is exactly that of the returned value. (Above c the
objective is no longer the paper's, which is infinite there in float32 and astronomically
large in float64; its minimisers are still pushed towards small u.)

Invariances used by the gradient. The step-1 penalties on HZ(Z) and Cov(Z) do not change when
every code moves by one vector, so their exact gradient with respect to the code network's
output bias is 0; HZ is moreover affine invariant, so when h is a single affine map with d = K
the HZ penalty does not depend on h at all. Where the penalty gradients are ~1e46
(eps_HZ = 0.001, capped exponential), computing these zeros by summation leaves rounding noise
of ~1e30 (bias) and ~1e33 (weights) that would swamp the O(1) gradient of the other terms;
``LiBIStep1.value_and_grad`` uses the invariances instead, so those entries are exact.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _checks
from .backend import make_rng, sum_to_shape, to_host, xp_of
from .layers import Linear, Sequential, _sub
from .metrics.hz import hz_value_and_grad
from .metrics.likelihood import importance_log_likelihood
from .objectives import GaussianVAE, _prefixed, _restart_shape, _template
from .optim import Adam
from .train import TrainingDiverged, TrainingInterrupted, check_callback, fit

__all__ = ["LiBIStep1", "LiBIResult", "safe_exp", "init_libi", "reinit_code", "run_step1", "run_step2", "fit_libi",
           "YACOBY2020_GRID"]

#: yacoby2020's hyper-parameter grid (App. E): eps_HZ, eps_Sigma, eps_mu, R.
YACOBY2020_GRID = {"eps_hz": (0.001, 1.0, 10.0, 20.0), "eps_sigma": (0.2, 0.5), "eps_mu": (0.2, 0.5),
                "repetitions": (1, 6)}


def safe_exp(u, cap):
    """exp(u) up to ``cap``, continued linearly (C^1) above it; returns (value, d value / du).

    value = exp(min(u, cap)) * (1 + max(u - cap, 0)),  derivative = exp(min(u, cap)).
    """
    xp = xp_of(u)
    base = xp.exp(xp.minimum(u, cap))
    return base * (1.0 + xp.maximum(u - cap, 0.0)), base


class LiBIStep1:
    """LiBI step-1 objective (docs/math.md 2.4 step 1; yacoby2020 App. D Eq. 44), per data point.

    loss = -(1/B) sum_b log p_theta(x_b | h(x_b)) + pen(HZ(Z) / eps_hz)
           + pen(||Cov(Z) - I||_F^2 / eps_sigma) + pen(||mean(Z)||^2 / eps_mu),

    with Z = h(x_b) over the batch (B >= K + 2), 1/B moments, pen the safe exponential of the
    module docstring; all normalising constants of log p(x|z) included.

    Parameters
    ----------
    vae : GaussianVAE, whose decoder and observation-noise mode define p_theta(x | z) and whose
        encoder architecture is used for h (first K outputs).
    eps_hz, eps_sigma, eps_mu : floats > 0, the penalty temperatures (``YACOBY2020_GRID``).
    max_exponent : float > 0, the cap c of the safe exponential (default 100).

    The contract is that of every refvae objective: ``value_and_grad(params, x, noise=None)``
    is pure and deterministic (there is no noise: ``noise_shape`` is None), the loss is a
    scalar or (R,) with a restarts axis, and ``grads`` holds the keys ``"code.*"`` and
    ``"dec.*"``. ``params`` may also hold ``"enc.*"`` (the full LiBI dict): those keys are
    ignored and get no gradient, so train with ``only=("code.", "dec.")`` there.
    """

    def __init__(self, vae, *, eps_hz, eps_sigma, eps_mu, max_exponent=100.0):
        if not isinstance(vae, GaussianVAE):
            raise TypeError(f"vae must be a refvae GaussianVAE, got {type(vae).__name__}")
        self.vae = vae
        self.eps_hz = _checks.scalar("eps_hz", eps_hz, positive=True)
        self.eps_sigma = _checks.scalar("eps_sigma", eps_sigma, positive=True)
        self.eps_mu = _checks.scalar("eps_mu", eps_mu, positive=True)
        self.max_exponent = _checks.scalar("max_exponent", max_exponent, positive=True, high=700.0)
        self.latent_dim, self.data_dim = vae.latent_dim, vae.data_dim
        # HZ is affine invariant: when h is a single affine map of x with d = K (LinearJTEx's
        # linear encoder), HZ(h(x)) = HZ(x W + b) = HZ(x) for every invertible W, so the HZ
        # penalty is a constant of varphi with exact gradient 0 (in floating point, ~1e-14 of
        # the scaled HZ gradient: ~1e33 at eps_HZ = 0.001, measured on LinearJTEx)
        self.hz_constant = _square_affine(vae.encoder, vae.data_dim, vae.latent_dim)

    def init(self, rng, restarts=None):
        """Fresh step-1 parameters: ``"code.*"`` (encoder architecture) and the VAE's ``"dec.*"``."""
        rng = make_rng(rng)
        dec = {k: v for k, v in self.vae.init(rng, restarts).items() if k.startswith("dec.")}
        return {**_prefixed("code.", self.vae.encoder.init(rng, restarts)), **dec}

    def noise_shape(self, params, batch_size, n_samples=None):
        """None: the objective is deterministic."""
        return None

    def codes(self, params, x):
        """h(x): the first K outputs of the code network, shape (R?, B, K) for x (B, d) or (R, B, d)."""
        out, _ = self.vae.encoder.forward(_sub(params, "code."), x)
        return out[..., :self.latent_dim]

    def value_and_grad(self, params, x, noise=None, *, sigma2=None, with_terms=False):
        """Step-1 loss per data point and its gradient (see the class docstring).

        Parameters
        ----------
        params : dict with ``"code.*"`` and ``"dec.*"`` (``"enc.*"`` allowed and ignored).
        x : (B, d) or (R, B, d) data, B >= K + 2.
        noise : must be None (accepted for the common signature).
        sigma2 : per-call observation variance for ``obs="fixed"`` (as in GaussianVAE).
        with_terms : also return a dict of terms shaped like ``loss``: ``recon``
            (-mean log p(x | h(x))), ``hz``, ``cov_dev`` (||Cov - I||_F^2), ``mean_sq``
            (||mean||^2), and the penalties ``pen_hz``, ``pen_sigma``, ``pen_mu``.

        Returns
        -------
        loss : scalar, or (R,) with a restarts axis.
        grads : dict with the ``"code.*"`` and ``"dec.*"`` keys of ``params``.
        """
        vae, K = self.vae, self.latent_dim
        x = _checks.array("x", x, min_ndim=2, last_dim=self.data_dim)
        if noise is not None:
            raise ValueError("noise must be None: LiBI step 1 is deterministic (noise_shape is None)")
        if isinstance(params, dict) and not any(k.startswith("code.") for k in params):
            raise KeyError("params has no 'code.*' entries; build them with LiBIStep1.init or init_libi")
        _checks.params_like(params, _template(self))
        B = x.shape[-2]
        if B < K + 2:
            raise ValueError(f"x must hold a batch of at least K + 2 = {K + 2} points for the "
                             f"Henze-Zirkler statistic and the covariance, got {B}")
        xp = xp_of(x)
        code_out, code_cache = vae.encoder.forward(_sub(params, "code."), x)
        z = code_out[..., :K]                                          # (R?, B, K)

        # reconstruction: -mean_b log p(x_b | z_b), all constants included
        logp, dec_cache = vae.gen.log_prob(params, x, z, sigma2)    # (R?, B)
        recon = -logp.mean(axis=-1)

        # penalties on the codes (1/B moments)
        hz, dhz = hz_value_and_grad(z)
        zbar = z.mean(axis=-2, keepdims=True)
        C = z - zbar
        dev = C.swapaxes(-1, -2) @ C / B - xp.eye(K)                  # Cov(Z) - I, (R?, K, K)
        cov_dev = (dev * dev).sum(axis=(-2, -1))
        mean_sq = (zbar * zbar).sum(axis=(-2, -1))
        pen_hz, g_hz = safe_exp(hz / self.eps_hz, self.max_exponent)
        pen_sigma, g_sigma = safe_exp(cov_dev / self.eps_sigma, self.max_exponent)
        pen_mu, g_mu = safe_exp(mean_sq / self.eps_mu, self.max_exponent)
        loss = recon + pen_hz + pen_sigma + pen_mu

        # backward: the decoder through GaussianDecoder.backward, then dL/dz from the
        # reconstruction and the three penalties: d||Cov - I||^2/dz = (4/B) C (Cov - I),
        # d||zbar||^2/dz_b = 2 zbar / B, dHZ/dz from metrics.hz
        dz_rec, grads = vae.gen.backward(params, dec_cache, xp.full(logp.shape, -1.0 / B))
        dz_shifting = dz_rec + (g_mu * 2.0 / (B * self.eps_mu))[..., None, None] * zbar
        dz_invariant = (g_sigma * 4.0 / (B * self.eps_sigma))[..., None, None] * (C @ dev)
        if not self.hz_constant:
            dz_invariant = dz_invariant + (g_hz / self.eps_hz)[..., None, None] * dhz
        dz = dz_shifting + dz_invariant
        dcode = xp.concatenate([dz, xp.zeros_like(dz)], axis=-1)        # log-variance head unused
        _, g_code = vae.encoder.backward(_sub(params, "code."), code_cache, dcode)
        # HZ(Z) and Cov(Z) do not change when every code moves by one vector, and the code
        # network's output bias moves every code by itself: their exact gradient with respect to
        # that bias is 0. Summed over the batch in floating point, dz_invariant's columns leave
        # ~1e-15 of its entries (measured), i.e. ~1e30 at eps_HZ = 0.001 where the entries are
        # ~1e46 (capped exponential), which would swamp the O(1) exact value; so that bias gets
        # the gradient of the other terms only.
        bias = _output_bias_key(vae.encoder)
        if bias is not None:
            exact = dz_shifting.sum(axis=-2)
            g_code[bias] = sum_to_shape(xp.concatenate([exact, xp.zeros_like(exact)], axis=-1),
                                        g_code[bias].shape)
        grads.update(_prefixed("code.", g_code))
        if not with_terms:
            return loss, grads
        terms = {"recon": recon, "hz": hz, "cov_dev": cov_dev, "mean_sq": mean_sq,
                 "pen_hz": pen_hz, "pen_sigma": pen_sigma, "pen_mu": pen_mu}
        return loss, grads, terms


def _output_bias_key(layer):
    """The key of the bias added last by ``layer`` (a ``Linear`` or a ``Sequential`` ending in one), else None.

    Moving that bias by c moves every output row by c; the shift-invariant penalties of step 1
    have exactly zero gradient with respect to it (``LiBIStep1.value_and_grad``).
    """
    if isinstance(layer, Linear):
        return "b"
    if isinstance(layer, Sequential) and isinstance(layer.layers[-1], Linear):
        return f"{len(layer.layers) - 1}.b"
    return None


def _square_affine(layer, data_dim, latent_dim):
    """True when the code network (``layer``'s first K outputs) is one affine map R^d -> R^K with d = K."""
    if isinstance(layer, Sequential) and len(layer.layers) == 1:
        layer = layer.layers[0]
    return isinstance(layer, Linear) and data_dim == latent_dim


def init_libi(vae, rng, restarts=None):
    """Parameters for LiBI: the VAE's ``"enc.*"``/``"dec.*"`` and a fresh code network ``"code.*"``.

    Parameters
    ----------
    vae : GaussianVAE
    rng : int seed or numpy.random.Generator.
    restarts : int or None, a leading restarts axis R on every parameter.
    """
    if not isinstance(vae, GaussianVAE):
        raise TypeError(f"vae must be a refvae GaussianVAE, got {type(vae).__name__}")
    rng = make_rng(rng)
    params = vae.init(rng, restarts)
    params.update(_prefixed("code.", vae.encoder.init(rng, restarts)))
    return params


def reinit_code(params):
    """LiBI step 3: h <- phi's mean network, i.e. ``code.k`` = a copy of ``enc.k`` for every key.

    The code network has the encoder's architecture and h reads the first K outputs, so after
    the copy h(x) equals the encoder mean mu(x; phi) exactly. Returns a new dict.
    """
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
    enc = {k[4:]: v for k, v in params.items() if k.startswith("enc.")}
    code = {k[5:]: v for k, v in params.items() if k.startswith("code.")}
    if not enc:
        raise KeyError("params has no 'enc.*' entries to copy into the code network")
    if set(enc) != set(code) or any(enc[k].shape != code[k].shape for k in enc):
        raise ValueError("params' 'code.*' entries must match the 'enc.*' entries in keys and shapes "
                         "(build them with init_libi)")
    new = dict(params)
    for k, v in enc.items():
        new["code." + k] = v.copy()
    return new


def run_step1(step1, params, x, *, steps, seed, batch_size=None, optimizer=None, progress=False, callback=None,
              on_divergence=None):
    """LiBI step 1: train ``"code.*"`` and ``"dec.*"`` on ``step1`` (a LiBIStep1), ``"enc.*"`` untouched.

    A thin wrapper of ``refvae.train.fit(step1, params, x, only=("code.", "dec."))``; the
    optimiser defaults to Adam(1e-2); ``callback`` and ``on_divergence`` as ``fit``'s. Returns
    the ``FitResult``.
    """
    if not isinstance(step1, LiBIStep1):
        raise TypeError(f"step1 must be a LiBIStep1, got {type(step1).__name__}")
    optimizer = Adam(1e-2) if optimizer is None else optimizer
    return fit(step1, params, x, steps=steps, seed=seed, batch_size=batch_size, optimizer=optimizer,
               only=("code.", "dec."), progress=progress, callback=callback, on_divergence=on_divergence)


def run_step2(vae, params, x, *, steps, seed, batch_size=None, optimizer=None, progress=False, callback=None,
              on_divergence=None):
    """LiBI step 2: fit the inference network phi (``"enc.*"``) by -ELBO (beta = 1), theta fixed.

    ``refvae.train.fit(vae, params, x, only=("enc.",))`` with the KL weight held at 1 whatever
    ``vae.beta`` is (yacoby2020 Eq. 45-46: argmin_phi KL(q || p_theta(z|x)) = argmin_phi -ELBO).
    The ``"dec.*"`` and ``"code.*"`` arrays of the result are the very arrays passed in.
    ``callback`` and ``on_divergence`` as ``fit``'s. Returns the ``FitResult``.
    """
    if not isinstance(vae, GaussianVAE):
        raise TypeError(f"vae must be a refvae GaussianVAE, got {type(vae).__name__}")
    optimizer = Adam(1e-2) if optimizer is None else optimizer
    return fit(vae, params, x, steps=steps, seed=seed, batch_size=batch_size, optimizer=optimizer,
               only=("enc.",), schedules={"beta": lambda t: 1.0}, progress=progress, callback=callback,
               on_divergence=on_divergence)


@dataclass
class LiBIResult:
    """Outcome of ``fit_libi``.

    params : the best repetition's parameters (per restart with a restarts axis).
    best_log_likelihood : (R?,) its mean held-out importance-sampled log-likelihood per point.
    best_repetition : (R?,) int, the repetition it came from (0-based).
    log_likelihoods : (repetitions, R?) held-out log-likelihood after every repetition.
    histories : list, per repetition, of {"step1": history, "step2": history} (``fit`` histories).
    last_params : the parameters after the final repetition (to continue training).
    diverged : tuple of (repetition, "step1" | "step2", ``refvae.train.Divergence``), the restarts
        frozen by ``on_divergence="isolate"``; such a restart's log-likelihood for that repetition
        is NaN and the repetition is never its best.

    An interrupted or stopped run's result holds the finished repetitions (``best_repetition``
    -1 and NaN log-likelihoods when none finished) and ``last_params`` after the last finished step.
    """
    params: dict
    best_log_likelihood: np.ndarray
    best_repetition: np.ndarray
    log_likelihoods: np.ndarray
    histories: list
    last_params: dict
    diverged: tuple = ()


def fit_libi(vae, x, x_val, *, eps_hz, eps_sigma, eps_mu, repetitions, step1_steps, step2_steps, seed,
             restarts=None, params=None, optimizer=None, batch_size=None, n_is_samples=1000,
             inflation=2.0, max_exponent=100.0, progress=False, callback=None, on_divergence=None):
    """Train a GaussianVAE with LiBI (docs/math.md 2.4; yacoby2020 Sec. 2, App. D) and keep the best repetition.

    Each repetition runs step 1 (``LiBIStep1`` on ``"code.*"``, ``"dec.*"``), step 2 (-ELBO with
    beta = 1 on ``"enc.*"`` only, the decoder frozen), then scores the model by the mean
    importance-sampled log-likelihood of ``x_val`` (proposal: the encoder inflated by
    ``inflation``), and finally step 3 (``reinit_code``) before the next repetition. The best
    repetition by that score is kept, separately for every restart when there is a restarts
    axis (restarts are independent models trained as one array program).

    Parameters
    ----------
    vae : GaussianVAE (its ``beta`` is ignored: step 2 uses the ELBO, beta = 1).
    x : (N, d) training data; x_val : (N_val, d) held-out data for the selection.
    eps_hz, eps_sigma, eps_mu : floats > 0, step-1 penalty temperatures (``YACOBY2020_GRID``).
    repetitions : int >= 1, R of yacoby2020 (its grid: 1 or 6).
    step1_steps, step2_steps : int >= 0, optimiser steps of steps 1 and 2 in every repetition.
    seed : int or numpy.random.Generator; every random number (init, minibatches, ELBO noise,
        importance samples) is drawn from it in a fixed order.
    restarts : int or None, a leading restarts axis (ignored when ``params`` is given).
    params : optional starting parameters from ``init_libi``.
    optimizer : default Adam(1e-2) (yacoby2020 App. E: learning rate 0.01), used for both steps
        (a fresh optimiser state for every step of every repetition).
    batch_size : minibatch size of both steps (default: full batch, as the 1/N moments of
        step 1 intend; a minibatch needs >= K + 2 points).
    n_is_samples, inflation : importance sampling of the held-out log-likelihood.
    max_exponent : cap of the safe exponentials (``LiBIStep1``).
    progress : print ``fit`` progress lines.
    callback : callable(step, params, info) after every step of steps 1 and 2, ``step`` counted
        within that step's ``fit`` and ``info`` = ``fit``'s plus "repetition" and "phase" ("step1"
        or "step2"); returning True ends LiBI after that step (the repetition is not scored).
    on_divergence : "raise" or "isolate", as ``refvae.train.fit`` (see ``LiBIResult.diverged``).

    Returns
    -------
    LiBIResult

    Raises
    ------
    TrainingInterrupted on Ctrl-C and TrainingDiverged (policy "raise"), each with ``result`` a
    ``LiBIResult`` of the finished repetitions whose ``last_params`` are the parameters after the
    last finished (finite) step; the step's own ``FitResult`` is the ``__cause__``'s ``result``.
    """
    if not isinstance(vae, GaussianVAE):
        raise TypeError(f"vae must be a refvae GaussianVAE, got {type(vae).__name__}")
    x = _checks.array("x", x, ndim=2, last_dim=vae.data_dim)
    x_val = _checks.array("x_val", x_val, ndim=2, last_dim=vae.data_dim)
    step1 = LiBIStep1(vae, eps_hz=eps_hz, eps_sigma=eps_sigma, eps_mu=eps_mu, max_exponent=max_exponent)
    repetitions = _checks.integer("repetitions", repetitions, min_value=1)
    step1_steps = _checks.integer("step1_steps", step1_steps, min_value=0)
    step2_steps = _checks.integer("step2_steps", step2_steps, min_value=0)
    n_is_samples = _checks.integer("n_is_samples", n_is_samples, min_value=1)
    inflation = _checks.scalar("inflation", inflation, low=1.0)
    if batch_size is not None:
        batch_size = _checks.integer("batch_size", batch_size, min_value=vae.latent_dim + 2)
    if x_val.shape[0] < 1:
        raise ValueError("x_val must hold at least one point")
    callback = check_callback(callback)
    rng = make_rng(seed)
    if params is None:
        params = init_libi(vae, rng, restarts)
    else:
        _checks.params("params", params)
        _checks.params_like(params, {k: v.shape for k, v in init_libi(vae, np.random.default_rng(0)).items()})
    optimizer = Adam(1e-2) if optimizer is None else optimizer

    best = best_ll = best_rep = None
    lls, histories, diverged, stopped = [], [], [], []

    def watch(rep, phase):
        def cb(t, p, info):
            stop = bool(callback(t, p, {**info, "repetition": rep, "phase": phase}))
            stopped.extend([True] if stop else [])
            return stop
        return None if callback is None else cb

    def result(last):
        if best is None:                                   # no repetition finished
            shape = _restart_shape(last, _template(vae))
            return LiBIResult(dict(last), np.full(shape, np.nan), np.full(shape, -1), np.empty((0,) + shape),
                              histories, last, tuple(diverged))
        return LiBIResult(best, np.asarray(to_host(best_ll)), np.asarray(to_host(best_rep)),
                          np.stack(lls), histories, last, tuple(diverged))

    for rep in range(repetitions):
        done = {}
        try:
            if rep > 0:
                params = reinit_code(params)                                       # step 3
            r1 = run_step1(step1, params, x, steps=step1_steps, seed=rng, batch_size=batch_size,
                           optimizer=optimizer, progress=progress, callback=watch(rep, "step1"),
                           on_divergence=on_divergence)
            done["step1"] = r1.history
            diverged.extend((rep, "step1", d) for d in r1.diverged)
            if not stopped:
                r2 = run_step2(vae, r1.params, x, steps=step2_steps, seed=rng, batch_size=batch_size,
                               optimizer=optimizer, progress=progress, callback=watch(rep, "step2"),
                               on_divergence=on_divergence)
                done["step2"] = r2.history
                diverged.extend((rep, "step2", d) for d in r2.diverged)
            params = r2.params if "step2" in done else r1.params
            histories.append(done)
            if stopped:
                break
            ll = importance_log_likelihood(vae, params, x_val, seed=rng, n_samples=n_is_samples,
                                           inflation=inflation).mean(axis=-1)    # (R?,)
        except (TrainingInterrupted, TrainingDiverged) as exc:       # from a step's fit: keep its work too
            if exc.result is not None:
                params = exc.result.params
                histories.append({**done, "step1" if "step1" not in done else "step2": exc.result.history})
            if isinstance(exc, TrainingInterrupted):
                raise TrainingInterrupted(result(params), "LiBI training") from exc
            raise TrainingDiverged(exc.step, exc.quantity, restart=exc.restart, result=result(params)) from exc
        except KeyboardInterrupt:                                   # during the held-out log-likelihood
            raise TrainingInterrupted(result(params), "LiBI training") from None
        frozen = [d.restart for r, _, d in diverged if r == rep]
        if frozen:                                   # a restart that diverged in this repetition is not scored
            ll = xp_of(ll).asarray(ll, dtype=float).copy()
            ll[frozen] = np.nan
        lls.append(np.asarray(to_host(ll)))
        score = xp_of(ll).where(xp_of(ll).isnan(ll), -np.inf, ll)
        if best is None:
            best, best_ll, best_rep = dict(params), score, xp_of(ll).zeros(ll.shape, dtype=int)
            continue
        better = score > best_ll                                               # ties keep the earlier
        best = {k: _select(better, params[k], best[k]) for k in params}
        best_ll = xp_of(ll).where(better, score, best_ll)
        best_rep = xp_of(ll).where(better, rep, best_rep)
    return result(params)


def _select(better, new, old):
    """Per-restart choice between two parameter arrays (``better`` is (R,) or a scalar)."""
    xp = xp_of(new)
    if better.ndim == 0:
        return new if bool(better) else old
    return xp.where(better.reshape(better.shape + (1,) * (new.ndim - 1)), new, old)

"""Test log-likelihood of a Gaussian-latent model: importance sampling and exact values (docs/math.md 3).

Importance sampling as yacoby2020 App. E, Eq. 48.

For each data point x,

    log p(x) ~ logsumexp_s [ log p(x | z_s) + log p(z_s) - log r(z_s | x) ] - log S,
    z_s ~ r(z | x) = (1 - a) N(mu(x), inflation * exp(logvar(x))) + a N(0, I),

where (mu, logvar) are the model's encoder moments (or any proposal moments given), ``inflation``
(yacoby2020: 2) widens the proposal so that its tails cover the posterior's, and a =
``defensive`` (default 0, yacoby2020's estimator) mixes in the prior (Hesterberg's defensive
importance sampling). The estimate is a log of an unbiased estimate of p(x), so it is biased
low by about Var[w] / (2 S E[w]^2) (w the importance weights); the delta-method standard error
returned alongside is sd(w) / (sqrt(S) mean(w)).

When the importance-sampled value is unreliable
-------------------------------------------------
Both the estimate and its standard error come from the same weights, so a proposal that misses
posterior mass gives a value that is too low *and* a standard error that looks small: the
missing mass is never sampled, and nothing in the samples says so. This happens

- when the posterior is multimodal and the encoder covers one mode. Measured on Circle VAEs
  trained briefly (yacoby2021's data set, K = 1; ``refvae.experiments.jtex.is_coverage_experiment``,
  three networks and budgets): 2-14% of the test points are off by more than 3 reported standard
  errors, by up to 12-100 nats (e.g. -52.6 +- 0.9 where quadrature gives -1.2), at the points
  where the learned decoder folds the line and the posterior has a second mode; a prior-only
  proposal and quadrature agree there;
- when the posterior is correlated and the encoder is mean-field. A KL-optimal mean-field q of a
  Gaussian posterior has its precision's diagonal, so with inflation c the weights have finite
  variance only while every partial correlation r satisfies |r| < 1 - 1/(2c) (K = 2; c = 2:
  |r| < 0.75). The LinearJTEx ground truth's posterior has correlation -0.81: the estimator
  with the truth's own best encoder has infinite-variance weights there (measured: mean error
  only -0.003 nats, but 3% of the points off by more than 3 reported standard errors);
- for very narrow posteriors that the encoder places slightly off (noise variance 1e-5-1e-6 in
  yacoby2020's Gaussian and Mobius sets): a bias of a few posterior standard deviations in the
  encoder mean costs orders of magnitude in the weights.

Use ``exact_log_likelihood`` wherever it applies (an affine decoder with z-independent noise:
closed form; K <= 2: quadrature with its own accuracy check). Otherwise ``defensive`` > 0
bounds every weight by p(x | z) / a, so the variance is finite whatever the encoder does; it
finds a missed mode when prior samples land in it, i.e. when the mode's prior mass is not much
smaller than 1 / (a S) (true for K = 1 posteriors of width ~0.05, rarely for K = 2 posteriors of
width ~0.01). Disagreement between a = 0 and a > 0 by more than a few standard errors flags an
unreliable plain estimate.

Memory. yacoby2020 uses S = 5000; on 10,000 points the (S, N, d) array of log-densities alone
would hold 1e8 d numbers. The points are processed in chunks of ``point_chunk`` and, for
each chunk, the samples in chunks of ``sample_chunk`` with a running (streaming) logsumexp,
so that no array of shape (sample_chunk, R, point_chunk, width) exceeds ``max_elements``
numbers (``width`` = the widest feature axis: data, latent or decoder layer width). The
decoder's forward pass keeps one such array per layer, so peak memory is about
(number of decoder layers + a few) x max_elements x 8 bytes.

Randomness. Point i draws its noise from its own stream, child i of
``numpy.random.SeedSequence(seed)``, in sample order: K standard normals per sample and
restart (K + 1 with ``defensive`` > 0: the last one picks the mixture component, prior when
Phi(eps) < a). The estimate of a point therefore does not depend on the chunk sizes (chunked
and unchunked runs agree to rounding), nor on which other points are evaluated in the same call.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

import analytic.linear_gaussian as lg

from .. import _checks
from ..backend import make_rng, normal, to_host, xp_of
from ..distributions import gaussian_log_prob, reparameterize, std_normal_log_prob
from ..layers import CholeskyLinear, Identity, Linear, Sequential, Shift
from . import quadrature

__all__ = ["DEFAULT_MAX_ELEMENTS", "model_width", "plan_chunks", "importance_log_likelihood",
           "exact_log_likelihood", "has_exact_log_likelihood", "mean_and_stderr", "objective_estimate"]

#: Default bound on the numbers held by one (samples x restarts x points x width) temporary
#: (2**22 float64 = 32 MiB).
DEFAULT_MAX_ELEMENTS = 2 ** 22


def _layer_widths(layer):
    """Output widths of a layer and of every layer nested in it (Sequential, ResidualBlock)."""
    widths = [getattr(layer, "n_out", None)]
    for child in getattr(layer, "layers", ()):
        widths += _layer_widths(child)
    body = getattr(layer, "body", None)
    if body is not None:
        widths += _layer_widths(body)
    return [w for w in widths if isinstance(w, int)]


def model_width(model):
    """Widest feature axis of the arrays the estimator creates per (sample, restart, point).

    The maximum of the data dimension, the latent dimension and every decoder layer's output
    width (found by walking ``model.decoder``; 2 d for a decoder that outputs variances).
    """
    widths = [model.data_dim, model.latent_dim] + _layer_widths(getattr(model, "decoder", None))
    return max(int(w) for w in widths)


def plan_chunks(n_points, n_samples, width, *, restarts=1, max_elements=DEFAULT_MAX_ELEMENTS):
    """Chunk sizes (point_chunk, sample_chunk) keeping every temporary below ``max_elements``.

    All S samples of a chunk of points are taken at once when a single point's samples fit
    (sample_chunk = S, point_chunk = max_elements // (S R width), at most N); otherwise one
    point at a time with sample_chunk = max_elements // (R width). In both cases
    sample_chunk * restarts * point_chunk * width <= max_elements.

    Parameters
    ----------
    n_points, n_samples, width : int >= 1, N, S and the widest feature axis.
    restarts : int >= 1, size of the restarts axis (1 without one).
    max_elements : int >= restarts * width.

    Returns
    -------
    point_chunk, sample_chunk : int
    """
    n_points = _checks.integer("n_points", n_points, min_value=1)
    n_samples = _checks.integer("n_samples", n_samples, min_value=1)
    width = _checks.integer("width", width, min_value=1)
    restarts = _checks.integer("restarts", restarts, min_value=1)
    max_elements = _checks.integer("max_elements", max_elements, min_value=1)
    per_sample_point = restarts * width
    if max_elements < per_sample_point:
        raise ValueError(f"max_elements must be >= restarts * width = {per_sample_point} "
                         f"(one sample of one point), got {max_elements}")
    points = max_elements // (n_samples * per_sample_point)
    if points >= 1:
        return min(points, n_points), n_samples
    return 1, min(n_samples, max_elements // per_sample_point)


def _streams(seed, n_points):
    """One independent numpy Generator per data point (child i of the seed's SeedSequence)."""
    if isinstance(seed, np.random.Generator):
        seq = np.random.SeedSequence(int(seed.integers(2 ** 63)))
    elif isinstance(seed, np.random.SeedSequence):
        seq = seed
    elif isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)):
        if seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed}")
        seq = np.random.SeedSequence(int(seed))
    else:
        raise TypeError(f"seed must be an int, SeedSequence or numpy.random.Generator, got {type(seed).__name__}")
    return seq.spawn(n_points)


def importance_log_likelihood(model, params, x, *, seed, n_samples=5000, inflation=2.0, defensive=0.0,
                              proposal=None, max_elements=DEFAULT_MAX_ELEMENTS, point_chunk=None, sample_chunk=None,
                              return_stderr=False):
    """Importance-sampled log p(x_n) per data point (docs/math.md 3; yacoby2020 App. E Eq. 48).

    Read "When the importance-sampled value is unreliable" in the module docstring before
    trusting a value: the estimate is biased low, and its standard error does not show it, when
    the proposal misses posterior mass.

    Parameters
    ----------
    model : a GaussianVAE-like model: ``encode(params, x) -> (mu, logvar)`` of shape
        (R?, B, K) (not needed with ``proposal``), ``log_px_given_z(params, x, z) -> (..., R?, B)``
        for z (..., R?, B, K), ``latent_dim``, ``data_dim`` (and ``decoder``, used only to size
        the chunks).
    params : dict of the model's parameters, optionally with a leading restarts axis R.
    x : array (N, d), the points to evaluate.
    seed : int, SeedSequence or numpy.random.Generator (see the module docstring).
    n_samples : int >= 1, S, importance samples per point (yacoby2020: 5000).
    inflation : float >= 1, factor multiplying the proposal variance (yacoby2020: 2).
    defensive : float in [0, 1), weight a of the prior N(0, I) in the proposal mixture (0:
        yacoby2020's estimator).
    proposal : optional pair (mu, logvar) of arrays (N, K) or (R, N, K) used instead of the
        encoder's moments (e.g. a Laplace approximation of the exact posterior); its restarts
        axis must be that of ``params`` (broadcast a shared proposal to (R, N, K)).
    max_elements : int, bound on the numbers in any one (samples, R, points, width) temporary.
    point_chunk, sample_chunk : int, optional
        Override the chunk sizes that ``plan_chunks`` picks from ``max_elements`` (both must
        then be given; the bound is then the caller's responsibility).
    return_stderr : also return the delta-method standard error of each log estimate.

    Returns
    -------
    log_px : array (N,), or (R, N) with a restarts axis, on the arrays' backend.
    stderr : array like ``log_px`` (only with ``return_stderr``):
        sqrt(Var_s[w] / S) / mean_s(w), the standard error of log p_hat(x) to first order.
    """
    from ..iwae import IWAE                      # an IWAE is scored by the GaussianVAE whose networks it uses
    model = model.vae if isinstance(model, IWAE) else model
    x = _checks.array("x", x, ndim=2)
    needed = (("encode",) if proposal is None else ()) + ("log_px_given_z", "latent_dim", "data_dim")
    for name in needed:
        if not hasattr(model, name):
            raise TypeError(f"model must be GaussianVAE-like ({', '.join(needed)}); it has no {name!r}")
    if x.shape[1] != model.data_dim:
        raise ValueError(f"x must have shape (N, {model.data_dim}), got {tuple(x.shape)}")
    if x.shape[0] < 1:
        raise ValueError("x must hold at least one point")
    # an evaluation, not a training step: scanning the values once is cheap beside S samples per
    # point, and a NaN parameter would otherwise come back as a NaN log-likelihood with no name
    # (an empty dict is allowed: a model whose log_px_given_z needs no parameters, scored with a proposal)
    if not isinstance(params, dict) or params:
        params = _checks.params("params", params)
    n_samples = _checks.integer("n_samples", n_samples, min_value=1)
    inflation = _checks.scalar("inflation", inflation, low=1.0)
    defensive = _checks.scalar("defensive", defensive, low=0.0)
    if defensive >= 1.0:
        raise ValueError(f"defensive must be in [0, 1) (the prior's weight in the proposal), got {defensive}")
    if proposal is not None:
        proposal = _proposal_arg(proposal, x.shape[0], model.latent_dim)
    max_elements = _checks.integer("max_elements", max_elements, min_value=1)
    if (point_chunk is None) != (sample_chunk is None):
        raise ValueError("point_chunk and sample_chunk must be given together (or neither)")
    if point_chunk is not None:
        point_chunk = _checks.integer("point_chunk", point_chunk, min_value=1)
        sample_chunk = _checks.integer("sample_chunk", sample_chunk, min_value=1)
    streams = _streams(seed, x.shape[0])

    xp = xp_of(x, *params.values())
    x = xp.asarray(x)
    N, K = x.shape[0], model.latent_dim
    mu = (model.encode(params, x[:1])[0] if proposal is None else proposal[0])
    lead = tuple(mu.shape[:-2])                          # () or (R,)
    R = int(np.prod(lead)) if lead else 1
    if point_chunk is None and sample_chunk is None:
        point_chunk, sample_chunk = plan_chunks(N, n_samples, model_width(model), restarts=R,
                                                max_elements=max_elements)
    log_infl = math.log(inflation)
    width = K + 1 if defensive > 0 else K                # normals per sample and restart
    out = xp.empty(lead + (N,))
    se = xp.empty(lead + (N,)) if return_stderr else None

    for start in range(0, N, point_chunk):
        stop = min(start + point_chunk, N)
        xb = x[start:stop]
        b = stop - start
        if proposal is None:
            mu, logvar = model.encode(params, xb)        # (R?, b, K)
        else:
            mu, logvar = (xp.asarray(a[..., start:stop, :]) for a in proposal)
        lv_r = logvar + log_infl                         # proposal log-variance
        gens = [np.random.Generator(np.random.PCG64(s)) for s in streams[start:stop]]
        m = s1 = s2 = None
        for s0 in range(0, n_samples, sample_chunk):
            sc = min(sample_chunk, n_samples - s0)
            host = np.empty((sc,) + lead + (b, width))
            for j, g in enumerate(gens):                  # point j's next sc samples, in order
                host[..., j, :] = g.standard_normal((sc,) + lead + (width,))
            eps = xp.asarray(host[..., :K])
            z, _ = reparameterize(mu, lv_r, eps)                           # (sc, R?, b, K)
            log_r = gaussian_log_prob(z, mu, lv_r)[0].sum(axis=-1)         # (sc, R?, b)
            log_prior = std_normal_log_prob(z)[0]
            if defensive > 0:                            # mixture: prior when Phi(eps_K) < a
                from_prior = xp.asarray(ndtr(host[..., K]) < defensive)
                z = xp.where(from_prior[..., None], eps, z)
                log_prior = std_normal_log_prob(z)[0]
                log_r = xp.logaddexp(math.log1p(-defensive) + gaussian_log_prob(z, mu, lv_r)[0].sum(axis=-1),
                                     math.log(defensive) + log_prior)
            log_w = model.log_px_given_z(params, xb, z) + log_prior - log_r
            # streaming logsumexp of log_w (and of 2 log_w for the standard error)
            cm = log_w.max(axis=0)
            new_m = cm if m is None else xp.maximum(m, cm)
            w = xp.exp(log_w - new_m)
            if m is None:
                s1, s2 = w.sum(axis=0), (w * w).sum(axis=0)
            else:
                shrink = xp.exp(m - new_m)
                s1 = s1 * shrink + w.sum(axis=0)
                s2 = s2 * shrink * shrink + (w * w).sum(axis=0)
            m = new_m
        out[..., start:stop] = m + xp.log(s1) - math.log(n_samples)
        if return_stderr:
            mean = s1 / n_samples
            var = xp.maximum(s2 - s1 * mean, 0.0) / max(n_samples - 1, 1)
            se[..., start:stop] = xp.sqrt(var / n_samples) / mean
    return (out, se) if return_stderr else out


def _proposal_arg(proposal, n, K):
    """Validated proposal moments (mu, logvar), each (N, K) or (R, N, K), same shape."""
    if not isinstance(proposal, (tuple, list)) or len(proposal) != 2:
        raise TypeError(f"proposal must be a pair (mu, logvar) of arrays, got {type(proposal).__name__}")
    mu = _checks.array("proposal[0] (mu)", proposal[0], min_ndim=2, last_dim=K)
    logvar = _checks.array("proposal[1] (logvar)", proposal[1], min_ndim=2, last_dim=K)
    if mu.shape != logvar.shape or mu.ndim > 3 or mu.shape[-2] != n:
        raise ValueError(f"proposal's mu and logvar must both have shape ({n}, {K}) or (R, {n}, {K}), got "
                         f"{tuple(mu.shape)} and {tuple(logvar.shape)}")
    return mu, logvar


# ============================================================================ exact values

_AFFINE = (Linear, CholeskyLinear, Shift, Identity)


def _is_affine(layer):
    """True when ``layer`` maps z affinely (Linear, CholeskyLinear, Shift, Identity, or a Sequential of them)."""
    if isinstance(layer, Sequential):
        return all(_is_affine(child) for child in layer.layers)
    return isinstance(layer, _AFFINE)


def has_exact_log_likelihood(model):
    """Which exact method ``exact_log_likelihood`` would use for ``model``: "closed form", "quadrature" or None."""
    decoder = getattr(model, "decoder", None)
    if decoder is not None and getattr(model, "obs", None) != "decoder" and _is_affine(decoder):
        return "closed form"
    if getattr(model, "latent_dim", None) in (1, 2) and hasattr(model, "decode"):
        return "quadrature"
    return None


def exact_log_likelihood(model, params, x, *, grid_size=None, bound=None, breakpoints=None):
    """log p_theta(x_n) of a Gaussian-latent model without Monte Carlo error (docs/math.md 3, 4.1).

    - Closed form when the decoder mean is affine in z (``Linear``, ``CholeskyLinear``, ``Shift``,
      ``Identity`` or a ``Sequential`` of them) and the observation variance does not depend on z
      (``obs`` other than ``"decoder"``): p(x) = N(b, W W^T + diag s2), with W, b read off the
      decoder at z = 0 and z = e_k (``analytic.linear_gaussian.log_likelihood``). This is the
      learned model's own marginal, whatever its encoder.
    - Otherwise, for K = 1 or 2, quadrature (``refvae.metrics.quadrature.log_likelihood``, exact to
      ~1e-9 where its self-check passes; a ``QuadratureWarning`` says when the nodes do not resolve
      some posterior: for K = 2 the default grid resolves posterior widths >= 0.07).

    Parameters
    ----------
    model : GaussianVAE-like (``decode``, ``latent_dim``, ``data_dim``, ``decoder``, ``obs``).
    params : its parameters, optionally with a leading restarts axis R.
    x : (N, d) points.
    grid_size, bound, breakpoints : quadrature settings (``refvae.metrics.quadrature.latent_grid``).

    Returns
    -------
    ndarray (N,) or (R, N) (host NumPy).

    Raises
    ------
    ValueError when neither method applies (nonlinear decoder with K > 2).
    """
    x = np.asarray(to_host(_checks.array("x", x, ndim=2)))
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
    method = has_exact_log_likelihood(model)
    if method is None:
        raise ValueError(f"no exact log-likelihood for this model: its decoder is not affine (or its variance "
                         f"depends on z) and its latent dimension K = {getattr(model, 'latent_dim', None)} "
                         f"is above 2 (quadrature); use importance_log_likelihood")
    if x.shape[1] != model.data_dim:
        raise ValueError(f"x must have shape (N, {model.data_dim}), got {tuple(x.shape)}")
    host = {k: np.asarray(to_host(v)) for k, v in params.items()}
    K = model.latent_dim
    probe = np.concatenate([np.zeros((1, K)), np.eye(K)])           # z = 0, e_1, ..., e_K
    mean, _ = model.decode(host, probe)
    lead = tuple(mean.shape[:-2])
    out = np.empty(lead + (x.shape[0],))
    for r in np.ndindex(*lead):
        one = {k: v[r] if lead else v for k, v in host.items()}
        if method == "closed form":
            m, logvar = model.decode(one, probe)
            m, var = np.asarray(m), np.broadcast_to(np.exp(np.asarray(logvar)), m.shape)
            W = (m[1:] - m[0]).T                                        # (d, K): x = W z + b + e
            out[r] = lg.log_likelihood(x, W, m[0], np.diag(var[0]))
        else:
            def decode(z, one=one):
                m, logvar = model.decode(one, z)
                return np.asarray(m), np.exp(np.asarray(logvar))
            out[r] = quadrature.log_likelihood(x, decode, K, grid_size=grid_size, bound=bound,
                                               breakpoints=breakpoints)
    return out


def mean_and_stderr(values, axis=-1):
    """Mean over points and its standard error sd(values, ddof=1) / sqrt(n).

    Parameters
    ----------
    values : array (..., N) (e.g. ``importance_log_likelihood``'s output), N >= 2 along ``axis``.
    axis : int, the axis of the points.

    Returns
    -------
    mean, stderr : arrays (...) (floats for 1-D input), on the host.
    """
    values = np.asarray(to_host(_checks.array("values", values, min_ndim=1)))
    n = values.shape[axis]
    if n < 2:
        raise ValueError(f"values must hold at least 2 entries along axis {axis} for a standard error, got {n}")
    return values.mean(axis=axis), values.std(axis=axis, ddof=1) / math.sqrt(n)


def objective_estimate(model, params, x, *, seed, n_samples=16, replicates=8, **overrides):
    """A model's own objective per data point (e.g. -ELBO, all constants included) and its standard error.

    Each of ``replicates`` independent evaluations of ``model.value_and_grad`` averages
    ``n_samples`` noise draws per point over all of ``x``; the estimate is the mean of the
    replicates and the standard error their standard deviation / sqrt(replicates).

    Parameters
    ----------
    model : any refvae objective with ``value_and_grad`` and ``noise_shape``; params : its
        parameters (restarts axis R allowed). A deterministic objective (``noise_shape`` None,
        e.g. ``Autoencoder``) gets ``noise=None``: every replicate is the same, the error 0.
    x : (N, d) points; seed : int or Generator.
    n_samples, replicates : int >= 1 and >= 2.
    overrides : passed to ``value_and_grad`` (e.g. ``sigma2=`` for ``obs="fixed"``).

    Returns
    -------
    mean, stderr : floats, or arrays (R,) with a restarts axis (host NumPy).
    """
    for name in ("value_and_grad", "noise_shape"):
        if not callable(getattr(model, name, None)):
            raise TypeError(f"model must be a refvae objective with {name}(), got {type(model).__name__}")
    x = _checks.array("x", x, ndim=2)
    n_samples = _checks.integer("n_samples", n_samples, min_value=1)
    replicates = _checks.integer("replicates", replicates, min_value=2)
    rng = make_rng(seed)
    values = []
    for _ in range(replicates):
        shape = model.noise_shape(params, x.shape[0], n_samples)
        noise = None if shape is None else normal(rng, shape)
        values.append(to_host(model.value_and_grad(params, x, noise, **overrides)[0]))
    values = np.asarray(values)
    return values.mean(axis=0), values.std(axis=0, ddof=1) / math.sqrt(replicates)

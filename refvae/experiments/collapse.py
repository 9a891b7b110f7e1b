"""Posterior-collapse experiments of dai2020 (Dai, Wang, Wipf, "The Usual Suspects?", ICML 2020).

The procedures behind the dai2020 claims of ``refvae verify`` (``refvae.verify.claims.dai2020``),
usable on their own. Each trains refvae models and returns plain numbers in a small dataclass;
the claims decide the verdicts.

- Linear VAE (dai2020 Sec. 4; docs/math.md 4.4). ``ppca_experiment``: with a learned noise the
  linear VAE reaches the PPCA optimum. ``pruning_experiment``: with a fixed noise gamma exactly
  the directions with eigenvalue l_j > gamma survive, with column norms sqrt(l_j - gamma), and
  gamma >= l_1 collapses everything (Prop. 2, affine case). Helpers map refvae's affine
  networks to ``analytic``'s conventions (``linear_vae_parts``) and evaluate the *exact* ELBO of
  a trained linear VAE with its own, x-dependent encoder (``exact_linear_elbo``).
- Soft-threshold decoder (dai2020 Sec. 4, Eq. 4-5, Prop. 1; docs/math.md 4.7).
  ``soft_threshold_experiment``: the collapsed point is a local minimum for alpha > 0 (training
  started next to it returns to it) but not a global one (training from an informed start ends
  far below it); for alpha = 0 (affine) the same start escapes. ``energy_from_loss`` and
  ``soft_threshold_energy`` relate refvae's loss to Eq. 5's energy; ``soft_threshold_slice``
  evaluates the exact energy on a plane through the collapsed point (the claim's figure).
- Depth (dai2020 Sec. 5-6, Fig. 1 top). ``depth_experiment``: deterministic autoencoders and
  VAEs (with and without KL warm-start) of increasing depth on a synthetic high-dimensional
  data set (``manifold_data``), the kinds of one depth started from the same networks;
  reconstruction errors per depth and restart, recorded at checkpoints during training (to tell
  a plateau from a run still improving), and active units.

Conventions (docs/math.md 0): refvae's ``Linear`` computes y = x W + b with W of shape (n_in, n_out),
so a refvae decoder weight is the *transpose* of analytic's W (d, K); variances are variances
and learned ones are stored as log-variances.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

import analytic.linear_vae
import analytic.ppca
import analytic.soft_threshold

from .. import _checks
from ..backend import asarray, make_rng, normal, to_host
from ..distributions import LOG_2PI, reparameterize
from ..encoders import PerPointEncoder
from ..layers import Linear, Sequential, Shift, SoftThreshold
from ..metrics.information import active_units
from ..objectives import Autoencoder, GaussianVAE, take_restart
from ..optim import SGD, Adam
from ..train import check_stages, fit, fit_stages, linear_ramp

__all__ = [
    "linear_vae_parts", "exact_linear_elbo", "PPCAResult", "ppca_experiment",
    "PruningResult", "pruning_experiment",
    "soft_threshold_vae", "soft_threshold_parts", "soft_threshold_energy", "energy_from_loss",
    "SoftThresholdResult", "soft_threshold_experiment", "soft_threshold_slice",
    "SOFT_THRESHOLD_TRAINED", "manifold_data", "reconstruction_error", "DEPTH_KINDS", "DepthResult",
    "depth_experiment",
]


# ==================================================================================== training

def _progress_callback(progress, stages, stop=None):
    """A ``fit_stages`` callback reporting progress(fraction) every 50 steps and ending the run
    when ``stop(params, terms)`` is true."""
    total = max(sum(n for _, n in check_stages("stages", stages)), 1)

    def callback(t, p, terms):
        if progress is not None and t % 50 == 0:
            progress(t / total)
        return stop is not None and bool(stop(p, terms))
    return callback


def linear_vae_parts(model, params, r=None):
    """A ``GaussianVAE.linear`` model's parameters in ``analytic``'s conventions (docs/math.md 4.4).

    refvae's affine encoder outputs mu = x M + c and logvar = x G + g (one ``Linear`` with
    2K outputs); its decoder mean is z A + b. In analytic's notation the decoder is W z + b with
    W = A^T (d, K) and the encoder mean is V (x - b) with V = M^T (K, d); analytic's family
    has no x-dependent variance (G = 0) and ties the offset to the decoder's (c = -V b).

    Parameters
    ----------
    model : GaussianVAE built by ``GaussianVAE.linear``.
    params : its parameters, with or without a restarts axis.
    r : restart index (required when ``params`` has a restarts axis).

    Returns
    -------
    dict of NumPy arrays: ``W`` (d, K), ``b`` (d,), ``V`` (K, d), ``c`` (K,), ``G`` (d, K),
    ``g`` (K,), and ``sigma2`` (float, or (d,) for ``obs="vector"``).
    """
    K = model.latent_dim
    if not {"enc.0.W", "enc.0.b", "dec.0.W", "dec.0.b"} <= set(params) <= \
            {"enc.0.W", "enc.0.b", "dec.0.W", "dec.0.b", "dec.obs_logvar"}:
        raise ValueError("model must be a GaussianVAE.linear (one affine layer each way), "
                         f"got parameters {sorted(params)}")
    enc_W, enc_b = to_host(params["enc.0.W"]), to_host(params["enc.0.b"])
    dec_W, dec_b = to_host(params["dec.0.W"]), to_host(params["dec.0.b"])
    if enc_W.ndim == 3:
        if r is None:
            raise ValueError("params has a restarts axis: pass the restart index r")
        r = _checks.integer("r", r, min_value=0)
        enc_W, enc_b, dec_W, dec_b = enc_W[r], enc_b[r], dec_W[r], dec_b[r]
    if model.obs == "fixed":
        noise = model.sigma2
    elif model.obs in ("scalar", "vector"):
        lv = to_host(params["dec.obs_logvar"])
        lv = lv[r] if lv.ndim == 2 else lv
        noise = float(np.exp(lv[0])) if model.obs == "scalar" else np.exp(lv)
    else:
        raise ValueError(f"obs={model.obs!r} has no constant noise variance")
    return {"W": dec_W.T, "b": dec_b, "V": enc_W[:, :K].T, "c": enc_b[:K], "G": enc_W[:, K:],
            "g": enc_b[K:], "sigma2": noise}


def exact_linear_elbo(x, W, b, sigma2, mu, logvar):
    """Exact ELBO of each point under a linear decoder, for arbitrary per-point Gaussian moments.

    The decoder is x = W z + b + e, e ~ N(0, sigma2 I); q(z | x_n) = N(mu_n, diag exp(logvar_n)).
    For one point the expectation is closed form (docs/math.md 4.4) and equals
    ``analytic.linear_vae.elbo`` on the one-point data set {x_n} with any encoder map V that
    sends x_n - b to mu_n (we use the rank-one V_n = mu_n (x_n - b)^T / ||x_n - b||^2) and
    D = exp(logvar_n). So this evaluates the ELBO of refvae's *own* encoder exactly, including
    its x-dependent variances, without a second ELBO formula.

    Parameters
    ----------
    x : (N, d) data; no row may equal b exactly.
    W : (d, K) decoder loadings (analytic's orientation); b : (d,) decoder offset.
    sigma2 : float > 0.
    mu, logvar : (N, K) encoder moments of the N points.

    Returns
    -------
    ndarray (N,): the ELBO of every point, all constants included (so the mean compares with
    ``analytic.ppca.log_likelihood``).
    """
    x = np.asarray(_checks.array("x", x, ndim=2))
    N, d = x.shape
    W = np.asarray(_checks.array("W", W, ndim=2, shape=(d, None)))
    K = W.shape[1]
    b = np.asarray(_checks.array("b", b, shape=(d,)))
    sigma2 = _checks.scalar("sigma2", sigma2, positive=True)
    mu = np.asarray(_checks.array("mu", mu, shape=(N, K)))
    logvar = np.asarray(_checks.array("logvar", logvar, shape=(N, K)))
    r = x - b
    nr2 = np.sum(r * r, axis=1)
    if np.any(nr2 == 0):
        raise ValueError("x has a row equal to b: the one-point encoder map is undefined there")
    out = np.empty(N)
    for n in range(N):
        V = np.outer(mu[n], r[n]) / nr2[n]
        out[n] = analytic.linear_vae.elbo(x[n:n + 1], W, b, sigma2, V, np.exp(logvar[n]))
    return out


def _linear_elbos(model, params, x, restarts):
    """Exact mean ELBO of each restart of a trained ``GaussianVAE.linear`` (scalar noise)."""
    mu, lv = (to_host(a) for a in model.encode(params, asarray(x)))
    out = []
    for r in range(restarts):
        p = linear_vae_parts(model, params, r)
        s2 = p["sigma2"] if np.ndim(p["sigma2"]) == 0 else float(p["sigma2"][0])
        out.append(float(np.mean(exact_linear_elbo(x, p["W"], p["b"], s2, mu[r], lv[r]))))
    return np.asarray(out)


@dataclass
class PPCAResult:
    """Linear VAE with learned noise vs the PPCA optimum on the same sample (``ppca_experiment``).

    Arrays are per restart (R,). ``cov_error``: max |W W^T - W* W*^T| / l_1 (relative to the
    largest eigenvalue); ``sigma2`` and ``sigma2_ppca``: learned and PPCA noise;
    ``elbo``: exact ELBO of the trained model (its own encoder); ``loglik_ppca``: PPCA
    maximum log-likelihood; ``logvar_spread``: max over latents of the standard deviation over the
    data of the learned log-variance x G + g, i.e. how much refvae's encoder variance depends on x
    (0 at the optimum, where analytic's D is constant); ``offset_error``: max |b - xbar|;
    ``eigenvalues``: the sample spectrum (d,); ``column_norms`` (R, K): the learned decoder column
    norms, in decreasing order; ``column_norms_ppca`` (K,): PPCA's, sqrt(l_j - sigma2_ppca).
    """
    cov_error: np.ndarray
    sigma2: np.ndarray
    sigma2_ppca: float
    elbo: np.ndarray
    loglik_ppca: float
    logvar_spread: np.ndarray
    offset_error: np.ndarray
    eigenvalues: np.ndarray
    column_norms: np.ndarray
    column_norms_ppca: np.ndarray


def ppca_experiment(x, latent_dim, *, restarts, stages, seed, average=0, init_sigma2=1.0,
                    progress=None):
    """Train a linear VAE with a learned scalar noise and compare it with PPCA (docs/math.md 4.4).

    dai2020 Sec. 4: with an affine decoder and learned gamma every local optimum is the
    PPCA solution (Tipping and Bishop), W = U_K (Lambda_K - sigma2 I)^(1/2) R, sigma2 = mean of
    the discarded eigenvalues, and at R a signed permutation the ELBO equals the PPCA
    log-likelihood.

    Parameters
    ----------
    x : (N, d) data (e.g. ``refvae.datasets.gaussian_spectrum``).
    latent_dim : K < d.
    restarts : R independent initialisations trained as one array program.
    stages, seed, average : as ``refvae.train.fit_stages`` (full batch, one sample per point).
    init_sigma2 : initial observation variance.
    progress : optional callable(fraction).

    Returns
    -------
    PPCAResult
    """
    x = np.asarray(_checks.array("x", x, ndim=2))
    d = x.shape[1]
    K = _checks.integer("latent_dim", latent_dim, min_value=1)
    R = _checks.integer("restarts", restarts, min_value=1)
    rng = make_rng(seed)
    model = GaussianVAE.linear(d, K, obs="scalar", sigma2=init_sigma2)
    params, _ = fit_stages(model, model.init(rng, restarts=R), x, stages=stages, seed=rng, average=average,
                           callback=_progress_callback(progress, stages))
    star = analytic.ppca.fit(x, K)
    cov_star = star.W @ star.W.T
    mean, eig, _ = analytic.ppca.eigen(x)
    parts = [linear_vae_parts(model, params, r) for r in range(R)]
    lv = to_host(model.encode(params, asarray(x))[1])
    return PPCAResult(
        cov_error=np.array([np.abs(p["W"] @ p["W"].T - cov_star).max() / eig[0] for p in parts]),
        sigma2=np.array([p["sigma2"] for p in parts]),
        sigma2_ppca=star.sigma2,
        elbo=_linear_elbos(model, params, x, R),
        loglik_ppca=analytic.ppca.log_likelihood(x, star.W, star.mean, star.sigma2),
        logvar_spread=lv.std(axis=-2).max(axis=-1),
        offset_error=np.array([np.abs(p["b"] - mean).max() for p in parts]),
        eigenvalues=eig,
        column_norms=np.array([np.sort(np.linalg.norm(p["W"], axis=0))[::-1] for p in parts]),
        column_norms_ppca=np.sort(np.linalg.norm(star.W, axis=0))[::-1])


@dataclass
class PruningResult:
    """Linear VAE with fixed noise gamma vs the fixed-noise PPCA optimum (``pruning_experiment``).

    Arrays are (G, R) over the noise values ``gammas`` (G,) and restarts, columns sorted by
    decreasing norm where per column. ``active_expected`` (G,): min(K, #{l_j > gamma})
    (analytic); ``active_units`` (G, R): Burda et al.'s count on the trained encoder;
    ``column_norms`` (G, R, K): learned decoder column norms; ``column_norms_expected``
    (G, K): sqrt((l_j - gamma)_+); ``elbo`` (G, R): exact ELBO of the trained model;
    ``elbo_optimum`` (G,): the analytic optimum's ELBO; ``elbo_collapsed`` (G,): the ELBO of the
    fully collapsed model N(xbar, gamma I); ``pruned_logvar`` (G, R): max over points and pruned
    latents (the K - active_expected smallest columns) of |log-variance| (0 where q = N(0, 1));
    ``threshold``: l_1, analytic's collapse threshold; ``eigenvalues`` (d,): the sample spectrum.
    """
    gammas: np.ndarray
    active_expected: np.ndarray
    active_units: np.ndarray
    column_norms: np.ndarray
    column_norms_expected: np.ndarray
    elbo: np.ndarray
    elbo_optimum: np.ndarray
    elbo_collapsed: np.ndarray
    pruned_logvar: np.ndarray
    threshold: float
    eigenvalues: np.ndarray


def pruning_experiment(x, latent_dim, gammas, *, restarts, stages, seed, average=0, progress=None):
    """Train linear VAEs with fixed noise variances and compare with the pruned PPCA (docs/math.md 4.4).

    dai2020 Sec. 4 (after Lucas et al. 2019) and Prop. 2 (affine case): with gamma fixed the
    global optimum keeps the directions with l_j > gamma, with decoder column norms
    sqrt(l_j - gamma), and sets q(z_j | x) = N(0, 1) on the others; gamma >= l_1 collapses every
    latent. All noise values train as one array program: the restarts axis holds G x R models,
    each with the constant per-dimension noise ``dec.obs_logvar`` = log gamma, which is left
    out of the optimised keys (``only=("enc.", "dec.0.")``) and so stays fixed.

    Parameters
    ----------
    x : (N, d) data.
    latent_dim : K <= d.
    gammas : (G,) positive fixed noise variances.
    restarts : R per noise value.
    stages, seed, average, progress : as ``refvae.train.fit_stages``.

    Returns
    -------
    PruningResult
    """
    x = np.asarray(_checks.array("x", x, ndim=2))
    d = x.shape[1]
    K = _checks.integer("latent_dim", latent_dim, min_value=1)
    gammas = np.asarray(_checks.array("gammas", gammas, ndim=1, positive=True))
    R = _checks.integer("restarts", restarts, min_value=1)
    G = gammas.size
    rng = make_rng(seed)
    model = GaussianVAE.linear(d, K, obs="vector", sigma2=1.0)
    params = model.init(rng, restarts=G * R)
    params["dec.obs_logvar"] = asarray(np.repeat(np.log(gammas), R)[:, None] * np.ones((1, d)))
    params, _ = fit_stages(model, params, x, stages=stages, seed=rng, average=average, only=("enc.", "dec.0."),
                           callback=_progress_callback(progress, stages))
    mean, eig, _ = analytic.ppca.eigen(x)
    mu, lv = (to_host(a) for a in model.encode(params, asarray(x)))
    units = np.asarray(active_units(mu)).reshape(G, R)
    norms, elbos, pruned_lv = np.empty((G, R, K)), np.empty((G, R)), np.zeros((G, R))
    expected, opt, collapsed, n_active = np.empty((G, K)), np.empty(G), np.empty(G), np.empty(G, int)
    for i, gamma in enumerate(gammas):
        star = analytic.ppca.fit(x, K, sigma2=float(gamma))
        enc = analytic.linear_vae.optimal_encoder(star.W, float(gamma))
        opt[i] = analytic.linear_vae.elbo(x, star.W, star.mean, float(gamma), enc.V, enc.D)
        collapsed[i] = analytic.linear_vae.elbo(x, np.zeros((d, K)), mean, float(gamma),
                                                np.zeros((K, d)), np.ones(K))
        expected[i] = np.sort(np.linalg.norm(star.W, axis=0))[::-1]
        n_active[i] = min(K, analytic.ppca.active_dims(eig, float(gamma)))
        for j in range(R):
            r = i * R + j
            p = linear_vae_parts(model, params, r)
            col = np.linalg.norm(p["W"], axis=0)
            norms[i, j] = np.sort(col)[::-1]
            pruned = np.argsort(-col)[n_active[i]:]
            if pruned.size:
                pruned_lv[i, j] = np.abs(lv[r][:, pruned]).max()
            elbos[i, j] = np.mean(exact_linear_elbo(x, p["W"], p["b"], float(gamma), mu[r], lv[r]))
    return PruningResult(gammas=gammas, active_expected=n_active, active_units=units, column_norms=norms,
                         column_norms_expected=expected, elbo=elbos, elbo_optimum=opt,
                         elbo_collapsed=collapsed, pruned_logvar=pruned_lv, threshold=analytic.linear_vae.collapse_threshold(x),
                         eigenvalues=eig)


# ==================================================================================== soft threshold

#: keys a soft-threshold VAE trains; ``dec.0.b`` (a bias *inside* the threshold, absent from
#: dai2020's Eq. 4) is left out and stays exactly 0.
SOFT_THRESHOLD_TRAINED = ("enc.", "dec.0.W", "dec.2.b", "dec.obs_logvar")


def soft_threshold_vae(num_points, data_dim, latent_dim, alpha, *, sigma2=1.0):
    """dai2020's soft-threshold VAE (Eq. 4-5) as a refvae ``GaussianVAE``.

    Decoder mean pi_alpha(z A) + b: ``Sequential(Linear(K, d), SoftThreshold(alpha), Shift(d))``
    (parameters ``dec.0.W`` = A (K, d) = W^T, ``dec.0.b`` kept at 0, ``dec.2.b`` = b); learned
    scalar variance gamma (``dec.obs_logvar``); a non-amortised encoder with free per-point moments
    (``refvae.encoders.PerPointEncoder``, docs/math.md 2.5), as Eq. 5 assumes. Train it full-batch on
    the data in index order, with ``only=SOFT_THRESHOLD_TRAINED``.

    Parameters
    ----------
    num_points : N; data_dim : d; latent_dim : K; alpha : threshold >= 0 (0 = affine decoder).
    sigma2 : initial gamma.

    Returns
    -------
    GaussianVAE
    """
    N = _checks.integer("num_points", num_points, min_value=1)
    d = _checks.integer("data_dim", data_dim, min_value=1)
    K = _checks.integer("latent_dim", latent_dim, min_value=1)
    alpha = _checks.scalar("alpha", alpha, nonneg=True)
    decoder = Sequential(Linear(K, d), SoftThreshold(alpha), Shift(d))
    return GaussianVAE(PerPointEncoder(N, K), decoder, K, d, obs="scalar", sigma2=sigma2)


def soft_threshold_parts(params, r=None):
    """Parameters of a ``soft_threshold_vae`` in ``analytic.soft_threshold``'s conventions.

    Returns a dict of NumPy arrays: ``W`` (d, K), ``b`` (d,), ``gamma`` (float), ``mu`` (N, K),
    ``s`` (N, K) (encoder standard deviations exp(logvar / 2)); restart ``r`` if given.
    """
    p = {k: to_host(v) for k, v in params.items()}
    if p["dec.0.W"].ndim == 3:
        if r is None:
            raise ValueError("params has a restarts axis: pass the restart index r")
        p = {k: v[_checks.integer("r", r, min_value=0)] for k, v in p.items()}
    if np.any(p["dec.0.b"] != 0):
        raise ValueError("dec.0.b (a bias inside the threshold) must be 0 for dai2020's model; "
                         "train with only=SOFT_THRESHOLD_TRAINED")
    return {"W": p["dec.0.W"].T, "b": p["dec.2.b"], "gamma": float(np.exp(p["dec.obs_logvar"][0])),
            "mu": p["enc.mu"], "s": np.exp(p["enc.logvar"] / 2)}


def soft_threshold_energy(params, x, alpha):
    """Exact dai2020 Eq. 5 energy of each restart of a ``soft_threshold_vae`` (``analytic.soft_threshold.energy``).

    Returns ndarray (R,), or a float without a restarts axis.
    """
    x = np.asarray(_checks.array("x", x, ndim=2))
    if to_host(params["dec.0.W"]).ndim == 2:
        p = soft_threshold_parts(params)
        return analytic.soft_threshold.energy(x, p["W"], p["b"], p["gamma"], p["mu"], p["s"], alpha)
    R = params["dec.0.W"].shape[0]
    out = []
    for r in range(R):
        p = soft_threshold_parts(params, r)
        out.append(analytic.soft_threshold.energy(x, p["W"], p["b"], p["gamma"], p["mu"], p["s"], alpha))
    return np.asarray(out)


def energy_from_loss(loss, num_points, data_dim, latent_dim):
    """dai2020's Eq. 5 energy from refvae's loss (mean -ELBO per point, all constants included).

    Per point, refvae's -ELBO is 0.5 E_q[ ||x - f(z)||^2 / gamma + d log gamma + d log 2 pi ]
    + 0.5 [ ||mu||^2 + ||s||^2 - sum_k log s_k^2 - K ] (docs/math.md 1), i.e. half of the summand of
    Eq. 5 plus 0.5 (d log 2 pi - K). Summing over the N points:

        E = 2 N loss - N (d log 2 pi - K).

    Parameters
    ----------
    loss : float or array (any shape), refvae's mean -ELBO per point.
    num_points, data_dim, latent_dim : N, d, K.

    Returns
    -------
    E, same shape as ``loss``.
    """
    N = _checks.integer("num_points", num_points, min_value=1)
    d = _checks.integer("data_dim", data_dim, min_value=1)
    K = _checks.integer("latent_dim", latent_dim, min_value=1)
    return 2.0 * N * np.asarray(loss) - N * (d * LOG_2PI - K)


def _soft_threshold_start(W, b, gamma, mu, s, noise, delta):
    """refvae parameters (restarts axis R = len(noise)) at an analytic point plus a perturbation.

    Every parameter moves by delta times its own standard-normal draw (``noise``, a list of R
    dicts), in refvae's parameterisation (W^T, b, log gamma, mu, log s^2).
    """
    base = {"dec.0.W": W.T, "dec.2.b": b, "dec.obs_logvar": np.array([math.log(gamma)]),
            "enc.mu": mu, "enc.logvar": np.log(s * s)}
    out = {k: asarray(np.stack([v + delta * e[k] for e in noise])) for k, v in base.items()}
    out["dec.0.b"] = asarray(np.zeros((len(noise), b.shape[0])))
    return out


@dataclass
class SoftThresholdResult:
    """Outcome of ``soft_threshold_experiment``; energies are dai2020's Eq. 5 (exact, summed over points).

    ``energy_collapsed``: E_0 at the collapsed point; ``gamma_collapsed``: gammabar. Per group
    (``"collapsed"``: alpha > 0 from next to the collapsed point; ``"affine"``: alpha = 0 from the
    same starts; ``"informed"``: alpha > 0 from next to Prop. 1's reconstruction path) arrays (R,):
    ``energy_start``, ``energy_end``, ``gamma_end`` and ``steps`` (steps trained; escaping runs
    stop early, see ``soft_threshold_experiment``). ``energy_mc``, ``energy_mc_se`` (R,): the
    energy at the informed starts recomputed from refvae's own Monte Carlo loss by
    ``energy_from_loss``, with its standard error (there gamma is moderate and the Monte Carlo
    average well behaved; near the collapsed point the loss barely depends on z, and at the end of
    an escape gamma -> 0 makes the per-sample terms heavily skewed). ``delta``: the perturbation
    size; ``alpha``: the threshold.
    """
    alpha: float
    delta: float
    energy_collapsed: float
    gamma_collapsed: float
    energy_start: dict
    energy_end: dict
    gamma_end: dict
    steps: dict
    energy_mc: np.ndarray
    energy_mc_se: np.ndarray


def _mc_energy(model, params, x, rng, replicates, n_samples):
    """Eq. 5 energy from refvae's Monte Carlo loss: mean and standard error over replicates, (R,) each."""
    N, d = x.shape
    xa = asarray(x)
    vals = np.array([to_host(model.value_and_grad(params, xa, normal(rng, model.noise_shape(params, N, n_samples)))[0])
                     for _ in range(replicates)])
    E = energy_from_loss(vals, N, d, model.latent_dim)
    return E.mean(axis=0), E.std(axis=0, ddof=1) / math.sqrt(replicates)


def soft_threshold_experiment(x, alpha, latent_dim, *, restarts, delta, lr, steps, seed, escape_margin=2.0,
                              replicates=16, n_samples=32, progress=None):
    """dai2020 Proposition 1: the collapsed point of the soft-threshold VAE is a bad local minimum.

    Data on one axis, x_i = t_i e_1 (``refvae.datasets.soft_threshold_axis``). Model:
    ``soft_threshold_vae`` (decoder pi_alpha(W z) + b, learned gamma, free per-point moments), trained
    full batch by plain gradient descent (``refvae.optim.SGD`` without momentum; the per-point moments,
    whose gradients carry the 1/N of the mean loss, at rate ``lr * N``). Three groups of R starts:

    - ``"collapsed"``: threshold ``alpha`` > 0, started at the collapsed point (W = 0, b = xbar,
      gamma = gammabar, q = N(0, I); ``analytic.soft_threshold.collapsed_point``) moved by ``delta``
      times a standard-normal draw in every parameter (W^T, b, log gamma, mu, log s^2), trained for
      ``steps`` steps. Exactly at the point every gradient vanishes for any alpha (a stationary point),
      so the informative test is the neighbourhood: a local minimum pulls the energy back to E_0.
    - ``"affine"``: the same starts with alpha = 0 (the PPCA model, where the point is a saddle).
    - ``"informed"``: alpha > 0 started next to Prop. 1's perfect-reconstruction path
      (``analytic.soft_threshold.reconstruction_path`` with gamma = gammabar and gain c = 1, whose
      energy is above E_0).

    The last two groups run one start at a time and stop as soon as refvae's Monte Carlo energy falls
    below E_0 - ``escape_margin`` N: on axis data the energy is unbounded below (gamma -> 0), and a
    fixed-step gradient descent would eventually go unstable as gamma shrinks.

    Why plain gradient descent: near the collapsed point the gradients are exponentially small (they
    come from rare samples with |w_j . z| > alpha). Adam divides every step by the gradient's running
    scale, so a single such sample moves W by O(lr), and a few of them can walk it out of the flat
    basin (seen in 1 of 48 Adam runs at delta = 0.05); gradient descent follows the landscape.

    Parameters
    ----------
    x : (N, d) axis data, d >= 2, every point non-zero on axis 0 and zero elsewhere.
    alpha : threshold > 0.
    latent_dim : K >= 1.
    restarts : R per group.
    delta : perturbation size > 0.
    lr, steps : gradient-descent rate and the maximum number of steps.
    seed : int or Generator (perturbations, training noise, evaluation).
    escape_margin : energy margin per point of the stopping rule.
    replicates, n_samples : Monte Carlo evaluation of the loss at the informed starts.
    progress : optional callable(fraction).

    Returns
    -------
    SoftThresholdResult
    """
    x = np.asarray(_checks.array("x", x, ndim=2))
    N, d = x.shape
    if d < 2 or np.any(x[:, 1:] != 0) or np.any(x[:, 0] == 0):
        raise ValueError("x must be axis data x_i = t_i e_1 with t_i != 0 and d >= 2 "
                         "(refvae.datasets.soft_threshold_axis)")
    alpha = _checks.scalar("alpha", alpha, positive=True)
    K = _checks.integer("latent_dim", latent_dim, min_value=1)
    R = _checks.integer("restarts", restarts, min_value=1)
    delta = _checks.scalar("delta", delta, positive=True)
    lr = _checks.scalar("lr", lr, positive=True)
    steps = _checks.integer("steps", steps, min_value=1)
    escape_margin = _checks.scalar("escape_margin", escape_margin, positive=True)
    rng = make_rng(seed)
    c0 = analytic.soft_threshold.collapsed_point(x, K)
    path = analytic.soft_threshold.reconstruction_path(x[:, 0], alpha, c0.gamma, 1.0, d=d, latent_dim=K)
    shapes = {"dec.0.W": (K, d), "dec.2.b": (d,), "dec.obs_logvar": (1,), "enc.mu": (N, K), "enc.logvar": (N, K)}
    draws = [{k: rng.standard_normal(s) for k, s in shapes.items()} for _ in range(2 * R)]
    starts = {"collapsed": _soft_threshold_start(c0.W, c0.b, c0.gamma, c0.mu, c0.s, draws[:R], delta),
              "informed": _soft_threshold_start(path.W, path.b, path.gamma, path.mu, path.s, draws[R:], delta)}
    models = {"collapsed": (soft_threshold_vae(N, d, K, alpha), alpha),
              "affine": (soft_threshold_vae(N, d, K, 0.0), 0.0),
              "informed": (soft_threshold_vae(N, d, K, alpha), alpha)}
    starts["affine"] = starts["collapsed"]

    # base rate 1: each stage scales it to its own rate, and the per-point moments' rate with it (x N)
    sgd = SGD(1.0, group_lr={"enc.": float(N)})

    def escaped(p, terms):
        return bool(energy_from_loss(to_host(terms["recon"] + terms["kl"]), N, d, K) < c0.energy - escape_margin * N)

    out = {name: {} for name in ("energy_start", "energy_end", "gamma_end", "steps")}
    jobs = [("collapsed", None)] + [(g, r) for g in ("affine", "informed") for r in range(R)]
    for i, (group, r) in enumerate(jobs):
        model, a = models[group]
        p0 = starts[group] if r is None else take_restart(starts[group], r)
        prog = None if progress is None else (lambda f, i=i: progress((i + f) / len(jobs)))
        p, hist = fit_stages(model, p0, x, stages=[(lr, steps)], seed=rng, only=SOFT_THRESHOLD_TRAINED, optimizer=sgd,
                             callback=_progress_callback(prog, [(lr, steps)], None if r is None else escaped))
        start = np.atleast_1d(soft_threshold_energy(p0, x, a))
        values = {"energy_start": start, "energy_end": soft_threshold_energy(p, x, a),
                  "gamma_end": np.exp(to_host(p["dec.obs_logvar"])[..., 0]),
                  "steps": np.full(start.shape, len(hist["loss"]))}
        for k, v in values.items():
            out[k].setdefault(group, []).append(np.atleast_1d(v))
    out = {k: {g: np.concatenate(v) for g, v in groups.items()} for k, groups in out.items()}
    mc, se = _mc_energy(models["informed"][0], starts["informed"], x, rng, replicates, n_samples)
    return SoftThresholdResult(alpha=alpha, delta=delta, energy_collapsed=c0.energy, gamma_collapsed=c0.gamma,
                               energy_mc=mc, energy_mc_se=se, **out)


def soft_threshold_slice(x, alpha, latent_dim, gains, couplings):
    """Exact Eq. 5 energy minus E_0 on a 2-D slice through the collapsed point (for figures).

    The slice moves the decoder gain c (W = c e_1 e_1^T) and the encoder means of the first latent,
    mu_i1 = m (t_i - tbar) / sd(t), together (the direction along which the affine model's collapsed
    point is a saddle: the cross term -2 c m sd(t) / gammabar of Eq. 5); every other parameter stays at
    the collapsed point (b = xbar, gamma = gammabar, s = 1).

    Parameters
    ----------
    x : (N, d) data, d >= 2, varying along axis 0 (``refvae.datasets.soft_threshold_axis``).
    alpha : threshold >= 0; latent_dim : K >= 1.
    gains, couplings : 1-D grids of c and m.

    Returns
    -------
    ndarray (len(couplings), len(gains)).
    """
    x = np.asarray(_checks.array("x", x, ndim=2))
    gains = np.asarray(_checks.array("gains", gains, ndim=1))
    couplings = np.asarray(_checks.array("couplings", couplings, ndim=1))
    c0 = analytic.soft_threshold.collapsed_point(x, latent_dim)
    N, d = x.shape
    t = x[:, 0] - c0.b[0]
    u = t / t.std()
    out = np.empty((len(couplings), len(gains)))
    for i, m in enumerate(couplings):
        mu = c0.mu.copy()
        mu[:, 0] = m * u
        for j, c in enumerate(gains):
            W = c0.W.copy()
            W[0, 0] = c
            out[i, j] = analytic.soft_threshold.energy(x, W, c0.b, c0.gamma, mu, c0.s, alpha) - c0.energy
    return out


# ==================================================================================== depth

def manifold_data(n, seed, *, data_dim=64, intrinsic_dim=8, hidden=64, layers=2, gain=2.0,
                  sigma2=0.01, manifold_seed=0):
    """A synthetic high-dimensional data set: a random tanh network of a low-dimensional latent.

    Stand-in for dai2020's image data (Sec. 6) at a size a CPU trains in seconds:
    z ~ N(0, I_k), h_0 = z, h_l = tanh(h_{l-1} A_l) (A_l with N(0, gain^2 / fan_in) entries),
    x = h_L B + e with B of N(0, 1 / hidden) entries and e ~ N(0, sigma2 I_d). The network is
    drawn from ``manifold_seed`` (kept apart from ``seed``, so that samples with different seeds
    share one population); the data lie near a curved k-dimensional manifold in R^d.

    Parameters
    ----------
    n : number of points; seed : int or Generator for z and e.
    data_dim : d; intrinsic_dim : k; hidden : width of the generating network; layers : its
    number of tanh layers (>= 1); gain : weight scale (2 makes the tanh units clearly nonlinear);
    sigma2 : variance of the additive noise (>= 0); manifold_seed : int >= 0.

    Returns
    -------
    ndarray (n, d)
    """
    n = _checks.integer("n", n, min_value=1)
    d = _checks.integer("data_dim", data_dim, min_value=1)
    k = _checks.integer("intrinsic_dim", intrinsic_dim, min_value=1)
    H = _checks.integer("hidden", hidden, min_value=1)
    L = _checks.integer("layers", layers, min_value=1)
    gain = _checks.scalar("gain", gain, positive=True)
    sigma2 = _checks.scalar("sigma2", sigma2, nonneg=True)
    net = make_rng(_checks.integer("manifold_seed", manifold_seed, min_value=0))
    rng = make_rng(seed)
    h = rng.standard_normal((n, k))
    for _ in range(L):
        h = np.tanh(h @ (net.standard_normal((h.shape[1], H)) * gain / math.sqrt(h.shape[1])))
    x = h @ (net.standard_normal((H, d)) / math.sqrt(H))
    return x + math.sqrt(sigma2) * rng.standard_normal((n, d))


def reconstruction_error(model, params, x, *, seed=None, n_samples=8):
    """dai2020 Eq. 7's reconstruction errors, per restart.

    Autoencoder: (1/(N d)) sum_i ||x_i - f(g(x_i))||^2. Gaussian VAE: (1/(N d)) sum_i
    E_q(z|x_i) ||x_i - mu_x(z)||^2, with ``n_samples`` draws of z per point (seed needed).

    Parameters
    ----------
    model : ``Autoencoder`` or ``GaussianVAE``; params : its parameters (restarts axis allowed).
    x : (N, d) data.

    Returns
    -------
    ndarray () or (R,)
    """
    x = _checks.array("x", x, ndim=2)
    xa = asarray(x)
    if isinstance(model, Autoencoder):
        r = model.decode(params, model.encode(params, xa)) - xa
        return to_host((r * r).mean(axis=(-2, -1)))
    if not isinstance(model, GaussianVAE):
        raise TypeError(f"model must be an Autoencoder or a GaussianVAE, got {type(model).__name__}")
    n_samples = _checks.integer("n_samples", n_samples, min_value=1)
    rng = make_rng(seed)
    mu, lv = model.encode(params, xa)
    z, _ = reparameterize(mu, lv, normal(rng, (n_samples,) + tuple(mu.shape)))
    r = model.decode(params, z)[0] - xa
    return to_host((r * r).mean(axis=(0, -2, -1)))


DEPTH_KINDS = ("ae", "vae", "vae_warm")


@dataclass
class DepthResult:
    """Outcome of ``depth_experiment``: per model kind, arrays over depths D, checkpoints C and restarts R.

    ``errors`` (D, R): dai2020 Eq. 7 reconstruction errors at the end of training
    (``reconstruction_error``); ``error_trace`` (D, C, R): the same error at the ``checkpoints`` (C,)
    steps (the last is ``steps``), evaluated with the same noise draws at every checkpoint so that
    a change is training, not Monte Carlo noise; ``active_units`` (D, R): Burda et al.'s count on the
    encoder means (VAE kinds only); ``sigma_near_one`` (D, R): the fraction of encoder standard
    deviations sigma_z above 0.9 (dai2020 Fig. 2's sign of collapse; VAE kinds); ``sigma2`` (D, R):
    the learned gamma (VAE kinds). ``data_variance``: (1/(N d)) sum ||x - xbar||^2, the error of the
    collapsed reconstruction xbar. Restart r of every kind at one depth starts from the same networks
    (``depth_experiment``), so kinds compare restart by restart.
    """
    depths: tuple
    kinds: tuple
    errors: dict
    error_trace: dict
    checkpoints: tuple
    active_units: dict
    sigma_near_one: dict
    sigma2: dict
    data_variance: float
    latent_dim: int
    width: int
    steps: int


def _ae_from_vae(params, vae, latent_dim):
    """An autoencoder's parameters from a VAE's: the same networks, the encoder's mu head as its code.

    The VAE encoder's last affine map outputs (mu, logvar) (2K columns); the autoencoder keeps the
    first K (mu), and drops the learned observation variance.
    """
    last = f"enc.{len(vae.encoder.layers) - 1}."
    out = {k: v for k, v in params.items() if k != "dec.obs_logvar"}
    out[last + "W"] = params[last + "W"][..., :latent_dim]
    out[last + "b"] = params[last + "b"][..., :latent_dim]
    return out


def _depth_run(x, L, kind, *, base, latent_dim, width, steps, restarts, activation, residual, batch_size, lr,
               warmup, n_eval_samples, checkpoints, progress):
    """Train R models of one kind at depth L; the entries of ``DepthResult`` for them (a dict)."""
    N, d = x.shape
    K, hidden = latent_dim, (width,) * L
    vae = GaussianVAE.from_sizes(d, K, hidden, activation, obs="scalar", sigma2=1.0, residual=residual)
    # one initialisation per depth, shared by every kind: restart r of the AE and of the VAEs start
    # from the same networks (the AE takes the VAE encoder's mu head), so kinds pair by restart
    p0 = vae.init(np.random.default_rng([base, L]), restarts=restarts)
    if kind == "ae":
        model = Autoencoder.from_sizes(d, K, hidden, activation, residual=residual)
        p0 = _ae_from_vae(p0, vae, K)
    else:
        model = vae
    sub = np.random.default_rng([base, L, 1 + DEPTH_KINDS.index(kind)])
    schedules = {"beta": linear_ramp(0.0, 1.0, warmup)} if kind == "vae_warm" else None
    trace = []

    def cb(t, p, terms):
        if progress is not None and t % 50 == 0:
            progress(t / steps)
        if t + 1 in checkpoints:
            # the same draws at every checkpoint: the trace moves only with training
            trace.append(np.atleast_1d(reconstruction_error(model, p, x, seed=np.random.default_rng([base, L, 99]),
                                                            n_samples=n_eval_samples)))
        return False

    res = fit(model, p0, x, steps=steps, seed=sub, batch_size=batch_size, optimizer=Adam(lr), schedules=schedules,
              callback=cb)
    p = res.params
    out = {"trace": np.stack(trace)}
    if kind != "ae":
        mu, lv = (to_host(a) for a in model.encode(p, asarray(x)))
        out["units"] = np.atleast_1d(active_units(mu))
        out["near_one"] = np.atleast_1d((np.exp(lv / 2) > 0.9).mean(axis=(-2, -1)))
        out["gamma"] = np.exp(to_host(p["dec.obs_logvar"])[..., 0])
    return out


def depth_experiment(x, depths, *, latent_dim, width, steps, restarts, seed, kinds=("ae", "vae"),
                     activation="relu", residual=False, batch_size=64, lr=1e-3, warmup=None,
                     n_eval_samples=8, checkpoints=5, runs=None, progress=None):
    """Autoencoders and VAEs of increasing depth on the same data (dai2020 Sec. 5-6, Fig. 1 top).

    For each depth L the encoder is an MLP d -> width^L -> (K or 2K) and the decoder its mirror
    (``refvae.layers.mlp``; ``residual=True`` makes every hidden-to-hidden map a
    ``ResidualBlock``, Fig. 1 bottom's family), and R restarts of each kind are trained with
    Adam(lr) on minibatches for ``steps`` steps:

    - ``"ae"``: the deterministic autoencoder, squared error (``refvae.objectives.Autoencoder``);
    - ``"vae"``: the Gaussian VAE with a learned scalar gamma (dai2020 Eq. 3);
    - ``"vae_warm"``: the same VAE with KL warm-start, beta ramped linearly from 0 to 1 over the
      first ``warmup`` steps (``refvae.train.linear_ramp`` as a ``"beta"`` schedule).

    Seeds: one base number is drawn from ``seed``; the networks of depth L come from (base, L) and
    are shared by every kind (restart r of the AE, the VAE and the warm-started VAE start from the
    same weights; the AE uses the VAE encoder's mu head), and each (L, kind) trains on its own
    stream (base, L, kind). A run therefore does not depend on which other depths or kinds are
    trained, which is what lets ``runs`` share them between experiments.

    Parameters
    ----------
    x : (N, d) data.
    depths : sequence of hidden-layer counts (>= 1).
    latent_dim : K; width : hidden width; steps : training steps per model; restarts : R.
    seed : int or Generator.
    kinds : subset of ``DEPTH_KINDS``.
    activation, residual : network family; batch_size, lr : optimiser settings.
    warmup : length of the KL ramp (default steps // 2).
    n_eval_samples : draws of z per point for the VAE reconstruction error.
    checkpoints : int >= 4, the number of evenly spaced steps (the last is ``steps``) at which the
        reconstruction error is recorded (``DepthResult.error_trace``; ``refvae.verify.rules``
        needs at least 4 to tell a run still improving).
    runs : optional dict, a memo of finished runs keyed by every setting (data included): runs found
        there are reused, new ones added. Two experiments on the same data and settings share it.
    progress : optional callable(fraction).

    Returns
    -------
    DepthResult
    """
    x = np.asarray(_checks.array("x", x, ndim=2))
    N, d = x.shape
    depths = tuple(_checks.integer(f"depths[{i}]", L, min_value=1) for i, L in enumerate(depths))
    if not depths:
        raise ValueError("depths must list at least one depth")
    kinds = tuple(_checks.choice("kinds", k, DEPTH_KINDS) for k in kinds)
    K = _checks.integer("latent_dim", latent_dim, min_value=1)
    width = _checks.integer("width", width, min_value=1)
    steps = _checks.integer("steps", steps, min_value=5)
    R = _checks.integer("restarts", restarts, min_value=1)
    batch_size = min(_checks.integer("batch_size", batch_size, min_value=1), N)
    lr = _checks.scalar("lr", lr, positive=True)
    warmup = steps // 2 if warmup is None else _checks.integer("warmup", warmup, min_value=1)
    n_eval_samples = _checks.integer("n_eval_samples", n_eval_samples, min_value=1)
    C = _checks.integer("checkpoints", checkpoints, min_value=4)
    if C > steps:
        raise ValueError(f"checkpoints must be <= steps ({steps}), got {C}")
    if runs is not None and not isinstance(runs, dict):
        raise TypeError(f"runs must be a dict (a memo of finished runs) or None, got {type(runs).__name__}")
    marks = tuple(int(round(steps * (c + 1) / C)) for c in range(C))
    base = int(make_rng(seed).integers(2 ** 63))
    settings = dict(base=base, latent_dim=K, width=width, steps=steps, restarts=R, activation=activation,
                    residual=bool(residual), batch_size=batch_size, lr=lr, warmup=warmup,
                    n_eval_samples=n_eval_samples, checkpoints=marks)
    data_key = (x.shape, zlib.crc32(np.ascontiguousarray(x).tobytes()))
    # cost of a run ~ its number of layers: progress in those units
    total = sum(len(kinds) * (L + 1) for L in depths)
    done, found = 0, {}
    for L in depths:
        for kind in kinds:
            key = (data_key, L, kind, tuple(sorted(settings.items())))
            if runs is not None and key in runs:
                found[L, kind] = runs[key]
            else:
                prog = None if progress is None else (lambda f, done=done, L=L: progress((done + (L + 1) * f) / total))
                found[L, kind] = _depth_run(x, L, kind, progress=prog, **settings)
                if runs is not None:
                    runs[key] = found[L, kind]
            done += L + 1
    trace = {k: np.stack([found[L, k]["trace"] for L in depths]) for k in kinds}      # (D, C, R)
    vae_kinds = [k for k in kinds if k != "ae"]
    pick = {name: {k: np.stack([found[L, k][name] for L in depths]) for k in vae_kinds}
            for name in ("units", "near_one", "gamma")}
    return DepthResult(depths=depths, kinds=kinds, errors={k: v[:, -1] for k, v in trace.items()},
                       error_trace=trace, checkpoints=marks, active_units=pick["units"],
                       sigma_near_one=pick["near_one"], sigma2=pick["gamma"],
                       data_variance=float(np.mean((x - x.mean(axis=0)) ** 2)), latent_dim=K, width=width,
                       steps=steps)

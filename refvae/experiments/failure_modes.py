"""yacoby2021's failure modes of VAEs (Yacoby, Pan, Doshi-Velez, "Failure Modes of VAEs and Their
Effects on Downstream Tasks"): the experiments behind its claims in ``refvae verify``.

yacoby2021 argues that the ELBO's global optimum trades the quality of the generative model
p_theta(x) for posteriors that a mean-field Gaussian (MFG) can match (its Theorem 1, docs/math.md 4.3),
and that a learned noise variance inherits every error of q (Theorem 2, docs/math.md 4.5). Its
benchmarks (docs/math.md 5, ``refvae.datasets``) are 1-D-latent sets whose exact log p(x) refvae
computes by quadrature (``refvae.metrics.quadrature``), for the ground truth and for a learned
decoder alike.

- ``px_experiment`` (Sec. 4.2, Fig. 1): VAE, IWAE (Burda et al.; docs/math.md 2.1) and Lagging
  Inference Networks (LIN, docs/math.md 2.3) on one benchmark; held-out log-likelihood by
  quadrature and the smooth k-NN statistic (docs/math.md 3) of model samples against held-out data.
  Figure-8 and Clusters should separate the VAE from IWAE; Circle and Absolute-Value should not.
- ``noise_bias_experiment`` (Sec. 4.2, Theorem 2): on Spiral Dots, the ELBO-optimal noise
  variance refitted for a trained (theta, phi) and the one learned jointly, against the true 0.01.
- ``latent_dim_experiment`` (Sec. 5.1, App. D.3): the ELBO of K = 1 and K = 2 VAEs with a learned
  noise on data whose truth has K = 1 (``refvae.datasets.compression``).
- Sec. 5.2 (M2 functional collapse) lives in ``refvae.experiments.m2_collapse``.

Every model is a ``GaussianVAE`` with MLP networks of ``hidden`` tanh units and, for
the p(x) experiments, the observation variance fixed at the data's true one (0.01), so only the
decoder mean and the encoder are learned (our choice: yacoby2021's App. C with its settings is
lost, and a fixed true noise keeps Theorem 2's bias out of Theorem 1's experiments). Restarts are
a leading axis R of the parameters (one array program); results are arrays (R,). Each training
is ``fit_stages`` under a piecewise-constant Adam learning rate (``schedule``: a list of
(learning rate, steps)).

Restarts of different methods share their initialisation (and, where the experiment allows, the
data and minibatch stream), so the claims compare them restart by restart
(``refvae.verify.rules``).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

import analytic.noise

from .. import _checks, datasets
from ..backend import make_rng, normal, to_host
from ..distributions import reparameterize
from ..iwae import IWAE
from ..lin import fit_lin
from ..metrics import quadrature
from ..metrics.information import active_units
from ..metrics.likelihood import importance_log_likelihood
from ..objectives import GaussianVAE, take_restart
from ..optim import Adam
from ..train import check_stages, fit_stages
from .jtex import knn_score, model_samples
from .noise_modes import mc_elbo

__all__ = [
    "restart", "encoder_residuals", "quadrature_log_likelihood", "vae_log_likelihood",
    "make_vae", "MethodPX", "PXResult", "px_experiment",
    "NoiseBiasResult", "noise_bias_experiment",
    "LatentDimResult", "latent_dim_experiment",
    "PAPER_NOISE",
]

#: yacoby2021 Sec. 4.2 (Spiral Dots, true noise 0.01): (mean, sd) of the refitted and of the jointly
#: learned noise variance.
PAPER_NOISE = {"true": 0.01, "refit": (0.014, 0.001), "joint": (0.020, 0.003)}


# ==================================================================================== helpers

def _n_restarts(params):
    return int(next(v for k, v in params.items() if k.endswith(".W")).shape[0])


def encoder_residuals(model, params, x, rng, n_samples):
    """Squared residuals (x - f(z))^2 with z ~ q(z|x) from the model's own encoder.

    Their mean is yacoby2021 Theorem 2's ELBO-optimal noise variance for fixed (theta, phi)
    (``analytic.noise.optimal_variance``; docs/math.md 4.5).

    Parameters
    ----------
    model : GaussianVAE; params : its parameters (restarts axis R allowed).
    x : (N, d); rng : numpy.random.Generator; n_samples : int >= 1, draws S per point.

    Returns
    -------
    ndarray (S, R?, N, d) on the host.
    """
    n_samples = _checks.integer("n_samples", n_samples, min_value=1)
    mu, lv = model.encode(params, x)
    z, _ = reparameterize(mu, lv, normal(rng, (n_samples,) + tuple(mu.shape)))
    return to_host((x - model.decode(params, z)[0]) ** 2)


def quadrature_log_likelihood(decode, x, latent_dim=1, *, grid_size=None, max_grid_size=None, breakpoints=None):
    """Exact log p(x_n) by ``refvae.metrics.quadrature``, refining the nodes until they resolve.

    A learned decoder can be much steeper than the ground truth (IWAE's are), so its posteriors
    can be narrower than the default nodes resolve; the quadrature's self-check then warns. Here
    the node count is doubled until the check passes or ``max_grid_size`` is reached.

    Parameters
    ----------
    decode : callable z (G, K) -> (mean (G, d), log-variance broadcastable to (G, d), or a float).
    x : (N, d) points.
    latent_dim : 1 or 2.
    grid_size : starting nodes per axis (quadrature's default: 6400 for K = 1, 480 for K = 2).
    max_grid_size : largest nodes per axis tried (default 8 times the start).
    breakpoints : as ``quadrature.log_likelihood`` (K = 1).

    Returns
    -------
    log_px : ndarray (N,)
    resolved : bool, whether the self-check passed at the last grid tried.
    """
    start = {1: 6400, 2: 480}.get(latent_dim) if grid_size is None else grid_size
    start = _checks.integer("grid_size", start, min_value=16)
    top = 8 * start if max_grid_size is None else _checks.integer("max_grid_size", max_grid_size, min_value=start)

    def mean_var(z):
        mean, lv = decode(z)
        return np.asarray(to_host(mean)), np.exp(np.asarray(to_host(lv), dtype=float))

    g = start
    while True:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", quadrature.QuadratureWarning)
            log_px = quadrature.log_likelihood(x, mean_var, latent_dim, grid_size=g, breakpoints=breakpoints)
        resolved = not any(issubclass(w.category, quadrature.QuadratureWarning) for w in caught)
        if resolved or 2 * g > top:
            return log_px, resolved
        g *= 2


def vae_log_likelihood(model, params, x, **kwargs):
    """Held-out log p_theta(x_n) of a K = 1 or 2 ``GaussianVAE`` by quadrature, per restart.

    Returns
    -------
    log_px : ndarray (R, N) (a restarts axis is required).
    resolved : bool array (R,) (see ``quadrature_log_likelihood``).
    """
    out, ok = [], []
    for r in range(_n_restarts(params)):
        pr = take_restart(params, r)
        ll, res = quadrature_log_likelihood(lambda z, pr=pr: model.decode(pr, z), x, model.latent_dim, **kwargs)
        out.append(ll)
        ok.append(res)
    return np.asarray(out), np.asarray(ok)


def make_vae(data_dim, latent_dim, hidden, *, obs="fixed", sigma2=datasets.DEFAULT_SIGMA2):
    """The MLP ``GaussianVAE`` of every experiment here: tanh hidden layers ``hidden`` (mirrored
    in the decoder), observation variance fixed at (or, learned, starting from) ``sigma2``."""
    return GaussianVAE.from_sizes(data_dim, latent_dim, hidden=tuple(hidden), activation="tanh", obs=obs,
                                  sigma2=sigma2)


def _progress(progress, fraction, message):
    if progress is not None:
        progress(min(max(fraction, 0.0), 1.0), message)


def _truth_noise(ds):
    nv = ds.truth.sigma2
    if nv is None or np.ndim(nv) != 0:
        raise ValueError(f"data set {ds.name!r} must have a constant scalar noise variance")
    return float(nv)


# ==================================================================================== p(x): Sec. 4.2

@dataclass
class MethodPX:
    """One method of ``px_experiment``, R restarts.

    test_ll : (R,) mean held-out log p_theta(x) per point (quadrature, all constants).
    knn, knn_se : (R,) smooth k-NN statistic of model samples against held-out data (yacoby2020's
        protocol: ``size`` vs ``size`` points, averaged over ``repeats``; lower is closer) and its
        standard error over the repeats.
    objective : (R,) the method's own training objective at the end (per point, higher is
        better: the ELBO for VAE and LIN, the IWAE bound L_S for IWAE), on the training data.
    resolved : (R,) whether the quadrature resolved every posterior of the learned decoder.
    """
    test_ll: np.ndarray
    knn: np.ndarray
    knn_se: np.ndarray
    objective: np.ndarray
    resolved: np.ndarray

    @property
    def selected(self):
        """Index of the restart with the best training objective (yacoby2021's model selection)."""
        return int(np.argmax(self.objective))


@dataclass
class PXResult:
    """``px_experiment``'s numbers.

    dataset : name of the benchmark.
    truth_ll : mean held-out log p(x) per point of the ground truth (the ceiling).
    truth_knn, truth_knn_se : the k-NN statistic of fresh ground-truth samples against the held-out
        data (its level when the model is exact; about 0).
    methods : {"VAE", "IWAE", "LIN"} -> MethodPX (LIN only when run).
    samples : {label -> (n, d) samples of the selected restart, "truth" -> (n, d)}, for figures.
    settings : the sizes and budgets used.
    """
    dataset: str
    truth_ll: float
    truth_knn: float
    truth_knn_se: float
    methods: dict
    samples: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


def px_experiment(name, *, seed, restarts=3, n_train=256, n_test=500, hidden=(32, 32),
                  schedule=((1e-2, 3000), (3e-3, 1500)), tail=((1e-3, 500),), batch_size=64,
                  iwae_samples=20, iwae_start="vae", lin=True, n_val=128,
                  knn_size=100, knn_repeats=20, objective_samples=20, progress=None):
    """VAE vs IWAE (vs LIN) on a 1-D-latent benchmark of yacoby2021 (Sec. 4.2, Fig. 1; docs/math.md 5).

    Protocol. All models share the architecture (``make_vae``, noise fixed at the truth's),
    the random initialisation (the same R restarts) and the total step budget.

    Every stage runs on minibatches of ``batch_size`` (Adam restarted per stage, ``fit_stages``).

    - VAE: ``schedule``, then ``tail``.
    - IWAE with S = ``iwae_samples``: ``iwae_start="init"`` trains from the same initialisation
      through ``schedule`` then ``tail``, as yacoby2021 does; ``iwae_start="vae"`` instead starts
      from the VAE's parameters after ``schedule`` and runs ``tail`` only, next to the VAE's own
      ``tail`` (same steps, batches and learning rates): the two then differ only in the bound
      optimised from one common point, which asks Theorem 1's question directly (is the VAE's
      solution optimal for p(x) once q may be richer?) at a fraction of the cost of training IWAE
      (S times a VAE step) from scratch.
    - LIN (``lin=True``): ``refvae.lin.fit_lin`` (aggressive encoder phase, then joint) during the
      first stage of ``schedule``, I_q estimated on ``n_val`` held-out points once an epoch; then
      the remaining stages and ``tail`` as the VAE.

    The VAE's and LIN's reported objective is the ELBO, IWAE's its bound L_S (both per point on
    the training data); yacoby2021 selects the restart with the best objective (``MethodPX.selected``).

    Parameters
    ----------
    name : a 1-D-latent data set of ``refvae.datasets`` ("figure8", "clusters", "circle",
        "absolute_value", "spiral_dots").
    seed : int or numpy Generator (data, initialisation, training, evaluation).
    restarts : int >= 2.
    n_train, n_test : training and held-out points.
    hidden : hidden widths of the MLPs.
    schedule, tail : sequences of (learning rate, steps).
    batch_size : minibatch size of every stage.
    iwae_samples : S of IWAE (yacoby2021: 20).
    iwae_start : "vae" (continue from the VAE after ``schedule``) or "init" (yacoby2021's protocol).
    lin : also train LIN.
    n_val : held-out points for LIN's I_q estimates.
    knn_size, knn_repeats : the k-NN protocol (``refvae.experiments.jtex.knn_score``).
    objective_samples : samples per point when evaluating the final training objectives.
    progress : optional callable(fraction, message).

    Returns
    -------
    PXResult
    """
    restarts = _checks.integer("restarts", restarts, min_value=2)
    n_train = _checks.integer("n_train", n_train, min_value=8)
    knn_size = _checks.integer("knn_size", knn_size, min_value=2)
    n_test = _checks.integer("n_test", n_test, min_value=knn_size)
    schedule, tail = check_stages("schedule", schedule), check_stages("tail", tail)
    iwae_samples = _checks.integer("iwae_samples", iwae_samples, min_value=1)
    iwae_start = _checks.choice("iwae_start", iwae_start, ("vae", "init"))
    batch_size = min(_checks.integer("batch_size", batch_size, min_value=1), n_train)
    rng = make_rng(seed)
    ds = datasets.load(name, n_train, rng)
    if ds.truth.latent_dim != 1:
        raise ValueError(f"px_experiment needs a 1-D-latent data set, {name!r} has K = {ds.truth.latent_dim}")
    test, val = ds.sample(n_test, rng), ds.sample(n_val, rng)
    noise = _truth_noise(ds)
    vae = make_vae(ds.truth.data_dim, 1, hidden, sigma2=noise)
    iwae = IWAE(vae, iwae_samples)
    p0 = vae.init(rng, restarts)
    steps_main = sum(n for _, n in schedule)
    n_jobs = 3 + bool(lin)

    def stage_progress(job, total):
        return lambda t, p, terms: (t % 50 == 0 and _progress(progress, (job + t / max(total, 1)) / n_jobs,
                                                              ("VAE", "IWAE", "LIN", "evaluation")[job]))

    trained = {}
    p_vae, _ = fit_stages(vae, p0, ds.x, stages=schedule, seed=rng, batch_size=batch_size,
                          callback=stage_progress(0, steps_main))
    trained["VAE"], _ = fit_stages(vae, p_vae, ds.x, stages=tail, seed=rng, batch_size=batch_size)
    if iwae_start == "vae":
        p_iw = p_vae
    else:
        p_iw, _ = fit_stages(iwae, p0, ds.x, stages=schedule, seed=rng, n_samples=iwae_samples,
                             batch_size=batch_size, callback=stage_progress(1, steps_main))
    trained["IWAE"], _ = fit_stages(iwae, p_iw, ds.x, stages=tail, seed=rng, n_samples=iwae_samples,
                                    batch_size=batch_size)
    if lin:
        lr0, n0 = schedule[0]
        res = fit_lin(vae, p0, ds.x, x_val=val.x, steps=n0, seed=rng, batch_size=batch_size,
                      optimizer=Adam(lr0),
                      callback=lambda t, p, info: (info["inner"] == 0 and t % 50 == 0
                                                   and _progress(progress, (2 + t / max(n0, 1)) / n_jobs,
                                                                 "LIN")) and False)
        p_lin = res.params
        if len(schedule) > 1:
            p_lin, _ = fit_stages(vae, p_lin, ds.x, stages=schedule[1:], seed=rng, batch_size=batch_size)
        trained["LIN"], _ = fit_stages(vae, p_lin, ds.x, stages=tail, seed=rng, batch_size=batch_size)

    _progress(progress, (n_jobs - 1) / n_jobs, "evaluation")
    draw_data = lambda n, g: test.x[g.choice(n_test, size=n, replace=False)]   # noqa: E731
    methods = {}
    samples = {"truth": ds.truth.sample_x(normal(rng, (n_test, 1)), rng)}
    for label, params in trained.items():
        ll, ok = vae_log_likelihood(vae, params, test.x)
        knn, knn_se = knn_score(lambda n, g, p=params: model_samples(vae, p, n, g), draw_data, rng=rng,
                                repeats=knn_repeats, size=knn_size)
        if label == "IWAE":
            obj = _iwae_bound(iwae, params, ds.x, rng, iwae_samples)
        else:
            obj, _ = mc_elbo(vae, params, ds.x, seed=rng, n_samples=objective_samples, replicates=2)
        methods[label] = MethodPX(test_ll=ll.mean(axis=1), knn=np.asarray(knn), knn_se=np.asarray(knn_se),
                                  objective=np.asarray(obj), resolved=ok)
        samples[label] = np.asarray(to_host(model_samples(vae, take_restart(params, methods[label].selected),
                                                          n_test, rng)))
    truth_ll = float(quadrature.log_likelihood(test.x, **ds.truth.quadrature_args).mean())
    truth_knn, truth_knn_se = knn_score(lambda n, g: ds.truth.sample_x(g.standard_normal((n, 1)), g),
                                        draw_data, rng=rng, repeats=knn_repeats, size=knn_size)
    _progress(progress, 1.0, "done")
    settings = dict(n_train=n_train, n_test=n_test, restarts=restarts, hidden=tuple(hidden),
                    schedule=schedule, tail=tail, batch_size=batch_size, iwae_samples=iwae_samples,
                    iwae_start=iwae_start, lin=bool(lin), knn_size=knn_size, knn_repeats=knn_repeats,
                    sigma2=noise)
    return PXResult(dataset=name, truth_ll=truth_ll, truth_knn=float(truth_knn), truth_knn_se=float(truth_knn_se),
                    methods=methods, samples=samples, settings=settings)


def _iwae_bound(iwae, params, x, rng, n_samples, replicates=2):
    """Mean IWAE bound L_S per point (R,), averaged over ``replicates`` independent draws."""
    values = [to_host(iwae.bound(params, x, normal(rng, iwae.noise_shape(params, x.shape[0], n_samples))))
              .mean(axis=-1) for _ in range(replicates)]
    return np.mean(values, axis=0)


# ==================================================================================== Theorem 2

@dataclass
class NoiseBiasResult:
    """``noise_bias_experiment``'s numbers (all arrays (R,), one per restart).

    true_noise : the data's noise variance.
    sample_noise : the training sample's own noise variance: the mean of (x - f(z))^2 over points and
        coordinates with the true f and the z that generated each point (what a fit that knew f and
        every z would learn; it differs from ``true_noise`` by the sample's chance, about
        true_noise * sqrt(2 / (N d)) in sd).
    refit : the noise variance learned by gradient with (theta, phi) frozen at the fixed-noise VAE's
        end point (only ``dec.obs_logvar`` trained): a check on ``refit_closed_form``.
    refit_closed_form : Theorem 2's value for the same (theta, phi), the variance that maximises the
        ELBO (yacoby2021's "recompute sigma^2 that maximizes the ELBO"): the mean squared residual
        under the encoder (``analytic.noise.optimal_variance``), Monte Carlo with
        ``closed_form_samples`` draws per point.
    refit_closed_form_se : its Monte Carlo standard error.
    joint : the noise variance learned jointly with theta, phi from the same initialisation (the
        last iterate).
    joint_closed_form : Theorem 2's value for the jointly trained (theta, phi).
    fractions : (F,) fractions of the training budget at which both are also read.
    refit_at : (F, R) Theorem 2's value (= what a refit lands on) for the fixed-noise VAE's
        (theta, phi) after that fraction of its training (``snapshot_samples`` draws per point).
    joint_at : (F, R) the jointly learned variance after that fraction of its training.
    joint_trajectory : (T, R) the jointly learned variance after every step.
    refit_trajectory : (L, R) Theorem 2's value for the fixed-noise VAE after each of the last L
        steps of its training (the last ``record_last`` of the budget), each estimated on a fresh
        random minibatch of ``batch_size`` training points with one draw per point: single steps are
        noisy (about 12% for 64 points in 2-D), but unbiased, so that means over windows of
        hundreds of steps are precise; to judge whether the refit has settled, and its level there.
    """
    true_noise: float
    sample_noise: float
    refit: np.ndarray
    refit_closed_form: np.ndarray
    refit_closed_form_se: np.ndarray
    joint: np.ndarray
    joint_closed_form: np.ndarray
    fractions: np.ndarray
    refit_at: np.ndarray
    joint_at: np.ndarray
    joint_trajectory: np.ndarray
    refit_trajectory: np.ndarray
    settings: dict = field(default_factory=dict)


def _closed_form(model, params, x, rng, n_samples, chunk=32):
    """Theorem 2's scalar noise per restart (R,) and its Monte Carlo standard error (R,).

    The draws are taken ``chunk`` at a time (memory: chunk x R x N x hidden), their per-point means
    accumulated: ``optimal_variance`` of those means (Monte Carlo estimates of E_q[(x - f(z))^2]) is
    the mean over all draws. The standard error is over the draws, for this training set.
    """
    total = sq = None
    for start in range(0, n_samples, chunk):
        r2 = encoder_residuals(model, params, x, rng, min(chunk, n_samples - start))   # (s, R, N, d)
        per_point = r2.mean(axis=-1)                                   # (s, R, N): the scalar averages over d
        total = r2.sum(axis=0) if total is None else total + r2.sum(axis=0)
        sq = (per_point ** 2).sum(axis=0) if sq is None else sq + (per_point ** 2).sum(axis=0)
    mean = total / n_samples                                           # (R, N, d): E_q estimated per point
    s2 = np.array([analytic.noise.optimal_variance(mean[r], per_dim=False) for r in range(mean.shape[0])])
    var = np.maximum(sq - n_samples * mean.mean(axis=-1) ** 2, 0.0) / max(n_samples - 1, 1)   # (R, N) over draws
    se = np.sqrt(var.sum(axis=-1) / n_samples) / x.shape[0]
    return s2, se


def noise_bias_experiment(*, seed, restarts=3, n_train=1000, hidden=(32, 32),
                          schedule=((1e-2, 2000), (3e-3, 2000), (1e-3, 6000)), batch_size=64,
                          refit_schedule=((1e-2, 100), (1e-3, 100)), refit_samples=2, closed_form_samples=64,
                          snapshot_samples=32, fractions=(0.3, 0.6, 1.0), record_last=0.2,
                          dataset="spiral_dots", progress=None):
    """yacoby2021 Sec. 4.2 / Theorem 2 on Spiral Dots: how far the ELBO's noise variance is from the truth.

    1. A VAE with the noise fixed at the truth (0.01) is trained (``schedule``, minibatches of
       ``batch_size``).
    2. Refit: the variance that maximises the ELBO for the trained (theta, phi) is, by Theorem 2,
       the mean squared residual under the encoder over the training data (docs/math.md 4.5),
       computed with ``closed_form_samples`` draws per point and its Monte Carlo standard error.
       As a check, a learned scalar noise (starting at the truth) is also trained alone
       (``refit_schedule``, ``refit_samples`` draws per point) with theta, phi frozen: it lands on
       that value up to its own jitter.
    3. Joint: a learned-noise VAE (LS-VAE) from the same initialisation and on the same minibatch
       and noise stream, noise starting at the truth (the start most favourable to the truth), is
       trained with ``schedule``; its variance is recorded after every step (to judge whether it
       has settled).
    4. Budget: both are also read after each of ``fractions`` of the schedule's steps, in the
       same runs (snapshots, not shorter runs: before the last stage the learning rate is still
       high): Theorem 2's value for the fixed-noise VAE's (theta, phi) then (``snapshot_samples``
       draws per point) and the joint variance then.
    5. Settling: the joint variance is recorded after every step, and Theorem 2's value for the
       fixed-noise VAE after every step of the last ``record_last`` of the budget (one draw per
       point of a fresh minibatch: ``NoiseBiasResult.refit_trajectory``), so that a check can tell
       whether either still moves.

    The default schedule spends its last 60% at the smallest rate: the learned variance drops at
    each rate cut (the minibatch jitter of theta, phi adds to the residual, so the variance's level
    follows the rate) and then creeps down while the decoder's steps between the dots sharpen, so a
    settling check that compares the last two tenths of the steps needs both well inside the last
    stage. Measured on Spiral Dots (3 restarts, verify seeds 0-2, joint variance, change between the
    last two tenths): with the last stage 10% of 5000 steps or 20% of 6000, 2-16% in every restart
    (seed 0); with the last half of 8000 steps, up to 2.0% (seed 0) and 3.3% (seed 1); with the last
    60% of 10000 steps, at most 1.0% in all 9 restarts.

    Every variance is the scalar s2 of yacoby2021's Eq. 1 (sigma2 I).

    Returns
    -------
    NoiseBiasResult
    """
    restarts = _checks.integer("restarts", restarts, min_value=2)
    schedule, refit_schedule = check_stages("schedule", schedule), check_stages("refit_schedule", refit_schedule)
    n_train = _checks.integer("n_train", n_train, min_value=2)
    batch_size = min(_checks.integer("batch_size", batch_size, min_value=1), n_train)
    refit_samples = _checks.integer("refit_samples", refit_samples, min_value=1)
    closed_form_samples = _checks.integer("closed_form_samples", closed_form_samples, min_value=2)
    snapshot_samples = _checks.integer("snapshot_samples", snapshot_samples, min_value=2)
    fractions = np.asarray([_checks.scalar("fractions", f, positive=True, high=1.0) for f in fractions])
    record_last = _checks.scalar("record_last", record_last, positive=True, high=1.0)
    total = sum(n for _, n in schedule)
    steps_at = [max(1, int(round(f * total))) - 1 for f in fractions]         # the callback's (0-based) step
    if len(set(steps_at)) != len(steps_at) or steps_at != sorted(steps_at):
        raise ValueError(f"fractions must be increasing and fall on distinct steps of the {total}, got {fractions}")
    record_from = total - int(round(record_last * total))                    # first recorded (0-based) step
    if total - record_from < 4:                                               # rules.settled needs 4 steps
        raise ValueError(f"record_last must cover at least 4 of the {total} steps, got {record_last}")
    rng = make_rng(seed)
    ds = datasets.load(dataset, n_train, rng)
    noise = _truth_noise(ds)
    sample_noise = float(np.mean((ds.x - ds.truth.observation(ds.z)[0]) ** 2))
    fixed = make_vae(ds.truth.data_dim, 1, hidden, sigma2=noise)
    learned = make_vae(ds.truth.data_dim, 1, hidden, obs="scalar", sigma2=noise)
    p0 = fixed.init(rng, restarts)
    # one minibatch and noise stream for both trainings: they differ only in the learned variance, and
    # the evaluation draws below (their number set by the settings) never shift a training's stream
    train_seed = int(rng.integers(2 ** 63))
    at_step = {t: i for i, t in enumerate(steps_at)}
    ends = np.cumsum([n for _, n in schedule])
    rate_at = [float(schedule[int(np.searchsorted(ends, t, side="right"))][0]) for t in steps_at]
    snapshots, trajectory, refit_trajectory = {}, [], []

    def cb(offset, fixed_run=False):
        def call(t, p, terms):
            if fixed_run and t in at_step:
                snapshots[at_step[t]] = {k: np.array(to_host(v), copy=True) for k, v in p.items()}
            if fixed_run and t >= record_from:             # Theorem 2's value now, on a fresh minibatch
                batch = ds.x[rng.integers(0, n_train, batch_size)]
                r2 = encoder_residuals(fixed, p, batch, rng, 1)                   # (1, R, B, d)
                refit_trajectory.append([analytic.noise.optimal_variance(r2[:, r], per_dim=False)
                                         for r in range(restarts)])
            if "dec.obs_logvar" in p:                       # the joint run: its variance after every step
                trajectory.append(np.exp(np.asarray(to_host(p["dec.obs_logvar"]))[:, 0]))
            if t % 50 == 0:
                _progress(progress, (offset + t / total) / 2.2, "training")
        return call

    p_fixed, _ = fit_stages(fixed, p0, ds.x, stages=schedule, seed=train_seed, batch_size=batch_size,
                            callback=cb(0, True))
    start = {**p_fixed, "dec.obs_logvar": np.full((restarts, 1), math.log(noise))}
    _progress(progress, 1 / 2.2, "refit of the noise")
    p_refit, _ = fit_stages(learned, start, ds.x, stages=refit_schedule, seed=rng, n_samples=refit_samples,
                            batch_size=batch_size, only=("dec.obs_logvar",))
    cf, cf_se = _closed_form(fixed, p_fixed, ds.x, rng, closed_form_samples)
    refit_at = np.stack([_closed_form(fixed, snapshots[i], ds.x, rng, snapshot_samples)[0]
                         for i in range(len(fractions))])
    p_joint, _ = fit_stages(learned, {**p0, "dec.obs_logvar": start["dec.obs_logvar"]}, ds.x,
                            stages=schedule, seed=train_seed, batch_size=batch_size, callback=cb(1.1))
    cf_joint, _ = _closed_form(learned, p_joint, ds.x, rng, snapshot_samples)
    trajectory = np.asarray(trajectory)
    _progress(progress, 1.0, "done")
    var = lambda p: np.exp(np.asarray(to_host(p["dec.obs_logvar"]))[:, 0])   # noqa: E731
    return NoiseBiasResult(true_noise=noise, sample_noise=sample_noise, refit=var(p_refit), refit_closed_form=cf,
                           refit_closed_form_se=cf_se, joint=var(p_joint), joint_closed_form=cf_joint,
                           fractions=fractions, refit_at=refit_at, joint_at=trajectory[steps_at],
                           joint_trajectory=trajectory, refit_trajectory=np.asarray(refit_trajectory),
                           settings=dict(dataset=dataset, n_train=n_train, data_dim=ds.truth.data_dim,
                                         restarts=restarts, hidden=tuple(hidden), schedule=schedule,
                                         batch_size=batch_size, refit_schedule=refit_schedule,
                                         refit_samples=refit_samples, closed_form_samples=closed_form_samples,
                                         snapshot_samples=snapshot_samples, snapshot_steps=[t + 1 for t in steps_at],
                                         snapshot_rates=rate_at, record_from=record_from + 1))


# ==================================================================================== latent dimension

@dataclass
class LatentDimResult:
    """``latent_dim_experiment``'s numbers, per latent dimension K (dicts K -> array (R,)).

    elbo, elbo_se : held-out ELBO per point (all constants) and its Monte Carlo standard error.
    test_ll, test_ll_se : held-out log p_theta(x) per point: exact (quadrature, se 0) for K = 1,
        importance-sampled (``refvae.metrics.likelihood``) for K >= 2 with its standard error.
    sigma2 : learned observation variance.
    active : active latent units (Burda et al.; docs/math.md 3).
    truth_ll : the ground truth's held-out log p(x) per point; truth_elbo is not defined (it
        needs the true posterior's best MFG fit), so it is not reported.
    """
    elbo: dict
    elbo_se: dict
    test_ll: dict
    test_ll_se: dict
    sigma2: dict
    active: dict
    truth_ll: float
    settings: dict = field(default_factory=dict)


def latent_dim_experiment(*, seed, restarts=3, n_train=1000, n_test=500, hidden=(32, 32), latent_dims=(1, 2),
                          schedule=((1e-2, 3000), (3e-3, 1500), (1e-3, 500)), batch_size=64, elbo_samples=16,
                          is_samples=256, dataset="compression", progress=None):
    """yacoby2021 Sec. 5.1 (App. D.3): does the ELBO prefer more latent dimensions than the truth's K = 1?

    For each K in ``latent_dims`` a VAE with a learned scalar noise (starting at the true noise,
    0.01) is trained with ``schedule`` (minibatches of ``batch_size``) on ``refvae.datasets.compression`` (the
    Figure-8 curve, K = 1, in the plane); ELBO and log-likelihood are measured on held-out data.

    Returns
    -------
    LatentDimResult
    """
    restarts = _checks.integer("restarts", restarts, min_value=2)
    schedule = check_stages("schedule", schedule)
    latent_dims = [_checks.integer("latent_dims", k, min_value=1) for k in latent_dims]
    if 1 not in latent_dims:
        raise ValueError(f"latent_dims must include the truth's K = 1, got {latent_dims}")
    n_train = _checks.integer("n_train", n_train, min_value=2)
    batch_size = min(_checks.integer("batch_size", batch_size, min_value=1), n_train)
    rng = make_rng(seed)
    ds = datasets.load(dataset, n_train, rng)
    test = ds.sample(n_test, rng)
    noise = _truth_noise(ds)
    out = {k: {} for k in ("elbo", "elbo_se", "test_ll", "test_ll_se", "sigma2", "active")}
    total = sum(n for _, n in schedule)
    for i, K in enumerate(latent_dims):
        model = make_vae(ds.truth.data_dim, K, hidden, obs="scalar", sigma2=noise)
        cb = lambda t, p, terms, i=i: t % 50 == 0 and _progress(   # noqa: E731
            progress, (i + 0.8 * t / total) / len(latent_dims), f"K = {K}")
        params, _ = fit_stages(model, model.init(rng, restarts), ds.x, stages=schedule, seed=rng,
                               batch_size=batch_size, callback=cb)
        _progress(progress, (i + 0.8) / len(latent_dims), f"K = {K}: evaluation")
        out["elbo"][K], out["elbo_se"][K] = mc_elbo(model, params, test.x, seed=rng, n_samples=elbo_samples)
        if K <= 1:
            ll, _ = vae_log_likelihood(model, params, test.x)
            out["test_ll"][K], out["test_ll_se"][K] = ll.mean(axis=1), np.zeros(restarts)
        else:
            ll = np.asarray(to_host(importance_log_likelihood(model, params, test.x, seed=rng, n_samples=is_samples)))
            out["test_ll"][K] = ll.mean(axis=1)
            out["test_ll_se"][K] = ll.std(axis=1, ddof=1) / math.sqrt(n_test)
        out["sigma2"][K] = np.exp(np.asarray(to_host(params["dec.obs_logvar"]))[:, 0])
        out["active"][K] = np.asarray(active_units(model.encode(params, test.x)[0]))
    truth_ll = float(quadrature.log_likelihood(test.x, **ds.truth.quadrature_args).mean())
    _progress(progress, 1.0, "done")
    return LatentDimResult(**out, truth_ll=truth_ll,
                           settings=dict(dataset=dataset, n_train=n_train, n_test=n_test, restarts=restarts,
                                         hidden=tuple(hidden), schedule=schedule, batch_size=batch_size,
                                         is_samples=is_samples))

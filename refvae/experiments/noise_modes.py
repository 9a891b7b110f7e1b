"""berger2020's observation-noise modes on the three-noise-region manifold (Sec. 4, Table 1, App. A.2).

Berger and Sebag compare Gaussian VAEs that differ only in their observation variance s2
(docs/math.md 1):

- F-VAE: s2 fixed, sigma in {1, 0.5, 0.1, 0.05, 0.01} (standard deviations; docs/math.md 5);
- LS-VAE: one learned scalar s2, initialised at 1 (berger2020 App. A.2: "sigma is initialized to 1");
- LV-VAE: s2_j(z) output by the decoder next to the mean (berger2020 Eq. 11);
- F*-VAE: s2 fixed at the value LS-VAE ends with;
- F-VAE under LS-VAE's learned trajectory s2(t), replayed as an external schedule (App. A.2).

Their finding: LV-VAE > LS-VAE > the best F-VAE in ELBO, F*-VAE is worse than LS-VAE (the
route to s2 matters, not only its final value), and replaying the trajectory reproduces
LS-VAE. ``three_noise_experiment`` runs all of them with refvae on
``refvae.datasets.three_noise`` and scores each by its held-out ELBO with every normalising
constant included (docs/math.md 0), so the modes compare directly (the seed adds the missing
log-sigma terms to its F-VAE values for the same reason). It records, per restart, every mode's
observation-variance trajectory and its held-out ELBO at a few checkpoints, so that a verdict can
tell a settled run from one still annealing, and show how the ordering depends on the budget.

``mc_elbo`` (a Gaussian VAE's ELBO with many samples and its Monte Carlo standard error) is
shared by the other experiments; training runs through ``refvae.train.fit_stages``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import _checks, datasets
from ..backend import asarray, make_rng, normal, to_host
from ..distributions import reparameterize
from ..objectives import GaussianVAE
from ..metrics.likelihood import objective_estimate
from ..train import check_stages, fit_stages, from_trajectory

__all__ = ["mc_elbo", "ModeResult", "ThreeNoiseResult", "three_noise_experiment", "constant_variance_head",
           "F_VAE_SIGMAS", "MODES", "LV_INIT_SIGMA2", "SETTLING_SCHEDULE"]

#: berger2020's F-VAE grid, as standard deviations sigma (docs/math.md 5); s2 = sigma^2.
F_VAE_SIGMAS = (1.0, 0.5, 0.1, 0.05, 0.01)
#: the modes ``three_noise_experiment`` can train ("F" is the whole grid).
MODES = ("F", "LS", "LV", "F*", "F schedule")
#: LV-VAE's initial observation variance: the decoder's log-variance head starts constant at
#: log(LV_INIT_SIGMA2) (``constant_variance_head``). berger2020 gives no initialisation for LV-VAE. Measured
#: on the quick networks (32-32 ReLU MLPs, K = 2, batch 100, seed 0), held-out ELBO against LS-VAE
#: restart by restart: with 6000 steps (3e-3, then 1e-3) and 8 restarts, LV > LS in 7 of 8 restarts from
#: the default random head (s2(z) ~ 1 at the start), 6 of 8 from the head constant at LS-VAE's start
#: s2 = 1 (one restart stuck at mean s2 0.35, ELBO -1.73), and 8 of 8 from a constant 0.1 or 0.01 (s2
#: ending at 0.012-0.05); with 8000 steps at a constant 3e-3 and 4 restarts, the default head left 2 of
#: 4 stuck at mean s2 ~ 0.4 (ELBO -1.56, -1.75, below every F-VAE's best), the head at s2 = 1 left 1 of
#: 4, the head at 0.01 none. From s2 ~ 1, LV-VAE can lower its loss by raising s2(z) over the noisy
#: region before its mean has learned it (the "explain it away as noise" collapse); a small start makes
#: the reconstruction term dominate early, as in an F-VAE with sigma = 0.1, the F-VAE whose variance
#: this is (berger2020 App. A.1, Fig. 7(c)), and LV-VAE then raises s2(z) only where the data are noisy.
#: It lowers the risk without removing it: under ``SETTLING_SCHEDULE``, 1 of 9 restarts (two data seeds) still
#: ended stuck at mean s2 0.38 (ELBO -1.79).
LV_INIT_SIGMA2 = 0.01
#: The default Adam schedule (rate, steps): 6000 steps at 3e-3 for LS-VAE to leave its s2 plateau, then 1e-3
#: and 1e-4. On 32-32 MLPs, LS-VAE's and LV-VAE's variances had settled after it in 4 of 4 restarts on one data
#: seed, and in 5 of 5 (LS) and 3 of 5 (LV) on another (these and other schedules' measurements are in
#: refvae.verify.claims.berger2020.QUICK_SCHEDULE_MEASURED).
SETTLING_SCHEDULE = ((3e-3, 6000), (1e-3, 3000), (1e-4, 3000))


def mc_elbo(model, params, x, *, seed, n_samples=16, replicates=8, sigma2=None):
    """The model's ELBO per data point (all constants included) and its Monte Carlo standard error.

    The negative of ``refvae.metrics.likelihood.objective_estimate`` for a Gaussian VAE.

    Parameters
    ----------
    model : GaussianVAE-like objective; params : its parameters (restarts axis R allowed).
    x : (N, d) points; seed : int or Generator.
    n_samples, replicates : int >= 1 and >= 2.
    sigma2 : optional fixed observation variance for ``obs="fixed"`` (as ``value_and_grad``).

    Returns
    -------
    elbo, stderr : floats, or arrays (R,) with a restarts axis (host NumPy).
    """
    loss, se = objective_estimate(model, params, x, seed=seed, n_samples=n_samples, replicates=replicates,
                                  sigma2=sigma2)
    return -loss, se


def constant_variance_head(model, params, sigma2):
    """LV-VAE parameters whose observation variance starts constant at ``sigma2``.

    The decoder of a ``GaussianVAE`` with ``obs="decoder"`` outputs (mean, logvar) from its last affine
    map; this zeroes that map's logvar columns and sets their bias to log(sigma2), so s2_j(z) = sigma2
    for every z and j at the start, and the mean head and every other weight are left as they are.

    Parameters
    ----------
    model : GaussianVAE with ``obs="decoder"`` and an MLP decoder (``GaussianVAE.from_sizes``).
    params : its parameters (restarts axis allowed); not modified.
    sigma2 : float > 0.

    Returns
    -------
    dict, new parameters.
    """
    if getattr(model, "obs", None) != "decoder":
        raise ValueError(f"model must be a GaussianVAE with obs='decoder' (LV-VAE), got obs={getattr(model, 'obs', None)!r}")
    sigma2 = _checks.scalar("sigma2", sigma2, positive=True)
    d = model.data_dim
    last = f"dec.{len(model.decoder.layers) - 1}."
    W, b = to_host(params[last + "W"]).copy(), to_host(params[last + "b"]).copy()
    if W.shape[-1] != 2 * d:
        raise ValueError(f"the decoder's last layer must output 2 d = {2 * d} values (mean, logvar), "
                         f"got {W.shape[-1]}")
    W[..., :, d:] = 0.0
    b[..., d:] = np.log(sigma2)
    return {**params, last + "W": asarray(W), last + "b": asarray(b)}


@dataclass
class ModeResult:
    """One observation-noise mode trained with R restarts.

    label : "F sigma=0.1", "LS", "LV", "F*", "F schedule".
    elbo, elbo_se : (R,) held-out ELBO per point (all constants) and its Monte Carlo error.
    sigma2 : (R,) the final observation variance (for LV the mean of s2_j(z) over held-out
        reconstructions and coordinates).
    trajectory : (steps, R) the observation variance at every training step (the mean over the
        minibatch and coordinates for LV; constant for an F-VAE, the schedule for the replay).
    checkpoints : (C,) training steps at which the held-out ELBO was recorded (the last is ``steps``).
    checkpoint_elbo : (C, R) the held-out ELBO there (the same evaluation noise at every checkpoint; with
        ``checkpoint_eval`` fewer samples than ``elbo``, so the last row estimates ``elbo`` less precisely).
    diverged : restarts frozen after a divergence (``refvae.train`` with ``on_divergence="isolate"``).
    """
    label: str
    elbo: np.ndarray
    elbo_se: np.ndarray
    sigma2: np.ndarray
    trajectory: np.ndarray
    checkpoints: np.ndarray
    checkpoint_elbo: np.ndarray
    diverged: tuple = ()


@dataclass
class ThreeNoiseResult:
    """Outcome of ``three_noise_experiment``.

    modes : dict label -> ModeResult, in the order F grid, LS, LV, F*, F schedule (those trained).
    best_f : label of the F-VAE with the highest mean ELBO over restarts (None without the F grid).
    f_star_sigma2 : (R,) F*-VAE's fixed variance per restart: LS-VAE's final value in that restart.
    replayed_restart : which LS-VAE restart's trajectory the schedule replays (its median one by ELBO).
    true_log_likelihood : mean exact log p(x) of the held-out points under the ground truth
        (quadrature): the ceiling of every ELBO up to sampling error.
    """
    modes: dict
    best_f: str | None
    f_star_sigma2: np.ndarray | None
    replayed_restart: int | None
    true_log_likelihood: float
    settings: dict = field(default_factory=dict)


def _final_sigma2(model, params, x, rng, history):
    """Final observation variance per restart (R,): the learned value, or LV's mean over reconstructions."""
    if model.obs == "decoder":
        mu, lv = model.encode(params, x)
        _, obs_lv = model.decode(params, reparameterize(mu, lv, normal(rng, mu.shape))[0])
        return np.atleast_1d(np.exp(to_host(obs_lv)).mean(axis=(-2, -1)))
    return np.atleast_1d(np.asarray(history["sigma2"])[-1])


def three_noise_experiment(*, seed, restarts=3, n_train=20000, n_test=2000, latent_dim=2, hidden=(32, 32),
                           activation="relu", residual=False, schedule=SETTLING_SCHEDULE, batch_size=100,
                           sigmas=F_VAE_SIGMAS, lv_init_sigma2=LV_INIT_SIGMA2, modes=MODES, checkpoints=5,
                           eval_samples=16, eval_replicates=4, checkpoint_eval=None, progress=None):
    """Train F-VAE (grid), LS-VAE, LV-VAE, F*-VAE and the replayed schedule; score held-out ELBOs.

    berger2020 Sec. 4.1-4.2 and App. A.2 on ``refvae.datasets.three_noise`` (docs/math.md 5): every
    mode has the same MLP encoder and decoder (the seed: ResNets of 4 blocks of 200 units, a
    "large sample" of 100 fresh points per batch; here a pool of ``n_train`` points sampled in
    minibatches of ``batch_size``), the same initial networks (restart r of every mode starts
    from the same weights; LV-VAE's decoder has twice the outputs, mean and log-variance per
    coordinate as in berger2020 App. B, and shares every other weight) and the same Adam schedule.
    F*-VAE restart r is fixed at LS-VAE restart r's final variance (so F* and LS pair by restart);
    the replayed schedule follows the trajectory of LS-VAE's median restart (by held-out ELBO) from
    every restart's initial weights (all but one of them different from that run's, as in App. A.2).
    Held-out ELBOs come from ``mc_elbo`` (all normalising constants, docs/math.md 0).

    Parameters
    ----------
    seed : int or numpy.random.Generator.
    restarts : int >= 1, R independent models per mode (the restarts axis).
    n_train, n_test : sizes of the training pool and of the held-out set.
    latent_dim : K. hidden : widths of the hidden layers of encoder and decoder.
    activation : hidden activation (``refvae.layers.ACTIVATIONS``). The default ReLU (the seed's
        ResNets do not name theirs) left LS-VAE's variance plateau near 0.1 about twice as
        fast as tanh in our runs (3000 steps: s2 0.05 vs 0.09).
    residual : hidden -> hidden maps of equal width as residual blocks (berger2020: a ResNet of 4
        blocks of 200 units is ``hidden=(200,) * 5, residual=True``).
    schedule : sequence of (Adam learning rate, steps) stages (``fit_stages``); default ``SETTLING_SCHEDULE``.
    batch_size : minibatch size.
    sigmas : F-VAE grid of standard deviations (berger2020: 1, 0.5, 0.1, 0.05, 0.01).
    lv_init_sigma2 : LV-VAE's initial observation variance (``constant_variance_head``; see
        ``LV_INIT_SIGMA2`` for the measured choice), or None for the decoder's default random head.
    modes : which of ``MODES`` to train ("F*" and "F schedule" need "LS").
    checkpoints : int >= 1, evenly spaced steps (the last is the end) at which every mode's held-out
        ELBO is recorded (``ModeResult.checkpoint_elbo``).
    eval_samples, eval_replicates : ``mc_elbo`` settings of the held-out score.
    checkpoint_eval : (n_samples, replicates) of the checkpoint scores, cheaper than the final one where
        only their trend is needed; None: the final score's settings, and then the last checkpoint is the
        final score.
    progress : optional callable(fraction, message).

    Returns
    -------
    ThreeNoiseResult
    """
    from ..metrics.quadrature import log_likelihood

    restarts = _checks.integer("restarts", restarts, min_value=1)
    sigmas = [_checks.scalar(f"sigmas[{i}]", s, positive=True) for i, s in enumerate(sigmas)]
    modes = tuple(_checks.choice("modes", m, MODES) for m in modes)
    if "F" in modes and not sigmas:
        raise ValueError("sigmas must hold at least one F-VAE standard deviation")
    if ({"F*", "F schedule"} & set(modes)) and "LS" not in modes:
        raise ValueError(f"modes 'F*' and 'F schedule' replay LS-VAE's variance: include 'LS', got {modes}")
    if lv_init_sigma2 is not None:
        lv_init_sigma2 = _checks.scalar("lv_init_sigma2", lv_init_sigma2, positive=True)
    stages = check_stages("schedule", schedule)
    total_steps = sum(s for _, s in stages)
    C = _checks.integer("checkpoints", checkpoints, min_value=1)
    eval_samples = _checks.integer("eval_samples", eval_samples, min_value=1)
    eval_replicates = _checks.integer("eval_replicates", eval_replicates, min_value=2)
    if checkpoint_eval is None:
        ck_samples, ck_replicates = eval_samples, eval_replicates
    else:
        try:
            ck_samples, ck_replicates = checkpoint_eval
        except (TypeError, ValueError):
            raise ValueError(f"checkpoint_eval must be None or (n_samples, replicates), "
                             f"got {checkpoint_eval!r}") from None
        ck_samples = _checks.integer("checkpoint_eval[0]", ck_samples, min_value=1)
        ck_replicates = _checks.integer("checkpoint_eval[1]", ck_replicates, min_value=2)
    if C > total_steps:
        raise ValueError(f"checkpoints must be <= the number of steps {total_steps}, got {C}")
    marks = np.array([int(round(total_steps * (c + 1) / C)) for c in range(C)])
    hidden = tuple(hidden)
    rng = make_rng(seed)
    train = datasets.three_noise(n_train, rng)
    test = datasets.three_noise(n_test, rng)
    x, xt = np.asarray(train.x), np.asarray(test.x)
    true_ll = float(np.mean(log_likelihood(xt, **train.truth.quadrature_args)))
    init_seed = int(rng.integers(2 ** 63))
    n_runs = (len(sigmas) if "F" in modes else 0) + sum(m in modes for m in MODES[1:])
    out = {}

    def run(label, obs, sigma2, *, schedules=None, fixed=None, eval_sigma2=None):
        """Train one mode. ``fixed``: per-restart variances (R,) held fixed (the learned log-variance
        frozen: an F-VAE with a variance per restart); ``eval_sigma2``: step -> variance of an
        external schedule (obs="fixed")."""
        i = len(out)
        # one stream per mode, so that a mode's training does not depend on how much noise the
        # evaluations before it drew
        own = np.random.default_rng(rng.integers(2 ** 63))
        eval_seed = int(own.integers(2 ** 63))
        model = GaussianVAE.from_sizes(2, latent_dim, hidden=hidden, activation=activation,
                                       obs="scalar" if fixed is not None else obs, sigma2=sigma2, residual=residual)
        params = model.init(np.random.default_rng(init_seed), restarts)   # same init for every mode
        only = None
        if obs == "decoder" and lv_init_sigma2 is not None:
            params = constant_variance_head(model, params, lv_init_sigma2)
        if fixed is not None:
            params["dec.obs_logvar"] = asarray(np.log(np.asarray(fixed, dtype=float)).reshape(restarts, 1)
                                               * np.ones((restarts, 1)))
            only = tuple(k for k in params if k != "dec.obs_logvar")
        ckpt, last = [], {}

        def score(p, s2, n_samples=eval_samples, replicates=eval_replicates):
            # the same evaluation noise at every checkpoint: the ELBO trace moves only with training
            return mc_elbo(model, p, xt, seed=np.random.default_rng(eval_seed), n_samples=n_samples,
                           replicates=replicates, sigma2=s2)

        def cb(t, p, terms):
            if progress is not None and t % 50 == 0:
                progress((i + t / total_steps) / n_runs, f"{label} step {t}")
            if t + 1 in marks:
                last["params"], last["score"] = p, score(p, None if eval_sigma2 is None else eval_sigma2(t),
                                                         ck_samples, ck_replicates)
                ckpt.append(np.atleast_1d(last["score"][0]))
            return False

        res = fit_stages(model, params, x, stages=stages, seed=own, batch_size=batch_size, schedules=schedules,
                         only=only, callback=cb)
        s2_end = None if eval_sigma2 is None else eval_sigma2(total_steps - 1)
        # the last checkpoint scored the final parameters already (with the final settings, unless
        # checkpoint_eval), unless the end of the run replaced them (a restart frozen by the final scan)
        reuse = checkpoint_eval is None and last.get("params") is res.params
        elbo, se = last["score"] if reuse else score(res.params, s2_end)
        if fixed is not None:
            s2 = np.asarray(fixed, dtype=float)
        elif eval_sigma2 is not None:
            s2 = np.full(restarts, s2_end)
        else:
            s2 = _final_sigma2(model, res.params, xt, own, res.history)
        traj = np.asarray(res.history["sigma2"], dtype=float).reshape(total_steps, -1)
        if traj.shape[1] != restarts:                     # a variance shared by every restart (a schedule)
            traj = np.repeat(traj[:, :1], restarts, axis=1)
        out[label] = ModeResult(label, np.atleast_1d(elbo), np.atleast_1d(se), np.atleast_1d(s2), traj, marks.copy(),
                                np.stack(ckpt), tuple(getattr(res, "diverged", ()) or ()))
        return out[label]

    if "F" in modes:
        for s in sigmas:
            run(f"F sigma={s:g}", "fixed", s * s)
    ls = run("LS", "scalar", 1.0) if "LS" in modes else None
    if "LV" in modes:
        run("LV", "decoder", 1.0)
    f_star, pick = None, None
    if "F*" in modes:
        f_star = ls.sigma2.copy()
        run("F*", "fixed", 1.0, fixed=f_star)
    if "F schedule" in modes:
        # App. A.2 replays one LS-VAE run's trajectory: the median restart by held-out ELBO
        order = np.argsort(ls.elbo)
        pick = int(order[len(order) // 2])
        traj = ls.trajectory[:, pick]
        sched = from_trajectory(traj)
        run("F schedule", "fixed", float(traj[0]), schedules={"sigma2": sched}, eval_sigma2=sched)
    f_labels = [k for k in out if k.startswith("F sigma=")]
    best_f = max(f_labels, key=lambda k: float(np.mean(out[k].elbo))) if f_labels else None
    settings = dict(restarts=restarts, n_train=n_train, n_test=n_test, latent_dim=latent_dim, hidden=hidden,
                    activation=activation, residual=residual, schedule=stages, batch_size=batch_size,
                    lv_init_sigma2=lv_init_sigma2, checkpoints=marks.tolist(),
                    eval=(eval_samples, eval_replicates), checkpoint_eval=(ck_samples, ck_replicates))
    return ThreeNoiseResult(out, best_f, f_star, pick, true_ll, settings)

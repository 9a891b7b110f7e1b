"""berger2020's observation-noise modes on the three-noise-region manifold (Sec. 4, Table 1, App. A.2).

Berger and Sebag compare Gaussian VAEs that differ only in their observation variance s2
(docs/math.md 1):

- F-VAE: s2 fixed, sigma in {1, 0.5, 0.1, 0.05, 0.01} (standard deviations; docs/math.md 5);
- LS-VAE: one learned scalar s2, initialised at 1;
- LV-VAE: s2_j(z) output by the decoder next to the mean (berger2020 Eq. 11);
- F*-VAE: s2 fixed at the value LS-VAE ends with;
- F-VAE under LS-VAE's learned trajectory s2(t), replayed as an external schedule (App. A.2).

Their finding: LV-VAE > LS-VAE > the best F-VAE in ELBO, F*-VAE is worse than LS-VAE (the
route to s2 matters, not only its final value), and replaying the trajectory reproduces
LS-VAE. ``three_noise_experiment`` runs all of them with refvae on
``refvae.datasets.three_noise`` and scores each by its held-out ELBO with every normalising
constant included (docs/math.md 0), so the modes compare directly (the seed adds the missing
log-sigma terms to its F-VAE values for the same reason).

``mc_elbo`` (a Gaussian VAE's ELBO with many samples and its Monte Carlo standard error) is
shared by the other experiments; training runs through ``refvae.train.fit_stages``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import _checks, datasets
from ..backend import make_rng, normal, to_host
from ..distributions import reparameterize
from ..objectives import GaussianVAE
from ..metrics.likelihood import objective_estimate
from ..train import check_stages, fit_stages, from_trajectory

__all__ = ["mc_elbo", "ModeResult", "ThreeNoiseResult", "three_noise_experiment",
           "F_VAE_SIGMAS"]

#: berger2020's F-VAE grid, as standard deviations sigma (docs/math.md 5); s2 = sigma^2.
F_VAE_SIGMAS = (1.0, 0.5, 0.1, 0.05, 0.01)


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


@dataclass
class ModeResult:
    """One observation-noise mode trained with R restarts.

    label : "F sigma=0.1", "LS", "LV", "F*", "F schedule".
    elbo, elbo_se : (R,) held-out ELBO per point (all constants) and its Monte Carlo error.
    sigma2 : (R,) the final observation variance (for LV the mean of s2_j(z) over held-out
        reconstructions and coordinates).
    trajectory : (steps, R) the training trace of the observation variance (LS only, else None).
    """
    label: str
    elbo: np.ndarray
    elbo_se: np.ndarray
    sigma2: np.ndarray
    trajectory: np.ndarray | None = None


@dataclass
class ThreeNoiseResult:
    """Outcome of ``three_noise_experiment``.

    modes : dict label -> ModeResult, in the order F grid, LS, LV, F*, F schedule.
    best_f : label of the F-VAE with the highest mean ELBO over restarts.
    f_star_sigma2 : the fixed variance of F*-VAE (geometric mean of LS-VAE's final values).
    replayed_restart : which LS-VAE restart's trajectory the schedule replays (its median one).
    true_log_likelihood : mean exact log p(x) of the held-out points under the ground truth
        (quadrature): the ceiling of every ELBO up to sampling error.
    """
    modes: dict
    best_f: str
    f_star_sigma2: float
    replayed_restart: int
    true_log_likelihood: float
    settings: dict = field(default_factory=dict)


def _mode_model(obs, sigma2, latent_dim, hidden, activation, residual):
    return GaussianVAE.from_sizes(2, latent_dim, hidden=hidden, activation=activation, obs=obs, sigma2=sigma2,
                                  residual=residual)


def _final_sigma2(model, params, x, rng, history):
    """Final observation variance per restart (R,): the learned value, or LV's mean over reconstructions."""
    if model.obs == "decoder":
        mu, lv = model.encode(params, x)
        _, obs_lv = model.decode(params, reparameterize(mu, lv, normal(rng, mu.shape))[0])
        return np.atleast_1d(np.exp(to_host(obs_lv)).mean(axis=(-2, -1)))
    return np.atleast_1d(history["sigma2"][-1])


def three_noise_experiment(*, seed, restarts=3, n_train=20000, n_test=2000, latent_dim=2, hidden=(32, 32),
                           activation="relu", residual=False, schedule=((3e-3, 6000),), batch_size=100,
                           sigmas=F_VAE_SIGMAS, eval_samples=16, eval_replicates=4, progress=None):
    """Train F-VAE (grid), LS-VAE, LV-VAE, F*-VAE and the replayed schedule; score held-out ELBOs.

    berger2020 Sec. 4.1-4.2 and App. A.2 on ``refvae.datasets.three_noise`` (docs/math.md 5): every
    mode has the same MLP encoder and decoder (the seed: ResNets of 4 blocks of 200 units, a
    "large sample" of 100 fresh points per batch; here a pool of ``n_train`` points sampled in
    minibatches of ``batch_size``), the same initial networks (restart r of every mode starts
    from the same weights) and the same Adam schedule. LV-VAE's decoder has twice the outputs
    (mean and log-variance per coordinate, berger2020 App. B). F*-VAE is fixed at the geometric
    mean over restarts of LS-VAE's final variance; the replayed schedule follows the trajectory
    of LS-VAE's median restart (by held-out ELBO) from every restart's initial weights (all but
    one of them different from that run's, as in App. A.2). Held-out ELBOs come from
    ``mc_elbo`` (all normalising constants, docs/math.md 0).

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
    schedule : sequence of (Adam learning rate, steps) stages (``fit_stages``).
    batch_size : minibatch size.
    sigmas : F-VAE grid of standard deviations (berger2020: 1, 0.5, 0.1, 0.05, 0.01).
    eval_samples, eval_replicates : ``mc_elbo`` settings of the held-out score.
    progress : optional callable(fraction, message).

    Returns
    -------
    ThreeNoiseResult
    """
    from ..metrics.quadrature import log_likelihood

    restarts = _checks.integer("restarts", restarts, min_value=1)
    sigmas = [_checks.scalar(f"sigmas[{i}]", s, positive=True) for i, s in enumerate(sigmas)]
    if not sigmas:
        raise ValueError("sigmas must hold at least one F-VAE standard deviation")
    stages = check_stages("schedule", schedule)
    hidden = tuple(hidden)
    rng = make_rng(seed)
    train = datasets.three_noise(n_train, rng)
    test = datasets.three_noise(n_test, rng)
    x, xt = np.asarray(train.x), np.asarray(test.x)
    true_ll = float(np.mean(log_likelihood(xt, **train.truth.quadrature_args)))
    init_seed = int(rng.integers(2 ** 63))
    total_steps = sum(s for _, s in stages)
    runs = len(sigmas) + 4
    modes = {}

    def run(label, obs, sigma2, schedules=None, final_sigma2=None):
        i = len(modes)
        # one stream per mode, so that a mode's training does not depend on how much noise the
        # evaluations before it drew
        own = np.random.default_rng(rng.integers(2 ** 63))
        model = _mode_model(obs, sigma2, latent_dim, hidden, activation, residual)
        params = model.init(np.random.default_rng(init_seed), restarts)   # same init for every mode
        cb = None if progress is None else (
            lambda t, p, terms: progress((i + t / total_steps) / runs, f"{label} step {t}")
            if t % 50 == 0 else None)
        params, hist = fit_stages(model, params, x, stages=stages, seed=own, batch_size=batch_size,
                                  schedules=schedules, callback=cb)
        elbo, se = mc_elbo(model, params, xt, seed=own, n_samples=eval_samples, replicates=eval_replicates,
                           sigma2=final_sigma2)
        s2 = (np.full(restarts, final_sigma2) if final_sigma2 is not None
              else _final_sigma2(model, params, xt, own, hist))
        modes[label] = ModeResult(label, np.atleast_1d(elbo), np.atleast_1d(se), s2,
                                  hist["sigma2"] if obs == "scalar" else None)
        return modes[label]

    for s in sigmas:
        run(f"F sigma={s:g}", "fixed", s * s)
    ls = run("LS", "scalar", 1.0)
    run("LV", "decoder", 1.0)
    f_star = float(np.exp(np.mean(np.log(ls.sigma2))))
    run("F*", "fixed", f_star)
    # App. A.2 replays one LS-VAE run's trajectory: the median restart by held-out ELBO
    order = np.argsort(ls.elbo)
    pick = int(order[len(order) // 2])
    traj = np.asarray(ls.trajectory).reshape(total_steps, -1)[:, pick]
    run("F schedule", "fixed", float(traj[0]), schedules={"sigma2": from_trajectory(traj)},
        final_sigma2=float(traj[-1]))
    f_labels = [f"F sigma={s:g}" for s in sigmas]
    best_f = max(f_labels, key=lambda k: float(np.mean(modes[k].elbo)))
    settings = dict(restarts=restarts, n_train=n_train, n_test=n_test, latent_dim=latent_dim, hidden=hidden,
                    activation=activation, residual=residual, schedule=stages, batch_size=batch_size)
    return ThreeNoiseResult(modes, best_f, f_star, pick, true_ll, settings)

"""Claims of dai2020: Dai, Wang, Wipf, "The Usual Suspects? Reassessing Blame for VAE Posterior Collapse".

Thin wrappers around ``refvae.experiments.collapse``: each claim picks sizes by profile, runs the
experiment, decides the verdict and formats the numbers.

- ``ppca_optimum`` (theorem, Sec. 4; docs/math.md 4.4): a linear VAE with learned noise reaches PPCA.
- ``fixed_gamma_pruning`` (theorem, Sec. 4 and Prop. 2 affine case): fixed gamma prunes exactly
  the directions with eigenvalue <= gamma; gamma >= l_1 collapses everything.
- ``soft_threshold_local_minimum`` (theorem, Prop. 1; docs/math.md 4.7): the collapsed point of the
  soft-threshold decoder is a local minimum that is not global.
- ``ae_vs_vae_depth`` (empirical, Sec. 5-6, Fig. 1 top): the AE error lower-bounds the VAE's and
  grows once the networks are too deep.
- ``kl_warmstart_no_fix`` (empirical, Sec. 5.2 and 6): KL warm-start does not undo that collapse.

Tolerances of the theorem claims were set from the spread measured over 24-40 data/initialisation
seeds of the mini profile (the loosest; quick trains longer and lands closer); each docstring states
the measured maximum and the tolerance.
"""
from __future__ import annotations

import numpy as np

import analytic.ppca

from ... import datasets
from ...experiments import collapse
from ..registry import Outcome, claim


#: population spectrum of the linear-VAE claims: consecutive eigenvalues a factor 4 apart, so that even
#: after sampling they stay well separated. Training settles a direction at a rate ~ the relative gap to
#: its neighbour (or to gamma), so near-ties make a finite run stop short of the optimum: with spectrum
#: (4, 2, 0.5, 0.3, 0.2) and N = 200, sample eigenvalues 3.3 and 2.35 left a pruned column at 0.12 after
#: 2500 steps, and 3.7 and 2.5 left the learned-noise W W^T 1% of l_1 away (the slow rotation of W
#: towards orthogonal columns). A fixed gamma is placed at geometric midpoints, a factor ~2 from both
#: neighbours.
SPECTRUM = (8.0, 2.0, 0.5, 0.125, 0.03)


def _stages(scale, steps):
    """The four-stage Adam schedule of the linear-VAE claims, the first stage ``scale`` times longer."""
    return [(0.05, scale * steps), (0.01, steps), (0.002, steps), (0.0005, steps)]


def _spectrum_data(ctx, tag, n, eigs):
    rng = ctx.rng(tag, "data")
    return np.asarray(datasets.gaussian_spectrum(n, rng, eigs=eigs, rotation_seed=int(rng.integers(2 ** 31))).x)


def _r(a, digits=4):
    return np.round(np.asarray(a, dtype=float), digits).tolist()


# ------------------------------------------------------------------------------------ 1
@claim("ppca_optimum", paper="dai2020", kind="theorem",
       statement="A linear VAE with learned noise on Gaussian data reaches the PPCA optimum: W W^T and the "
                 "noise variance are PPCA's and its exact ELBO equals the PPCA maximum log-likelihood.",
       paper_figure="Sec. 4: with an affine decoder and learned gamma, the global optima recover the principal "
                    "components (Tipping & Bishop) and there are no spurious local minima (a statement, no number)")
def ppca_optimum(ctx):
    """d = 5, spectrum ``SPECTRUM``, K = 2; R restarts; exact comparisons on the same sample.

    Tolerances (mini profile, 24 seeds x 3 restarts measured; quick lands 2-4x closer): max
    |W W^T - C*| / l_1 <= 0.0043 (tolerance 0.015), |sigma2 / sigma2* - 1| <= 0.0038 (0.01), LL - ELBO
    <= 2.4e-4 nats (1e-3; the ELBO can never exceed the log-likelihood, checked to -1e-9), the spread
    over the data of the learned log-variance (its x-dependence, 0 at the optimum) <= 0.024 (0.06),
    |b - xbar| <= 0.0032 (0.01). A wrong objective (a KL or noise factor off) misses by O(0.1-1) in
    every one of these.
    """
    n = ctx.scale(200, 500, 2000)
    x = _spectrum_data(ctx, "ppca_optimum", n, SPECTRUM)
    steps = ctx.scale(500, 1000, 4000)
    res = collapse.ppca_experiment(x, 2, restarts=ctx.scale(3, 8, 32), stages=_stages(ctx.scale(3, 2, 2), steps),
                                   seed=ctx.rng("ppca_optimum", "train"), average=steps,
                                   progress=lambda f: ctx.progress(f, "training linear VAEs"))
    gap = res.loglik_ppca - res.elbo
    s2_err = np.abs(res.sigma2 / res.sigma2_ppca - 1.0)
    checks = {"W W^T": res.cov_error.max() < 0.015, "noise": s2_err.max() < 0.01,
              "ELBO = LL": bool(np.all((gap > -1e-9) & (gap < 1e-3))),
              "log-variance constant": res.logvar_spread.max() < 0.06, "offset": res.offset_error.max() < 0.01}
    passed = all(checks.values())
    failed = [k for k, ok in checks.items() if not ok]
    return Outcome(
        passed=passed,
        measured={"cov_error_rel_l1": _r(res.cov_error, 6), "sigma2": _r(res.sigma2, 6),
                  "sigma2_ppca": round(res.sigma2_ppca, 6), "elbo": _r(res.elbo, 6),
                  "loglik_ppca": round(res.loglik_ppca, 6), "loglik_minus_elbo": _r(gap, 7),
                  "logvar_spread_max": _r(res.logvar_spread),
                  "offset_error_max": round(float(res.offset_error.max()), 5), "sample_eigenvalues": _r(res.eigenvalues)},
        spread={"sigma2": float(np.std(res.sigma2)), "elbo": float(np.std(res.elbo))},
        paper_value="W W^T = PPCA's, noise = mean of discarded eigenvalues, ELBO = PPCA log-likelihood",
        summary=(f"{len(res.elbo)} restarts: max abs(W W^T - PPCA) = {res.cov_error.max():.1e} l_1, noise "
                 f"{res.sigma2.mean():.5f} vs PPCA {res.sigma2_ppca:.5f}, exact ELBO {res.elbo.mean():.5f} vs PPCA "
                 f"log-likelihood {res.loglik_ppca:.5f} (max gap {gap.max():.1e} nats)"
                 + ("" if passed else f"; FAILED: {', '.join(failed)}")))


# ------------------------------------------------------------------------------------ 2
@claim("fixed_gamma_pruning", paper="dai2020", kind="theorem",
       statement="A linear VAE with fixed noise gamma keeps exactly the latent directions with eigenvalue "
                 "l_j > gamma, with decoder column norms sqrt(l_j - gamma), sets q(z_j|x) = N(0, 1) on the rest, "
                 "and gamma >= l_1 collapses every latent (Prop. 2, affine case).",
       paper_figure="Sec. 4 (category (ii) collapse, after Lucas et al. 2019) and Prop. 2: dimensions whose "
                    "eigenvalue is below a fixed gamma are pruned at the global optimum (a statement, no number)")
def fixed_gamma_pruning(ctx):
    """d = 5, spectrum ``SPECTRUM``, K = 3, gamma at the geometric midpoints of consecutive
    sample eigenvalues (sqrt(l3 l4), sqrt(l2 l3), sqrt(l1 l2): 3, 2, 1 active) and 1.5 l_1 (0 active).

    Tolerances (mini profile, 30 seeds measured): active column norms within 0.014 of
    sqrt(l_j - gamma) (tolerance 0.03), pruned columns <= 0.065 (0.15; they decay slowly because W_j and
    the encoder row shrink together under Monte Carlo jitter; the smallest active norm is about 0.5),
    exact ELBO within 3.0e-4 nats of the analytic optimum (1e-3), pruned log-variances |log s^2| <= 0.0011
    (0.01); the active-unit count (Var_x E[z_j|x] > 0.01) must match exactly.
    """
    n = ctx.scale(200, 300, 2000)
    x = _spectrum_data(ctx, "fixed_gamma_pruning", n, SPECTRUM)
    _, lam, _ = analytic.ppca.eigen(x)
    gammas = np.array([np.sqrt(lam[2] * lam[3]), np.sqrt(lam[1] * lam[2]), np.sqrt(lam[0] * lam[1]), 1.5 * lam[0]])
    steps = ctx.scale(500, 750, 4000)
    res = collapse.pruning_experiment(x, 3, gammas, restarts=ctx.scale(1, 2, 8), stages=_stages(ctx.scale(4, 3, 3), steps),
                                      seed=ctx.rng("fixed_gamma_pruning", "train"), average=steps,
                                      progress=lambda f: ctx.progress(f, "training linear VAEs, fixed gamma"))
    K = res.column_norms.shape[-1]
    act_err, pruned = np.zeros(res.elbo.shape), np.zeros(res.elbo.shape)
    for i, a in enumerate(res.active_expected):
        act_err[i] = np.abs(res.column_norms[i, :, :a] - res.column_norms_expected[i, :a]).max(axis=-1, initial=0.0)
        pruned[i] = res.column_norms[i, :, a:].max(axis=-1, initial=0.0)
    gap = res.elbo_optimum[:, None] - res.elbo
    full = res.gammas >= res.threshold
    checks = {
        "active units": bool(np.all(res.active_units == res.active_expected[:, None])),
        "active norms": act_err.max() < 0.03, "pruned norms": pruned.max() < 0.15,
        "pruned q = prior": res.pruned_logvar.max() < 0.01,
        "ELBO optimal": bool(np.all((gap > -1e-9) & (gap < 1e-3))),
        # Prop. 2, affine case: for gamma >= l_1 the optimum is the collapsed model itself
        "gamma >= l_1 collapses": bool(np.all(res.active_expected[full] == 0)
                                       and np.allclose(res.elbo_optimum[full], res.elbo_collapsed[full],
                                                       rtol=0, atol=1e-10)),
    }
    passed = all(checks.values())
    failed = [k for k, ok in checks.items() if not ok]
    return Outcome(
        passed=passed,
        measured={"gammas": _r(res.gammas), "collapse_threshold_l1": round(res.threshold, 4),
                  "active_expected": res.active_expected.tolist(), "active_units": res.active_units.tolist(),
                  "column_norms_expected": _r(res.column_norms_expected),
                  "column_norms_mean": _r(res.column_norms.mean(axis=1)),
                  "active_norm_error_max": round(float(act_err.max()), 5),
                  "pruned_norm_max": round(float(pruned.max()), 5),
                  "pruned_logvar_max": round(float(res.pruned_logvar.max()), 5),
                  "elbo_gap_max": float(gap.max())},
        spread={"column_norms_mean": _r(res.column_norms.std(axis=1), 5)},
        paper_value="active latents = #{l_j > gamma}; none for gamma >= l_1",
        summary=(f"gamma = {_r(res.gammas, 3)} (l_1 = {res.threshold:.3f}): active units {res.active_units.tolist()} "
                 f"vs analytic {res.active_expected.tolist()} of K = {K}; active norms within "
                 f"{act_err.max():.1e} of sqrt(l_j - gamma), pruned columns <= {pruned.max():.3f}, ELBO within "
                 f"{gap.max():.1e} nats of the optimum" + ("" if passed else f"; FAILED: {', '.join(failed)}")))


# ------------------------------------------------------------------------------------ 3
@claim("soft_threshold_local_minimum", paper="dai2020", kind="theorem",
       statement="With a soft-threshold decoder pi_a(Wz) + b (a > 0, learned gamma, per-point encoder) the "
                 "collapsed point q = p(z), p(x) = N(xbar, gammabar I) is a local minimum of Eq. 5 (training "
                 "started next to it returns to its energy; with a = 0 the same starts escape) but not the "
                 "global one (training from an informed start ends far below it).",
       paper_figure="Proposition 1 and Eq. 5-6 (a proof, no number)")
def soft_threshold_local_minimum(ctx):
    """Axis data in R^3 (x_i = t_i e_1), K = 2, a = 0.5, perturbation delta = 0.05 of every parameter,
    plain gradient descent (rate 0.02; see ``collapse.soft_threshold_experiment`` for why not Adam).

    refvae's loss is the mean -ELBO per point with every constant, so Eq. 5's energy is
    E = 2 N loss - N (d log 2 pi - K) (``collapse.energy_from_loss``); energies below are exact
    (``analytic.soft_threshold.energy``), and that relation is checked against refvae's Monte Carlo
    loss at the informed starts (within 5 standard errors; 32 replicates of 32 samples per point).

    Tolerances: "returns" means E_0 - 1e-6 <= E_T <= E_0 + 0.01 (E_start - E_0): training removes at
    least 99% of the perturbation's excess energy and never goes below E_0 (measured over 40 seeds x 3
    starts: at most 1.6e-3 of the excess is left, from W entries that stay in the flat region
    |w . z| < a, where the energy exceeds E_0 only through exponentially rare threshold crossings). "Escapes" / "ends below" mean the exact
    E_T < E_0 - N, the ELBO better by at least 0.5 nat per point (the runs stop once refvae's Monte
    Carlo energy is below E_0 - 2N).
    """
    n = ctx.scale(50, 100, 200)
    alpha, K, delta = 0.5, 2, 0.05
    x = np.asarray(datasets.soft_threshold_axis(n, ctx.rng("soft_threshold_local_minimum", "data"), data_dim=3).x)
    res = collapse.soft_threshold_experiment(
        x, alpha, K, restarts=ctx.scale(3, 8, 16), delta=delta, lr=0.02, steps=ctx.scale(2000, 4000, 8000),
        seed=ctx.rng("soft_threshold_local_minimum", "train"), replicates=32, n_samples=32,
        progress=lambda f: ctx.progress(f, "training soft-threshold VAEs"))
    E0 = res.energy_collapsed
    rel = {g: res.energy_end[g] - E0 for g in res.energy_end}
    excess = res.energy_start["collapsed"] - E0
    z = (res.energy_mc - res.energy_start["informed"]) / res.energy_mc_se
    checks = {"collapsed starts return": bool(np.all((rel["collapsed"] >= -1e-6) & (rel["collapsed"] <= 0.01 * excess))),
              "a = 0 starts escape": bool(np.all(rel["affine"] < -n)),
              "informed starts end below": bool(np.all(rel["informed"] < -n)),
              "loss = Eq. 5 energy": bool(np.all(np.abs(z) < 5))}
    passed = all(checks.values())
    failed = [k for k, ok in checks.items() if not ok]
    kept = rel["collapsed"] / excess
    return Outcome(
        passed=passed,
        measured={"energy_collapsed_E0": round(E0, 4), "gammabar": round(res.gamma_collapsed, 5),
                  "start_minus_E0_collapsed": _r(excess),
                  "end_minus_E0_collapsed": [float(v) for v in rel["collapsed"]],
                  "end_minus_E0_affine": _r(rel["affine"], 2), "steps_affine": res.steps["affine"].tolist(),
                  "start_minus_E0_informed": _r(res.energy_start["informed"] - E0, 2),
                  "end_minus_E0_informed": _r(rel["informed"], 2), "steps_informed": res.steps["informed"].tolist(),
                  "energy_from_loss_z_informed": _r(z, 2)},
        spread={"end_minus_E0_affine": float(np.std(rel["affine"])),
                "end_minus_E0_informed": float(np.std(rel["informed"]))},
        paper_value="collapsed point: bad local minimum; a perfect-reconstruction global minimum exists",
        summary=(f"E_0 = {E0:.3f} (N = {n}); a = {alpha}: perturbed collapsed starts (E - E_0 = "
                 f"{excess.min():.2f}..{excess.max():.2f}) end at E - E_0 in [{rel['collapsed'].min():.1e}, "
                 f"{rel['collapsed'].max():.1e}] (at most {100 * kept.max():.2g}% of the excess left) after "
                 f"{int(res.steps['collapsed'][0])} steps; a = 0 from the same starts: below E_0 - {n} in "
                 f"{int(np.sum(rel['affine'] < -n))}/{len(rel['affine'])} (median {int(np.median(res.steps['affine']))} steps); "
                 f"informed starts (E - E_0 = {np.mean(res.energy_start['informed'] - E0):+.1f}): below in "
                 f"{int(np.sum(rel['informed'] < -n))}/{len(rel['informed'])}; loss-to-energy z-scores within +-{np.abs(z).max():.1f}"
                 + ("" if passed else f"; FAILED: {', '.join(failed)}")))


# ------------------------------------------------------------------------------------ 4, 5
def _depth_setup(ctx, tag):
    """Data and sizes shared by the depth claims (dai2020 Sec. 6, at CPU scale)."""
    n = ctx.scale(300, 1000, 5000)
    x = collapse.manifold_data(n, ctx.rng(tag, "data"), data_dim=64, intrinsic_dim=8)
    return x, dict(latent_dim=8, width=ctx.scale(16, 32, 128), steps=ctx.scale(300, 1200, 20000),
                   restarts=ctx.scale(2, 3, 5), batch_size=64, lr=1e-3, activation="relu")


def _sd(a):
    """Standard deviation over restarts (last axis), 0 for a single restart."""
    a = np.asarray(a, dtype=float)
    return a.std(axis=-1, ddof=1) if a.shape[-1] > 1 else np.zeros(a.shape[:-1])


def _exceeds(a, b):
    """Whether mean(a) exceeds mean(b) by more than twice their combined spread over restarts.

    The rule every comparison of the depth claims uses: a, b are per-restart values (R,).
    """
    return bool(np.mean(a) - np.mean(b) > 2 * np.hypot(_sd(a), _sd(b)))


def _curve(a):
    return _r(np.mean(a, axis=1)), _r(_sd(a))


@claim("ae_vs_vae_depth", paper="dai2020", kind="empirical",
       statement="The deterministic AE's reconstruction error lower-bounds the VAE's (Eq. 7), and the AE's error "
                 "grows again once encoder and decoder are too deep (bad stationary points unrelated to the KL).",
       paper_figure="Fig. 1 (top): fully connected AE and VAE with 1, 2, 4, 6, 8, 10 hidden layers of 512 ReLU "
                    "units on Fashion-MNIST; 'the reconstruction error of the AE model first decreases ... when "
                    "the network becomes too deep, the error starts to increase'; 'the reconstruction error of a "
                    "VAE model is always worse than that of the corresponding AE' (curves only, no numbers in the text)")
def ae_vs_vae_depth(ctx):
    """Synthetic stand-in for Fashion-MNIST: ``collapse.manifold_data`` (d = 64, a random 2-layer tanh
    network of an 8-dimensional latent, noise 0.01), K = 8, plain ReLU MLPs of width 32 (quick), Adam
    1e-3, batch 64, a fixed step budget; the full profile adds residual AEs (Fig. 1 bottom).

    Verdict (from the paper's two sentences): reproduced iff the VAE error is above the AE error at
    every depth, and the AE error at the deepest depth is above the AE's best over depths, each
    difference of means larger than twice the combined standard deviation over restarts. The summary
    also says whether the AE error first falls with depth and whether the deepest AE had stalled
    (the loss fell < 1% over the last fifth of training) or was still descending, i.e. whether the
    rise is a plateau or partly slower optimisation within the step budget.
    """
    x, sizes = _depth_setup(ctx, "ae_vs_vae_depth")
    depths = ctx.scale((1, 3), (1, 2, 4, 8), (1, 2, 4, 6, 8, 10))
    residual = ctx.profile == "full"
    res = collapse.depth_experiment(x, depths, kinds=("ae", "vae"), seed=ctx.rng("ae_vs_vae_depth", "train"),
                                    progress=lambda f: ctx.progress(f * (0.7 if residual else 1.0),
                                                                    "training AEs and VAEs"), **sizes)
    ae, vae = res.errors["ae"], res.errors["vae"]
    ae_m, ae_s = ae.mean(axis=1), _sd(ae)
    best = int(np.argmin(ae_m))
    rise = ae_m[-1] - ae_m[best]
    noise = 2 * np.hypot(ae_s[-1], ae_s[best])
    bound = all(_exceeds(vae[i], ae[i]) for i in range(len(depths)))
    grows = best < len(depths) - 1 and _exceeds(ae[-1], ae[best])
    measured = {"depths": list(depths), "data_variance": round(res.data_variance, 4),
                "ae_error": _curve(ae)[0], "vae_error": _curve(vae)[0],
                "vae_active_units": _r(res.active_units["vae"].mean(axis=1), 2),
                "vae_sigma_near_one": _r(res.sigma_near_one["vae"].mean(axis=1), 3),
                "vae_gamma": _r(res.sigma2["vae"].mean(axis=1)),
                "ae_late_change": _r(res.late_change["ae"].mean(axis=1), 3)}
    spread = {"ae_error": _curve(ae)[1], "vae_error": _curve(vae)[1]}
    extra = ""
    if residual:
        rres = collapse.depth_experiment(x, depths, kinds=("ae",), residual=True,
                                         seed=ctx.rng("ae_vs_vae_depth", "residual"),
                                         progress=lambda f: ctx.progress(0.7 + 0.3 * f, "training residual AEs"),
                                         **sizes)
        measured["residual_ae_error"], spread["residual_ae_error"] = _curve(rres.errors["ae"])
        extra = f"; residual AE errors {measured['residual_ae_error']}"
    stalled = measured["ae_late_change"][-1] < 0.01
    fig = ctx.figure("ae_vs_vae_depth", lambda f: _draw_depth(f, res, ("ae", "vae")))
    return Outcome(
        passed=bound and grows,
        measured=measured, spread=spread,
        paper_value="AE error falls then rises with depth; VAE error > AE error at every depth (Fig. 1 top)",
        figures=[fig] if fig else [],
        summary=(f"depths {list(depths)} ({res.steps} steps each): AE error {measured['ae_error']}, VAE error "
                 f"{measured['vae_error']} (collapsed: {res.data_variance:.3f}); VAE above AE (by > 2 sd) at "
                 f"{'every' if bound else 'not every'} depth; AE error "
                 + (f"best at depth {depths[best]}, {'first falling' if best > 0 else 'not first falling'}, "
                    f"then rising by {rise:.3f} (> {noise:.3f}, 2 sd)" if grows else
                    f"does not rise significantly past its best (depth {depths[best]}; rise {rise:.3f} vs 2 sd {noise:.3f})")
                 + f"; VAE active units {measured['vae_active_units']} of {res.latent_dim}"
                 + (f"; the deepest AE is {'stalled' if stalled else 'still descending'} "
                    f"(loss fell {100 * measured['ae_late_change'][-1]:.1f}% over the last fifth)")
                 + extra))


@claim("kl_warmstart_no_fix", paper="dai2020", kind="empirical",
       statement="KL warm-start (beta ramped from 0 to 1) helps the deep VAE somewhat but does not undo the "
                 "depth-induced collapse: its reconstruction stays worse than the AE's at the same depth and than "
                 "the shallow VAE's.",
       paper_figure="Sec. 6 on Fig. 1 (top): 'while KL warm-start/annealing can help to improve the VAE "
                    "reconstructions to some extent, performance is still worse than the AE'; Sec. 5.2: warm-start "
                    "cannot beat the AE's implicit gamma (curves only, no numbers)")
def kl_warmstart_no_fix(ctx):
    """Same data and networks as ``ae_vs_vae_depth``, at a shallow and a deep depth; AE, VAE and VAE with
    beta = linear_ramp(0, 1, steps / 2).

    Verdict (the paper's sentences): reproduced iff at the deep depth the warm-started VAE's error is
    above the AE's and above the shallow VAE's, each by more than twice the combined standard deviation
    over restarts. Active units and the share of sigma_z near 1 (Fig. 2's sign of collapse), with and
    without warm-start, are reported alongside; the paper makes no claim about them.
    """
    x, sizes = _depth_setup(ctx, "kl_warmstart_no_fix")
    depths = ctx.scale((1, 3), (2, 8), (2, 10))
    res = collapse.depth_experiment(x, depths, kinds=("ae", "vae", "vae_warm"),
                                    seed=ctx.rng("kl_warmstart_no_fix", "train"),
                                    progress=lambda f: ctx.progress(f, "training AE, VAE, warm-started VAE"), **sizes)
    E = res.errors
    err = {k: E[k].mean(axis=1) for k in res.kinds}
    units = {k: res.active_units[k].mean(axis=1) for k in ("vae", "vae_warm")}
    near = {k: res.sigma_near_one[k].mean(axis=1) for k in ("vae", "vae_warm")}
    worse_than_ae = _exceeds(E["vae_warm"][1], E["ae"][1])
    worse_than_shallow = _exceeds(E["vae_warm"][1], E["vae"][0])
    helps = _exceeds(E["vae"][1], E["vae_warm"][1])
    measured = {"depths": list(depths), "data_variance": round(res.data_variance, 4),
                "ae_error": _curve(E["ae"])[0], "vae_error": _curve(E["vae"])[0],
                "vae_warm_error": _curve(E["vae_warm"])[0],
                "vae_active_units": _r(units["vae"], 2), "vae_warm_active_units": _r(units["vae_warm"], 2),
                "vae_sigma_near_one": _r(near["vae"], 3), "vae_warm_sigma_near_one": _r(near["vae_warm"], 3)}
    spread = {k: _curve(E[kind])[1] for k, kind in
              (("ae_error", "ae"), ("vae_error", "vae"), ("vae_warm_error", "vae_warm"))}
    spread.update({k: _r(_sd(res.active_units[kind]), 2) for k, kind in
                   (("vae_active_units", "vae"), ("vae_warm_active_units", "vae_warm"))})
    fig = ctx.figure("kl_warmstart_no_fix", lambda f: _draw_depth(f, res, res.kinds))
    d0, d1 = depths
    return Outcome(
        passed=worse_than_ae and worse_than_shallow,
        measured=measured, spread=spread, figures=[fig] if fig else [],
        paper_value="warm-start improves the VAE somewhat; still worse than the AE (Fig. 1 top)",
        summary=(f"depth {d1}: warm-started VAE error {err['vae_warm'][1]:.4f} vs {err['vae'][1]:.4f} without "
                 f"warm-start ({'a significant' if helps else 'no significant'} improvement) and {err['ae'][1]:.4f} "
                 f"for the AE; depth {d0} VAE: {err['vae'][0]:.4f}. Warm-start "
                 f"{'stays above' if worse_than_ae else 'does not stay above'} the AE and "
                 f"{'stays above' if worse_than_shallow else 'does not stay above'} the shallow VAE (2 sd rule). "
                 f"Collapse measures at depth {d1}, warm vs plain: active units {units['vae_warm'][1]:.1f} vs "
                 f"{units['vae'][1]:.1f} (depth {d0}: {units['vae'][0]:.1f}) of {res.latent_dim}, sigma_z > 0.9 for "
                 f"{100 * near['vae_warm'][1]:.0f}% vs {100 * near['vae'][1]:.0f}% (depth {d0}: {100 * near['vae'][0]:.0f}%)"))


def _draw_depth(fig, res, kinds):
    ax = fig.add_subplot(1, 2, 1)
    for k in kinds:
        m, s = res.errors[k].mean(axis=1), _sd(res.errors[k])
        ax.errorbar(res.depths, m, yerr=s, marker="o", capsize=3, label=k)
    ax.axhline(res.data_variance, color="gray", ls=":", label="collapsed (x = xbar)")
    ax.set_xlabel("hidden layers per network")
    ax.set_ylabel("reconstruction error per coordinate")
    ax.set_yscale("log")
    ax.legend()
    ax = fig.add_subplot(1, 2, 2)
    for k in kinds:
        if k != "ae":
            ax.plot(res.depths, res.active_units[k].mean(axis=1), marker="o", label=k)
    ax.set_xlabel("hidden layers per network")
    ax.set_ylabel(f"active units (of {res.latent_dim})")
    ax.legend()

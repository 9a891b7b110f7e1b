"""Claims of berger2020: Berger and Sebag, "Variational Auto-Encoders: Not all failures are equal"."""
from __future__ import annotations

import numpy as np

import analytic.hypersphere as ah

from ...experiments.hypersphere import threshold_sweep
from ...experiments.noise_modes import F_VAE_SIGMAS, three_noise_experiment
from ..registry import Outcome, claim

# Tolerance of the radius checks, as a fraction of r. The grid keeps clear of the threshold
# (rho* >= 0.93 r on the non-collapsed side, 0 on the other), so 0.1 r still separates the two
# predictions by more than 8 tolerances, while it is over twice the largest deviation measured
# (at most 0.04 r over 8 seeds in mini and 3 in quick). A collapsed decoder's output wanders
# about xbar with the minibatch means; a non-collapsed VAE decodes a circle up to 0.03 r smaller
# than rho*, the cost of its Gaussian encoder, which the ideal VAE of Theorem 1 does not pay.
RADIUS_TOL = 0.1
# A collapsed model's -ELBO is pinned by the data: -log N(x; xbar, sigma2 I) averaged, which
# a converged collapsed VAE matches to ~1e-3 nats (its KL and |f - xbar| are then ~0).
COLLAPSED_TOL = 1e-2


def _draw_radius(runs, r, d):
    def draw(fig):
        ax1, ax2 = fig.subplots(1, 2)
        s2 = np.geomspace(min(x.sigma2 for x in runs) / 2, max(x.sigma2 for x in runs) * 2, 200)
        ax1.plot(s2, [ah.optimal_radius(r, v, d) / r for v in s2], "k-", label="analytic rho*/r (Thm 1)")
        ax1.errorbar([x.sigma2 for x in runs], [x.learned_radius.mean() / r for x in runs],
                     yerr=[x.learned_radius.std() / r for x in runs], fmt="o", color="C3", label="refvae VAE")
        ax1.axvline(r * r / d, color="0.6", ls="--", label="r^2 = d sigma2")
        ax1.set(xscale="log", xlabel="sigma2", ylabel="decoded radius / r", title=f"d = {d}, r = {r:g}")
        ax1.legend(fontsize=7)
        rs, sig = np.linspace(0.05, 2.0, 60), np.linspace(0.05, 2.0, 60)
        grid = ah.radius_grid(rs, sig ** 2, d)
        im = ax2.imshow(grid, origin="lower", extent=(sig[0], sig[-1], rs[0], rs[-1]), aspect="auto")
        ax2.plot(sig, np.sqrt(d) * sig, "w--", lw=1)
        ax2.set(xlabel="sigma", ylabel="r", title="rho*/r (berger2020 Fig. 2)", ylim=(rs[0], rs[-1]))
        fig.colorbar(im, ax=ax2)
    return draw


@claim("hypersphere_threshold", paper="berger2020", kind="theorem",
       statement="A fixed-variance VAE on data uniform on a circle of radius r (d = 2) collapses to the "
                 "centre (decoded radius 0) when r^2 < d sigma2, and decodes a circle of the optimal radius "
                 "rho* of Theorem 1 (0 < rho* < r) when r^2 > d sigma2.",
       paper_figure="Theorem 1 (the VAE fails iff r^2 <= d sigma^2) and Fig. 2 (heat map of the optimal radius, d = 2)")
def hypersphere_threshold(ctx):
    r, d = 1.0, 2
    critical = ah.critical_variance(r, d)
    # sigma2 as multiples of the critical r^2 / d (see RADIUS_TOL). The non-collapsed side keeps clear
    # of it: at 0.5 and 0.6 a Gaussian-encoder VAE decodes 0.45-0.8 against rho* = 0.83, 0.77 after the
    # quick budget. The collapsed side sits close to it at 1.2 on purpose: a correct VAE collapses there as
    # cleanly as at 4 (radius <= 0.04, -ELBO within 1e-3 of the collapsed value; 3 seeds each in mini
    # and quick), while a model that used sigma2 as a standard deviation (variance sigma2^2 = 0.36) would
    # decode rho* = 0.68 and fail; the grid 0.1, 0.25, 2, 4 could not tell the two apart.
    factors = ctx.scale(mini=(0.1, 1.2), quick=(0.1, 0.25, 1.2, 4.0), full=(0.04, 0.1, 0.25, 1.2, 2.0, 4.0, 8.0))
    runs = threshold_sweep([f * critical for f in factors], seed=ctx.rng("hypersphere_threshold"), radius=r,
                           data_dim=d, restarts=ctx.scale(2, 3, 8),
                           n=ctx.scale(500, 1000, 5000), hidden=ctx.scale((16, 16), (16, 16), (64, 64)),
                           schedule=ctx.scale(((1e-2, 500), (2e-3, 200), (5e-4, 200)),
                                              ((1e-2, 1000), (2e-3, 500), (5e-4, 300)),
                                              ((1e-2, 5000), (2e-3, 2000), (5e-4, 2000))),
                           progress=ctx.progress)
    checks = []
    for run in runs:
        if run.optimal_radius == 0.0:
            ok = (np.all(run.learned_radius < RADIUS_TOL * r)
                  and np.all(np.abs(run.neg_elbo - run.collapsed_neg_elbo) < COLLAPSED_TOL))
        else:
            ok = (np.all(np.abs(run.learned_radius - run.optimal_radius) < RADIUS_TOL * r)
                  and np.all(run.neg_elbo < run.collapsed_neg_elbo - COLLAPSED_TOL))
        checks.append(bool(ok))
    measured = {"sigma2": [x.sigma2 for x in runs], "critical_sigma2": critical,
                "analytic_radius": [x.optimal_radius for x in runs],
                "learned_radius": [float(x.learned_radius.mean()) for x in runs],
                "learned_radius_per_restart": [x.learned_radius.tolist() for x in runs],
                "generated_radius": [float(x.prior_radius.mean()) for x in runs],
                "neg_elbo": [float(x.neg_elbo.mean()) for x in runs],
                "collapsed_neg_elbo": [x.collapsed_neg_elbo for x in runs],
                "ideal_neg_elbo": [x.optimum_neg_objective for x in runs],
                "optimiser_jitter": [float(x.jitter.max()) for x in runs],
                "holds_per_sigma2": checks}
    spread = {"learned_radius": [float(x.learned_radius.std()) for x in runs],
              "neg_elbo": [float(x.neg_elbo.std()) for x in runs]}
    pairs = ", ".join(f"sigma2={x.sigma2:g}: {x.learned_radius.mean():.3f} vs {x.optimal_radius:.3f}" for x in runs)
    return Outcome(
        passed=all(checks), measured=measured, spread=spread,
        paper_value="collapse (rho* = 0) iff r^2 <= d sigma^2; rho* -> r as sigma -> 0 (no numbers)",
        summary=f"decoded radius vs analytic rho* (r = {r:g}, d = {d}, threshold sigma2 = {critical:g}): {pairs}; "
                f"{sum(checks)}/{len(checks)} settings within {RADIUS_TOL:g} r "
                f"(collapsed -ELBO equal to -log N(x; xbar, sigma2 I) within {COLLAPSED_TOL:g} nats)",
        figures=[f for f in [ctx.figure("hypersphere_threshold", _draw_radius(runs, r, d))] if f])


def _draw_modes(res):
    def draw(fig):
        ax1, ax2 = fig.subplots(1, 2)
        labels = list(res.modes)
        ax1.errorbar(range(len(labels)), [np.mean(res.modes[k].elbo) for k in labels],
                     yerr=[np.std(res.modes[k].elbo) for k in labels], fmt="o")
        ax1.axhline(res.true_log_likelihood, color="0.6", ls="--", label="exact log p(x)")
        ax1.set_xticks(range(len(labels)), labels, rotation=60, fontsize=7)
        ax1.set(ylabel="held-out ELBO", title="berger2020 Table 1", ylim=(res.true_log_likelihood - 3, None))
        ax1.legend(fontsize=7)
        traj = np.asarray(res.modes["LS"].trajectory).reshape(len(res.modes["LS"].trajectory), -1)
        ax2.plot(traj, lw=0.8)
        ax2.set(yscale="log", xlabel="step", ylabel="LS-VAE sigma2", title="learned sigma2 (berger2020 Fig. 10)")
    return draw


def _stats(mode):
    return float(np.mean(mode.elbo)), float(np.std(mode.elbo))


@claim("three_noise_ordering", paper="berger2020", kind="empirical",
       statement="On the three-noise-region manifold the ELBO orders LV-VAE > LS-VAE > the best F-VAE "
                 "(sigma in {1, 0.5, 0.1, 0.05, 0.01}); F*-VAE (sigma fixed at LS-VAE's learned value) falls "
                 "below LS-VAE; an F-VAE following LS-VAE's learned sigma2 trajectory reproduces LS-VAE.",
       paper_figure="Table 1 (ELBO over 10 runs; its numbers were lost in the text) and App. A.2 / Fig. 10 "
                    "(the replayed schedule)")
def three_noise_ordering(ctx):
    res = three_noise_experiment(
        seed=ctx.rng("three_noise_ordering"), restarts=ctx.scale(1, 2, 10),
        n_train=ctx.scale(2000, 20000, 50000), n_test=ctx.scale(500, 1000, 5000),
        hidden=ctx.scale((16, 16), (32, 32), (200,) * 5), residual=ctx.profile == "full",
        schedule=ctx.scale(((1e-2, 200), (3e-3, 100)), ((1e-2, 1000), (3e-3, 500)), ((1e-3, 30000),)),
        eval_samples=ctx.scale(4, 4, 64), eval_replicates=ctx.scale(2, 2, 4), progress=ctx.progress)
    m = res.modes
    mean = {k: _stats(v)[0] for k, v in m.items()}
    sd = {k: _stats(v)[1] for k, v in m.items()}
    R = len(m["LS"].elbo)
    # replay reproduces LS-VAE: means within two standard errors of their difference over restarts
    # (plus the Monte Carlo error of the scores); with one restart, within 0.05 nats
    diff = mean["F schedule"] - mean["LS"]
    allowed = (2 * np.sqrt((sd["F schedule"] ** 2 + sd["LS"] ** 2) / R) if R > 1 else 0.05) \
        + 2 * float(max(m["LS"].elbo_se.max(), m["F schedule"].elbo_se.max()))
    findings = {
        "LV > LS": mean["LV"] > mean["LS"],
        "LS > best F": mean["LS"] > mean[res.best_f],
        "F* < LS": mean["F*"] < mean["LS"],
        "F* < F sigma=0.1": mean["F*"] < mean.get("F sigma=0.1", -np.inf),
        "replay = LS": abs(diff) <= allowed,
    }
    key = ("LV > LS", "LS > best F", "F* < LS", "replay = LS")
    measured = {f"elbo[{k}]": [round(float(v), 4) for v in mode.elbo] for k, mode in m.items()}
    measured.update({f"mean_elbo[{k}]": mean[k] for k in m})
    measured.update({"best_f": res.best_f, "ls_final_sigma2": m["LS"].sigma2.tolist(),
                     "lv_mean_sigma2": m["LV"].sigma2.tolist(), "f_star_sigma2": res.f_star_sigma2,
                     "true_log_likelihood": res.true_log_likelihood,
                     "replay_minus_ls": diff, "replay_allowed_gap": allowed})
    measured.update({k: bool(v) for k, v in findings.items()})
    spread = {f"mean_elbo[{k}]": sd[k] for k in m}
    order = " > ".join(f"{k} {mean[k]:.3f}" for k in sorted(mean, key=mean.get, reverse=True))
    missing = [k for k in key if not findings[k]]
    return Outcome(
        passed=all(findings[k] for k in key), measured=measured, spread=spread,
        paper_value="ELBO: LV-VAE > LS-VAE > every F-VAE; F*-VAE significantly below LS-VAE and below the F-VAE "
                    "of a sigma lost in the text (refvae compares with sigma = 0.1); replayed schedule = LS-VAE "
                    "(Table 1's numbers are not in the text)",
        summary=f"held-out ELBO (mean over {R} restart(s), exact log p(x) {res.true_log_likelihood:.3f}): {order}; "
                + ("all four findings reproduced" if not missing else f"not reproduced: {', '.join(missing)}")
                + f" (LS-VAE's sigma2 ended at {np.mean(m['LS'].sigma2):.4f}, F-VAE grid sigma {list(F_VAE_SIGMAS)})",
        figures=[f for f in [ctx.figure("three_noise_ordering", _draw_modes(res))] if f])

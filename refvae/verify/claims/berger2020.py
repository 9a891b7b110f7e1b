"""Claims of berger2020: Berger and Sebag, "Variational Auto-Encoders: Not all failures are equal".

- ``hypersphere_threshold`` (theorem, Theorem 1; docs/math.md 4.6): a fixed-variance VAE on a circle of
  radius r collapses to its centre when r^2 <= d sigma2, and otherwise decodes a circle of the radius that
  maximises the closed-form objective F(rho).
- ``three_noise_ordering`` (empirical, Sec. 4.2 Table 1 and App. A.2): LV-VAE > LS-VAE > every F-VAE in
  ELBO; F*-VAE below LS-VAE and below the F-VAE with sigma = 0.1; an F-VAE replaying LS-VAE's learned
  variance as a schedule reproduces LS-VAE. Each part is judged restart by restart, and only on runs
  whose learned variance has settled.

Every claim states the paper's sentence, splits it into the parts refvae judges (``Part``), puts the
paper's number beside refvae's per restart (``Row``; Table 1's values were lost with the text's math,
so its ranking stands in for them), names its verdict rule and the settings the paper does not give
(``choices``), and draws a figure with the ``plot`` extra.
"""
from __future__ import annotations

import numpy as np

import analytic.hypersphere as ah

from ...experiments.hypersphere import threshold_sweep
from ...experiments.noise_modes import LV_INIT_SIGMA2, SETTLING_SCHEDULE, three_noise_experiment
from .. import rules
from ..registry import Outcome, Part, Row, claim

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


def _r(a, digits=4):
    return np.round(np.asarray(a, dtype=float), digits).tolist()


def _draw_radius(runs, r, d):
    def draw(fig):
        ax0, ax1, ax2 = fig.subplots(1, 3)
        # F(rho) - F(rho*) for every sigma2 of the run, each scaled by its range over the plotted radii so
        # that curves whose depths differ by orders of magnitude share one panel; circles: the learned radii
        rho = np.linspace(0.0, 1.2 * r, 241)
        for i, x in enumerate(runs):
            F = ah.objective(rho, r, x.sigma2, d)
            top = ah.objective(np.array([x.optimal_radius]), r, x.sigma2, d)[0]
            scale = top - F.min()
            learned = np.asarray(x.learned_radius)
            ax0.plot(rho / r, (F - top) / scale, color=f"C{i}", label=f"sigma2 = {x.sigma2:g}")
            ax0.plot(learned / r, (ah.objective(learned, r, x.sigma2, d) - top) / scale, "o", mfc="none",
                     color=f"C{i}")
            ax0.axvline(x.optimal_radius / r, color=f"C{i}", ls=":", lw=0.8)
        ax0.set(xlabel="decoded radius rho / r", ylabel="F(rho) - F(rho*), scaled to [-1, 0]",
                title=f"Theorem 1's F(rho) (dotted: rho*; circles: learned, one per restart; r^2 / d = {r * r / d:g}) "
                      "(berger2020 Eq. 8)")
        ax0.legend(fontsize=7)
        s2 = np.geomspace(min(x.sigma2 for x in runs) / 2, max(x.sigma2 for x in runs) * 2, 200)
        ax1.plot(s2, [ah.optimal_radius(r, v, d) / r for v in s2], "k-", label="analytic rho*/r (Theorem 1)")
        for x in runs:
            ax1.plot(np.full(len(x.learned_radius), x.sigma2), np.asarray(x.learned_radius) / r, "o", mfc="none",
                     color="C3", label="refvae VAE, one per restart" if x is runs[0] else None)
        ax1.axvline(r * r / d, color="0.6", ls="--", label="r^2 = d sigma2")
        ax1.set(xscale="log", xlabel="fixed observation variance sigma2", ylabel="decoded radius / r",
                title=f"optimal vs learned radius, d = {d}, r = {r:g}")
        ax1.legend(fontsize=7)
        rs, sig = np.linspace(0.05, 2.0, 60), np.linspace(0.05, 2.0, 60)
        grid = ah.radius_grid(rs, sig ** 2, d)
        im = ax2.imshow(grid, origin="lower", extent=(sig[0], sig[-1], rs[0], rs[-1]), aspect="auto")
        # the threshold r = sqrt(d) sigma, only the segment inside the map (it leaves the top at sigma = r_max / sqrt(d))
        lo, hi = max(sig[0], rs[0] / np.sqrt(d)), min(sig[-1], rs[-1] / np.sqrt(d))
        if lo < hi:
            ax2.plot([lo, hi], [np.sqrt(d) * lo, np.sqrt(d) * hi], "w--", lw=1)
        ax2.set(xlabel="sigma (standard deviation)", ylabel="r",
                title="rho*/r over (sigma, r); dashed: r^2 = d sigma2 (berger2020 Fig. 2)")
        fig.colorbar(im, ax=ax2)
    return draw


@claim("hypersphere_threshold", paper="berger2020", kind="theorem",
       statement="berger2020 Theorem 1: with arbitrarily powerful networks and infinite data uniform on the sphere of "
                 "radius r in dimension d, a VAE with a fixed observation variance sigma2 \"fails to characterize the "
                 "data manifold\" if r^2 <= d sigma2: the decoded radius rho* = 0 (the model is N(centre, sigma2 I)); "
                 "for r^2 > d sigma2, rho = 0 is a local minimum and the optimum rho* in (0, r) tends to r as sigma "
                 "-> 0. Checked on a circle (d = 2): the learned radius is rho* of the closed form on both sides.",
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
    restarts = ctx.scale(2, 3, 8)
    runs = threshold_sweep([f * critical for f in factors], seed=ctx.rng("hypersphere_threshold"), radius=r,
                           data_dim=d, restarts=restarts,
                           n=ctx.scale(500, 1000, 5000), hidden=ctx.scale((16, 16), (16, 16), (64, 64)),
                           schedule=ctx.scale(((1e-2, 500), (2e-3, 200), (5e-4, 200)),
                                              ((1e-2, 1000), (2e-3, 500), (5e-4, 300)),
                                              ((1e-2, 5000), (2e-3, 2000), (5e-4, 2000))),
                           progress=ctx.progress)
    parts, rows = [], []
    for run in runs:
        lr = np.asarray(run.learned_radius)
        if run.optimal_radius == 0.0:
            ok_r = np.all(lr < RADIUS_TOL * r)
            ok_e = np.all(np.abs(run.neg_elbo - run.collapsed_neg_elbo) < COLLAPSED_TOL)
            parts.append(Part(f"sigma2 = {run.sigma2:g} (r^2 <= d sigma2): the VAE collapses to the centre",
                              bool(ok_r and ok_e),
                              f"decoded radius per restart {_r(lr, 4)}; -ELBO minus the collapsed model's "
                              f"{_r(run.neg_elbo - run.collapsed_neg_elbo, 5)}",
                              f"radius < {RADIUS_TOL:g} r and -ELBO within {COLLAPSED_TOL:g} nats of "
                              "-log N(x; xbar, sigma2 I), in every restart"))
        else:
            ok_r = np.all(np.abs(lr - run.optimal_radius) < RADIUS_TOL * r)
            ok_e = np.all(run.neg_elbo < run.collapsed_neg_elbo - COLLAPSED_TOL)
            parts.append(Part(f"sigma2 = {run.sigma2:g} (r^2 > d sigma2): the VAE decodes a circle of radius rho*",
                              bool(ok_r and ok_e),
                              f"decoded radius per restart {_r(lr, 4)} vs rho* = {run.optimal_radius:.4f}; -ELBO "
                              f"{_r(run.neg_elbo, 3)} vs collapsed {run.collapsed_neg_elbo:.3f}",
                              f"|radius - rho*| < {RADIUS_TOL:g} r and -ELBO below the collapsed model's, in every "
                              "restart"))
        rows.append(Row(f"sigma2 = {run.sigma2:g}: decoded radius (mean |f(z) - xbar|, z ~ q(z|x))", _r(lr, 4),
                        round(run.optimal_radius, 4), "paper: rho* of Theorem 1 (Eq. 8-9, closed form)"))
        rows.append(Row(f"sigma2 = {run.sigma2:g}: -ELBO per point (last quarter of training)", _r(run.neg_elbo, 4),
                        round(run.optimum_neg_objective, 4),
                        "paper: -F(rho*), the ideal VAE (exact posterior, infinite data); a Gaussian encoder pays more"))
    measured = {"sigma2": [x.sigma2 for x in runs], "critical_sigma2": critical,
                "analytic_radius": [x.optimal_radius for x in runs],
                "learned_radius": [float(x.learned_radius.mean()) for x in runs],
                "learned_radius_per_restart": [x.learned_radius.tolist() for x in runs],
                "generated_radius": [float(x.prior_radius.mean()) for x in runs],
                "neg_elbo": [float(x.neg_elbo.mean()) for x in runs],
                "collapsed_neg_elbo": [x.collapsed_neg_elbo for x in runs],
                "ideal_neg_elbo": [x.optimum_neg_objective for x in runs],
                "optimiser_jitter": [float(x.jitter.max()) for x in runs]}
    spread = {"learned_radius": [float(x.learned_radius.std()) for x in runs],
              "neg_elbo": [float(x.neg_elbo.std()) for x in runs]}
    pairs = ", ".join(f"sigma2={x.sigma2:g}: {x.learned_radius.mean():.3f} vs {x.optimal_radius:.3f}" for x in runs)
    n_ok = sum(p.holds for p in parts)
    fig = ctx.figure("hypersphere_threshold", _draw_radius(runs, r, d), panels=(1, 3))
    return Outcome(
        parts=parts, rows=rows, measured=measured, spread=spread,
        rule="theorem: holds when every sigma2 holds, in every restart",
        choices={"data": f"the circle (d = 2) of radius r = {r:g}, {ctx.scale(500, 1000, 5000)} points (the theorem: "
                         "infinite data, any d)",
                 "model": "tanh MLPs, K = 1 (a circle is one-dimensional; with K = 2 the prior's mass near z = 0 pulls "
                          "the mean radius below rho*: 0.88 vs 0.95 at sigma2 = 0.1)",
                 "sigma2 grid": f"{list(factors)} x r^2 / d: clear of the threshold on the non-collapsed side; 1.2 close "
                                "to it, where reading sigma2 as a standard deviation would decode rho* = 0.68 and fail",
                 "training": f"{restarts} restarts, Adam in three stages (1e-2, 2e-3, 5e-4)"},
        paper_value="collapse (rho* = 0) iff r^2 <= d sigma^2; rho* -> r as sigma -> 0 (no numbers)",
        summary=f"decoded radius vs analytic rho* (r = {r:g}, d = {d}, threshold sigma2 = {critical:g}): {pairs}; "
                f"{n_ok}/{len(parts)} settings within {RADIUS_TOL:g} r "
                f"(collapsed -ELBO equal to -log N(x; xbar, sigma2 I) within {COLLAPSED_TOL:g} nats)",
        figures=[fig] if fig else [])


# ------------------------------------------------------------------------------------ three noises
#: A learned variance has settled when the mean of log s2 over the last tenth of training differs from the
#: mean over the tenth before by at most this (5% in s2). Fixed before looking at any run, from what it
#: means for the ELBO: at a fixed reconstruction the ELBO is stationary in s2, and s2 keeps falling only
#: while the decoder keeps resolving finer detail (Theorem 2 of yacoby2021: the optimal s2 is the mean
#: squared residual), so 5% per tenth of training bounds the drift of the (d/2) log s2 term at
#: 0.05 nats per tenth (d = 2), below the gaps the ordering judges (0.1-0.3 nats).
SETTLED_LOG_S2 = 0.05
#: A mode's held-out ELBO counts as still improving when it rose by more than this between 0.8 T and T.
IMPROVING_NATS = 0.02
#: "The replayed schedule reproduces LS-VAE": every replay restart's held-out ELBO within this of the
#: replayed LS-VAE run's (nats per point; about twice the Monte Carlo error of the scores, and below the
#: 0.1-0.3 nats that separate the modes).
REPLAY_TOL = 0.05
#: berger2020 compares F*-VAE with the F-VAE whose generation it calls acceptable, Fig. 7(c): the third of
#: the grid 1, 0.5, 0.1, 0.05, 0.01 (the value itself was lost with the text's math).
F_STAR_REFERENCE = "F sigma=0.1"


#: The quick profile's Adam schedule (32-32 ReLU MLPs, K = 2, batch 100): 6000 steps at 3e-3 for LS-VAE to
#: leave its s2 plateau, 3000 at 1e-3, then 3000 at 1e-4, which hold both windows of the settled rule (the last
#: two tenths), so that the rule compares two stretches of one constant rate. Chosen from the measurements in
#: ``QUICK_SCHEDULE_MEASURED``: the cheapest schedule tried after which LS-VAE and LV-VAE have settled by
#: ``SETTLED_LOG_S2`` (unchanged) in every restart on this claim's data seed (4 of 4; on another seed LS-VAE 5
#: of 5, LV-VAE 3 of 5) and whose per-restart comparisons agree with a longer one. A small final rate slows
#: every change, so the rule alone cannot tell a finished run from a frozen one: the same shape with 4500
#: steps at 3e-3 passes it in 7 of 8 runs, yet leaves one LV-VAE restart 0.3 nats short of where this
#: schedule and a 13500-step one take it (and flips that restart's LV > LS).
QUICK_SCHEDULE = SETTLING_SCHEDULE
#: What each schedule tried did, measured on the quick networks (LV-VAE head at s2 = 0.01; this claim's data
#: seed with 4 restarts and the F-VAEs sigma = 0.1 and 0.05, the best of the grid, unless said; "settled":
#: ``SETTLED_LOG_S2`` on log s2, with the change over the last tenth; ELBO: held-out, 16 x 4 samples).
QUICK_SCHEDULE_MEASURED = (
    "3e-3 x 4800, 1e-3 x 1200 (6000 steps, the former quick): LS settled in 0 of 4 (change -0.17 to -0.19), "
    "s2 0.006-0.009, ELBO -1.39 to -1.55; LV settled in 2 of 4",
    "1e-2, 3e-3, 1e-3, 3e-4 x 1500 each (6000): LS 'settled' in 4 of 4, three of them on plateaus (s2 0.64, "
    "0.048, 0.029; the fourth 0.009; ELBO -2.42 to -1.54): above the best F-VAE in 1 of 4. A high early rate "
    "traps LS-VAE",
    "3e-3 x 8000, 1e-3 x 4000 (12000): LS settled in 0 of 4 (change -0.10 to -0.14), s2 0.0033-0.0046; LV in 4 "
    "of 4; LV > LS in 4 of 4",
    "3e-3 x 6000, 1e-3 x 3000, 3e-4 x 3000 (12000): LS settled in 0 of 4 (change -0.073 to -0.087), s2 "
    "0.0033-0.0045, ELBO -1.26 to -1.35; LV in 4 of 4; LV > LS in 3 of 4",
    "3e-3 x 6000, 1e-3 x 3000, 1e-4 x 3000 (12000, chosen): LS settled in 4 of 4 (change -0.035 to -0.041), s2 "
    "0.0037-0.0050, ELBO -1.26 to -1.36; LV in 4 of 4; LV - LS per restart [0.132, 0.175, 0.087, -0.018]; LS "
    "above the best F-VAE in 4 of 4. On another data seed, 5 restarts: LS settled in 5 of 5 (one on a plateau, "
    "s2 0.018, 0.07 nats below F sigma=0.05), LV in 3 of 5 (change -0.064, -0.053 in the others; one restart "
    "stuck at mean s2 0.38, ELBO -1.79); LV > LS in 3 of 5, LS above the best F-VAE in 4 of 5",
    "the chosen shape with 3e-4 x 1500 before the 1e-4 stage (13500): LS and LV settled in 4 of 4; LV - LS per "
    "restart [0.137, 0.159, 0.084, -0.024], within 0.02 of the chosen schedule's",
    "3e-3 x 4500, 1e-3 x 2250, 1e-4 x 2250 (9000): LS settled in 4 of 4, LV in 3 of 4, but LV restart 0 ends at "
    "-1.44 (-1.13 after the chosen schedule): LV - LS [-0.127, 0.160, 0.199, -0.013]; too short",
    "a constant 3e-3 for 30000 steps, 6 restarts: LS settled at the end in 3 of 6 (one restart left its s2 "
    "~0.06 plateau only after ~22000 steps), LV in 5 of 6; at this rate held-out ELBOs jump between checkpoints "
    "3000 steps apart by up to 0.2 nats (LS) and 0.15 (F sigma=0.1, between -1.56 and -1.71 from 12000 steps "
    "on), as much as the gaps judged: the final decay is what makes the scores comparable",
)


def _three_noise_settings(ctx):
    """Sizes per profile. quick: ``QUICK_SCHEDULE`` with F-VAE, LS-VAE, LV-VAE and F*-VAE, 3 restarts;
    full: berger2020's networks (ResNets of 4 blocks of 200 units), 10 runs, a long schedule."""
    return ctx.scale(
        mini=dict(restarts=2, n_train=1000, n_test=200, hidden=(8, 8), residual=False,
                  schedule=((1e-2, 160), (3e-3, 40)), eval_samples=2, eval_replicates=2, modes=("F", "LS", "LV", "F*", "F schedule")),
        quick=dict(restarts=3, n_train=20000, n_test=1000, hidden=(32, 32), residual=False,
                   schedule=QUICK_SCHEDULE, eval_samples=16, eval_replicates=4, checkpoint_eval=(4, 2),
                   modes=("F", "LS", "LV", "F*")),
        full=dict(restarts=10, n_train=100000, n_test=5000, hidden=(200,) * 5, residual=True,
                  schedule=((1e-3, 40000), (3e-4, 10000)), eval_samples=64, eval_replicates=4,
                  modes=("F", "LS", "LV", "F*", "F schedule")))


def _settled(mode):
    """Per restart: has the mode's observation variance settled (``rules.settled`` on log s2)?"""
    s = rules.settled(np.log(mode.trajectory), rtol=0.0, atol=SETTLED_LOG_S2)
    return np.asarray(s.per_restart), np.asarray(s.change), s.rule


def _compare(statement, better, worse, need, m, *, note=""):
    """A Part for "better beats worse" (held-out ELBO, restart by restart), judged only on settled runs.

    ``need``: labels of the modes whose learned variance must have settled; ``m``: label -> ModeResult.
    A part whose runs have not all settled is not judged (``holds`` None), with the provisional comparison.
    """
    a = m[better].elbo if isinstance(better, str) else better[1]
    b = m[worse].elbo if isinstance(worse, str) else worse[1]
    cmp = rules.paired(a, b)
    unsettled = {k: [r for r, ok in enumerate(_settled(m[k])[0]) if not ok] for k in need}
    unsettled = {k: v for k, v in unsettled.items() if v}
    evidence = f"{cmp.wins} of {cmp.n} restarts won{note}"
    if unsettled:
        where = "; ".join(f"{k} in restarts {v}" for k, v in unsettled.items())
        evidence = f"variance still moving ({where}), so not judged; provisional: {evidence}"
    part = rules.part(statement, cmp, evidence, judged=not unsettled)
    part.rule += ", on runs whose learned variance has settled"
    return part


def _not_run(statement, profile, mode):
    return Part(statement, None, f"not run in the {profile} profile (run --full)", f"needs {mode}")


def ordering_parts(res, profile):
    """The parts of berger2020's statement judged on a ``ThreeNoiseResult`` (modes "F" grid, "LS", "LV"; "F*"
    and "F schedule" when trained).

    Returns (parts, settled, change, improving, which_f): the ``Part``s; per mode label, per restart,
    whether its variance has settled, the change of mean log s2 over the last tenth, and whether its
    held-out ELBO is still improving; and the best F-VAE label per restart.
    """
    m = res.modes
    R = len(m["LS"].elbo)
    f_labels = [k for k in m if k.startswith("F sigma=")]
    best_f_per_restart = np.max([m[k].elbo for k in f_labels], axis=0)
    which_f = [f_labels[i] for i in np.argmax([m[k].elbo for k in f_labels], axis=0)]
    settled = {k: _settled(m[k])[0] for k in m}
    change = {k: _settled(m[k])[1] for k in m}
    improving = {k: np.asarray(rules.still_improving(m[k].checkpoint_elbo, tol=IMPROVING_NATS)) for k in m}
    # the final variances say which state a losing restart ended in (a plateau, a high-variance LV-VAE)
    s2 = {k: rules.fmt_values(m[k].sigma2, 4) for k in ("LS", "LV", "F*") if k in m}
    parts = [
        _compare("LV-VAE beats LS-VAE", "LV", "LS", ("LV", "LS"), m,
                 note=f"; LV-VAE's mean s2(z) per restart {s2['LV']}, LS-VAE's s2 {s2['LS']}"),
        _compare("LS-VAE beats every F-VAE", "LS", ("best F", best_f_per_restart), ("LS",), m,
                 note=f"; the best F-VAE per restart: {which_f}; LS-VAE's s2 per restart {s2['LS']}"),
    ]
    if "F*" in m:
        parts += [_compare("F*-VAE (sigma fixed at LS-VAE's final value) is below LS-VAE", "LS", "F*", ("LS",), m,
                           note=f"; F*-VAE's s2 per restart {s2['F*']}"),
                  _compare("F*-VAE is below the F-VAE with sigma = 0.1", F_STAR_REFERENCE, "F*", ("LS",), m,
                           note=f"; F*-VAE's s2 per restart {s2['F*']} (sigma = 0.1: s2 = 0.01)")]
    else:
        parts += [_not_run("F*-VAE (sigma fixed at LS-VAE's final value) is below LS-VAE", profile, "F*-VAE"),
                  _not_run("F*-VAE is below the F-VAE with sigma = 0.1", profile, "F*-VAE")]
    statement = "an F-VAE replaying LS-VAE's sigma2 trajectory reproduces LS-VAE's ELBO (App. A.2)"
    if "F schedule" in m:
        target = np.full(R, m["LS"].elbo[res.replayed_restart])
        cmp = rules.matches(m["F schedule"].elbo, target, REPLAY_TOL)
        bad = [r for r, ok in enumerate(settled["LS"]) if not ok]
        evidence = (f"replay ELBO per restart {_r(m['F schedule'].elbo, 3)} vs the replayed LS-VAE run (restart "
                    f"{res.replayed_restart}) {m['LS'].elbo[res.replayed_restart]:.3f}")
        parts.append(Part(statement, None, f"LS-VAE's variance still moving in restarts {bad}, so not judged; "
                                           f"provisional: {evidence}", str(cmp)) if bad else
                     Part(statement, cmp.holds, evidence, str(cmp)))
    else:
        parts.append(_not_run(statement, profile, "the replayed schedule"))
    return parts, settled, change, improving, which_f


def _budget_table(m, pairs):
    """Per checkpoint, restarts won by each compared pair (provisional: settledness is not asked here)."""
    steps = next(iter(m.values())).checkpoints
    out = {}
    for name, a, b in pairs:
        ea = a(m) if callable(a) else m[a].checkpoint_elbo
        eb = b(m) if callable(b) else m[b].checkpoint_elbo
        out[name] = [f"{int(s)}: {rules.paired(ea[c], eb[c]).wins}/{ea.shape[1]}" for c, s in enumerate(steps)]
    return out


def _draw_modes(res, settled):
    def draw(fig):
        ax1, ax2, ax3 = fig.subplots(1, 3)
        m = res.modes
        top = res.true_log_likelihood
        for k, color in (("LS", "C0"), ("LV", "C3"), ("F schedule", "C2")):
            if k in m:
                steps = np.arange(1, m[k].trajectory.shape[0] + 1)
                for r in range(m[k].trajectory.shape[1]):
                    ax1.plot(steps, m[k].trajectory[:, r], color=color, lw=0.8, ls="-" if settled[k][r] else "--",
                             label=k if r == 0 else None)
        for k in m:
            if k.startswith("F sigma="):
                ax1.axhline(m[k].sigma2[0], color="0.7", lw=0.6)
        ax1.set(yscale="log", xlabel="training step", ylabel="sigma2 (LV: mean of s2(z) over a batch)",
                title="sigma2 per restart (dashed: not settled; grey: F grid) (berger2020 Fig. 10)")
        ax1.legend(fontsize=7)
        # the gap to the truth's exact log p(x) on a log axis: the good modes stay readable beside F sigma=0.01
        labels = list(m)
        for j, k in enumerate(labels):
            ax2.plot(np.full(len(m[k].elbo), j), top - m[k].elbo, "o", mfc="none", color=f"C{j % 10}")
        for r in range(len(m[labels[0]].elbo)):
            ax2.plot(range(len(labels)), [top - m[k].elbo[r] for k in labels], color="0.8", lw=0.5, zorder=0)
        ax2.set_xticks(range(len(labels)), labels, rotation=60, fontsize=7)
        ax2.set(yscale="log", ylabel="log p(x) - ELBO (nats per point)",
                title="exact log p(x) minus held-out ELBO per restart, lower is better (grey: one restart) "
                      "(berger2020 Table 1)")
        for j, k in enumerate(labels):
            e = top - m[k].checkpoint_elbo
            ax3.plot(m[k].checkpoints, e.mean(axis=1), "-o", color=f"C{j % 10}", ms=3, label=k)
        ax3.set(yscale="log", xlabel="training step (budget)", ylabel="log p(x) - ELBO, mean of restarts",
                title="budget dependence: exact log p(x) minus held-out ELBO during training")
        ax3.legend(fontsize=6)
    return draw


@claim("three_noise_ordering", paper="berger2020", kind="empirical",
       statement="berger2020 Sec. 4.2 (Table 1, 10 runs) on the three-noise-region manifold: \"the option significantly "
                 "dominating all others is LV-VAE, learning a vector sigma; the second best is LS-VAE, learning a "
                 "scalar sigma\" (so LV-VAE > LS-VAE > every F-VAE, sigma in {1, 0.5, 0.1, 0.05, 0.01}, in ELBO); "
                 "\"when fixing sigma to the optimal scalar value found by LS-VAE the ELBO obtained by F*-VAE is "
                 "significantly degraded compared to LS-VAE; the ELBO of F*-VAE also is significantly lower than for "
                 "F-VAE with sigma = 0.1\"; and App. A.2: \"F-VAE with this dynamic schedule of sigma consistently "
                 "yields the same loss curves, final ELBO ... as LS-VAE\".",
       paper_figure="Table 1 (ELBO averaged over 10 runs; its values were lost with the text's math), Fig. 4 and App. "
                    "A.2 / Fig. 10 (the replayed schedule)")
def three_noise_ordering(ctx):
    """Each part of the paper's statement restart by restart (``rules.paired``; restart r of every mode
    starts from the same networks), and only where the learned variances involved have settled
    (``rules.settled`` on log s2, ``SETTLED_LOG_S2``): a part whose LS-VAE or LV-VAE is still annealing is
    not judged (``Part.holds`` None), and reported with the provisional per-restart comparison. quick runs
    ``QUICK_SCHEDULE`` (after which both settled in 4 of 4 restarts measured on this data seed) and F*-VAE; the
    replayed schedule runs in the mini and full profiles only (CPU budget, see the choices).
    """
    cfg = _three_noise_settings(ctx)
    modes = cfg.pop("modes")
    res = three_noise_experiment(seed=ctx.rng("three_noise_ordering"), modes=modes, progress=ctx.progress, **cfg)
    m = res.modes
    R = len(m["LS"].elbo)
    parts, settled, change, improving, which_f = ordering_parts(res, ctx.profile)
    f_labels = [k for k in m if k.startswith("F sigma=")]
    paper_rank = {"LV": "best (Table 1; value lost in the text)", "LS": "second (Table 1; value lost)",
                  "F*": "below LS-VAE and below F sigma=0.1 (value lost)",
                  "F schedule": "= LS-VAE (App. A.2)"}
    rows = []
    for k, mode in m.items():
        notes = []
        if k in ("LS", "LV"):
            notes.append("settled in restarts " + str([r for r in range(R) if settled[k][r]]) + ", change of mean "
                         f"log s2 over the last tenth {_r(change[k], 3)}")
        if np.any(improving[k]):
            notes.append(f"held-out ELBO still improving (> {IMPROVING_NATS} nats from 0.8 T to T) in restarts "
                         f"{[r for r in range(R) if improving[k][r]]}")
        if mode.diverged:
            notes.append(f"diverged: {mode.diverged}")
        notes.append(f"Monte Carlo s.e. of the scores <= {float(np.max(mode.elbo_se)):.4f}")
        rows.append(Row(f"{k}: held-out ELBO per point", _r(mode.elbo, 3),
                        paper_rank.get(k, "below LS-VAE (Table 1; value lost)"), "; ".join(notes)))
    rows.append(Row("LS: final sigma2", _r(m["LS"].sigma2, 5), "lost in the text (F*-VAE's value)", ""))
    rows.append(Row("LV: mean s2(z) over held-out reconstructions", _r(m["LV"].sigma2, 5), None,
                    f"started at {res.settings['lv_init_sigma2']}"))
    rows.append(Row("exact log p(x) of the truth (quadrature): the ceiling", [round(res.true_log_likelihood, 3)], None))
    budget = _budget_table(m, [("LV > LS", "LV", "LS"),
                               ("LS > every F", "LS", lambda mm: np.max([mm[k].checkpoint_elbo for k in f_labels], axis=0))])
    measured = {f"elbo[{k}]": _r(mode.elbo, 4) for k, mode in m.items()}
    measured.update({f"mean_elbo[{k}]": round(float(np.mean(mode.elbo)), 4) for k, mode in m.items()})
    measured.update({"best_f": res.best_f, "best_f_per_restart": which_f,
                     "ls_final_sigma2": _r(m["LS"].sigma2, 5), "lv_mean_sigma2": _r(m["LV"].sigma2, 5),
                     "ls_settled": settled["LS"].tolist(), "lv_settled": settled["LV"].tolist(),
                     "ls_change_log_s2_last_tenth": _r(change["LS"], 3),
                     "lv_change_log_s2_last_tenth": _r(change["LV"], 3),
                     "true_log_likelihood": round(res.true_log_likelihood, 4),
                     **{f"elbo_se[{k}]": _r(mode.elbo_se, 5) for k, mode in m.items()},
                     "restarts_won_by_budget": budget})
    spread = {f"mean_elbo[{k}]": round(float(np.std(mode.elbo, ddof=1)) if R > 1 else 0.0, 4) for k, mode in m.items()}
    order = " > ".join(f"{k} {np.mean(m[k].elbo):.3f}" for k in sorted(m, key=lambda k: -np.mean(m[k].elbo)))
    fig = ctx.figure("three_noise_ordering", _draw_modes(res, settled), panels=(1, 3), panel_size=(4.2, 3.4))
    steps = sum(s for _, s in res.settings["schedule"])
    return Outcome(
        parts=parts, rows=rows, measured=measured, spread=spread,
        rule=f"each part restart by restart (refvae.verify.rules.paired: every restart below 5 restarts, a one-sided "
             f"sign test from 5; the replay by rules.matches within {REPLAY_TOL} nats), judged only where the learned "
             f"variances involved have settled (rules.settled on log s2: the last tenth of training within "
             f"{SETTLED_LOG_S2} of the tenth before); reproduced when every part holds, partly reproduced when some do",
        choices={
            "networks": f"{'ResNets of 4 blocks of 200 units (the paper)' if cfg['residual'] else 'ReLU MLPs ' + str(cfg['hidden'])}"
                        ", K = 2, the same initial networks for every mode (restart r); LV-VAE's decoder has a second "
                        "(log-variance) head",
            "LV-VAE initialisation": f"log-variance head constant at s2 = {LV_INIT_SIGMA2} (weights 0, bias log "
                                     f"{LV_INIT_SIGMA2}); the paper gives none. Measured (quick networks, 6000 steps, 8 "
                                     "restarts, LV > LS restart by restart): default random head (s2(z) ~ 1) 7 of 8, "
                                     "head at LS-VAE's start s2 = 1 6 of 8 (one restart stuck at mean s2 0.35), at 0.1 "
                                     "or 0.01 8 of 8; with a constant 3e-3 for 8000 steps the default head left 2 of 4 "
                                     "restarts stuck at s2 ~ 0.4, below every F-VAE (today's 'LV > LS' passed with both "
                                     "stuck). From 0.01, under the quick schedule, 1 of 9 restarts (two data seeds) "
                                     "still ended stuck at mean s2 0.38. See "
                                     "refvae.experiments.noise_modes.LV_INIT_SIGMA2",
            "latent dimension": "K = 2 (lost in the text): with K = 1 both LS-VAE and LV-VAE stayed near -1.75 after 8000 "
                                "steps (LS s2 0.06-0.07), against -1.3 to -1.4 with K = 2",
            "budget": f"{steps} Adam steps, batch {res.settings['batch_size']}, schedule {res.settings['schedule']}, "
                      f"{R} restarts. "
                      + ctx.scale(mini="A miniature that exercises the code; a part whose variances have not settled "
                                       "is not judged.",
                                  quick="QUICK_SCHEDULE, the cheapest schedule tried that settles LS-VAE and LV-VAE by "
                                        "the unchanged rule in every restart on this data seed, with per-restart "
                                        "comparisons that a longer one confirms. "
                                        "Measured per schedule (quick networks): " + "; ".join(QUICK_SCHEDULE_MEASURED),
                                  full="How the ResNets settle under this schedule has not been measured; a part whose "
                                       "variance has not settled is reported not judged."),
            "restarts": "each part must hold in every restart below 5 restarts (quick: 3), so one bad restart fails "
                        "it; from 5 a one-sided sign test decides (full, 10 restarts: 9 wins). Per-restart outcomes "
                        "are bimodal (plateaus, a stuck LV-VAE): over the 9 restarts measured with QUICK_SCHEDULE "
                        "outside this run (two data seeds), LV > LS in 6 of 9 and LS above the best F-VAE in 8 of 9, "
                        "so quick's 3 restarts can go either way on both parts; full's 10 give the sign test",
            "quick profile": "trains the F grid, LS-VAE, LV-VAE and F*-VAE; the replayed schedule runs in mini and "
                             "full (CPU budget: about 150 s for this claim)",
            "F*-VAE": "restart r fixed at LS-VAE restart r's final sigma2 (the paper: LS-VAE's final value)",
            "the F-VAE F*-VAE is compared with": "sigma = 0.1, App. A.1's Fig. 7(c), the only F-VAE with acceptable "
                                                 "generation (the value was lost in Sec. 4.2's text)",
            "replay": "the median LS-VAE restart's trajectory, from every restart's initial networks (App. A.2: one "
                      "schedule, several initialisations)",
            "scores": f"held-out ELBO per point with every constant (the paper adds the log sigma terms to its F-VAE "
                      f"values for the same reason), on {res.settings['n_test']} held-out points, "
                      f"{res.settings['eval'][0]} samples x {res.settings['eval'][1]} replicates (the checkpoints of "
                      f"the budget table: {res.settings['checkpoint_eval'][0]} x {res.settings['checkpoint_eval'][1]})"},
        paper_value="ELBO: LV-VAE > LS-VAE > every F-VAE; F*-VAE below LS-VAE and below F sigma=0.1; replayed "
                    "schedule = LS-VAE (Table 1's numbers were lost in the text)",
        summary=(f"held-out ELBO (mean over {R} restarts; exact log p(x) {res.true_log_likelihood:.3f}): {order}. "
                 f"LS-VAE settled in {int(settled['LS'].sum())}/{R} restarts, LV-VAE in {int(settled['LV'].sum())}/{R}. "
                 + "; ".join(f"{p.statement}: {'not judged' if p.holds is None else 'holds' if p.holds else 'fails'}"
                             for p in parts)
                 + (f"; restarts won by budget: {budget}" if budget else "")),
        figures=[fig] if fig else [])

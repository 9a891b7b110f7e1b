"""Claims of yacoby2020: Yacoby, Pan, Doshi-Velez, "Characterizing and Avoiding Problematic Global Optima of VAEs"."""
from __future__ import annotations

import numpy as np

from ...experiments.jtex import (A_GT, CONTROL, KNN_REPEATS, KNN_SIZE, PAPER_GRIDS, REFERENCE_LL, SIGMA2,
                                 TABLE1_DATASETS, TABLE1_KNN_ALPHAS, TABLE1_METHODS, TABLE1_PAPER,
                                 is_coverage_experiment, linear_jtex_objective_experiment, objective_path,
                                 table1_experiment)
from .. import rules
from ..registry import Outcome, Part, Row, claim, share_limits

# Tolerance of "the learned model attains the optimum's L": 1% of the gap between the truth's L
# and the optimum's (0.33 nats on yacoby2020's sizes, so 3e-3 nats). Measured L - L* after training:
# at most 0.12 of the tolerance in mini (2300 steps, 5 seeds x 2 restarts) and less in quick; a
# 1500-step run left up to 7 tolerances (the slow last stretch is along a flat direction of L,
# A A^T's second diagonal entry). Optimiser jitter in the last stage: <= 0.01 of the tolerance.
GAP_FRACTION = 0.01

NAMES = {"linear_jtex": "LinearJTEx", "cubic_jtex": "CubicJTEx", "gaussian": "Gaussian", "mobius": "Mobius"}


@claim("linearjtex_objective", paper="yacoby2020", kind="theorem",
       statement="On LinearJTEx the VAE objective's global optimum is not the data-generating model: "
                 "L(theta_GT, phi_GT) = 0.532 > L(theta*, phi*) = 0.196 (closed forms), and a VAE trained "
                 "by refvae reaches the optimum's L, below the truth's, with a model that misfits the data "
                 "covariance (KL(p || p_theta) > 0).",
       paper_figure="Sec. 1, Eq. 3 and Fig. 1C-D: L(theta_GT, phi_GT) = 0.532, L(theta*, phi*) = 0.196")
def linearjtex_objective(ctx):
    res = linear_jtex_objective_experiment(
        seed=ctx.rng("linearjtex_objective"), restarts=ctx.scale(2, 3, 10), n=500,
        schedule=ctx.scale(((1e-1, 300), (3e-2, 500), (1e-2, 500), (3e-3, 500), (1e-3, 500)),
                           ((1e-1, 400), (3e-2, 800), (1e-2, 800), (3e-3, 1000), (1e-3, 1000)),
                           ((1e-1, 1000), (3e-2, 4000), (1e-2, 5000), (3e-3, 5000), (1e-3, 5000), (3e-4, 5000))),
        n_samples=2, eval_samples=ctx.scale(64, 256, 1024), starts=ctx.scale(3, 5, 10), progress=ctx.progress)
    tol = GAP_FRACTION * (res.gt - res.optimum)
    n_se = 4.0
    checks = {
        # analytic reproduces the paper's two numbers (population covariance)
        "closed forms give 0.532 and 0.196": round(res.paper_gt, 3) == 0.532 and round(res.paper_optimum, 3) == 0.196,
        # the trained decoder attains the optimum (with the best encoder); L* is a minimum
        "learned L = optimum L": bool(np.all((res.learned >= res.optimum - 1e-9) & (res.learned - res.optimum <= tol))),
        # with refvae's own trained encoder (Monte Carlo, n_se standard errors)
        "learned L (own encoder) = optimum L": bool(np.all(
            (res.learned_own >= res.optimum - n_se * res.learned_own_se)
            & (res.learned_own - res.optimum <= tol + n_se * res.learned_own_se))),
        # ... which is far below the truth's, and misfits p(x) like the optimum (MLE term > 0)
        "learned L < truth L": bool(np.all(res.learned < res.gt - 0.5 * (res.gt - res.optimum))),
        "learned model misfits the data": bool(np.all(res.learned_mle > 0.5 * res.optimum_mle)
                                               and res.optimum_mle > 10 * res.gt_mle),
    }
    measured = {
        "closed_form_L_truth": res.paper_gt, "closed_form_L_optimum": res.paper_optimum,
        "sample_L_truth": res.gt, "sample_L_optimum": res.optimum,
        "learned_L": res.learned.tolist(), "learned_L_own_encoder": res.learned_own.tolist(),
        "learned_L_own_encoder_se": res.learned_own_se.tolist(), "tolerance": tol,
        "learned_mle_term": res.learned_mle.tolist(), "learned_pm_term": res.learned_pm.tolist(),
        "optimum_mle_term": res.optimum_mle, "truth_mle_term": res.gt_mle,
        "learned_cov_error": res.cov_error.tolist(), "truth_cov_error": res.gt_cov_error,
        "optimiser_jitter": res.jitter.tolist(),
    }
    measured.update({k: bool(v) for k, v in checks.items()})
    spread = {"learned_L": float(np.std(res.learned)), "learned_L_own_encoder": float(np.std(res.learned_own))}
    failing = [k for k, v in checks.items() if not v]
    rows = [
        Row("L(theta_GT, phi_GT), population covariance (closed form)", [res.paper_gt], 0.532),
        Row("L(theta*, phi*), population covariance (closed form, BFGS minimum)", [res.paper_optimum], 0.196),
        Row("L of refvae's trained VAE, best encoder (closed form at the learned A), per restart", res.learned.tolist(),
            None, f"the {res.settings['n']}-point sample's own optimum is {res.optimum:.4f} (truth {res.gt:.4f}); "
                  f"tolerance {tol:.1e}"),
        Row("L of refvae's trained VAE with its own trained encoder (Monte Carlo), per restart",
            res.learned_own.tolist(), None, "standard errors " + rules.fmt_values(res.learned_own_se, 4)),
        Row("KL(p || p_theta) (MLE term) of the trained VAE, per restart", res.learned_mle.tolist(), None,
            f"at the sample optimum {res.optimum_mle:.4f}; at the truth {res.gt_mle:.4f} (sampling error only)"),
    ]
    choices = {
        "training schedule": "Adam, full batch, learning rate "
                             + " -> ".join(f"{lr:g} ({n} steps)" for lr, n in res.settings["schedule"])
                             + f", {res.settings['n_samples']} Monte Carlo samples per point: L is flat along A A^T's "
                               "second diagonal entry, so a decreasing rate reaches the optimum to 1e-4 nats; the "
                               "claim is about the optimum, not the paper's training protocol",
        "data": f"{res.settings['n']} points of LinearJTEx; L is evaluated at their second moment (the closed forms "
                "at the population covariance give the paper's two numbers)",
    }
    fig = ctx.figure("linearjtex_objective", _draw_objective(res), panels=(1, 2))
    return Outcome(
        passed=not failing, measured=measured, spread=spread, rows=rows, choices=choices,
        rule="theorem: every check must hold (" + "; ".join(checks) + ")",
        paper_value={"L(theta_GT, phi_GT)": 0.532, "L(theta*, phi*)": 0.196},
        figures=[fig] if fig else [],
        summary=f"closed forms {res.paper_gt:.3f} (truth) and {res.paper_optimum:.3f} (optimum) vs paper 0.532 / "
                f"0.196; on the {res.settings['n']}-point sample L(truth) = {res.gt:.4f}, L* = {res.optimum:.4f}, "
                f"refvae's trained VAE L = {np.mean(res.learned):.4f} (max gap {np.max(res.learned - res.optimum):.1e},"
                f" tolerance {tol:.1e}; own encoder {np.mean(res.learned_own):.4f}), KL(p || p_theta) "
                f"{np.mean(res.learned_mle):.3f} vs {res.gt_mle:.4f} for the truth"
                + ("" if not failing else f"; FAILS: {', '.join(failing)}"))


def _draw_objective(res):
    def draw(fig):
        ax1, ax2 = fig.subplots(1, 2)
        population = A_GT @ A_GT.T + SIGMA2 * np.eye(2)
        ts = np.linspace(-0.2, 1.2, 141)
        mle, pm = objective_path(population, A_GT, res.A_optimum, ts)
        ax1.plot(ts, mle + pm, "k", label="L = MLE + PM")
        ax1.plot(ts, mle, "C0--", label="MLE term")
        ax1.plot(ts, pm, "C3:", label="PM term")
        for t, label, c in ((0.0, "truth", "C2"), (1.0, "VAE optimum", "C1")):
            m, p = objective_path(population, A_GT, res.A_optimum, np.array([t]))
            ax1.plot([t], [m[0] + p[0]], "o", color=c, ms=7, label=f"{label}: L = {m[0] + p[0]:.3f}")
        ax1.set(xlabel="t: A A^T = (1 - t) A_GT A_GT^T + t A* A*^T", ylabel="nats per point",
                title="L along truth -> optimum (yacoby2020 Eq. 2)")
        ax1.legend(fontsize=7)
        # the two models' p(x) (yacoby2020 Fig. 1C-D): 1 and 2 sd ellipses over a sample of the truth
        x = np.random.default_rng(0).multivariate_normal(np.zeros(2), population, size=500)
        ax2.scatter(x[:, 0], x[:, 1], s=3, color="0.6", label="data (truth)")
        angle = np.linspace(0, 2 * np.pi, 200)
        circle = np.stack([np.cos(angle), np.sin(angle)])
        for A, label, c in ((A_GT, "truth", "C2"), (res.A[0], "trained VAE (restart 1)", "C1")):
            root = np.linalg.cholesky(A @ A.T + SIGMA2 * np.eye(2))
            for k in (1, 2):
                e = k * root @ circle
                ax2.plot(e[0], e[1], color=c, lw=1.5, label=f"{label}, 1 and 2 sd" if k == 1 else None)
        ax2.set(xlabel="x1", ylabel="x2", title="p(x): truth vs trained VAE (Fig. 1C-D)")
        ax2.legend(fontsize=7, markerscale=3)
    return draw


# ============================================================================ Table 1

#: Still-improving rule (``rules.still_improving``) on each kept run's training curve (its own loss,
#: nats per point; LiBI: its step-1 reconstruction term): the mean of the last 10% of the steps
#: below the mean of the 10% before 0.8 T by more than this many nats. On LinearJTEx runs that have
#: settled (quick, learning rate 0.1) the Monte Carlo noise left in these window means moved them
#: by at most 0.03 (measured); every run judged "still improving" on the Gaussian, CubicJTEx and
#: Mobius sets in quick improved by 1 to 7000 nats.
IMPROVING_TOL = 0.05
IMPROVING_WINDOW = 0.1
#: "The VAE's shortfall is its objective's optimum": the control (a VAE started at theta_GT, phi_GT)
#: gives up at least this share of the random-start VAE's shortfall from the truth's test
#: log-likelihood (LinearJTEx: 0.9-1.0 of it, measured; Gaussian: 0.02 nats of 120 in quick).
EXPLAINED = 0.5


def _settings(ctx, name):
    """Per-profile protocol of one data set: mini (seconds), quick (minutes in all), full (the paper's)."""
    quick = {"linear_jtex": dict(n_datasets=2, restarts=1, n=500, steps=3000, lr=0.1, libi_lr=0.03),
             "gaussian": dict(n_datasets=1, restarts=1, n=500, steps=1500, lr=0.01),
             "cubic_jtex": dict(n_datasets=1, restarts=1, n=500, steps=600, lr=0.01),
             "mobius": dict(n_datasets=1, restarts=1, n=300, steps=300, lr=0.01)}[name]
    one = {"VAE": ({},), "beta-VAE": ({"beta": 2.0},), "beta-VAE+anneal": ({"beta": 1.0},),
           "LIN": ({"segments": PAPER_GRIDS[name]["LIN"][0]["segments"]},),
           "LiBI": ({"eps_hz": 1.0, "eps_sigma": 0.5, "eps_mu": 0.5, "repetitions": 1},)}
    mini = dict(n_datasets=1, restarts=1, n=60, steps=80, lr=0.05, grid=dict(one, LIN=({"segments": 4},)),
                is_samples=50, knn_repeats=4, truth_fit_steps=30)
    full = dict(n_datasets=10, restarts=10, n=500, steps=30000, lr=0.01, grid=PAPER_GRIDS[name], is_samples=5000,
                knn_repeats=KNN_REPEATS, truth_fit_steps=3000)
    quick.update(grid=one, is_samples=1000, knn_repeats=200, truth_fit_steps=1000)
    return ctx.scale(mini, quick, full)


@claim("libi_table1", paper="yacoby2020", kind="empirical",
       statement="yacoby2020 Sec. 3 and Table 1: on 4 synthetic data sets (LinearJTEx, CubicJTEx, Gaussian, Mobius) "
                 "\"LiBI learns generative models that better capture p(x) (as quantified by log-likelihood and the "
                 "Smooth k-NN test statistic)\" than the VAE, beta-VAE, beta-VAE with annealing and Lagging Inference "
                 "Networks (\"Our method out-performs all other benchmarks\"; Test-LL on CubicJTEx called unreliable), "
                 "and (Sec. 1-2) the traditional methods fall short because the VAE objective's global optimum is a "
                 "worse model than the truth.",
       paper_figure="Table 1 (all four columns), Sec. 3, App. E")
def libi_table1(ctx):
    results = []
    for i, name in enumerate(TABLE1_DATASETS):
        results.append(table1_experiment(
            name, seed=ctx.rng("libi_table1", name), **_settings(ctx, name),
            progress=lambda f, m, i=i: ctx.progress((i + f) / len(TABLE1_DATASETS), m)))
    parts, rows, measured, spread = [], [], {}, {}
    for res in results:
        p, r, m, s = _table1_column(res)
        parts += p
        rows += r
        measured.update(m)
        spread.update(s)
    fig_values = ctx.figure("libi_table1", _draw_table1(results), panels=(2, 4))
    fig_samples = ctx.figure("libi_table1_samples", _draw_samples(results), panels=(4, 7))
    held = []
    for res in results:
        mine = [p for p in parts if p.statement.startswith(NAMES[res.dataset] + ":")]
        words = ["not judged (still improving)" if p.holds is None else "holds" if p.holds else "no" for p in mine]
        held.append(f"{NAMES[res.dataset]}: LL {words[0]}, S-kNN {words[1]}"
                    + (f", optimum explains the VAE's shortfall {words[2]}" if len(words) > 2 else ""))
    first = results[0].settings
    return Outcome(
        parts=parts, rows=rows, measured=measured, spread=spread,
        paper_value={NAMES[k]: {m: {"test LL": f"{v[0][0]:.2f} +- {v[0][1]:.2f}",
                                    "S-kNN": f"{v[1][0]:.2f} +- {v[1][1]:.2f}"}
                                for m, v in TABLE1_PAPER[k].items()} for k in TABLE1_PAPER},
        figures=[f for f in (fig_values, fig_samples) if f],
        rule=("each part: LiBI against each of VAE, beta-VAE, beta-VAE+anneal and LIN, rules.paired per data-set "
              "replicate (the restart each method keeps by its own validation objective; a win needs a margin of 3 "
              "combined Monte Carlo standard errors where the values are estimates); a part with a kept run still "
              f"improving at the end of its budget (rules.still_improving: last {IMPROVING_WINDOW:.0%} of the steps "
              f"better than the {IMPROVING_WINDOW:.0%} before 0.8 T by > {IMPROVING_TOL} nats of its own loss) is "
              "not judged (neither holds nor fails); test log-likelihoods are the reference values (exact on "
              "LinearJTEx and Gaussian, from the decoder's exact inverse on CubicJTEx), yacoby2020's estimate on Mobius. The "
              "explanation parts: the control run (theta_GT, phi_GT) gives up at least "
              f"{EXPLAINED:.0%} of the random-start VAE's shortfall from the truth, in every replicate (not judged "
              "while either run is still improving). Reproduced when every part holds."),
        choices=_table1_choices(ctx, first),
        summary="; ".join(held) + f" ({ctx.profile} profile: " + ", ".join(
            f"{NAMES[r.dataset]} {r.settings['n_datasets']} replicate(s) x {r.settings['restarts']} restart(s) x "
            f"{r.settings['steps']} steps at lr {r.settings['lr']:g}" for r in results) + ")")


def _flags(method):
    return [bool(rules.still_improving(c, at=0.8, tol=IMPROVING_TOL, higher_is_better=False,
                                       window=IMPROVING_WINDOW)[0]) if len(c) >= 10 else False
            for c in method.trajectory]


def _ll_values(res, label):
    """(values, standard errors, kind) of a method's test log-likelihood per replicate."""
    m = res.methods[label]
    if REFERENCE_LL[res.dataset] is not None:
        return m.test_ll_ref, m.test_ll_ref_se, REFERENCE_LL[res.dataset]
    return m.test_ll_is, m.test_ll_is_se, "yacoby2020's IS estimate"


def _compare(res, metric):
    """Per baseline: rules.paired(LiBI, baseline) on ``metric`` ("ll" or "knn") per replicate."""
    out = {}
    for o in TABLE1_METHODS:
        if o == "LiBI" or o not in res.methods:
            continue
        if metric == "ll":
            (a, sa, _), (b, sb, _) = _ll_values(res, "LiBI"), _ll_values(res, o)
            higher = True
        else:
            libi, other = res.methods["LiBI"], res.methods[o]
            a, sa, b, sb = libi.knn, libi.knn_se, other.knn, other.knn_se
            higher = False
        margin = float(np.nanmax(3.0 * np.sqrt(np.asarray(sa) ** 2 + np.asarray(sb) ** 2)))
        out[o] = rules.paired(a, b, higher_is_better=higher, margin=margin if np.isfinite(margin) else 0.0)
    return out


def _table1_column(res):
    """Parts, rows, measured values and spreads of one data set."""
    ds, name = res.dataset, NAMES[res.dataset]
    paper = TABLE1_PAPER[ds]
    flags = {k: _flags(m) for k, m in res.methods.items()}
    moving = [k for k in TABLE1_METHODS if k in flags and any(flags[k])]
    parts = []
    for metric, what in (("ll", "test log-likelihood higher"), ("knn", "S-kNN lower")):
        comps = _compare(res, metric)
        won = all(c.holds for c in comps.values())
        kind = _ll_values(res, "LiBI")[2] if metric == "ll" else "S-kNN"
        evidence = "; ".join(f"vs {o}: LiBI - {o} = {rules.fmt_values(c.diffs)} ({c})" for o, c in comps.items())
        caveat = ""
        if metric == "ll" and ds == "cubic_jtex":
            caveat = (" (the paper itself calls Test-LL unreliable here, and its own table has LiBI -8.90 below "
                      "the VAE's -5.85)")
        if moving:
            evidence = (f"not judged: still improving at the end of the budget: {', '.join(moving)}. Measured: "
                        + evidence)
        parts.append(Part(f"{name}: LiBI's {what} than every other method's{caveat}", None if moving else won,
                          f"{kind}: " + evidence, comps[next(iter(comps))].rule if comps else ""))
    rows, measured, spread = [], {}, {}
    for label, m in res.methods.items():
        ll, ll_se, kind = _ll_values(res, label)
        still = [i + 1 for i, f in enumerate(flags[label]) if f]
        flag = f"; STILL IMPROVING at T in replicate(s) {still}" if still else ""
        paper_ll = f"{paper[label][0][0]:.2f} +- {paper[label][0][1]:.2f}" if label in paper else None
        paper_knn = f"{paper[label][1][0]:.2f} +- {paper[label][1][1]:.2f}" if label in paper else None
        setting = ", ".join(f"{k}={v:g}" for k, v in m.setting.items()) or "-"
        start = (f"; started at the truth: {rules.fmt_values(res.control_start_ll)}" if label == CONTROL else "")
        rows.append(Row(f"{name} / {label} / test LL ({kind})", [float(v) for v in ll], paper_ll,
                        f"yacoby2020's IS estimate {rules.fmt_values(m.test_ll_is)} "
                        f"(se {rules.fmt_values(m.test_ll_is_se)});"
                        f" with the prior mixed in {rules.fmt_values(m.test_ll_defensive)}; setting {setting}"
                        + start + flag))
        rows.append(Row(f"{name} / {label} / S-kNN", [float(v) for v in m.knn], paper_knn,
                        f"se {rules.fmt_values(m.knn_se)}" + flag))
        measured[f"{ds} test_ll[{label}]"] = [float(v) for v in ll]
        measured[f"{ds} test_ll_is[{label}]"] = m.test_ll_is.tolist()
        measured[f"{ds} knn[{label}]"] = m.knn.tolist()
        measured[f"{ds} still_improving[{label}]"] = flags[label]
        if len(ll) > 1:
            spread[f"{ds} test_ll[{label}]"] = float(np.std(ll, ddof=1))
            spread[f"{ds} knn[{label}]"] = float(np.std(m.knn, ddof=1))
    rows.append(Row(f"{name} / truth / test LL ({res.truth_ll_method})", res.truth_test_ll.tolist(), None,
                    f"se {rules.fmt_values(res.truth_test_ll_se)}"))
    rows.append(Row(f"{name} / truth / S-kNN (its own samples: the null level)", res.truth_knn.tolist(), None,
                    f"se {rules.fmt_values(res.truth_knn_se)}"))
    measured[f"{ds} test_ll[truth]"] = res.truth_test_ll.tolist()
    measured[f"{ds} knn[truth]"] = res.truth_knn.tolist()
    if CONTROL in res.methods:
        end = _ll_values(res, CONTROL)[0]
        drop = res.control_start_ll - end                        # what the VAE objective gives up from the truth
        gap = res.truth_test_ll - _ll_values(res, "VAE")[0]      # the random-start VAE's shortfall
        explained = rules.paired(drop, EXPLAINED * gap, higher_is_better=True)
        unsettled = [k for k in ("VAE", CONTROL) if any(flags[k])]
        parts.append(Part(
            f"{name}: (the paper's explanation) the VAE falls short of the truth because the VAE objective's global "
            f"optimum is a worse model: a VAE started at the truth (theta_GT, phi_GT) gives up at least "
            f"{EXPLAINED:.0%} of the random-start VAE's shortfall",
            None if unsettled else explained.holds and bool(np.all(gap > 0)),
            (f"not judged: still improving at the end of the budget: {', '.join(unsettled)}. Measured: "
             if unsettled else "")
            + f"test LL of the control at the start {rules.fmt_values(res.control_start_ll)}, after training "
            f"{rules.fmt_values(end)} (given up {rules.fmt_values(drop)}); truth minus the random-start VAE "
            f"{rules.fmt_values(gap)}; {explained}"
            + ("" if explained.holds else ": where the control keeps (or regains) the truth, the random-start VAE's "
                                          "shortfall is an optimisation gap, not a problematic optimum"),
            explained.rule + f" (a = given up, b = {EXPLAINED:g} x shortfall)"))
        measured[f"{ds} control_start_ll"] = res.control_start_ll.tolist()
    return parts, rows, measured, spread


def _table1_choices(ctx, settings):
    return {
        "S-kNN": f"k = 1, inverse temperature {TABLE1_KNN_ALPHAS} (the paper gives none; with a = 1 the closed-form "
                 "LinearJTEx VAE optimum scores 1.67 +- 0.07 against the paper's 1.62 +- 0.12; a = (1, 10, 100) "
                 "gives 1.08, 0.1 gives 0.69, 2 gives 2.00, 5 gives 1.64; the truth scores ~0 at every a), "
                 f"{KNN_SIZE} vs {KNN_SIZE} points and {KNN_REPEATS} repetitions in full as the paper "
                 f"({settings['knn_repeats']} in this profile)",
        "test log-likelihood": "reported three ways: yacoby2020's estimator (IS, encoder variance x2, 5000 samples in "
                               f"full, {settings['is_samples']} here); the same with the prior mixed in (weight "
                               f"{settings['defensive']}); and the reference value used for the verdicts: exact "
                               "(closed form) on LinearJTEx and Gaussian, IS from the learned decoder's exact inverse "
                               "on CubicJTEx, none on Mobius (the paper's estimate is used there)",
        "batch and epochs": "the paper trains '30k epochs' with lr 0.01 and no batch size: full-batch steps (an epoch "
                            "is a step); LiBI's step 1 uses minibatches of 100 for the Henze-Zirkler statistic",
        "LiBI budget": "steps 1 and 2 get the full step budget in every repetition (the paper does not split it)",
        "LIN": "the paper's segmented variant, half of each segment on the encoder alone (the split is not given)",
        "annealing": "beta ramped linearly from 0 over the first half of the steps (the schedule is not given)",
        "hyper-parameters": "full: the paper's grids (App. E); the setting whose validation-selected restarts have "
                            "the highest mean validation log-likelihood is reported (the paper: 'highest average "
                            "log-likelihood', set unnamed); quick: one setting per method from the grid "
                            "(beta 2, annealed beta 1, LIN's smallest R, LiBI eps 1/0.5/0.5, R = 1)",
        "Mobius decoder": "one tanh layer of 20 units (the paper's network is not described); data from m itself",
        "CubicJTEx encoder": "the paper's 4-unit sigmoid / cube-root layer, with the smooth cube root "
                             "u (1 + u^2)^(-1/3)",
        "quick protocol": "fewer replicates and steps than the paper. LinearJTEx: 3000 steps at lr 0.1 for the "
                          "VAE family, LIN and the control, which then reach the VAE optimum's test LL (at the paper's "
                          "lr 0.01 the VAE is at -4.2 to -4.5 after 3000 steps, measured), and at lr 0.03 for LiBI "
                          "(at lr 0.1 its step 1 fell into a collapsed local minimum in 1 of 2 replicates: exact test "
                          "LL -33.5; at 0.03 and 0.01 the same start reaches -2.96, measured). The other sets run at "
                          "the paper's lr 0.01 for a few hundred to 1500 steps: flagged still improving, not judged",
        "control run": "a VAE started at the truth: theta_GT and phi_GT (closed form on the linear sets, encoder-only "
                       "training on the others; Mobius: the decoder fitted to m by regression, as the paper built its "
                       "ground truth), then trained like the VAE",
    }


def _draw_table1(results):
    def draw(fig):
        axes = fig.subplots(2, len(results), squeeze=False)
        labels = list(TABLE1_METHODS)
        for j, res in enumerate(results):
            paper = TABLE1_PAPER[res.dataset]
            for i, (metric, what) in enumerate((("ll", "test log-likelihood"), ("knn", "S-kNN"))):
                ax = axes[i, j]
                for k, label in enumerate(labels):
                    m = res.methods[label]
                    ours = _ll_values(res, label)[0] if metric == "ll" else m.knn
                    ax.plot(np.full(len(ours), k + 0.12), ours, "o", color="C0", ms=5,
                            label="refvae, per replicate" if k == 0 else None)
                    pm, ps = paper[label][0 if metric == "ll" else 1]
                    ax.errorbar([k - 0.12], [pm], yerr=[ps], fmt="s", color="C3", ms=5, capsize=3,
                                label="yacoby2020 (mean +- sd)" if k == 0 else None)
                truth = res.truth_test_ll if metric == "ll" else res.truth_knn
                ax.axhline(float(np.mean(truth)), color="0.5", ls="--", lw=1, label="truth")
                ax.set_xticks(range(len(labels)), [lbl.replace("beta-VAE+anneal", "b-VAE+ann").replace("beta", "b")
                                                   for lbl in labels], rotation=45, fontsize=7)
                ax.set(ylabel=what, title=f"{NAMES[res.dataset]}: {what} (Table 1)")
                if i == 0 and j == 0:
                    ax.legend(fontsize=6)
    return draw


def _draw_samples(results):
    def draw(fig):
        cols = ["data"] + [k for k in list(TABLE1_METHODS) + [CONTROL] if k in results[0].methods]
        axes = fig.subplots(len(results), len(cols), squeeze=False)
        for i, res in enumerate(results):
            data = res.data[0]
            proj = np.eye(data.shape[1])[:, :2]
            names = ("x1", "x2")
            if data.shape[1] > 2:            # "Gaussian" (d = 4): the data's two principal axes
                proj = np.linalg.svd(data - data.mean(axis=0), full_matrices=False)[2][:2].T
                names = ("data's 1st principal axis", "2nd principal axis")
            cube = res.dataset == "cubic_jtex"   # (L z)^3 has heavy tails: cube roots show the structure
            if cube:
                names = ("cbrt(x1)", "cbrt(x2)")
            for j, col in enumerate(cols):
                pts = data if col == "data" else res.methods[col].samples[0]
                xy = np.cbrt(pts) if cube else pts @ proj
                axes[i, j].scatter(xy[:, 0], xy[:, 1], s=3, alpha=0.5, color="0.3" if col == "data" else f"C{j}")
                axes[i, j].set(title=f"{NAMES[res.dataset]}: {col}", xlabel=names[0], ylabel=names[1])
            share_limits(axes[i], "xy")
    return draw


# ============================================================================ test log-likelihood estimator

@claim("test_ll_estimator", paper="yacoby2020", kind="empirical",
       statement="yacoby2020 App. E: for the test log-likelihood, importance sampling with the learned posterior as "
                 "the proposal, its variance inflated by a factor of 2 \"to ensure our proposal has sufficient "
                 "coverage\" (S = 5000 samples), estimates log p(x).",
       paper_figure="App. E, Eq. 48")
def estimator_coverage(ctx):
    res = is_coverage_experiment(seed=ctx.rng("test_ll_estimator"), n=ctx.scale(200, 500, 500),
                                 n_test=ctx.scale(60, 500, 500), steps=ctx.scale(200, 1000, 5000),
                                 hidden=ctx.scale((8, 8), (20, 20), (50, 50)), is_samples=ctx.scale(200, 2000, 5000),
                                 progress=ctx.progress)
    parts, rows, measured = [], [], {}
    for case in res.cases:
        off = case.fraction_off["paper"]
        parts.append(Part(
            f"{case.title}: yacoby2020's estimator is within 3 reported standard errors of the exact log p(x) "
            f"on all but chance-level (< 1%) of the test points",
            bool(off < 0.01),
            f"{100 * off:.1f}% of {case.n} points off by > 3 se; mean error {case.mean_error['paper']:+.3f} nats; "
            f"worst {case.worst['paper']}",
            "fraction of points with |IS - exact| > 3 se below 1% (about 0.3% expected by chance)"))
        for k in case.fraction_off:
            rows.append(Row(f"{case.title} / {k} / share of points off by > 3 se", [case.fraction_off[k]], None,
                            f"mean error {case.mean_error[k]:+.4f}; worst {case.worst[k]}"))
            measured[f"{case.key} fraction_off[{k}]"] = case.fraction_off[k]
            measured[f"{case.key} mean_error[{k}]"] = case.mean_error[k]
    fig = ctx.figure("test_ll_estimator", _draw_coverage(res), panels=(1, 2))
    return Outcome(
        parts=parts, rows=rows, measured=measured, figures=[fig] if fig else [],
        rule="each case: the share of test points where the estimate and the exact value (quadrature, K = 1; "
             "closed form, LinearJTEx) differ by more than 3 of the estimator's own standard errors must stay "
             "below 1%",
        choices={"Circle VAE": f"{res.settings['circle']}",
                 "defensive proposal": "the inflated encoder mixed with the prior N(0, I), weights "
                                       + ", ".join(f"{a:g}" for a in res.settings["defensive"])
                                       + " (refvae's remedy, not the paper's)",
                 "LinearJTEx case": "the ground truth with its KL-optimal mean-field encoder phi_GT (closed form): "
                                    f"posterior correlation {res.settings['jtex_correlation']:.2f}; with inflation 2 "
                                    "the weights have finite variance only for |r| < 0.75"},
        summary="; ".join(_coverage_summary(c, res.settings["defensive"][0]) for c in res.cases))


def _coverage_summary(case, a):
    key = f"defensive {a:g}"
    return (f"{case.title}: {100 * case.fraction_off['paper']:.1f}% of points off by > 3 se (mean error "
            f"{case.mean_error['paper']:+.3f} nats; worst: {case.worst['paper']}); with the prior mixed in (weight "
            f"{a:g}) {100 * case.fraction_off[key]:.1f}% (mean error {case.mean_error[key]:+.3f})")


def _draw_coverage(res):
    def draw(fig):
        axes = fig.subplots(1, len(res.cases), squeeze=False)[0]
        for ax, case in zip(axes, res.cases):
            for k, (err, se) in case.errors.items():
                ax.scatter(case.position, err / se, s=4, alpha=0.6, label=k)
            ax.axhline(-3, color="0.5", ls="--", lw=1)
            ax.axhline(3, color="0.5", ls="--", lw=1)
            ax.set(xlabel=case.position_label, ylabel="(estimate - exact) / reported se", yscale="symlog",
                   title=f"{case.title}: IS error in standard errors")
            ax.legend(fontsize=7, markerscale=3)
    return draw

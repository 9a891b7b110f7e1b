"""Claims of yacoby2020: Yacoby, Pan, Doshi-Velez, "Characterizing and Avoiding Problematic Global Optima of VAEs"."""
from __future__ import annotations

import numpy as np

from ...experiments.jtex import TABLE1_PAPER, linear_jtex_objective_experiment, table1_experiment
from ..registry import Outcome, claim

# Tolerance of "the learned model attains the optimum's L": 1% of the gap between the truth's L
# and the optimum's (0.33 nats on yacoby2020's sizes, so 3e-3 nats). Measured L - L* after training:
# at most 0.12 of the tolerance in mini (2300 steps, 5 seeds x 2 restarts) and less in quick; a
# 1500-step run left up to 7 tolerances (the slow last stretch is along a flat direction of L,
# A A^T's second diagonal entry). Optimiser jitter in the last stage: <= 0.01 of the tolerance.
GAP_FRACTION = 0.01


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
    return Outcome(
        passed=not failing, measured=measured, spread=spread,
        paper_value={"L(theta_GT, phi_GT)": 0.532, "L(theta*, phi*)": 0.196},
        summary=f"closed forms {res.paper_gt:.3f} (truth) and {res.paper_optimum:.3f} (optimum) vs paper 0.532 / "
                f"0.196; on the {res.settings['n']}-point sample L(truth) = {res.gt:.4f}, L* = {res.optimum:.4f}, "
                f"refvae's trained VAE L = {np.mean(res.learned):.4f} (max gap {np.max(res.learned - res.optimum):.1e},"
                f" tolerance {tol:.1e}; own encoder {np.mean(res.learned_own):.4f}), KL(p || p_theta) "
                f"{np.mean(res.learned_mle):.3f} vs {res.gt_mle:.4f} for the truth"
                + ("" if not failing else f"; FAILS: {', '.join(failing)}"))


@claim("libi_table1", paper="yacoby2020", kind="empirical",
       statement="LiBI learns generative models with a higher test log-likelihood and a lower smooth k-NN "
                 "statistic than the VAE, beta-VAE, annealed beta-VAE and Lagging Inference Networks "
                 "(LinearJTEx; and Gaussian in the full profile).",
       paper_figure="Table 1 (LinearJTEx and Gaussian columns)")
def libi_table1(ctx):
    # the Gaussian set (noise 1e-6) needs the paper's tens of thousands of steps: after 3000 steps
    # every method's test log-likelihood is still below -10 against the truth's 7.8, so it runs in
    # the full profile only
    names = ctx.scale(("linear_jtex",), ("linear_jtex",), ("linear_jtex", "gaussian"))
    libi_grid = ctx.scale(
        ({"eps_hz": 1.0, "eps_sigma": 0.5, "eps_mu": 0.5, "repetitions": 1},),
        ({"eps_hz": 1.0, "eps_sigma": 0.5, "eps_mu": 0.5, "repetitions": 1},),
        tuple({"eps_hz": h, "eps_sigma": e, "eps_mu": e, "repetitions": r}
              for h in (0.001, 1.0, 10.0, 20.0) for e in (0.2, 0.5) for r in (1, 6)))
    results = []
    for i, name in enumerate(names):
        results.append(table1_experiment(
            name, seed=ctx.rng("libi_table1", name), restarts=ctx.scale(2, 3, 10), n_datasets=ctx.scale(1, 1, 5),
            n=ctx.scale(200, 500, 500), steps=ctx.scale(300, 2000, 30000), lr=ctx.scale(3e-2, 3e-2, 1e-2),
            betas=ctx.scale((2.0,), (0.5, 2.0, 5.0), (0.5, 2.0, 5.0)),
            anneal_betas=ctx.scale((1.0,), (0.5, 1.0, 2.0, 5.0), (0.5, 1.0, 2.0, 5.0)),
            lin_segments=ctx.scale((5,), (10,), {"linear_jtex": (40, 50, 60, 70), "gaussian": (5, 10, 15, 20)}[name]),
            libi_settings=libi_grid, is_samples=ctx.scale(100, 500, 5000), knn_repeats=ctx.scale(4, 20, 200),
            progress=lambda f, m, i=i: ctx.progress((i + f) / len(names), m)))
    measured, spread, paper, verdicts, parts = {}, {}, {}, [], []
    for res in results:
        ds = res.dataset
        others = [k for k in res.methods if k != "LiBI"]
        ll = {k: float(np.mean(m.test_ll)) for k, m in res.methods.items()}
        kn = {k: float(np.mean(m.knn)) for k, m in res.methods.items()}
        wins_ll = all(ll["LiBI"] > ll[k] for k in others)
        wins_kn = all(kn["LiBI"] < kn[k] for k in others)
        verdicts.append(wins_ll and wins_kn)
        for k, m in res.methods.items():
            measured[f"{ds} test_ll[{k}]"] = ll[k]
            measured[f"{ds} knn[{k}]"] = kn[k]
            measured[f"{ds} setting[{k}]"] = str(m.setting)
            many = len(m.test_ll) > 1          # spread over data sets, else over this data set's restarts
            spread[f"{ds} test_ll[{k}]"] = float(np.std(m.test_ll) if many else np.std(m.restart_test_ll))
            if many:
                spread[f"{ds} knn[{k}]"] = float(np.std(m.knn))
        measured[f"{ds} test_ll[truth]"] = float(np.mean(res.truth_test_ll))
        measured[f"{ds} knn[truth]"] = float(np.mean(res.truth_knn))
        measured[f"{ds} LiBI best test_ll"] = bool(wins_ll)
        measured[f"{ds} LiBI best knn"] = bool(wins_kn)
        paper[ds] = {k: {"test_ll": v[0], "knn": v[1]} for k, v in TABLE1_PAPER[ds].items()}
        row = ", ".join(f"{k} {ll[k]:.3f} / {kn[k]:.2f} (paper {TABLE1_PAPER[ds][k][0][0]:.2f} / "
                        f"{TABLE1_PAPER[ds][k][1][0]:.2f})" for k in res.methods)
        parts.append(f"{ds} test LL / S-kNN: {row}; truth {measured[f'{ds} test_ll[truth]']:.3f} / "
                     f"{measured[f'{ds} knn[truth]']:.2f}; LiBI best in LL: {wins_ll}, in S-kNN: {wins_kn}")
    skipped = "" if "gaussian" in names else " (Gaussian column: full profile only)"
    return Outcome(passed=all(verdicts), measured=measured, spread=spread, paper_value=paper,
                   summary="; ".join(parts) + skipped)

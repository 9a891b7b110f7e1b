"""Claims of yacoby2021: Yacoby, Pan, Doshi-Velez, "Failure Modes of VAEs and Their Effects on Downstream Tasks"."""
from __future__ import annotations

import numpy as np

import analytic.noise
import analytic.ppca

from ...backend import to_host
from ...experiments import failure_modes
from ...experiments.failure_modes import compare_restarts, encoder_residuals
from ...objectives import GaussianVAE
from ...optim import Adam
from ...train import fit
from ..registry import Outcome, claim


@claim("noise_theorem2", paper="yacoby2021", kind="theorem",
       statement="For fixed theta, phi the ELBO-optimal observation variance is the mean squared residual "
                 "under the encoder (Theorem 2), so a jointly trained learned variance equals it at convergence.",
       paper_figure="Theorem 2 (a closed form; no number)")
def noise_theorem2(ctx):
    rng = ctx.rng("noise_theorem2")
    d, k, n = 5, 2, ctx.scale(200, 500, 2000)
    spectrum = np.array([4.0, 2.0, 0.1, 0.1, 0.1])
    rotation = np.linalg.qr(rng.standard_normal((d, d)))[0]
    x = (rng.standard_normal((n, d)) * np.sqrt(spectrum)) @ rotation.T
    model = GaussianVAE.linear(d, k, obs="vector", sigma2=1.0)
    steps = ctx.scale(3000, 4500, 10000)
    res = fit(model, model.init(rng), x, steps=steps, seed=rng, optimizer=Adam(1e-2), n_samples=8,
              callback=lambda t, p, terms: ctx.progress(0.8 * t / steps, "joint training"))
    # a second phase at a 10x smaller step with more samples settles the stochastic iterate
    tail = []
    res = fit(model, res.params, x, steps=steps // 3, seed=rng, optimizer=Adam(1e-3), n_samples=64,
              callback=lambda t, p, terms: tail.append(np.exp(to_host(p["dec.obs_logvar"]))))
    learned = np.exp(to_host(res.params["dec.obs_logvar"]))
    residuals = encoder_residuals(model, res.params, x, rng, 1000)                 # (S, N, d)
    target = analytic.noise.optimal_variance(residuals, per_dim=True)
    # the closed form is itself a Monte Carlo average over S draws: its standard error
    per_draw = residuals.mean(axis=1)                                               # (S, d)
    target_se = per_draw.std(axis=0, ddof=1) / np.sqrt(len(per_draw))
    jitter = np.std(tail[-len(tail) // 3:], axis=0)
    _, _, ppca_noise = analytic.ppca.fit(x, k)
    gap = np.abs(learned - target)
    # the iterate sits within a few of its own standard deviations of the stationary point, which
    # the closed form locates up to its Monte Carlo error: 4 combined standard deviations
    # and the iterate must have settled, or a wide spread would make the check weak: spread below
    # 2.5% of the target (measured up to 1.6% over 8 mini seeds; a variance read as a standard
    # deviation, or a missing constant, moves the learned value by a factor, not by percents)
    settled = jitter < 2.5e-2 * target
    passed = bool(np.all(gap < 4 * np.sqrt(jitter ** 2 + target_se ** 2)) and np.all(settled))
    return Outcome(
        passed=passed,
        measured={"learned_variance": learned.tolist(), "closed_form_for_learned_encoder": target.tolist(),
                  "ppca_ml_noise": float(ppca_noise)},
        spread={"learned_variance": jitter.tolist(), "closed_form_for_learned_encoder": target_se.tolist()},
        summary=f"learned variance per dimension {np.round(learned, 4).tolist()} vs closed form "
                f"{np.round(target, 4).tolist()} (max relative gap {np.max(gap / target):.2e}; "
                f"PPCA noise {float(ppca_noise):.4f})"
                + ("" if np.all(settled) else f"; NOT SETTLED: iterate spread up to {np.max(jitter / target):.1%}"))


# ==================================================================================== Sec. 4.2 / 5
# The experiments live in refvae.experiments.failure_modes; the claims below pick the sizes per
# profile, apply its stated rule (compare_restarts: "beats" = intervals mean +- sd over restarts
# disjoint, "matches" = they overlap) and format the report.

_RELATION = {1: "beats", 0: "matches", -1: "is beaten by"}


def _ms(a, digits=3):
    """'mean +- sd' over restarts."""
    a = np.asarray(a, dtype=float)
    sd = a.std(ddof=1) if a.size > 1 else 0.0
    return f"{a.mean():.{digits}f} +- {sd:.{digits}f}"


def _sd(a):
    a = np.asarray(a, dtype=float)
    return float(a.std(ddof=1)) if a.size > 1 else 0.0


def _px_settings(ctx, lin):
    """Sizes of ``px_experiment`` per profile. quick: IWAE continues from the VAE's solution (see
    ``px_experiment``); full: yacoby2021's protocol, IWAE trained from the initialisation."""
    return ctx.scale(
        mini=dict(restarts=2, n_train=64, n_test=100, schedule=((1e-2, 300),), tail=((1e-3, 40),), batch_size=32,
                  iwae_samples=20, knn_size=50, knn_repeats=4, n_val=32, objective_samples=4, lin=lin),
        quick=dict(restarts=3, lin=lin),
        full=dict(restarts=10, n_train=1000, n_test=2000, schedule=((1e-2, 20000), (3e-3, 10000)),
                  tail=((1e-3, 5000),), batch_size=100, iwae_start="init", knn_repeats=200, n_val=500, lin=lin))


def _px_measured(res):
    """Measured numbers and spreads of a PXResult, keyed '<dataset>.<method>.<score>'."""
    measured, spread = {f"{res.dataset}.truth.test_ll": res.truth_ll, f"{res.dataset}.truth.knn": res.truth_knn}, {}
    for label, m in res.methods.items():
        for score in ("test_ll", "knn", "objective"):
            key = f"{res.dataset}.{label}.{score}"
            measured[key] = np.asarray(getattr(m, score)).tolist()
            spread[key] = _sd(getattr(m, score))
        measured[f"{res.dataset}.{label}.test_ll_selected"] = float(m.test_ll[m.selected])
    unresolved = [label for label, m in res.methods.items() if not np.all(m.resolved)]
    if unresolved:
        measured[f"{res.dataset}.quadrature_unresolved"] = unresolved
    return measured, spread


def _px_figure(ctx, results, name):
    def draw(fig):
        for row, res in enumerate(results):
            labels = ["truth"] + list(res.methods)
            for col, label in enumerate(labels):
                ax = fig.add_subplot(len(results), len(labels), row * len(labels) + col + 1)
                x = res.samples[label]
                ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.5)
                title = f"{res.dataset}: {label}" if label == "truth" else label
                if label != "truth":
                    title += f" (LL {res.methods[label].test_ll[res.methods[label].selected]:.3f})"
                ax.set_title(title, fontsize=8)
                ax.set_aspect("equal")
                ax.tick_params(labelsize=6)
    return ctx.figure(name, draw)


def _px_line(res):
    m = res.methods
    parts = [f"{label} {_ms(v.test_ll)}" for label, v in m.items()]
    knn = [f"{label} {_ms(v.knn, 2)}" for label, v in m.items()]
    # a protocol that departs from yacoby2021's is said next to the numbers it produced
    start = (" [IWAE continued from the VAE's solution for the last stage only, not trained from the "
             "initialisation as in yacoby2021]" if res.settings["iwae_start"] == "vae" else "")
    return (f"{res.dataset}: held-out log p(x) per point {', '.join(parts)} (truth {res.truth_ll:.3f}); "
            f"k-NN statistic {', '.join(knn)} (truth {res.truth_knn:.2f}){start}")


def _iwae_beats_vae(ctx, dataset):
    res = failure_modes.px_experiment(dataset, seed=ctx.rng("px", dataset), progress=ctx.progress,
                                      **_px_settings(ctx, lin=True))
    m = res.methods
    ll = compare_restarts(m["IWAE"].test_ll, m["VAE"].test_ll)
    knn = compare_restarts(m["IWAE"].knn, m["VAE"].knn, higher_is_better=False)
    lin_vs_iwae = compare_restarts(m["IWAE"].test_ll, m["LIN"].test_ll)
    lin_vs_vae = compare_restarts(m["LIN"].test_ll, m["VAE"].test_ll)
    passed = ll == 1 and knn >= 0 and lin_vs_iwae == 1
    measured, spread = _px_measured(res)
    measured.update({"iwae_vs_vae.test_ll": _RELATION[ll], "iwae_vs_vae.knn": _RELATION[knn],
                     "iwae_vs_lin.test_ll": _RELATION[lin_vs_iwae], "lin_vs_vae.test_ll": _RELATION[lin_vs_vae],
                     "iwae_start": res.settings["iwae_start"]})
    verdict = ("reproduced" if passed else "not reproduced") + \
        f": IWAE {_RELATION[ll]} the VAE in log p(x) and {_RELATION[knn]} it in k-NN; " \
        f"IWAE {_RELATION[lin_vs_iwae]} LIN; LIN {_RELATION[lin_vs_vae]} the VAE (paper: IWAE > LIN > VAE)"
    return Outcome(passed=passed, measured=measured, spread=spread,
                   paper_value="IWAE learns p(x) better than LIN, which outperforms the VAE but, like it, "
                               "compromises p(x) (Fig. 1; App. D.1 with the numbers is lost)",
                   summary=f"{_px_line(res)}. {verdict}.",
                   figures=[f for f in [_px_figure(ctx, [res], f"yacoby2021_px_{dataset}")] if f])


_PX_RULE = ("'beats': the intervals mean +- sd over restarts are disjoint (refvae.experiments.failure_modes."
            "compare_restarts).")


@claim("iwae_beats_vae_figure8", paper="yacoby2021", kind="empirical",
       statement="On Figure-8 (K = 1) the VAE's solution fits p(x) worse than IWAE with S = 20 importance samples: "
                 "higher held-out log-likelihood (quadrature) for IWAE and no worse smooth k-NN statistic; "
                 "Lagging Inference Networks do not close the gap (IWAE beats LIN). " + _PX_RULE,
       paper_figure="Fig. 1a (Sec. 4.2)")
def iwae_beats_vae_figure8(ctx):
    return _iwae_beats_vae(ctx, "figure8")


@claim("iwae_beats_vae_clusters", paper="yacoby2021", kind="empirical",
       statement="On Clusters (K = 1) the VAE's solution fits p(x) worse than IWAE with S = 20 importance samples: "
                 "higher held-out log-likelihood (quadrature) for IWAE and no worse smooth k-NN statistic; "
                 "Lagging Inference Networks do not close the gap (IWAE beats LIN). " + _PX_RULE,
       paper_figure="Fig. 1c (Sec. 4.2)")
def iwae_beats_vae_clusters(ctx):
    return _iwae_beats_vae(ctx, "clusters")


@claim("vae_matches_iwae_circle_absval", paper="yacoby2021", kind="empirical",
       statement="On Circle and Absolute-Value (one condition of Theorem 1 fails) the VAE fits p(x) as well as IWAE "
                 "(S = 20): held-out log-likelihood and smooth k-NN statistic match, i.e. the intervals mean +- sd "
                 "over restarts overlap (refvae.experiments.failure_modes.compare_restarts).",
       paper_figure="Fig. 1b, 1d (Sec. 4.2)")
def vae_matches_iwae_circle_absval(ctx):
    results, measured, spread, lines, ok = [], {}, {}, [], True
    for i, dataset in enumerate(("circle", "absolute_value")):
        res = failure_modes.px_experiment(
            dataset, seed=ctx.rng("px", dataset), **_px_settings(ctx, lin=False),
            progress=lambda f, msg, i=i: ctx.progress((i + f) / 2, f"{dataset}: {msg}"))
        m = res.methods
        ll = compare_restarts(m["VAE"].test_ll, m["IWAE"].test_ll)
        knn = compare_restarts(m["VAE"].knn, m["IWAE"].knn, higher_is_better=False)
        ok = ok and ll == 0 and knn == 0
        got, sd = _px_measured(res)
        measured.update(got)
        spread.update(sd)
        measured[f"{dataset}.vae_vs_iwae.test_ll"] = _RELATION[ll]
        measured[f"{dataset}.vae_vs_iwae.knn"] = _RELATION[knn]
        lines.append(f"{_px_line(res)}: the VAE {_RELATION[ll]} IWAE in log p(x) and {_RELATION[knn]} it in k-NN")
        results.append(res)
    measured["iwae_start"] = results[0].settings["iwae_start"]
    return Outcome(passed=ok, measured=measured, spread=spread,
                   paper_value="VAE training recovers p(x) as well as IWAE on both, from random or ground-truth "
                               "initialisation (Fig. 1b, 1d; no numbers)",
                   summary="; ".join(lines) + (". Reproduced." if ok else ". Not reproduced."),
                   figures=[f for f in [_px_figure(ctx, results, "yacoby2021_px_circle_absval")] if f])


@claim("spiral_dots_noise", paper="yacoby2021", kind="empirical",
       statement="On Spiral Dots (true noise variance 0.01) the ELBO overestimates the observation noise: refitted "
                 "for a trained (theta, phi) (Theorem 2: the mean squared residual under q) it exceeds 0.01, and "
                 "learned jointly with theta, phi it exceeds the refitted value (mean - sd > 0.01 for both; joint "
                 "and refit intervals mean +- sd disjoint).",
       paper_figure="Sec. 4.2: 0.014 +- 0.001 (refit) and 0.020 +- 0.003 (joint) against a true 0.01")
def spiral_dots_noise(ctx):
    kw = ctx.scale(mini=dict(restarts=2, n_train=64, schedule=((1e-2, 300),), refit_schedule=((1e-2, 100),),
                             refit_samples=4, closed_form_samples=16),
                   quick=dict(restarts=3),
                   full=dict(restarts=10, n_train=2000, schedule=((1e-2, 20000), (3e-3, 10000), (1e-3, 5000)),
                             refit_schedule=((1e-2, 2000),), refit_samples=64, closed_form_samples=256))
    res = failure_modes.noise_bias_experiment(seed=ctx.rng("spiral_dots_noise"), progress=ctx.progress, **kw)
    true = res.true_noise
    refit_over = res.refit.mean() - _sd(res.refit) > true
    joint_over = res.joint.mean() - _sd(res.joint) > true
    joint_more = compare_restarts(res.joint, res.refit) == 1
    passed = bool(refit_over and joint_over and joint_more)
    gap = np.abs(res.refit - res.refit_closed_form)
    paper = failure_modes.PAPER_NOISE
    return Outcome(
        passed=passed,
        measured={"true_noise": true, "refit": res.refit.tolist(), "refit_closed_form": res.refit_closed_form.tolist(),
                  "refit_closed_form_se": res.refit_closed_form_se.tolist(), "joint": res.joint.tolist(),
                  "joint_closed_form": res.joint_closed_form.tolist(),
                  "refit_minus_closed_form_max": float(gap.max())},
        spread={"refit": _sd(res.refit), "joint": _sd(res.joint), "refit_closed_form": _sd(res.refit_closed_form)},
        paper_value=f"refit {paper['refit'][0]} +- {paper['refit'][1]}, joint {paper['joint'][0]} +- "
                    f"{paper['joint'][1]} (true {paper['true']})",
        summary=f"noise variance refitted for the trained VAE {_ms(res.refit, 4)} (Theorem 2's closed form "
                f"{_ms(res.refit_closed_form, 4)}), learned jointly {_ms(res.joint, 4)}, true {true}; paper "
                f"{paper['refit'][0]} +- {paper['refit'][1]} and {paper['joint'][0]} +- {paper['joint'][1]}. "
                + ("Reproduced" if passed else "Not reproduced")
                + f": refit {'above' if refit_over else 'not above'} the truth, joint "
                  f"{'above' if joint_over else 'not above'} it and "
                  f"{'above' if joint_more else 'not above'} the refit value.")


@claim("elbo_prefers_more_latents", paper="yacoby2021", kind="empirical",
       statement="On data with a K = 1 ground truth (refvae.datasets.compression: the Figure-8 curve in the plane) "
                 "the ELBO prefers a K = 2 VAE to a K = 1 VAE (both with a learned noise variance): held-out "
                 "ELBO intervals mean +- sd over restarts disjoint in K = 2's favour.",
       paper_figure="Sec. 5.1 (App. D.3 with the numbers is lost)")
def elbo_prefers_more_latents(ctx):
    kw = ctx.scale(mini=dict(restarts=2, n_train=64, n_test=64, schedule=((1e-2, 300),), elbo_samples=4,
                             is_samples=64),
                   quick=dict(restarts=3),
                   full=dict(restarts=10, n_train=2000, n_test=2000,
                             schedule=((1e-2, 20000), (3e-3, 10000), (1e-3, 5000)), is_samples=5000))
    res = failure_modes.latent_dim_experiment(seed=ctx.rng("elbo_prefers_more_latents"), progress=ctx.progress, **kw)
    rel = compare_restarts(res.elbo[2], res.elbo[1])
    ll_rel = compare_restarts(res.test_ll[2], res.test_ll[1])
    passed = rel == 1
    measured, spread = {"truth.test_ll": res.truth_ll}, {}
    for K in res.elbo:
        for name in ("elbo", "test_ll", "sigma2", "active"):
            value = np.asarray(getattr(res, name)[K])
            measured[f"K{K}.{name}"] = value.tolist()
            spread[f"K{K}.{name}"] = _sd(value)
        measured[f"K{K}.elbo_mc_se"] = np.asarray(res.elbo_se[K]).tolist()
        measured[f"K{K}.test_ll_se"] = np.asarray(res.test_ll_se[K]).tolist()
    measured["K2_vs_K1.elbo"], measured["K2_vs_K1.test_ll"] = _RELATION[rel], _RELATION[ll_rel]
    return Outcome(
        passed=passed, measured=measured, spread=spread,
        paper_value="the ELBO selects K > 1 over the true K = 1 (and the learned noise shrinks); IWAE does not "
                    "(App. D.3 lost; no numbers)",
        summary=f"held-out ELBO K = 1 {_ms(res.elbo[1])}, K = 2 {_ms(res.elbo[2])}; held-out log p(x) K = 1 "
                f"{_ms(res.test_ll[1])} (quadrature), K = 2 {_ms(res.test_ll[2])} (importance sampling), truth "
                f"{res.truth_ll:.3f}; learned noise K = 1 {_ms(res.sigma2[1], 4)}, K = 2 {_ms(res.sigma2[2], 4)}. "
                f"K = 2 {_RELATION[rel]} K = 1 in ELBO and {_RELATION[ll_rel]} it in log p(x): "
                + ("reproduced." if passed else "not reproduced."))


_COLLAPSE_LEVEL = 2.0


@claim("m2_functional_collapse", paper="yacoby2021", kind="empirical",
       statement="On Discrete Semi-Circle with 10% labels the M2 VAE's class conditionals p(x|y=0), p(x|y=1) "
                 "collapse onto one distribution while the importance-weighted M2's stay distinct: for the "
                 "restart with the best training objective (yacoby2021's selection), the smooth k-NN statistic "
                 "between equal-size samples of the two conditionals (~N(0, 1) when they coincide) is below 2 "
                 "for M2 and above 2 for IWAE-M2.",
       paper_figure="Fig. 2b (Sec. 5.2): the VAE learns two nearly identical functions, IWAE two distinct, "
                    "overfitted ones")
def m2_functional_collapse(ctx):
    kw = ctx.scale(mini=dict(restarts=2, n_train=100, n_test=100, schedule=((1e-2, 150),), iwae_samples=5,
                             batch_size=50, knn_size=50, knn_repeats=4),
                   quick=dict(restarts=3),
                   full=dict(restarts=10, n_train=2000, n_test=2000, iwae_samples=20, batch_size=100,
                             schedule=((1e-2, 20000), (3e-3, 10000), (1e-3, 5000)), knn_repeats=200))
    res = failure_modes.semisupervised_experiment(seed=ctx.rng("m2_functional_collapse"), progress=ctx.progress, **kw)
    m2, iw = res.models["M2"], res.models["IWAE-M2"]
    collapsed = m2.knn[m2.selected] < _COLLAPSE_LEVEL
    distinct = iw.knn[iw.selected] > _COLLAPSE_LEVEL
    passed = bool(collapsed and distinct)
    measured = {"truth.knn": res.truth_knn, "truth.angle_w1": res.truth_angle_w1,
                "truth.cond_ll": res.truth_cond_ll, "truth.marginal_ll": res.truth_marginal_ll}
    spread = {}
    for label, m in res.models.items():
        for name in ("knn", "angle_w1", "cond_ll", "marginal_ll", "accuracy", "objective"):
            if name == "accuracy" and label == "IWAE-M2" and res.settings["alpha"] == 0:
                continue        # U_S never uses q(y|x): with alpha = 0 this classifier is untrained
            value = np.asarray(getattr(m, name))
            measured[f"{label}.{name}"] = value.tolist()
            spread[f"{label}.{name}"] = _sd(value)
        measured[f"{label}.selected_restart"] = m.selected
        measured[f"{label}.collapsed_restarts"] = int(np.sum(m.knn < _COLLAPSE_LEVEL))

    def line(label, m):
        s = m.selected
        return (f"{label}: k-NN between its class conditionals {m.knn[s]:.2f} (restarts {_ms(m.knn, 2)}, "
                f"{int(np.sum(m.knn < _COLLAPSE_LEVEL))}/{m.knn.size} collapsed), angle distance {m.angle_w1[s]:.3f}, "
                f"held-out log p(x|y) {m.cond_ll[s]:.3f}, log p(x) {m.marginal_ll[s]:.3f}")

    def draw(fig):
        labels = ["truth", "M2", "IWAE-M2"]
        for i, label in enumerate(labels):
            ax = fig.add_subplot(1, 3, i + 1)
            for y, x in enumerate(res.samples[label]):
                ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.4, label=f"y = {y}")
            ax.set_title(f"{label}: p(x | y)", fontsize=8)
            ax.legend(fontsize=6)
            ax.set_aspect("equal")

    return Outcome(
        passed=passed, measured=measured, spread=spread,
        paper_value="M2 (VAE): p(x|y=0) ~ p(x|y=1) ~ p(x) (functional collapse); IWAE-M2: distinct conditionals "
                    "that overfit the labels, and a worse p(x) than the VAE (Fig. 2; App. D.4 numbers lost)",
        summary=f"{line('M2', m2)}; {line('IWAE-M2', iw)}; truth: k-NN {res.truth_knn:.2f}, angle distance "
                f"{res.truth_angle_w1:.3f}, log p(x|y) {res.truth_cond_ll:.3f}, log p(x) {res.truth_marginal_ll:.3f}. "
                + ("Reproduced" if passed else "Not reproduced")
                + f": M2 {'collapsed' if collapsed else 'did not collapse'}, IWAE-M2 "
                  f"{'distinct' if distinct else 'not distinct'}.",
        figures=[f for f in [ctx.figure("yacoby2021_m2_conditionals", draw)] if f])

"""Claims of yacoby2021: Yacoby, Pan, Doshi-Velez, "Failure Modes of VAEs and Their Effects on Downstream Tasks".

Every empirical claim states the paper's sentence in full, splits it into the parts refvae judges
(``Part``), judges each restart by restart with the shared rules (``refvae.verify.rules``: paired
per restart, matches, settled), shows the paper's number beside refvae's per restart (``Row``) and
lists the settings the paper does not give (``choices``). The experiments live in
``refvae.experiments.failure_modes`` (Sec. 4.2, 5.1) and ``refvae.experiments.m2_collapse``
(Sec. 5.2).

Restarts of different methods in one claim share their initialisation, data and minibatch
stream where the experiment allows, so "A beats B" compares A and B restart by restart.
"""
from __future__ import annotations

import numpy as np

import analytic.noise
import analytic.ppca

from ...backend import to_host
from ...experiments import failure_modes, m2_collapse
from ...experiments.failure_modes import encoder_residuals
from ...objectives import GaussianVAE
from ...optim import Adam
from ...train import fit
from .. import rules
from ..registry import Outcome, Part, Row, claim, share_limits


def _r(a, digits=4):
    return np.round(np.asarray(a, dtype=float), digits).tolist()


#: A Part judged by a ``rules`` comparison (``judged=False`` leaves it not judged: holds None).
_part = rules.part


def _verdict(parts):
    """'Every part holds.', or 'Does not hold: <the parts that do not>.' and/or 'Not judged: <...>.'"""
    failed = [p.statement for p in parts if p.holds is False]
    unjudged = [p.statement for p in parts if p.holds is None]
    if not failed and not unjudged:
        return "Every part holds."
    return " ".join(f"{head}: {'; '.join(items)}." for head, items in (("Does not hold", failed),
                                                                         ("Not judged", unjudged)) if items)


def _constant(value, n):
    return np.full(n, float(value))


# ==================================================================================== Theorem 2

@claim("noise_theorem2", paper="yacoby2021", kind="theorem",
       statement="Theorem 2: for fixed theta, phi the ELBO-optimal observation variance of coordinate d is "
                 "(1/N) sum_n E_q(z|x_n)[(x_n^(d) - f_theta(z)^(d))^2] (Eq. 7), so a variance learned jointly "
                 "with theta, phi equals the mean squared residual under the learned encoder at convergence.",
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
    close = gap < 4 * np.sqrt(jitter ** 2 + target_se ** 2)
    parts = [Part("the learned variance of every coordinate equals Eq. 7's value for the learned encoder",
                  bool(np.all(close)), f"|learned - Eq. 7| {_r(gap, 5)} vs 4 combined sd "
                                       f"{_r(4 * np.sqrt(jitter ** 2 + target_se ** 2), 5)}",
                  "within 4 combined standard deviations (iterate jitter, Eq. 7's Monte Carlo error) per coordinate"),
             Part("the learned iterate has settled", bool(np.all(settled)),
                  f"jitter / target {_r(jitter / target, 4)}", "spread of the last third of the tail below 2.5%")]
    return Outcome(
        parts=parts,
        measured={"learned_variance": learned.tolist(), "closed_form_for_learned_encoder": target.tolist(),
                  "ppca_ml_noise": float(ppca_noise)},
        spread={"learned_variance": jitter.tolist(), "closed_form_for_learned_encoder": target_se.tolist()},
        rows=[Row(f"coordinate {j}: learned variance (one run)", [float(learned[j])], None,
                  f"Eq. 7 for the learned encoder: {target[j]:.5f} +- {target_se[j]:.1e}") for j in range(d)],
        rule="theorem: holds when every part holds",
        choices={"data": "5-D Gaussian, spectrum (4, 2, 0.1, 0.1, 0.1), random rotation; linear VAE with K = 2 and "
                         "a per-coordinate learned variance (the theorem holds for any theta, phi)"},
        summary=f"learned variance per dimension {_r(learned)} "
                f"vs closed form {_r(target)} (max relative gap {np.max(gap / target):.2e}; "
                f"PPCA noise {float(ppca_noise):.4f})"
                + ("" if np.all(settled) else f"; NOT SETTLED: iterate spread up to {np.max(jitter / target):.1%}"))


# ==================================================================================== Sec. 4.2: p(x)

#: Held-out log p(x) within this of another method's in every restart counts as "as well as"
#: (nats per point; the Figure-8 VAE-IWAE gap is ~0.1, Circle's restart-to-restart spread ~0.01).
LL_MATCH = 0.02
#: A method "compromises p(x)" when its held-out log p(x) is below the truth's by more than this.
COMPROMISE = 0.02


def _px_settings(ctx, lin):
    """Sizes of ``px_experiment`` per profile. quick: IWAE continues from the VAE's solution (see
    ``px_experiment``); full: yacoby2021's protocol, IWAE trained from the initialisation."""
    return ctx.scale(
        mini=dict(restarts=2, n_train=64, n_test=100, schedule=((1e-2, 300),), tail=((1e-3, 40),), batch_size=32,
                  iwae_samples=20, knn_size=50, knn_repeats=4, n_val=32, objective_samples=4, lin=lin),
        quick=dict(restarts=3, n_test=300, knn_repeats=10, lin=lin),
        full=dict(restarts=10, n_train=1000, n_test=2000, schedule=((1e-2, 20000), (3e-3, 10000)),
                  tail=((1e-3, 5000),), batch_size=100, iwae_start="init", knn_repeats=200, n_val=500, lin=lin))


def _px_measured(res):
    """Measured numbers and spreads of a PXResult, keyed '<dataset>.<method>.<score>'."""
    measured, spread = {f"{res.dataset}.truth.test_ll": res.truth_ll, f"{res.dataset}.truth.knn": res.truth_knn}, {}
    for label, m in res.methods.items():
        for score in ("test_ll", "knn", "objective"):
            key = f"{res.dataset}.{label}.{score}"
            measured[key] = np.asarray(getattr(m, score)).tolist()
            spread[key] = rules.mean_sd(getattr(m, score))[1]
        measured[f"{res.dataset}.{label}.selected_restart"] = m.selected
    unresolved = [label for label, m in res.methods.items() if not np.all(m.resolved)]
    if unresolved:
        measured[f"{res.dataset}.quadrature_unresolved"] = unresolved
    return measured, spread


def _px_rows(res, paper):
    """Per method and restart: held-out log p(x), k-NN, training objective."""
    rows = [Row(f"{res.dataset} / truth / held-out log p(x) per point", [res.truth_ll], None, "the ceiling"),
            Row(f"{res.dataset} / truth / k-NN against held-out data", [res.truth_knn], None,
                "its level for an exact model")]
    for label, m in res.methods.items():
        note = f"selected restart (best objective): {m.selected}"
        if not np.all(m.resolved):
            note += "; quadrature did not resolve every posterior"
        rows += [Row(f"{res.dataset} / {label} / held-out log p(x) per point", m.test_ll.tolist(), paper.get(label), note),
                 Row(f"{res.dataset} / {label} / k-NN against held-out data (lower: closer)", m.knn.tolist(), None),
                 Row(f"{res.dataset} / {label} / training objective per point", m.objective.tolist(), None,
                     "ELBO (VAE, LIN) or L_S (IWAE)")]
    return rows


#: The panel of yacoby2021's Fig. 1 that shows each data set.
_FIG1 = {"figure8": "1a", "circle": "1b", "clusters": "1c", "absolute_value": "1d"}


def _px_figure(ctx, results, name):
    """Samples of the truth and of each method's selected restart, one row per data set; the panels
    of a row share one scale, so that the learned distributions compare by eye with the truth's."""
    def draw(fig):
        for row, res in enumerate(results):
            labels = ["truth"] + list(res.methods)
            axes = []
            for col, label in enumerate(labels):
                ax = fig.add_subplot(len(results), len(labels), row * len(labels) + col + 1)
                x = res.samples[label]
                ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.5)
                if label == "truth":
                    title = f"{res.dataset}: truth (yacoby2021 Fig. {_FIG1.get(res.dataset, '1')})"
                else:
                    m = res.methods[label]
                    title = f"{res.dataset}: {label}, restart {m.selected} (log p(x) {m.test_ll[m.selected]:.3f})"
                ax.set_title(title)
                ax.set_xlabel("x1")
                ax.set_ylabel("x2")
                ax.set_aspect("equal")
                axes.append(ax)
            share_limits(axes)
    return ctx.figure(name, draw)


def _px_choices(res, lin_note):
    s = res.settings
    return {
        "iwae_start": ("IWAE continues from the VAE's solution for the last stage only (quick), so both differ only "
                       "in the bound optimised from one point; yacoby2021 trains IWAE from the initialisation "
                       "(full does)" if s["iwae_start"] == "vae" else "IWAE trained from the initialisation (yacoby2021)"),
        "restarts": f"{s['restarts']} random initialisations shared by every method, judged restart by restart "
                    "(yacoby2021: 5 random and 5 at the ground truth, keeping the best objective; refvae's "
                    "networks cannot be set to the ground truth exactly)",
        "architecture": f"tanh MLPs {s['hidden']}, observation variance fixed at the truth's {s['sigma2']} "
                        "(yacoby2021's App. C is lost)",
        "budget": f"Adam stages {s['schedule']} then {s['tail']}, minibatches of {s['batch_size']}, "
                  f"{s['n_train']} training points; held-out log p(x) by quadrature on {s['n_test']} points",
        "knn": f"smooth k-NN, {s['knn_size']} model vs {s['knn_size']} held-out points, mean of {s['knn_repeats']} "
               "repeats (yacoby2020's protocol; temperatures refvae's)",
        "lin": lin_note,
    }


def _no_worse_knn(res, a="IWAE", b="VAE", prefix=""):
    """'a's k-NN no worse than b's' is judged as: b does not beat a (lower is better) by the paired rule,
    where beating must exceed the statistic's own Monte Carlo error (twice the root-mean-square over
    restarts of the standard error of the difference, from the repeats)."""
    m = res.methods
    noise = 2.0 * float(np.sqrt(np.mean(m[a].knn_se ** 2 + m[b].knn_se ** 2)))
    worse = rules.paired(m[b].knn, m[a].knn, higher_is_better=False, margin=noise)
    return Part(f"{prefix}{a}'s samples are no farther from the data than {b}'s (k-NN statistic)", not worse.holds,
                f"{b} beats {a} in {worse.wins} of {worse.n} restarts; {a} {rules.fmt_values(m[a].knn, 2)}, "
                f"{b} {rules.fmt_values(m[b].knn, 2)}",
                f"holds unless {b} beats {a}, i.e. is {worse.rule}")


def _iwae_beats_vae(ctx, dataset, lin):
    res = failure_modes.px_experiment(dataset, seed=ctx.rng("px", dataset), progress=ctx.progress,
                                      **_px_settings(ctx, lin=lin))
    m = res.methods
    ll = lambda a, b: rules.paired(m[a].test_ll, m[b].test_ll)               # noqa: E731
    parts = [_part("IWAE learns p(x) better than the VAE (held-out log p(x))", ll("IWAE", "VAE"))]
    if lin:
        parts += [_part("IWAE learns p(x) better than LIN", ll("IWAE", "LIN")),
                  _part("LIN outperforms the VAE", ll("LIN", "VAE"))]
    parts.append(_no_worse_knn(res))
    for label in (("VAE", "LIN") if lin else ("VAE",)):
        c = rules.paired(_constant(res.truth_ll, m[label].test_ll.size), m[label].test_ll, margin=COMPROMISE)
        parts.append(_part(f"the {label} compromises p(x): held-out log p(x) below the truth's by more than "
                           f"{COMPROMISE}", c))
    measured, spread = _px_measured(res)
    paper = {"IWAE": "best of the three", "LIN": "between IWAE and the VAE", "VAE": "worst"} if lin else \
        {"IWAE": "better than the VAE", "VAE": "worse than IWAE"}
    lin_note = ("LIN (He et al. 2019): aggressive encoder phase during the first stage, then as the VAE" if lin else
                "LIN is not run: yacoby2021 states the LIN ordering for Figure-8 only (Sec. 4.2); App. D.1 with "
                "the other data sets is lost")
    return Outcome(
        parts=parts, measured=measured, spread=spread, rows=_px_rows(res, paper),
        rule="each part is judged restart by restart (refvae.verify.rules.paired: every restart below 5 restarts, "
             "a one-sided sign test from 5); the claim is reproduced when every part holds",
        choices=_px_choices(res, lin_note),
        paper_value=("IWAE learns p(x) better than LIN, which outperforms the VAE; LIN, like the VAE, compromises "
                     "p(x) (Fig. 1a; App. D.1 with the numbers is lost)" if lin else
                     "VAE training approximates p(x) poorly and IWAE performs better (Fig. 1c; no numbers)"),
        summary=f"{dataset}: held-out log p(x) per point "
                + ", ".join(f"{k} {rules.fmt_values(v.test_ll)}" for k, v in m.items())
                + f" (truth {res.truth_ll:.3f}); k-NN "
                + ", ".join(f"{k} {rules.fmt_values(v.knn, 2)}" for k, v in m.items())
                + f" (truth {res.truth_knn:.2f}). {_verdict(parts)}",
        figures=[f for f in [_px_figure(ctx, [res], f"iwae_beats_vae_{dataset}")] if f])


@claim("iwae_beats_vae_figure8", paper="yacoby2021", kind="empirical",
       statement="yacoby2021 Sec. 4.2 on Figure-8 (K = 1): \"As expected, IWAE learns p(x) better than LIN, which "
                 "outperforms the VAE (Figure 1a). Like the VAE, LIN compromises learning the data distribution in "
                 "order to learn simpler posteriors.\" Judged parts: IWAE > VAE, IWAE > LIN, LIN > VAE in held-out "
                 "log p(x) (quadrature), IWAE's k-NN statistic no worse than the VAE's (the VAE not lower by more "
                 "than the statistic's Monte Carlo error, restart by restart), VAE and LIN below the truth's log "
                 "p(x); IWAE with S = 20.",
       paper_figure="Fig. 1a (Sec. 4.2); App. D.1 with the numbers is lost")
def iwae_beats_vae_figure8(ctx):
    return _iwae_beats_vae(ctx, "figure8", lin=True)


@claim("iwae_beats_vae_clusters", paper="yacoby2021", kind="empirical",
       statement="yacoby2021 Fig. 1 caption on Clusters (K = 1): \"When conditions of Theorem 1 are satisfied, in "
                 "examples (a) and (c), VAE training approximates p(x) poorly and IWAE performs better.\" Judged "
                 "parts: IWAE > VAE in held-out log p(x) (quadrature), IWAE's k-NN statistic no worse than the "
                 "VAE's (as on Figure-8), the VAE below the truth's log p(x); IWAE with S = 20.",
       paper_figure="Fig. 1c (Sec. 4.2); no numbers")
def iwae_beats_vae_clusters(ctx):
    return _iwae_beats_vae(ctx, "clusters", lin=False)


@claim("vae_matches_iwae_circle_absval", paper="yacoby2021", kind="empirical",
       statement="yacoby2021 Fig. 1 caption and Sec. 4.2 on Circle and Absolute-Value (one condition of Theorem 1 "
                 "fails): \"When one of the conditions is not met, in examples (b) and (d), then the VAE can learn "
                 "p(x) as well as IWAE\"; on Circle \"VAE training is capable of recovering p(x), regardless of "
                 "whether training was initialized randomly or at the ground truth\". Judged parts, per data set: "
                 f"held-out log p(x) of the VAE and IWAE (S = 20) within {LL_MATCH} nats per point in every restart, "
                 "and the VAE's k-NN statistic no worse than IWAE's (IWAE not lower by more than the statistic's "
                 "Monte Carlo error, restart by restart); random initialisations only.",
       paper_figure="Fig. 1b, 1d (Sec. 4.2); no numbers")
def vae_matches_iwae_circle_absval(ctx):
    results, measured, spread, parts, rows, lines = [], {}, {}, [], [], []
    for i, dataset in enumerate(("circle", "absolute_value")):
        res = failure_modes.px_experiment(
            dataset, seed=ctx.rng("px", dataset), **_px_settings(ctx, lin=False),
            progress=lambda f, msg, i=i, dataset=dataset: ctx.progress((i + f) / 2, f"{dataset}: {msg}"))
        m = res.methods
        ll = rules.matches(m["VAE"].test_ll, m["IWAE"].test_ll, LL_MATCH)
        parts += [_part(f"{dataset}: the VAE learns p(x) as well as IWAE (held-out log p(x))", ll),
                  _no_worse_knn(res, a="VAE", b="IWAE", prefix=f"{dataset}: ")]
        got, sd = _px_measured(res)
        measured.update(got)
        spread.update(sd)
        rows += _px_rows(res, {"VAE": "as well as IWAE", "IWAE": "as well as the VAE"})
        lines.append(f"{dataset}: log p(x) VAE {rules.fmt_values(m['VAE'].test_ll)}, IWAE "
                     f"{rules.fmt_values(m['IWAE'].test_ll)} (truth {res.truth_ll:.3f}); k-NN VAE "
                     f"{rules.fmt_values(m['VAE'].knn, 2)}, IWAE {rules.fmt_values(m['IWAE'].knn, 2)}")
        results.append(res)
    choices = _px_choices(results[0], "LIN is not part of this statement")
    choices["match tolerance"] = (f"log p(x) within {LL_MATCH} nats per point (the Figure-8 VAE-IWAE gap is ~0.1); "
                                  "the k-NN statistic, noisier, is judged one-sided (no worse), as on Figure-8")
    choices["initialisation"] = "random only: refvae's networks cannot be set to the ground truth exactly"
    return Outcome(parts=parts, measured=measured, spread=spread, rows=rows, choices=choices,
                   rule="each part by refvae.verify.rules.matches (every restart within the tolerance); reproduced "
                        "when every part holds",
                   paper_value="VAE training recovers p(x) as well as IWAE on both, from random or ground-truth "
                               "initialisation (Fig. 1b, 1d; no numbers)",
                   summary="; ".join(lines) + ". " + _verdict(parts),
                   figures=[f for f in [_px_figure(ctx, results, "vae_matches_iwae_circle_absval")] if f])


# ==================================================================================== Sec. 4.2: noise

#: Fractions of the training budget at which both variances are also read (in the same runs): in
#: quick, 20% is the last step of the first stage (rate 0.01), 30% lies in the second (rate 0.003).
SPIRAL_FRACTIONS = (0.2, 0.3, 0.6, 1.0)


def _spiral_settings(ctx):
    """Sizes of ``noise_bias_experiment`` per profile (quick: its defaults). Every schedule spends its
    last 60% at its smallest rate, so that the settling check's two windows lie well past the last
    rate cut (the learned variance drops at each cut; see ``noise_bias_experiment``)."""
    return ctx.scale(
        mini=dict(restarts=2, n_train=64, schedule=((1e-2, 80), (3e-3, 60), (1e-3, 210)),
                  refit_schedule=((1e-2, 60),), refit_samples=2, closed_form_samples=32, snapshot_samples=8),
        quick=dict(restarts=3),
        full=dict(restarts=10, n_train=2000, schedule=((1e-2, 8000), (3e-3, 8000), (1e-3, 24000)),
                  refit_schedule=((1e-2, 1000), (1e-3, 1000)), refit_samples=16, closed_form_samples=1024,
                  snapshot_samples=64))


#: Settling rule for both variances (the quantities judged, not the loss): the mean over the last
#: SETTLE_WINDOW of the steps within SETTLE_RTOL (relative) of the mean over the same number of steps
#: before. 2% of a variance near 0.01 is 0.0002, a twentieth of the smallest bias the paper reports
#: (0.004, the refit's).
SETTLE_WINDOW = 0.1
SETTLE_RTOL = 0.02
#: Consecutive batches of the last window whose means give the standard error of the window mean
#: (batch means: the joint variance remembers ~100 steps through Adam, measured lag-80 correlations
#: 0.2-0.8, so single steps are far from independent; batches of 1/5 of the window, 200 steps in
#: quick, are much less so).
SPIRAL_BATCHES = 5


def _window_mean(values, batches=SPIRAL_BATCHES):
    """Mean over the rows of ``values`` (n, R) per restart and its standard error by batch means."""
    v = np.asarray(values, dtype=float)
    means = np.stack([b.mean(axis=0) for b in np.array_split(v, batches)])
    return v.mean(axis=0), means.std(axis=0, ddof=1) / np.sqrt(batches)


def _refit_settled(trajectory):
    """``rules.settled`` on the refit's recorded trajectory (two windows), each restart's tolerance widened
    by twice the standard error of its change (batch means of both windows).

    The refit trajectory is an estimate of the quantity (one draw per point of a fresh minibatch after
    each step, and Theorem 2's value jitters with theta, phi): its window means carry an error of up to
    about 1% (quick, batch means), so the 2% rule alone calls a stationary refit "moving" now and then
    (measured at 10000 steps, 9 restarts over seeds 0-2: changes from -0.2% to +2.2%, the largest a
    rise). The joint trajectory is the learned variance itself and keeps the plain rule.
    """
    t = np.asarray(trajectory, dtype=float)
    w = max(2, int(round(0.5 * t.shape[0])))
    atol = 2.0 * np.hypot(_window_mean(t[-w:])[1], _window_mean(t[-2 * w:-w])[1])
    each = [rules.settled(t[:, [r]], window=0.5, rtol=SETTLE_RTOL, atol=float(atol[r])) for r in range(t.shape[1])]
    plain = rules.settled(t, window=0.5, rtol=SETTLE_RTOL)
    return rules.Settling(all(e.settled for e in each), [e.settled for e in each], [e.change[0] for e in each],
                          f"{plain.rule}, plus twice the change's standard error {rules.fmt_values(atol, 5)}")


def spiral_parts(res):
    """The five judged parts of ``spiral_dots_noise`` from a ``NoiseBiasResult``, and what judged them.

    Both variances are judged by their mean over the last window of training (the last
    ``SETTLE_WINDOW`` of the steps), not at the last step: the minibatch jitter of theta, phi moves
    Theorem 2's value for the fixed-noise VAE by 2-5% between reads 160 steps apart (quick, rate 1e-3,
    32 draws per point each), ten times the Monte Carlo error of a 256-draw read, and the jointly
    learned variance is itself a running average of that jittering residual (Adam), so only window
    means compare like with like.

    Returns
    -------
    parts : list of Part, (1)-(5) of the claim's statement.
    judged : dict: "refit", "joint" ((R,) window means), "refit_se", "joint_se" (their standard
        errors), "settle_refit", "settle_joint" (``rules.Settling`` of the refit's and the joint's
        recorded trajectories), "margin" (the three margins) and "state" (the settling in words).
    """
    paper, true = failure_modes.PAPER_NOISE, res.true_noise
    T, L = res.joint_trajectory.shape[0], res.refit_trajectory.shape[0]
    settle = rules.settled(res.joint_trajectory, window=SETTLE_WINDOW, rtol=SETTLE_RTOL)
    # the refit is recorded over the last two windows (record_last = 2 SETTLE_WINDOW): half is one window
    settle_refit = _refit_settled(res.refit_trajectory)
    joint, joint_se = _window_mean(res.joint_trajectory[-max(2, int(round(SETTLE_WINDOW * T))):])
    refit, refit_se = _window_mean(res.refit_trajectory[-max(2, int(round(0.5 * L))):])
    R = refit.size

    def words(name, st):
        change = f"last-window change {rules.fmt_values(st.change, 5)}; {st.rule}"
        return (f"{name} settled ({change})" if st.settled
                else f"{name} NOT SETTLED (it still moves: {change}), so not judged")
    state = {"joint": words("joint", settle), "refit": words("refit", settle_refit)}
    margin = {"refit": 2.0 * float(np.max(refit_se)), "joint": 2.0 * float(np.max(joint_se)),
              "pair": 2.0 * float(np.max(np.hypot(joint_se, refit_se)))}
    refit_ev = f"refit {rules.fmt_values(refit, 5)} +- se {rules.fmt_values(refit_se, 5)}; {state['refit']}"
    joint_ev = f"joint {rules.fmt_values(joint, 5)} +- se {rules.fmt_values(joint_se, 5)}; {state['joint']}"
    size_refit = rules.matches(refit, _constant(paper["refit"][0], R), 2 * paper["refit"][1])
    size_joint = rules.matches(joint, _constant(paper["joint"][0], R), 2 * paper["joint"][1])
    parts = [
        _part(f"(1) the refitted variance over-estimates the truth (> {true:g})",
              rules.paired(refit, _constant(true, R), margin=margin["refit"]), refit_ev,
              judged=settle_refit.settled, digits=5),
        _part(f"(2) the jointly learned variance over-estimates the truth (> {true:g})",
              rules.paired(joint, _constant(true, R), margin=margin["joint"]), joint_ev,
              judged=settle.settled, digits=5),
        _part("(3) joint training over-estimates more than the refit (joint > refit)",
              rules.paired(joint, refit, margin=margin["pair"]), f"{joint_ev}; {refit_ev}",
              judged=settle.settled and settle_refit.settled, digits=5),
        _part(f"(4) the refit's size: {paper['refit'][0]} +- {paper['refit'][1]} (the paper's '50% over')",
              size_refit, refit_ev, judged=settle_refit.settled, digits=5),
        _part(f"(5) the joint's size: {paper['joint'][0]} +- {paper['joint'][1]} (the paper's '100% over')",
              size_joint, joint_ev, judged=settle.settled, digits=5)]
    return parts, {"refit": refit, "refit_se": refit_se, "joint": joint, "joint_se": joint_se,
                   "settle_refit": settle_refit, "settle_joint": settle, "margin": margin, "state": state}


@claim("spiral_dots_noise", paper="yacoby2021", kind="empirical",
       statement="yacoby2021 Sec. 4.2 on Spiral Dots (true noise variance 0.01), \"Theorem 2 implies that the ELBO "
                 "biases noise variance estimates\": with theta, phi trained at the true variance, \"we recompute "
                 "sigma^2 that maximizes the ELBO for the learned theta, phi\" and, in a second experiment, \"train "
                 "the ELBO jointly over sigma^2, theta and phi\": \"we get 0.014 +- 0.001 and 0.020 +- 0.003, "
                 "respectively. The ELBO therefore over-estimates the noise variance by 50% and 100%, "
                 "respectively.\" Judged parts, restart by restart, each variance as its mean over the last tenth "
                 "of training (the refit: Theorem 2's ELBO-optimal variance for the fixed-noise VAE's theta, phi "
                 "after each step of that tenth): (1) the refit above 0.01 and (2) the jointly learned variance above "
                 "0.01, (3) the joint above the refit (joint training biases it more), each by more than twice "
                 "the standard error of the means; (4) the refit within 2 paper sd (0.002) of 0.014 and (5) the "
                 "joint within 2 paper sd (0.006) of 0.020. A part is judged only when the variances it uses "
                 "have settled.",
       paper_figure="Sec. 4.2: 0.014 +- 0.001 (refit) and 0.020 +- 0.003 (joint) against a true 0.01")
def spiral_dots_noise(ctx):
    res = failure_modes.noise_bias_experiment(seed=ctx.rng("spiral_dots_noise"), progress=ctx.progress,
                                              fractions=SPIRAL_FRACTIONS, record_last=2 * SETTLE_WINDOW,
                                              **_spiral_settings(ctx))
    paper, true, s = failure_modes.PAPER_NOISE, res.true_noise, res.settings
    parts, j = spiral_parts(res)
    refit, refit_se, joint, joint_se = j["refit"], j["refit_se"], j["joint"], j["joint_se"]
    settle, settle_refit, margin, state = j["settle_joint"], j["settle_refit"], j["margin"], j["state"]
    R = refit.size
    paper_refit, paper_joint = (f"{paper[k][0]} +- {paper[k][1]}" for k in ("refit", "joint"))
    window = f"mean over the last {SETTLE_WINDOW:.0%} of the steps"
    gap = np.abs(res.refit - res.refit_closed_form)
    chance = true * np.sqrt(2.0 / (s["n_train"] * s["data_dim"]))   # sd of a mean of N d squared N(0, true) draws
    rows = [Row("this training sample's own noise variance (true f and the z that drew each point)",
                [res.sample_noise], f"{paper['true']} (the truth)",
                f"{true:g} up to the sample's chance (sd {chance:.5f}); shared by every restart"),
            Row(f"refit: Theorem 2's ELBO-optimal variance for the fixed-noise VAE, {window} (after every step, "
                "one draw per point of a fresh minibatch)", refit.tolist(), paper_refit,
                f"se {rules.fmt_values(refit_se, 5)} (batch means); {state['refit']}"),
            Row(f"joint: the jointly learned variance, {window}", joint.tolist(), paper_joint,
                f"se {rules.fmt_values(joint_se, 5)} (batch means); {state['joint']}"),
            Row(f"refit at the last step ({s['closed_form_samples']} draws per point)",
                res.refit_closed_form.tolist(), paper_refit,
                f"Monte Carlo se {rules.fmt_values(res.refit_closed_form_se, 6)}; a gradient refit of the variance "
                f"alone lands on {rules.fmt_values(res.refit, 5)}"),
            Row("joint at the last step (the last iterate)", res.joint.tolist(), paper_joint,
                f"Theorem 2's value for the joint's last theta, phi {rules.fmt_values(res.joint_closed_form, 5)}")]
    for i, f in enumerate(res.fractions):
        when = f"budget {f:.0%} (step {s['snapshot_steps'][i]}, learning rate {s['snapshot_rates'][i]:g})"
        rows += [Row(f"{when}: refit (Theorem 2, {s['snapshot_samples']} draws per point)", res.refit_at[i].tolist(),
                     paper_refit),
                 Row(f"{when}: joint", res.joint_at[i].tolist(), paper_joint)]
    return Outcome(
        parts=parts, rows=rows,
        measured={"true_noise": true, "sample_noise": res.sample_noise, "refit": refit.tolist(),
                  "refit_se": refit_se.tolist(), "joint": joint.tolist(), "joint_se": joint_se.tolist(),
                  "refit_last_step": res.refit_closed_form.tolist(),
                  "refit_last_step_se": res.refit_closed_form_se.tolist(), "refit_by_gradient": res.refit.tolist(),
                  "joint_last_step": res.joint.tolist(), "joint_last_step_closed_form": res.joint_closed_form.tolist(),
                  "fractions": res.fractions.tolist(), "snapshot_steps": list(s["snapshot_steps"]),
                  "refit_at": res.refit_at.tolist(), "joint_at": res.joint_at.tolist(),
                  "joint_settled": settle.per_restart, "joint_last_window_change": settle.change,
                  "refit_settled": settle_refit.per_restart, "refit_last_window_change": settle_refit.change,
                  "refit_by_gradient_minus_last_step_max": float(np.max(gap))},
        spread={"refit": rules.mean_sd(refit)[1], "joint": rules.mean_sd(joint)[1]},
        rule="each part restart by restart (refvae.verify.rules.paired with the margins below, matches for the "
             f"sizes) on the {window} (standard errors by batch means over {SPIRAL_BATCHES} consecutive batches); a "
             f"part is judged only on settled runs (refvae.verify.rules.settled: the mean of the last "
             f"{SETTLE_WINDOW:.0%} of the steps within {SETTLE_RTOL} (relative) of the mean of the {SETTLE_WINDOW:.0%} "
             f"before): (2), (5) the joint variance, (1), (4) the refit (Theorem 2's value after every step of those "
             "two windows, estimated on a fresh minibatch, so its tolerance also allows twice the standard error "
             "of its change), (3) both; margins: twice the "
             f"largest standard error, (1) {margin['refit']:.1e}, (2) {margin['joint']:.1e}, (3) {margin['pair']:.1e} "
             "(the two combined); reproduced when every part holds",
        choices={
            "budget": f"Adam stages {s['schedule']}, minibatches of {s['batch_size']}, {s['n_train']} points "
                      "(yacoby2021's budget is lost, App. C). Both variances follow the learning rate: each rate cut "
                      "lowers them (the minibatch jitter of theta, phi adds to the residual), so the size parts "
                      "depend on the budget (rows 'budget ...': the paper's numbers sit in the first, "
                      "highest-rate stage). The last stage, at the smallest rate, holds 60% of the steps, so "
                      "that the settling check compares two windows well past the last cut",
            "window means": "both variances are judged by their mean over the last tenth of the steps: Theorem 2's "
                            "value for the fixed-noise VAE jitters from step to step with theta, phi (by several "
                            "times the Monte Carlo error of the last-step row), and the learned variance is a "
                            "running average of that jittering residual, so a last-step refit would be one draw "
                            "compared with an average",
            "refit": "yacoby2021 recomputes the variance that maximises the ELBO for the trained theta, phi: "
                     "Theorem 2's closed form, by Monte Carlo (one draw per point of a fresh minibatch after every "
                     f"step of the last two windows; {s['snapshot_samples']} draws per point at the budget rows, "
                     f"{s['closed_form_samples']} at the last step, se {np.max(res.refit_closed_form_se):.1e}); a "
                     f"gradient refit of the variance alone (stages {s['refit_schedule']}, {s['refit_samples']} "
                     f"draws per point) lands within {np.max(gap):.1e} of the last-step value, a check",
            "truth": f"judged against the true {true:g} (the paper's reference); this sample's own noise variance "
                     f"is {res.sample_noise:.5f} (first row)",
            "joint start": "the variance starts at the truth (the start most favourable to it)",
            "paper's percentages": "0.014 is 40% over 0.01, not 50%; the size parts use the printed numbers",
            "architecture": f"tanh MLPs {s['hidden']}, K = 1",
            "restarts": f"{R} random initialisations, and one minibatch stream, shared by both experiments; one data "
                        "set (yacoby2021: 5 random and 5 at the ground truth, keeping the best objective)"},
        paper_value=f"refit {paper_refit}, joint {paper_joint} (true {paper['true']})",
        summary=f"{window} (refit {'settled' if settle_refit.settled else 'NOT SETTLED'}, joint "
                f"{'settled' if settle.settled else 'NOT SETTLED'}): refit {rules.fmt_values(refit, 4)} (paper "
                f"{paper_refit}), joint {rules.fmt_values(joint, 4)} (paper {paper_joint}), true {true:g} (this "
                f"sample's noise {res.sample_noise:.4f}); during training "
                + ", ".join(f"at {f:.0%} refit {rules.fmt_values(res.refit_at[i], 4)}, joint "
                            f"{rules.fmt_values(res.joint_at[i], 4)}" for i, f in enumerate(res.fractions))
                + ". " + _verdict(parts),
        figures=[f for f in [_spiral_figure(ctx, res)] if f])


def _spiral_figure(ctx, res):
    """The joint variance per step, and the refit at the budget snapshots then (in the recorded last
    fifth) as means of 10 consecutive blocks of steps (left); every snapshot per restart beside the
    paper's numbers (right)."""
    paper, true, s = failure_modes.PAPER_NOISE, res.true_noise, res.settings
    R, T, L = res.refit.size, res.joint_trajectory.shape[0], res.refit_trajectory.shape[0]
    w = max(2, int(round(SETTLE_WINDOW * T)))
    blocks = np.array_split(np.arange(L), min(10, L))
    block_steps = [s["record_from"] + float(b.mean()) for b in blocks]
    block_means = np.stack([res.refit_trajectory[b].mean(axis=0) for b in blocks])             # (blocks, R)
    early = [i for i, t in enumerate(s["snapshot_steps"]) if t < s["record_from"]]

    def draw(fig):
        ax1, ax2 = fig.subplots(1, 2, width_ratios=(1.6, 1.0))
        steps = np.arange(1, T + 1)
        ax1.axvspan(T - 2 * w, T, color="0.9", label="settling windows")
        for r in range(R):
            ax1.plot(steps, res.joint_trajectory[:, r], lw=0.8, color=f"C{r}", label=f"joint, restart {r}")
            ax1.plot([s["snapshot_steps"][i] for i in early] + block_steps,
                     np.concatenate([res.refit_at[early, r], block_means[:, r]]), "o--", color=f"C{r}", ms=3,
                     label=f"refit (Theorem 2), restart {r}")
        refs = ((true, "k", ":", f"true {true:g}"), (paper["refit"][0], "0.4", "--", "paper refit"),
                (paper["joint"][0], "0.4", "-.", "paper joint"))
        for value, color, ls, name in refs:
            ax1.axhline(value, color=color, ls=ls, lw=0.9, label=name)
        for end in np.cumsum([n for _, n in s["schedule"]])[:-1]:
            ax1.axvline(end, color="0.6", lw=0.6)
        ax1.set_xlabel("training step (thin vertical lines: learning-rate cuts)")
        ax1.set_ylabel("noise variance sigma2")
        ax1.set_title("yacoby2021 Sec. 4.2 (Spiral Dots): learned noise during training")
        span = res.fractions[-1] - res.fractions[0] + 0.1
        for r in range(R):                          # colour: restart, as on the left; marker: experiment
            dx = (r - (R - 1) / 2) * 0.012 * span
            ax2.plot(res.fractions + dx, res.joint_at[:, r], "s", color=f"C{r}")
            ax2.plot(res.fractions + dx, res.refit_at[:, r], "o", color=f"C{r}")
        ax2.plot([], [], "s", color="0.4", label="joint (colour: restart)")
        ax2.plot([], [], "o", color="0.4", label="refit (colour: restart)")
        x_paper = res.fractions[-1] + 0.1 * span
        ax2.errorbar([x_paper], [paper["joint"][0]], [paper["joint"][1]], fmt="s", color="k", mfc="none",
                     label="paper joint (+- sd)")
        ax2.errorbar([x_paper], [paper["refit"][0]], [paper["refit"][1]], fmt="o", color="k", mfc="none",
                     label="paper refit (+- sd)")
        ax2.axhline(true, color="k", ls=":", lw=0.9)
        ax2.set_xlabel("fraction of the training budget")
        ax2.set_ylabel("noise variance sigma2")
        ax2.set_title("per budget: refvae (filled), paper (open, right)")
        ax2.legend()
        share_limits([ax1, ax2], which="y")
        fig.legend(*ax1.get_legend_handles_labels(), loc="outside lower center", ncols=4)

    return ctx.figure("spiral_dots_noise", draw, panel_size=(4.5, 3.6))


# ==================================================================================== Sec. 5.1

@claim("elbo_prefers_more_latents", paper="yacoby2021", kind="empirical",
       statement="yacoby2021 Sec. 5.1 (App. D.3 lost): \"using a larger K and a smaller sigma^2 means we can capture "
                 "the data distribution with a simpler function ... Thus, the ELBO will favor model mismatch (K "
                 "larger than the ground truth)\". Judged on data with a K = 1 ground truth "
                 "(refvae.datasets.compression: the Figure-8 curve in the plane), both VAEs with a learned noise "
                 "variance: the held-out ELBO of K = 2 above K = 1's, and the learned variance of K = 2 below "
                 "K = 1's, restart by restart. Not judged here: the informativeness per latent and the paper's "
                 "further sentence that LIN also prefers higher K and IWAE does not (not run).",
       paper_figure="Sec. 5.1 (App. D.3 with the numbers is lost)")
def elbo_prefers_more_latents(ctx):
    kw = ctx.scale(mini=dict(restarts=2, n_train=64, n_test=64, schedule=((1e-2, 300),), elbo_samples=4,
                             is_samples=64),
                   quick=dict(restarts=3),
                   full=dict(restarts=10, n_train=2000, n_test=2000,
                             schedule=((1e-2, 20000), (3e-3, 10000), (1e-3, 5000)), is_samples=5000))
    res = failure_modes.latent_dim_experiment(seed=ctx.rng("elbo_prefers_more_latents"), progress=ctx.progress, **kw)
    parts = [_part("the ELBO prefers K = 2 to the true K = 1 (held-out ELBO)", rules.paired(res.elbo[2], res.elbo[1])),
             _part("with K = 2 the learned noise variance is smaller", rules.paired(res.sigma2[2], res.sigma2[1],
                                                                                     higher_is_better=False))]
    measured, spread, rows = {"truth.test_ll": res.truth_ll}, {}, []
    for K in res.elbo:
        for name in ("elbo", "test_ll", "sigma2", "active"):
            value = np.asarray(getattr(res, name)[K])
            measured[f"K{K}.{name}"] = value.tolist()
            spread[f"K{K}.{name}"] = rules.mean_sd(value)[1]
        measured[f"K{K}.elbo_mc_se"] = np.asarray(res.elbo_se[K]).tolist()
        measured[f"K{K}.test_ll_se"] = np.asarray(res.test_ll_se[K]).tolist()
        rows += [Row(f"K = {K}: held-out ELBO per point", np.asarray(res.elbo[K]).tolist(),
                     "K > 1 preferred" if K > 1 else None, f"Monte Carlo se {rules.fmt_values(res.elbo_se[K], 4)}"),
                 Row(f"K = {K}: held-out log p(x) per point", np.asarray(res.test_ll[K]).tolist(), None,
                     "quadrature" if K == 1 else "importance sampling"),
                 Row(f"K = {K}: learned noise variance", np.asarray(res.sigma2[K]).tolist(),
                     "smaller for larger K" if K > 1 else None)]
    s = res.settings
    return Outcome(
        parts=parts, measured=measured, spread=spread, rows=rows,
        rule="each part restart by restart (refvae.verify.rules.paired; K = 1 and K = 2 restarts share data and "
             "minibatch stream, not the initialisation); reproduced when every part holds",
        choices={"data": "refvae.datasets.compression (the Figure-8 curve, d = 2): yacoby2021's two examples are in "
                         "the lost App. D.3",
                 "budget": f"Adam stages {s['schedule']}, minibatches of {s['batch_size']}, {s['n_train']} points",
                 "noise start": "the learned variance starts at the truth (0.01)"},
        paper_value="the ELBO selects K > 1 over the true K = 1 and the learned noise shrinks (App. D.3 lost; "
                    "no numbers)",
        summary=f"held-out ELBO K = 1 {rules.fmt_values(res.elbo[1])}, K = 2 {rules.fmt_values(res.elbo[2])}; "
                f"held-out log p(x) K = 1 {rules.fmt_values(res.test_ll[1])} (quadrature), K = 2 "
                f"{rules.fmt_values(res.test_ll[2])} (importance sampling), truth {res.truth_ll:.3f}; learned noise "
                f"K = 1 {rules.fmt_values(res.sigma2[1], 4)}, K = 2 {rules.fmt_values(res.sigma2[2], 4)}"
                + ". " + _verdict(parts))


# ==================================================================================== Sec. 5.2

#: The k-NN statistic between the two learned conditionals is ~N(0, 1) when they coincide; below
#: this they count as collapsed, above it as distinct (the truth's conditionals: ~14 at 100 vs 100).
KNN_LEVEL = 2.0
#: A collapse must still fit p(x): held-out log p(x) within this of the truth's (nats per point).
#: The hand-built collapsed decoder has exactly the truth's p(x); a model that failed to learn sits
#: far below (a blob around the semicircle: < -0.8).
PX_TOL = 0.05


def _outcomes(run, truth_ll, preferred):
    """Per free restart: what it learned; how its J compares with its forced collapse's (same
    initialisation and minibatches); and, from the exact comparison on the same training data
    (``preferred``: "truth" or "collapsed" at this family and gamma), whether the objective itself
    prefers collapse or the optimiser fell into it."""
    out = []
    jc, se = run.paired_collapse("objective"), run.paired_collapse("objective_se")
    for i in range(run.knn.size):
        px_ok = run.marginal_ll[i] >= truth_ll - PX_TOL
        same = run.knn[i] < KNN_LEVEL
        if same:
            word = "collapsed" if px_ok else "conditionals equal, p(x) not learned (a failure, not a collapse)"
        else:
            word = "distinct" + ("" if px_ok else ", p(x) not learned")
        tol = 2 * np.hypot(run.objective_se[i], se[i])
        if jc[i] > run.objective[i] + tol:
            word += "; J below its forced collapse's"
        elif jc[i] < run.objective[i] - tol:
            word += "; J above its forced collapse's"
        else:
            word += "; J equal to its forced collapse's (within 2 se)"
        if same and preferred == "truth":
            word += "; the objective prefers the truth to collapse here: the optimiser fell into it"
        elif same and preferred == "collapsed":
            word += "; the objective prefers collapse here"
        elif preferred == "collapsed" and jc[i] > run.objective[i] + tol:
            word += "; the objective prefers collapse, the optimiser did not get there"
        out.append(word)
    return out


def _m2_settings(ctx):
    return ctx.scale(
        mini=dict(restarts=2, label_init=(1.0,), n_train=100, n_test=40, schedule=((1e-2, 100),),
                  iwae_samples=2, batch_size=50, knn_size=30, knn_repeats=3, objective_samples=2),
        quick=dict(restarts=2, batch_size=32, knn_repeats=10),
        full=dict(restarts=5, runs=tuple((f, g) for f in ("shared", "conditional") for g in (0.3, 1.0, 3.0, 10.0, 30.0)),
                  iwae=(("shared", 1.0), ("conditional", 1.0)), n_train=2000, n_test=2000, iwae_samples=20,
                  batch_size=100, schedule=((1e-2, 20000), (3e-3, 10000), (1e-3, 5000)), knn_repeats=200))


@claim("m2_functional_collapse", paper="yacoby2021", kind="empirical",
       statement="yacoby2021 Sec. 5.2 on Discrete Semi-Circle (10% labels): with a MFG family \"for the unlabeled "
                 "portion of the semi-supervised objective (U in Equation 5)\", the VAE \"is able to learn the data "
                 "manifold and distribution well. However, ... the learned f_theta(z, y) [collapses] to the same "
                 "function for all values of y\" (functional collapse, p(x|y) ~ p(x)); \"IWAE is able to learn two "
                 "distinct data conditionals ... IWAE learns p(x) considerably worse than the VAE, while learning "
                 "p(x|y) significantly better\"; which of the two (collapse with a good p(x), or distinct "
                 "conditionals with a compromised p(x)) depends on gamma. Judged, with U's q(z|x) shared across y "
                 "(the paper's reading; refvae.m2 unlabelled_posterior='shared'), alpha = 0: (1) at gamma = 1 the "
                 f"selected restart (best J) collapsed: k-NN between its conditionals < {KNN_LEVEL} and held-out log "
                 f"p(x) within {PX_TOL} of the truth's; (2) IWAE-M2's selected restart distinct (k-NN > {KNN_LEVEL}); "
                 "(3) IWAE-M2's log p(x) below M2's and (4) its log p(x|y) above M2's, restart by restart; (5) at "
                 "gamma = 10 the selected restart distinct and (6) its log p(x) below gamma = 1's, restart by "
                 "restart. Not judged: LIN (no LIN-M2 in refvae), the UCI data sets, overfitting (Fig. 2b only).",
       paper_figure="Fig. 2b (Sec. 5.2): the VAE learns two nearly identical functions, IWAE two distinct, "
                    "overfitted ones; App. D.4 with the numbers is lost")
def m2_functional_collapse(ctx):
    res = m2_collapse.collapse_experiment(seed=ctx.rng("m2_functional_collapse"), progress=ctx.progress,
                                          **_m2_settings(ctx))
    label = m2_collapse.run_label
    runs, t_ll = res.runs, res.truth_marginal_ll
    m2, iw, hi = runs[label("shared", 1.0)], runs[label("shared", 1.0, "iwae")], runs[label("shared", 10.0)]

    def collapsed(run, i):
        return bool(run.knn[i] < KNN_LEVEL and run.marginal_ll[i] >= t_ll - PX_TOL)

    def sel(run):
        i = run.selected
        return (f"selected restart {i} (label init {run.label_init[i]:g}): k-NN {run.knn[i]:.2f}, log p(x) "
                f"{run.marginal_ll[i]:.3f} (truth {t_ll:.3f}), J {run.objective[i]:.3f}")

    parts = [Part("M2 at gamma = 1: functional collapse with p(x) learned well", collapsed(m2, m2.selected), sel(m2),
                  f"the restart with the best J has k-NN < {KNN_LEVEL} and log p(x) >= truth - {PX_TOL}"),
             Part("IWAE-M2 learns two distinct conditionals", bool(iw.knn[iw.selected] > KNN_LEVEL), sel(iw),
                  f"the restart with the best J has k-NN > {KNN_LEVEL}"),
             _part("IWAE-M2 learns p(x) worse than M2 (held-out log p(x))", rules.paired(m2.marginal_ll, iw.marginal_ll)),
             _part("IWAE-M2 learns p(x|y) better than M2 (held-out log p(x|y))", rules.paired(iw.cond_ll, m2.cond_ll)),
             Part("M2 at gamma = 10: distinct conditionals", bool(hi.knn[hi.selected] > KNN_LEVEL), sel(hi),
                  f"the restart with the best J has k-NN > {KNN_LEVEL}"),
             _part("M2 at gamma = 10 compromises p(x) relative to gamma = 1", rules.paired(m2.marginal_ll, hi.marginal_ll))]
    rows = [Row("truth: k-NN between p(x|y=0) and p(x|y=1)", [res.truth_knn], "two distinct functions"),
            Row("truth: held-out log p(x) per point", [t_ll], None),
            Row("truth: held-out log p(x|y) per point", [res.truth_cond_ll], None)]
    measured = {"truth.knn": res.truth_knn, "truth.angle_w1": res.truth_angle_w1, "truth.cond_ll": res.truth_cond_ll,
                "truth.marginal_ll": t_ll}
    spread, lines = {}, []
    paper_knn = {"M2 shared, gamma 1": "p(x|y=0) ~ p(x|y=1) (collapse)", "IWAE-M2 shared, gamma 1": "distinct"}
    for name, run in runs.items():
        note = "label init per restart " + rules.fmt_values(run.label_init, 2)
        rows += [Row(f"{name}: k-NN between its conditionals", run.knn.tolist(), paper_knn.get(name), note),
                 Row(f"{name}: held-out log p(x) per point", run.marginal_ll.tolist(),
                     "considerably worse than the VAE's" if run.bound == "iwae" else None, f"truth {t_ll:.3f}"),
                 Row(f"{name}: held-out log p(x|y) per point", run.cond_ll.tolist(),
                     "significantly better than the VAE's" if run.bound == "iwae" else None,
                     f"truth {res.truth_cond_ll:.3f}"),
                 Row(f"{name}: training objective J per point", run.objective.tolist(), None,
                     f"Monte Carlo se {rules.fmt_values(run.objective_se, 4)}")]
        if run.collapsed_objective is not None:
            k = [float(v) for v in res.exact.gammas].index(run.gamma)
            exact = res.exact.objective[run.family]
            preferred = res.exact.winner(run.family)[k]
            rows += [Row(f"{name}: J of the forced collapse from the same initialisation",
                         run.paired_collapse("objective").tolist(), None,
                         "decoder blind to y, same minibatches; its held-out log p(x) "
                         + rules.fmt_values(run.collapsed_marginal_ll)),
                     Row(f"{name}: exact J on the training data, truth vs collapsed decoder",
                         [float(exact["truth"][k]), float(exact["collapsed"][k])], None,
                         f"best Gaussian q per point (claim m2_collapse_exact's computation): the objective "
                         f"prefers the {preferred}"),
                     Row(f"{name}: outcome per restart", _outcomes(run, t_ll, preferred), None)]
            measured[f"{name}.exact_truth_vs_collapsed"] = [float(exact["truth"][k]), float(exact["collapsed"][k])]
        for key in ("knn", "marginal_ll", "cond_ll", "objective", "accuracy", "angle_w1"):
            measured[f"{name}.{key}"] = np.asarray(getattr(run, key)).tolist()
            spread[f"{name}.{key}"] = rules.mean_sd(getattr(run, key))[1]
        measured[f"{name}.label_init"] = run.label_init.tolist()
        if run.collapsed_objective is not None:
            measured[f"{name}.collapsed_objective"] = run.collapsed_objective.tolist()
            measured[f"{name}.collapsed_marginal_ll"] = run.collapsed_marginal_ll.tolist()
        n_coll = sum(collapsed(run, i) for i in range(run.knn.size))
        lines.append(f"{name}: {n_coll}/{run.knn.size} restarts collapsed, {sel(run)}")
    by_scale = []
    for name in (label("shared", 1.0), label("conditional", 1.0)):
        run = runs.get(name)
        if run is None:
            continue
        for v in np.unique(run.label_init)[::-1]:
            idx = np.flatnonzero(run.label_init == v)
            by_scale.append(f"{name}, label init {v:g}: {sum(collapsed(run, i) for i in idx)}/{idx.size} collapsed")
    cond = runs.get(label("conditional", 1.0))
    s = res.settings

    def draw(fig):
        names = ["truth"] + list(runs)
        axes = fig.subplots(1, len(names), squeeze=False)[0]
        for ax, name in zip(axes, names):
            for y, x in enumerate(res.samples[name]):
                ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.4, label=f"y = {y}")
            title = "truth (yacoby2021 Fig. 2b)" if name == "truth" else f"{name} (restart {runs[name].selected})"
            ax.set_title(f"{title}: p(x | y)")
            ax.set_xlabel("x1")
            ax.set_ylabel("x2")
            ax.set_aspect("equal")
            ax.legend(markerscale=4)
        share_limits(axes)                          # one scale: the conditionals compare by eye with the truth's

    return Outcome(
        parts=parts, rows=rows, measured=measured, spread=spread,
        rule="parts (1), (2), (5) on the restart with the best training objective J (yacoby2021's selection); parts "
             "(3), (4), (6) restart by restart (refvae.verify.rules.paired; the runs share their initialisations); "
             "reproduced when every part holds. Per restart the report also says whether the objective prefers "
             "what was found: its J against the forced collapse's from the same initialisation, and the exact "
             "comparison of truth and collapse (best Gaussian q per point) on the same training data",
        choices={
            "unlabelled_posterior": "'shared' (one q(z|x) for every y in U) is judged, the reading the paper's "
                                    "argument needs; with Kingma et al.'s q(z|x, y) ('conditional') "
                                    + (f"the selected restart has k-NN {cond.knn[cond.selected]:.2f} and log p(x) "
                                       f"{cond.marginal_ll[cond.selected]:.3f}" if cond is not None else "(not run)")
                                    + "; the exact comparison (claim m2_collapse_exact) shows collapse is never "
                                      "optimal there",
            "label init": "the decoder's first-layer weights on onehot y start at the networks' LeCun scale (1) and, "
                          "for the same initialisations, at 0.01 (class functions nearly equal at the start); "
                          "measured: " + "; ".join(by_scale),
            "gamma": "1 (J a bound on log p for alpha = 0) and 10; yacoby2021 tunes gamma and does not give it",
            "alpha": f"{s['alpha']} (the classifier term of Eq. 5 off)",
            "IWAE": f"S = {s['iwae_samples']} per class (yacoby2021: S <= 20), q(z|x) shared in U as for M2",
            "budget": f"Adam stages {s['schedule']}, minibatches of {s['batch_size']}, {s['n_train']} points "
                      f"({s['labelled_fraction']:.0%} labelled), tanh MLPs {s['hidden']}, noise fixed at the truth's",
            "collapse level": f"k-NN < {KNN_LEVEL} between 2 x {s['knn_size']} samples (mean of {s['knn_repeats']}) "
                              f"and log p(x) within {PX_TOL} of the truth's",
        },
        paper_value="M2 (VAE): p(x|y=0) ~ p(x|y=1) ~ p(x) (functional collapse) with p(x) learned well; IWAE-M2: "
                    "distinct conditionals that overfit the labels, a worse p(x), a better p(x|y) (Fig. 2; App. D.4 "
                    "numbers lost)",
        summary="; ".join(lines) + f"; truth: k-NN {res.truth_knn:.2f}, log p(x) {t_ll:.3f}, log p(x|y) "
                f"{res.truth_cond_ll:.3f}. "
                + _verdict(parts),
        figures=[f for f in [ctx.figure("m2_functional_collapse", draw)] if f])


@claim("m2_collapse_exact", paper="yacoby2021", kind="theorem",
       statement="yacoby2021 Sec. 5.2's mechanism, computed exactly on Discrete Semi-Circle (10% labels, alpha = 0): "
                 "the objective J of Eq. 5 per point of the ground-truth decoder vs a collapsed decoder with the same "
                 "p(x) (g(z) = circle(pi F^-1(Phi(z))), blind to y), each with its ELBO-optimal Gaussian q per point "
                 "and log p(x|y) by quadrature. With q(z|x, y) in U (Kingma et al.) the truth's J is higher at every "
                 "gamma; with one q(z|x) shared across y (the paper's reading) the collapsed decoder's J is higher at "
                 "gamma = 1 and the truth's at gamma = 30 (a single crossing, J being linear in gamma). Also checked: "
                 "the collapsed decoder's log p(x) equals the truth's, the shared family's U never exceeds the "
                 "conditional family's, and the grid that locates each optimal q values it as the exact rule does.",
       paper_figure="Sec. 5.2: \"using a MFG variational family for the unlabeled portion ... (U in Equation 5) will "
                    "encourage inference to either compromise learning the data-distribution ... or ... functional "
                    "collapse ... depending on ... gamma\" (an argument, no number)")
def m2_collapse_exact(ctx):
    gammas = (0, 1, 2, 3, 5, 10, 20, 30)
    res = m2_collapse.exact_comparison(seed=ctx.rng("m2_collapse_exact"), n=ctx.scale(60, 500, 2000), gammas=gammas)
    ctx.progress(1.0, "done")
    g = [float(v) for v in res.gammas]
    i1, i30 = g.index(1.0), g.index(30.0)
    cond, shared = res.objective["conditional"], res.objective["shared"]
    same_px = float(np.max(np.abs(res.log_px_collapsed - res.log_px)))
    order = float(np.max(res.unlabelled_truth["shared"] - res.unlabelled_truth["conditional"]))
    def fmt(o):
        return ", ".join(f"gamma {v:g}: {t:.3f} vs {c:.3f}" for v, t, c in zip(g, o["truth"], o["collapsed"]))
    parts = [
        Part("q(z|x, y) in U: the truth's J exceeds the collapsed decoder's at every gamma",
             bool(np.all(cond["truth"] > cond["collapsed"])), "truth vs collapsed: " + fmt(cond),
             f"at each gamma in {g}"),
        Part("shared q(z|x) in U: collapse wins at gamma = 1, the truth at gamma = 30",
             bool(shared["collapsed"][i1] > shared["truth"][i1] and shared["truth"][i30] > shared["collapsed"][i30]),
             "truth vs collapsed: " + fmt(shared) + (f"; crossing at gamma {res.crossing['shared']:.2f}"
                                                     if res.crossing["shared"] else ""), "sign flip between gamma 1 and 30"),
        Part("the collapsed decoder has the truth's p(x)", same_px < 1e-9, f"max |log p_g(x) - log p(x)| {same_px:.1e}",
             "< 1e-9 (quadrature)"),
        Part("the shared family's U never exceeds the conditional family's (a shared q is a conditional one)",
             order <= 1e-9, f"max U_shared - U_conditional {order:.2e}", "<= 1e-9 per point"),
        Part("the optimal q are valued alike by the search grid and by refvae.metrics.quadrature",
             res.rule_gap < 1e-6, f"max difference {res.rule_gap:.1e}", "< 1e-6")]
    rows = [Row("J per point, truth with q(z|x, y) in U, per gamma " + str(g), cond["truth"].tolist(), None),
            Row("J per point, truth with shared q(z|x) in U, per gamma", shared["truth"].tolist(), None),
            Row("J per point, collapsed decoder (either family), per gamma", cond["collapsed"].tolist(), None),
            Row("crossing gamma (shared family)", [res.crossing["shared"] or float("nan")], None,
                "collapse wins below it, the truth above"),
            Row("mean log p(x) - U per point: conditional, shared, collapsed",
                [float(np.mean(res.log_px - res.unlabelled_truth["conditional"])),
                 float(np.mean(res.log_px - res.unlabelled_truth["shared"])),
                 float(np.mean(res.log_px - res.elbo_collapsed))], None, "the price of each family's Gaussian")]

    def draw(fig):
        ax1, ax2 = fig.subplots(1, 2)
        ax1.plot(g, cond["truth"], "o-", label="truth, q(z|x, y) in U")
        ax1.plot(g, shared["truth"], "s-", label="truth, shared q(z|x) in U")
        ax1.plot(g, cond["collapsed"], "^-", label="collapsed decoder (same p(x))")
        ax1.set_xlabel("gamma (weight of the labelled bound, Eq. 5)")
        ax1.set_ylabel("J per point (ELBO-optimal Gaussian q)")
        ax1.set_title("yacoby2021 Sec. 5.2: J of each decoder")
        ax1.legend(loc="upper right")     # the curves fall from upper left to lower right: upper right is empty
        ax2.plot(g, cond["truth"] - cond["collapsed"], "o-", label="q(z|x, y) in U")
        ax2.plot(g, shared["truth"] - shared["collapsed"], "s-", label="shared q(z|x) in U")
        ax2.axhline(0.0, color="k", lw=0.8)
        if res.crossing["shared"]:
            ax2.axvline(res.crossing["shared"], color="C1", ls=":", label=f"crossing {res.crossing['shared']:.2f}")
        ax2.set_xlabel("gamma")
        ax2.set_ylabel("J(truth) - J(collapsed) per point")
        ax2.set_title("above 0: the truth is preferred")
        ax2.legend()

    return Outcome(
        parts=parts, rows=rows,
        measured={"gammas": g, "conditional.truth": cond["truth"].tolist(), "shared.truth": shared["truth"].tolist(),
                  "collapsed": cond["collapsed"].tolist(), "crossing.shared": res.crossing["shared"],
                  "crossing.conditional": res.crossing["conditional"], "max_px_difference": same_px,
                  "max_shared_minus_conditional": order, "rule_gap": res.rule_gap},
        rule="theorem: holds when every part holds",
        choices={"sample": f"{res.settings['n']} points, {res.settings['labelled_fraction']:.0%} labelled: J is a "
                           "sample average, so its values (not the signs) move with the sample; the crossing moved "
                           "between 3.4 and 4.6 over 3 samples of 500",
                 "q": "the best Gaussian per point (an amortised encoder can at most reach it); q(y|x) optimal",
                 "alpha": "0"},
        summary=f"{res.settings['n']} points, J per point truth vs collapsed: with q(z|x, y) in U gamma 1 "
                f"{cond['truth'][i1]:.3f} vs {cond['collapsed'][i1]:.3f}, gamma 30 {cond['truth'][i30]:.3f} vs "
                f"{cond['collapsed'][i30]:.3f}; with a shared q(z|x) gamma 1 {shared['truth'][i1]:.3f} vs "
                f"{shared['collapsed'][i1]:.3f}, gamma 30 {shared['truth'][i30]:.3f} vs {shared['collapsed'][i30]:.3f}"
                + (f", crossing at gamma {res.crossing['shared']:.2f}" if res.crossing["shared"] else "")
                + ". " + _verdict(parts),
        figures=[f for f in [ctx.figure("m2_collapse_exact", draw)] if f])

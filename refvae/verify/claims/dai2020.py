"""Claims of dai2020: Dai, Wang, Wipf, "The Usual Suspects? Reassessing Blame for VAE Posterior Collapse".

Thin wrappers around ``refvae.experiments.collapse``: each claim picks sizes by profile, runs the
experiment, decides the verdict and formats the numbers.

- ``ppca_optimum`` (theorem, Sec. 4; docs/math.md 4.4): a linear VAE with learned noise reaches PPCA.
- ``fixed_gamma_pruning`` (theorem, Sec. 4 and Prop. 2 affine case): fixed gamma prunes exactly
  the directions with eigenvalue <= gamma; gamma >= l_1 collapses everything.
- ``soft_threshold_local_minimum`` (theorem, Prop. 1; docs/math.md 4.7): the collapsed point of the
  soft-threshold decoder is a local minimum that is not global.
- ``ae_vs_vae_depth`` (empirical, Sec. 6, Fig. 1 top): the AE's error first falls with depth, then rises
  (a plateau), and the VAE's is worse than the AE's at every depth; each part judged restart by restart.
- ``kl_warmstart_no_fix`` (empirical, Sec. 5.2 and 6): KL warm-start improves the VAE somewhat but stays
  worse than the AE.

Every claim states the paper's sentence, splits it into the parts refvae judges (``Part``; for the
theorems, every check), puts the paper's number (for the theorems: the closed form the paper states)
beside refvae's per restart (``Row``), names its verdict rule and the settings the paper does not give
(``choices``), and draws a figure with the ``plot`` extra.

Tolerances of the theorem claims were set from the spread measured over 24-40 data/initialisation
seeds of the mini profile (the loosest; quick trains longer and lands closer); each docstring states
the measured maximum and the tolerance.
"""
from __future__ import annotations

import numpy as np

import analytic.ppca

from ... import datasets
from ...experiments import collapse
from .. import rules
from ..registry import Outcome, Part, Row, claim


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


def _part(statement, ok, evidence, rule):
    return Part(statement, bool(ok), evidence, rule)


def _restart_rows(label, values, paper, note=""):
    """One Row per quantity: refvae's values per restart beside the closed form the paper states."""
    return Row(label, _r(values, 6), paper, note)


# ------------------------------------------------------------------------------------ 1
@claim("ppca_optimum", paper="dai2020", kind="theorem",
       statement="dai2020 Sec. 4: with an affine decoder and a learned gamma, \"at any global optima, the columns "
                 "of W_x will correspond with the first kappa principal components of X\" and \"no spurious, "
                 "suboptimal local minima will exist\" (Tipping & Bishop's PPCA): trained from random starts, a "
                 "linear VAE reaches W W^T and the noise of PPCA, and its exact ELBO equals the PPCA maximum "
                 "log-likelihood.",
       paper_figure="Sec. 4 (a statement after Dai et al. 2019, Lucas et al. 2019, Tipping & Bishop 1999; no number)")
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
    R = len(res.elbo)
    parts = [
        _part("W W^T is PPCA's (the span and scale of the first K principal components)", res.cov_error.max() < 0.015,
              f"max |W W^T - PPCA| / l_1 per restart {_r(res.cov_error, 5)}", "< 0.015 in every restart"),
        _part("the learned noise is PPCA's (mean of the discarded eigenvalues)", s2_err.max() < 0.01,
              f"|sigma2 / sigma2_PPCA - 1| per restart {_r(s2_err, 5)}", "< 0.01 in every restart"),
        _part("the exact ELBO equals the PPCA maximum log-likelihood (no spurious local optimum)",
              bool(np.all((gap > -1e-9) & (gap < 1e-3))), f"LL - ELBO per restart {_r(gap, 6)} nats",
              "in [-1e-9, 1e-3] nats in every restart (the ELBO cannot exceed the log-likelihood)"),
        _part("the encoder variance does not depend on x (as at the optimum)", res.logvar_spread.max() < 0.06,
              f"max sd over the data of the learned log-variance {_r(res.logvar_spread, 4)}", "< 0.06 in every restart"),
        _part("the decoder offset is the sample mean", res.offset_error.max() < 0.01,
              f"max |b - xbar| per restart {_r(res.offset_error, 5)}", "< 0.01 in every restart"),
    ]
    rows = ([_restart_rows("noise variance sigma2", res.sigma2, round(res.sigma2_ppca, 6),
                           "paper: PPCA's closed form (Sec. 4 states the optimum, no number)"),
             _restart_rows("exact ELBO per point", res.elbo, round(res.loglik_ppca, 6),
                           "paper: the PPCA maximum log-likelihood per point")]
            + [_restart_rows(f"decoder column norm {j + 1} (sample eigenvalue {res.eigenvalues[j]:.4f})",
                             res.column_norms[:, j], round(float(res.column_norms_ppca[j]), 6),
                             "paper: sqrt(l_j - sigma2_PPCA)") for j in range(res.column_norms.shape[1])])
    passed = all(p.holds for p in parts)
    failed = [p.statement for p in parts if not p.holds]
    fig = ctx.figure("ppca_optimum", lambda f: _draw_ppca(f, res))
    return Outcome(
        parts=parts, rows=rows,
        rule="theorem: holds when every part holds, in every restart (tolerances from the spread measured over "
             "24 mini seeds, see the claim's docstring)",
        choices={"data": f"d = 5 Gaussian with population spectrum {SPECTRUM} (well separated, so that finite training "
                         f"reaches the optimum), a random rotation, N = {n}; K = 2",
                 "training": f"{R} restarts from random initialisations, full batch, Adam in four stages "
                             f"(0.05, 0.01, 0.002, 0.0005), the last {steps} iterates averaged"},
        measured={"cov_error_rel_l1": _r(res.cov_error, 6), "sigma2": _r(res.sigma2, 6),
                  "sigma2_ppca": round(res.sigma2_ppca, 6), "elbo": _r(res.elbo, 6),
                  "loglik_ppca": round(res.loglik_ppca, 6), "loglik_minus_elbo": _r(gap, 7),
                  "logvar_spread_max": _r(res.logvar_spread),
                  "offset_error_max": round(float(res.offset_error.max()), 5), "sample_eigenvalues": _r(res.eigenvalues),
                  "column_norms": _r(res.column_norms, 5), "column_norms_ppca": _r(res.column_norms_ppca, 5)},
        spread={"sigma2": float(np.std(res.sigma2)), "elbo": float(np.std(res.elbo))},
        paper_value="W W^T = PPCA's, noise = mean of discarded eigenvalues, ELBO = PPCA log-likelihood",
        figures=[fig] if fig else [],
        summary=(f"{R} restarts: max abs(W W^T - PPCA) = {res.cov_error.max():.1e} l_1, noise "
                 f"{res.sigma2.mean():.5f} vs PPCA {res.sigma2_ppca:.5f}, exact ELBO {res.elbo.mean():.5f} vs PPCA "
                 f"log-likelihood {res.loglik_ppca:.5f} (max gap {gap.max():.1e} nats)"
                 + ("" if passed else f"; FAILED: {'; '.join(failed)}")))


def _draw_ppca(fig, res):
    ax1, ax2 = fig.subplots(1, 2)
    d, K = len(res.eigenvalues), res.column_norms.shape[1]
    j = np.arange(1, d + 1)
    ax1.plot(j, res.eigenvalues, "ks-", label="data spectrum l_j")
    ax1.axhline(res.sigma2_ppca, color="C0", ls="--", label="PPCA sigma2 (mean of discarded l_j)")
    for r in range(len(res.sigma2)):
        ax1.plot(j[:K], res.column_norms[r] ** 2 + res.sigma2[r], "o", color="C3", mfc="none",
                 label="learned |w_j|^2 + sigma2, per restart" if r == 0 else None)
        ax1.plot([d + 0.3], [res.sigma2[r]], "x", color="C0", label="learned sigma2, per restart" if r == 0 else None)
    ax1.set(yscale="log", xlabel="eigenvalue index j", ylabel="variance",
            title="data spectrum vs learned model (dai2020 Sec. 4, PPCA)")
    ax1.legend(fontsize=7, loc="upper right")
    for r in range(len(res.sigma2)):
        ax2.plot(j[:K], res.column_norms[r], "o", color="C3", mfc="none",
                 label="learned column norm, per restart" if r == 0 else None)
    ax2.plot(j[:K], res.column_norms_ppca, "k_", ms=20, mew=2, label="PPCA: sqrt(l_j - sigma2)")
    ax2.set(xlabel="latent column j", ylabel="decoder column norm |w_j|", xticks=j[:K],
            title="learned column norms vs the PPCA optimum")
    ax2.legend(fontsize=7)


# ------------------------------------------------------------------------------------ 2
@claim("fixed_gamma_pruning", paper="dai2020", kind="theorem",
       statement="dai2020 Sec. 3-4 (category (ii) collapse, after Lucas et al. 2019) and Prop. 2, affine case: with "
                 "the decoder variance gamma fixed, the global optimum keeps exactly the latent directions whose "
                 "eigenvalue l_j exceeds gamma, with decoder column norms sqrt(l_j - gamma), sets q(z_j|x) = N(0, 1) "
                 "on the others, and gamma >= l_1 collapses every latent.",
       paper_figure="Sec. 3 (ii) and 4, Prop. 2: dimensions whose eigenvalue is below a fixed gamma are pruned at the "
                    "global optimum (a statement, no number)")
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
    parts = [
        _part("exactly the directions with l_j > gamma stay active", np.all(res.active_units == res.active_expected[:, None]),
              f"active units per gamma and restart {res.active_units.tolist()} vs #(l_j > gamma) "
              f"{res.active_expected.tolist()}", "equal for every gamma and restart (Var_x E[z_j|x] > 0.01)"),
        _part("active columns have norm sqrt(l_j - gamma)", act_err.max() < 0.03,
              f"max error per gamma {_r(act_err.max(axis=1), 5)}", "within 0.03 for every gamma and restart"),
        _part("pruned columns are zero", pruned.max() < 0.15, f"largest pruned norm per gamma {_r(pruned.max(axis=1), 4)}",
              "below 0.15 (the smallest active norm is about 0.5)"),
        _part("pruned latents follow the prior, q(z_j|x) = N(0, 1)", res.pruned_logvar.max() < 0.01,
              f"max |log s^2| of pruned latents {res.pruned_logvar.max():.2e}", "below 0.01"),
        _part("the trained model reaches the optimum's exact ELBO", np.all((gap > -1e-9) & (gap < 1e-3)),
              f"optimum - ELBO per gamma {_r(gap.max(axis=1), 6)} nats", "in [-1e-9, 1e-3] nats"),
        # Prop. 2, affine case: for gamma >= l_1 the optimum is the collapsed model itself
        _part("gamma >= l_1 collapses every latent (Prop. 2, affine case)",
              np.all(res.active_expected[full] == 0) and np.allclose(res.elbo_optimum[full], res.elbo_collapsed[full],
                                                                     rtol=0, atol=1e-10),
              f"gamma / l_1 = {_r(res.gammas / res.threshold, 3)}; analytic active dims there "
              f"{res.active_expected[full].tolist()}", "the analytic optimum equals the collapsed model (1e-10)"),
    ]
    rows = []
    for i, g in enumerate(res.gammas):
        rows.append(Row(f"gamma = {g:.4f}: active units", res.active_units[i].tolist(), int(res.active_expected[i]),
                        "paper: #{l_j > gamma}"))
        rows += [Row(f"gamma = {g:.4f}: column norm {j + 1} (l_j = {res.eigenvalues[j]:.4f})",
                     _r(res.column_norms[i, :, j], 5), round(float(res.column_norms_expected[i, j]), 5),
                     "paper: sqrt((l_j - gamma)_+)") for j in range(K)]
    passed = all(p.holds for p in parts)
    failed = [p.statement for p in parts if not p.holds]
    fig = ctx.figure("fixed_gamma_pruning", lambda f: _draw_pruning(f, res), panels=(1, 2))
    return Outcome(
        parts=parts, rows=rows,
        rule="theorem: holds when every part holds, for every gamma and restart (tolerances from 30 mini seeds, "
             "see the claim's docstring)",
        choices={"data": f"d = 5 Gaussian with population spectrum {SPECTRUM}, N = {n}; K = 3",
                 "gamma": "geometric midpoints of consecutive sample eigenvalues (3, 2, 1 directions above gamma) "
                          "and 1.5 l_1 (none), so that no eigenvalue is near gamma, where training slows down"},
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
        figures=[fig] if fig else [],
        summary=(f"gamma = {_r(res.gammas, 3)} (l_1 = {res.threshold:.3f}): active units {res.active_units.tolist()} "
                 f"vs analytic {res.active_expected.tolist()} of K = {K}; active norms within "
                 f"{act_err.max():.1e} of sqrt(l_j - gamma), pruned columns <= {pruned.max():.3f}, ELBO within "
                 f"{gap.max():.1e} nats of the optimum" + ("" if passed else f"; FAILED: {'; '.join(failed)}")))


def _draw_pruning(fig, res):
    ax = fig.subplots(1, 1)
    K = res.column_norms.shape[-1]
    g = np.geomspace(res.gammas.min() / 2, res.gammas.max() * 1.5, 300)
    for j in range(K):
        ax.plot(g, np.sqrt(np.clip(res.eigenvalues[j] - g, 0.0, None)), color=f"C{j}",
                label=f"sqrt((l_{j + 1} - gamma)_+), l_{j + 1} = {res.eigenvalues[j]:.3g}")
        for i, gamma in enumerate(res.gammas):
            ax.plot(np.full(res.column_norms.shape[1], gamma), res.column_norms[i, :, j], "o", mfc="none",
                    color=f"C{j}", label="learned column norms (sorted), per restart" if (i == 0 and j == 0) else None)
    ax.axvline(res.threshold, color="0.5", ls=":", label="gamma = l_1 (everything collapses)")
    ax.set(xscale="log", xlabel="fixed decoder variance gamma", ylabel="decoder column norm |w_j|",
           title="learned |w_j| vs sqrt((l_j - gamma)_+) (dai2020 Sec. 4, Prop. 2)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))


# ------------------------------------------------------------------------------------ 3
@claim("soft_threshold_local_minimum", paper="dai2020", kind="theorem",
       statement="dai2020 Proposition 1: with a soft-threshold decoder pi_a(Wz) + b (a > 0, learned gamma, per-point "
                 "encoder), the collapsed point q = p(z), p(x) = N(xbar, gammabar I) is a local minimum of Eq. 5 "
                 "(training started next to it returns to its energy; with a = 0, where it is a saddle, the same "
                 "starts escape), and not the global one: on data admitting perfect reconstruction a path reaches "
                 "energies far below it (training from an informed start ends far below it).",
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
    kept = rel["collapsed"] / excess
    parts = [
        _part(f"a = {alpha}: starts next to the collapsed point return to its energy (a local minimum)",
              np.all((rel["collapsed"] >= -1e-6) & (rel["collapsed"] <= 0.01 * excess)),
              f"E_T - E_0 per start {_r(rel['collapsed'], 6)} (share of the perturbation's excess left "
              f"{_r(kept, 5)})", "E_0 - 1e-6 <= E_T <= E_0 + 0.01 (E_start - E_0) in every start"),
        _part("a = 0 (affine decoder, a saddle there): the same starts escape", np.all(rel["affine"] < -n),
              f"E_T - E_0 per start {_r(rel['affine'], 1)}", f"E_T < E_0 - N (N = {n}) in every start"),
        _part(f"a = {alpha}: the collapsed point is not the global minimum (informed starts end far below)",
              np.all(rel["informed"] < -n), f"E_T - E_0 per start {_r(rel['informed'], 1)}",
              f"E_T < E_0 - N (N = {n}) in every start"),
        _part("refvae's loss equals Eq. 5's energy (E = 2 N loss - N (d log 2 pi - K))", np.all(np.abs(z) < 5),
              f"z-scores of the Monte Carlo energy at the informed starts {_r(z, 2)}", "|z| < 5 in every start"),
    ]
    rows = [Row(f"a = {alpha}, start next to the collapsed point: E_T - E_0", _r(rel["collapsed"], 6), 0.0,
                "paper: 0 (a local minimum pulls the energy back to E_0)"),
            Row("a = 0, same starts: E_T - E_0", _r(rel["affine"], 2), f"< -{n}", "paper: escapes (a saddle)"),
            Row(f"a = {alpha}, informed starts: E_T - E_0", _r(rel["informed"], 2), f"< -{n}",
                "paper: a perfect-reconstruction global minimum exists (E -> -infinity as gamma -> 0)")]
    passed = all(p.holds for p in parts)
    failed = [p.statement for p in parts if not p.holds]
    fig = ctx.figure("soft_threshold_local_minimum", lambda f: _draw_soft_threshold(f, x, alpha, K, rel, n))
    return Outcome(
        parts=parts, rows=rows,
        rule="theorem: holds when every part holds, in every start (tolerances measured over 40 seeds, see the "
             "claim's docstring)",
        choices={"data": f"N = {n} points on one axis of R^3 (dai2020's perfect-reconstruction case), K = {K}, "
                         f"a = {alpha}",
                 "training": f"plain gradient descent at 0.02 from every parameter moved by {delta} times a standard "
                             "normal draw; Adam's normalised steps can walk out of the flat basin (1 of 48 runs)"},
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
        figures=[fig] if fig else [],
        summary=(f"E_0 = {E0:.3f} (N = {n}); a = {alpha}: perturbed collapsed starts (E - E_0 = "
                 f"{excess.min():.2f}..{excess.max():.2f}) end at E - E_0 in [{rel['collapsed'].min():.1e}, "
                 f"{rel['collapsed'].max():.1e}] (at most {100 * kept.max():.2g}% of the excess left) after "
                 f"{int(res.steps['collapsed'][0])} steps; a = 0 from the same starts: below E_0 - {n} in "
                 f"{int(np.sum(rel['affine'] < -n))}/{len(rel['affine'])} (median {int(np.median(res.steps['affine']))} steps); "
                 f"informed starts (E - E_0 = {np.mean(res.energy_start['informed'] - E0):+.1f}): below in "
                 f"{int(np.sum(rel['informed'] < -n))}/{len(rel['informed'])}; loss-to-energy z-scores within +-{np.abs(z).max():.1f}"
                 + ("" if passed else f"; FAILED: {'; '.join(failed)}")))


def _draw_soft_threshold(fig, x, alpha, K, rel, n):
    axes = fig.subplots(1, 3)
    grid = np.linspace(-1.5, 1.5, 61)
    for ax, a in zip(axes[:2], (alpha, 0.0)):
        E = collapse.soft_threshold_slice(x, a, K, grid, grid) / n
        # levels symmetric in log scale about 0: the shallow basin and the far walls both show
        step = np.geomspace(1e-3, max(float(np.abs(E).max()), 2e-3), 9)
        im = ax.contourf(grid, grid, E, levels=np.concatenate([-step[::-1], step]), cmap="RdBu_r", extend="both")
        ax.contour(grid, grid, E, levels=[0.0], colors="k", linewidths=0.8)
        ax.plot([0], [0], "k*", ms=10, label="collapsed point")
        ax.set(xlabel="decoder gain c (W = c e1 e1^T)", ylabel="encoder mean coupling m",
               title=f"(E - E_0) / N on a slice, a = {a:g} (dai2020 Eq. 5)")
        ax.legend(fontsize=7, loc="lower left")
        fig.colorbar(im, ax=ax)
    ax = axes[2]
    for k, (group, label) in enumerate((("collapsed", f"a = {alpha:g}, next to collapse"),
                                        ("affine", "a = 0, same starts"), ("informed", f"a = {alpha:g}, informed"))):
        v = np.asarray(rel[group]) / n
        ax.plot(np.full(v.shape, k), v, "o", mfc="none", color=f"C{k}")
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.set_xticks(range(3), ["a>0 collapsed", "a=0 same", "a>0 informed"], fontsize=7)
    ax.set(ylabel="(E_T - E_0) / N after training, per start", title="where training ends (Prop. 1)")


# ------------------------------------------------------------------------------------ 4, 5
#: One memo of depth runs per (profile, seed, backend): ``ae_vs_vae_depth`` and ``kl_warmstart_no_fix``
#: train the same AE and VAE at their shared depths (same data, seeds and settings), so the second
#: claim run in one process reuses the first's models instead of training them again.
_DEPTH_RUNS = {}
#: a run whose error at the end is below its error at 0.8 T by more than this fraction is still improving
IMPROVING = 0.01


def _depth_setup(ctx):
    """Data, sizes and the shared run memo of the depth claims (dai2020 Sec. 6, at CPU scale)."""
    n = ctx.scale(300, 1000, 5000)
    x = collapse.manifold_data(n, ctx.rng("dai2020_depth", "data"), data_dim=64, intrinsic_dim=8)
    sizes = dict(latent_dim=8, width=ctx.scale(16, 32, 128), steps=ctx.scale(300, 2000, 20000),
                 restarts=ctx.scale(2, 3, 5), batch_size=64, lr=ctx.scale(3e-3, 3e-3, 1e-3), activation="relu",
                 runs=_DEPTH_RUNS.setdefault((ctx.profile, ctx.seed, ctx.backend), {}))
    return x, sizes


def _depth_choices(x, sizes, res):
    return {"data": f"a stand-in for Fashion-MNIST (784-d images; not at CPU scale): {x.shape[0]} points of "
                    f"refvae.experiments.collapse.manifold_data (d = {x.shape[1]}, a random 2-layer tanh network of an "
                    f"8-dimensional latent, noise variance 0.01)",
            "networks": f"ReLU MLPs of width {sizes['width']} (the paper: 512), K = {sizes['latent_dim']}, the AE "
                        "and the VAEs of one depth from the same initial networks (restart r of every kind)",
            "training": f"Adam {sizes['lr']:g}, batch {sizes['batch_size']}, {sizes['steps']} steps, "
                        f"{sizes['restarts']} restarts (the paper does not give its budget); the error is recorded at "
                        f"{list(res.checkpoints)}",
            "budget dependence (measured, width 32, 3 restarts, seed 0)":
                "AE errors at depths 1, 2, 4, 8 after 1500 / 6000 Adam-1e-3 steps: 0.095, 0.093, 0.111, 0.219 / "
                "0.086, 0.083, 0.081, 0.146 (depth 8 still falling 8% over the last fifth); after 2000 "
                "Adam-3e-3 steps: 0.086, 0.083, 0.088, 0.176. A larger budget shrinks the deep AE's excess "
                "(2.3x -> 1.8x the best error) and moves the best depth deeper (2 -> 4): much of the deep-AE "
                "penalty at a CPU budget is slow training"}


def _paired_part(statement, a, b, evidence_prefix, *, higher_is_better=True):
    cmp = rules.paired(a, b, higher_is_better=higher_is_better)
    return Part(statement, cmp.holds, f"{evidence_prefix}; per-restart differences {rules.fmt_values(cmp.diffs, 4)}",
                str(cmp))


def _improving(res, kind):
    """(D, R) bool: still improving at the end (error at T below the error at 0.8 T by > ``IMPROVING``)."""
    log_trace = np.log(res.error_trace[kind])                                      # (D, C, R)
    return np.array([rules.still_improving(t, tol=-np.log1p(-IMPROVING), higher_is_better=False)
                     for t in log_trace])


def _improvement(res, kind):
    """(D, R): the relative fall of the error between 0.8 T and T (the checkpoint before the last)."""
    t = res.error_trace[kind]
    return 1.0 - t[:, -1] / t[:, -2]


def depth_parts(res):
    """The parts of dai2020's depth sentence judged on a ``collapse.DepthResult`` with kinds "ae" and "vae".

    Returns (parts, best, improving, fall): the four ``Part``s of ``ae_vs_vae_depth`` (see its
    docstring), the index of the depth with the lowest mean AE error, and per depth and restart (D, R)
    whether the AE is still improving and by how much its error fell over the last fifth.
    """
    depths = res.depths
    ae, vae = res.errors["ae"], res.errors["vae"]                                   # (D, R)
    D = len(depths)
    best = int(np.argmin(ae.mean(axis=1)))
    improving = _improving(res, "ae")
    fall = _improvement(res, "ae")
    parts = []
    if best == 0:
        parts.append(Part("the AE's error first decreases with depth (capacity)", False,
                          f"the AE's mean error is lowest at the shallowest depth {depths[0]}: {_r(ae.mean(axis=1))}",
                          "paired per restart against the depth with the lowest mean AE error"))
    else:
        parts.append(_paired_part("the AE's error first decreases with depth (capacity)", ae[0], ae[best],
                                  f"AE error at depth {depths[0]} {_r(ae[0])} vs at depth {depths[best]} "
                                  f"(lowest mean) {_r(ae[best])}"))
    if best == D - 1:
        parts.append(Part("then increases once the networks are too deep", False,
                          f"the AE's mean error is lowest at the deepest depth {depths[-1]}: {_r(ae.mean(axis=1))}",
                          "paired per restart against the depth with the lowest mean AE error"))
    else:
        parts.append(_paired_part("then increases once the networks are too deep", ae[-1], ae[best],
                                  f"AE error at depth {depths[-1]} {_r(ae[-1])} vs at depth {depths[best]} "
                                  f"{_r(ae[best])}"))
    rise = ae[-1] - ae[best]
    share = np.where(rise > 0, (res.error_trace["ae"][-1, -2] - ae[-1]) / np.where(rise > 0, rise, 1.0), np.nan)
    parts.append(Part("the deep AE's higher error is a plateau (a bad stationary point), not slower training",
                      not np.any(improving[-1]),
                      f"depth {depths[-1]}: error fell {_r(100 * fall[-1], 1)}% between 0.8 T and T per restart "
                      f"(still improving in {int(improving[-1].sum())} of {len(improving[-1])}); that fall is "
                      f"{_r(100 * share, 0)}% of its excess over depth {depths[best]}",
                      f"rules.still_improving: not improving by more than {IMPROVING:.0%} between 0.8 T and T in any "
                      "restart"))
    per_depth = [rules.paired(vae[i], ae[i]) for i in range(D)]
    parts.append(Part("the VAE's reconstruction error is always worse than the AE's", all(c.holds for c in per_depth),
                      "; ".join(f"depth {L}: {c.wins} of {c.n}" for L, c in zip(depths, per_depth)),
                      "paired per restart (VAE error higher in every restart) at every depth"))
    return parts, best, improving, fall


@claim("ae_vs_vae_depth", paper="dai2020", kind="empirical",
       statement="dai2020 Sec. 6 on Fig. 1 (top): \"As the depth of the network increases, the reconstruction error of "
                 "the AE model first decreases because of the increased capacity. However, when the network becomes "
                 "too deep, the error starts to increase, indicating convergence to a bad local minima (or at least "
                 "stable stationary point/plateau) that is unrelated to KL-divergence regularization. The "
                 "reconstruction error of a VAE model is always worse than that of the corresponding AE model.\"",
       paper_figure="Fig. 1 (top): fully connected AE and VAE with 1, 2, 4, 6, 8, 10 hidden layers of 512 ReLU "
                    "units on Fashion-MNIST (curves only; repeated trials and error bars in the supplement, which "
                    "the text does not include)")
def ae_vs_vae_depth(ctx):
    """Synthetic stand-in for Fashion-MNIST (see the choices), plain ReLU MLPs, a fixed step budget; the
    full profile adds residual AEs (Fig. 1 bottom). Each part of the paper's sentence is judged restart by
    restart (``rules.paired``; restart r of the AE and the VAE at one depth share their initial networks):

    1. first decreases: the AE error at the shallowest depth is above the error at the depth d* where the
       AE's mean error is lowest (fails when d* is the shallowest);
    2. then increases: the AE error at the deepest depth is above the error at d*;
    3. a plateau, not slower training: the deepest AE's error is not still improving (``rules.still_improving``
       on the error recorded at 5 checkpoints: at T more than ``IMPROVING`` below its value at 0.8 T);
    4. the VAE's error is above the AE's at every depth.
    """
    x, sizes = _depth_setup(ctx)
    depths = ctx.scale((1, 3), (1, 2, 8), (1, 2, 4, 6, 8, 10))
    residual = ctx.profile == "full"
    res = collapse.depth_experiment(x, depths, kinds=("ae", "vae"), seed=ctx.rng("dai2020_depth", "train"),
                                    progress=lambda f: ctx.progress(f * (0.7 if residual else 1.0),
                                                                    "training AEs and VAEs"), **sizes)
    ae, vae = res.errors["ae"], res.errors["vae"]                                   # (D, R)
    parts, best, improving, fall = depth_parts(res)
    rows = []
    for i, L in enumerate(depths):
        flag = [r for r in range(ae.shape[1]) if improving[i, r]]
        rows.append(Row(f"depth {L}: AE reconstruction error per coordinate", _r(ae[i], 5), None,
                        f"still improving (> {IMPROVING:.0%} over the last fifth) in restarts {flag}" if flag else ""))
        vflag = [r for r in range(vae.shape[1]) if _improving(res, "vae")[i, r]]
        rows.append(Row(f"depth {L}: VAE reconstruction error per coordinate", _r(vae[i], 5), None,
                        (f"still improving in restarts {vflag}; " if vflag else "")
                        + f"active units {res.active_units['vae'][i].tolist()} of {res.latent_dim}"))
    measured = {"depths": list(depths), "data_variance": round(res.data_variance, 4),
                "ae_error": _r(ae), "vae_error": _r(vae),
                "ae_error_trace_deepest": _r(res.error_trace["ae"][-1]), "checkpoints": list(res.checkpoints),
                "ae_still_improving": improving.tolist(), "ae_fall_last_fifth": _r(fall, 4),
                "vae_active_units": res.active_units["vae"].tolist(),
                "vae_sigma_near_one": _r(res.sigma_near_one["vae"], 3), "vae_gamma": _r(res.sigma2["vae"])}
    spread = {}
    extra = ""
    if residual:
        rres = collapse.depth_experiment(x, depths, kinds=("ae",), residual=True,
                                         seed=ctx.rng("dai2020_depth", "residual"),
                                         progress=lambda f: ctx.progress(0.7 + 0.3 * f, "training residual AEs"),
                                         **sizes)
        measured["residual_ae_error"] = _r(rres.errors["ae"])
        extra = f"; residual AE errors (mean) {_r(rres.errors['ae'].mean(axis=1))}"
    fig = ctx.figure("ae_vs_vae_depth", lambda f: _draw_depth(f, res, ("ae", "vae")))
    holds = [p.holds for p in parts]
    return Outcome(
        parts=parts, rows=rows, measured=measured, spread=spread,
        rule="each part restart by restart (refvae.verify.rules.paired: every restart below 5 restarts, a one-sided "
             "sign test from 5); reproduced when every part holds, partly reproduced (naming the parts) otherwise",
        choices=_depth_choices(x, sizes, res),
        paper_value="AE error falls, then rises with depth (a plateau); VAE error > AE error at every depth (Fig. 1 top, "
                    "curves only)",
        figures=[fig] if fig else [],
        summary=(f"depths {list(depths)} ({res.steps} steps, {ae.shape[1]} restarts): AE error (mean) "
                 f"{_r(ae.mean(axis=1))}, VAE {_r(vae.mean(axis=1))} (collapsed: {res.data_variance:.3f}); "
                 + "; ".join(f"{p.statement}: {'yes' if ok else 'NO'}" for p, ok in zip(parts, holds))
                 + f"; deepest AE still improving in {int(improving[-1].sum())} of {improving.shape[1]} restarts" + extra))


def warmstart_parts(res):
    """The two parts of dai2020's warm-start sentence on a ``collapse.DepthResult`` with kinds "ae", "vae" and
    "vae_warm" (the deepest depth last): (parts, the warm-vs-plain ``rules.paired`` comparison at the deepest)."""
    E, depths = res.errors, res.depths
    helps = rules.paired(E["vae"][-1], E["vae_warm"][-1])
    above = [rules.paired(E["vae_warm"][i], E["ae"][i]) for i in range(len(depths))]
    parts = [Part(f"KL warm-start improves the VAE's reconstruction (at depth {depths[-1]}, the deepest)",
                  helps.holds, f"VAE {_r(E['vae'][-1])} vs warm-started {_r(E['vae_warm'][-1])}", str(helps)),
             Part("the warm-started VAE is still worse than the AE", all(c.holds for c in above),
                  "; ".join(f"depth {L}: warm {_r(E['vae_warm'][i])} vs AE {_r(E['ae'][i])}"
                            for i, L in enumerate(depths)),
                  "paired per restart (warm-started error higher in every restart) at every depth")]
    return parts, helps


@claim("kl_warmstart_no_fix", paper="dai2020", kind="empirical",
       statement="dai2020 Sec. 6 on Fig. 1 (top): \"while KL warm-start/annealing can help to improve the VAE "
                 "reconstructions to some extent, performance is still worse than the AE as expected\" (and Sec. 5.2: "
                 "warm-start cannot lower the implicit gamma the AE's error sets).",
       paper_figure="Fig. 1 (top): VAE with KL warm-start beside the AE and the VAE (curves only, no numbers)")
def kl_warmstart_no_fix(ctx):
    """Same data, networks and runs as ``ae_vs_vae_depth`` (its AE and VAE at the shared depths are reused
    within one process), at a shallow and a deep depth; the VAE with beta = linear_ramp(0, 1, steps / 2)
    starts from the same networks as the AE and the VAE (restart r of each).

    Parts, restart by restart (``rules.paired``): (1) warm-start improves the VAE's reconstruction at the
    deep depth, where the plain VAE collapses; (2) the warm-started VAE stays worse than the AE at every
    depth. Active units and the share of sigma_z near 1 (Fig. 2's sign of collapse) are reported alongside.
    """
    x, sizes = _depth_setup(ctx)
    depths = ctx.scale((1, 3), (2, 8), (2, 10))
    res = collapse.depth_experiment(x, depths, kinds=("ae", "vae", "vae_warm"),
                                    seed=ctx.rng("dai2020_depth", "train"),
                                    progress=lambda f: ctx.progress(f, "training AE, VAE, warm-started VAE"), **sizes)
    E = res.errors
    d0, d1 = depths
    parts, helps = warmstart_parts(res)
    units = {k: res.active_units[k] for k in ("vae", "vae_warm")}
    near = {k: res.sigma_near_one[k] for k in ("vae", "vae_warm")}
    rows = []
    for i, L in enumerate(depths):
        rows += [Row(f"depth {L}: {label} reconstruction error", _r(E[k][i], 5), None,
                     f"active units {units[k][i].tolist()}" if k != "ae" else "")
                 for k, label in (("ae", "AE"), ("vae", "VAE"), ("vae_warm", "warm-started VAE"))]
    measured = {"depths": list(depths), "data_variance": round(res.data_variance, 4),
                "ae_error": _r(E["ae"]), "vae_error": _r(E["vae"]), "vae_warm_error": _r(E["vae_warm"]),
                "vae_active_units": units["vae"].tolist(), "vae_warm_active_units": units["vae_warm"].tolist(),
                "vae_sigma_near_one": _r(near["vae"], 3), "vae_warm_sigma_near_one": _r(near["vae_warm"], 3)}
    fig = ctx.figure("kl_warmstart_no_fix", lambda f: _draw_depth(f, res, res.kinds))
    choices = _depth_choices(x, sizes, res)
    choices["warm-start"] = (f"beta ramped linearly from 0 to 1 over the first half of training "
                             f"({sizes['steps'] // 2} steps; the paper does not give its schedule)")
    return Outcome(
        parts=parts, rows=rows, measured=measured, figures=[fig] if fig else [],
        rule="each part restart by restart (refvae.verify.rules.paired); reproduced when both hold",
        choices=choices,
        paper_value="warm-start improves the VAE somewhat; still worse than the AE (Fig. 1 top, curves only)",
        summary=(f"depth {d1}: warm-started VAE error {_r(E['vae_warm'][1])} vs {_r(E['vae'][1])} without warm-start "
                 f"({helps}) and AE {_r(E['ae'][1])}; depth {d0}: warm {_r(E['vae_warm'][0])}, VAE {_r(E['vae'][0])}, "
                 f"AE {_r(E['ae'][0])}. Active units at depth {d1}, warm vs plain: {units['vae_warm'][1].tolist()} vs "
                 f"{units['vae'][1].tolist()} of {res.latent_dim}; sigma_z > 0.9 for "
                 f"{_r(100 * near['vae_warm'][1], 0)}% vs {_r(100 * near['vae'][1], 0)}%"))


def _draw_depth(fig, res, kinds):
    ax1, ax2 = fig.subplots(1, 2)
    names = {"ae": "AE", "vae": "VAE", "vae_warm": "VAE, KL warm-start"}
    for n, k in enumerate(kinds):
        err = res.errors[k]                                                     # (D, R)
        for r in range(err.shape[1]):
            ax1.plot(res.depths, err[:, r], "-", color=f"C{n}", lw=0.8, alpha=0.6, marker="o", mfc="none")
        ax1.plot(res.depths, err.mean(axis=1), "-", color=f"C{n}", lw=2.2, label=f"{names[k]} (thin: per restart)")
    ax1.axhline(res.data_variance, color="gray", ls=":", label="collapsed reconstruction (x = xbar)")
    ax1.set(xlabel="hidden layers per network", ylabel="reconstruction error per coordinate", yscale="log",
            xticks=list(res.depths), title="reconstruction error vs depth (dai2020 Fig. 1 top)")
    ax1.legend(fontsize=7, loc="best")
    steps = np.asarray(res.checkpoints)
    for n, k in enumerate(kinds):
        tr = res.error_trace[k][-1]                                             # deepest depth, (C, R)
        for r in range(tr.shape[1]):
            ax2.plot(steps, tr[:, r], "-o", color=f"C{n}", ms=3, lw=0.8,
                     label=f"{names[k]}, depth {res.depths[-1]}" if r == 0 else None)
    ax2.set(xlabel="training step", ylabel="reconstruction error per coordinate", yscale="log",
            title="deepest networks during training: still falling = slow training, flat = plateau")
    ax2.legend(fontsize=7)

"""Functional collapse of the M2 VAE (yacoby2021 Sec. 5.2): which objective prefers it, exactly.

yacoby2021 argues that on Discrete Semi-Circle (both classes on one semicircle, with different
densities; ``refvae.datasets.discrete_semicircle``) the unlabelled posterior p(z|x) =
sum_y p(y, z|x) is multimodal, so a mean-field Gaussian "for the unlabeled portion of the
semi-supervised objective (U in Equation 5)" makes the M2 objective prefer a decoder that ignores
y ("functional collapse": p(x|y=0) = p(x|y=1) = p(x)) at small gamma. Whether that holds depends
on which Gaussian family U uses (``refvae.m2.M2``'s ``unlabelled_posterior``): q(z|x, y) per
class, as Kingma et al., or one q(z|x) shared by the classes.

``exact_comparison`` settles it without training: it compares, on one sample of the data, the
objective J of Eq. 5 (alpha = 0, per point) of two decoders with the same p(x),

- the ground truth f(z, y) = circle(pi Phi(z)^(c_y)), and
- the collapsed decoder g(z) = circle(pi F^-1(Phi(z))), F(a) = sum_y p(y) a^(1/c_y) the CDF of
  the angle / pi under p(x) (``collapsed_angle``): it ignores y and its p(x) is the truth's,

each with its ELBO-optimal Gaussian q per point (``optimal_gaussian``: the best q among all
Gaussians, which an amortised encoder can at most reach), and log p(x|y) by quadrature
(``refvae.metrics.quadrature``). Per point, with L*(x, y) the best labelled bound of class y:

- conditional family: U*(x) = log sum_y exp L*(x, y) (q(y|x) proportional to exp L*);
- shared family: U*(x) = max over q = N(m, s^2) of log sum_y p(y) exp(E_q log p(x|y, z))
  - KL(q || p(z)) (q(y|x) optimal for that q);
- collapsed decoder, either family: U* = ELBO*(x), L*(x, y) = ELBO*(x) + log p(y).

J(gamma) / N = (sum_unlabelled U* + gamma sum_labelled L*(x, y)) / N is linear in gamma, so
truth and collapse swap order at most once, at ``crossing``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import log_ndtr, logsumexp

from .. import _checks, datasets
from ..backend import asarray, make_rng, to_host
from ..layers import Layer, Sequential, mlp
from ..m2 import M2, UNLABELLED_POSTERIORS
from ..metrics import quadrature
from ..metrics.two_sample import smooth_knn_statistic
from ..train import check_stages, fit_stages
from ..objectives import take_restart
from .failure_modes import _n_restarts, _progress, quadrature_log_likelihood
from .jtex import KNN_ALPHAS
from .noise_modes import mc_elbo

__all__ = ["collapsed_angle", "semicircle_decoder", "optimal_gaussian", "ExactComparison", "exact_comparison",
           "LabelGate", "make_m2", "gated", "ungated", "angle_distance", "pair_knn", "conditional_ll",
           "RunResult", "CollapseResult", "run_label", "collapse_experiment"]


# ==================================================================================== collapsed decoder

def _log_cdf_mix(v, log_probs, inv_exponents):
    """log F(e^v) = log sum_y p(y) e^(v / c_y) and its derivative in v."""
    t = log_probs[:, None] + inv_exponents[:, None] * v[None]                # (C, n)
    lf = logsumexp(t, axis=0)
    return lf, (np.exp(t - lf) * inv_exponents[:, None]).sum(axis=0)


def collapsed_angle(z, exponents, class_probs):
    """pi F^-1(Phi(z)): the angle of the collapsed Discrete Semi-Circle decoder.

    The truth's angle / pi for class y is Phi(z)^(c_y), i.e. U^(c_y) with U uniform, of CDF
    a^(1/c_y); under p(x) the angle / pi has the mixture CDF F(a) = sum_y p(y) a^(1/c_y), so
    g(z) = circle(pi F^-1(Phi(z))) pushes N(0, 1) forward to the same angle law as the truth and,
    with the same noise, has the same p(x), whatever y.

    Solved in v = log a: G(v) = log F(e^v) - log Phi(z) is increasing and convex with slope in
    [min 1/c, max 1/c], so Newton's method from a bisection start converges to rounding.

    Parameters
    ----------
    z : array (...,); exponents, class_probs : (C,) the truth's c_y and p(y).

    Returns
    -------
    ndarray like z, the angle in (0, pi).
    """
    z = np.asarray(z, dtype=float)
    inv = 1.0 / np.asarray(exponents, dtype=float)
    lp = np.log(np.asarray(class_probs, dtype=float))
    target = log_ndtr(z.ravel())
    # bisection on v to 1e-3, then Newton (quadratic) to rounding
    lo = np.minimum(target * np.max(1.0 / inv), target * np.min(1.0 / inv)) - 1.0      # G(lo) < 0
    hi = np.zeros_like(target)                                                         # G(0) = -log Phi >= 0
    for _ in range(int(math.ceil(math.log2(max(1.0, np.max(hi - lo)) / 1e-3)))):
        mid = 0.5 * (lo + hi)
        below = _log_cdf_mix(mid, lp, inv)[0] < target
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    v = hi
    for _ in range(6):
        g, dg = _log_cdf_mix(v, lp, inv)
        v = np.minimum(v - (g - target) / dg, 0.0)
    return (math.pi * np.exp(v)).reshape(z.shape)


def semicircle_decoder(truth, y=None):
    """z (G, 1) -> mean (G, 2) of the truth's class ``y``, or of the collapsed decoder (y None)."""
    if not truth.is_conditional or "exponents" not in truth.constants:
        raise ValueError("semicircle_decoder needs the Discrete Semi-Circle ground truth "
                         "(refvae.datasets.discrete_semicircle)")
    exponents, probs = np.asarray(truth.constants["exponents"]), np.asarray(truth.class_probs)
    if y is None:
        def decode(z):
            a = collapsed_angle(np.asarray(z)[..., 0], exponents, probs)
            return np.stack([np.cos(a), np.sin(a)], axis=-1)
        return decode
    y = _checks.integer("y", y, min_value=0)
    if y >= len(probs):
        raise ValueError(f"y must be a class index in 0..{len(probs) - 1}, got {y}")
    return lambda z: truth.decode(np.asarray(z), y)


# ==================================================================================== optimal Gaussian q

def _kl_terms(m, ls):
    """KL(N(m, e^(2 ls)) || N(0, 1)), its gradient and Hessian in (m, ls)."""
    s2 = np.exp(2 * ls)
    kl = 0.5 * (m * m + s2 - 1.0) - ls
    grad = np.stack([m, s2 - 1.0], axis=-1)
    hess = np.zeros(m.shape + (2, 2))
    hess[..., 0, 0], hess[..., 1, 1] = 1.0, 2.0 * s2
    return kl, grad, hess


def _expectations(tables, rows, z, m, ls, derivatives=True):
    """E_q h, its gradient and Hessian in (m, ls) for q = N(m, e^(2 ls)) on the fixed nodes z.

    The nodes' weights are the Gaussian density normalised over the nodes (a uniform grid,
    trapezoid rule), so E_q h is an exponential tilting of h: dE/da = Cov(h, phi_a) and
    d2E/dadb = Cov(h, phi_ab) + E[(h - Eh)(phi_a - E phi_a)(phi_b - E phi_b)], with
    log w = phi = -u^2 / 2, u = (z - m) / s: phi_m = u / s, phi_ls = u^2, phi_mm = -1 / s^2,
    phi_m,ls = -2 u / s, phi_ls,ls = -2 u^2.

    tables : list of (N, G) arrays h(x_n, z_g); rows : (P,) the point of each problem.
    Returns lists (per table) of E (P,), grad (P, 2), hess (P, 2, 2) (E alone without
    ``derivatives``).
    """
    s = np.exp(ls)
    u = (z[None, :] - m[:, None]) / s[:, None]                                   # (P, G)
    logw = -0.5 * u * u
    w = np.exp(logw - logw.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    if not derivatives:
        return [((w * h[rows]).sum(axis=1), None, None) for h in tables]
    A = u / s[:, None]
    A -= (w * A).sum(axis=1, keepdims=True)
    B = u * u
    B -= (w * B).sum(axis=1, keepdims=True)
    out = []
    for h in tables:
        hv = h[rows]
        e = (w * hv).sum(axis=1)
        wh = w * (hv - e[:, None])
        gm, gl = (wh * A).sum(axis=1), (wh * B).sum(axis=1)
        hess = np.empty(m.shape + (2, 2))
        hess[:, 0, 0] = (wh * A * A).sum(axis=1)
        hess[:, 0, 1] = hess[:, 1, 0] = -2.0 * gm + (wh * A * B).sum(axis=1)
        hess[:, 1, 1] = -2.0 * gl + (wh * B * B).sum(axis=1)
        out.append((e, np.stack([gm, gl], axis=1), hess))
    return out


def _objective(tables, offsets, rows, z, m, ls, derivatives=True):
    """log sum_k exp(offset_k + E_q h_k) - KL(q || p(z)) (one table: the ELBO plus its offset)."""
    parts = _expectations(tables, rows, z, m, ls, derivatives)
    kl, gkl, hkl = _kl_terms(m, ls)
    t = np.stack([o + e for o, (e, _, _) in zip(offsets, parts)])              # (T, P)
    value = logsumexp(t, axis=0) - kl
    if not derivatives:
        return value
    pi = np.exp(t - logsumexp(t, axis=0))                                      # (T, P)
    grads = np.stack([g for _, g, _ in parts])                                 # (T, P, 2)
    gbar = np.einsum("tp,tpi->pi", pi, grads)
    hess = (np.einsum("tp,tpij->pij", pi, np.stack([h for _, _, h in parts]))
            + np.einsum("tp,tpi,tpj->pij", pi, grads, grads) - gbar[:, :, None] * gbar[:, None, :])
    return value, gbar - gkl, hess - hkl


def optimal_gaussian(tables, offsets, z, starts_m, starts_ls, rows, *, max_iter=100, tol=1e-10):
    """Maximise F(m, ls) = log sum_k exp(offset_k + E_q h_k) - KL(q || N(0, 1)) over q = N(m, e^(2 ls)).

    One table is the ELBO (up to its offset); several, the shared-q unlabelled bound with
    q(y|x) optimal. Damped Newton with backtracking from each start, all problems at once.

    Parameters
    ----------
    tables : list of (N, G) arrays, h_k(x_n, z_g) = log p(x_n | z_g) of decoder k on the nodes z (G,)
        (a uniform grid).
    offsets : list of floats (e.g. log p(y)).
    starts_m, starts_ls, rows : (P,) starting moments and the point each problem belongs to.

    Returns
    -------
    m, ls, value : (P,) the optimum reached from each start (ascent never decreases F).
    """
    m, ls = np.array(starts_m, dtype=float), np.array(starts_ls, dtype=float)
    value, grad, hess = _objective(tables, offsets, rows, z, m, ls)
    active = np.ones(m.shape, dtype=bool)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        g, H = grad[idx], hess[idx]
        # make the Hessian negative definite (a shift by its largest eigenvalue where needed)
        top = np.linalg.eigvalsh(H)[:, -1]
        shift = np.where(top > -1e-6, top + 1e-3 + np.abs(g).sum(axis=1), 0.0)
        Hn = H - shift[:, None, None] * np.eye(2)
        step = -np.linalg.solve(Hn, g[..., None])[..., 0]
        step /= np.maximum(1.0, np.linalg.norm(step, axis=1) / 0.5)[:, None]     # at most 0.5 per iteration
        t = np.ones(idx.size)
        pending = np.ones(idx.size, dtype=bool)
        for _ in range(40):
            j = np.flatnonzero(pending)
            mj, lj = m[idx[j]] + t[j] * step[j, 0], ls[idx[j]] + t[j] * step[j, 1]
            vj = _objective(tables, offsets, rows[idx[j]], z, mj, lj, derivatives=False)
            ok = vj >= value[idx[j]] - 1e-13
            k = idx[j[ok]]
            m[k], ls[k] = mj[ok], lj[ok]
            pending[j[ok]] = False
            t[j[~ok]] *= 0.5
            if not pending.any():
                break
        moved = np.abs(t[:, None] * step).max(axis=1) * ~pending
        v, gr, he = _objective(tables, offsets, rows[idx], z, m[idx], ls[idx])
        value[idx], grad[idx], hess[idx] = v, gr, he
        active[idx] = (moved > tol) & (np.abs(gr).max(axis=1) > tol)
    return m, ls, value


def _log_lik_table(x, decode, z, sigma2):
    """h(x_n, z_g) = log N(x_n; f(z_g), sigma2 I), (N, G)."""
    f = decode(z[:, None])                                                      # (G, d)
    r2 = ((x[:, None, :] - f[None]) ** 2).sum(axis=-1)
    return -0.5 * r2 / sigma2 - 0.5 * x.shape[1] * math.log(2 * math.pi * sigma2)


def _best_q(tables, offsets, z, n, starts_per_point=2):
    """The best Gaussian per point: a coarse (m, s) scan on every 2nd node, then Newton from the
    ``starts_per_point`` best scanned candidates at least 0.5 apart in m."""
    zc = z[::2]
    cm = zc[np.abs(zc) <= 6.0][::4]                                             # candidate means, step 0.16
    cs = np.geomspace(0.04, 2.0, 9)
    M, S = np.meshgrid(cm, cs, indexing="ij")
    M, LS = M.ravel(), np.log(S.ravel())
    w = np.exp(-0.5 * ((zc[None, :] - M[:, None]) / np.exp(LS)[:, None]) ** 2)  # (Q, Gc)
    w /= w.sum(axis=1, keepdims=True)
    t = np.stack([o + tab[:, ::2] @ w.T for o, tab in zip(offsets, tables)])    # (T, N, Q)
    scan = logsumexp(t, axis=0) - (0.5 * (M * M + np.exp(2 * LS) - 1.0) - LS)[None]
    order = np.argsort(-scan, axis=1)
    sm, sl, rows = [], [], []
    for i in range(n):
        picked = []
        for q in order[i]:
            if all(abs(M[q] - M[p]) >= 0.5 for p in picked):
                picked.append(q)
                if len(picked) == starts_per_point:
                    break
        sm += [M[p] for p in picked]
        sl += [LS[p] for p in picked]
        rows += [i] * len(picked)
    rows = np.asarray(rows)
    m, ls, value = optimal_gaussian(tables, offsets, z, np.asarray(sm), np.asarray(sl), rows)
    best = np.full(n, -np.inf)
    bm, bl = np.zeros(n), np.zeros(n)
    for k in range(rows.size):
        if value[k] > best[rows[k]]:
            best[rows[k]], bm[rows[k]], bl[rows[k]] = value[k], m[k], ls[k]
    return bm, bl, best


# ==================================================================================== the comparison

@dataclass
class ExactComparison:
    """``exact_comparison``'s numbers (per point, all constants included).

    gammas : (G,) the gammas of the sweep.
    objective : {"conditional", "shared"} -> {"truth", "collapsed"} -> (G,) J(gamma) / N.
    crossing : {"conditional", "shared"} -> the gamma at which truth and collapse tie (linear in
        gamma): collapse wins below it and the truth above it when it is positive; None when
        the truth wins at every gamma >= 0 (or loses at every one).
    log_px, log_px_collapsed : (N,) exact log p(x) of the truth and of the collapsed decoder.
    labelled_truth : (N, C) L*(x, y) of the truth per class; elbo_collapsed : (N,) ELBO* of g.
    unlabelled_truth : {"conditional", "shared"} -> (N,) U*(x) of the truth.
    labels : (N,) observed labels (-1 unlabelled).
    rule_gap : largest |grid-rule - exact-rule| difference in the optimal bounds (a check
        that the fixed grid used to locate each optimum also values it correctly).
    """
    gammas: np.ndarray
    objective: dict
    crossing: dict
    log_px: np.ndarray
    log_px_collapsed: np.ndarray
    labelled_truth: np.ndarray
    elbo_collapsed: np.ndarray
    unlabelled_truth: dict
    labels: np.ndarray
    rule_gap: float
    settings: dict = field(default_factory=dict)

    def winner(self, family):
        """Per gamma: "truth" or "collapsed" (the larger J) under ``family``."""
        o = self.objective[family]
        return ["truth" if t > c else "collapsed" for t, c in zip(o["truth"], o["collapsed"])]


#: Quadrature nodes for the exact bounds: the posteriors here are >= 0.04 wide, so the default
#: 6400 nodes (for posteriors down to 0.005) are more than needed; the self-check still guards.
_GRID, _Q_GRID = 1600, 160


def _exact_elbo(x, decode, sigma2, m, ls, log_px):
    """ELBO of q = N(m, e^(2 ls)) per point, log p(x) - KL(q || p(z|x)), by refvae's quadrature."""
    kl = quadrature.kl_to_posterior(x, m[:, None], 2 * ls[:, None], decode, 1, sigma2, grid_size=_GRID,
                                    q_grid_size=_Q_GRID)
    return log_px - kl


def exact_comparison(*, seed=None, n=500, labelled_fraction=0.1, gammas=(0, 1, 2, 3, 5, 10, 20, 30),
                     grid_step=0.02, z_max=8.0, sigma2=datasets.DEFAULT_SIGMA2, dataset=None):
    """Truth vs collapsed decoder under Eq. 5 (alpha = 0) with ELBO-optimal Gaussians (module docstring).

    Parameters
    ----------
    seed : int or Generator, the data sample (unless ``dataset`` is given).
    n, labelled_fraction, sigma2 : Discrete Semi-Circle points, the share of them labelled and the
        observation noise variance of the data and of both decoders (unless ``dataset`` is given).
    dataset : optional, a ``refvae.datasets.discrete_semicircle`` sample to compare on instead
        (e.g. an experiment's training data).
    gammas : the weights of the labelled bound to report.
    grid_step, z_max : the uniform z nodes on which the optimal q are located (the bounds at
        the optimum are then computed with ``refvae.metrics.quadrature``'s own rules).

    Returns
    -------
    ExactComparison
    """
    if dataset is None:
        if seed is None:
            raise ValueError("seed is required when no dataset is given")
        n = _checks.integer("n", n, min_value=2)
    elif getattr(dataset, "name", None) != "discrete_semicircle":
        raise ValueError(f"dataset must be a discrete_semicircle Dataset, got {type(dataset).__name__}")
    gammas = np.asarray([_checks.scalar("gammas", g, nonneg=True) for g in gammas], dtype=float)
    if gammas.size == 0:
        raise ValueError("gammas must hold at least one gamma")
    grid_step = _checks.scalar("grid_step", grid_step, positive=True, high=0.02)   # 2 nodes per std of q >= 0.04
    z_max = _checks.scalar("z_max", z_max, low=6.0)
    ds = dataset if dataset is not None else datasets.discrete_semicircle(
        n, seed, labelled_fraction=labelled_fraction, sigma2=sigma2)
    truth, x, labels = ds.truth, np.asarray(ds.x), np.asarray(ds.labels)
    n, sigma2, labelled_fraction = x.shape[0], float(truth.sigma2), float(np.mean(labels >= 0))
    C = len(truth.class_probs)
    lp = np.log(np.asarray(truth.class_probs))
    z = np.arange(-z_max, z_max + grid_step / 2, grid_step)
    dec = [semicircle_decoder(truth, y) for y in range(C)]
    dec_c = semicircle_decoder(truth, None)
    h = [_log_lik_table(x, d, z, sigma2) for d in dec]
    h_c = _log_lik_table(x, dec_c, z, sigma2)

    lpy = np.stack([quadrature.log_likelihood(x, d, 1, sigma2, grid_size=_GRID) for d in dec], axis=1)   # (N, C)
    log_px_c = quadrature.log_likelihood(x, dec_c, 1, sigma2, grid_size=_GRID)
    gap = 0.0
    L = np.empty((n, C))
    for y in range(C):
        m, ls, grid_value = _best_q([h[y]], [lp[y]], z, n)
        L[:, y] = _exact_elbo(x, dec[y], sigma2, m, ls, lpy[:, y]) + lp[y]
        gap = max(gap, float(np.max(np.abs(L[:, y] - grid_value))))
    m, ls, grid_value = _best_q([h_c], [0.0], z, n)
    elbo_c = _exact_elbo(x, dec_c, sigma2, m, ls, log_px_c)
    gap = max(gap, float(np.max(np.abs(elbo_c - grid_value))))
    m, ls, grid_value = _best_q(h, list(lp), z, n)
    # U_shared(q) = log sum_y p(y) exp(ELBO_y(q)): KL(q || p(z)) does not depend on y
    u_shared = logsumexp(np.stack([_exact_elbo(x, dec[y], sigma2, m, ls, lpy[:, y]) + lp[y] for y in range(C)]),
                         axis=0)
    gap = max(gap, float(np.max(np.abs(u_shared - grid_value))))
    log_px = logsumexp(lpy + lp, axis=1)
    unl, lab = labels < 0, labels >= 0
    yl = labels[lab]
    U = {"conditional": logsumexp(L, axis=1), "shared": u_shared}
    L_lab_t = L[np.flatnonzero(lab), yl]
    L_lab_c = elbo_c[lab] + lp[yl]
    objective, crossing = {}, {}
    for fam, u in U.items():
        du, dl = (u[unl] - elbo_c[unl]).sum() / n, (L_lab_t - L_lab_c).sum() / n
        objective[fam] = {"truth": (u[unl].sum() + gammas * L_lab_t.sum()) / n,
                          "collapsed": (elbo_c[unl].sum() + gammas * L_lab_c.sum()) / n}
        g_star = -du / dl if dl != 0 else math.inf
        crossing[fam] = float(g_star) if 0 < g_star < math.inf else None
    return ExactComparison(gammas=gammas, objective=objective, crossing=crossing, log_px=log_px,
                           log_px_collapsed=log_px_c, labelled_truth=L, elbo_collapsed=elbo_c,
                           unlabelled_truth=U, labels=labels, rule_gap=gap,
                           settings=dict(n=n, labelled_fraction=labelled_fraction, sigma2=sigma2,
                                         grid_step=grid_step, z_max=z_max, alpha=0.0))


# ==================================================================================== training

class LabelGate(Layer):
    """x * mask on the decoder input concat(z, onehot y) (..., R, B, K + C), a fixed 0/1 per restart
    on the onehot columns: a restart with gate 0 reads z only (its p(x|y) = p(x) for every y: the
    forced collapse), one with gate 1 is the plain M2 decoder.

    It lets ``collapse_experiment`` train the free and the forced-collapsed models as one
    restarts-axis program, on the same minibatches. A gate-0 restart equals the plain M2 with the
    decoder's first-layer rows for onehot y set to 0 (``ungated``).
    """

    def __init__(self, latent_dim, n_classes, gate):
        K = _checks.integer("latent_dim", latent_dim, min_value=1)
        C = _checks.integer("n_classes", n_classes, min_value=1)
        gate = np.asarray(gate, dtype=float)
        if gate.ndim != 1 or not np.all((gate == 0) | (gate == 1)):
            raise ValueError(f"gate must be a 1-D array of 0s and 1s (one per restart), got {gate!r}")
        self.n_in = self.n_out = K + C
        mask = np.ones((gate.size, 1, K + C))
        mask[:, 0, K:] = gate[:, None]
        self.mask = asarray(mask)

    def forward(self, params, x):
        return x * self.mask, None

    def backward(self, params, cache, dy):
        return dy * self.mask, {}

    def __repr__(self):
        return f"LabelGate({self.n_in}, restarts={self.mask.shape[0]})"


def make_m2(data_dim, n_classes, hidden, *, gate=None, **kwargs):
    """The tanh-MLP M2 of ``collapse_experiment`` (K = 1, ``hidden`` widths, mirrored in the decoder).

    gate : None (the plain model) or a (R,) 0/1 array: the decoder behind a ``LabelGate``
        (parameter keys ``"dec.1.*"`` instead of ``"dec.*"``). ``kwargs`` as ``refvae.m2.M2``.
    """
    if gate is None:
        return M2.from_sizes(data_dim, 1, n_classes, hidden=hidden, activation="tanh", **kwargs)
    h = tuple(hidden)
    return M2(mlp((data_dim, *h, n_classes), "tanh"), mlp((data_dim + n_classes, *h, 2), "tanh"),
              Sequential(LabelGate(1, n_classes, gate), mlp((1 + n_classes, *h[::-1], data_dim), "tanh")),
              n_classes, 1, data_dim, **kwargs)


def scale_label_init(params, scale, latent_dim=1):
    """``params`` with the decoder's first-layer rows for onehot y multiplied by ``scale``: how
    different the class functions f(z, y) are at the start (see ``collapse_experiment``)."""
    W = np.array(params["dec.0.W"], copy=True)
    W[..., latent_dim:, :] *= scale
    return {**params, "dec.0.W": W}


def gated(parts):
    """Parameter dicts of the plain model -> one dict of the gated model: the parts' restarts
    concatenated in order, decoder keys moved under ``"dec.1."``."""
    return {("dec.1." + k[4:] if k.startswith("dec.") and k != "dec.obs_logvar" else k):
            np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}


def ungated(params, gate, latent_dim=1):
    """The gated model's parameters -> the plain model's (same restarts), the first-layer rows
    for onehot y zeroed where the gate is 0, so the plain model computes the same function."""
    out = {("dec." + k[6:] if k.startswith("dec.1.") else k): v for k, v in params.items()}
    W = np.array(out["dec.0.W"], copy=True)
    W[np.asarray(gate) == 0, latent_dim:, :] = 0.0
    out["dec.0.W"] = W
    return out


def angle_distance(a, b):
    """1-Wasserstein distance between the angle distributions of two planar samples, in units of pi.

    a, b : (n, 2), (m, 2). The angle is atan2(x_2, x_1) / pi; for Discrete Semi-Circle's true
    class conditionals (angle / pi ~ U^(1/3) and U^3) the distance is 3/4 - 1/4 = 0.5.
    """
    a = np.asarray(to_host(_checks.array("a", a, ndim=2, last_dim=2)))
    b = np.asarray(to_host(_checks.array("b", b, ndim=2, last_dim=2)))
    ta, tb = np.sort(np.arctan2(a[:, 1], a[:, 0])), np.sort(np.arctan2(b[:, 1], b[:, 0]))
    # W1 of two empirical laws: the integral of |F_a - F_b| over the merged support
    grid = np.sort(np.concatenate([ta, tb]))
    fa = np.searchsorted(ta, grid[:-1], side="right") / ta.size
    fb = np.searchsorted(tb, grid[:-1], side="right") / tb.size
    return float(np.sum(np.abs(fa - fb) * np.diff(grid)) / math.pi)


def pair_knn(draw_a, draw_b, rng, repeats, size):
    """k-NN statistic between two samplers draw(n, rng) -> (R?, n, d) or (n, d), averaged over
    ``repeats``; returns mean, se as arrays (R,) ((1,) for unbatched samplers)."""
    values = []
    for _ in range(repeats):
        a = np.asarray(to_host(draw_a(size, rng)))
        b = np.asarray(to_host(draw_b(size, rng)))
        a = a.reshape((-1,) + a.shape[-2:])
        b = b.reshape((-1,) + b.shape[-2:])
        values.append([smooth_knn_statistic(ai, bi, KNN_ALPHAS) for ai, bi in zip(a, b)])
    values = np.asarray(values)
    return values.mean(axis=0), values.std(axis=0, ddof=1) / math.sqrt(repeats)


#: Starting quadrature nodes for the learned decoders (refined while the self-check fails): their
#: posteriors are >= ~0.03 wide, which 1600 nodes resolve (the default 6400 is for 0.005).
_MODEL_GRID = 1600


def conditional_ll(decode_y, x, y, prior):
    """Held-out log p(x_n | y_n) (N,) and log p(x_n) (N,) of a class-conditional K = 1 model
    (``decode_y(z, c)``) by quadrature; also whether every quadrature resolved."""
    per_class, ok = [], True
    for c in range(len(prior)):
        ll, res = quadrature_log_likelihood(lambda z, c=c: decode_y(z, c), x, grid_size=_MODEL_GRID)
        per_class.append(ll)
        ok = ok and res
    per_class = np.stack(per_class)
    return per_class[y, np.arange(x.shape[0])], logsumexp(per_class + np.log(prior)[:, None], axis=0), ok


@dataclass
class RunResult:
    """One M2 setting of ``collapse_experiment`` (arrays (R,), one per restart).

    family, gamma, bound : the setting (``unlabelled_posterior``, gamma of Eq. 5, "elbo" or "iwae").
    label_init : (R,) the scale of each restart's initial decoder weights on onehot y (1: the
        networks' own initialisation); restart i starts from initialisation ``i % n_init``.
    knn, knn_se : smooth k-NN statistic between samples of the learned p(x | y=0) and p(x | y=1)
        (``size`` vs ``size``, averaged over repeats; about 0 when they coincide) and its se.
    angle_w1 : ``angle_distance`` between the two conditionals' samples (truth: 0.5).
    cond_ll, marginal_ll : held-out log p(x | y) at the true labels and log p(x), per point (quadrature).
    accuracy : held-out accuracy of q(y|x).
    objective, objective_se : the training objective J / N (Eq. 5, per point, higher is better)
        on the training data at the end, Monte Carlo, and its standard error.
    collapsed_objective, collapsed_objective_se, collapsed_marginal_ll : (n_init,) the same for
        the forced-collapsed model (decoder blind to y, so the label scale is irrelevant to it)
        trained from each initialisation on the same minibatches (None for the importance-weighted
        bound); free restart i pairs with forced collapse ``i % n_init``.
    loss, collapsed_loss : (steps, R) training losses -J / B per minibatch.
    resolved : whether every quadrature resolved.
    """
    family: str
    gamma: float
    bound: str
    label_init: np.ndarray
    knn: np.ndarray
    knn_se: np.ndarray
    angle_w1: np.ndarray
    cond_ll: np.ndarray
    marginal_ll: np.ndarray
    accuracy: np.ndarray
    objective: np.ndarray
    objective_se: np.ndarray
    loss: np.ndarray
    collapsed_objective: np.ndarray | None = None
    collapsed_objective_se: np.ndarray | None = None
    collapsed_marginal_ll: np.ndarray | None = None
    collapsed_loss: np.ndarray | None = None
    resolved: bool = True

    @property
    def selected(self):
        """Restart with the best training objective (yacoby2021's model selection)."""
        return int(np.argmax(self.objective))

    def paired_collapse(self, name):
        """The forced collapse's ``name`` ("objective", "marginal_ll", ...) for each free restart."""
        c = np.asarray(getattr(self, "collapsed_" + name))
        return c[np.arange(self.objective.size) % c.size]


@dataclass
class CollapseResult:
    """``collapse_experiment``'s numbers: ``runs`` {label: RunResult}; the ground truth's
    ``truth_knn``, ``truth_angle_w1``, ``truth_cond_ll``, ``truth_marginal_ll`` measured the
    same way; ``exact``: ``exact_comparison`` on the training data at the runs' gammas (which of
    truth and collapse the objective prefers, with the best Gaussians); ``samples`` {label:
    (2, n, 2) class-conditional samples of the selected restart}."""
    runs: dict
    truth_knn: float
    truth_angle_w1: float
    truth_cond_ll: float
    truth_marginal_ll: float
    exact: ExactComparison | None = None
    samples: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


def run_label(family, gamma, bound="elbo"):
    """'M2 shared, gamma 1' / 'IWAE-M2 shared, gamma 1'."""
    return f"{'IWAE-M2' if bound == 'iwae' else 'M2'} {family}, gamma {gamma:g}"


def _evaluate(model, params, test, prior, rng, knn_repeats, knn_size):
    """Held-out scores of the plain model ``model`` per restart (see ``RunResult``)."""
    R = _n_restarts(params)
    draw = lambda y: (lambda n, g: model.sample(params, y, n, g)[1])          # noqa: E731
    knn, knn_se = pair_knn(draw(0), draw(1), rng, knn_repeats, knn_size)
    x0, x1 = (np.asarray(to_host(model.sample(params, y, test.n, rng)[1])) for y in (0, 1))
    yt = np.asarray(test.full_labels)
    cond, marg, w1, acc, ok = [], [], [], [], True
    for r in range(R):
        pr = take_restart(params, r)
        c_ll, m_ll, res = conditional_ll(lambda z, c, pr=pr: model.decode(pr, z, c), test.x, yt, prior)
        cond.append(c_ll.mean())
        marg.append(m_ll.mean())
        ok = ok and res
        w1.append(angle_distance(x0[r], x1[r]))
        acc.append(float((np.asarray(to_host(model.classify(pr, test.x))).argmax(-1) == yt).mean()))
    return dict(knn=knn, knn_se=knn_se, angle_w1=np.asarray(w1), cond_ll=np.asarray(cond),
                marginal_ll=np.asarray(marg), accuracy=np.asarray(acc)), (x0, x1), ok


def collapse_experiment(*, seed, runs=(("shared", 1.0), ("shared", 10.0), ("conditional", 1.0)),
                        iwae=(("shared", 1.0),), restarts=3, label_init=(1.0, 0.01), n_train=500, n_test=300,
                        hidden=(32, 32), schedule=((1e-2, 1000), (3e-3, 600), (1e-3, 400)), batch_size=64,
                        iwae_samples=5, alpha=0.0, knn_size=100, knn_repeats=20, objective_samples=8,
                        labelled_fraction=0.1, progress=None):
    """yacoby2021 Sec. 5.2 (Fig. 2): does the M2 VAE's p(x|y) collapse on Discrete Semi-Circle, and why?

    ``restarts`` random initialisations of an M2 with ``hidden`` tanh MLPs (noise fixed at the
    truth's) are drawn once. Each is used with every scale in ``label_init`` of the decoder's
    first-layer weights on onehot y (``scale_label_init``; 1 is the networks' own LeCun
    initialisation, under which the class functions f(z, 0), f(z, 1) start far apart; a small
    scale starts them nearly equal), giving R = restarts * len(label_init) free restarts.

    For each (unlabelled_posterior family, gamma) in ``runs``: the M2 on the ELBO bounds (docs/math.md
    2.2) from the R starts and, in the same restarts-axis program and on the same minibatches,
    the forced-collapsed M2 whose decoder ignores y (``LabelGate``) from each initialisation.
    For each setting in ``iwae``: the importance-weighted M2 (yacoby2021's IWAE variant, S =
    ``iwae_samples``) from the R starts. Every restart is scored on held-out data (``RunResult``),
    and the ground truth the same way; ``exact_comparison`` on the training data says, per
    family and gamma, which of truth and collapse the objective itself prefers.

    The forced collapse tells the explanations of an outcome apart: a free model that collapsed
    and reaches the forced collapse's J found what the objective offers; one that stayed distinct
    with a J below the forced collapse's found a worse optimum than collapse (the objective
    prefers collapse, the optimiser did not get there); one distinct and above it, a better one.

    Parameters
    ----------
    seed : int or Generator (data, initialisation, training, evaluation).
    runs : sequence of (family, gamma): ELBO models, each with its forced collapse.
    iwae : sequence of (family, gamma): importance-weighted models.
    restarts : int >= 2, initialisations; label_init : non-empty sequence of scales >= 0.
    n_train, n_test : points (``labelled_fraction`` of the training points labelled).
    hidden : hidden widths of classifier, encoder and decoder.
    schedule : (learning rate, steps) stages on minibatches of ``batch_size`` (Adam, ``fit_stages``).
    iwae_samples : S of the importance-weighted bounds (yacoby2021: S <= 20).
    alpha : weight of the classifier term of Eq. 5 (0: J bounds log p for gamma = 1).
    knn_size, knn_repeats : the k-NN protocol between the two conditionals.
    objective_samples : samples per point of the final J estimates (2 replicates).
    progress : optional callable(fraction, message).

    Returns
    -------
    CollapseResult
    """
    restarts = _checks.integer("restarts", restarts, min_value=2)
    schedule = check_stages("schedule", schedule)
    runs = [(_checks.choice("family", f, UNLABELLED_POSTERIORS), _checks.scalar("gamma", g, nonneg=True))
            for f, g in runs]
    iwae = [(_checks.choice("family", f, UNLABELLED_POSTERIORS), _checks.scalar("gamma", g, nonneg=True))
            for f, g in iwae]
    if not runs and not iwae:
        raise ValueError("runs and iwae must not both be empty")
    scales = [_checks.scalar("label_init", v, nonneg=True) for v in label_init]
    if not scales:
        raise ValueError("label_init must hold at least one scale")
    n_train = _checks.integer("n_train", n_train, min_value=8)
    knn_size = _checks.integer("knn_size", knn_size, min_value=2)
    n_test = _checks.integer("n_test", n_test, min_value=knn_size)
    batch_size = min(_checks.integer("batch_size", batch_size, min_value=1), n_train)
    iwae_samples = _checks.integer("iwae_samples", iwae_samples, min_value=1)
    rng = make_rng(seed)
    ds = datasets.discrete_semicircle(n_train, rng, labelled_fraction=labelled_fraction)
    test = ds.sample(n_test, rng)
    sigma2 = float(ds.truth.sigma2)
    prior = np.asarray(ds.truth.class_probs)
    C, d = len(prior), ds.truth.data_dim
    common = dict(obs="fixed", sigma2=sigma2, alpha=alpha)
    p0 = make_m2(d, C, hidden, **common).init(rng, restarts)
    starts = [scale_label_init(p0, v) for v in scales]
    n_free = restarts * len(scales)
    gate = np.r_[np.ones(n_free), np.zeros(restarts)]                          # free restarts, then forced collapses
    jobs = [(f, g, "elbo") for f, g in runs] + [(f, g, "iwae") for f, g in iwae]
    total = sum(n for _, n in schedule)
    out, samples = {}, {}
    for i, (family, gamma, bound) in enumerate(jobs):
        label = run_label(family, gamma, bound)
        S = iwae_samples if bound == "iwae" else None
        kw = dict(common, gamma=gamma, unlabelled_posterior=family, bound=bound, n_samples=S)
        plain = make_m2(d, C, hidden, **kw)
        if bound == "iwae":
            train_model, start = plain, {k: np.concatenate([p[k] for p in starts]) for k in p0}
        else:
            train_model, start = make_m2(d, C, hidden, gate=gate, **kw), gated(starts + [p0])
        cb = lambda t, p, terms, i=i, label=label: t % 50 == 0 and _progress(   # noqa: E731
            progress, (i + 0.75 * t / total) / len(jobs), label)
        data = train_model.pack(ds.x, ds.labels)
        params, history = fit_stages(train_model.packed(), start, data, stages=schedule, seed=rng,
                                     batch_size=batch_size, n_samples=S, callback=cb)
        _progress(progress, (i + 0.75) / len(jobs), f"{label}: evaluation")
        obj, obj_se = mc_elbo(train_model.packed(), params, data, seed=rng, n_samples=S or objective_samples,
                              replicates=2)
        loss = np.asarray(history["loss"])
        extra = {}
        if bound != "iwae":
            params = ungated(params, gate)
            coll = {k: v[n_free:] for k, v in params.items()}
            params = {k: v[:n_free] for k, v in params.items()}
            # the forced collapse's classes share one decoder: p(x|y) = p(x), one quadrature
            c_marg = [quadrature_log_likelihood(lambda z, pr=take_restart(coll, r): plain.decode(pr, z, 0), test.x,
                                                grid_size=_MODEL_GRID)[0].mean() for r in range(restarts)]
            extra = dict(collapsed_objective=obj[n_free:], collapsed_objective_se=obj_se[n_free:],
                         collapsed_marginal_ll=np.asarray(c_marg), collapsed_loss=loss[:, n_free:])
            obj, obj_se, loss = obj[:n_free], obj_se[:n_free], loss[:, :n_free]
        scores, (x0, x1), ok = _evaluate(plain, params, test, prior, rng, knn_repeats, knn_size)
        res = RunResult(family=family, gamma=gamma, bound=bound, label_init=np.repeat(scales, restarts), **scores,
                        objective=obj, objective_se=obj_se, loss=loss, resolved=ok, **extra)
        out[label] = res
        samples[label] = np.stack([x0[res.selected], x1[res.selected]])
    truth = [ds.truth.given(y) for y in range(C)]
    draw_truth = lambda y: (lambda n, g: truth[y].sample_x(g.standard_normal((n, 1)), g))   # noqa: E731
    t_knn, _ = pair_knn(draw_truth(0), draw_truth(1), rng, knn_repeats, knn_size)
    tx = [draw_truth(y)(n_test, rng) for y in range(C)]
    yt = np.asarray(test.full_labels)
    per_class = np.stack([quadrature.log_likelihood(test.x, **t.quadrature_args) for t in truth])
    samples["truth"] = np.stack(tx)
    exact = exact_comparison(dataset=ds, gammas=sorted({g for _, g in runs})) if runs else None
    _progress(progress, 1.0, "done")
    return CollapseResult(runs=out, truth_knn=float(t_knn[0]), truth_angle_w1=angle_distance(tx[0], tx[1]), exact=exact,
                          truth_cond_ll=float(per_class[yt, np.arange(n_test)].mean()),
                          truth_marginal_ll=float(logsumexp(per_class + np.log(prior)[:, None], axis=0).mean()),
                          samples=samples,
                          settings=dict(n_train=n_train, n_test=n_test, restarts=restarts, label_init=tuple(scales),
                                        hidden=tuple(hidden), schedule=schedule, batch_size=batch_size,
                                        iwae_samples=iwae_samples, alpha=alpha, labelled_fraction=labelled_fraction,
                                        knn_size=knn_size, knn_repeats=knn_repeats))

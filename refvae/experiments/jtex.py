"""yacoby2020's problematic global optima: LinearJTEx's objective and the Table 1 comparison.

Yacoby, Pan and Doshi-Velez (yacoby2020) split the negative ELBO averaged over the data
(docs/math.md 4.3, yacoby2020 Eq. 2) as

    -E_p ELBO(theta, phi) = KL(p(x) || p_theta(x)) + E_p KL(q_phi(z|x) || p_theta(z|x)) + H(p)
                          = L(theta, phi) + H(p),

and show on LinearJTEx (x = chol(A A^T + B) z + e, e ~ N(0, sigma2 I - B), B fixed, A learned;
docs/math.md 4.1) that the VAE's global optimum is *not* the ground truth: L(theta_GT, phi_GT) =
0.532 but L(theta*, phi*) = 0.196, reached by a model that fits p(x) worse (first term > 0) in
exchange for a nearly diagonal posterior (second term ~ 0). ``linear_jtex_objective_experiment``
trains that model with refvae and compares it with the closed forms of
``analytic.linear_gaussian``. ``table1_experiment`` reruns the paper's Table 1 comparison
(VAE, beta-VAE, annealed beta-VAE, Lagging Inference Networks, LiBI; held-out log-likelihood
and the smooth k-NN statistic) on its four data sets (LinearJTEx, CubicJTEx, "Gaussian",
Mobius), with the ground truth's row and a control run (a VAE started at the truth) that tells
a problematic optimum of the VAE objective from an optimisation gap.

The decoders have the architecture of the ground truth (yacoby2020 App. E), the encoders are
yacoby2020's (affine mean-field Gaussians for the linear sets, its small networks for CubicJTEx
and Mobius), and every hyper-parameter of the generative process (B, the noise variance) is
fixed at its true value, as in the paper.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

import analytic.linear_gaussian as lg

from .. import _checks, datasets
from ..backend import make_rng, normal, to_host, xp_of
from ..distributions import gaussian_log_prob
from ..layers import CholeskyLinear, Cube, Elementwise, Linear, ReLU, Sequential, _sub, mlp
from ..libi import fit_libi
from ..lin import fit_lin_segmented
from ..metrics.likelihood import exact_log_likelihood, has_exact_log_likelihood, importance_log_likelihood
from ..metrics.two_sample import smooth_knn_statistic
from ..objectives import GaussianVAE, take_restart
from ..optim import Adam
from ..train import check_stages, fit, fit_stages, linear_ramp
from .noise_modes import mc_elbo

__all__ = ["CholeskyLinear", "jtex_model", "gaussian_model", "cubic_model", "mobius_model", "SigmoidCubeRoot",
           "second_moment", "yacoby2020_objective", "minimise_objective", "objective_path",
           "JTExObjectiveResult", "linear_jtex_objective_experiment", "truth_decoder",
           "optimal_linear_encoder", "truth_start", "laplace_proposal", "REFERENCE_LL", "truth_log_likelihood",
           "model_samples", "knn_score", "is_coverage_experiment", "CoverageResult", "CoverageCase",
           "MethodScore", "Table1Result", "table1_experiment", "TABLE1_PAPER", "TABLE1_DATASETS",
           "TABLE1_METHODS", "CONTROL", "PAPER_GRIDS", "KNN_ALPHAS", "TABLE1_KNN_ALPHAS", "KNN_SIZE",
           "KNN_REPEATS"]

SIGMA2 = lg.LINEAR_JTEX_SIGMA2
B_JTEX = np.asarray(lg.LINEAR_JTEX_B)
A_GT = np.asarray(lg.LINEAR_JTEX_A)
GAUSSIAN_NOISE = 1e-6

#: Initial scale of the encoder's weights (N(0, scale^2 / n_in)), shared by LiBI's code network.
#: LiBI's step-1 penalty exp(||Cov(h) - I||^2 / eps_Sigma) is ~exp(30) for codes initialised at
#: refvae's default scale 1 on 3 restarts out of 10 on LinearJTEx (||Cov - I||^2 up to 37 at
#: the start); the gradient of that size fills Adam's second moment, which then takes ~1e5
#: steps to decay, and those restarts never fit (measured: 7 of 10 restarts reach the
#: truth's log-likelihood with scale 1, 10 of 10 with scale 0.5, whose initial ||Cov - I||^2
#: is 1.0-1.7). Every method shares the encoder initialisation, so they all use 0.5.
ENCODER_SCALE = 0.5


def jtex_model(*, beta=1.0, encoder_scale=ENCODER_SCALE):
    """LinearJTEx's VAE: affine mean-field encoder, ``CholeskyLinear`` decoder, noise sigma2 - B fixed.

    K = d = 2; sigma2 = 0.01 and B = diag(0.006, 0.006) (yacoby2020 App. E), so the observation
    noise is isotropic, 0.004 I (``obs="fixed"``). ``beta`` is the KL weight (beta-VAE);
    ``encoder_scale`` the initial weight scale of the encoder (``ENCODER_SCALE``).
    """
    if not np.allclose(B_JTEX, B_JTEX[0]):
        raise ValueError("the fixed-noise model needs an isotropic sigma2 I - B")
    return GaussianVAE(Linear(2, 4, scale=encoder_scale), CholeskyLinear(2, B_JTEX), 2, 2, obs="fixed",
                       sigma2=SIGMA2 - float(B_JTEX[0]), beta=beta)


def gaussian_model(*, beta=1.0, encoder_scale=ENCODER_SCALE):
    """The "Gaussian" data set's VAE: affine encoder 4 -> 2 x 2, affine decoder 2 -> 4, noise 1e-6 fixed.

    The ground truth is x = A^T z + e, e ~ N(0, 1e-6 I) (docs/math.md 4.1); the decoder is the same
    affine map (with an offset, which the truth sets to 0). ``beta``, ``encoder_scale`` as in
    ``jtex_model``.
    """
    return GaussianVAE(Linear(4, 4, scale=encoder_scale), Linear(2, 4), 2, 4, obs="fixed", sigma2=GAUSSIAN_NOISE,
                       beta=beta)


# ============================================================================ LinearJTEx objective

def second_moment(x):
    """(1/N) X^T X, shape (d, d): the data covariance L must use for a model without an offset.

    LinearJTEx's decoder has no offset (the truth has mean 0), so -mean_n log p_theta(x_n) =
    KL(N(0, M2) || p_theta) + H(N(0, M2)) exactly with M2 the second moment about 0 (not the
    covariance about the sample mean).
    """
    x = np.asarray(to_host(_checks.array("x", x, ndim=2)))
    return x.T @ x / x.shape[0]


def yacoby2020_objective(A, data_cov):
    """L(theta, phi*) of yacoby2020 Eq. 2 for LinearJTEx parameter A (docs/math.md 4.3): MLE + PM term.

    ``analytic.linear_gaussian.c2_objective`` with B = diag(0.006, 0.006), sigma2 = 0.01;
    returns (mle_term, posterior_matching_term) in nats per point.
    """
    return lg.c2_objective(A, B_JTEX, SIGMA2, data_cov)


def minimise_objective(data_cov, *, starts=5, seed=0):
    """Global minimum over A of L(A, phi*) (analytic has the objective, not its arg-min).

    BFGS on the closed form from ``starts`` standard-normal starting points; returns the best
    (L*, A* (2, 2)). yacoby2020 Sec. 1: 0.196 for the population covariance A_GT A_GT^T + sigma2 I.
    """
    starts = _checks.integer("starts", starts, min_value=1)
    data_cov = _checks.array("data_cov", data_cov, shape=(2, 2))
    rng = np.random.default_rng(seed)

    def L(a):
        return sum(yacoby2020_objective(a.reshape(2, 2), data_cov))

    runs = [optimize.minimize(L, rng.standard_normal(4), method="BFGS", options={"gtol": 1e-10})
            for _ in range(starts)]
    best = min(runs, key=lambda r: r.fun)
    return float(best.fun), best.x.reshape(2, 2)


def objective_path(data_cov, A_from, A_to, ts):
    """L's two terms along the path from A_from to A_to: arrays (mle (T,), pm (T,)).

    The model depends on A only through S = A A^T (the decoder is chol(S + B)), so the path
    interpolates S(t) = (1 - t) A_from A_from^T + t A_to A_to^T (positive semi-definite all the
    way) and takes A(t) = chol(S(t)) (plus 1e-12 I). For figures: with A_from = A_GT and A_to the
    optimum, t = 0 is the truth and t = 1 the VAE objective's global optimum (docs/math.md 4.3).
    """
    A_from = _checks.array("A_from", A_from, shape=(2, 2))
    A_to = _checks.array("A_to", A_to, shape=(2, 2))
    ts = _checks.array("ts", ts, ndim=1)
    S0, S1 = A_from @ A_from.T, A_to @ A_to.T
    terms = [yacoby2020_objective(np.linalg.cholesky((1 - t) * S0 + t * S1 + 1e-12 * np.eye(2)), data_cov)
             for t in ts]
    return np.array([t.mle_term for t in terms]), np.array([t.posterior_matching_term for t in terms])


@dataclass
class JTExObjectiveResult:
    """Outcome of ``linear_jtex_objective_experiment`` (nats per data point throughout).

    paper_gt, paper_optimum : L at the truth and its minimum for the population covariance
        A_GT A_GT^T + sigma2 I, from the closed form (yacoby2020: 0.532 and 0.196).
    gt, optimum : the same for the training sample's second moment M2 (what training sees).
    gt_mle : the MLE term KL(N(0, M2) || p_theta_GT) of the truth (sampling error only).
    optimum_mle : the MLE term KL(N(0, M2) || p_theta*) at the sample optimum.
    learned : (R,) L(theta_hat, phi*) of each trained restart (closed form, best encoder).
    learned_own : (R,) L(theta_hat, phi_hat) with the trained encoder: refvae's own -ELBO
        (``mc_elbo``) minus H(N(0, M2)); learned_own_se (R,) its Monte Carlo standard error.
    learned_mle, learned_pm : (R,) the two terms of ``learned``.
    cov_error : (R,) max |model covariance - M2| entrywise, model covariance A A^T + sigma2 I.
    gt_cov_error : the same for the ground truth (sampling error of M2 only).
    jitter : (R,) sd of L(theta_t, phi*) over the second half of the last training stage.
    A : (R, 2, 2) learned A; A_optimum : the sample optimum's A.
    """
    paper_gt: float
    paper_optimum: float
    gt: float
    optimum: float
    gt_mle: float
    optimum_mle: float
    learned: np.ndarray
    learned_own: np.ndarray
    learned_own_se: np.ndarray
    learned_mle: np.ndarray
    learned_pm: np.ndarray
    cov_error: np.ndarray
    gt_cov_error: float
    jitter: np.ndarray
    A: np.ndarray
    A_optimum: np.ndarray
    settings: dict = field(default_factory=dict)


def linear_jtex_objective_experiment(*, seed, n=500, restarts=3,
                                     schedule=((1e-1, 400), (3e-2, 800), (1e-2, 800), (3e-3, 1000), (1e-3, 1000)),
                                     n_samples=2, eval_samples=64, eval_replicates=8, starts=5, progress=None):
    """Train LinearJTEx's VAE with refvae and compare its L with yacoby2020's closed forms.

    yacoby2020 Sec. 1 (Eq. 3) and App. E; docs/math.md 4.1, 4.3. Draws ``n`` training points of
    ``refvae.datasets.linear_jtex``, trains ``jtex_model()`` (A and the affine encoder, full
    batch, ``n_samples`` Monte Carlo samples per point per step) under the Adam learning-rate
    ``schedule`` (``fit_stages``), and evaluates every restart's L two ways (closed form with
    the best encoder, and refvae's own -ELBO with its trained encoder, minus the data entropy),
    against the closed-form L at the truth and at the numerically minimised optimum.

    Parameters
    ----------
    seed : int or numpy.random.Generator.
    n : int, training points (yacoby2020: 500).
    restarts : int, R models trained at once (restarts axis).
    schedule : sequence of (learning rate, steps). L is flat along one direction (A A^T's
        second diagonal entry), so the last, slow stretch to the optimum takes most of the
        steps: the default ends within ~1e-4 nats of it (measured over 5 seeds).
    n_samples : Monte Carlo samples per point per training step.
    eval_samples, eval_replicates : ``mc_elbo`` settings for ``learned_own``.
    starts : BFGS starts of ``minimise_objective``.
    progress : optional callable(fraction, message).

    Returns
    -------
    JTExObjectiveResult
    """
    rng = make_rng(seed)
    n = _checks.integer("n", n, min_value=3)
    restarts = _checks.integer("restarts", restarts, min_value=1)
    population = A_GT @ A_GT.T + SIGMA2 * np.eye(2)
    paper_gt = sum(yacoby2020_objective(A_GT, population))
    paper_opt, _ = minimise_objective(population, starts=starts)
    x = np.asarray(datasets.linear_jtex(n, rng).x)
    M2 = second_moment(x)
    gt = sum(yacoby2020_objective(A_GT, M2))
    opt, A_opt = minimise_objective(M2, starts=starts)

    model = jtex_model()
    params = model.init(rng, restarts)
    stages = check_stages("schedule", schedule)
    total = sum(s for _, s in stages)
    last = stages[-1][1]
    trace = []

    def watch(t, p, terms):
        if progress is not None and t % 100 == 0:
            progress(t / total, f"LinearJTEx VAE step {t}")
        if t >= total - last // 2 and t % 10 == 0:       # jitter of L over the last stage's second half
            A_t = to_host(p["dec.A"])
            trace.append([sum(yacoby2020_objective(a, M2)) for a in A_t])

    params, _ = fit_stages(model, params, x, stages=stages, seed=rng, n_samples=n_samples, callback=watch)
    A = to_host(params["dec.A"]).reshape(restarts, 2, 2)
    terms = [yacoby2020_objective(a, M2) for a in A]
    mle = np.array([t.mle_term for t in terms])
    pm = np.array([t.posterior_matching_term for t in terms])
    entropy = 0.5 * (x.shape[1] * (1.0 + np.log(2 * np.pi)) + np.linalg.slogdet(M2)[1])   # H(N(0, M2))
    elbo, se = mc_elbo(model, params, x, seed=rng, n_samples=eval_samples, replicates=eval_replicates)
    cov = A @ A.swapaxes(-1, -2) + SIGMA2 * np.eye(2)
    return JTExObjectiveResult(
        paper_gt=float(paper_gt), paper_optimum=paper_opt, gt=float(gt), optimum=opt,
        gt_mle=float(yacoby2020_objective(A_GT, M2).mle_term),
        optimum_mle=float(yacoby2020_objective(A_opt, M2).mle_term),
        learned=mle + pm, learned_own=-np.atleast_1d(elbo) - entropy, learned_own_se=np.atleast_1d(se),
        learned_mle=mle, learned_pm=pm, cov_error=np.abs(cov - M2).max(axis=(-2, -1)),
        gt_cov_error=float(np.abs(population - M2).max()),
        jitter=np.std(np.asarray(trace), axis=0) if trace else np.zeros(restarts),
        A=A, A_optimum=A_opt,
        settings=dict(n=n, restarts=restarts, schedule=stages, n_samples=n_samples))


# ============================================================================ Table 1

#: yacoby2020 Table 1 (mean +- sd over its 10 data sets): (test LL, S-kNN) per method and data set.
TABLE1_PAPER = {
    "linear_jtex": {"VAE": ((-3.15, 0.04), (1.62, 0.12)), "beta-VAE": ((-3.15, 0.04), (1.62, 0.12)),
                    "beta-VAE+anneal": ((-3.15, 0.04), (1.63, 0.12)), "LIN": ((-3.15, 0.04), (1.62, 0.11)),
                    "LiBI": ((-2.99, 0.03), (0.06, 0.05))},
    "cubic_jtex": {"VAE": ((-5.85, 0.63), (4.86, 1.82)), "beta-VAE": ((-5.47, 0.14), (2.99, 1.48)),
                   "beta-VAE+anneal": ((-12.91, 11.51), (2.86, 1.01)), "LIN": ((-30.64, 39.17), (7.07, 1.24)),
                   "LiBI": ((-8.90, 3.98), (1.75, 2.75))},
    "gaussian": {"VAE": ((6.73, 0.23), (15.28, 7.98)), "beta-VAE": ((7.65, 0.09), (4.10, 1.22)),
                 "beta-VAE+anneal": ((7.54, 0.14), (5.86, 1.66)), "LIN": ((6.94, 0.53), (15.61, 8.26)),
                 "LiBI": ((7.85, 0.05), (0.10, 0.08))},
    "mobius": {"VAE": ((1.88, 0.05), (0.38, 0.20)), "beta-VAE": ((1.92, 0.06), (0.27, 0.14)),
               "beta-VAE+anneal": ((1.88, 0.05), (0.37, 0.19)), "LIN": ((1.90, 0.08), (0.72, 0.78)),
               "LiBI": ((1.91, 0.05), (0.17, 0.06))},
}
TABLE1_DATASETS = tuple(TABLE1_PAPER)
TABLE1_METHODS = ("VAE", "beta-VAE", "beta-VAE+anneal", "LIN", "LiBI")
#: The control run: a VAE whose decoder starts at the ground truth (``truth_decoder``).
CONTROL = "VAE from truth"


def _libi_grid(eps_hz):
    return tuple({"eps_hz": h, "eps_sigma": e, "eps_mu": m, "repetitions": r}
                 for h in eps_hz for e in (0.2, 0.5) for m in (0.2, 0.5) for r in (1, 6))


#: yacoby2020 App. E's hyper-parameter grids ("Hyper-parameter Search"), per data set and method.
PAPER_GRIDS = {
    name: {"VAE": ({},),
           "beta-VAE": tuple({"beta": b} for b in (0.5, 2.0, 5.0)),
           "beta-VAE+anneal": tuple({"beta": b} for b in (0.5, 1.0, 2.0, 5.0)),
           "LIN": tuple({"segments": s} for s in segments),
           "LiBI": _libi_grid(eps_hz)}
    for name, segments, eps_hz in (("linear_jtex", (40, 50, 60, 70), (0.001, 1.0, 10.0, 20.0)),
                                   ("cubic_jtex", (30, 40, 50, 60), (0.001, 1.0, 10.0, 20.0)),
                                   ("gaussian", (5, 10, 15, 20), (0.001, 1.0, 10.0, 20.0)),
                                   ("mobius", (60, 70, 80, 90), (1.0, 10.0, 20.0)))}

#: S-kNN as yacoby2020 App. E states it: "comparing 100 randomly drawn samples generated from
#: p(x) to 100 randomly drawn samples generated from p_theta(x). We repeated this process 20000
#: times and reported the average."
KNN_SIZE, KNN_REPEATS = 100, 20000

#: Inverse temperatures of the smooth k-NN statistic (k = 1) that ``knn_score`` uses unless told
#: otherwise: refvae's setting from before the Table 1 calibration below, spanning soft to nearly
#: hard nearest neighbours at the data's scale; yacoby2021's claims (``failure_modes``,
#: ``m2_collapse``) use it.
KNN_ALPHAS = (1.0, 10.0, 100.0)
#: The inverse temperature of yacoby2020's Table 1 S-kNN, which the paper does not give. With
#: a = 1 the VAE family's closed-form LinearJTEx optimum scores 1.67 +- 0.07 against the truth
#: (300 repetitions), the paper's VAE row 1.62 +- 0.12; a = (1, 10, 100) gives 1.08, a = 0.1
#: gives 0.69, a = 2 gives 2.00, a = 5 gives 1.64 (measured; the truth scores 0 at every a). A
#: single a = 1 is the simplest setting that matches.
TABLE1_KNN_ALPHAS = (1.0,)

#: Hidden width of the Mobius decoder (one tanh layer). yacoby2020 generates Mobius data from a
#: network trained to imitate m(z) and gives the learned decoders that network's architecture,
#: which it does not state; refvae's data come from m itself, and 20 tanh units fit m by
#: regression to an error of 0.0024 (rms over the prior) in 4000 steps, below the noise's 0.0032.
MOBIUS_HIDDEN = 20
MOBIUS_NOISE = 1e-5


class SigmoidCubeRoot(Elementwise):
    """yacoby2020's CubicJTEx encoder activation: sigmoid on the first half of the units, a cube root on the rest.

    yacoby2020 App. E: "the first [hidden layer] with 4 hidden units, half with sigmoid
    activations and the other half with cube-root activations" (to invert the cubic decoder).
    The cube root is smoothed as r(u) = u (1 + u^2)^(-1/3): r(u) / u^(1/3) -> 1 as |u| -> inf
    and r is C^infinity, whereas u^(1/3) has an infinite derivative at 0 (our choice; the paper
    does not say how it handles 0). r'(u) = (1 + u^2 / 3) (1 + u^2)^(-4/3).

    Parameters
    ----------
    width : int >= 2, the number of units (the first width // 2 get the sigmoid).
    """

    def __init__(self, width):
        self.width = _checks.integer("width", width, min_value=2)
        self.half = self.width // 2

    def f(self, x):
        xp = xp_of(x)
        if x.shape[-1] != self.width:
            raise ValueError(f"x must have {self.width} units on its last axis, got shape {tuple(x.shape)}")
        s, c = x[..., :self.half], x[..., self.half:]
        return xp.concatenate([0.5 * (1.0 + xp.tanh(0.5 * s)), c * (1.0 + c * c) ** (-1.0 / 3.0)], axis=-1)

    def df(self, x, y):
        xp = xp_of(x)
        ys, c = y[..., :self.half], x[..., self.half:]
        c2 = c * c
        return xp.concatenate([ys * (1.0 - ys), (1.0 + c2 / 3.0) * (1.0 + c2) ** (-4.0 / 3.0)], axis=-1)

    def __repr__(self):
        return f"SigmoidCubeRoot({self.width})"


def cubic_model(*, beta=1.0):
    """CubicJTEx's VAE: x = (chol(A A^T + B) z)^3 + e, A learned, noise sigma2 - B = 0.004 fixed (K = d = 2).

    Decoder ``Sequential(CholeskyLinear(2, B), Cube())`` (the ground truth's architecture,
    yacoby2020 App. E). Encoder as yacoby2020 App. E: 2 -> 4 (two sigmoid, two cube-root units,
    ``SigmoidCubeRoot``) -> 20 (ReLU) -> 2K. ``beta`` is the KL weight.
    """
    enc = Sequential(Linear(2, 4), SigmoidCubeRoot(4), Linear(4, 20), ReLU(), Linear(20, 4))
    return GaussianVAE(enc, Sequential(CholeskyLinear(2, B_JTEX), Cube()), 2, 2, obs="fixed",
                       sigma2=SIGMA2 - float(B_JTEX[0]), beta=beta)


def mobius_model(*, beta=1.0, hidden=MOBIUS_HIDDEN):
    """Mobius's VAE: encoder 2 -> 50 (ReLU) -> 2K (yacoby2020 App. E), decoder 2 -> ``hidden`` (tanh) -> 2.

    The observation noise is fixed at the truth's 1e-5; ``beta`` is the KL weight.
    """
    return GaussianVAE(mlp((2, 50, 4), "relu"), mlp((2, hidden, 2), "tanh"), 2, 2, obs="fixed", sigma2=MOBIUS_NOISE,
                       beta=beta)


_MODELS = {"linear_jtex": jtex_model, "cubic_jtex": cubic_model, "gaussian": gaussian_model, "mobius": mobius_model}


class _DecoderRegression:
    """Least squares of a VAE's decoder mean on (z, y) pairs: x holds [z, y] per row; loss per row.

    Used to start Mobius's control run from a decoder fitted to m(z), which is how yacoby2020
    built its Mobius ground truth ("train a neural network f to map z ~ p(z) to m(z)").
    """

    def __init__(self, vae):
        self.vae, self.K = vae, vae.latent_dim

    def noise_shape(self, params, batch_size, n_samples=None):
        return None

    def value_and_grad(self, params, x, noise=None, with_terms=False):
        dec = _sub(params, "dec.")
        mean, cache = self.vae.decoder.forward(dec, x[..., :self.K])
        r = mean - x[..., self.K:]
        loss = 0.5 * (r * r).sum(axis=-1).mean(axis=-1)
        _, g = self.vae.decoder.backward(dec, cache, r / x.shape[-2])
        grads = {k: g[k[4:]] if k.startswith("dec.") else xp_of(v).zeros_like(v) for k, v in params.items()}
        return (loss, grads, {}) if with_terms else (loss, grads)


def truth_decoder(dataset, model, params, rng, *, steps=3000):
    """``params`` with the decoder set to the ground truth of ``dataset`` (every restart), encoder untouched.

    LinearJTEx and CubicJTEx: A = A_GT; "Gaussian": W = A (2 x 4), b = 0; Mobius (whose truth,
    m itself, the decoder network can only approximate): the decoder fitted by least squares to
    m(z) on 2000 prior draws (``steps`` Adam steps, learning rate 1e-2 then 1e-3).
    """
    _checks.choice("dataset", dataset, _MODELS)
    p = dict(params)
    lead = (_lead(p),) if _lead(p) else ()

    def tile(a):
        return np.broadcast_to(np.asarray(a, dtype=float), lead + np.shape(a)).copy()

    if dataset == "linear_jtex":
        p["dec.A"] = tile(A_GT)
    elif dataset == "cubic_jtex":
        p["dec.0.A"] = tile(A_GT)
    elif dataset == "gaussian":
        p["dec.W"], p["dec.b"] = tile(datasets.A_GAUSSIAN), tile(np.zeros(4))
    else:
        truth = datasets.mobius(1, 0).truth
        z = rng.standard_normal((2000, 2))
        pairs = np.concatenate([z, truth.decode(z)], axis=1)
        reg = _DecoderRegression(model)
        p, _ = fit_stages(reg, p, pairs, stages=((1e-2, steps * 2 // 3), (1e-3, steps - steps * 2 // 3)), seed=rng,
                          only=("dec.",))
    return p


def optimal_linear_encoder(model, params):
    """``params`` with an affine encoder set to its KL-optimal mean-field value for the (affine) decoder.

    For x = W z + b + e, e ~ N(0, diag s2), the posterior is N(Lam^-1 W^T S^-1 (x - b), Lam^-1),
    Lam = I + W^T S^-1 W (docs/math.md 4.1), and the mean-field q minimising KL(q || p(z|x)) has
    its mean and the variances 1 / Lam_ii (yacoby2020 App. C.3). Needs ``model.encoder`` a single
    ``Linear`` (d -> 2K) and an affine decoder (``has_exact_log_likelihood`` "closed form").
    """
    enc = model.encoder.layers[0] if isinstance(model.encoder, Sequential) and len(model.encoder.layers) == 1 \
        else model.encoder
    if not isinstance(enc, Linear) or has_exact_log_likelihood(model) != "closed form":
        raise ValueError("optimal_linear_encoder needs a single Linear encoder and an affine decoder")
    prefix = "enc." if enc is model.encoder else "enc.0."
    K = model.latent_dim
    probe = np.concatenate([np.zeros((1, K)), np.eye(K)])
    p = dict(params)
    lead = (_lead(p),) if _lead(p) else ()
    E, c = np.zeros(lead + (model.data_dim, 2 * K)), np.zeros(lead + (2 * K,))
    for r in np.ndindex(*lead):
        mean, logvar = model.decode({k: v[r] if lead else v for k, v in p.items()}, probe)
        W = (mean[1:] - mean[0]).T                                            # (d, K)
        prec = np.exp(-np.broadcast_to(logvar, mean.shape)[0])                # (d,)
        Lam = np.eye(K) + W.T @ (prec[:, None] * W)
        M = (prec[:, None] * W) @ np.linalg.inv(Lam)                          # x M = posterior mean (b = 0)
        E[r][:, :K], c[r][:K] = M, -mean[0] @ M
        c[r][K:] = -np.log(np.diag(Lam))
    p[prefix + "W"], p[prefix + "b"] = E, c
    return p


def truth_start(dataset, model, params, x, rng, *, steps, lr, truth_fit_steps=3000):
    """The ground truth (theta_GT, phi_GT) as starting parameters: the control run of ``table1_experiment``.

    theta_GT from ``truth_decoder``; phi_GT = argmin_phi L(theta_GT, phi) (yacoby2020 Sec. 1): in
    closed form for the linear sets (``optimal_linear_encoder``), else ``steps`` encoder-only
    Adam(lr) steps on the data ``x`` (yacoby2020 App. E: "we fixed the likelihood to the ground
    truth and minimized L(theta, phi) with respect to phi only"). ``truth_fit_steps``: Mobius's
    decoder regression (``truth_decoder``).
    """
    p = truth_decoder(dataset, model, params, rng, steps=truth_fit_steps)
    if dataset in ("linear_jtex", "gaussian"):
        return optimal_linear_encoder(model, p)
    return fit(model, p, x, steps=steps, seed=rng, optimizer=Adam(lr), only=("enc.",)).params


class _TruthModel:
    """A data set's ground truth as the minimal model ``importance_log_likelihood`` needs (no parameters)."""

    def __init__(self, truth):
        self.truth, self.latent_dim, self.data_dim = truth, truth.latent_dim, truth.data_dim
        self.logvar = np.log(np.broadcast_to(np.asarray(truth.sigma2, dtype=float), (truth.data_dim,)))

    def log_px_given_z(self, params, x, z):
        return gaussian_log_prob(x, self.truth.decode(np.asarray(z)), self.logvar)[0].sum(axis=-1)


def laplace_proposal(dataset, truth, x, factor=None):
    """Gaussian approximation of the true posterior p(z | x) of CubicJTEx or Mobius: (mu, logvar), each (N, K).

    ``factor`` (CubicJTEx only): a Cholesky factor L (2, 2) to use instead of the truth's, i.e.
    the same approximation for a learned decoder (L z)^3 (``cubic_model``).

    Both decoders are invertible, so z0 = f^-1(x) maximises p(x | z); with J the Jacobian of f
    at z0 and D = diag(1 / sigma2), the posterior precision is about P = I + J^T D J and its mode
    about z0 - P^-1 z0 (one Newton step from z0 with the prior). CubicJTEx: f(z) = (L z)^3, so
    z0 = L^-1 cbrt(x), J = 3 diag(u^2) L with u = cbrt(x). Mobius: m is conformal, so
    J^T J = |m'(w0)|^2 I, w0 = (d m - b) / (a - c m), m'(w) = (a d - b c) / (c w + d)^2. The
    proposal keeps the diagonal of P^-1 (marginal variances); ``truth_log_likelihood`` inflates
    it and mixes in the prior.
    """
    x = np.asarray(x, dtype=float)
    prec = 1.0 / np.broadcast_to(np.asarray(truth.sigma2, dtype=float), (x.shape[1],))
    if dataset == "cubic_jtex":
        L = np.asarray(truth.constants["L"] if factor is None else factor)
        u = np.cbrt(x)
        z0 = np.linalg.solve(L, u.T).T
        J = 3.0 * (u * u)[:, :, None] * L[None]                          # (N, d, K)
        P = np.eye(2) + np.einsum("nik,i,nil->nkl", J, prec, J)
    elif dataset == "mobius":
        a, b, c, d = (truth.constants[k] for k in "abcd")
        m = x[:, 0] + 1j * x[:, 1]
        w0 = (d * m - b) / (a - c * m)
        z0 = np.stack([w0.real, w0.imag], axis=1)
        gain = np.abs((a * d - b * c) / (c * w0 + d) ** 2) ** 2         # |m'(w0)|^2
        P = np.eye(2) * (1.0 + gain * prec[0])[:, None, None]
    else:
        raise ValueError(f"dataset must be 'cubic_jtex' or 'mobius' (the others have closed forms), got {dataset!r}")
    cov = np.linalg.inv(P)
    mode = z0 - np.einsum("nkl,nl->nk", cov, z0)
    return mode, np.log(np.diagonal(cov, axis1=1, axis2=2))


def truth_log_likelihood(dataset, truth, x, *, seed, n_samples=5000, defensive=0.2):
    """log p(x_n) under a data set's ground truth: (values (N,), standard errors (N,), method).

    Closed form for the linear-Gaussian sets (errors 0); for CubicJTEx and Mobius importance
    sampling from ``laplace_proposal`` (inflated by 2, prior weight ``defensive``), a proposal
    built from the exact inverse of the true decoder, so it sits on the posterior's single mode.
    """
    x = np.asarray(x, dtype=float)
    if truth.is_linear:
        return lg.log_likelihood(x, truth.W, truth.b, truth.noise_cov), np.zeros(len(x)), "closed form"
    ll, se = importance_log_likelihood(_TruthModel(truth), {}, x, seed=seed, n_samples=n_samples, defensive=defensive,
                                       proposal=laplace_proposal(dataset, truth, x), return_stderr=True)
    method = f"IS from the Laplace approximation ({n_samples} samples, prior weight {defensive:g})"
    return np.asarray(ll), np.asarray(se), method


def model_samples(model, params, n, rng):
    """Draw n points from the model's p_theta(x): z ~ N(0, I), x = f(z) + noise; shape (R?, n, d).

    Parameters
    ----------
    model : GaussianVAE; params : its parameters (restarts axis R allowed).
    n : int >= 1; rng : numpy.random.Generator.
    """
    n = _checks.integer("n", n, min_value=1)
    z = normal(rng, model.noise_shape(params, n))
    mean, logvar = model.decode(params, z)
    xp = xp_of(mean)
    return mean + xp.exp(0.5 * xp.asarray(logvar)) * normal(rng, mean.shape)


def knn_score(draw_model, draw_data, *, rng, repeats=KNN_REPEATS, size=KNN_SIZE, alphas=KNN_ALPHAS, chunk=50):
    """yacoby2020's smooth k-NN score: the statistic of ``size`` model vs ``size`` data points, averaged.

    yacoby2020 App. E compares 100 draws of p(x) with 100 draws of p_theta(x), repeated 20000
    times, and reports the mean (lower: closer; about 0 for equal distributions, docs/math.md 3).

    Parameters
    ----------
    draw_model : callable(n, rng) -> (R, n, d) or (n, d), samples of the model(s).
    draw_data : callable(n, rng) -> (n, d), fresh samples of p(x).
    rng : numpy.random.Generator; repeats : int >= 2; size : int >= 2.
    alphas : inverse temperatures of ``refvae.metrics.two_sample.smooth_knn_statistic``
        (``KNN_ALPHAS``; yacoby2020's Table 1: ``TABLE1_KNN_ALPHAS``). For two samples of one distribution the
        score is 0 up to its standard error (the ground truth's own score is reported next to
        every method's).
    chunk : repetitions evaluated at once (memory: chunk x (2 size)^2 numbers).

    Returns
    -------
    mean, se : arrays (R,) (or floats): the mean statistic over ``repeats`` and its standard error.
    """
    repeats = _checks.integer("repeats", repeats, min_value=2)
    size = _checks.integer("size", size, min_value=2)
    chunk = _checks.integer("chunk", chunk, min_value=1)
    values = []
    for start in range(0, repeats, chunk):
        m = min(chunk, repeats - start)
        model_x = np.stack([np.asarray(to_host(draw_model(size, rng))) for _ in range(m)])     # (m, R?, size, d)
        data_x = np.stack([np.asarray(to_host(draw_data(size, rng))) for _ in range(m)])       # (m, size, d)
        if model_x.ndim == 4:
            data_x = data_x[:, None]
        values.append(np.asarray(to_host(smooth_knn_statistic(model_x, data_x, alphas))))
    values = np.concatenate(values).reshape(repeats, -1)                # (repeats, R)
    mean, se = values.mean(axis=0), values.std(axis=0, ddof=1) / np.sqrt(repeats)
    return (mean, se) if model_x.ndim == 4 else (float(mean[0]), float(se[0]))


@dataclass
class MethodScore:
    """One method of Table 1 (or the control run), at its selected hyper-parameter setting, per data-set replicate.

    label : "VAE", "beta-VAE", "beta-VAE+anneal", "LIN", "LiBI" or ``CONTROL``.
    setting : the selected hyper-parameters (highest mean validation log-likelihood of the
        selected restarts over the replicates).
    selected : (D,) int, the restart kept on each replicate (its own objective on the
        validation points, as yacoby2020).
    test_ll_is, test_ll_is_se : (D,) the kept restart's mean test log-likelihood per point by
        yacoby2020's estimator (importance sampling, encoder proposal inflated by 2) and its
        Monte Carlo standard error.
    test_ll_defensive, test_ll_defensive_se : (D,) the same with the prior mixed into the proposal.
    test_ll_ref, test_ll_ref_se : (D,) the reference test log-likelihood (``REFERENCE_LL``: exact
        on LinearJTEx and "Gaussian", importance-sampled from the decoder's exact inverse on
        CubicJTEx) and its standard error; NaN where refvae has none (Mobius).
    restart_test_ll_ref : (D, R) the reference value for every restart.
    knn, knn_se : (D,) smooth k-NN score of the kept restart and its standard error.
    trajectory : list of D arrays, the kept restart's training curve (its own loss, lower is
        better; LiBI: the last repetition's step-1 reconstruction term), as block means of at
        most 500 blocks (for ``refvae.verify.rules.still_improving``).
    val_ll : dict setting label -> mean over replicates of the kept restarts' validation
        log-likelihood (exact where available, else importance-sampled).
    samples : list of D arrays (300, d), draws of the kept restart's p_theta(x) (for figures).
    """
    label: str
    setting: dict
    selected: np.ndarray
    test_ll_is: np.ndarray
    test_ll_is_se: np.ndarray
    test_ll_defensive: np.ndarray
    test_ll_defensive_se: np.ndarray
    test_ll_ref: np.ndarray
    test_ll_ref_se: np.ndarray
    restart_test_ll_ref: np.ndarray
    knn: np.ndarray
    knn_se: np.ndarray
    trajectory: list
    val_ll: dict
    samples: list

    @property
    def test_ll(self):
        """(D,) the reference test log-likelihood where refvae has one, else yacoby2020's estimate."""
        return np.where(np.isfinite(self.test_ll_ref), self.test_ll_ref, self.test_ll_is)


@dataclass
class Table1Result:
    """Outcome of ``table1_experiment`` on one benchmark.

    dataset : one of ``TABLE1_DATASETS``.
    methods : dict label -> MethodScore (``TABLE1_METHODS``, and ``CONTROL`` when run).
    truth_test_ll, truth_test_ll_se : (D,) mean log p(x) of each replicate's test points under
        the ground truth and its standard error (0 for the closed forms); truth_ll_method says how.
    truth_knn, truth_knn_se : (D,) the k-NN score of the ground truth's own samples (the null level).
    control_start_ll : (D,) for the control run, the mean over restarts of the test
        log-likelihood of its starting point (decoder at the truth, before any step): exact, or
        for CubicJTEx and Mobius importance-sampled from the truth's ``laplace_proposal``.
    data : list of D arrays, 300 test points per replicate (for figures).
    """
    dataset: str
    methods: dict
    truth_test_ll: np.ndarray
    truth_test_ll_se: np.ndarray
    truth_ll_method: str
    truth_knn: np.ndarray
    truth_knn_se: np.ndarray
    control_start_ll: np.ndarray
    data: list
    settings: dict = field(default_factory=dict)


def _block_means(a, blocks=500):
    a = np.asarray(a, dtype=float)
    if a.shape[0] <= blocks:
        return a
    edges = np.linspace(0, a.shape[0], blocks + 1).astype(int)
    return np.stack([a[i:j].mean(axis=0) for i, j in zip(edges[:-1], edges[1:])])


def _lead(params):
    """R for parameters with a restarts axis (judged on the decoder's or encoder's weight), else None."""
    W = next(v for k, v in params.items() if k.endswith(".W") or k.endswith(".A"))
    return int(W.shape[0]) if W.ndim == 3 else None


def _train_method(label, setting, make_model, params, x, x_val, *, rng, steps, lr, n_samples, anneal_fraction,
                  libi_batch, is_samples):
    """Train one method from ``params``; returns (model, params, training curve (T, R), validation score (R,)).

    The score is the method's own objective on the validation points (yacoby2020 App. E: "the
    learned model preferred by its own objective on the validation set"): the ELBO with the
    method's final beta for the VAE family and LIN; for LiBI the held-out importance-sampled
    log-likelihood by which ``refvae.libi.fit_libi`` also picks its repetition.
    """
    if label == "LiBI":
        model = make_model()                     # LiBI draws its own code network (new to it anyway)
        res = fit_libi(model, x, x_val, eps_hz=setting["eps_hz"], eps_sigma=setting["eps_sigma"],
                       eps_mu=setting["eps_mu"], repetitions=setting["repetitions"], step1_steps=steps,
                       step2_steps=steps, seed=rng, restarts=_lead(params), optimizer=Adam(lr),
                       batch_size=min(libi_batch, x.shape[0]), n_is_samples=is_samples)
        curve = np.asarray(res.histories[-1]["step1"]["recon"])
        return model, res.params, curve, np.atleast_1d(res.best_log_likelihood)
    if label == "LIN":
        model = make_model()
        seg = setting["segments"]
        res = fit_lin_segmented(model, params, x, segments=seg, steps=seg * max(2, steps // seg), seed=rng,
                                optimizer=Adam(lr), n_samples=n_samples)
        params, curve = res.params, res.history["loss"]
    else:                                        # VAE, beta-VAE, beta-VAE+anneal, the control
        beta = setting.get("beta", 1.0)
        model = make_model(beta=beta)
        sched = ({"beta": linear_ramp(0.0, beta, max(1, int(anneal_fraction * steps)))}
                 if label == "beta-VAE+anneal" else None)
        params, hist = fit_stages(model, params, x, stages=((lr, steps),), seed=rng, n_samples=n_samples,
                                  schedules=sched)
        curve = hist["loss"]
    return model, params, np.asarray(curve), np.atleast_1d(mc_elbo(model, params, x_val, seed=rng, n_samples=16,
                                                                   replicates=2)[0])


def _mean_ll(model, params, x, rng, n_samples, defensive=0.0, proposal=None):
    """Mean importance-sampled log-likelihood per point (R?,) and its standard error (R?,)."""
    ll, se = importance_log_likelihood(model, params, x, seed=rng, n_samples=n_samples, inflation=2.0,
                                       defensive=defensive, proposal=proposal, return_stderr=True)
    ll, se = np.asarray(to_host(ll)), np.asarray(to_host(se))
    return np.atleast_1d(ll.mean(axis=-1)), np.atleast_1d(np.sqrt((se ** 2).sum(axis=-1)) / ll.shape[-1])


#: How ``_reference_ll`` computes each data set's reference test log-likelihood of a learned model.
REFERENCE_LL = {"linear_jtex": "closed form", "gaussian": "closed form",
                "cubic_jtex": "IS from the learned decoder's exact inverse (Laplace proposal x2, prior weight a)",
                "mobius": None}


def _reference_ll(dataset, model, params, x, truth, rng, n_samples, defensive):
    """The most accurate test log-likelihood refvae has for a learned model: mean per point (R?,) and its error (R?,).

    LinearJTEx, "Gaussian": exact (closed form, error 0). CubicJTEx: importance sampling from the
    Laplace approximation at the learned decoder's exact inverse (``laplace_proposal`` with the
    learned Cholesky factor), inflated by 2 and mixed with the prior. Mobius: none (NaN).
    """
    lead = _lead(params)
    shape = () if lead is None else (lead,)
    method = REFERENCE_LL[dataset]
    if method == "closed form":
        ll = np.atleast_1d(exact_log_likelihood(model, params, x).mean(axis=-1))
        return ll, np.zeros_like(ll)
    if method is None:
        return np.full(shape or (1,), np.nan), np.full(shape or (1,), np.nan)
    L = np.asarray(to_host(model.decoder.layers[0].factor(_sub(params, "dec.0."))))
    props = [laplace_proposal(dataset, truth, x, factor=L[r] if lead else L) for r in range(lead or 1)]
    prop = tuple(np.stack([q[i] for q in props]) if lead else props[0][i] for i in range(2))
    return _mean_ll(model, params, x, rng, n_samples, defensive, proposal=prop)


def _setting_label(setting):
    return ", ".join(f"{k}={v:g}" for k, v in setting.items()) or "default"


def table1_experiment(dataset, *, seed, restarts=3, n_datasets=1, n=500, steps=2000, lr=3e-2, libi_lr=None,
                      grid=None, anneal_fraction=0.5, libi_batch=100, n_samples=1, is_samples=5000, defensive=0.2,
                      knn_repeats=KNN_REPEATS, knn_size=KNN_SIZE, knn_alphas=TABLE1_KNN_ALPHAS, control=True,
                      truth_fit_steps=3000, sample_points=300, progress=None):
    """yacoby2020 Table 1 on one benchmark: VAE, beta-VAE, annealed beta-VAE, LIN and LiBI, the truth and a control.

    yacoby2020 Sec. 3 and App. E. For each of ``n_datasets`` replicates (fresh data sets of ``n``
    training, validation and test points each; the paper: 500 each, 10 data sets), every method
    trains the ground truth's decoder architecture (``jtex_model``, ``cubic_model``,
    ``gaussian_model``, ``mobius_model``; noise variance and B fixed at the truth's) from the same
    R initial models (the restarts axis). As in the paper, the restart preferred by the method's
    own objective on the validation points is kept, and the hyper-parameter setting whose kept
    restarts have the highest mean validation log-likelihood is reported. Each kept model is
    scored on the test points by

    - the test log-likelihood three ways: yacoby2020's estimator (importance sampling, encoder
      variance x2, ``is_samples`` samples; the paper: 5000), the same with the prior mixed in
      (weight ``defensive``), and a reference value (``REFERENCE_LL``: exact on LinearJTEx and
      "Gaussian", importance sampling from the learned decoder's inverse on CubicJTEx, none on
      Mobius);
    - the smooth k-NN score (``knn_score``: ``knn_size`` vs ``knn_size`` points, ``knn_repeats``
      repetitions; the paper: 100, 100, 20000).

    The truth's row: its exact log p(x) (``truth_log_likelihood``) and k-NN score. The control
    (``control=True``): a VAE started at the truth (``truth_start``: theta_GT with phi_GT =
    argmin_phi L(theta_GT, phi), yacoby2020 Sec. 1), then trained like the VAE: if the VAE objective's optimum is the
    truth it stays there, if the optimum is elsewhere (LinearJTEx) it leaves; so a random-start
    VAE far below the truth while the control stays near it is an optimisation gap, not a
    problematic optimum.

    Methods, all with Adam(lr) (LiBI: Adam(libi_lr)) for ``steps`` full-batch steps (the paper:
    lr 0.01 for every method, "30k epochs"; its batch size is not given): VAE; beta-VAE;
    beta-VAE with beta ramped linearly from 0 over ``anneal_fraction`` of the steps; LIN,
    yacoby2020's segmented Lagging Inference Networks (``refvae.lin.fit_lin_segmented``, half of
    each segment on the encoder alone); LiBI
    (``refvae.libi.fit_libi``: steps 1 and 2 of ``steps`` steps each per repetition,
    minibatches of ``libi_batch`` points, the code network with the encoder's architecture).

    Parameters
    ----------
    dataset : one of ``TABLE1_DATASETS``.
    seed : int or numpy.random.Generator.
    restarts, n_datasets, n, steps, lr : as above.
    libi_lr : LiBI's learning rate (default ``lr``, as the paper).
    grid : dict method -> sequence of settings (dicts); default ``PAPER_GRIDS[dataset]``. A
        method left out is not run.
    n_samples : Monte Carlo samples per point per training step.
    is_samples, defensive : test-log-likelihood importance sampling (validation too where no
        closed form exists).
    knn_repeats, knn_size, knn_alphas : the k-NN score's settings.
    control : run the control (truth-initialised VAE).
    truth_fit_steps : regression steps of Mobius's truth-fitted decoder (``truth_decoder``).
    sample_points : model draws kept per method and replicate (figures).
    progress : optional callable(fraction, message).

    Returns
    -------
    Table1Result
    """
    _checks.choice("dataset", dataset, _MODELS)
    restarts = _checks.integer("restarts", restarts, min_value=1)
    n_datasets = _checks.integer("n_datasets", n_datasets, min_value=1)
    n = _checks.integer("n", n, min_value=10)
    steps = _checks.integer("steps", steps, min_value=10)
    lr = _checks.scalar("lr", lr, positive=True)
    libi_lr = lr if libi_lr is None else _checks.scalar("libi_lr", libi_lr, positive=True)
    defensive = _checks.scalar("defensive", defensive, low=0.0, high=0.99)
    grid = PAPER_GRIDS[dataset] if grid is None else grid
    if not isinstance(grid, dict) or not set(grid) <= set(TABLE1_METHODS):
        raise ValueError(f"grid must be a dict with keys among {TABLE1_METHODS}, got {grid!r}")
    rng = make_rng(seed)
    make_model = _MODELS[dataset]
    gen = datasets.DATASETS[dataset]
    jobs = [(label, dict(s)) for label in TABLE1_METHODS for s in grid.get(label, ())]
    if control:
        jobs.append((CONTROL, {}))

    def draw_data(m, r):
        return np.asarray(gen(m, r).x)

    truth_ll, truth_se, truth_knn, truth_knn_se, start_ll, data = [], [], [], [], [], []
    runs = {}                 # (label, setting label) -> list over replicates of dicts
    method = "closed form"
    for ds_i in range(n_datasets):
        train, val, test = (gen(n, rng) for _ in range(3))
        x, x_val, x_test, truth = np.asarray(train.x), np.asarray(val.x), np.asarray(test.x), train.truth
        data.append(x_test[:sample_points])
        ll, se, method = truth_log_likelihood(dataset, truth, x_test, seed=rng, n_samples=max(is_samples, 1000))
        truth_ll.append(float(ll.mean()))
        truth_se.append(float(np.sqrt(np.sum(se ** 2)) / len(se)))
        k, k_se = knn_score(lambda m, r: truth.sample_x(r.standard_normal((m, truth.latent_dim)), r), draw_data,
                            rng=rng, repeats=knn_repeats, size=knn_size, alphas=knn_alphas)
        truth_knn.append(k)
        truth_knn_se.append(k_se)
        init = make_model().init(np.random.default_rng(rng.integers(2 ** 63)), restarts)  # shared by the methods
        for j, (label, setting) in enumerate(jobs):
            if progress is not None:
                progress((ds_i + j / len(jobs)) / n_datasets, f"{dataset} {ds_i + 1}/{n_datasets}: {label} "
                         f"{_setting_label(setting)}")
            own = np.random.default_rng(rng.integers(2 ** 63))      # one stream per job
            start = dict(init)
            if label == CONTROL:                 # (theta_GT, phi_GT), yacoby2020 Sec. 1
                start = truth_start(dataset, make_model(), start, x, own, steps=steps // 2, lr=lr,
                                    truth_fit_steps=truth_fit_steps)
                ll0 = _reference_ll(dataset, make_model(), start, x_test, truth, own, is_samples, defensive)[0]
                if not np.all(np.isfinite(ll0)):     # Mobius: sample from the truth's posterior approximation
                    lead = (_lead(start),) if _lead(start) else ()
                    prop = tuple(np.broadcast_to(a, lead + a.shape) for a in laplace_proposal(dataset, truth, x_test))
                    ll0 = _mean_ll(make_model(), start, x_test, own, is_samples, defensive, proposal=prop)[0]
                start_ll.append(float(np.mean(ll0)))
            model, params, curve, score = _train_method(
                label, setting, make_model, start, x, x_val, rng=own, steps=steps,
                lr=libi_lr if label == "LiBI" else lr, n_samples=n_samples,
                anneal_fraction=anneal_fraction, libi_batch=libi_batch, is_samples=is_samples)
            pick = int(np.nanargmax(score)) if np.any(np.isfinite(score)) else 0
            one = take_restart(params, pick) if _lead(params) else params
            val_ll = _reference_ll(dataset, model, one, x_val, truth, own, is_samples, defensive)[0][0]
            if not np.isfinite(val_ll):
                val_ll = float(_mean_ll(model, one, x_val, own, is_samples)[0][0])
            curve = curve.reshape(curve.shape[0], -1)
            runs.setdefault((label, _setting_label(setting)), []).append(
                dict(setting=setting, model=model, params=params, pick=pick, val_ll=float(val_ll), x_test=x_test,
                     truth=truth,
                     curve=_block_means(curve[:, pick if curve.shape[1] > 1 else 0])))

    methods = {}
    for label in dict.fromkeys(lbl for lbl, _ in jobs):
        options = {s: r for (lbl, s), r in runs.items() if lbl == label}
        val = {s: float(np.mean([d["val_ll"] for d in r])) for s, r in options.items()}
        chosen = options[max(val, key=lambda s: val[s] if np.isfinite(val[s]) else -np.inf)]
        cols = {k: [] for k in ("is", "is_se", "def", "def_se", "ref", "ref_se", "restart_ref", "knn", "knn_se",
                                "samples")}
        for d in chosen:
            model, params, pick = d["model"], d["params"], d["pick"]
            one = take_restart(params, pick) if _lead(params) else params
            ll, se = _mean_ll(model, one, d["x_test"], rng, is_samples)
            cols["is"].append(ll[0])
            cols["is_se"].append(se[0])
            ll, se = _mean_ll(model, one, d["x_test"], rng, is_samples, defensive)
            cols["def"].append(ll[0])
            cols["def_se"].append(se[0])
            ref, ref_se = _reference_ll(dataset, model, params, d["x_test"], d["truth"], rng, is_samples, defensive)
            cols["restart_ref"].append(ref)
            cols["ref"].append(ref[pick] if _lead(params) else ref[0])
            cols["ref_se"].append(ref_se[pick] if _lead(params) else ref_se[0])
            k, k_se = knn_score(lambda m, r, one=one, model=model: model_samples(model, one, m, r), draw_data,
                                rng=rng, repeats=knn_repeats, size=knn_size, alphas=knn_alphas)
            cols["knn"].append(k)
            cols["knn_se"].append(k_se)
            cols["samples"].append(np.asarray(to_host(model_samples(model, one, sample_points, rng))))
        methods[label] = MethodScore(
            label, chosen[0]["setting"], np.array([d["pick"] for d in chosen]), np.array(cols["is"]),
            np.array(cols["is_se"]), np.array(cols["def"]), np.array(cols["def_se"]), np.array(cols["ref"]),
            np.array(cols["ref_se"]), np.array(cols["restart_ref"]), np.array(cols["knn"]), np.array(cols["knn_se"]),
            [d["curve"] for d in chosen], val, cols["samples"])
    settings = dict(restarts=restarts, n_datasets=n_datasets, n=n, steps=steps, lr=lr, libi_lr=libi_lr,
                    is_samples=is_samples,
                    defensive=defensive, knn_repeats=knn_repeats, knn_size=knn_size, knn_alphas=tuple(knn_alphas),
                    anneal_fraction=anneal_fraction, libi_batch=libi_batch, n_samples=n_samples,
                    grid={k: [_setting_label(s) for s in v] for k, v in grid.items()})
    return Table1Result(dataset, methods, np.array(truth_ll), np.array(truth_se), method, np.array(truth_knn),
                        np.array(truth_knn_se), np.array(start_ll), data, settings)


# ============================================================================ test log-likelihood estimator

@dataclass
class CoverageCase:
    """One model whose exact log p(x) is known, with the importance-sampling error of every proposal.

    key, title : names; n : test points; position : (n,) a coordinate to plot the errors against
    (``position_label``); errors : proposal name -> (estimate - exact (n,), reported standard error (n,)).
    """
    key: str
    title: str
    n: int
    position: np.ndarray
    position_label: str
    errors: dict
    worst: dict

    @property
    def fraction_off(self):
        """Proposal -> share of the points whose error exceeds 3 reported standard errors."""
        return {k: float(np.mean(np.abs(e) > 3.0 * s)) for k, (e, s) in self.errors.items()}

    @property
    def mean_error(self):
        """Proposal -> mean error over the points (nats per point)."""
        return {k: float(np.mean(e)) for k, (e, s) in self.errors.items()}


@dataclass
class CoverageResult:
    """Outcome of ``is_coverage_experiment``: the cases and the settings."""
    cases: list
    settings: dict


def _coverage_case(key, title, model, params, x, exact, proposals, seed, n_samples, position, position_label):
    errors, worst = {}, {}
    for name, kw in proposals.items():
        ll, se = importance_log_likelihood(model, params, x, seed=seed, n_samples=n_samples, return_stderr=True, **kw)
        ll, se = np.asarray(to_host(ll)), np.asarray(to_host(se))
        errors[name] = (ll - exact, se)
        i = int(np.argmin(ll - exact))
        worst[name] = f"IS {ll[i]:.2f} +- {se[i]:.2f} where the exact value is {exact[i]:.2f}"
    return CoverageCase(key, title, len(x), np.asarray(position), position_label, errors, worst)


def is_coverage_experiment(*, seed, n=500, n_test=500, steps=1000, hidden=(20, 20), lr=1e-2, is_samples=5000,
                           defensive=(0.2, 0.5), progress=None):
    """Does yacoby2020's test-log-likelihood estimator (encoder proposal, variance x2) cover the posterior?

    Two models whose exact log p(x) refvae knows, each with the estimator's error per test point
    against the exact value, for yacoby2020's proposal, the same mixed with the prior (weights
    ``defensive``) and, where K = 1, the prior alone:

    1. a VAE trained briefly on Circle (yacoby2021's data set: the true posteriors of the points
       near the seam (1, 0) are bimodal, z -> -inf and z -> +inf, and a learned decoder that folds
       the line onto the circle has bimodal posteriors wherever it folds), ``hidden`` tanh
       layers, noise 0.01 fixed, ``steps`` Adam(lr) steps on ``n`` points; exact values by
       quadrature (K = 1);
    2. LinearJTEx's ground truth with its KL-optimal mean-field encoder phi_GT (closed form): a
       unimodal but correlated posterior (correlation about -0.81), whose mean-field proposal
       inflated by 2 has importance weights of infinite variance (finite only for |r| < 0.75);
       exact values in closed form.

    Returns
    -------
    CoverageResult
    """
    rng = make_rng(seed)
    n_samples = _checks.integer("is_samples", is_samples, min_value=2)
    cases = []
    # 1. Circle
    train, test = datasets.circle(n, rng), datasets.circle(n_test, rng)
    model = GaussianVAE.from_sizes(2, 1, hidden=tuple(hidden), obs="fixed", sigma2=0.01)
    params = fit(model, model.init(rng), train.x, steps=steps, seed=rng, optimizer=Adam(lr)).params
    if progress is not None:
        progress(0.3, "Circle VAE trained")
    x = np.asarray(test.x)
    exact = exact_log_likelihood(model, params, x)
    proposals = {"paper": {}, **{f"defensive {a:g}": {"defensive": a} for a in defensive},
                 "prior only": {"proposal": (np.zeros((len(x), 1)), np.zeros((len(x), 1))), "inflation": 1.0}}
    cases.append(_coverage_case("circle", "Circle VAE", model, params, x, exact, proposals, rng, n_samples,
                                np.arctan2(x[:, 1], x[:, 0]), "angle of x on the circle"))
    if progress is not None:
        progress(0.7, "LinearJTEx truth")
    # 2. LinearJTEx's truth with phi_GT
    model = jtex_model()
    params = optimal_linear_encoder(model, truth_decoder("linear_jtex", model, model.init(rng), rng))
    x = np.asarray(datasets.linear_jtex(n_test, rng).x)
    exact = exact_log_likelihood(model, params, x)
    proposals = {"paper": {}, **{f"defensive {a:g}": {"defensive": a} for a in defensive}}
    cases.append(_coverage_case("linear_jtex", "LinearJTEx truth with phi_GT", model, params, x, exact, proposals,
                                rng, n_samples, exact, "exact log p(x)"))
    L = np.linalg.cholesky(A_GT @ A_GT.T + np.diag(B_JTEX))
    cov = np.linalg.inv(np.eye(2) + L.T @ L / (SIGMA2 - B_JTEX[0]))
    settings = dict(circle=f"GaussianVAE 2-{'-'.join(map(str, hidden))}-1 tanh, noise 0.01 fixed, {steps} Adam({lr:g}) "
                           f"steps on {n} points; {n_test} test points; {n_samples} importance samples",
                    defensive=tuple(defensive), jtex_correlation=float(cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])),
                    is_samples=n_samples)
    return CoverageResult(cases, settings)

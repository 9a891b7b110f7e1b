"""yacoby2021 Theorem 2: the learned observation noise is the mean squared residual under q.

For fixed decoder theta and encoder phi, -ELBO is minimised over a constant noise variance
at s2_j = (1/N) sum_n E_q(z|x_n)[(x_nj - f_j(z))^2] (per coordinate; the scalar version also
averages over j) (docs/math.md 4.5; ``analytic.noise.optimal_variance``). The closed form is
evaluated on residuals under the model's *own* encoder, with many Monte Carlo samples per
point and a standard error computed from them.

A Gaussian VAE with an MLP encoder and decoder and a learned noise (scalar: berger2020's
LS-VAE; per-dimension vector) is trained with refvae on yacoby2021's Circle (true noise 0.01):

- at convergence of joint training the learned noise equals the closed form for the current
  (theta, phi). With Monte Carlo gradients "convergence" is a stationary jitter of all
  parameters, and the stationarity condition of the noise holds on average over it, so the
  comparison is made at 10 iterates spread over the last training stage and averaged;
- refitting only the noise with theta, phi frozen (yacoby2021's "refit") from a wrong start
  lands on the closed form within its Monte Carlo error.

The learned noise (0.014-0.023 here, scalar mode) exceeds the true 0.01, as yacoby2021 reports on
Spiral Dots (0.014-0.020), but that is a property of the fit reached, not of the theorem: a run that
models one coordinate only can leave the other below 0.01, so it is not asserted.
"""
import numpy as np
import pytest

from analytic import noise
from refvae import Adam, GaussianVAE, datasets, fit
from refvae.backend import make_rng, normal, to_host
from refvae.distributions import reparameterize
from tests.theorems.helpers import with_values
from refvae.train import fit_stages

N = 256
TRUE_NOISE = 0.01
# Adam, full batch, one sample per point. Initial noise 0.01: from 0.05 or 1.0 the vector
# mode falls into a partly collapsed optimum (one coordinate left as noise, s2_j ~ 0.5).
SCHEDULE = [(0.01, 1500), (0.003, 1000), (0.001, 500)]
FINAL_LR, FINAL_STEPS, EVERY = 3e-4, 1000, 100


def closed_form(model, params, x, per_dim, *, n_samples=200, seed=0):
    """Theorem 2's s2 for the model's own encoder, by Monte Carlo, and its standard error.

    Returns (s2, se): arrays (d,) for per_dim, else floats.
    """
    mu, lv = model.encode(params, x)
    eps = normal(make_rng(seed), (n_samples,) + tuple(mu.shape))
    z, _ = reparameterize(mu, lv, eps)
    mean, _ = model.decode(params, z)
    r2 = to_host((x - mean) ** 2)                                  # (S, N, d)
    s2 = noise.optimal_variance(r2, per_dim=per_dim)
    per_point = r2 if per_dim else r2.mean(axis=-1, keepdims=True)
    # the data are fixed: the error is the sampling error of z, point by point
    se = np.sqrt(per_point.var(axis=0, ddof=1).sum(axis=0) / n_samples) / x.shape[0]
    return s2, (se if per_dim else float(se[0]))


# The vector mode is slow-only (~10 s CPU: its own 6000-step training and refit). The default suite
# keeps Theorem 2 in the vector mode too: the ``noise_theorem2`` claim (tests/verify/test_claims.py)
# trains a linear VAE with a per-coordinate noise to convergence and checks every coordinate against
# Eq. 7 under the learned encoder (4 combined standard deviations, the iterate settled); the scalar
# mode below checks both statements on this MLP.
@pytest.fixture(scope="module", params=["scalar", pytest.param("vector", marks=pytest.mark.slow)])
def trained(request):
    obs = request.param
    X = np.asarray(datasets.circle(N, seed=0, sigma2=TRUE_NOISE).x)
    model = GaussianVAE.from_sizes(2, 1, hidden=(32,), activation="tanh", obs=obs, sigma2=TRUE_NOISE)
    params = model.init(np.random.default_rng(1))
    rng = np.random.default_rng(1)
    params, _ = fit_stages(model, params, X, stages=SCHEDULE, seed=rng)
    per_dim = obs == "vector"
    checkpoints = []

    def record(step, p, terms):
        if (step + 1) % EVERY == 0:
            checkpoints.append((np.exp(to_host(p["dec.obs_logvar"])), *closed_form(model, p, X, per_dim, seed=step)))

    params = fit(model, params, X, steps=FINAL_STEPS, seed=rng, optimizer=Adam(FINAL_LR), callback=record).params
    return obs, model, params, X, checkpoints


def test_learned_noise_equals_closed_form_at_convergence(trained):
    obs, model, params, X, checkpoints = trained
    learned = np.array([c[0] for c in checkpoints])                # (10, 1) or (10, d)
    closed = np.array([np.atleast_1d(c[1]) for c in checkpoints])
    se_mc = np.array([np.atleast_1d(c[2]) for c in checkpoints])
    ratio = learned / closed - 1.0
    # The ratio fluctuates from iterate to iterate (measured sd 1-2%: the jitter of theta, phi
    # moves the residuals) around a small mean (measured -0.1% to +2.1% over both modes and 4
    # initialisations with 5000 steps before the last stage; +0.6% to +1.2% in the scalar mode over
    # 4 initialisations with the 3000 of SCHEDULE; mostly positive: the model still improves slowly at
    # the end of training and the noise follows it with a delay). Tolerance on the mean over the 10
    # iterates: 5%.
    # A wrong noise model is off by a factor of 2 or more (e.g. dropping the 1/2 in front of
    # log s2 in the log-density halves the optimum).
    assert np.all(np.abs(ratio.mean(axis=0)) < 0.05), \
        f"{obs}: learned / closed - 1 = {ratio.mean(0)} (sd {ratio.std(0)}); learned {learned[-1]}, closed {closed[-1]}"
    # the closed form itself is precise (measured relative Monte Carlo se <= 1%)
    assert np.all(se_mc / closed < 0.02)


def test_refit_noise_lands_on_closed_form(trained):
    obs, model, params, X, _ = trained
    per_dim = obs == "vector"
    s2, se = closed_form(model, params, X, per_dim, n_samples=400, seed=11)
    # start 5x too large; only the noise is trained, theta and phi frozen (yacoby2021's refit)
    start = with_values(params, dec__obs_logvar=params["dec.obs_logvar"] + np.log(5.0))
    refit, _ = fit_stages(model, start, X, stages=[(0.03, 300), (0.003, 300), (0.001, 300)], seed=2,
                     only=("dec.obs_logvar",), average=300, n_samples=8)
    for k in params:
        if k != "dec.obs_logvar":          # frozen (the iterate average of a constant)
            np.testing.assert_allclose(refit[k], params[k], rtol=1e-12, atol=1e-15)
    s2_refit = np.exp(to_host(refit["dec.obs_logvar"]))
    # The refit's own error is small (8 samples per point, 300 averaged iterates: its spread over
    # refit seeds is <= 0.4 se), so the closed form's Monte Carlo standard error bounds the
    # difference: measured -2.0..2.4 se over 6 trained models, both modes (-2.0..0.6 se over 4 scalar
    # models with the 3000-step SCHEDULE).
    assert np.all(np.abs(s2_refit - s2) < 4 * np.atleast_1d(se)), f"{obs}: refit {s2_refit} vs closed {s2} (se {se})"
    # guard against a vacuous bound (measured relative se <= 0.7%)
    assert np.all(np.atleast_1d(se) < 0.02 * np.atleast_1d(s2))

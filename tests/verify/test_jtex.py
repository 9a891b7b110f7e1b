"""refvae.experiments.jtex pieces the verify claims do not check themselves.

The claims ``linearjtex_objective`` and ``libi_table1`` (tests/verify/test_claims.py runs them
in miniature) cover the training procedures; here: the CholeskyLinear decoder's gradient and
its identity with analytic's C.2 model, the model sampler, the k-NN score's null level, the
closed-form objective's minimum, and input validation.
"""
import numpy as np
import pytest

from refvae.experiments import jtex


def test_model_samples_follow_the_model_marginal():
    # LinearJTEx's VAE at A = A_GT generates p(x) = N(0, A A^T + sigma2 I) (docs/math.md 4.1):
    # each entry of the sample covariance within 4 standard errors (n = 20000, fixed seed)
    model = jtex.jtex_model()
    params = model.init(np.random.default_rng(0), restarts=2)
    params["dec.A"] = np.stack([jtex.A_GT, jtex.A_GT])
    x = jtex.model_samples(model, params, 20000, np.random.default_rng(1))
    assert x.shape == (2, 20000, 2)
    cov = jtex.A_GT @ jtex.A_GT.T + jtex.SIGMA2 * np.eye(2)
    for r in range(2):
        xc = x[r] - x[r].mean(axis=0)
        prod = xc[:, :, None] * xc[:, None, :]
        se = prod.std(axis=0) / np.sqrt(len(xc))
        assert np.all(np.abs(prod.mean(axis=0) - cov) < 4 * se)


def test_knn_score_null_level_and_power():
    rng = np.random.default_rng(3)

    def gauss(m, r):
        return r.standard_normal((m, 2))

    def shifted(m, r):                       # two "models" side by side: (R, m, d)
        return np.stack([r.standard_normal((m, 2)), r.standard_normal((m, 2)) + [1.0, 0.0]])

    mean, se = jtex.knn_score(gauss, gauss, rng=rng, repeats=40)
    assert isinstance(mean, float) and abs(mean) < 4 * se           # same distribution: about 0
    means, ses = jtex.knn_score(shifted, gauss, rng=rng, repeats=40)
    assert means.shape == (2,)
    assert abs(means[0]) < 4 * ses[0]
    assert means[1] > 3.0 and means[1] > means[0] + 4 * ses[1]     # a shift of one sd is detected


def test_minimise_objective_reaches_yacoby2020_optimum():
    population = jtex.A_GT @ jtex.A_GT.T + jtex.SIGMA2 * np.eye(2)
    L_star, A_star = jtex.minimise_objective(population, starts=3)
    assert round(L_star, 3) == 0.196
    assert sum(jtex.yacoby2020_objective(A_star, population)) == pytest.approx(L_star, abs=1e-12)
    assert round(sum(jtex.yacoby2020_objective(jtex.A_GT, population)), 3) == 0.532


def test_second_moment_is_about_zero():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(jtex.second_moment(x), x.T @ x / 2)


def test_table1_rejects_bad_input():
    with pytest.raises(ValueError, match="dataset must be one of"):
        jtex.table1_experiment("mobius", seed=0)
    with pytest.raises(ValueError, match="restarts must be >= 1"):
        jtex.table1_experiment("linear_jtex", seed=0, restarts=0)
    with pytest.raises(ValueError, match="n must be >= 3"):
        jtex.linear_jtex_objective_experiment(seed=0, n=2)

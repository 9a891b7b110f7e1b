"""LiBI (docs/math.md 2.4; yacoby2020 Sec. 2, App. D): step-1 loss and gradient, steps 2 and 3, the driver."""
import math

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import refvae.libi as libi_module
from refvae.gradcheck import assert_grad
from refvae.libi import (YACOBY2020_GRID, LiBIStep1, fit_libi, init_libi, reinit_code, run_step1, run_step2,
                         safe_exp)
from refvae.metrics.hz import hz_statistic
from refvae.objectives import GaussianVAE
from refvae.optim import Adam
from refvae.train import fit


def toy_data(n, seed):
    """A curved 1-D manifold in R^2 with noise sd 0.1: x = (sin z, z / 2) + e."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 1))
    return np.concatenate([np.sin(z), 0.5 * z], axis=1) + 0.1 * rng.standard_normal((n, 2))


def small_vae(obs="fixed"):
    return GaussianVAE.from_sizes(2, 1, hidden=(8,), activation="tanh", obs=obs, sigma2=0.01)


# -- the safe exponential -----------------------------------------------------------
def test_safe_exp():
    u = np.array([-3.0, 0.0, 10.0, 20.0, 20.5, 1e6])
    val, der = safe_exp(u, 20.0)
    np.testing.assert_allclose(val[:4], np.exp(u[:4]), rtol=1e-15)
    np.testing.assert_allclose(der[:4], np.exp(u[:4]), rtol=1e-15)
    assert val[4] == pytest.approx(math.exp(20.0) * 1.5, rel=1e-15) and der[4] == math.exp(20.0)
    assert np.all(np.isfinite(val)) and np.all(np.diff(val) > 0)
    # C^1 at the cap: one-sided difference quotients agree with exp(cap)
    h = 1e-6
    right = (safe_exp(np.array(20.0 + h), 20.0)[0] - safe_exp(np.array(20.0), 20.0)[0]) / h
    left = (safe_exp(np.array(20.0), 20.0)[0] - safe_exp(np.array(20.0 - h), 20.0)[0]) / h
    assert right == pytest.approx(math.exp(20.0), rel=1e-5) and left == pytest.approx(math.exp(20.0), rel=1e-5)


# -- the step-1 loss ----------------------------------------------------------------
def test_step1_loss_matches_direct_formula():
    vae = GaussianVAE.from_sizes(3, 2, hidden=(5,), activation="tanh", obs="vector", sigma2=0.3)
    step1 = LiBIStep1(vae, eps_hz=10.0, eps_sigma=0.5, eps_mu=0.2)
    params = step1.init(np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((11, 3))
    loss, _, terms = step1.value_and_grad(params, x, with_terms=True)
    z = step1.codes(params, x)
    mean, logvar = vae.decode(params, z)
    s2 = np.exp(logvar)
    recon = np.mean(np.sum(0.5 * ((x - mean) ** 2 / s2 + np.log(2 * np.pi * s2)), axis=1))
    cov = np.cov(z, rowvar=False, bias=True)
    expected = (recon + math.exp(hz_statistic(z) / 10.0) + math.exp(np.sum((cov - np.eye(2)) ** 2) / 0.5)
                + math.exp(np.sum(z.mean(axis=0) ** 2) / 0.2))
    assert loss == pytest.approx(expected, rel=1e-12)
    assert terms["recon"] == pytest.approx(recon, rel=1e-12)
    # h is the mean head of an encoder-shaped network
    np.testing.assert_array_equal(z, vae.encoder.forward({k[5:]: v for k, v in params.items()
                                                          if k.startswith("code.")}, x)[0][:, :2])


# Fixed cases run on every run besides the random ones: one per observation mode, each with a restarts
# axis of 3 and K = 2 (off-diagonal covariance terms); between them every penalty's safe exponential is
# on both of its branches (HZ / eps_hz: linear above the cap of 3 in the first and third, exponential in
# the others; ||Cov - I||^2 / eps_sigma: linear in the first two, on different branches in different
# restarts in the third), so a bug confined to one mode, one branch or one restart is caught every time.
# Checked with deliberate mutations (hypothesis running these cases only): the capped branch's derivative
# taken as its value; the mean, covariance or HZ penalty's gradient off by 1%; the reconstruction's
# cotangent off by 1%; the decoder-output log-variance or the vector noise gradient off by 1%; each
# makes the test fail. The random examples, 20 before, are now 6: they add the shapes (no restarts axis
# or one restart, K = 1, batches of 5-9).
STEP1_HARD = [dict(obs="fixed", eps_hz=0.001, eps_sigma=0.2, eps_mu=0.2, cap=3.0, seed=0),
              dict(obs="scalar", eps_hz=1.0, eps_sigma=0.2, eps_mu=0.5, cap=3.0, seed=0),
              dict(obs="vector", eps_hz=0.001, eps_sigma=0.5, eps_mu=0.2, cap=3.0, seed=1),
              dict(obs="decoder", eps_hz=20.0, eps_sigma=0.5, eps_mu=0.5, cap=100.0, seed=0)]


def _step1_hard_cases(test):
    for case in STEP1_HARD:
        test = example(restarts=3, K=2, batch=7, **case)(test)
    return test


@settings(max_examples=6, deadline=None)
@given(obs=st.sampled_from(["fixed", "scalar", "vector", "decoder"]), restarts=st.sampled_from([None, 1, 3]),
       K=st.integers(1, 2), batch=st.integers(5, 9), eps_hz=st.sampled_from([0.001, 1.0, 20.0]),
       eps_sigma=st.sampled_from([0.2, 0.5]), eps_mu=st.sampled_from([0.2, 0.5]),
       cap=st.sampled_from([3.0, 100.0]), seed=st.integers(0, 2 ** 32 - 1))
@_step1_hard_cases
# two draws where the whole loss's difference quotient cannot resolve the output bias's O(1) gradient
@example(obs="fixed", restarts=None, K=2, batch=6, eps_hz=1.0, eps_sigma=0.5, eps_mu=0.2, cap=100.0, seed=1211)
@example(obs="fixed", restarts=None, K=1, batch=7, eps_hz=0.001, eps_sigma=0.2, eps_mu=0.2, cap=3.0, seed=143627820)
def test_step1_gradient(obs, restarts, K, batch, eps_hz, eps_sigma, eps_mu, cap, seed):
    rng = np.random.default_rng(seed)
    vae = GaussianVAE.from_sizes(3, K, hidden=(4,), activation="tanh", obs=obs, sigma2=0.5)
    step1 = LiBIStep1(vae, eps_hz=eps_hz, eps_sigma=eps_sigma, eps_mu=eps_mu, max_exponent=cap)
    params = init_libi(vae, rng, restarts)                      # full LiBI dict: "enc.*" is ignored
    x = rng.standard_normal((batch, 3))
    loss, grads, terms = step1.value_and_grad(params, x, with_terms=True)
    # Finite differences lose ~1e-16 |loss| / h to rounding: keep |loss| small enough for a 1e-6
    # check (cap = 3 still puts every penalty of eps_hz = 0.001 in the linear regime).
    assume(float(np.max(loss)) < 1e6)
    assert set(grads) == {k for k in params if not k.startswith("enc.")}
    # keep the finite differences off the cap of the safe exponential (a kink of the 2nd derivative)
    for name, eps in (("hz", eps_hz), ("cov_dev", eps_sigma), ("mean_sq", eps_mu)):
        assume(np.all(np.abs(np.atleast_1d(terms[name]) / eps - cap) > 0.5))
    # The code network's output bias has an O(1) gradient whatever the penalties (HZ and Cov(Z) do not
    # change under a common shift of the codes), which the difference quotient of the whole loss
    # resolves only to ~1e-16 |loss| / h: measured 2e-6 to 3e-6 relative (obs="fixed", eps_hz = 0.001 or
    # 1, |loss| up to 1.7e5). It is checked against differences of the terms a shift changes
    # (``_bias_fd``), every other key by the whole loss.
    bias = max((k for k in params if k.startswith("code.") and k.endswith(".b")), key=lambda k: int(k.split(".")[1]))
    assert_grad(lambda p: step1.value_and_grad(p, x), params, keys=[k for k in grads if k != bias], rtol=1e-6)
    exact = _bias_fd(step1, params, x, bias)
    np.testing.assert_allclose(grads[bias], exact, rtol=1e-6, atol=1e-9 * max(np.abs(exact).max(), 1.0))


@pytest.mark.parametrize("restarts", [None, 2])
def test_step1_gradient_in_the_capped_regime(restarts):
    # eps_hz = 0.001 (yacoby2020's grid) with a cap of 3: the HZ penalty is on its linear branch.
    vae = GaussianVAE.from_sizes(3, 2, hidden=(4,), activation="tanh", obs="scalar", sigma2=0.5)
    step1 = LiBIStep1(vae, eps_hz=0.001, eps_sigma=0.2, eps_mu=0.2, max_exponent=3.0)
    params = step1.init(np.random.default_rng(1), restarts)
    x = np.random.default_rng(2).standard_normal((8, 3))
    terms = step1.value_and_grad(params, x, with_terms=True)[2]
    assert np.all(terms["hz"] / 0.001 > 3.0 + 10.0)
    assert_grad(lambda p: step1.value_and_grad(p, x), params, rtol=1e-6)


def _bias_fd(step1, params, x, key, h=1e-6):
    """Central differences of the terms that a common shift of the codes changes (the reconstruction
    and the mean penalty) along the output bias's mean head: the exact bias gradient of the step-1 loss."""
    K = step1.latent_dim
    out = np.zeros(params[key].shape)
    for k in range(K):
        vals = []
        for sign in (1.0, -1.0):
            p = dict(params)
            b = p[key].copy()
            b[..., k] += sign * h
            p[key] = b
            t = step1.value_and_grad(p, x, with_terms=True)[2]
            vals.append(t["recon"] + t["pen_mu"])
        out[..., k] = (vals[0] - vals[1]) / (2 * h)
    return out


@pytest.mark.parametrize("case", ["gaussian", "mlp"])
def test_output_bias_gradient_is_exact_at_eps_hz_0001(case):
    # yacoby2020's eps_HZ = 0.001 puts the HZ penalty on the capped branch, gradient ~1e46 per code;
    # HZ and Cov are shift invariant, so their exact bias gradient is 0 and the bias gets the O(1)
    # gradient of the reconstruction and the mean penalty (summing the ~1e46 entries gave ~1e30).
    from refvae import datasets
    from refvae.experiments.jtex import gaussian_model
    if case == "gaussian":         # yacoby2020's "Gaussian" set: linear code network R^4 -> R^2
        vae, x, key = gaussian_model(), datasets.gaussian(100, 0).x, "code.b"
    else:
        vae, x, key = small_vae(), toy_data(60, 1), "code.2.b"
    params = init_libi(vae, np.random.default_rng(0))
    step1 = LiBIStep1(vae, eps_hz=0.001, eps_sigma=0.2, eps_mu=0.5)
    _, grads, terms = step1.value_and_grad(params, x, with_terms=True)
    assert terms["pen_hz"] > 1e40                                   # the regime of the issue
    exact = _bias_fd(step1, params, x, key)
    np.testing.assert_allclose(grads[key], exact, rtol=1e-6, atol=1e-9 * np.abs(exact).max())
    assert np.all(grads[key][vae.latent_dim:] == 0.0)              # the unused log-variance head
    # the exact value does not depend on the shift-invariant penalties' temperatures
    mild = LiBIStep1(vae, eps_hz=1e6, eps_sigma=1e6, eps_mu=0.5).value_and_grad(params, x)[1]
    np.testing.assert_allclose(grads[key], mild[key], rtol=1e-12)


@pytest.mark.parametrize("eps_hz", [0.001, 1.0])
def test_hz_penalty_is_constant_for_a_square_affine_code_network(eps_hz):
    # LinearJTEx: h(x) = x W + b with d = K = 2, so HZ(h(x)) = HZ(x) (affine invariance): the HZ
    # penalty has exact gradient 0 in varphi, at eps_HZ = 0.001 as at 1
    from refvae import datasets
    from refvae.experiments.jtex import jtex_model
    vae = jtex_model()
    x = datasets.linear_jtex(80, 0).x
    step1 = LiBIStep1(vae, eps_hz=eps_hz, eps_sigma=0.5, eps_mu=0.5)
    assert step1.hz_constant
    for seed in range(3):
        params = init_libi(vae, np.random.default_rng(seed))
        _, grads, terms = step1.value_and_grad(params, x, with_terms=True)
        assert terms["hz"] == pytest.approx(float(hz_statistic(x)), rel=1e-10)
        without = LiBIStep1(vae, eps_hz=1e9, eps_sigma=0.5, eps_mu=0.5).value_and_grad(params, x)[1]
        for k in grads:
            np.testing.assert_allclose(grads[k], without[k], rtol=1e-12, atol=0)
        if eps_hz == 1.0:                                           # and it is the gradient of the loss
            assert_grad(lambda p: step1.value_and_grad(p, x), params, rtol=1e-6)
    assert not LiBIStep1(small_vae(), eps_hz=1.0, eps_sigma=0.5, eps_mu=0.5).hz_constant


def test_step1_is_finite_on_the_yacoby2020_grid_extremes():
    vae = small_vae()
    step1 = LiBIStep1(vae, eps_hz=min(YACOBY2020_GRID["eps_hz"]), eps_sigma=0.2, eps_mu=0.2)
    params = step1.init(np.random.default_rng(0))
    x = toy_data(50, 0) * 30.0                                   # far-from-standard codes: huge exponents
    loss, grads, terms = step1.value_and_grad(params, x, with_terms=True)
    assert terms["hz"] / 0.001 > 100                             # exp would overflow float32 and be ~1e43+ here
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads.values())


def test_step1_trains_with_fit_and_improves():
    vae = small_vae()
    step1 = LiBIStep1(vae, eps_hz=1.0, eps_sigma=0.5, eps_mu=0.5)
    x = toy_data(100, 1)
    params = step1.init(np.random.default_rng(2))
    res = run_step1(step1, params, x, steps=150, seed=3)
    loss = res.history["loss"]
    assert loss[-1] < 0.05 * loss[0]
    assert res.history["recon"][-1] < res.history["recon"][0] - 1.0
    for r in (None, 2):   # the plain refvae.train.fit contract, with and without restarts
        out = fit(step1, step1.init(np.random.default_rng(2), r), x, steps=3, seed=0, optimizer=Adam(1e-2))
        assert out.history["loss"].shape == ((3,) if r is None else (3, r))


# -- steps 2 and 3 ------------------------------------------------------------------
def test_step2_trains_the_encoder_only():
    vae = small_vae(obs="scalar")
    x = toy_data(80, 4)
    params = init_libi(vae, np.random.default_rng(5), restarts=2)
    params = run_step1(LiBIStep1(vae, eps_hz=1.0, eps_sigma=0.5, eps_mu=0.5), params, x, steps=20, seed=6).params
    res = run_step2(vae, params, x, steps=60, seed=7)
    for k, v in params.items():
        if k.startswith("enc."):
            assert not np.array_equal(res.params[k], v)
        else:                                                    # theta and h bitwise untouched
            assert res.params[k] is v or np.array_equal(res.params[k], v)
            assert res.params[k].tobytes() == v.tobytes()
    assert np.all(res.history["loss"][-1] < res.history["loss"][0])
    assert np.all(res.history["beta"] == 1.0)


def test_step2_uses_beta_one_whatever_the_vae_says():
    vae = GaussianVAE.from_sizes(2, 1, hidden=(8,), sigma2=0.01, beta=5.0)
    res = run_step2(vae, init_libi(vae, np.random.default_rng(0)), toy_data(20, 0), steps=2, seed=0)
    assert np.all(res.history["beta"] == 1.0)


def test_step3_copies_the_mean_network():
    vae = GaussianVAE.from_sizes(2, 2, hidden=(8,), sigma2=0.1)
    step1 = LiBIStep1(vae, eps_hz=1.0, eps_sigma=0.5, eps_mu=0.5)
    params = init_libi(vae, np.random.default_rng(0), restarts=3)
    x = toy_data(10, 1)
    assert not np.allclose(step1.codes(params, x), vae.encode(params, x)[0])
    new = reinit_code(params)
    np.testing.assert_array_equal(step1.codes(new, x), vae.encode(new, x)[0])
    for k in params:
        if k.startswith("code."):
            assert new[k] is not params["enc." + k[5:]]          # a copy, not an alias
        else:
            assert new[k] is params[k]
    new["code.0.W"][...] = 0.0
    assert not np.all(params["enc.0.W"] == 0.0)


# -- the driver ---------------------------------------------------------------------
def test_driver_keeps_the_best_repetition_per_restart(monkeypatch):
    # Scripted held-out scores (per repetition, per restart): best is repetition 1 for restart 0
    # and repetition 0 for restart 1.
    scores = iter([[1.0, 5.0], [3.0, 2.0], [2.0, 4.0]])

    def scripted(model, params, x, **kw):
        return np.repeat(np.asarray(next(scores))[:, None], x.shape[0], axis=1)

    monkeypatch.setattr(libi_module, "importance_log_likelihood", scripted)
    vae = small_vae()
    x, xv = toy_data(40, 0), toy_data(10, 1)
    kw = dict(eps_hz=1.0, eps_sigma=0.5, eps_mu=0.5, step1_steps=5, step2_steps=5, seed=11, restarts=2)
    res = fit_libi(vae, x, xv, repetitions=3, **kw)
    np.testing.assert_array_equal(res.log_likelihoods, [[1, 5], [3, 2], [2, 4]])
    np.testing.assert_array_equal(res.best_repetition, [1, 0])
    np.testing.assert_array_equal(res.best_log_likelihood, [3.0, 5.0])
    # the same seed replays the same training: runs with 1 and 2 repetitions end where the
    # chosen repetitions ended
    scores = iter([[0.0, 0.0]] * 3)
    after = [fit_libi(vae, x, xv, repetitions=r, **kw).last_params for r in (1, 2)]
    for k in res.params:
        np.testing.assert_array_equal(res.params[k][0], after[1][k][0])
        np.testing.assert_array_equal(res.params[k][1], after[0][k][1])
    assert any(not np.array_equal(res.params[k], res.last_params[k]) for k in res.params)


def test_short_run_on_toy_data_improves():
    vae = small_vae()
    x, xv = toy_data(150, 0), toy_data(100, 1)
    res = fit_libi(vae, x, xv, eps_hz=1.0, eps_sigma=0.2, eps_mu=0.2, repetitions=2, step1_steps=200,
                   step2_steps=200, seed=0, n_is_samples=200)
    h = res.histories
    # the step-1 loss is bounded below by 3 - max log p(x|z) ~ 0 here (each penalty is >= 1)
    assert h[0]["step1"]["loss"][-1] < 0.1 * h[0]["step1"]["loss"][0]
    assert h[0]["step2"]["loss"][-1] < h[0]["step2"]["loss"][0]
    assert h[1]["step1"]["loss"][0] < h[0]["step1"]["loss"][0]   # step 3 starts step 1 from a good h
    assert res.best_log_likelihood == res.log_likelihoods.max()
    # the held-out fit beats the trivial model N(mean, Cov) of the data
    cov = np.cov(x, rowvar=False, bias=True)
    diff = xv - x.mean(axis=0)
    gauss = np.mean(-0.5 * np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
                    - 0.5 * np.log(np.linalg.det(2 * np.pi * cov)))
    assert res.best_log_likelihood > gauss + 0.2


def test_bad_inputs():
    vae = small_vae()
    with pytest.raises(TypeError, match="vae must be a refvae GaussianVAE"):
        LiBIStep1(object(), eps_hz=1.0, eps_sigma=0.5, eps_mu=0.5)
    with pytest.raises(ValueError, match="eps_hz must be positive"):
        LiBIStep1(vae, eps_hz=0.0, eps_sigma=0.5, eps_mu=0.5)
    with pytest.raises(ValueError, match="max_exponent must be <= 700"):
        LiBIStep1(vae, eps_hz=1.0, eps_sigma=0.5, eps_mu=0.5, max_exponent=800)
    step1 = LiBIStep1(vae, eps_hz=1.0, eps_sigma=0.5, eps_mu=0.5)
    params = step1.init(np.random.default_rng(0))
    with pytest.raises(ValueError, match="noise must be None"):
        step1.value_and_grad(params, toy_data(10, 0), np.zeros((10, 1)))
    with pytest.raises(ValueError, match="at least K \\+ 2 = 3"):
        step1.value_and_grad(params, toy_data(2, 0))
    with pytest.raises(ValueError, match="x must have last dimension 2"):
        step1.value_and_grad(params, np.zeros((10, 3)))
    with pytest.raises(KeyError, match="no 'code"):
        step1.value_and_grad(vae.init(np.random.default_rng(0)), toy_data(10, 0))
    with pytest.raises(ValueError, match=r"params lacks the model's entries \['dec.0.W'"):
        step1.value_and_grad({k: v for k, v in params.items() if k != "dec.0.W"}, toy_data(10, 0))
    with pytest.raises(ValueError, match=r"params\['code.0.W'\] must have shape"):
        step1.value_and_grad({**params, "code.0.W": np.zeros((2, 5))}, toy_data(10, 0))
    with pytest.raises(KeyError, match="no 'enc"):
        reinit_code(params)
    other = init_libi(GaussianVAE.from_sizes(2, 1, hidden=(3,)), 0)
    with pytest.raises(ValueError, match="keys and shapes"):
        reinit_code({**init_libi(vae, 0), **{k: v for k, v in other.items() if k.startswith("code.")}})
    kw = dict(eps_hz=1.0, eps_sigma=0.5, eps_mu=0.5, step1_steps=1, step2_steps=1, seed=0)
    with pytest.raises(ValueError, match="repetitions must be >= 1"):
        fit_libi(vae, toy_data(10, 0), toy_data(5, 1), repetitions=0, **kw)
    with pytest.raises(ValueError, match="x_val must have last dimension 2"):
        fit_libi(vae, toy_data(10, 0), np.zeros((5, 3)), repetitions=1, **kw)
    with pytest.raises(ValueError, match="batch_size must be >= 3"):
        fit_libi(vae, toy_data(10, 0), toy_data(5, 1), repetitions=1, batch_size=2, **kw)
    with pytest.raises(ValueError, match=r"params lacks the model.s entries \[.code\.0\.W.,"):
        fit_libi(vae, toy_data(10, 0), toy_data(5, 1), repetitions=1, params=vae.init(np.random.default_rng(0)), **kw)

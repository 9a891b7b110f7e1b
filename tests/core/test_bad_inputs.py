"""Inputs that used to be accepted silently (or crashed unhelpfully) get an error naming the argument,
what was expected and what came, before any work."""
import re

import numpy as np
import pytest

import analytic.linear_gaussian as alg
import analytic.linear_vae as alv
import analytic.ppca as ppca
from refvae.iwae import IWAE
from refvae.libi import fit_libi, init_libi
from refvae.lin import fit_lin
from refvae.metrics import importance_log_likelihood
from refvae.metrics.quadrature import log_likelihood as quadrature_log_likelihood
from refvae.objectives import GaussianVAE
from refvae.train import fit, fit_stages

X = np.random.default_rng(0).standard_normal((30, 2))
MODEL = GaussianVAE.from_sizes(2, 1, (4,), obs="scalar")
P = MODEL.init(0)
NOISE = np.zeros((30, 1))
BOOL_X = X > 0
MASKED_X = np.ma.masked_array(X, mask=np.zeros(X.shape, dtype=bool))
MASKED_X.mask[0, 0] = True


def replaced(key, value):
    return {**P, key: value}


DATA_CASES = [  # (call, error type, message)
    (lambda: fit(MODEL, P, BOOL_X, steps=1, seed=0), TypeError, "x must be a real numeric array .* got dtype bool"),
    (lambda: fit(MODEL, P, MASKED_X, steps=1, seed=0), TypeError, "x must be a plain array, got a numpy.ma.MaskedArray"),
    (lambda: fit(MODEL, P, X[:0], steps=1, seed=0), ValueError, r"x must hold at least one data point, got shape \(0, 2\)"),
    (lambda: MODEL.value_and_grad(P, BOOL_X, NOISE), TypeError, "x must be a real numeric array .* got dtype bool"),
    (lambda: MODEL.value_and_grad(P, MASKED_X, NOISE), TypeError, "x must be a plain array"),
    (lambda: MODEL.value_and_grad(P, X, NOISE > 0), TypeError, "noise must be a real numeric array .* got dtype bool"),
    (lambda: fit_lin(MODEL, P, BOOL_X, x_val=X, steps=1, seed=0), TypeError, "x must be a real numeric array"),
    (lambda: quadrature_log_likelihood(BOOL_X, lambda z: np.zeros((len(z), 2)), 1, 0.1), TypeError,
     "x must be a real numeric array .* got dtype bool"),
    (lambda: quadrature_log_likelihood(MASKED_X, lambda z: np.zeros((len(z), 2)), 1, 0.1), TypeError,
     "x must be a plain array"),
    (lambda: ppca.eigen(BOOL_X), TypeError, "X must be a real numeric array .* got dtype bool"),
    (lambda: ppca.eigen(MASKED_X), TypeError, "X must be a plain array, got a numpy.ma.MaskedArray"),
    (lambda: alv.collapse_threshold(BOOL_X), TypeError, "X must be a real numeric array"),
    (lambda: alg.log_likelihood(MASKED_X, np.ones((2, 1)), np.zeros(2), 0.1), TypeError, "x must be a plain array"),
]

PARAM_CASES = [  # parameters that must be finite real floating-point arrays
    (replaced("dec.0.b", P["dec.0.b"] * np.nan), ValueError, r"params\['dec.0.b'\] must be finite"),
    (replaced("enc.0.W", P["enc.0.W"] + np.inf), ValueError, r"params\['enc.0.W'\] must be finite"),
    ({k: v + 0j for k, v in P.items()}, TypeError, r"params\['enc.0.W'\] must be a real floating-point array, "
                                                   r"got dtype complex128"),
    ({k: v.astype(int) for k, v in P.items()}, TypeError, r"must be a real floating-point array, got dtype int64"),
    (replaced("dec.0.b", P["dec.0.b"] > 0), TypeError, r"params\['dec.0.b'\] .* got dtype bool"),
    (replaced("enc.0.W", P["enc.0.W"].astype(object)), TypeError, r"params\['enc.0.W'\] .* got dtype object"),
    (replaced("enc.0.W", "weights"), TypeError, r"params\['enc.0.W'\] must be a real floating-point array, got str"),
    ({1: np.ones(2)}, TypeError, "params must have str keys, got 1"),
    ({}, ValueError, "params must not be empty"),
]


@pytest.mark.parametrize("call, error, message", DATA_CASES)
def test_bool_masked_and_empty_data_are_refused(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("params, error, message", PARAM_CASES)
def test_trainers_refuse_bad_parameters_before_any_work(params, error, message):
    steps = []
    for train in (lambda: fit(MODEL, params, X, steps=3, seed=0, callback=lambda *a: steps.append(1)),
                  lambda: fit_stages(MODEL, params, X, stages=[(1e-3, 3)], seed=0),
                  lambda: fit_lin(MODEL, params, X, x_val=X, steps=1, seed=0)):
        with pytest.raises(error, match=message):
            train()
    assert steps == []


@pytest.mark.parametrize("params, error, message", [c for c in PARAM_CASES if c[0]])    # {}: see below
def test_importance_log_likelihood_refuses_bad_parameters_before_sampling(params, error, message):
    """An evaluation scans the values too: a NaN parameter is named, not returned as a NaN log p(x). (An
    empty dict is allowed there: a parameter-free model scored with a ``proposal``.)"""
    calls = []

    class Spy(GaussianVAE):
        def encode(self, params, x):
            calls.append(1)
            return super().encode(params, x)

    spy = Spy.from_sizes(2, 1, (4,), obs="scalar")
    with pytest.raises(error, match=message):
        importance_log_likelihood(spy, params, X, seed=0, n_samples=8)
    assert calls == []


def test_objectives_check_dtypes_and_full_shapes_on_every_call():
    with pytest.raises(TypeError, match=r"params\['enc.0.W'\] must be a real floating-point array, got dtype complex128"):
        MODEL.value_and_grad({k: v + 0j for k, v in P.items()}, X, NOISE)
    with pytest.raises(TypeError, match=r"params\['dec.0.b'\] .* got dtype bool"):
        MODEL.value_and_grad(replaced("dec.0.b", P["dec.0.b"] > 0), X, NOISE)
    with pytest.raises(ValueError, match=r"params\['enc.0.W'\] must have shape \(2, 4\) or \(R, 2, 4\) .* got \(3, 4\)"):
        MODEL.value_and_grad(replaced("enc.0.W", np.zeros((3, 4))), X, NOISE)
    with pytest.raises(ValueError, match=r"params\['enc.0.W'\] .* got \(3, 4\)"):
        fit(MODEL, replaced("enc.0.W", np.zeros((3, 4))), X, steps=1, seed=0)


def test_libi_and_the_model_argument():
    bad = {**init_libi(MODEL, 0), "dec.0.b": np.full(4, np.nan)}
    with pytest.raises(ValueError, match=r"params\['dec.0.b'\] must be finite"):
        fit_libi(MODEL, X, X, eps_hz=1.0, eps_sigma=1.0, eps_mu=1.0, repetitions=1, step1_steps=1, step2_steps=1,
                 seed=0, params=bad)
    with pytest.raises(TypeError, match="model must be a model instance .* got the class GaussianVAE"):
        fit(GaussianVAE, P, X, steps=1, seed=0)


def test_importance_log_likelihood_accepts_an_iwae_as_its_vae():
    iwae = IWAE(MODEL, n_samples=3)
    a = importance_log_likelihood(iwae, P, X, seed=1, n_samples=16)
    b = importance_log_likelihood(MODEL, P, X, seed=1, n_samples=16)
    np.testing.assert_array_equal(a, b)


# -- objectives: observation variance in range, hidden widths, NaN parameters (refvae.objectives) ------
@pytest.mark.parametrize("value", [-800.0, 800.0, -709.0])
def test_an_obs_logvar_whose_variance_under_or_overflows_is_named(value):
    bad = replaced("dec.obs_logvar", np.array([value]))
    message = r"params\['dec.obs_logvar'\] .* must lie within \+-708.4.* got " + f"{value:g}"
    with pytest.raises(ValueError, match=message):
        MODEL.value_and_grad(bad, X, NOISE)
    with pytest.raises(ValueError, match=message):
        IWAE(MODEL).value_and_grad(bad, X, NOISE[None])
    steps = []
    with pytest.raises(ValueError, match=message):            # fit's first step, before any update
        fit(MODEL, bad, X, steps=3, seed=0, callback=lambda *a: steps.append(1))
    assert steps == []


def test_obs_logvar_bound_per_restart_and_dimension_and_its_edge():
    model = GaussianVAE.from_sizes(2, 1, (4,), obs="vector")
    p = model.init(0, restarts=3)
    lv = p["dec.obs_logvar"].copy()
    lv[2, 1] = -750.0
    with pytest.raises(ValueError, match=r"params\['dec.obs_logvar'\] .* got -750"):
        model.value_and_grad({**p, "dec.obs_logvar": lv}, X, np.zeros((3, 30, 1)))
    lv[2, 1] = -700.0                                        # inside the bound: a finite loss
    loss, _ = model.value_and_grad({**p, "dec.obs_logvar": lv}, X, np.zeros((3, 30, 1)))
    assert np.isfinite(loss).all()


@pytest.mark.parametrize("sigma2", [1e-320, 1e-308, 1e308])
def test_a_sigma2_that_is_subnormal_or_has_no_finite_inverse_is_refused(sigma2):
    with pytest.raises(ValueError, match=r"sigma2 must lie in \[2.23e-308, 4.49e\+307\] .* got " + re.escape(repr(sigma2))):
        GaussianVAE.from_sizes(2, 1, obs="fixed", sigma2=sigma2)
    fixed = GaussianVAE.from_sizes(2, 1, (4,), obs="fixed")
    with pytest.raises(ValueError, match=r"sigma2 must lie in .* got " + re.escape(repr(sigma2))):
        fixed.value_and_grad(fixed.init(0), X, NOISE, sigma2=sigma2)


@pytest.mark.parametrize("hidden, error, message", [
    (5, TypeError, r"hidden must be a sequence of int widths \(e.g. \(64, 64\), or \(\) for affine maps\), got int 5"),
    ("64", TypeError, "hidden must be a sequence .* got str '64'"),
    ((0,), ValueError, r"hidden\[0\] must be >= 1, got 0"),
    ((8, 2.5), TypeError, r"hidden\[1\] must be an integer, got float 2.5"),
])
def test_from_sizes_names_a_bad_hidden(hidden, error, message):
    from refvae.objectives import Autoencoder
    for build in (GaussianVAE.from_sizes, Autoencoder.from_sizes):
        with pytest.raises(error, match=message):
            build(2, 1, hidden)


def test_nan_parameters_give_a_nan_loss_that_the_trainers_name():
    """Deliberate (refvae.objectives docstring): value_and_grad does not scan parameter values; a NaN
    parameter gives a non-finite loss, which the trainers rely on to report a divergence, and the
    trainers name a NaN parameter at entry."""
    bad = replaced("dec.0.b", P["dec.0.b"] * np.nan)
    assert not np.isfinite(MODEL.value_and_grad(bad, X, NOISE)[0])
    assert not np.isfinite(IWAE(MODEL).value_and_grad(bad, X, NOISE[None])[0])
    with pytest.raises(ValueError, match=r"params\['dec.0.b'\] must be finite"):
        fit(IWAE(MODEL), bad, X, steps=1, seed=0)


def test_iwae_exposes_the_dimensions_of_its_vae():
    iwae = IWAE(GaussianVAE.from_sizes(3, 2, (4,)))
    assert (iwae.data_dim, iwae.latent_dim) == (3, 2)


# -- seeds (refvae.backend.make_rng), M2.sample --------------------------------------------------
def test_a_negative_seed_is_named():
    from refvae.backend import make_rng
    with pytest.raises(ValueError, match="seed must be a non-negative integer .* got -1"):
        make_rng(-1)
    with pytest.raises(ValueError, match="seed must be a non-negative integer .* got -1"):
        fit(MODEL, P, X, steps=1, seed=-1)


def test_m2_sample_takes_an_int_seed_like_everything_else():
    from refvae.m2 import M2
    m2 = M2.from_sizes(2, 1, 2, (3,))
    p = m2.init(0)
    for a, b in zip(m2.sample(p, 1, 4, 7), m2.sample(p, 1, 4, np.random.default_rng(7))):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="rng must be a non-negative integer .* got -2"):
        m2.sample(p, 1, 4, -2)
    with pytest.raises(TypeError, match="rng must be an int, SeedSequence or numpy.random.Generator, got str"):
        m2.sample(p, 1, 4, "r")


# -- optimisers (refvae.optim) ----------------------------------------------------------------------
@pytest.mark.parametrize("group_lr", ["x", [0.1], 0.1])
def test_group_lr_must_be_a_dict(group_lr):
    from refvae.optim import SGD, Adam
    for opt in (Adam, SGD):
        with pytest.raises(TypeError, match=r"group_lr must be None or a dict key prefix -> learning rate.* got "
                                            + type(group_lr).__name__):
            opt(group_lr=group_lr)


def test_update_names_a_state_made_for_other_parameters_before_any_work():
    from refvae.optim import SGD, Adam
    grads = {k: np.ones_like(v) for k, v in P.items()}
    for opt in (Adam(), SGD(momentum=0.5)):
        other = opt.init({"a": np.ones(2)})
        with pytest.raises(KeyError, match=r"state\['(m|v)'\] has no entry for parameters \['enc.0.W', .*\] "
                                           r"\(it has \['a'\]\): state must come from"):
            opt.update(P, grads, other)
        with pytest.raises(TypeError, match=r"state\['(m|v)'\] is a dict .* got state\['(m|v)'\] = int"):
            opt.update(P, grads, {"m": 1, "v": 1, "t": 1})
        with pytest.raises(TypeError, match="params must be a dict of arrays, got NoneType"):
            opt.init(None)
    # a state made for more parameters, or one stepped with ``only`` on its keys, is fine
    full = Adam().init(P)
    Adam().update({k: v for k, v in P.items() if k.startswith("enc.")}, grads, full)


# -- layers (refvae.layers) -------------------------------------------------------------------------
def test_mlp_checks_sizes_and_activation_names_up_front():
    from refvae import layers as L
    with pytest.raises(TypeError, match="sizes must be a sequence of int widths .* got int 5"):
        L.mlp(5)
    with pytest.raises(TypeError, match="sizes must be a sequence of int widths .* got str '23'"):
        L.mlp("23")
    with pytest.raises(ValueError, match=r"activation must be one of \[.*'tanh'\] or a Layer, got 'swish'"):
        L.mlp([2, 3], "swish")                               # no hidden layer would use it
    with pytest.raises(ValueError, match=r"activation must be one of .* got \['tanh'\]"):
        L.mlp([2, 3], ["tanh"])
    with pytest.raises(ValueError, match="final_activation must be one of .* got 'swish'"):
        L.mlp([2, 3], final_activation="swish")


# -- datasets, metrics, gradcheck ------------------------------------------------------------------
def test_random_rotation_names_dim():
    from refvae.datasets import random_rotation
    with pytest.raises(ValueError, match="dim must be >= 1, got 0"):
        random_rotation(0, 0)
    with pytest.raises(TypeError, match="dim must be an integer, got float 1.5"):
        random_rotation(1.5, 0)


def test_encoder_mutual_information_names_x_before_encoding():
    from refvae.metrics.information import encoder_mutual_information
    calls = []

    class Spy:
        def encode(self, params, x):
            calls.append(1)
            return MODEL.encode(params, x)

    with pytest.raises(ValueError, match="x must hold at least 2 points .* got 1"):
        encoder_mutual_information(Spy(), P, X[:1], seed=0)
    assert calls == []


def test_check_grad_refuses_nan_parameters_before_calling_fun_and_takes_one_key_as_a_str():
    from refvae.gradcheck import check_grad
    calls = []

    def fun(p):
        calls.append(1)
        return MODEL.value_and_grad(p, X, NOISE)

    with pytest.raises(ValueError, match=r"params\['dec.0.b'\] must be finite for a gradient check"):
        check_grad(fun, replaced("dec.0.b", P["dec.0.b"] * np.nan))
    assert calls == []
    one = check_grad(fun, P, keys="enc.0.W", n_directions=1)
    listed = check_grad(fun, P, keys=["enc.0.W"], n_directions=1)
    assert one.errors == listed.errors and one.worst.startswith("enc.0.W") and one.passed
    with pytest.raises(TypeError, match="keys must be None, a key .* got int"):
        check_grad(fun, P, keys=5)

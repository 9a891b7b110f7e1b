"""Inputs that used to be accepted silently (or crashed unhelpfully) get an error naming the argument,
what was expected and what came, before any work."""
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

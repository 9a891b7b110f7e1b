"""Synthetic benchmark data sets of the four seed papers, each with its ground truth.

Every generator has the signature ``generator(n, seed, **options) -> Dataset``: ``n`` points,
``seed`` an int or a ``numpy.random.Generator`` (``refvae.backend.make_rng``); the same seed
gives bitwise the same data. Each data set carries its data-generating model as a
``GroundTruth``, so that log p(x) and p(z | x) are exact: closed form for the linear-Gaussian
sets (docs/math.md 4.1), quadrature for the 1-D-latent ones (``refvae.metrics.quadrature``).

Definitions follow docs/math.md 4.1 (yacoby2020, exact constants) and docs/math.md 5 (yacoby2021,
dai2020, berger2020; yacoby2021's appendices and berger2020's equations are lost from the text we
have, so these are our definitions, each choice documented in the generator's docstring). Every latent is standard normal, z ~ N(0, I_K); observation noise is
Gaussian and diagonal with Var[x_j | z] = ``sigma2`` (a variance, never a standard
deviation; docs/math.md 0). Default noise variance 0.01 unless docs/math.md or a paper says otherwise.

>>> from refvae import datasets
>>> ds = datasets.load("figure8", n=500, seed=0)
>>> ds.x.shape, ds.z.shape, ds.truth.latent_dim
((500, 2), (500, 1), 1)
>>> ds2 = datasets.figure8(500, seed=1)     # the generator itself samples anew
>>> from refvae.metrics.quadrature import log_likelihood
>>> log_likelihood(ds.x, **ds.truth.quadrature_args).shape     # exact log p(x_n)
(500,)
"""
from __future__ import annotations

import functools
import math
import types
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import numpy as np
from scipy.special import expit, log_ndtr, ndtr, ndtri, ndtri_exp

from . import _checks
from .backend import make_rng

__all__ = [
    "GroundTruth", "Dataset", "DATASETS", "load",
    "pedagogical_c1", "pedagogical_c2", "linear_jtex", "cubic_jtex", "gaussian", "mobius",
    "figure8", "circle", "absolute_value", "clusters", "spiral_dots", "discrete_semicircle",
    "compression", "three_noise", "hypersphere", "soft_threshold_axis", "gaussian_spectrum",
    "monotone_abs_map", "three_noise_sigma2_of_t", "random_rotation",
    "A_GT", "B_JTEX", "A_GAUSSIAN", "MOBIUS_COEFFS", "DEFAULT_SIGMA2",
]

DEFAULT_SIGMA2 = 0.01


def _frozen(a):
    """Read-only view, so a frozen Dataset cannot be changed in place."""
    if a is None:
        return None
    a = np.asarray(a)
    a.setflags(write=False)
    return a


def _mapping(d):
    return types.MappingProxyType(dict(d or {}))


# =========================================================================== containers

@dataclass(frozen=True, eq=False)
class GroundTruth:
    """The data-generating model of a benchmark: z ~ N(0, I_K), x | z ~ N(f(z), diag s2).

    Attributes
    ----------
    latent_dim : int
        K.
    data_dim : int
        d.
    decode : callable
        The mean f: z (..., K) -> (..., d), vectorised NumPy. For a class-conditional
        model (``class_probs`` set) the signature is ``decode(z, y)`` with integer labels y
        broadcastable to z.shape[:-1]; ``given(y)`` returns the model of one class.
    sigma2 : float, ndarray (d,) or None
        Var[x_j | z] per coordinate when it does not depend on z (0 for noise-free sets);
        None when it does (then ``sigma2_fn`` gives it).
    sigma2_fn : callable or None
        z (..., K) -> Var[x | z] (..., d), for heteroscedastic models (``three_noise``).
    W, b, noise_cov : ndarray (d, K), (d,), (d, d) or None
        Set exactly for linear-Gaussian models x = W z + b + e, e ~ N(0, noise_cov), whose
        marginal N(b, W W^T + noise_cov) and posterior are closed form (docs/math.md 4.1).
    class_probs : ndarray (C,) or None
        p(y) for class-conditional models (``discrete_semicircle``); None otherwise.
    breakpoints : tuple of float
        K = 1: the z where the mean or the variance is not smooth (a kink or a jump), which
        quadrature must make panel edges to stay exact (``quadrature_args`` passes them).
    constants : Mapping
        The model's named constants (theta, A, B, eigs, radius, ...), read-only.
    """

    latent_dim: int
    data_dim: int
    decode: Callable
    sigma2: Any
    sigma2_fn: Callable | None = None
    W: np.ndarray | None = None
    b: np.ndarray | None = None
    noise_cov: np.ndarray | None = None
    class_probs: np.ndarray | None = None
    breakpoints: tuple = ()
    constants: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for name in ("W", "b", "noise_cov", "class_probs"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        if isinstance(self.sigma2, np.ndarray):
            object.__setattr__(self, "sigma2", _frozen(self.sigma2))
        object.__setattr__(self, "constants", _mapping(self.constants))
        object.__setattr__(self, "breakpoints", tuple(float(b) for b in self.breakpoints))

    @property
    def is_linear(self) -> bool:
        """True for linear-Gaussian models (``W``, ``b``, ``noise_cov`` set)."""
        return self.W is not None

    @property
    def is_conditional(self) -> bool:
        """True for class-conditional models (``decode(z, y)``)."""
        return self.class_probs is not None

    def observation(self, z, y=None):
        """Mean and variance of x | z (and y for class-conditional models).

        Parameters
        ----------
        z : array (..., K)
        y : int or int array broadcastable to z.shape[:-1]; only for conditional models.

        Returns
        -------
        mean, var : ndarrays (..., d)

        This is the ``decode`` to hand to ``refvae.metrics.quadrature`` for models whose
        variance depends on z: ``quadrature.log_likelihood(x, truth.observation, K)``.
        """
        z = _checks.array("z", z, min_ndim=1, last_dim=self.latent_dim)
        if self.is_conditional:
            if y is None:
                raise ValueError("y is required: this ground truth is class-conditional (decode(z, y))")
            mean = self.decode(z, y)
        else:
            if y is not None:
                raise ValueError("y must be None: this ground truth is not class-conditional")
            mean = self.decode(z)
        if self.sigma2_fn is not None:
            var = self.sigma2_fn(z, y) if self.is_conditional else self.sigma2_fn(z)
        else:
            var = np.broadcast_to(np.asarray(self.sigma2, dtype=np.float64), mean.shape)
        return mean, var

    def sample_x(self, z, rng, y=None):
        """Draw x ~ p(x | z [, y]): mean + sqrt(var) * eps, eps from ``rng``; shape (..., d)."""
        mean, var = self.observation(z, y)
        return mean + np.sqrt(var) * make_rng(rng).standard_normal(mean.shape)

    def given(self, y):
        """The unconditional ground truth of class ``y`` (class-conditional models only)."""
        if not self.is_conditional:
            raise ValueError("given(y) applies to class-conditional ground truths only")
        y = _checks.integer("y", y, min_value=0)
        if y >= len(self.class_probs):
            raise ValueError(f"y must be < {len(self.class_probs)}, got {y}")
        fn = None if self.sigma2_fn is None else functools.partial(self.sigma2_fn, y=y)
        return replace(self, decode=functools.partial(self.decode, y=y), sigma2_fn=fn,
                       class_probs=None)

    @property
    def quadrature_args(self):
        """Keyword arguments that point ``refvae.metrics.quadrature`` at this model.

        ``quadrature.log_likelihood(x, **truth.quadrature_args)`` is the exact log p(x) for
        K <= 2 (decode = ``observation``, so z-dependent variances are included, and the
        breakpoints). Class-conditional models: use ``given(y).quadrature_args``.
        """
        if self.is_conditional:
            raise ValueError("a class-conditional ground truth has no single p(x | z): use given(y).quadrature_args")
        args = dict(decode=self.observation, latent_dim=self.latent_dim)
        if self.breakpoints:
            args["breakpoints"] = self.breakpoints
        return args

    def marginal(self):
        """Mean (d,) and covariance (d, d) of p(x) = N(b, W W^T + noise_cov) (linear models only)."""
        if not self.is_linear:
            raise ValueError("marginal() is closed form only for linear-Gaussian ground truths")
        return self.b.copy(), self.W @ self.W.T + self.noise_cov


@dataclass(frozen=True, eq=False)
class Dataset:
    """A sample from a benchmark and its ground truth. All arrays are read-only.

    Attributes
    ----------
    name : str
        Registry key (``DATASETS``).
    x : ndarray (N, d), float64
        The data.
    z : ndarray (N, K) or None
        The true standard-normal latents that generated x (x = f(z) + noise).
    labels : ndarray (N,) of int or None
        Observed labels, -1 where unobserved (semi-supervised sets); None when unlabelled.
    truth : GroundTruth
    full_labels : ndarray (N,) of int or None
        Every true label (including the unobserved ones).
    aux : Mapping[str, ndarray]
        Other per-point truths (e.g. ``t`` and ``region`` of ``three_noise``, ``cluster``).
    alternatives : Mapping[str, GroundTruth]
        Other ground truths with the same p(x) (e.g. Absolute-Value's monotone one).
    params : Mapping[str, Any]
        The generator's options, so that ``sample`` draws from the same population.
    """

    name: str
    x: np.ndarray
    z: np.ndarray | None
    labels: np.ndarray | None
    truth: GroundTruth
    full_labels: np.ndarray | None = None
    aux: Mapping[str, np.ndarray] = field(default_factory=dict)
    alternatives: Mapping[str, GroundTruth] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for name in ("x", "z", "labels", "full_labels"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "aux", _mapping({k: _frozen(v) for k, v in dict(self.aux).items()}))
        object.__setattr__(self, "alternatives", _mapping(self.alternatives))
        object.__setattr__(self, "params", _mapping(self.params))

    @property
    def n(self) -> int:
        """Number of points N."""
        return self.x.shape[0]

    def sample(self, n, seed):
        """A fresh sample of ``n`` points from the same population (same options)."""
        return DATASETS[self.name](n, seed, **self.params)


# =========================================================================== helpers

def _n_arg(n):
    return _checks.integer("n", n, min_value=1)


def _sigma2_arg(sigma2, name="sigma2"):
    return _checks.scalar(name, sigma2, positive=True)


def _from_truth(name, n, seed, truth, params, **extra):
    """Validate n and seed, draw z ~ N(0, I_K) then x | z, and wrap them in a Dataset."""
    n = _n_arg(n)
    rng = make_rng(seed)
    z = rng.standard_normal((n, truth.latent_dim))
    x = truth.sample_x(z, rng)
    return Dataset(name=name, x=x, z=z, labels=None, truth=truth, params=params, **extra)


def _linear_truth(W, b, sigma2, /, **constants):
    """Ground truth of x = W z + b + e with diagonal noise e ~ N(0, diag(sigma2))."""
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d, k = W.shape
    nv = np.broadcast_to(np.asarray(sigma2, dtype=np.float64), (d,))
    return GroundTruth(latent_dim=k, data_dim=d, decode=functools.partial(_linear_mean, W=W, b=b),
                       sigma2=sigma2, W=W, b=b, noise_cov=np.diag(nv), constants=constants)


def _linear_mean(z, W, b):
    return z @ W.T + b


def _pad(mean, data_dim):
    """Embed (..., 2) into (..., data_dim) with zero extra coordinates."""
    extra = data_dim - mean.shape[-1]
    return mean if extra == 0 else np.concatenate([mean, np.zeros(mean.shape[:-1] + (extra,))], axis=-1)


def _polar(angle, radius=1.0):
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)


# =========================================================================== yacoby2020

A_GT = ((0.75, 0.25), (1.5, -1.0))
B_JTEX = (0.006, 0.006)
A_GAUSSIAN = ((-0.7074, 0.0995, 0.0286, 0.1240), (0.7074, 0.9948, -0.9995, 0.9920))
MOBIUS_COEFFS = (1.0 + 0.0j, 1.0 + 4.0j, 1.0 + 0.0j, 7.0 + 4.0j)


def pedagogical_c1(n, seed, *, theta=0.05, sigma2=DEFAULT_SIGMA2):
    """yacoby2020 App. C.1 (docs/math.md 4.1): x = theta z + e, e ~ N(0, sigma2 - theta^2); K = d = 1.

    p(x) = N(0, sigma2) for every theta with theta^2 <= sigma2 (the seed's "theta in
    [0, sigma^2]" means that), while I(X; Z) = 0.5 log(sigma2 / (sigma2 - theta^2)) grows
    with |theta|: the MLE cannot choose among these models. The seed fixes no values:
    sigma2 = 0.01 (the project's default) and theta = 0.05 (noise 0.0075, posterior
    N(5 x, 0.75)) are ours.

    Parameters
    ----------
    n : int >= 1
    seed : int or numpy.random.Generator
    theta : float, theta^2 <= sigma2
    sigma2 : float > 0
        Var[x] (the marginal variance, not the observation noise).

    Returns
    -------
    Dataset
        x (n, 1), z (n, 1); ``truth`` linear with W = [[theta]], b = [0],
        noise_cov = [[sigma2 - theta^2]]; ``truth.constants``: theta, sigma2.
    """
    sigma2 = _sigma2_arg(sigma2)
    theta = _checks.scalar("theta", theta)
    if theta * theta > sigma2 * (1 + 1e-12):
        raise ValueError(f"theta must satisfy theta^2 <= sigma2 (the noise variance sigma2 - theta^2 "
                         f"must be >= 0), got theta={theta}, sigma2={sigma2}")
    noise = max(sigma2 - theta * theta, 0.0)
    truth = _linear_truth([[theta]], [0.0], noise, theta=theta, sigma2=sigma2)
    return _from_truth("pedagogical_c1", n, seed, truth, dict(theta=theta, sigma2=sigma2))


def _c2_constants(A, B, sigma2):
    """Validated A (d, m), B diagonal (d,), sigma2 and L = chol(A A^T + diag B) (d, d)."""
    sigma2 = _sigma2_arg(sigma2)
    A = _checks.array("A", A, ndim=2)
    d = A.shape[0]
    B = _checks.array("B", B, nonneg=True)
    if B.ndim == 2:
        if B.shape != (d, d) or np.any(B != np.diag(np.diag(B))):
            raise ValueError(f"B must be a diagonal ({d}, {d}) matrix or its ({d},) diagonal, got shape {B.shape}")
        B = np.diag(B).copy()
    if B.shape != (d,):
        raise ValueError(f"B must be the ({d},) diagonal of a diagonal matrix, got shape {B.shape}")
    if np.any(B > sigma2):
        raise ValueError(f"B's diagonal must lie in [0, sigma2={sigma2}] (noise variance sigma2 - B_ii >= 0), "
                         f"got maximum {B.max()}")
    try:
        L = np.linalg.cholesky(A @ A.T + np.diag(B))
    except np.linalg.LinAlgError as exc:
        raise ValueError("A A^T + diag(B) must be positive definite (Cholesky failed)") from exc
    return A, B, sigma2, L


def pedagogical_c2(n, seed, *, A=A_GT, B=B_JTEX, sigma2=DEFAULT_SIGMA2):
    """yacoby2020 App. C.2 (docs/math.md 4.1): x = chol(A A^T + B) z + e, e ~ N(0, sigma2 I - B).

    B is diagonal with entries in [0, sigma2]; p(x) = N(0, A A^T + sigma2 I) for every B,
    while the posterior correlation and I(X; Z) depend on B. Defaults are LinearJTEx's
    (sigma2 = 0.01, A = A_GT, B = diag(0.006, 0.006)); K = d = A.shape[0].

    Parameters
    ----------
    n : int >= 1
    seed : int or numpy.random.Generator
    A : array (d, m)
    B : array (d,) (the diagonal) or a diagonal (d, d) matrix, entries in [0, sigma2]
    sigma2 : float > 0

    Returns
    -------
    Dataset
        x (n, d), z (n, d); ``truth`` linear with W = chol(A A^T + B) (lower triangular),
        b = 0, noise_cov = diag(sigma2 - B); ``truth.constants``: A, B, sigma2.
    """
    A, B, sigma2, L = _c2_constants(A, B, sigma2)
    truth = _linear_truth(L, np.zeros(A.shape[0]), sigma2 - B, A=A, B=B, sigma2=sigma2)
    return _from_truth("pedagogical_c2", n, seed, truth, dict(A=A, B=B, sigma2=sigma2))


def linear_jtex(n, seed):
    """yacoby2020 LinearJTEx (App. E; docs/math.md 4.1): C.2 with sigma2 = 0.01, B = diag(0.006, 0.006), A = A_GT.

    The ground-truth posteriors are correlated Gaussians, so a mean-field VAE prefers a
    model that fits p(x) worse (yacoby2020 reports L = 0.532 at the truth, 0.196 learned).

    Returns
    -------
    Dataset
        x (n, 2), z (n, 2); ``truth`` as in ``pedagogical_c2``.
    """
    ds = pedagogical_c2(n, seed)
    return replace(ds, name="linear_jtex", params={})


def _cubic_mean(z, L):
    u = z @ L.T
    return u * u * u


def cubic_jtex(n, seed):
    """yacoby2020 CubicJTEx (App. E; docs/math.md 4.1): x = (chol(A A^T + B) z)^3 + e, cube elementwise.

    LinearJTEx's constants (sigma2 = 0.01, B = diag(0.006, 0.006), A = A_GT); noise
    e ~ N(0, sigma2 I - B). K = d = 2.

    Returns
    -------
    Dataset
        x (n, 2), z (n, 2); ``truth.sigma2`` = (0.004, 0.004), ``truth.constants``:
        A, B, sigma2, L (the Cholesky factor).
    """
    A, B, sigma2, L = _c2_constants(A_GT, B_JTEX, DEFAULT_SIGMA2)
    truth = GroundTruth(latent_dim=2, data_dim=2, decode=functools.partial(_cubic_mean, L=L),
                        sigma2=sigma2 - B, constants=dict(A=A, B=B, sigma2=sigma2, L=L))
    return _from_truth("cubic_jtex", n, seed, truth, {})


def gaussian(n, seed):
    """yacoby2020 "Gaussian" (App. E; docs/math.md 4.1): x = A^T z + e, e ~ N(0, 1e-6 I), K = 2, d = 4.

    A = [[-0.7074, 0.0995, 0.0286, 0.1240], [0.7074, 0.9948, -0.9995, 0.9920]] (unit columns).
    The posterior is nearly degenerate (std ~ 1e-3): use the closed forms, not a z grid.

    Returns
    -------
    Dataset
        x (n, 4), z (n, 2); ``truth`` linear with W = A^T (4, 2), b = 0, noise_cov = 1e-6 I.
    """
    A = np.array(A_GAUSSIAN)
    truth = _linear_truth(A.T, np.zeros(4), 1e-6, A=A)
    return _from_truth("gaussian", n, seed, truth, {})


def _mobius_mean(z, a, b, c, d):
    w = z[..., 0] + 1j * z[..., 1]
    m = (a * w + b) / (c * w + d)
    return np.stack([m.real, m.imag], axis=-1)


def mobius(n, seed):
    """yacoby2020 Mobius (App. E; docs/math.md 4.1): x = (Re m, Im m) + e, e ~ N(0, 1e-5 I).

    m(w) = (a w + b) / (c w + d) in complex arithmetic on w = z1 + i z2, a = 1, b = 1 + 4i,
    c = 1, d = 7 + 4i; K = d = 2. The seed trains a network to imitate m and generates from
    it; we use m itself (the network is not given). m has a pole at w = -7 - 4i, prior
    density ~ e^-32 there.

    Returns
    -------
    Dataset
        x (n, 2), z (n, 2); ``truth.constants``: a, b, c, d (complex).
    """
    a, b, c, d = MOBIUS_COEFFS
    truth = GroundTruth(latent_dim=2, data_dim=2, decode=functools.partial(_mobius_mean, a=a, b=b, c=c, d=d),
                        sigma2=1e-5, constants=dict(a=a, b=b, c=c, d=d))
    return _from_truth("mobius", n, seed, truth, {})


# =========================================================================== yacoby2021

def _figure8_mean(z):
    u = math.pi * (0.6 + 1.8 * ndtr(z[..., 0]))
    s, c = np.sin(u), np.cos(u)
    den = 1.0 + s * s
    return np.stack([c / den, s * c / den], axis=-1)


def figure8(n, seed, *, sigma2=DEFAULT_SIGMA2):
    """yacoby2021's Figure-8 (Sec. 4, App. F.1 lost; docs/math.md 5): a lemniscate, K = 1, d = 2.

    u = pi (0.6 + 1.8 Phi(z)), f(z) = [cos u, sin u cos u] / (1 + sin^2 u). z = 0 crosses the
    origin (u = 3 pi / 2) and both tails z -> -infinity, +infinity end at (-0.16, -0.15) and
    (0.16, 0.15), 0.22 from it (u -> 0.6 pi, 2.4 pi): with noise std 0.1 the three branches
    overlap near the crossing, where p(x) is high, so the true posterior is multimodal for
    much of the mass there (Theorem 1's condition (1)). Measured with
    ``refvae.metrics.quadrature.posterior_modes`` (5% excess mass): ~45% of the points within
    0.25 of the crossing (13% of the data) have a multimodal posterior, against ~4.5% of all
    Circle points. (Were the tails to end at the crossing, u in (pi/2, 5 pi/2), that share
    would be ~97%; we keep docs/math.md's curve.)

    Parameters
    ----------
    n : int >= 1
    seed : int or numpy.random.Generator
    sigma2 : float > 0
        Observation noise variance (yacoby2021: 0.01).

    Returns
    -------
    Dataset
        x (n, 2), z (n, 1); ``truth.sigma2`` = sigma2.
    """
    sigma2 = _sigma2_arg(sigma2)
    truth = GroundTruth(latent_dim=1, data_dim=2, decode=_figure8_mean, sigma2=sigma2)
    return _from_truth("figure8", n, seed, truth, dict(sigma2=sigma2))


def _circle_mean(z):
    return _polar(2.0 * math.pi * ndtr(z[..., 0]))


def circle(n, seed, *, sigma2=DEFAULT_SIGMA2):
    """yacoby2021's Circle (App. F.2 lost; docs/math.md 5): f(z) = [cos 2 pi Phi(z), sin 2 pi Phi(z)].

    The angle is uniform on [0, 2 pi), so x is spread evenly around the unit circle; both
    tails z -> -+infinity land at (1, 0), where posteriors are multimodal, which concerns
    few points (Theorem 1's condition (1) fails for most of the mass): measured ~4.5% of all
    points, ~67% of those within 0.25 of (1, 0). K = 1, d = 2.

    Returns
    -------
    Dataset
        x (n, 2), z (n, 1); ``truth.sigma2`` = sigma2 (default 0.01).
    """
    sigma2 = _sigma2_arg(sigma2)
    truth = GroundTruth(latent_dim=1, data_dim=2, decode=_circle_mean, sigma2=sigma2)
    return _from_truth("circle", n, seed, truth, dict(sigma2=sigma2))


def _abs_mean(z):
    a = np.abs(z[..., :1])
    return np.concatenate([a, a], axis=-1)


def monotone_abs_map(z):
    """g(z) = Phi^-1((1 + Phi(z)) / 2), the monotone map with g(z) ~ |N(0, 1)| for z ~ N(0, 1).

    Written as -Phi^-1(exp(log Phi(-z) - log 2)), which is accurate in both tails
    (the direct form rounds (1 + Phi(z)) / 2 to 1 for z > 8). Any shape.
    """
    return -ndtri_exp(log_ndtr(-np.asarray(z, dtype=np.float64)) - math.log(2.0))


def _abs_monotone_mean(z):
    g = monotone_abs_map(z[..., :1])
    return np.concatenate([g, g], axis=-1)


def absolute_value(n, seed, *, sigma2=DEFAULT_SIGMA2):
    """yacoby2021's Absolute-Value (Sec. 4, App. F.3 lost; docs/math.md 5): f(z) = [|z|, |z|], K = 1, d = 2.

    z and -z give the same x, so the true posteriors are bimodal nearly everywhere
    (condition (1) of Theorem 1), yet the monotone reparameterisation
    f'(z) = [g(z), g(z)], g = ``monotone_abs_map``, has the same p(x) (g(z) and |z| have the
    same law) and unimodal posteriors: the VAE picks it. It is ``alternatives["monotone"]``,
    and ``aux["z_monotone"]`` holds the latents under it (g(z') = |z|).

    Returns
    -------
    Dataset
        x (n, 2), z (n, 1); ``truth.sigma2`` = sigma2 (default 0.01).
    """
    sigma2 = _sigma2_arg(sigma2)
    truth = GroundTruth(latent_dim=1, data_dim=2, decode=_abs_mean, sigma2=sigma2, breakpoints=(0.0,))
    alt = GroundTruth(latent_dim=1, data_dim=2, decode=_abs_monotone_mean, sigma2=sigma2)
    ds = _from_truth("absolute_value", n, seed, truth, dict(sigma2=sigma2), alternatives={"monotone": alt})
    # z' with g(z') = |z|: Phi(z') = 2 Phi(|z|) - 1, i.e. Phi(-z') = 2 Phi(-|z|)
    z_alt = -ndtri_exp(math.log(2.0) + log_ndtr(-np.abs(ds.z)))
    return replace(ds, aux={"z_monotone": z_alt})


def _staircase(z, num_clusters, steepness):
    """theta(z) = (2 pi / C) (1 + sum_{k=1}^{C-1} sigmoid(s (z - Phi^-1(k / C)))), shape z.shape[:-1].

    The k = 0 term of docs/math.md 5's sum is sigmoid(+infinity) = 1. Steps at the C-quantiles
    give C equal-mass plateaus at angles 2 pi j / C, j = 1..C.
    """
    cuts = ndtri(np.arange(1, num_clusters) / num_clusters)
    steps = expit(steepness * (z[..., :1] - cuts)).sum(axis=-1)
    return (2.0 * math.pi / num_clusters) * (1.0 + steps)


def _clusters_mean(z, num_clusters, steepness):
    return _polar(_staircase(z, num_clusters, steepness))


def _spiral_mean(z, num_clusters, steepness):
    theta = _staircase(z, num_clusters, steepness)
    return _polar(theta, 0.3 + theta / (2.0 * math.pi))


def _cluster_index(z, num_clusters):
    """Plateau of each latent: j - 1 for the plateau at angle 2 pi j / C, shape (N,)."""
    return np.searchsorted(ndtri(np.arange(1, num_clusters) / num_clusters), z[:, 0]).astype(np.int64)


def _staircase_set(name, mean_fn, n, seed, num_clusters, steepness, sigma2):
    num_clusters = _checks.integer("num_clusters", num_clusters, min_value=2)
    steepness = _checks.scalar("steepness", steepness, positive=True)
    sigma2 = _sigma2_arg(sigma2)
    truth = GroundTruth(latent_dim=1, data_dim=2,
                        decode=functools.partial(mean_fn, num_clusters=num_clusters, steepness=steepness),
                        sigma2=sigma2, constants=dict(num_clusters=num_clusters, steepness=steepness))
    ds = _from_truth(name, n, seed, truth, dict(num_clusters=num_clusters, steepness=steepness, sigma2=sigma2))
    return replace(ds, aux={"cluster": _cluster_index(ds.z, num_clusters)})


def clusters(n, seed, *, num_clusters=4, steepness=50.0, sigma2=DEFAULT_SIGMA2):
    """yacoby2021's Clusters (App. F lost; docs/math.md 5): C equal-mass clusters on the unit circle.

    theta(z) is a smooth staircase (``_staircase``) with C plateaus at angles 2 pi j / C and
    logistic steps of steepness s at the C-quantiles of N(0, 1); f(z) = [cos theta, sin theta].
    Posteriors are wide and flat within a plateau (far from Gaussian); points on the thin
    bridges between clusters have multimodal ones. Defaults C = 4, sigma2 = 0.01 (docs/math.md 5)
    and s = 50, not docs/math.md's "s ~ 10": the logistic's tails are long, and with s = 10 the
    steps fill most of the z range (62% of the noise-free means lie more than half a noise
    std from every centre: a ring with bumps, not clusters); with s = 50 that share is 14%
    and 92% of the data lie within 3 noise stds of a centre. Steeper steps need a finer
    quadrature rule (posterior std ~ 4 C sigma / (2 pi s) on the steps).

    Parameters
    ----------
    num_clusters : int >= 2
    steepness : float > 0
    sigma2 : float > 0

    Returns
    -------
    Dataset
        x (n, 2), z (n, 1); ``aux["cluster"]`` (n,): the plateau index j - 1 of each z
        (cluster centre at angle 2 pi j / C).
    """
    return _staircase_set("clusters", _clusters_mean, n, seed, num_clusters, steepness, sigma2)


def spiral_dots(n, seed, *, num_clusters=8, steepness=50.0, sigma2=DEFAULT_SIGMA2):
    """yacoby2021's Spiral Dots (Sec. 4, App. F.5 lost; docs/math.md 5): C dots along a spiral.

    The Clusters staircase theta(z) (s = 50, see ``clusters``) with radius
    0.3 + theta / (2 pi): dot j sits at angle 2 pi j / C and radius 0.3 + j / C (0.425 to 1.3
    for C = 8; neighbouring dots >= 3.3 noise stds apart). yacoby2021 runs its Theorem 2
    (noise-variance bias) experiment here, with sigma2 = 0.01 (docs/math.md 4.5).

    Returns
    -------
    Dataset
        x (n, 2), z (n, 1); ``aux["cluster"]`` as in ``clusters``.
    """
    return _staircase_set("spiral_dots", _spiral_mean, n, seed, num_clusters, steepness, sigma2)


def _semicircle_mean(z, y, exponents):
    c = np.asarray(exponents)[np.asarray(y)]
    angle = math.pi * np.exp(c * log_ndtr(z[..., 0]))
    return _polar(angle)


def discrete_semicircle(n, seed, *, labelled_fraction=0.1, sigma2=DEFAULT_SIGMA2):
    """yacoby2021's Discrete Semi-Circle (Sec. 5.2, App. G.1 lost; docs/math.md 5), for M2 (docs/math.md 2.2).

    y ~ Bernoulli(0.5), z ~ N(0, 1), angle = pi Phi(z)^(c_y), c_0 = 1/3, c_1 = 3,
    x = [cos angle, sin angle] + e: both classes lie on the same upper unit semicircle with
    different densities on it (angle / pi ~ U^(1/3), mean 3/4, for y = 0 and U^3, mean 1/4,
    for y = 1). Labels are observed for round(labelled_fraction * n) points drawn without
    replacement (exactly that many, so runs are comparable), -1 elsewhere.

    Parameters
    ----------
    labelled_fraction : float in [0, 1]
        Default 0.1 (yacoby2021's 10%).
    sigma2 : float > 0

    Returns
    -------
    Dataset
        x (n, 2), z (n, 1), ``labels`` (n,) in {-1, 0, 1}, ``full_labels`` (n,) in {0, 1};
        ``truth`` class-conditional (``decode(z, y)``, ``class_probs`` = (0.5, 0.5),
        ``constants["exponents"]`` = (1/3, 3)); ``truth.given(y)`` is p(x | y).
    """
    labelled_fraction = _checks.scalar("labelled_fraction", labelled_fraction, low=0.0, high=1.0)
    sigma2 = _sigma2_arg(sigma2)
    n = _n_arg(n)
    rng = make_rng(seed)
    exponents = (1.0 / 3.0, 3.0)
    truth = GroundTruth(latent_dim=1, data_dim=2,
                        decode=functools.partial(_semicircle_mean, exponents=exponents),
                        sigma2=sigma2, class_probs=np.array([0.5, 0.5]),
                        constants=dict(exponents=exponents))
    y = (rng.random(n) < 0.5).astype(np.int64)
    z = rng.standard_normal((n, 1))
    x = truth.sample_x(z, rng, y=y)
    labels = np.full(n, -1, dtype=np.int64)
    seen = rng.choice(n, size=round(labelled_fraction * n), replace=False)
    labels[seen] = y[seen]
    return Dataset(name="discrete_semicircle", x=x, z=z, labels=labels, truth=truth, full_labels=y,
                   params=dict(labelled_fraction=labelled_fraction, sigma2=sigma2))


def _embedded_mean(z, base, data_dim):
    return _pad(base(z), data_dim)


def compression(n, seed, *, data_dim=2, sigma2=DEFAULT_SIGMA2):
    """yacoby2021's compression example (Sec. 5.1, App. D.3 lost): a K = 1 truth the ELBO
    under-compresses.

    yacoby2021 shows data with a K = 1 ground truth on which the ELBO prefers K > 1 with
    less informative codes (the extra latents model the noise, and posteriors become simple).
    Our definition: the Figure-8 curve (whose K = 1 posteriors are multimodal near the
    crossing, the source of that preference) in the plane of the first two coordinates of
    R^d, the other d - 2 coordinates pure noise. With d = 2 (default; all of yacoby2021's
    synthetic sets are 2-D) a K = 2 model can cover the plane with simple posteriors; d > 2
    lets one compare K = 1, 2 and d with K = 2 still a compression.

    Parameters
    ----------
    data_dim : int >= 2
    sigma2 : float > 0

    Returns
    -------
    Dataset
        x (n, data_dim), z (n, 1); ``truth.sigma2`` = sigma2.
    """
    data_dim = _checks.integer("data_dim", data_dim, min_value=2)
    sigma2 = _sigma2_arg(sigma2)
    truth = GroundTruth(latent_dim=1, data_dim=data_dim,
                        decode=functools.partial(_embedded_mean, base=_figure8_mean, data_dim=data_dim),
                        sigma2=sigma2, constants=dict(base="figure8"))
    return _from_truth("compression", n, seed, truth, dict(data_dim=data_dim, sigma2=sigma2))


# =========================================================================== berger2020

T_MAX = 3.0


def _t_of_z(z):
    """t = 3 Phi(z) ~ U(0, 3) for z ~ N(0, 1); shape z.shape[:-1]."""
    return T_MAX * ndtr(z[..., 0])


def _region(t):
    """Noise region of t: 0 on [0, 1), 1 on [1, 2), 2 on [2, 3]."""
    return np.minimum(np.floor(t), 2).astype(np.int64)


def _manifold_curve(t):
    return np.stack([t - 1.5, np.sin(math.pi * t)], axis=-1)


def _three_noise_mean(z):
    return _manifold_curve(_t_of_z(z))


def three_noise_sigma2_of_t(t, sigma2_values):
    """Var[x_j | t] of ``three_noise``: sigma2_values[region(t)], shape t.shape + (2,)."""
    v = np.asarray(sigma2_values, dtype=np.float64)[_region(np.asarray(t))]
    return np.repeat(v[..., None], 2, axis=-1)


def _three_noise_sigma2(z, sigma2_values):
    return three_noise_sigma2_of_t(_t_of_z(z), sigma2_values)


def three_noise(n, seed, *, sigma2_values=(0.01, 0.0004, 0.09)):
    """berger2020's artificial problem (Sec. 4, Fig. 3): a 1-D manifold in R^2 with three noise regions.

    t ~ U(0, 3), x = c(t) + e, c(t) = (t - 1.5, sin(pi t)), e ~ N(0, v_r I) with
    r = 0, 1, 2 on t in [0, 1), [1, 2), [2, 3] and (v_0, v_1, v_2) moderate / small / large.
    The seed's constants were lost with its math; ours: the curve (smooth, 1.5 periods, so
    no affine model fits it) and variances 0.01 / 0.0004 / 0.09 (std 0.1 / 0.02 / 0.3),
    which straddle the seed's F-VAE grid sigma in {1, 0.5, 0.1, 0.05, 0.01}: sigma = 0.05
    discards the small-noise detail, sigma = 0.01 resolves every region.
    As a latent model: z ~ N(0, 1), t = 3 Phi(z), so ``truth.decode(z)`` = c(3 Phi(z)) and
    ``truth.sigma2_fn(z)`` gives the z-dependent variance (``truth.sigma2`` is None;
    ``truth.observation`` returns both). The variance jumps at z = Phi^-1(1/3), Phi^-1(2/3),
    ``truth.breakpoints``: quadrature must cut there to stay exact (``truth.quadrature_args``).

    Parameters
    ----------
    sigma2_values : 3 floats > 0
        Noise variances of the three regions (per coordinate).

    Returns
    -------
    Dataset
        x (n, 2), z (n, 1); ``aux["t"]`` (n,), ``aux["region"]`` (n,) in {0, 1, 2};
        ``truth.constants``: sigma2_values, ``sigma2_of_t`` (t (...) -> (..., 2)).
    """
    v = _checks.array("sigma2_values", sigma2_values, shape=(3,), positive=True)
    v = tuple(float(a) for a in v)
    truth = GroundTruth(latent_dim=1, data_dim=2, decode=_three_noise_mean, sigma2=None,
                        sigma2_fn=functools.partial(_three_noise_sigma2, sigma2_values=v),
                        breakpoints=tuple(ndtri(np.array([1.0, 2.0]) / T_MAX)),
                        constants=dict(sigma2_values=v, sigma2_of_t=functools.partial(three_noise_sigma2_of_t,
                                                                                       sigma2_values=v)))
    ds = _from_truth("three_noise", n, seed, truth, dict(sigma2_values=v))
    t = _t_of_z(ds.z)
    return replace(ds, aux={"t": t, "region": _region(t)})


def _sphere_mean(z, radius):
    norm = np.linalg.norm(z, axis=-1, keepdims=True)
    # z = 0 (a grid node, probability 0 under the prior) maps to the centre instead of 0/0
    return radius * z / np.maximum(norm, np.finfo(np.float64).tiny)


def hypersphere(n, seed, *, radius=1.0, data_dim=3):
    """berger2020's Theorem 1 data (docs/math.md 4.6): uniform on the sphere of radius r in R^d, no noise.

    x = r z / ||z||, z ~ N(0, I_d): the direction of a standard normal vector is uniform on
    the sphere (its norm is discarded, so K = d here only to write the sampler as a decoder).
    A fixed-variance VAE collapses to the centre when r^2 <= d sigma2 (docs/math.md 4.6).

    Parameters
    ----------
    radius : float > 0
    data_dim : int >= 1

    Returns
    -------
    Dataset
        x (n, d) with ||x_i|| = r, z (n, d); ``truth.sigma2`` = 0,
        ``truth.constants``: radius.
    """
    radius = _checks.scalar("radius", radius, positive=True)
    data_dim = _checks.integer("data_dim", data_dim, min_value=1)
    truth = GroundTruth(latent_dim=data_dim, data_dim=data_dim,
                        decode=functools.partial(_sphere_mean, radius=radius), sigma2=0.0,
                        constants=dict(radius=radius))
    return _from_truth("hypersphere", n, seed, truth, dict(radius=radius, data_dim=data_dim))


# =========================================================================== dai2020

def soft_threshold_axis(n, seed, *, data_dim=2, scale=1.0):
    """dai2020 Proposition 1's data (docs/math.md 4.7): x_i = t_i e_1 in R^d, t_i != 0, no noise.

    Points on one axis admit a perfect-reconstruction path for the soft-threshold decoder
    (energy -> -infinity as gamma -> 0) next to its collapsed local minimum. t_i = scale z_i,
    z_i ~ N(0, 1) (a draw of exactly 0 is redrawn), so the ground truth is linear:
    W = scale e_1 (d, 1), b = 0, noise 0.

    Parameters
    ----------
    data_dim : int >= 2
    scale : float > 0

    Returns
    -------
    Dataset
        x (n, d), z (n, 1); ``aux["t"]`` (n,), all nonzero.
    """
    data_dim = _checks.integer("data_dim", data_dim, min_value=2)
    scale = _checks.scalar("scale", scale, positive=True)
    n = _n_arg(n)
    rng = make_rng(seed)
    W = np.zeros((data_dim, 1))
    W[0, 0] = scale
    truth = _linear_truth(W, np.zeros(data_dim), 0.0, scale=scale)
    z = rng.standard_normal((n, 1))
    while np.any(z == 0.0):
        zero = z == 0.0
        z[zero] = rng.standard_normal(int(zero.sum()))
    x = truth.decode(z)
    return Dataset(name="soft_threshold_axis", x=x, z=z, labels=None, truth=truth,
                   aux={"t": scale * z[:, 0]}, params=dict(data_dim=data_dim, scale=scale))


def random_rotation(dim, seed):
    """A Haar-distributed orthogonal matrix (dim, dim): QR of a Gaussian matrix, signs fixed.

    dim : int >= 1; seed : int >= 0, SeedSequence or numpy.random.Generator.
    """
    dim = _checks.integer("dim", dim, min_value=1)
    g = make_rng(seed).standard_normal((dim, dim))
    q, r = np.linalg.qr(g)
    return q * np.sign(np.diag(r))


def gaussian_spectrum(n, seed, *, eigs=(3.0, 1.5, 0.5, 0.1, 0.02), rotation_seed=0):
    """Gaussian data with a chosen covariance spectrum (dai2020 Sec. 3-4; docs/math.md 4.4).

    x ~ N(0, U diag(eigs) U^T), U a Haar-random rotation drawn from ``rotation_seed``
    (kept apart from ``seed``, so that samples with different seeds share one
    population). Written as a linear model with K = d: x = U diag(sqrt(eigs)) z, no noise;
    PPCA / linear-VAE optima (docs/math.md 4.4) read the spectrum from ``truth.constants``.
    Default d = 5, eigs = (3, 1.5, 0.5, 0.1, 0.02): all above the default noise 0.01, so a
    fixed-gamma linear VAE with gamma = 0.01 keeps every direction while gamma = 0.2 prunes
    the last two (a column is zero iff l_j <= gamma, docs/math.md 4.4); choose ``eigs`` around the
    gamma of interest.

    Parameters
    ----------
    eigs : array (d,) of floats >= 0
        Eigenvalues of the covariance (any order; stored sorted in decreasing order).
    rotation_seed : int >= 0
        An int (not a Generator), so that ``Dataset.sample`` rebuilds the same rotation.

    Returns
    -------
    Dataset
        x (n, d), z (n, d); ``truth`` linear with W = U diag(sqrt(eigs)), b = 0,
        noise_cov = 0; ``truth.constants``: eigs (d,), U (d, d), cov (d, d).
    """
    eigs = _checks.array("eigs", eigs, ndim=1, nonneg=True)
    if eigs.shape[0] == 0:
        raise ValueError("eigs must hold at least one eigenvalue")
    rotation_seed = _checks.integer("rotation_seed", rotation_seed, min_value=0)
    eigs = np.sort(eigs)[::-1].copy()
    U = random_rotation(eigs.shape[0], rotation_seed)
    cov = (U * eigs) @ U.T
    truth = _linear_truth(U * np.sqrt(eigs), np.zeros(eigs.shape[0]), 0.0, eigs=eigs, U=U, cov=cov)
    return _from_truth("gaussian_spectrum", n, seed, truth, dict(eigs=eigs, rotation_seed=rotation_seed))


# =========================================================================== registry

DATASETS: Mapping[str, Callable[..., Dataset]] = types.MappingProxyType({
    "pedagogical_c1": pedagogical_c1,
    "pedagogical_c2": pedagogical_c2,
    "linear_jtex": linear_jtex,
    "cubic_jtex": cubic_jtex,
    "gaussian": gaussian,
    "mobius": mobius,
    "figure8": figure8,
    "circle": circle,
    "absolute_value": absolute_value,
    "clusters": clusters,
    "spiral_dots": spiral_dots,
    "discrete_semicircle": discrete_semicircle,
    "compression": compression,
    "three_noise": three_noise,
    "hypersphere": hypersphere,
    "soft_threshold_axis": soft_threshold_axis,
    "gaussian_spectrum": gaussian_spectrum,
})


def load(name, n, seed, **kwargs):
    """Draw ``n`` points of the data set ``name`` (a key of ``DATASETS``) with ``seed``.

    ``kwargs`` are the generator's options. Returns a ``Dataset``.
    """
    _checks.choice("name", name, DATASETS)
    return DATASETS[name](n, seed, **kwargs)

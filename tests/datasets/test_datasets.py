"""refvae.datasets: shapes, determinism, sample statistics against the ground truth, bad inputs."""
import math

import numpy as np
import pytest
from scipy.special import ndtr

from refvae import datasets as D

ALL = sorted(D.DATASETS)


# -- generic contract ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_shapes_dtypes_and_truth(name):
    ds = D.load(name, 64, seed=0)
    t = ds.truth
    assert ds.name == name and ds.n == 64
    assert ds.x.dtype == np.float64 and ds.x.shape == (64, t.data_dim)
    assert ds.z.dtype == np.float64 and ds.z.shape == (64, t.latent_dim)
    assert np.isfinite(ds.x).all()
    for labels in (ds.labels, ds.full_labels):
        assert labels is None or (labels.shape == (64,) and labels.dtype.kind == "i")
    zz = np.random.default_rng(1).normal(size=(5, 3, t.latent_dim))      # decode is vectorised
    mean, var = t.observation(zz, y=np.zeros((5, 3), int)) if t.is_conditional else t.observation(zz)
    assert mean.shape == var.shape == (5, 3, t.data_dim)
    assert np.all(var >= 0)
    if t.is_linear:
        assert t.W.shape == (t.data_dim, t.latent_dim) and t.b.shape == (t.data_dim,)
        assert t.noise_cov.shape == (t.data_dim, t.data_dim)
        np.testing.assert_allclose(mean, zz @ t.W.T + t.b, rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(var, np.broadcast_to(np.diag(t.noise_cov), var.shape), rtol=1e-15)


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_data_different_seed_different_data(name):
    a, b, c = D.load(name, 50, seed=3), D.load(name, 50, seed=3), D.load(name, 50, seed=4)
    assert a.x.tobytes() == b.x.tobytes() and a.z.tobytes() == b.z.tobytes()
    assert not np.array_equal(a.x, c.x)
    g = D.load(name, 50, seed=np.random.default_rng(3))                  # a Generator works too
    assert g.x.tobytes() == a.x.tobytes()
    again = a.sample(50, seed=3)                                          # same population, same seed
    assert again.x.tobytes() == a.x.tobytes() and again.name == name


@pytest.mark.parametrize("name", ALL)
def test_data_are_read_only(name):
    ds = D.load(name, 10, seed=0)
    with pytest.raises(ValueError):
        ds.x[0, 0] = 1.0
    with pytest.raises(AttributeError):
        ds.x = ds.x.copy()


@pytest.mark.parametrize("name", ALL)
def test_data_come_from_the_ground_truth(name):
    # residual x - f(z) has the advertised variance per coordinate (5 standard errors), or is 0
    ds = D.load(name, 4000, seed=11)
    t = ds.truth
    y = ds.full_labels if t.is_conditional else None
    mean, var = t.observation(ds.z, y)
    r = ds.x - mean
    if np.all(var == 0):
        np.testing.assert_array_equal(r, 0.0)
        return
    u = r / np.sqrt(var)                                                  # standardised: N(0, 1)
    assert np.all(np.abs(u.mean(axis=0)) < 5 / math.sqrt(ds.n))
    assert np.all(np.abs((u * u).mean(axis=0) - 1) < 5 * math.sqrt(2 / ds.n))


# -- linear-Gaussian sets: sample mean and covariance vs b and W W^T + noise_cov -------------
LINEAR = [("pedagogical_c1", {}), ("pedagogical_c1", {"theta": 0.0}), ("pedagogical_c1", {"theta": -0.1}),
          ("pedagogical_c2", {"B": (0.0, 0.01)}), ("linear_jtex", {}), ("gaussian", {}),
          ("gaussian_spectrum", {}), ("soft_threshold_axis", {"data_dim": 3})]


@pytest.mark.parametrize("name, kwargs", LINEAR)
def test_linear_sets_sample_moments(name, kwargs):
    ds = D.load(name, 20000, seed=5, **kwargs)
    mean, cov = ds.truth.marginal()
    n = ds.n
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(ds.x.mean(axis=0) - mean) <= 5 * se_mean + 1e-15)
    xc = ds.x - mean
    S = xc.T @ xc / n
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov ** 2) / n)
    assert np.all(np.abs(S - cov) <= 5 * se_cov + 1e-15)


@pytest.mark.parametrize("theta", [0.0, 0.05, 0.08, -0.09, 0.1])
def test_c1_marginal_is_the_same_for_every_theta(theta):
    t = D.pedagogical_c1(1, seed=0, theta=theta, sigma2=0.01).truth
    mean, cov = t.marginal()
    np.testing.assert_allclose(cov, [[0.01]], rtol=1e-14)
    np.testing.assert_array_equal(mean, [0.0])
    assert t.sigma2 == pytest.approx(max(0.01 - theta ** 2, 0.0), rel=1e-14, abs=1e-18)


def test_c1_quadrature_log_likelihood_is_the_same_for_every_theta():
    from refvae.metrics.quadrature import log_likelihood
    x = np.linspace(-0.3, 0.3, 13)[:, None]
    exact = -0.5 * (x[:, 0] ** 2 / 0.01 + math.log(2 * math.pi * 0.01))
    for theta in (0.0, 0.05, 0.09):
        t = D.pedagogical_c1(1, seed=0, theta=theta).truth
        np.testing.assert_allclose(log_likelihood(x, **t.quadrature_args), exact, rtol=1e-12)


@pytest.mark.parametrize("B", [(0.0, 0.0), (0.006, 0.006), (0.01, 0.002), np.diag([0.003, 0.009])])
def test_c2_marginal_is_the_same_for_every_B(B):
    ds = D.pedagogical_c2(20000, seed=9, B=B)
    A = np.array(D.A_GT)
    target = A @ A.T + 0.01 * np.eye(2)
    np.testing.assert_allclose(ds.truth.marginal()[1], target, rtol=1e-13)
    S = ds.x.T @ ds.x / ds.n
    se = np.sqrt((np.outer(np.diag(target), np.diag(target)) + target ** 2) / ds.n)
    assert np.all(np.abs(S - target) <= 5 * se)
    b_diag = np.diag(B) if np.ndim(B) == 2 else np.asarray(B)
    np.testing.assert_allclose(np.diag(ds.truth.noise_cov), 0.01 - b_diag, rtol=1e-14)


def test_yacoby2020_constants():
    jt = D.linear_jtex(5, seed=0).truth
    np.testing.assert_allclose(jt.W @ jt.W.T, np.array(D.A_GT) @ np.array(D.A_GT).T + 0.006 * np.eye(2), rtol=1e-14)
    np.testing.assert_allclose(jt.sigma2, [0.004, 0.004], rtol=1e-14)
    assert np.allclose(np.triu(jt.W, 1), 0)                                   # a Cholesky factor
    cub = D.cubic_jtex(5, seed=0)
    np.testing.assert_allclose(cub.truth.decode(cub.z), (cub.z @ jt.W.T) ** 3, rtol=1e-14)
    g = D.gaussian(5, seed=0).truth
    np.testing.assert_allclose(np.linalg.norm(g.W, axis=1), 1.0, atol=5e-4)   # A has unit columns
    np.testing.assert_allclose(g.noise_cov, 1e-6 * np.eye(4))
    mob = D.mobius(5, seed=0).truth
    w = 0.3 - 1.2j
    np.testing.assert_allclose(mob.decode(np.array([[0.3, -1.2]]))[0], [((w + 1 + 4j) / (w + 7 + 4j)).real,
                                                                           ((w + 1 + 4j) / (w + 7 + 4j)).imag],
                               rtol=1e-14)
    assert mob.sigma2 == 1e-5


# -- yacoby2021 sets -------------------------------------------------------------------------
def test_figure8_and_circle_curves():
    f8 = D.figure8(1, seed=0).truth.decode
    np.testing.assert_allclose(f8(np.zeros((1, 1))), [[0.0, 0.0]], atol=1e-15)      # z = 0: the crossing
    ends = f8(np.array([[-9.0], [9.0]]))
    np.testing.assert_allclose(np.linalg.norm(ends, axis=1), 0.223, atol=2e-3)     # both tails end near it
    ci = D.circle(2000, seed=0)
    np.testing.assert_allclose(np.linalg.norm(ci.truth.decode(ci.z), axis=1), 1.0, rtol=1e-14)
    angle = np.mod(np.arctan2(ci.truth.decode(ci.z)[:, 1], ci.truth.decode(ci.z)[:, 0]), 2 * math.pi)
    np.testing.assert_allclose(angle / (2 * math.pi), ndtr(ci.z[:, 0]), atol=1e-12)  # uniform angle


@pytest.mark.parametrize("name, C, radius", [("clusters", 4, lambda j, C: 1.0),
                                             ("spiral_dots", 8, lambda j, C: 0.3 + j / C)])
def test_clusters_are_C_separated_equal_mass_groups(name, C, radius):
    ds = D.load(name, 8000, seed=2)
    assert ds.truth.constants["num_clusters"] == C
    j = np.arange(1, C + 1)
    centres = np.stack([radius(j, C) * np.cos(2 * math.pi * j / C), radius(j, C) * np.sin(2 * math.pi * j / C)], 1)
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=2) + np.eye(C) * 9
    assert gaps.min() > 3 * 0.1                                            # > 3 noise stds apart
    # the plateau of z (aux) is the nearest centre for nearly every point
    nearest = np.argmin(np.linalg.norm(ds.x[:, None] - centres[None], axis=2), axis=1)
    assert np.mean(nearest == ds.aux["cluster"]) > 0.95
    # noise-free means sit on their centres, except in the thin steps between plateaus, so
    # most data lie within 3 noise stds of a centre
    on_centre = np.linalg.norm(ds.truth.decode(ds.z) - centres[ds.aux["cluster"]], axis=1) < 0.05
    assert np.mean(on_centre) > 0.75
    assert np.mean(np.linalg.norm(ds.x[:, None] - centres[None], axis=2).min(axis=1) < 0.3) > 0.9
    counts = np.bincount(ds.aux["cluster"], minlength=C) / ds.n
    assert np.all(np.abs(counts - 1 / C) < 5 * math.sqrt((1 / C) * (1 - 1 / C) / ds.n))


def test_discrete_semicircle_labels_and_class_conditionals():
    ds = D.discrete_semicircle(6000, seed=3)
    y, labels = ds.full_labels, ds.labels
    seen = labels >= 0
    assert seen.sum() == round(0.1 * ds.n)
    np.testing.assert_array_equal(labels[seen], y[seen])
    assert set(np.unique(labels)) == {-1, 0, 1}
    np.testing.assert_allclose(ds.truth.class_probs, [0.5, 0.5])
    assert abs(y.mean() - 0.5) < 5 * math.sqrt(0.25 / ds.n)
    mean = ds.truth.decode(ds.z, y)
    np.testing.assert_allclose(np.linalg.norm(mean, axis=1), 1.0, rtol=1e-14)    # one shared semicircle
    angle = np.arctan2(mean[:, 1], mean[:, 0]) / math.pi
    assert angle.min() >= 0 and angle.max() <= 1
    # angle / pi ~ U^(1/3) (mean 3/4, var 3/80) for y = 0 and U^3 (mean 1/4, var 9/112) for y = 1
    for cls, m, v in ((0, 0.75, 3 / 80), (1, 0.25, 9 / 112)):
        a = angle[y == cls]
        assert abs(a.mean() - m) < 5 * math.sqrt(v / a.size)
    # the noisy data too: mean angle per class differs by ~ pi / 2
    obs = np.arctan2(ds.x[:, 1], ds.x[:, 0])
    assert obs[y == 0].mean() - obs[y == 1].mean() > 0.4 * math.pi
    # given(y) is the class model
    np.testing.assert_array_equal(ds.truth.given(1).decode(ds.z), ds.truth.decode(ds.z, 1))
    none = D.discrete_semicircle(50, seed=0, labelled_fraction=0.0)
    assert np.all(none.labels == -1) and none.full_labels is not None


def test_compression_embeds_figure8():
    ds = D.compression(300, seed=0, data_dim=4)
    f8 = D.figure8(1, seed=0).truth.decode
    mean = ds.truth.decode(ds.z)
    np.testing.assert_array_equal(mean[:, :2], f8(ds.z))
    np.testing.assert_array_equal(mean[:, 2:], 0.0)
    assert ds.truth.latent_dim == 1 and ds.x.shape == (300, 4)
    assert D.compression(5, seed=0).x.shape == (5, 2)


# -- berger2020 sets -------------------------------------------------------------------------
def test_three_noise_residual_variance_per_region():
    ds = D.three_noise(30000, seed=4)
    t, region = ds.aux["t"], ds.aux["region"]
    assert t.min() >= 0 and t.max() <= 3
    np.testing.assert_array_equal(region, np.minimum(np.floor(t), 2))
    v = ds.truth.constants["sigma2_values"]
    assert v == (0.01, 0.0004, 0.09) and ds.truth.sigma2 is None
    curve = np.stack([t - 1.5, np.sin(math.pi * t)], axis=1)
    r = ds.x - curve
    for k in range(3):
        rk = r[region == k]
        assert abs(rk.shape[0] / ds.n - 1 / 3) < 0.02                      # t ~ U(0, 3)
        s = (rk ** 2).mean(axis=0)                                       # per coordinate
        assert np.all(np.abs(s / v[k] - 1) < 5 * math.sqrt(2 / rk.shape[0]))
    np.testing.assert_array_equal(ds.truth.constants["sigma2_of_t"](np.array([0.5, 1.0, 2.9]))[:, 0],
                                  [0.01, 0.0004, 0.09])
    np.testing.assert_array_equal(ds.truth.sigma2_fn(ds.z), ds.truth.constants["sigma2_of_t"](t))
    assert len(ds.truth.quadrature_args["breakpoints"]) == 2


@pytest.mark.parametrize("radius, d", [(1.0, 3), (2.5, 10), (0.1, 1)])
def test_hypersphere_radii(radius, d):
    ds = D.hypersphere(3000, seed=1, radius=radius, data_dim=d)
    np.testing.assert_allclose(np.linalg.norm(ds.x, axis=1), radius, rtol=1e-13)
    assert np.all(np.abs(ds.x.mean(axis=0)) < 5 * radius / math.sqrt(d * ds.n))   # centred
    assert ds.truth.sigma2 == 0.0


# -- dai2020 sets -------------------------------------------------------------------------
def test_soft_threshold_axis_points():
    ds = D.soft_threshold_axis(500, seed=2, data_dim=4, scale=2.0)
    assert np.all(ds.x[:, 0] != 0)
    np.testing.assert_array_equal(ds.x[:, 1:], 0.0)
    np.testing.assert_array_equal(ds.x[:, 0], ds.aux["t"])


def test_gaussian_spectrum_covariance():
    eigs = (5.0, 0.0, 1.0, 0.25)
    ds = D.gaussian_spectrum(10, seed=0, eigs=eigs, rotation_seed=7)
    c = ds.truth.constants
    np.testing.assert_array_equal(c["eigs"], [5.0, 1.0, 0.25, 0.0])
    np.testing.assert_allclose(np.linalg.eigvalsh(c["cov"])[::-1], c["eigs"], atol=1e-13)
    np.testing.assert_allclose(c["U"] @ c["U"].T, np.eye(4), atol=1e-14)
    np.testing.assert_allclose(ds.truth.marginal()[1], c["cov"], atol=1e-14)
    other = D.gaussian_spectrum(10, seed=1, eigs=eigs, rotation_seed=7)
    np.testing.assert_array_equal(other.truth.constants["U"], c["U"])     # one population across seeds
    assert not np.array_equal(D.gaussian_spectrum(10, seed=0, eigs=eigs, rotation_seed=8).truth.constants["U"],
                              c["U"])


# -- bad inputs ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("n, exc, match", [(0, ValueError, "n must be >= 1"), (-3, ValueError, "n must be >= 1"),
                                           (2.5, TypeError, "n must be an integer"),
                                           (True, TypeError, "n must be an integer")])
def test_bad_n(name, n, exc, match):
    with pytest.raises(exc, match=match):
        D.load(name, n, seed=0)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: D.figure8(10, seed=None), ValueError, "seed must be given"),
    (lambda: D.figure8(10, seed="a"), TypeError, "seed must be an int"),
    (lambda: D.figure8(10, 0, sigma2=-0.01), ValueError, "sigma2 must be positive"),
    (lambda: D.circle(10, 0, sigma2=0.0), ValueError, "sigma2 must be positive"),
    (lambda: D.pedagogical_c1(10, 0, theta=0.2, sigma2=0.01), ValueError, r"theta\^2 <= sigma2"),
    (lambda: D.pedagogical_c1(10, 0, sigma2=-1.0), ValueError, "sigma2 must be positive"),
    (lambda: D.pedagogical_c2(10, 0, B=(0.02, 0.0)), ValueError, r"B's diagonal must lie in \[0, sigma2"),
    (lambda: D.pedagogical_c2(10, 0, B=(-0.001, 0.0)), ValueError, "B must be non-negative"),
    (lambda: D.pedagogical_c2(10, 0, B=np.ones((2, 2)) * 1e-3), ValueError, "B must be a diagonal"),
    (lambda: D.pedagogical_c2(10, 0, A=np.zeros((2, 1)), B=(0.0, 0.0)), ValueError, "positive definite"),
    (lambda: D.discrete_semicircle(10, 0, labelled_fraction=-0.1), ValueError, "labelled_fraction must be >= 0"),
    (lambda: D.discrete_semicircle(10, 0, labelled_fraction=1.5), ValueError, "labelled_fraction must be <= 1"),
    (lambda: D.discrete_semicircle(10, 0, labelled_fraction="a"), TypeError, "labelled_fraction must be a real"),
    (lambda: D.three_noise(10, 0, sigma2_values=(0.01, -0.1, 0.1)), ValueError, "sigma2_values must be positive"),
    (lambda: D.three_noise(10, 0, sigma2_values=(0.01, 0.1)), ValueError, r"sigma2_values must have shape \(3\)"),
    (lambda: D.hypersphere(10, 0, radius=0.0), ValueError, "radius must be positive"),
    (lambda: D.soft_threshold_axis(10, 0, data_dim=1), ValueError, "data_dim must be >= 2"),
    (lambda: D.gaussian_spectrum(10, 0, eigs=(1.0, -0.5)), ValueError, "eigs must be non-negative"),
    (lambda: D.clusters(10, 0, num_clusters=1), ValueError, "num_clusters must be >= 2"),
    (lambda: D.compression(10, 0, data_dim=1), ValueError, "data_dim must be >= 2"),
    (lambda: D.load("nope", 10, 0), ValueError, "name must be one of"),
    (lambda: D.figure8(10, 0, sigma3=0.1), TypeError, "sigma3"),
])
def test_bad_options_raise_clear_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_ground_truth_misuse():
    semi = D.discrete_semicircle(5, seed=0).truth
    with pytest.raises(ValueError, match="y is required"):
        semi.observation(np.zeros((2, 1)))
    with pytest.raises(ValueError, match="use given"):
        semi.quadrature_args
    with pytest.raises(ValueError, match="y must be < 2"):
        semi.given(2)
    f8 = D.figure8(5, seed=0).truth
    with pytest.raises(ValueError, match="last dimension 1"):
        f8.observation(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="closed form only for linear"):
        f8.marginal()

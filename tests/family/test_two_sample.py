"""Smooth k-NN two-sample statistic, k = 1 (Djolonga and Krause 2017; docs/math.md 3)."""
import math

import numpy as np
import pytest

from refvae.metrics.two_sample import smooth_knn_statistic, soft_nn_matrix

ALPHAS = (1.0, 5.0)


def statistic_by_loops(s1, s2, alphas):
    """docs/math.md 3 written out entry by entry."""
    u = np.concatenate([s1, s2])
    n1, n2 = len(s1), len(s2)
    n = n1 + n2
    M = np.zeros((n, n))
    for a in alphas:
        for i in range(n):
            w = {j: math.exp(-a * math.sqrt(1e-5 + float(np.sum((u[i] - u[j]) ** 2)))) for j in range(n) if j != i}
            total = sum(w.values())
            for j, v in w.items():
                M[i, j] += v / total / len(alphas)
    same = lambda i, j: (i < n1) == (j < n1)  # noqa: E731
    T = sum(M[i, j] for i in range(n) for j in range(n) if not same(i, j))
    m = M.sum()
    mean = 2 * m * n1 * n2 / (n * (n - 1))
    c1 = n1 * n2 / (n * (n - 1))
    c2 = 4 * (n1 - 1) * (n2 - 1) / ((n - 2) * (n - 3))
    nbs = sum((sum(M[i, j] for j in range(n)) + sum(M[j, i] for j in range(n))) ** 2 for i in range(n))
    sq = sum(M[i, j] ** 2 for i in range(n) for j in range(n))
    flip = sum(M[i, j] * M[j, i] for i in range(n) for j in range(n))
    var = c1 * (1 - c2) * nbs + c1 * c2 * sq + c1 * c2 * flip + c1 * (c2 - 4 * c1) * m ** 2
    return -(T - mean) / math.sqrt(1e-5 + var)


def test_matches_hand_computation():
    rng = np.random.default_rng(0)
    s1, s2 = rng.standard_normal((4, 2)), rng.standard_normal((5, 2)) + 0.7
    for alphas in [(1.0,), (0.5, 2.0, 8.0)]:
        assert smooth_knn_statistic(s1, s2, alphas) == pytest.approx(statistic_by_loops(s1, s2, alphas), rel=1e-12)


def test_soft_nn_matrix_rows_are_distributions():
    M = soft_nn_matrix(np.random.default_rng(1).standard_normal((7, 3)), [1.0, 10.0])
    assert np.all(np.diag(M) == 0) and np.all(M >= 0)
    np.testing.assert_allclose(M.sum(axis=1), 1.0, rtol=1e-14)


def test_symmetric_in_the_two_samples_and_invariant_to_order():
    rng = np.random.default_rng(2)
    s1, s2 = rng.standard_normal((30, 2)), rng.standard_normal((40, 2)) + 0.3
    t = smooth_knn_statistic(s1, s2, ALPHAS)
    assert smooth_knn_statistic(s2, s1, ALPHAS) == pytest.approx(t, rel=1e-12)
    assert smooth_knn_statistic(s1[::-1], rng.permutation(s2), ALPHAS) == pytest.approx(t, rel=1e-12)


def test_separates_shifted_gaussians():
    # Under the null the statistic is about N(0, 1) (next test); 5 is a 5-sigma event there.
    rng = np.random.default_rng(3)
    t = smooth_knn_statistic(rng.standard_normal((300, 2)), rng.standard_normal((300, 2)) + 0.5, ALPHAS)
    assert t > 5.0


def test_does_not_separate_samples_of_one_distribution():
    # |N(0, 1)| > 3 has probability 0.0027.
    rng = np.random.default_rng(4)
    t = smooth_knn_statistic(rng.standard_normal((300, 2)), rng.standard_normal((300, 2)), ALPHAS)
    assert abs(t) < 3.0


def test_roughly_standard_normal_under_the_null():
    # 100 null replicates (n1 = n2 = 50): the mean has standard error ~0.1 (accept |mean| < 0.45,
    # a little over 4 of them), the standard deviation ~0.07 (accept 0.7 .. 1.4).
    rng = np.random.default_rng(5)
    t = np.array([smooth_knn_statistic(rng.standard_normal((50, 2)), rng.standard_normal((50, 2)), ALPHAS)
                  for _ in range(100)])
    assert abs(t.mean()) < 0.45
    assert 0.7 < t.std(ddof=1) < 1.4


def test_bad_inputs():
    a = np.zeros((5, 2))
    with pytest.raises(ValueError, match="same dimension"):
        smooth_knn_statistic(a, np.zeros((5, 3)), ALPHAS)
    with pytest.raises(ValueError, match="at least 2 points"):
        smooth_knn_statistic(a, np.zeros((1, 2)), ALPHAS)
    with pytest.raises(ValueError, match="alphas\\[1\\] must be positive"):
        smooth_knn_statistic(a, a, [1.0, -1.0])
    with pytest.raises(ValueError, match="non-empty"):
        smooth_knn_statistic(a, a, [])
    with pytest.raises(TypeError, match="alphas must be a non-empty sequence"):
        smooth_knn_statistic(a, a, 1.0)
    with pytest.raises(ValueError, match="sample1 must have at least 2 dimensions"):
        smooth_knn_statistic(np.zeros(5), a, ALPHAS)
    with pytest.raises(ValueError, match="leading axes of sample1 \\(3,\\) and sample2 \\(4,\\) must broadcast"):
        smooth_knn_statistic(np.zeros((3, 5, 2)), np.zeros((4, 5, 2)), ALPHAS)
    with pytest.raises(ValueError, match="sample2 must be finite"):
        smooth_knn_statistic(a, np.full((5, 2), np.inf), ALPHAS)


def test_leading_axes_are_independent_tests():
    # a batch of tests (e.g. yacoby2020's 20000 repetitions) equals the tests one by one,
    # and a single 2-D sample broadcasts against a batch
    rng = np.random.default_rng(5)
    s1, s2 = rng.standard_normal((3, 4, 6, 2)), rng.standard_normal((3, 4, 7, 2)) + 0.5
    batch = smooth_knn_statistic(s1, s2, ALPHAS)
    assert batch.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert batch[i, j] == pytest.approx(smooth_knn_statistic(s1[i, j], s2[i, j], ALPHAS), rel=1e-12, abs=1e-12)
    one = smooth_knn_statistic(s1, s2[0, 0], ALPHAS)
    assert one.shape == (3, 4)
    assert one[2, 1] == pytest.approx(smooth_knn_statistic(s1[2, 1], s2[0, 0], ALPHAS), rel=1e-12, abs=1e-12)
    M = soft_nn_matrix(np.concatenate([s1, s2], axis=-2), ALPHAS)
    assert M.shape == (3, 4, 13, 13)
    np.testing.assert_allclose(M[1, 2], soft_nn_matrix(np.concatenate([s1[1, 2], s2[1, 2]]), ALPHAS), rtol=1e-13)

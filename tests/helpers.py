"""Helpers shared by test modules."""
import math


def perturbed_init(model, rng, R, scale=0.3):
    """Initial parameters with non-zero biases and log-variances, so every gradient path is exercised."""
    params = model.init(rng, R)
    return {k: v + scale * rng.standard_normal(v.shape) for k, v in params.items()}


def mean_and_se(samples):
    """Mean over (points, draws) of samples (N, M) and its standard error with the points held fixed."""
    N, M = samples.shape
    return samples.mean(), math.sqrt(samples.var(axis=1, ddof=1).mean() / (N * M))

"""Metrics used by the papers (docs/math.md 3).

- ``quadrature``: exact log p(x) and the posterior p(z|x) on a grid for 1- and 2-D latents.
- ``likelihood``: chunked importance-sampled log-likelihood (optionally with a defensive prior mixture),
  the exact log-likelihood where one exists, a model's own objective with its error.
- ``information``: mutual information I_q, active units, aggregate posterior versus prior.
- ``hz``: the Henze-Zirkler statistic, its gradient and p-value.
- ``two_sample``: the smooth k-NN two-sample statistic.

The modules' main functions are importable from here (``refvae.metrics.importance_log_likelihood``);
the quadrature functions keep their module's name (``refvae.metrics.quadrature.log_likelihood``).
"""
from . import hz, information, likelihood, quadrature, two_sample
from .hz import hz_statistic, hz_test
from .information import active_units, aggregate_kl_to_prior, encoder_mutual_information, mutual_information
from .likelihood import exact_log_likelihood, has_exact_log_likelihood, importance_log_likelihood, objective_estimate
from .two_sample import smooth_knn_statistic

__all__ = ["hz", "information", "likelihood", "quadrature", "two_sample", "hz_statistic", "hz_test",
           "active_units", "aggregate_kl_to_prior", "encoder_mutual_information", "mutual_information",
           "exact_log_likelihood", "has_exact_log_likelihood", "importance_log_likelihood", "objective_estimate",
           "smooth_knn_statistic"]

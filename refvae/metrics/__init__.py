"""Metrics used by the papers (docs/math.md 3).

- ``quadrature``: exact log p(x) and the posterior p(z|x) on a grid for 1- and 2-D latents.
- ``likelihood``: chunked importance-sampled log-likelihood; a model's own objective with its error.
- ``information``: mutual information I_q, active units, aggregate posterior versus prior.
- ``hz``: the Henze-Zirkler statistic, its gradient and p-value.
- ``two_sample``: the smooth k-NN two-sample statistic.
"""

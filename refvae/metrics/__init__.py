"""Metrics used by the papers: log-likelihoods, posteriors on a grid, mutual information, two-sample statistics."""

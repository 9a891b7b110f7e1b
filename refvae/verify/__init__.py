"""``refvae verify``: the four papers' claims reproduced on the built-in benchmarks and reported.

>>> from refvae.verify import REGISTRY, run_claims, Context
>>> results = run_claims(["noise_theorem2"], Context(profile="mini"))  # doctest: +SKIP
"""
from .registry import PAPERS, PROFILES, REGISTRY, Claim, Context, Outcome, Part, Result, Row, claim, run_claims
from . import claims  # noqa: F401  (registers the claims)
from .cli import main

__all__ = ["PAPERS", "PROFILES", "REGISTRY", "Claim", "Context", "Outcome", "Part", "Result", "Row", "claim",
           "run_claims", "main"]

"""Hypothesis settings for the suite.

The default profile is derandomized: the random examples are drawn from a fixed seed, so every run
of ``make test`` (and CI) checks the same cases and a red run can be rerun as it was. To search
fresh random examples, as when writing a new property test, run with
``HYPOTHESIS_PROFILE=explore`` (a new seed each run, failures saved in .hypothesis/).
"""
import os

from hypothesis import settings

settings.register_profile("default", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

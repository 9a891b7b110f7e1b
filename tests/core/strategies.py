"""Hypothesis strategies shared by the core tests: those of ``refvae.testing``, which users get too."""
from hypothesis import strategies as st

from refvae.testing import away_from, restarts as _restarts

restarts = _restarts()                 # None (no restarts axis), 1 or 3
sizes = st.integers(1, 4)
seeds = st.integers(0, 2**32 - 1)

__all__ = ["away_from", "restarts", "sizes", "seeds"]

"""Hypothesis strategies shared by the core tests."""
import numpy as np
from hypothesis import strategies as st

restarts = st.sampled_from([None, 1, 3])
sizes = st.integers(1, 4)
seeds = st.integers(0, 2**32 - 1)


def away_from(values, kinks, margin):
    """Move entries closer than ``margin`` to any kink out to kink +- margin (keeps finite differences off kinks)."""
    v = np.array(values, dtype=np.float64)
    for k in kinks:
        close = np.abs(v - k) < margin
        v[close] = k + margin * np.where(v[close] >= k, 1.0, -1.0)
    return v

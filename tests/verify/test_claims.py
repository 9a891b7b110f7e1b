"""Every registered claim runs in its miniature setting; theorem claims must hold there too."""
import pytest

from refvae.verify import REGISTRY, Context, run_claims


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_claim_runs_in_miniature(name):
    result = run_claims([name], Context(profile="mini", seed=0))[0]
    assert result.error is None, result.error
    o = result.outcome
    assert o.summary and o.measured
    for k in o.spread:
        assert k in o.measured, f"spread given for {k!r}, which is not measured"
    if result.claim.kind == "theorem":
        assert o.passed, o.summary

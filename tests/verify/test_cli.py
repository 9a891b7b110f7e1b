"""The verify command: report format, exit status, options (claims themselves: test_claims.py)."""
import io
import json
import re

import pytest

from refvae.verify import REGISTRY, Context, Outcome, claim, main
from refvae.verify import registry


@pytest.fixture
def fake_claims(monkeypatch):
    """Two throw-away claims, one theorem that fails and one empirical that does not reproduce."""
    monkeypatch.setattr(registry, "REGISTRY", dict(REGISTRY))
    import refvae.verify.cli as cli
    monkeypatch.setattr(cli, "REGISTRY", registry.REGISTRY)

    @claim("fake_theorem", paper="yacoby2020", kind="theorem", statement="1 + 1 = 3", paper_figure="Eq. 0")
    def fake_theorem(ctx):
        ctx.progress(0.5, "halfway")
        return Outcome(passed=1 + 1 == 3, measured={"sum": 2.0}, summary="1 + 1 = 2, not 3", paper_value=3.0)

    @claim("fake_empirical", paper="yacoby2021", kind="empirical", statement="the sky is green")
    def fake_empirical(ctx):
        return Outcome(passed=False, measured={"hue": [0.6, 0.61]}, spread={"hue": 0.01}, summary="blue")

    @claim("fake_broken", paper="dai2020", kind="empirical", statement="raises")
    def fake_broken(ctx):
        raise RuntimeError("boom")
    return registry.REGISTRY


def run_cli(args, tmp_path):
    err = io.StringIO()
    status = main(args + ["--out", str(tmp_path)], stream=err)
    return status, json.loads((tmp_path / "report.json").read_text()), (tmp_path / "report.md").read_text()


def test_failing_theorem_exits_nonzero_and_reports(fake_claims, tmp_path, capsys):
    status, rep, md = run_cli(["--mini", "--only", "fake_theorem", "--only", "fake_empirical"], tmp_path)
    assert status == 1
    out = capsys.readouterr().out
    assert "[FAILS] fake_theorem" in out and "[not reproduced] fake_empirical" in out
    assert rep["failed"] == ["fake_theorem"]
    c = {x["name"]: x for x in rep["claims"]}
    assert c["fake_theorem"]["paper_value"] == 3.0 and c["fake_theorem"]["measured"] == {"sum": 2.0}
    assert c["fake_empirical"]["verdict"] == "not reproduced" and c["fake_empirical"]["spread"] == {"hue": 0.01}
    assert "| `fake_theorem` | yacoby2020 | theorem | **FAILS** | 3 | 1 + 1 = 2, not 3 |" in md


def test_empirical_failure_alone_exits_zero(fake_claims, tmp_path):
    status, rep, _ = run_cli(["--only", "fake_empirical", "--mini"], tmp_path)
    assert status == 0 and rep["failed"] == []


def test_claim_that_raises_is_an_error_and_fails_the_run(fake_claims, tmp_path):
    status, rep, md = run_cli(["--only", "fake_broken", "--mini"], tmp_path)
    assert status == 1
    assert rep["claims"][0]["verdict"] == "ERROR" and "RuntimeError: boom" in rep["claims"][0]["error"]


def test_unknown_claim_and_list(tmp_path, capsys):
    assert main(["--only", "no_such_claim", "--out", str(tmp_path)]) == 2
    assert main(["--list"]) == 0
    listed = capsys.readouterr().out
    for name in REGISTRY:
        assert name in listed


def test_registry_rejects_bad_claims():
    with pytest.raises(ValueError, match="paper must be one of"):
        claim("x", paper="001", kind="theorem", statement="")
    with pytest.raises(ValueError, match="kind must be one of"):
        claim("x", paper="yacoby2021", kind="conjecture", statement="")
    with pytest.raises(ValueError, match="registered twice"):
        claim(next(iter(REGISTRY)), paper="yacoby2021", kind="theorem", statement="")(lambda ctx: None)


def test_context_rng_is_reproducible_and_tag_dependent():
    a, b = Context(seed=3).rng("x").standard_normal(3), Context(seed=3).rng("x").standard_normal(3)
    assert (a == b).all()
    assert not (a == Context(seed=3).rng("y").standard_normal(3)).all()
    assert not (a == Context(seed=4).rng("x").standard_normal(3)).all()


def test_markdown_cells_escape_pipes_and_seed_reaches_claims(monkeypatch, tmp_path):
    # summaries such as "KL(p || p_theta)" must not split a table row; --seed is the claims' base seed
    monkeypatch.setattr(registry, "REGISTRY", dict(REGISTRY))
    import refvae.verify.cli as cli
    monkeypatch.setattr(cli, "REGISTRY", registry.REGISTRY)

    @claim("fake_pipes", paper="yacoby2020", kind="empirical", statement="a | b")
    def fake_pipes(ctx):
        return Outcome(passed=True, measured={"seed": ctx.seed, "draw": float(ctx.rng("t").standard_normal())},
                       summary="KL(p || q) = 1\nsecond line", paper_value="x | y")

    status, rep, md = run_cli(["--mini", "--only", "fake_pipes", "--seed", "7"], tmp_path)
    assert status == 0
    assert rep["meta"]["seed"] == 7 and rep["claims"][0]["measured"]["seed"] == 7
    assert rep["claims"][0]["measured"]["draw"] == float(Context(seed=7).rng("t").standard_normal())
    row = next(line for line in md.splitlines() if line.startswith("| `fake_pipes`"))
    assert len(re.split(r"(?<!\\)\|", row)) == 8          # six cells (and the two ends): none split
    assert "KL(p \\|\\| q) = 1 second line" in row and "x \\| y" in row


def test_unavailable_backend_is_a_clear_error_and_backend_is_restored(monkeypatch, tmp_path, capsys):
    from refvae import backend

    def refuse(name):
        if name == "cupy":
            raise RuntimeError("backend 'cupy' requested but CuPy is not installed")
        backend._current = name
    monkeypatch.setattr(backend, "set_backend", refuse)
    assert main(["--mini", "--only", next(iter(REGISTRY)), "--backend", "cupy", "--out", str(tmp_path)]) == 2
    assert "CuPy is not installed" in capsys.readouterr().err
    assert backend.get_backend() == "numpy"

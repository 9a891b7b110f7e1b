"""The verify command: report format, exit status, options (claims themselves: test_claims.py)."""
import io
import json
import os
import re
import subprocess
import sys

import pytest

from refvae.verify import REGISTRY, Context, Outcome, claim, main
from refvae.verify import registry, report


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


# --- runs that keep their work --------------------------------------------------------------

@pytest.fixture
def three_claims(monkeypatch):
    """Three fake claims run in order; ``calls`` records which ran, ``behave`` makes one misbehave."""
    monkeypatch.setattr(registry, "REGISTRY", {})
    import refvae.verify.cli as cli
    monkeypatch.setattr(cli, "REGISTRY", registry.REGISTRY)
    calls, behave, seen = [], {}, {}

    def make(name):
        def run(ctx):
            calls.append(name)
            report_json = os.path.join(ctx.out, "report.json")
            seen[name] = json.loads(open(report_json).read()) if os.path.exists(report_json) else None
            if name in behave:
                raise behave[name]
            return Outcome(passed=True, measured={"x": float(ctx.rng(name).standard_normal())}, summary=name)
        claim(name, paper="dai2020", kind="empirical", statement=f"{name} holds")(run)
    for name in ("first", "second", "third"):
        make(name)
    return calls, behave, seen


def _report(out):
    return json.loads((out / "report.json").read_text()), (out / "report.md").read_text()


def test_report_is_written_after_every_claim(three_claims, tmp_path):
    calls, _, seen = three_claims
    assert main(["--mini", "--out", str(tmp_path)], stream=io.StringIO()) == 0
    assert seen["first"] is None                                  # nothing finished yet: no report
    assert [c["name"] for c in seen["second"]["claims"]] == ["first"]
    assert seen["second"]["meta"]["complete"] is False and seen["second"]["meta"]["not_run"] == ["second", "third"]
    assert [c["name"] for c in seen["third"]["claims"]] == ["first", "second"]
    rep, md = _report(tmp_path)
    assert rep["meta"]["complete"] is True and rep["meta"]["status"] == "complete" and rep["meta"]["not_run"] == []
    assert "Incomplete" not in md


def test_ctrl_c_leaves_a_valid_partial_report_and_exit_130(three_claims, tmp_path, capsys):
    calls, behave, _ = three_claims
    behave["second"] = KeyboardInterrupt()
    assert main(["--mini", "--out", str(tmp_path)], stream=io.StringIO()) == 130
    assert calls == ["first", "second"]                          # the third never started
    rep, md = _report(tmp_path)
    assert [c["name"] for c in rep["claims"]] == ["first"] and rep["claims"][0]["verdict"] == "reproduced"
    assert rep["meta"]["complete"] is False and rep["meta"]["status"] == "interrupted"
    assert rep["meta"]["not_run"] == ["second", "third"]
    assert md.splitlines()[2].startswith("> **Incomplete run**, interrupted (Ctrl-C): 1 of 3 claims finished")
    assert "interrupted after 1 of 3 claims" in capsys.readouterr().out


def test_crash_keeps_the_last_good_report(three_claims, tmp_path, monkeypatch):
    # every report write after the first claim's fails mid-way: the first claim's report stays intact
    calls, _, _ = three_claims
    real_replace, replaced = os.replace, []

    def failing_replace(src, dst):
        if len(replaced) >= 2:                                   # report.json and report.md of claim 1
            raise OSError(28, "No space left on device")
        replaced.append(dst)
        real_replace(src, dst)
    monkeypatch.setattr(report.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        main(["--mini", "--out", str(tmp_path)], stream=io.StringIO())
    assert calls == ["first", "second"]
    rep, md = _report(tmp_path)
    assert [c["name"] for c in rep["claims"]] == ["first"] and rep["meta"]["complete"] is False
    assert "## first" in md and "## second" not in md
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]   # no temporary files


def test_crash_writes_the_finished_claims_marked_incomplete(three_claims, tmp_path, monkeypatch):
    calls, _, _ = three_claims
    real, n = report.to_markdown, []

    def fails_once(results, meta):
        n.append(1)
        if len(n) == 2:                                          # the report after the second claim
            raise RuntimeError("renderer bug")
        return real(results, meta)
    monkeypatch.setattr(report, "to_markdown", fails_once)
    with pytest.raises(RuntimeError, match="renderer bug"):
        main(["--mini", "--out", str(tmp_path)], stream=io.StringIO())
    assert calls == ["first", "second"]
    rep, md = _report(tmp_path)
    assert [c["name"] for c in rep["claims"]] == ["first", "second"]          # the second's result is kept
    assert rep["meta"]["status"] == "crashed" and "renderer bug" in rep["meta"]["stopped_by"]
    assert rep["meta"]["not_run"] == ["third"] and "Incomplete run" in md


def _unwritable_folder(tmp_path):
    if os.geteuid() != 0:
        d = tmp_path / "locked"
        d.mkdir()
        d.chmod(0o500)
        return str(d)
    for d in ("/sys/kernel", "/sys"):                           # root may write anywhere but sysfs
        try:
            open(os.path.join(d, ".refvae-probe"), "w").close()
        except OSError:
            return d
    pytest.skip("no unwritable folder available to this user")


@pytest.mark.parametrize("case", ["file", "under_a_file", "unwritable"])
def test_bad_out_fails_before_any_claim_runs(three_claims, tmp_path, capsys, case):
    calls, _, _ = three_claims
    (tmp_path / "a_file").write_text("x")
    out = {"file": str(tmp_path / "a_file"), "under_a_file": str(tmp_path / "a_file" / "sub"),
           "unwritable": _unwritable_folder(tmp_path)}[case]
    assert main(["--mini", "--out", out], stream=io.StringIO()) == 2
    err = capsys.readouterr().err
    assert f"--out {out!r}" in err and "nothing was run" in err
    assert calls == []


def test_out_is_created_when_missing(three_claims, tmp_path):
    out = tmp_path / "new" / "folder"
    assert main(["--mini", "--only", "first", "--out", str(out)], stream=io.StringIO()) == 0
    assert _report(out)[0]["claims"][0]["name"] == "first"


@pytest.mark.parametrize("option,value,expected", [
    ("--seed", "-1", "non-negative"), ("--seed", "x", "non-negative"), ("--seed", "1.5", "non-negative"),
    ("--jobs", "0", "positive"), ("--jobs", "two", "positive")])
def test_bad_seed_and_jobs_are_argparse_errors(three_claims, tmp_path, capsys, option, value, expected):
    calls, _, _ = three_claims
    with pytest.raises(SystemExit) as exit_:
        main(["--mini", option, value, "--out", str(tmp_path)])
    assert exit_.value.code == 2 and calls == []
    assert f"argument {option}: expected a {expected} integer, got '{value}'" in capsys.readouterr().err


def test_cupy_with_jobs_is_refused_before_any_work(three_claims, tmp_path, capsys):
    calls, _, _ = three_claims
    assert main(["--backend", "cupy", "--jobs", "2", "--out", str(tmp_path / "o")]) == 2
    assert "drop --jobs" in capsys.readouterr().err and calls == [] and not (tmp_path / "o").exists()


def test_help_exits_0_and_no_command_exits_2(capsys):
    from refvae.__main__ import main as refvae_main
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "--jobs N" in out and "--seed N" in out and "yacoby2020" in out
    assert refvae_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "verify" in out and all(p.title in out for p in registry.PAPERS.values())
    assert refvae_main([]) == 2 and "usage:" in capsys.readouterr().err
    assert refvae_main(["frobnicate"]) == 2 and "unknown command 'frobnicate'" in capsys.readouterr().err


def test_python_m_refvae_help_exits_0():
    done = subprocess.run([sys.executable, "-m", "refvae", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "usage: python -m refvae COMMAND" in done.stdout


def test_list_names_papers_then_claims_by_paper(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for p in registry.PAPERS.values():
        assert f"  {p.key:11s} {p.citation}" in out
    blocks = out.split("\n\n")[1:]                               # one block per paper after the list
    for block in blocks:
        key = block.split(":")[0]
        names = [line.split()[0] for line in block.splitlines()[1:]]
        assert names and all(REGISTRY[n].paper == key for n in names)
    assert sorted(n for b in blocks for n in (line.split()[0] for line in b.splitlines()[1:])) == sorted(REGISTRY)


def test_claims_run_with_diverging_restarts_isolated():
    from refvae import train
    from refvae.verify.registry import Claim, run_claim
    c = Claim("p", "dai2020", "empirical", "", lambda ctx: Outcome(passed=True, summary="",
                                                                  measured={"policy": train.resolve_policy(None)}))
    assert run_claim(c, Context()).outcome.measured["policy"] == "isolate"
    assert train.resolve_policy(None) == "raise"                 # only inside the claim


def test_output_into_a_closed_pipe_is_not_a_traceback():
    """``refvae verify --list | head -1``: the reader closes the pipe before refvae writes; the command
    still exits 0 without a BrokenPipeError traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "refvae", "verify", "--list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()                        # closed before the import of refvae is done and the list is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and "Traceback" not in err, err

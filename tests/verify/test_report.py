"""Reports of a verify run: the console block, the counts line, the Markdown and JSON, atomic writes."""
import json
import os

import pytest

from refvae.verify import Outcome, Part, Result, Row
from refvae.verify import report
from refvae.verify.registry import Claim


def _claim(name="c", kind="empirical", paper="yacoby2021"):
    return Claim(name, paper, kind, "a statement " * 30, lambda ctx: None, paper_figure="Fig. 9")


def _result(outcome, name="c", kind="empirical", error=None):
    return Result(_claim(name, kind), outcome, 2.5, error, 1.75)


def _big_outcome():
    return Outcome(parts=[Part(f"part {i}", i % 2 == 0, f"evidence {i}", f"rule {i}") for i in range(6)],
                   rows=[Row(f"quantity {i}", [0.1 * i, 0.2 * i, 0.3 * i], paper=i, note="n") for i in range(8)],
                   measured={f"m{i}": float(i) for i in range(20)}, summary="word " * 200,
                   rule="every part must hold", choices={"lr": "1e-3, the paper gives none"})


def test_console_block_is_at_most_15_lines_and_points_to_the_report():
    text = report.console_block(_result(_big_outcome()))
    lines = text.splitlines()
    assert len(lines) == report.CONSOLE_LINES
    assert lines[0] == "[partly reproduced] c  (yacoby2021, empirical, 2.5 s, 1.8 s CPU)"
    assert lines[-1].endswith("more lines in report.md")
    assert all(len(line) <= report.WIDTH for line in lines)
    assert any(line.strip().startswith("[holds] part 0: evidence 0") for line in lines)
    assert any(line.strip().startswith("[FAILS] part 1: evidence 1") for line in lines)


def test_console_block_shows_measured_numbers_when_there_are_no_rows():
    o = Outcome(passed=True, measured={"a": 1.0, "b": [1.0, 2.0]}, spread={"b": 0.5}, summary="ok")
    lines = report.console_block(_result(o, kind="theorem")).splitlines()
    assert lines[0].startswith("[holds] c") and lines[-2:] == ["            a = 1", "            b = [1, 2]  (sd 0.5)"]
    err = report.console_block(_result(None, error="ValueError: x")).splitlines()
    assert err[0].startswith("[ERROR] c") and err[-1] == "    error:  ValueError: x"


def test_counts_line_names_every_verdict():
    results = [_result(Outcome(passed=True, summary="")), _result(_big_outcome()),
               _result(Outcome(passed=False, summary="")), _result(Outcome(passed=False, summary=""), kind="theorem"),
               _result(None, error="E: x"), _result(Outcome(parts=[Part("unsettled", None)]))]
    assert report.counts_line(results) == ("theorems: 0 hold, 1 fail; empirical: 1 reproduced, 1 partly reproduced, "
                                           "1 not reproduced, 1 not judged; 1 error")


def test_markdown_and_json_carry_parts_rows_rule_choices_and_times():
    meta = {"profile": "mini", "seed": 0, "backend": "numpy", "jobs": 2, "seconds": 3.0, "cpu_seconds": 5.0,
            "complete": False, "status": "interrupted", "finished": 1, "total": 2, "not_run": ["d"]}
    results = [_result(_big_outcome())]
    md = report.to_markdown(results, meta)
    assert md.splitlines()[2] == ("> **Incomplete run**, interrupted (Ctrl-C): 1 of 2 claims finished; not run: `d`.")
    assert "| `yacoby2021` | Yacoby, Pan, Doshi-Velez, \"Failure Modes of Variational Autoencoders" in md
    assert "**Verdict rule.** every part must hold" in md
    assert "| part 1 | **no** | evidence 1 | rule 1 |" in md
    assert "| quantity 2 | 2 | [0.2, 0.4, 0.6] | 0.4 +- 0.2 | n |" in md
    assert "- lr: 1e-3, the paper gives none" in md
    assert "1 partly reproduced" in md
    d = json.loads(report.to_json(results, meta))
    c = d["claims"][0]
    assert (c["seconds"], c["cpu_seconds"]) == (2.5, 1.75) and c["verdict"] == "partly reproduced"
    assert d["counts"]["partly reproduced"] == 1 and d["meta"]["complete"] is False


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    report.write_atomic(str(path), "old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(report.os, "replace", broken_replace)
    with pytest.raises(OSError):
        report.write_atomic(str(path), "new")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["report.json"]

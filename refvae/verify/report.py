"""Reports of a verify run: console text, JSON and Markdown, written atomically.

The JSON and the Markdown carry the same content. Claims appear in registry order whatever order
they ran in; ``meta`` says whether the run is complete and, if not, which claims did not run.
"""
from __future__ import annotations

import json
import math
import os
import textwrap

from .registry import PAPERS

WIDTH = 120           # console line width
CONSOLE_LINES = 15    # at most this many lines per claim on the console; report.md has everything
THEOREM_VERDICTS = ("holds", "FAILS")
EMPIRICAL_VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "not judged")


def _holds_word(holds, yes="yes", no="**no**"):
    return "not judged" if holds is None else yes if holds else no


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _plain(v):
    """JSON-safe copy (NumPy scalars and arrays to Python; non-finite floats to strings)."""
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def _cell(text):
    """Text safe inside a Markdown table cell: a '|' would end the cell, a newline the row."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _seconds(s):
    return None if s is None else round(float(s), 2)


def counts(results):
    """Verdict -> number of claims, every verdict listed (zeros included), in a fixed order."""
    out = {v: 0 for v in THEOREM_VERDICTS + EMPIRICAL_VERDICTS + ("ERROR",)}
    for r in results:
        out[r.verdict] += 1
    return out


def counts_line(results):
    """"theorems: 5 hold, 0 fail; empirical: 3 reproduced, 1 partly reproduced, 2 not reproduced; 0 errors"."""
    n = counts(results)
    return (f"theorems: {n['holds']} hold, {n['FAILS']} fail; empirical: "
            + ", ".join(f"{n[v]} {v}" for v in EMPIRICAL_VERDICTS)
            + f"; {n['ERROR']} error{'' if n['ERROR'] == 1 else 's'}")


def as_dict(results, meta):
    claims = []
    for r in results:
        c, o = r.claim, r.outcome
        claims.append({
            "name": c.name, "paper": c.paper, "paper_title": PAPERS[c.paper].citation, "kind": c.kind,
            "statement": c.statement, "paper_figure": c.paper_figure,
            "paper_value": _plain(o.paper_value) if o else None,
            "measured": _plain(o.measured) if o else None,
            "spread": _plain(o.spread) if o else None,
            "summary": o.summary if o else None,
            "figures": list(o.figures) if o else [],
            "rule": o.rule if o else None,
            "parts": [_plain(vars(p)) for p in o.parts] if o else [],
            "rows": [_plain(vars(r)) for r in o.rows] if o else [],
            "choices": _plain(o.choices) if o else {},
            "verdict": r.verdict, "error": r.error,
            "seconds": _seconds(r.seconds), "cpu_seconds": _seconds(r.cpu_seconds),
        })
    return {"meta": _plain(meta), "claims": claims, "counts": counts(results),
            "failed": [r.claim.name for r in results if r.fails_run]}


def to_json(results, meta):
    return json.dumps(as_dict(results, meta), indent=2, sort_keys=False)


def _incomplete_note(meta):
    if meta.get("complete", True):
        return []
    why = {"running": "still running (this report is rewritten after every claim)",
           "interrupted": "interrupted (Ctrl-C)"}.get(meta.get("status"), f"stopped by an error: {meta.get('stopped_by')}")
    not_run = meta.get("not_run") or []
    return [f"> **Incomplete run**, {why}: {meta.get('finished', '?')} of {meta.get('total', '?')} claims finished; "
            f"not run: {', '.join(f'`{n}`' for n in not_run) or 'none'}.", ""]


def to_markdown(results, meta):
    d = as_dict(results, meta)
    jobs = meta.get("jobs", 1)
    cpu = meta.get("cpu_seconds")
    lines = ["# refvae verify", ""] + _incomplete_note(meta) + [
        f"profile `{meta['profile']}`, seed {meta['seed']}, backend `{meta['backend']}`, "
        f"{jobs} job{'' if jobs == 1 else 's'}; {len(results)} claim{'' if len(results) == 1 else 's'} in "
        f"{meta['seconds']:.0f} s"
        + (f" ({cpu:.0f} s CPU in the claims)" if cpu is not None else "") + ".", "",
        f"Verdicts: {counts_line(results)}.", "",
        "| key | paper |", "| --- | --- |"]
    lines += [f"| `{p.key}` | {_cell(p.citation)} |" for p in PAPERS.values()
              if any(c["paper"] == p.key for c in d["claims"])]
    lines += ["", "| claim | paper | kind | verdict | paper's number | refvae |", "| --- | --- | --- | --- | --- | --- |"]
    for c in d["claims"]:
        paper = _fmt(c["paper_value"]) if c["paper_value"] is not None else "-"
        lines.append(f"| `{c['name']}` | {c['paper']} | {c['kind']} | **{c['verdict']}** | {_cell(paper)} | "
                     f"{_cell(c['summary'] or c['error'])} |")
    lines.append("")
    for c in d["claims"]:
        cpu = f", {c['cpu_seconds']:.1f} s CPU" if c["cpu_seconds"] is not None else ""
        lines += [f"## {c['name']}: {c['verdict']}", "",
                  f"*{c['paper']}*: {c['paper_title']}. {c['kind'].capitalize()} claim; {c['seconds']:.1f} s{cpu}.", "",
                  f"**Claim.** {c['statement']}", ""]
        if c["paper_figure"]:
            lines += [f"**In the paper.** {c['paper_figure']}", ""]
        if c["error"]:
            lines += [f"**Error.** `{c['error']}`", ""]
            continue
        lines += [f"**refvae.** {c['summary']}", ""]
        lines += _markdown_details(c)
        if c["measured"]:
            lines += ["All measured numbers:", "", "| quantity | measured | spread |", "| --- | --- | --- |"]
            for k, v in c["measured"].items():
                lines.append(f"| {_cell(k)} | {_cell(_fmt(v))} | {_cell(_fmt(c['spread'].get(k, '-')))} |")
            lines.append("")
        lines += [f"![{c['name']}: {f}]({f})" for f in c["figures"]] + ([""] if c["figures"] else [])
    return "\n".join(lines) + "\n"


def _markdown_details(c):
    """The verdict's parts and rule, the paper's numbers beside ours per restart, and the choices."""
    lines = []
    if c["rule"]:
        lines += [f"**Verdict rule.** {c['rule']}", ""]
    if c["parts"]:
        lines += ["| part of the statement | holds | evidence | rule |", "| --- | --- | --- | --- |"]
        lines += [f"| {_cell(p['statement'])} | {_holds_word(p['holds'])} | {_cell(p['evidence'])} | "
                  f"{_cell(p['rule'])} |" for p in c["parts"]]
        lines.append("")
    if c["rows"]:
        lines += ["| quantity | paper | refvae per restart | mean +- sd | note |", "| --- | --- | --- | --- | --- |"]
        for r in c["rows"]:
            lines.append(f"| {_cell(r['quantity'])} | {_cell(_fmt(r['paper']) if r['paper'] is not None else '-')} | "
                         f"{_cell(_fmt(r['ours']))} | {_cell(_mean_sd(r['ours']))} | {_cell(r['note'])} |")
        lines.append("")
    if c["choices"]:
        lines += ["Settings the paper does not give:", ""]
        lines += [f"- {_cell(k)}: {v}" for k, v in c["choices"].items()]
        lines.append("")
    return lines


def _mean_sd(values):
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return "-"
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return f"{m:.4g} +- {sd:.2g}"


def _field(label, text, max_lines):
    """``label: text`` wrapped to the console width in at most ``max_lines`` lines."""
    head = f"{label:8s}" if len(label) < 8 else f"{label} "     # a long label keeps one space
    return textwrap.wrap(head + text, WIDTH, initial_indent="    ", subsequent_indent=" " * 12,
                         max_lines=max_lines, placeholder=" ...")


def console_block(result):
    """A claim for the terminal, in at most ``CONSOLE_LINES`` lines (report.md has every number).

    The verdict, the claim, the paper's figure, refvae's summary, then the verdict's rule and parts,
    the paper's numbers beside refvae's per restart, and the measured numbers, as far as room allows.
    """
    c, o = result.claim, result.outcome
    cpu = f", {result.cpu_seconds:.1f} s CPU" if result.cpu_seconds is not None else ""
    head = [f"[{result.verdict}] {c.name}  ({c.paper}, {c.kind}, {result.seconds:.1f} s{cpu})"]
    head += _field("claim:", c.statement, 2)
    if c.paper_figure:
        head += _field("paper:", c.paper_figure, 1)
    if result.error:
        return "\n".join(head + _field("error:", result.error, 3))
    head += _field("refvae:", o.summary, 3)
    detail = []
    if o.rule:
        detail += _field("rule:", o.rule, 1)
    for p in o.parts:
        detail += _field(f"[{_holds_word(p.holds, 'holds', 'FAILS')}]", f"{p.statement}: {p.evidence}", 1)
    for r in o.rows:
        paper = "-" if r.paper is None else _fmt(r.paper)
        detail += _field("", f"{r.quantity}: paper {paper}; refvae {_fmt(r.ours)}" + (f" [{r.note}]" if r.note else ""), 1)
    if not o.parts and not o.rows:
        for k, v in o.measured.items():
            s = o.spread.get(k)
            detail += _field("", f"{k} = {_fmt(v)}" + (f"  (sd {_fmt(s)})" if s is not None else ""), 1)
    room = CONSOLE_LINES - len(head)
    if len(detail) > room:
        detail = detail[:room - 1] + [f"    ... {len(detail) - room + 1} more lines in report.md"]
    return "\n".join(head + detail)


def write_atomic(path, text):
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``.

    Readers see the old file or the new one, never a part: a crash or Ctrl-C mid-write leaves the
    previous file as it was (and no temporary file behind).
    """
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")     # same folder: os.replace stays atomic
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_report(out, results, meta):
    """Write ``<out>/report.json`` and ``<out>/report.md`` (each atomically); returns their paths."""
    paths = os.path.join(out, "report.json"), os.path.join(out, "report.md")
    write_atomic(paths[0], to_json(results, meta))
    write_atomic(paths[1], to_markdown(results, meta))
    return paths

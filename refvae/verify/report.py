"""Reports of a verify run: console text, JSON and Markdown."""
from __future__ import annotations

import json
import math

from .registry import PAPERS


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
            "verdict": r.verdict, "error": r.error, "seconds": round(r.seconds, 2),
        })
    return {"meta": _plain(meta), "claims": claims,
            "failed": [r.claim.name for r in results if r.fails_run]}


def to_json(results, meta):
    return json.dumps(as_dict(results, meta), indent=2, sort_keys=False)


def to_markdown(results, meta):
    d = as_dict(results, meta)
    lines = ["# refvae verify", "",
             f"profile `{meta['profile']}`, seed {meta['seed']}, backend `{meta['backend']}`, "
             f"{len(results)} claims, {meta['seconds']:.0f} s", "",
             "| claim | paper | kind | verdict | paper | refvae |", "| --- | --- | --- | --- | --- | --- |"]
    for c in d["claims"]:
        paper = _fmt(c["paper_value"]) if c["paper_value"] is not None else "-"
        lines.append(f"| `{c['name']}` | {c['paper']} | {c['kind']} | **{c['verdict']}** | {_cell(paper)} | "
                     f"{_cell(c['summary'] or c['error'])} |")
    lines.append("")
    for c in d["claims"]:
        lines += [f"## {c['name']} ({c['verdict']})", "", f"*{c['paper']}: {c['paper_title']}.*", "",
                  f"Claim: {c['statement']}", ""]
        if c["paper_figure"]:
            lines += [f"Paper's figure: {c['paper_figure']}", ""]
        if c["error"]:
            lines += [f"Error: `{c['error']}`", ""]
        else:
            lines += [f"Result: {c['summary']}", ""]
            lines += _markdown_details(c)
            lines += ["| quantity | measured | spread |", "| --- | --- | --- |"]
            for k, v in c["measured"].items():
                lines.append(f"| {_cell(k)} | {_cell(_fmt(v))} | {_cell(_fmt(c['spread'].get(k, '-')))} |")
            lines += [""] + [f"![{f}]({f})" for f in c["figures"]] + [""]
    return "\n".join(lines)


def _markdown_details(c):
    """The verdict's parts and rule, the paper's numbers beside ours per restart, and the choices."""
    lines = []
    if c["parts"]:
        lines += ["| part of the statement | holds | evidence | rule |", "| --- | --- | --- | --- |"]
        lines += [f"| {_cell(p['statement'])} | {'yes' if p['holds'] else '**no**'} | {_cell(p['evidence'])} | "
                  f"{_cell(p['rule'])} |" for p in c["parts"]]
        lines.append("")
    if c["rule"]:
        lines += [f"Verdict rule: {c['rule']}", ""]
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


def console_block(result):
    """A few lines per claim for the terminal."""
    c, o = result.claim, result.outcome
    head = f"[{result.verdict}] {c.name}  ({c.paper}, {c.kind}, {result.seconds:.1f} s)"
    lines = [head, f"    claim:  {c.statement}"]
    if c.paper_figure:
        lines.append(f"    paper:  {c.paper_figure}")
    if result.error:
        lines.append(f"    error:  {result.error}")
    else:
        lines.append(f"    refvae: {o.summary}")
        for p in o.parts:
            lines.append(f"    [{'holds' if p.holds else 'FAILS'}] {p.statement}: {p.evidence}"
                         + (f" (rule: {p.rule})" if p.rule else ""))
        for r in o.rows:
            paper = "-" if r.paper is None else _fmt(r.paper)
            lines.append(f"    {r.quantity}: paper {paper}; refvae {_fmt(r.ours)}" + (f" [{r.note}]" if r.note else ""))
        for k, v in o.measured.items():
            s = o.spread.get(k)
            lines.append(f"            {k} = {_fmt(v)}" + (f"  (sd {_fmt(s)})" if s is not None else ""))
    return "\n".join(lines)

"""Command line of ``python -m refvae verify``."""
from __future__ import annotations

import argparse
import os
import sys
import time

from .. import backend
from . import report
from .registry import PROFILES, REGISTRY, Context, run_claims


def _progress_writer(stream, total):
    state = {"i": 0, "name": "", "last": 0.0}

    def start(i, c):
        state["i"], state["name"], state["last"] = i, c.name, 0.0
        write(0.0, "", force=True)

    def write(fraction, message="", force=False):
        now = time.monotonic()
        if not force and now - state["last"] < 1.0:     # at most one update a second
            return
        state["last"] = now
        line = f"[{state['i'] + 1}/{total}] {state['name']}: {100 * fraction:3.0f}% {message}"
        stream.write("\r" + line[:110].ljust(110))
        stream.flush()
    return start, write


def build_parser():
    p = argparse.ArgumentParser(prog="refvae verify",
                                description="Reproduce the four papers' claims and report what refvae measures.")
    prof = p.add_mutually_exclusive_group()
    prof.add_argument("--quick", dest="profile", action="store_const", const="quick",
                      help="small restarts and step budgets, a few minutes on 2 cores (default)")
    prof.add_argument("--full", dest="profile", action="store_const", const="full",
                      help="the papers' scale of restarts and steps (GPU or a long run)")
    prof.add_argument("--mini", dest="profile", action="store_const", const="mini",
                      help="a miniature run of every claim (seconds; what the test suite runs)")
    p.set_defaults(profile="quick")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="run only this claim (repeatable); see --list")
    p.add_argument("--list", action="store_true", help="list the claims and exit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    p.add_argument("--out", default="verify-out", help="folder for report.json, report.md and figures")
    return p


def main(argv=None, stream=None):
    """Run ``refvae verify``; returns the exit status (1 if any theorem claim fails or errors)."""
    stream = sys.stderr if stream is None else stream
    args = build_parser().parse_args(argv)
    if args.list:
        for c in REGISTRY.values():
            print(f"{c.name:32s} {c.paper:11s} {c.kind:9s}  {c.statement}")
        return 0
    names = list(REGISTRY)
    if args.only:
        unknown = [n for n in args.only if n not in REGISTRY]
        if unknown:
            print(f"refvae verify: unknown claim(s) {unknown}; known: {', '.join(REGISTRY)}", file=sys.stderr)
            return 2
        names = args.only
    previous = backend.get_backend()
    try:
        backend.set_backend(args.backend)
    except RuntimeError as exc:                          # e.g. cupy without CuPy or a GPU: no run
        print(f"refvae verify: {exc}", file=sys.stderr)
        return 2
    try:
        return _run(args, names, stream)
    finally:
        backend.set_backend(previous)                    # main() called from Python leaves it as it was


def _run(args, names, stream):
    os.makedirs(args.out, exist_ok=True)
    on_start, progress = _progress_writer(stream, len(names))
    ctx = Context(profile=args.profile, seed=args.seed, backend=args.backend, progress=progress, out=args.out)
    print(f"refvae verify: {len(names)} claims, profile {args.profile}, seed {args.seed}, backend {args.backend}")
    t0 = time.perf_counter()
    results = []
    for i, name in enumerate(names):
        res = run_claims([name], ctx, on_start=lambda _, c, i=i: on_start(i, c))[0]
        stream.write("\r" + " " * 110 + "\r")
        print(report.console_block(res), flush=True)
        results.append(res)
    meta = {"profile": args.profile, "seed": args.seed, "backend": args.backend,
            "seconds": time.perf_counter() - t0}
    with open(os.path.join(args.out, "report.json"), "w") as f:
        f.write(report.to_json(results, meta))
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(report.to_markdown(results, meta))
    failed = [r.claim.name for r in results if r.fails_run]
    counts = {}
    for r in results:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    print(f"\n{len(results)} claims in {meta['seconds']:.0f} s: "
          + ", ".join(f"{n} {v}" for v, n in counts.items())
          + f". Report: {args.out}/report.md, {args.out}/report.json")
    if failed:
        print(f"theorem claims failing or erroring: {', '.join(failed)}")
    return 1 if failed else 0

"""Command line of ``python -m refvae verify``.

Runs keep their work. The report (``report.json``, ``report.md`` in ``--out``) is rewritten, each
file atomically, after every finished claim; Ctrl-C or a crash leaves the report of the claims
finished so far, marked incomplete (``"complete": false`` in the JSON ``meta`` with the claims not
run; a note at the top of the Markdown). ``--out`` is checked writable before any claim runs.

Exit status: 0 when every theorem claim holds; 1 when one fails or a claim raises (an ERROR);
2 for bad usage (nothing run); 130 when interrupted by Ctrl-C. An error outside the claims (the
report cannot be written, say) is raised after the partial report is written.

``--jobs N`` runs the claims in N worker processes (``concurrent.futures.ProcessPoolExecutor``,
'spawn' start method, one BLAS thread each: ``backend.blas_threads(1)`` sets the environment the
workers start with, before they import NumPy).
Every claim draws its random numbers from ``Context.rng(tag)`` with the run's seed, so the numbers
are those of a serial run (run with one BLAS thread too: ``OPENBLAS_NUM_THREADS=1``). Claims are started longest first (``EXPECTED_SECONDS``, or the CPU
seconds recorded in a previous report of the same profile in ``--out``). The console prints each
claim as it finishes (completion order); the report lists claims in registry order either way.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import signal
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from .. import backend
from . import report
from .registry import DIVERGENCE_POLICY, PAPERS, REGISTRY, Context, Result, _pyplot, run_claim

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130

# Rough relative durations of the claims (CPU seconds of a --quick run, the default, on the 2-core
# development machine), only to start the longest claims first under --jobs. A report.json of the
# same profile in --out, from an earlier run, is used instead where it has the claim. Unlisted
# claims count as the median.
EXPECTED_SECONDS = {
    "three_noise_ordering": 153, "libi_table1": 97, "m2_functional_collapse": 55,
    "vae_matches_iwae_circle_absval": 39, "spiral_dots_noise": 36, "ae_vs_vae_depth": 35,
    "iwae_beats_vae_figure8": 32, "noise_theorem2": 22, "elbo_prefers_more_latents": 20,
    "iwae_beats_vae_clusters": 17, "kl_warmstart_no_fix": 17, "ppca_optimum": 12, "hypersphere_threshold": 12,
    "test_ll_estimator": 10, "fixed_gamma_pruning": 9, "linearjtex_objective": 7,
    "soft_threshold_local_minimum": 4, "m2_collapse_exact": 3,
}


def _count(name, minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            kind = "non-negative" if minimum == 0 else "positive"
            raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {text!r}")
        return value
    parse.__name__ = name                                # argparse names the type in its messages
    return parse


def build_parser(prog="refvae verify"):
    p = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Reproduce the claims of four papers on VAE failure modes and report, for each, the\n"
                    "paper's number beside refvae's per restart and the verdict with its rule.",
        epilog="papers (by key):\n" + "\n".join(f"  {p.key:11s} {p.citation}" for p in PAPERS.values())
        + "\n\nexit status: 0 every theorem claim holds; 1 a theorem claim fails or a claim errors; "
          "2 bad usage;\n130 interrupted (Ctrl-C). The report is rewritten after every claim, so an "
          "interrupted run\nkeeps what it finished (marked incomplete).")
    prof = p.add_mutually_exclusive_group()
    prof.add_argument("--quick", dest="profile", action="store_const", const="quick",
                      help="small restarts and step budgets, minutes on 2 cores (default)")
    prof.add_argument("--full", dest="profile", action="store_const", const="full",
                      help="the papers' scale of restarts and steps (GPU or a long run)")
    prof.add_argument("--mini", dest="profile", action="store_const", const="mini",
                      help="a miniature run of every claim (seconds each; what the test suite runs)")
    p.set_defaults(profile="quick")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="run only this claim (repeatable); see --list")
    p.add_argument("--list", action="store_true", help="list the papers and their claims, and exit")
    p.add_argument("--seed", type=_count("seed", 0), default=0, metavar="N",
                   help="base seed of every claim's random numbers (a non-negative integer; default 0)")
    p.add_argument("--jobs", type=_count("jobs", 1), default=1, metavar="N",
                   help="run claims in N worker processes, one BLAS thread each (default 1: in this "
                        "process); same numbers as a serial run")
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy",
                   help="array backend (default numpy; cupy needs CuPy and a GPU, and runs without --jobs)")
    p.add_argument("--out", default="verify-out", metavar="DIR",
                   help="folder for report.json, report.md and the figures (created if missing; "
                        "default verify-out)")
    return p


def _print_list():
    print("papers:")
    for p in PAPERS.values():
        print(f"  {p.key:11s} {p.citation}")
    for p in PAPERS.values():
        claims = [c for c in REGISTRY.values() if c.paper == p.key]
        if claims:
            print(f"\n{p.key}: {p.title}")
            for c in claims:
                line = f"  {c.name:32s} {c.kind:9s}  {c.statement}"
                print(line if len(line) <= report.WIDTH else line[:report.WIDTH - 4] + " ...")


def _check_out(path):
    """None when ``path`` is (or has just been made) a writable folder, else what is wrong with it."""
    if os.path.exists(path) and not os.path.isdir(path):
        return f"--out {path!r} is a file, not a folder"
    probe = os.path.join(path, f".refvae-write-test-{os.getpid()}")
    try:
        os.makedirs(path, exist_ok=True)
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as exc:
        return f"--out {path!r} is not a writable folder ({exc.strerror or exc})"
    return None


def main(argv=None, stream=None, prog="refvae verify"):
    """Run ``refvae verify``; returns the exit status (see the module docstring)."""
    stream = sys.stderr if stream is None else stream
    args = build_parser(prog).parse_args(argv)
    if args.list:
        _print_list()
        return 0
    names = list(REGISTRY)
    if args.only:
        unknown = [n for n in args.only if n not in REGISTRY]
        if unknown:
            print(f"refvae verify: unknown claim(s) {unknown}; known: {', '.join(REGISTRY)}", file=sys.stderr)
            return EXIT_USAGE
        names = list(dict.fromkeys(args.only))
    if args.backend == "cupy" and args.jobs > 1:
        # worker processes would each hold a CUDA context and compete for one device's memory
        print("refvae verify: --backend cupy runs the claims in one process on one GPU; drop --jobs "
              f"(got --jobs {args.jobs})", file=sys.stderr)
        return EXIT_USAGE
    problem = _check_out(args.out)
    if problem:
        print(f"refvae verify: {problem}; nothing was run", file=sys.stderr)
        return EXIT_USAGE
    previous = backend.get_backend()
    try:
        backend.set_backend(args.backend)
    except RuntimeError as exc:                          # e.g. cupy without CuPy or a GPU: no run
        print(f"refvae verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _Run(args, names, stream).run()
    finally:
        backend.set_backend(previous)                    # main() called from Python leaves it as it was


class _Run:
    """One run: its finished results, and the report rewritten after each of them."""

    def __init__(self, args, names, stream):
        self.args, self.names, self.stream = args, names, stream
        self.claims = [REGISTRY[n] for n in names]
        self.results = {}
        self.t0 = time.perf_counter()

    def meta(self, status, stopped_by=None):
        done = list(self.results.values())
        return {"profile": self.args.profile, "seed": self.args.seed, "backend": self.args.backend,
                "jobs": self.args.jobs, "divergence_policy": DIVERGENCE_POLICY, "status": status,
                "complete": status == "complete",
                "total": len(self.names), "finished": len(done),
                "not_run": [n for n in self.names if n not in self.results], "stopped_by": stopped_by,
                "seconds": round(time.perf_counter() - self.t0, 2),
                "cpu_seconds": round(sum(r.cpu_seconds or 0.0 for r in done), 2),
                "papers": {k: p.citation for k, p in PAPERS.items() if any(c.paper == k for c in self.claims)}}

    def ordered(self):
        return [self.results[n] for n in self.names if n in self.results]

    def write(self, status, stopped_by=None):
        return report.write_report(self.args.out, self.ordered(), self.meta(status, stopped_by))

    def finished(self, result):
        _clear_line(self.stream)
        print(report.console_block(result), flush=True)
        self.results[result.claim.name] = result
        self.write("running")

    def header(self):
        a = self.args
        n = len(self.names)
        print(f"refvae verify: {n} claim{'' if n == 1 else 's'}, profile {a.profile}, seed {a.seed}, backend {a.backend}, "
              f"{a.jobs} job{'' if a.jobs == 1 else 's'}; report in {a.out}")
        for k in dict.fromkeys(c.paper for c in self.claims):
            print(f"  {k:11s} {PAPERS[k].citation}")
        sys.stdout.flush()
        _pyplot()                                        # without matplotlib, says so once, here

    def stop(self, status, stopped_by):
        """Write the report of the claims finished so far, marked incomplete; returns the report's path."""
        _clear_line(self.stream)
        try:
            return self.write(status, stopped_by)[1]
        except Exception as exc:                         # the report on disk is the last one written
            print(f"refvae verify: could not rewrite the report ({type(exc).__name__}: {exc}); "
                  f"{os.path.join(self.args.out, 'report.json')} holds the claims finished before", file=sys.stderr)
            return None

    def run(self):
        self.header()
        try:
            if self.args.jobs == 1:
                self._serial()
            else:
                self._parallel()
            self.write("complete")
        except KeyboardInterrupt:
            path = self.stop("interrupted", "KeyboardInterrupt")
            print(f"\nrefvae verify: interrupted after {len(self.results)} of {len(self.names)} claims"
                  + (f"; the report of the finished claims is {path} (marked incomplete)" if path else ""))
            return EXIT_INTERRUPTED
        except BrokenProcessPool as exc:                 # a worker died (killed, out of memory, ...)
            unfinished = [n for n in self.names if n not in self.results]
            path = self.stop("crashed", f"BrokenProcessPool: {exc}")
            print(f"\nrefvae verify: a worker process died (killed, or out of memory?) before these claims "
                  f"finished: {', '.join(unfinished)}" + (f"; report of the finished claims: {path}" if path else ""),
                  file=sys.stderr)
            return EXIT_FAILED
        except BaseException as exc:
            path = self.stop("crashed", f"{type(exc).__name__}: {exc}")
            print(f"\nrefvae verify: stopped by {type(exc).__name__} after {len(self.results)} of "
                  f"{len(self.names)} claims" + (f"; report of the finished claims: {path}" if path else ""),
                  file=sys.stderr)
            raise
        results, meta = self.ordered(), self.meta("complete")
        print(f"\n{len(results)} claim{'' if len(results) == 1 else 's'} in {meta['seconds']:.0f} s ({meta['cpu_seconds']:.0f} s CPU in the claims, "
              f"{self.args.jobs} job{'' if self.args.jobs == 1 else 's'}): {report.counts_line(results)}. "
              f"Report: {self.args.out}/report.md, {self.args.out}/report.json")
        failed = [r.claim.name for r in results if r.fails_run]
        if failed:
            print(f"theorem claims failing or erroring: {', '.join(failed)}")
        return EXIT_FAILED if failed else 0

    def _serial(self):
        start, progress = _progress_writer(self.stream, len(self.names))
        ctx = Context(profile=self.args.profile, seed=self.args.seed, backend=self.args.backend,
                      progress=progress, out=self.args.out)
        for i, c in enumerate(self.claims):
            start(i, c.name)
            self.finished(run_claim(c, ctx))

    def _parallel(self):
        spec = {"profile": self.args.profile, "seed": self.args.seed, "backend": self.args.backend,
                "out": self.args.out}
        claims = sorted(self.claims, key=_expected_seconds(self.names, self.args), reverse=True)
        mp = multiprocessing.get_context("spawn")        # a fresh interpreter: the BLAS setting applies
        progress_queue = mp.Queue()
        status = _ParallelStatus(self.stream, len(self.names))
        with backend.blas_threads(1):                    # the environment the workers start with
            pool = ProcessPoolExecutor(max_workers=min(self.args.jobs, len(claims)), mp_context=mp,
                                       initializer=_worker_init, initargs=(progress_queue,))
            futures = {}
            try:
                futures = {pool.submit(_worker_run, c, spec): c for c in claims}
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    status.drain(progress_queue)
                    for f in sorted(done, key=lambda f: self.names.index(futures[f].name)):
                        status.finished(futures[f].name)
                        self.finished(_result_of(f, futures[f]))
                    status.show(len(self.results))
            except BaseException:
                for f in futures:
                    f.cancel()
                _terminate_workers(pool)
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
                progress_queue.close()


def _result_of(future, c):
    """The worker's Result; an exception that escaped the worker (an unpicklable outcome, ...) is an ERROR."""
    try:
        return future.result()
    except BrokenProcessPool:
        raise
    except Exception as exc:
        return Result(c, None, 0.0, f"{type(exc).__name__} in the worker process: {exc}")


def _expected_seconds(names, args):
    """Sort key: a claim's expected duration, from a previous report of this profile or the table."""
    seconds = dict(EXPECTED_SECONDS)
    try:
        with open(os.path.join(args.out, "report.json"), encoding="utf-8") as f:
            previous = json.load(f)
        if previous["meta"]["profile"] == args.profile:
            for c in previous["claims"]:
                s = c.get("cpu_seconds", c.get("seconds"))
                if isinstance(s, (int, float)):
                    seconds[c["name"]] = float(s)
    except (OSError, ValueError, KeyError, TypeError):
        pass                                             # no usable previous report: the table alone
    default = statistics.median([seconds[n] for n in names if n in seconds] or [1.0])
    return lambda c: seconds.get(c.name, default)


def _terminate_workers(pool):
    """End the pool's worker processes now (a claim can run for hours; Ctrl-C must not wait for it)."""
    terminate = getattr(pool, "terminate_workers", None)     # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    for p in list((getattr(pool, "_processes", None) or {}).values()):
        if p.is_alive():
            p.terminate()


# --- the worker process side ----------------------------------------------------------------

_WORKER = {}


def _worker_init(progress_queue):
    """Set up a worker: Ctrl-C is the parent's to handle (it ends the workers), progress goes to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    backend.blas_threads(1)                              # also limits a BLAS already loaded (with threadpoolctl)
    progress_queue.cancel_join_thread()                  # never block at exit on unsent progress lines
    _WORKER["queue"] = progress_queue
    _pyplot(quiet=True)                                  # the parent has said whether figures are drawn


def _worker_run(c, spec):
    """Run claim ``c`` in a worker with the run's settings; its progress is sent to the parent."""
    q, last = _WORKER.get("queue"), [0.0]

    def progress(fraction, message=""):
        now = time.monotonic()
        if q is not None and now - last[0] >= 1.0:
            last[0] = now
            q.put((c.name, float(fraction), str(message)))
    if q is not None:
        q.put((c.name, 0.0, "started"))
    backend.set_backend(spec["backend"])
    return run_claim(c, Context(progress=progress, **spec))


# --- progress lines -------------------------------------------------------------------------

class _ParallelStatus:
    """One progress line for the claims running in workers: ``[3/16] a 40% | b 10% fitting``."""

    def __init__(self, stream, total):
        self.stream, self.total, self.running, self.last = stream, total, {}, 0.0

    def drain(self, q):
        while True:
            try:
                name, fraction, message = q.get_nowait()
            except queue.Empty:
                return
            except (OSError, EOFError, ValueError):      # a worker ended mid-message: drop it
                return
            self.running[name] = (fraction, message)

    def finished(self, name):
        self.running.pop(name, None)

    def show(self, done):
        now = time.monotonic()
        if now - self.last < _progress_interval(self.stream) or not self.running:
            return
        self.last = now
        _progress_line(self.stream, f"[{done}/{self.total} done] " + " | ".join(
            f"{n} {100 * f:.0f}% {m}".rstrip() for n, (f, m) in self.running.items()))


def _progress_writer(stream, total):
    state = {"i": 0, "name": "", "last": 0.0}

    def start(i, name):
        state["i"], state["name"], state["last"] = i, name, 0.0
        write(0.0, "", force=True)

    def write(fraction, message="", force=False):
        now = time.monotonic()
        if not force and now - state["last"] < _progress_interval(stream):
            return
        state["last"] = now
        _progress_line(stream, f"[{state['i'] + 1}/{total}] {state['name']}: {100 * fraction:3.0f}% {message}")
    return start, write


def _tty(stream):
    return bool(getattr(stream, "isatty", lambda: False)())


def _progress_interval(stream):
    # a terminal gets one line rewritten every second; a log file one line a minute, not megabytes of them
    return 1.0 if _tty(stream) else 60.0


def _progress_line(stream, line):
    line = line[:report.WIDTH]
    stream.write("\r" + line.ljust(report.WIDTH) if _tty(stream) else line.rstrip() + "\n")
    stream.flush()


def _clear_line(stream):
    if _tty(stream):
        stream.write("\r" + " " * report.WIDTH + "\r")

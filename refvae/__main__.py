"""Command line: ``python -m refvae verify [options]`` (``python -m refvae verify --help`` lists them)."""
from __future__ import annotations

import os
import sys

COMMANDS = {"verify": "reproduce the four papers' claims and write a report (python -m refvae verify --help)"}


def _prog():
    # ``python -m refvae`` and the ``refvae`` console script share this entry point
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m refvae" if name in ("__main__.py", "-m", "", "-c") else name


def _help(prog):
    from .verify.registry import PAPERS
    lines = [f"usage: {prog} COMMAND [options]", "",
             "refvae: a reference NumPy implementation of the VAE family of four papers on VAE failure "
             "modes,", "with hand-written gradients and closed-form checks.", "", "commands:"]
    lines += [f"  {name:8s} {text}" for name, text in COMMANDS.items()]
    lines += ["", "options:", "  -h, --help  show this help and exit", "", "papers (by key):"]
    lines += [f"  {p.key:11s} {p.citation}" for p in PAPERS.values()]
    lines += ["", f"example: {prog} verify --mini --jobs 2"]
    return "\n".join(lines)


def main(argv=None):
    """Dispatch to a command; returns the exit status (0 for --help, 2 without a known command)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = _prog()
    if argv and argv[0] in ("-h", "--help"):
        print(_help(prog))
        return 0
    if not argv or argv[0] not in COMMANDS:
        print(_help(prog), file=sys.stderr)
        if argv:
            print(f"\n{prog}: unknown command {argv[0]!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    from .verify import main as verify_main
    try:
        return verify_main(argv[1:], prog=f"{prog} {argv[0]}")
    except BrokenPipeError:
        # output piped into a reader that stopped (``--list | head``): not an error of refvae's.
        # stdout is pointed at devnull so that Python's flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

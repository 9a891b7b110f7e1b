"""Command line: ``python -m refvae verify [--quick | --full | --mini] [--only NAME] [--seed N] [--backend B] [--out DIR]``."""
from __future__ import annotations

import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] != "verify":
        print("usage: python -m refvae verify [--quick | --full | --mini] [--only NAME] [--list] "
              "[--seed N] [--backend numpy|cupy] [--out DIR]", file=sys.stderr)
        return 2
    from .verify import main as verify_main
    return verify_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())

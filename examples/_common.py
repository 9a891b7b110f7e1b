"""What every example shares: its command line and its optional figure. Not an example itself.

Each script starts with ``args = parse(__doc__, __file__)`` and ends with ``plt = pyplot()``:

- ``--quick``: a tiny run of a few seconds (what tests/test_examples.py runs); its numbers are
  rough. Without it the script runs at its default size (under a minute of CPU).
- ``--out PATH``: where the figure goes; default ``<script name>.png`` in the current folder.
- ``--seed N``: the seed of every random number (default 0); the same seed gives the same numbers.

The figure needs matplotlib (``make install-plot``, or ``python -m pip install -e '.[plot]'`` in the
refvae checkout); without it ``pyplot()`` says so once and returns None, and the script prints its
numbers all the same.
"""
import argparse
import pathlib


def parse(doc, script, argv=None):
    """The example's arguments: ``quick``, ``out`` and ``seed`` (see the module docstring)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tiny run (seconds) with rough numbers")
    parser.add_argument("--out", default=pathlib.Path(script).stem + ".png",
                        help="where to save the figure (default: %(default)s in the current folder)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random number (default 0)")
    return parser.parse_args(argv)


def pyplot():
    """matplotlib.pyplot drawing to files only, or None (said once) when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figure (make install-plot, or python -m pip install -e '.[plot]' "
              "in the refvae checkout)")
        return None
    return plt


def save(fig, out):
    """Write ``fig`` to ``out`` (a small PNG) and say where."""
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    print(f"figure: {out}")

"""The claim registry of ``refvae verify``.

A claim is a function ``run(ctx) -> Outcome`` registered with its paper, its statement and its
kind:

- ``"theorem"``: a closed form or a proved property. Failing it means a bug in refvae, and the
  command exits non-zero.
- ``"empirical"``: an observation a paper reports. refvae reports whether it reproduced it, with
  the paper's number and its own, and never fails the run for it.

Nothing a claim reports is hard-coded: every number in an ``Outcome`` is computed by the run,
apart from ``paper_value``, which is what the paper printed.
"""
from __future__ import annotations

import os
import textwrap
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .. import train


@dataclass(frozen=True)
class Paper:
    """One of the four source papers: its short key (used in claim names, reports and docstrings)."""
    key: str
    authors: str
    title: str
    venue: str

    @property
    def citation(self):
        return f"{self.authors}, \"{self.title}\" ({self.venue})"


# The short keys name a paper by first author and year, everywhere in refvae (docs/math.md lists them).
PAPERS = {p.key: p for p in (
    Paper("yacoby2021", "Yacoby, Pan, Doshi-Velez",
          "Failure Modes of Variational Autoencoders and Their Effects on Downstream Tasks",
          "ICLR 2021 submission"),
    Paper("dai2020", "Dai, Wang, Wipf",
          "The Usual Suspects? Reassessing Blame for VAE Posterior Collapse", "ICML 2020"),
    Paper("berger2020", "Berger, Sebag", "Variational Auto-Encoders: Not all failures are equal", "2020"),
    Paper("yacoby2020", "Yacoby, Pan, Doshi-Velez",
          "Characterizing and Avoiding Problematic Global Optima of Variational Autoencoders",
          "AABI 2019, PMLR 118"),
)}
KINDS = ("theorem", "empirical")
PROFILES = ("mini", "quick", "full")
# Figures: each panel at least this many inches (width, height), saved at this resolution.
PANEL_SIZE = (3.6, 3.0)
FIGURE_DPI = 120


@dataclass
class Context:
    """What a claim run receives.

    profile : "mini" (the test suite's miniature), "quick" (default, minutes on 2 cores) or "full"
        (the papers' scale). ``scale(mini=, quick=, full=)`` picks a size by profile.
    seed : base seed; ``rng(tag)`` derives an independent generator per use.
    progress : callable(fraction in [0, 1], message) for the progress line.
    """
    profile: str = "quick"
    seed: int = 0
    backend: str = "numpy"
    progress: Callable = lambda fraction, message="": None
    out: str | None = None

    def figure(self, name, draw, panels=None, panel_size=PANEL_SIZE):
        """Draw a figure with ``draw(fig)`` and save it as ``<out>/<name>.png``; returns the file name or None.

        A guide for claim authors: draw what a reader needs to judge the verdict (the paper's curve or
        number beside refvae's, one marker per restart), and let this method take care of the rest.

        - Panels: lay them out with ``fig.subplots(rows, cols)`` (or ``fig.add_subplot``). The figure
          is then sized from the grid actually drawn, so each panel gets at least ``panel_size``
          inches (default 3.6 x 3.0); pass ``panels=(rows, cols)`` to reserve a grid up front and
          ``panel_size=(w, h)`` for larger panels (a long trajectory, a dense heat map).
        - Limits: pass data, never limits. Do not hard-code ``xlim``/``ylim``: any axis whose limits
          hide plotted data is widened to show it all when the figure is saved. Where panels must
          share a range to be compared, call ``share_limits(axes)``; to compute a range yourself
          (e.g. the grid of a heat map) use ``data_limits(*arrays)``, computed from all the data.
          Points a panel cannot show (NaN or inf, values <= 0 on a log axis) are counted in a note
          on the panel, never dropped silently.
        - Text: title each panel with what it shows and the paper's figure it mirrors ("berger2020
          Fig. 2"); label both axes with the quantity and its name in refvae (``sigma2``, ``logvar``).
          Keep matplotlib's default font sizes; a title wider than its panel is wrapped.
        - Name the file after the claim (``name`` = the claim's name, or ``<claim>_<part>``); the
          Markdown report embeds every file listed in ``Outcome.figures``.

        The figure is saved at ``FIGURE_DPI`` dots per inch, laid out tightly by matplotlib's
        constrained layout (room for titles, legends and colorbars, no overlaps). Needs matplotlib (the
        optional ``plot`` extra, ``make verify PLOT=1``); without it, says so once and returns None,
        and the claim carries on.

        Parameters
        ----------
        name : str
            File name without extension.
        draw : callable
            ``draw(fig)`` draws on a ``matplotlib.figure.Figure``.
        panels : (int, int), optional
            Rows and columns of panels to size the figure for (at least the grid drawn).
        panel_size : (float, float)
            Minimum width and height of one panel in inches.
        """
        rows, cols = (1, 1) if panels is None else _grid("panels", panels)
        width, height = _panel_size(panel_size)
        plt = _pyplot()
        if plt is None or self.out is None:
            return None
        # constrained layout: a tight layout that also makes room for titles, legends and colorbars
        fig = plt.figure(figsize=(cols * width, rows * height), dpi=FIGURE_DPI, layout="constrained")
        try:
            draw(fig)
            drawn_rows, drawn_cols = _drawn_grid(fig)
            fig.set_size_inches(max(cols, drawn_cols) * width, max(rows, drawn_rows) * height)
            for ax in fig.axes:
                show_all_data(ax)
            _fit_titles(fig)
            fig.savefig(os.path.join(self.out, f"{name}.png"), dpi=FIGURE_DPI)
        finally:
            plt.close(fig)
        return f"{name}.png"

    def scale(self, mini, quick, full):
        return {"mini": mini, "quick": quick, "full": full}[self.profile]

    def rng(self, *tag):
        # crc32, not hash(): str hashes are salted per process and would break reproducibility
        words = [t if isinstance(t, int) else zlib.crc32(str(t).encode()) for t in tag]
        return np.random.default_rng(np.random.SeedSequence([self.seed, *words]))


@dataclass
class Part:
    """One part of a paper's statement, judged on its own.

    statement : the part, in the paper's terms ("IWAE beats LIN in test log-likelihood").
    holds : whether refvae's measurement supports it; None when it was not judged (a run that has not
        settled, a method not run in this profile): such a part is neither reproduced nor refuted.
    evidence : the numbers behind the judgement, per restart where there are restarts.
    rule : how ``holds`` was decided (e.g. "paired: IWAE > LIN in at least 2 of 3 restarts").
    """
    statement: str
    holds: bool | None
    evidence: str = ""
    rule: str = ""

    def __post_init__(self):
        if self.holds is not None:
            self.holds = bool(self.holds)


@dataclass
class Row:
    """One measured quantity beside the paper's number for it.

    quantity : what is measured ("LinearJTEx / VAE / test log-likelihood").
    ours : one value per restart (or per data-set replicate), in run order.
    paper : the paper's number for the same quantity (a float, a "mean +- sd" string) or None.
    note : anything the reader needs to compare the two (a flag such as "still improving").
    """
    quantity: str
    ours: list
    paper: object = None
    note: str = ""


@dataclass
class Outcome:
    """What a claim measured.

    passed : for a theorem, whether it held; for an empirical claim, whether the paper's whole
        statement was reproduced. May be left out when ``parts`` are given: it is then True
        exactly when every part holds (and must agree with them when given).
    measured : dict of named numbers (floats, or lists over restarts/seeds) refvae measured.
    summary : one sentence stating the comparison with both numbers.
    spread : dict of named spreads (standard deviations over restarts/seeds) where relevant.
    paper_value : what the paper reports, as text or numbers (None if the paper gives none).
    figures : file names of the figures drawn (``Context.figure``).
    parts : the paper's statement split into the parts judged separately (``Part``); an
        empirical claim whose parts only partly hold is "partly reproduced".
    rows : the paper's numbers beside refvae's, per restart (``Row``).
    rule : the verdict rule in words (how the parts combine, what counts as settled).
    choices : settings the paper does not give, name -> the value refvae chose and why, and
        how the verdict depends on it where that was measured.
    """
    passed: bool | None = None
    measured: dict = field(default_factory=dict)
    summary: str = ""
    spread: dict = field(default_factory=dict)
    paper_value: object = None
    figures: list = field(default_factory=list)
    parts: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    rule: str = ""
    choices: dict = field(default_factory=dict)

    def __post_init__(self):
        for i, part in enumerate(self.parts):
            if not isinstance(part, Part):
                raise TypeError(f"parts[{i}] must be a Part, got {type(part).__name__}")
        for i, row in enumerate(self.rows):
            if not isinstance(row, Row):
                raise TypeError(f"rows[{i}] must be a Row, got {type(row).__name__}")
        if self.parts:
            every = all(p.holds is True for p in self.parts)
            if self.passed is None:
                self.passed = every
            elif bool(self.passed) != every:
                raise ValueError(f"passed={self.passed} contradicts the parts (all hold: {every})")
        if self.passed is None:
            raise ValueError("Outcome needs passed, or parts to derive it from")
        self.passed = bool(self.passed)

    @property
    def verdict(self):
        """"reproduced", "partly reproduced", "not reproduced" or "not judged" (empirical wording).

        With parts: reproduced when every part holds; not judged when no part could be judged;
        partly reproduced when some part holds; else not reproduced.
        """
        if self.passed:
            return "reproduced"
        if self.parts and all(p.holds is None for p in self.parts):
            return "not judged"
        if any(p.holds is True for p in self.parts):
            return "partly reproduced"
        return "not reproduced"


@dataclass(frozen=True)
class Claim:
    name: str
    paper: str
    kind: str
    statement: str
    run: Callable
    paper_figure: str | None = None


REGISTRY: dict[str, Claim] = {}
_PLOT = {}


def _pyplot(quiet=False):
    """matplotlib.pyplot on the Agg backend, or None without matplotlib (saying so once unless ``quiet``)."""
    if "plt" not in _PLOT:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            plt = None
            if not quiet:
                print("refvae verify: matplotlib is not installed, so no figures are drawn (install the "
                      "plot extra into the Python that runs refvae: make verify PLOT=1, or "
                      "python -m pip install -e '.[plot]')")
        _PLOT["plt"] = plt
    return _PLOT["plt"]


def _grid(name, value):
    try:
        rows, cols = value
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in (rows, cols))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be (rows, columns), two positive integers, got {value!r}")
    return int(rows), int(cols)


def _panel_size(value):
    try:
        width, height = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"panel_size must be (width, height) in inches, got {value!r}") from None
    if not (width >= PANEL_SIZE[0] and height >= PANEL_SIZE[1]):
        raise ValueError(f"panel_size must be at least {PANEL_SIZE} inches so that a panel can be read, "
                         f"got {value!r}")
    return width, height


def _drawn_grid(fig):
    """Rows and columns of the panel grid drawn on ``fig`` (colorbars share their panel's grid)."""
    rows = cols = 1
    for ax in fig.axes:
        spec = getattr(ax, "get_subplotspec", lambda: None)()
        if spec is not None:                    # None: an axes placed by hand, outside any grid
            r, c = spec.get_topmost_subplotspec().get_gridspec().get_geometry()
            rows, cols = max(rows, r), max(cols, c)
    return rows, cols


def _fit_titles(fig):
    """Wrap a panel title wider than its panel onto more lines (it would run off the figure)."""
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        text = ax.title.get_text()
        if not text or "\n" in text:
            continue
        width = ax.title.get_window_extent(renderer).width
        room = ax.get_position().width * fig.bbox.width
        if width > room > 0:
            ax.title.set_text("\n".join(textwrap.wrap(text, max(12, int(len(text) * room / width)))))


def data_limits(*arrays, pad=0.05, log=False):
    """Axis limits ``(lo, hi)`` covering every finite value of ``arrays``, padded by ``pad`` of the span.

    For a claim author who needs a range before plotting (the grid of a heat map, limits shared by
    panels drawn separately): limits come from the data, never hard-coded. With ``log``, only the
    positive values count and the padding is a fraction of the span in decades.
    """
    vals = np.concatenate([np.ravel(np.asarray(a, dtype=float)) for a in arrays]) if arrays else np.empty(0)
    vals = vals[np.isfinite(vals)]
    if log:
        vals = vals[vals > 0]
    if vals.size == 0:
        raise ValueError(f"data_limits needs at least one finite{' positive' if log else ''} value, got none")
    lo, hi = float(vals.min()), float(vals.max())
    if log:
        lo, hi = np.log10(lo), np.log10(hi)
    span = hi - lo if hi > lo else max(abs(hi), 1.0) * (1.0 if log else 0.1)
    lo, hi = lo - pad * span, hi + pad * span
    return (10.0 ** lo, 10.0 ** hi) if log else (lo, hi)


def _data_interval(ax, axis):
    """Finite ``(lo, hi)`` of the data plotted on ``ax`` along ``axis`` ("x"/"y"), or None."""
    lim = ax.dataLim
    lo, hi = lim.intervalx if axis == "x" else lim.intervaly
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
        return None                             # nothing plotted along this axis
    if getattr(ax, f"get_{axis}scale")() == "log":
        minpos = lim.minposx if axis == "x" else lim.minposy
        if not np.isfinite(minpos) or hi <= 0:
            return None
        lo = max(lo, minpos)
    return float(lo), float(hi)


def _padded(ax, axis, lo, hi, pad):
    """``(lo, hi)`` widened by ``pad`` of the span (in decades on a log axis)."""
    log = getattr(ax, f"get_{axis}scale")() == "log"
    if log:
        lo, hi = np.log10(lo), np.log10(hi)
    span = hi - lo if hi > lo else max(abs(hi), 1.0) * (1.0 if log else 0.1)
    lo, hi = lo - pad * span, hi + pad * span
    return (10.0 ** lo, 10.0 ** hi) if log else (lo, hi)


def _set_interval(ax, axis, lo, hi):
    a, b = getattr(ax, f"get_{axis}lim")()
    getattr(ax, f"set_{axis}lim")((hi, lo) if a > b else (lo, hi))    # an inverted axis stays inverted


def share_limits(axes, which="xy", pad=0.05):
    """Give every axes in ``axes`` the same limits along ``which`` ("x", "y" or "xy"): all their data.

    For panels meant to be compared by eye (samples of several models beside the truth).
    """
    axes = list(np.ravel(axes))
    for axis in which:
        if axis not in "xy":
            raise ValueError(f"which must be made of 'x' and 'y', got {which!r}")
        spans = [s for s in (_data_interval(ax, axis) for ax in axes) if s is not None]
        if spans:
            lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)
            for ax in axes:
                _set_interval(ax, axis, *_padded(ax, axis, lo, hi, pad))


def _hidden_points(ax):
    """Counts of plotted points a panel cannot show: non-finite, and <= 0 on a log axis."""
    log = {"x": ax.get_xscale() == "log", "y": ax.get_yscale() == "log"}
    nonfinite = nonpositive = 0
    points = [line.get_xydata() for line in ax.lines if line.get_transform() is ax.transData]
    points += [c.get_offsets() for c in ax.collections
               if getattr(c, "get_offset_transform", lambda: None)() is ax.transData]
    for xy in points:
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        finite = np.isfinite(xy).all(axis=1)
        nonfinite += int((~finite).sum())
        bad = np.zeros(len(xy), dtype=bool)
        for i, axis in enumerate("xy"):
            if log[axis]:
                bad |= finite & (xy[:, i] <= 0)
        nonpositive += int(bad.sum())
    return nonfinite, nonpositive


def show_all_data(ax):
    """Widen ``ax``'s limits to all its plotted data, and note on it the points no limits can show.

    ``Context.figure`` calls this on every panel before saving, so no data is clipped silently.
    Returns the note written on the panel ("" when every point is visible).
    """
    if ax.get_label() == "<colorbar>" or not ax.has_data():
        return ""
    for axis in "xy":
        data = _data_interval(ax, axis)
        if data is None:
            continue
        a, b = sorted(getattr(ax, f"get_{axis}lim")())
        tol = 1e-9 * max(abs(a), abs(b), 1e-300)
        below, above = data[0] < a - tol, data[1] > b + tol
        if below or above:                      # widen only the side that hides data
            lo, hi = _padded(ax, axis, min(data[0], a), max(data[1], b), 0.03)
            _set_interval(ax, axis, lo if below else a, hi if above else b)
    nonfinite, nonpositive = _hidden_points(ax)
    note = "; ".join(text for n, text in ((nonfinite, f"{nonfinite} non-finite points not drawn"),
                                          (nonpositive, f"{nonpositive} points <= 0 off the log axis")) if n)
    if note:
        ax.text(0.02, 0.98, note, transform=ax.transAxes, ha="left", va="top", fontsize=7, color="C3")
    return note


def claim(name, paper, kind, statement, paper_figure=None):
    """Register ``run(ctx) -> Outcome`` as a claim (decorator)."""
    if paper not in PAPERS:
        raise ValueError(f"paper must be one of {sorted(PAPERS)}, got {paper!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")

    def register(run):
        if name in REGISTRY:
            raise ValueError(f"claim {name!r} is registered twice")
        REGISTRY[name] = Claim(name, paper, kind, statement, run, paper_figure)
        return run
    return register


@dataclass
class Result:
    """One claim's run: its outcome (None on error), wall seconds and CPU seconds of the process that ran it."""
    claim: Claim
    outcome: Outcome | None
    seconds: float
    error: str | None = None
    cpu_seconds: float | None = None

    @property
    def verdict(self):
        if self.error is not None:
            return "ERROR"
        if self.claim.kind == "theorem":
            return "holds" if self.outcome.passed else "FAILS"
        return self.outcome.verdict

    @property
    def fails_run(self):
        return self.error is not None or (self.claim.kind == "theorem" and not self.outcome.passed)


DIVERGENCE_POLICY = "isolate"     # every fit of a verify run: a diverging restart stops, the others finish


def fit_policy():
    """The training policy of every fit inside a verify run, entered once per claim by ``run_claim``.

    The single place where verify switches training options on for all of its fits (in this
    process, or in the worker process that runs the claim): a diverging restart is stopped and
    reported (``refvae.train.divergence_policy("isolate")``) while the other restarts finish.
    """
    return train.divergence_policy(DIVERGENCE_POLICY)


def run_claim(c, ctx):
    """Run one claim; an exception inside it becomes an ERROR result.

    KeyboardInterrupt (and other BaseExceptions) propagate: the caller decides what an interrupted
    run keeps. Wall and CPU seconds (``time.process_time``, this process and its BLAS threads) are
    recorded either way the claim ends.
    """
    t0, c0 = time.perf_counter(), time.process_time()

    def result(outcome, error=None):
        return Result(c, outcome, time.perf_counter() - t0, error, time.process_time() - c0)
    try:
        with fit_policy():
            outcome = c.run(ctx)
        if not isinstance(outcome, Outcome):
            raise TypeError(f"claim {c.name!r} returned {type(outcome).__name__}, not an Outcome")
        return result(outcome)
    except Exception as exc:  # reported, and fails the run
        return result(None, f"{type(exc).__name__}: {exc}")


def run_claims(names, ctx, on_start=None):
    """Run the named claims in order; an exception inside a claim becomes an ERROR result."""
    results = []
    for i, name in enumerate(names):
        c = REGISTRY[name]
        if on_start is not None:
            on_start(i, c)
        results.append(run_claim(c, ctx))
    return results

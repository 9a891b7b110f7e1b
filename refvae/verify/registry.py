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

import time
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

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

    def figure(self, name, draw):
        """Save a figure drawn by ``draw(fig)`` as ``<out>/<name>.png``; returns the file name or None.

        Needs matplotlib (the optional ``plot`` extra); without it, says so once and carries on.
        """
        plt = _pyplot()
        if plt is None or self.out is None:
            return None
        fig = plt.figure(figsize=(8, 4))
        try:
            draw(fig)
            fig.tight_layout()
            fig.savefig(f"{self.out}/{name}.png", dpi=90)
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
    holds : whether refvae's measurement supports it.
    evidence : the numbers behind the judgement, per restart where there are restarts.
    rule : how ``holds`` was decided (e.g. "paired: IWAE > LIN in at least 2 of 3 restarts").
    """
    statement: str
    holds: bool
    evidence: str = ""
    rule: str = ""


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
            every = all(bool(p.holds) for p in self.parts)
            if self.passed is None:
                self.passed = every
            elif bool(self.passed) != every:
                raise ValueError(f"passed={self.passed} contradicts the parts (all hold: {every})")
        if self.passed is None:
            raise ValueError("Outcome needs passed, or parts to derive it from")
        self.passed = bool(self.passed)

    @property
    def verdict(self):
        """"reproduced", "partly reproduced" or "not reproduced" (empirical wording)."""
        if self.passed:
            return "reproduced"
        if any(bool(p.holds) for p in self.parts):
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


def _pyplot():
    if "plt" not in _PLOT:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            plt = None
            print("refvae verify: matplotlib is not installed, so no figures are drawn "
                  "(pip install 'refvae[plot]' to get them)")
        _PLOT["plt"] = plt
    return _PLOT["plt"]


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
    claim: Claim
    outcome: Outcome | None
    seconds: float
    error: str | None = None

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


def run_claims(names, ctx, on_start=None):
    """Run the named claims in order; an exception inside a claim becomes an ERROR result."""
    results = []
    for i, name in enumerate(names):
        c = REGISTRY[name]
        if on_start is not None:
            on_start(i, c)
        t0 = time.perf_counter()
        try:
            outcome = c.run(ctx)
            if not isinstance(outcome, Outcome):
                raise TypeError(f"claim {name!r} returned {type(outcome).__name__}, not an Outcome")
            results.append(Result(c, outcome, time.perf_counter() - t0))
        except Exception as exc:  # reported, and fails the run
            results.append(Result(c, None, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"))
    return results

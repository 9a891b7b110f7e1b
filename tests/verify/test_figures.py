"""Figures of verify claims: readable panel sizes, no data silently clipped (Context.figure and helpers).

Most of these need matplotlib (the optional ``plot`` extra) and are skipped without it.
"""
import struct

import numpy as np
import pytest

from refvae.verify import Context
from refvae.verify import registry
from refvae.verify.registry import FIGURE_DPI, PANEL_SIZE, data_limits


def test_data_limits_cover_every_finite_value():
    assert data_limits([1.0, 2.0, np.nan], [[5.0, np.inf]], pad=0.05) == pytest.approx((0.8, 5.2))
    lo, hi = data_limits([-3.0, 0.0, 1e-2, 1e2], log=True, pad=0.0)
    assert (lo, hi) == pytest.approx((1e-2, 1e2))
    with pytest.raises(ValueError, match="at least one finite positive value"):
        data_limits([-1.0, np.nan], log=True)


def test_figure_without_matplotlib_returns_none_and_draws_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_PLOT", {"plt": None})
    drawn = []
    assert Context(out=str(tmp_path)).figure("f", drawn.append) is None
    assert drawn == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs,match", [({"panels": (0, 2)}, "panels must be"), ({"panels": 3}, "panels must be"),
                                          ({"panel_size": (2, 2)}, "panel_size must be at least")])
def test_figure_rejects_bad_sizes_before_drawing(tmp_path, kwargs, match):
    drawn = []
    with pytest.raises(ValueError, match=match):
        Context(out=str(tmp_path)).figure("f", drawn.append, **kwargs)
    assert drawn == []


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.fixture
def plt():
    return pytest.importorskip("matplotlib.pyplot")


def _save(tmp_path, draw, **kwargs):
    axes = []

    def keep(fig):
        draw(fig)
        axes.extend(fig.axes)
    name = Context(out=str(tmp_path)).figure("f", keep, **kwargs)
    assert name == "f.png"
    return _png_size(tmp_path / name), axes


def test_figure_is_sized_from_the_panels_drawn(plt, tmp_path):
    (w, h), _ = _save(tmp_path, lambda fig: fig.subplots(2, 3))
    assert (w, h) == (round(3 * PANEL_SIZE[0] * FIGURE_DPI), round(2 * PANEL_SIZE[1] * FIGURE_DPI))

    def with_colorbar(fig):                                     # a colorbar shares its panel's cell
        ax1, ax2 = fig.subplots(1, 2)
        fig.colorbar(ax2.imshow(np.arange(12.0).reshape(3, 4)), ax=ax2)
    (w, h), _ = _save(tmp_path, with_colorbar)
    assert (w, h) == (round(2 * PANEL_SIZE[0] * FIGURE_DPI), round(PANEL_SIZE[1] * FIGURE_DPI))
    (w, h), _ = _save(tmp_path, lambda fig: fig.subplots(1, 1), panels=(2, 2), panel_size=(5.0, 4.0))
    assert (w, h) == (round(2 * 5.0 * FIGURE_DPI), round(2 * 4.0 * FIGURE_DPI))


def test_hard_coded_limits_never_hide_data(plt, tmp_path):
    def draw(fig):
        ax1, ax2 = fig.subplots(1, 2)
        ax1.plot([0.0, 1.0, 2.0], [0.5, 10.0, -4.0])
        ax1.set_ylim(0.0, 1.0)                                   # would clip 10 and -4
        ax2.scatter([1.0, 30.0], [1.0, 2.0])
        ax2.set_xlim(20.0, 0.0)                                  # inverted, and would clip 30
        ax2.axhline(7.0)                                         # a reference line counts as data too
    _, (ax1, ax2) = _save(tmp_path, draw)
    lo, hi = ax1.get_ylim()
    assert lo <= -4.0 and hi >= 10.0
    left, right = ax2.get_xlim()
    assert left >= 30.0 and right == 0.0                         # widened on the hidden side only, still inverted
    assert ax2.get_ylim()[1] >= 7.0


def test_points_that_cannot_be_drawn_are_noted_on_the_panel(plt, tmp_path):
    def draw(fig):
        ax1, ax2 = fig.subplots(1, 2)
        ax1.plot([0.0, 1.0, 2.0], [1.0, np.nan, 3.0])            # a diverged restart
        ax2.plot([1.0, 2.0, 3.0], [-1.0, 1.0, 10.0])
        ax2.set_yscale("log")
    _, (ax1, ax2) = _save(tmp_path, draw)
    assert [t.get_text() for t in ax1.texts] == ["1 non-finite points not drawn"]
    assert [t.get_text() for t in ax2.texts] == ["1 points <= 0 off the log axis"]
    assert ax2.get_ylim()[0] <= 1.0 and ax2.get_ylim()[1] >= 10.0


def test_share_limits_gives_panels_the_range_of_all_their_data(plt):
    fig = plt.figure()
    try:
        ax1, ax2 = fig.subplots(1, 2)
        ax1.scatter([0.0, 1.0], [0.0, 1.0])
        ax2.scatter([-5.0, 0.5], [0.0, 8.0])
        registry.share_limits([ax1, ax2])
        assert ax1.get_xlim() == ax2.get_xlim() and ax1.get_ylim() == ax2.get_ylim()
        assert ax1.get_xlim()[0] < -5.0 and ax1.get_ylim()[1] > 8.0
    finally:
        plt.close(fig)


def test_a_title_wider_than_its_panel_is_wrapped(plt, tmp_path):
    title = "learned sigma2 of the LS-VAE over training, one line per restart (berger2020 Fig. 10)"
    _, (ax,) = _save(tmp_path, lambda fig: fig.subplots(1, 1).set_title(title))
    assert "\n" in ax.title.get_text() and ax.title.get_text().replace("\n", " ") == title

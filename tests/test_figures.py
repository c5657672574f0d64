"""The report's figures: what each draws (colours, styles, bands, marks, scales), that the PNG
is a real image, and that text stays legible (tick labels apart, the legend off the data)."""

from __future__ import annotations

import io
import itertools
import math
from typing import Any

import pytest
from matplotlib.colors import to_hex, to_rgba
from matplotlib.figure import Figure

from prunetui.core import catalog
from prunetui.core.figures import (
    ABLATION_STYLES,
    LayerProfile,
    Point,
    Series,
    accuracy_figure,
    accuracy_png,
    histogram_figure,
    histogram_png,
    layer_density_figure,
    layer_density_png,
    layer_profiles_figure,
    layer_profiles_png,
    pruner_colour,
    ratio_label,
    shared_span,
    shared_vmax,
)

NEW_PRUNERS = ("erk", "er", "uniform", "uniform-plus", "imp")
VGG_LAYERS = [f"layers.{i}.conv" for i in (0, 1, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15, 16)] + ["fc"]


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, decoded by matplotlib (a broken file raises)."""
    from matplotlib.image import imread

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(io.BytesIO(data), format="png")
    return img.shape[1], img.shape[0]


def curve(pruner: str, comps: list[float], base: float, *, seeds: int = 2,
          collapsed_from: float = 99.0, ablation: str = "none", label: str = "") -> Series:
    pts = tuple(Point(c, tuple(base - 8 * c + s for s in range(seeds)),
                      collapsed=c >= collapsed_from) for c in comps)
    return Series(pruner, label or catalog.pruner_display(pruner), pts, ablation)


def no_overlaps(fig: Figure, labels: list[Any]) -> None:
    """Tick labels do not touch: upright ones by their boxes; rotated ones (parallel slanted
    lines, whose upright boxes overlap while the text does not) by the gap between
    neighbours across the slant against the height of a line of text."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    shown = [t for t in labels if t.get_text()]
    angle = shown[0].get_rotation()
    if angle == 0:
        boxes = [t.get_window_extent(renderer) for t in shown]
        for a, b in itertools.combinations(boxes, 2):
            assert not a.overlaps(b), (a, b)
        return
    anchors = [t.get_window_extent(renderer).x1 for t in shown]  # ha="right": the end
    line = shown[0].get_fontsize() * fig.dpi / 72 * 1.2
    gaps = [b - a for a, b in itertools.pairwise(anchors)]
    assert min(gaps) * math.sin(math.radians(angle)) >= line, (min(gaps), line)


# -- colours ---------------------------------------------------------------------------------


def test_every_pruner_has_its_own_colour_in_figures_and_terminal() -> None:
    from plotext._dict import color_codes

    names = set(catalog.PRUNERS) | set(NEW_PRUNERS)
    assert names <= set(catalog.PRUNER_COLOURS)
    assert names <= set(catalog.PRUNER_TERM_COLOURS)
    hexes = [to_hex(catalog.PRUNER_COLOURS[p]) for p in names]
    assert len(set(hexes)) == len(hexes)
    terms = [catalog.PRUNER_TERM_COLOURS[p] for p in names]
    assert len(set(terms)) == len(terms)
    # plotext knows them, and none is one that vanishes on a dark terminal.
    assert set(terms) <= set(color_codes) - {"black", "blue", "gray", "default"}
    assert pruner_colour("synflow") == catalog.PRUNER_COLOURS["synflow"]
    assert pruner_colour("someday") not in hexes


# -- accuracy against compression ------------------------------------------------------------


@pytest.mark.parametrize(("c", "text"), [(0.0, "1×\n100%"), (1.0, "10×\n10%"),
                                         (3.0, "1,000×\n0.1%"), (0.5, "3.16×\n31.6%"),
                                         (4.0, "10,000×\n0.01%")])
def test_ratio_labels_name_ratio_and_fraction_kept(c: float, text: str) -> None:
    assert ratio_label(c) == text


def test_accuracy_figure_draws_each_pruner_in_its_colour_with_band_and_marks() -> None:
    comps = [0.0, 0.5, 1.0, 2.0, 3.0]
    syn = curve("synflow", comps, 90)
    mag = curve("mag", comps, 88, collapsed_from=2.0)
    fig = accuracy_figure([syn, mag], title="t", dense=91.5)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    syn_line = lines["SynFlow"]
    assert to_hex(syn_line.get_color()) == catalog.PRUNER_COLOURS["synflow"]
    assert list(syn_line.get_xdata()) == pytest.approx([10.0 ** c for c in comps])
    assert list(syn_line.get_ydata()) == pytest.approx([p.mean for p in syn.points])
    # Min–max bands (two seeds) in the pruner colours.
    bands = [to_hex(pc.get_facecolor()[0][:3]) for pc in ax.collections]
    assert catalog.PRUNER_COLOURS["synflow"] in bands and catalog.PRUNER_COLOURS["mag"] in bands
    # A ‡ on Mag's collapsed cells (2 and 3) only.
    marks = [ln for ln in ax.get_lines() if ln.get_marker() == "$‡$"
             and len(ln.get_xdata())]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [100.0, 1000.0]
    assert to_hex(marks[0].get_color()) == catalog.PRUNER_COLOURS["mag"]
    # Dense line and legend entries.
    assert any(list(ln.get_ydata()) == [91.5, 91.5] for ln in ax.get_lines())
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "a run of the cell collapsed" in legend and any("dense" in t for t in legend)
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["1×\n100%", "10×\n10%", "100×\n1%", "1,000×\n0.1%"]


def test_collapsed_cells_far_below_get_a_zoomed_panel_over_the_rest() -> None:
    """Cells at chance (10%) would press five curves a point apart into one line at the top:
    with ``zoom`` the upper cluster gets its own panel, the full range a small one below."""
    comps = [0.0, 1.0, 2.0, 3.0]
    mag = Series("mag", "Mag", tuple(Point(c, (10.0, 10.0) if c >= 2 else (92 - c, 93 - c),
                                           collapsed=c >= 2) for c in comps))
    syn = curve("synflow", comps, 93)  # 93 - 8c (+1 for the second seed): 69 … 94
    fig = accuracy_figure([syn, mag], title="t", dense=93.0, zoom=True)
    top, full = fig.axes[:2]
    assert top.get_title() == "t" and full.get_title(loc="left") == "full range"
    lo, hi = top.get_ylim()
    assert lo == pytest.approx(69 - 0.06 * (94 - 69)) and hi == pytest.approx(94 + 1.5)
    assert full.get_ylim()[0] < 10 < 69 < full.get_ylim()[1]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend.count("Mag") == 1 and legend.count("SynFlow") == 1  # not once per panel
    assert not any(t.get_visible() and t.get_text() for t in top.get_xticklabels())
    # No gap (the same curves without the collapse) or no zoom asked: one panel.
    assert len(accuracy_figure([syn], title="t", zoom=True).axes) == 1
    assert len(accuracy_figure([syn, mag], title="t").axes) == 1
    assert png_size(accuracy_png([syn, mag], title="t", zoom=True)) == (990, 704)


def test_zoom_range_is_the_cluster_above_the_widest_gap() -> None:
    from prunetui.core.figures import zoom_range

    assert zoom_range([10.0, 10.0, 11.0, 80.0, 85.0, 90.0]) == pytest.approx((79.4, 90.6))
    assert zoom_range([20.0, 35.0, 50.0, 65.0, 80.0]) is None  # evenly spread: no gap
    assert zoom_range([88.0, 89.0, 90.0]) is None  # a gap, but of one point
    assert zoom_range([10.0, 90.0]) is None  # too few values to call one a cluster


def test_one_seed_draws_no_band_and_no_collapse_legend() -> None:
    fig = accuracy_figure([curve("rand", [0.5, 1, 2], 80, seeds=1)], title="t")
    ax = fig.axes[0]
    assert not ax.collections
    assert "a run of the cell collapsed" not in [t.get_text() for t in fig.legends[0].get_texts()]


def test_ablations_differ_by_line_style_in_one_colour() -> None:
    comps = [0.5, 1.0, 2.0]
    series = [curve("synflow", comps, 90, ablation=a, label=f"SynFlow {a}")
              for a in ABLATION_STYLES]
    ax = accuracy_figure(series, title="t").axes[0]
    lines = [ln for ln in ax.get_lines() if ln.get_label().startswith("SynFlow ")]
    assert len(lines) == 4
    assert {to_hex(ln.get_color()) for ln in lines} == {catalog.PRUNER_COLOURS["synflow"]}
    assert len({str(ln.get_linestyle()) + str(ln._dash_pattern) for ln in lines}) == 4
    with pytest.raises(ValueError, match="unknown ablation 'flip'"):
        Series("synflow", "x", (), "flip")


def test_published_band_is_lighter_behind_and_labelled() -> None:
    comps = [0.0, 1.0, 2.0]
    user = curve("synflow", comps, 80)
    paper = Series("synflow", "SynFlow, published (3 runs)",
                   tuple(Point(c, (90 - c, 91 - c, 92 - c)) for c in comps))
    fig = accuracy_figure([user], title="t", published=[paper])
    ax = fig.axes[0]
    pub, mine = ax.collections[0], ax.collections[1]
    assert pub.get_hatch() and not mine.get_hatch()
    assert pub.get_zorder() < mine.get_zorder()
    assert pub.get_facecolor()[0][3] < mine.get_facecolor()[0][3]  # lighter
    assert to_hex(pub.get_facecolor()[0][:3]) == catalog.PRUNER_COLOURS["synflow"]
    # The band spans the published min and max at each compression.
    ys = pub.get_paths()[0].vertices[:, 1]
    assert min(ys) == pytest.approx(88.0) and max(ys) == pytest.approx(92.0)
    assert "SynFlow, published (3 runs)" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_imp_reference_is_one_marked_line() -> None:
    imp = Series("imp", "IMP (one run)", tuple(Point(c, (88 - c,)) for c in (0, 0.4, 0.8)))
    ax = accuracy_figure([curve("rand", [0.5, 1], 80)], title="t", reference=imp).axes[0]
    line = next(ln for ln in ax.get_lines() if ln.get_label() == "IMP (one run)")
    assert line.get_marker() == "D"
    assert to_hex(line.get_color()) == catalog.PRUNER_COLOURS["imp"]


def test_accuracy_png_is_legible() -> None:
    comps = [c / 4 for c in range(17)]
    series = [curve(p, comps, 90 - i) for i, p in enumerate(catalog.PRUNERS)]
    fig = accuracy_figure(series, title="VGG16 on CIFAR-10", dense=93.0)
    fig.canvas.draw()
    ax = fig.axes[0]
    no_overlaps(fig, ax.get_xticklabels())
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    assert not legend.overlaps(ax.get_window_extent(renderer))
    assert png_size(accuracy_png(series, title="t")) == (990, 572)


def test_narrow_ranges_get_ticks_at_their_compressions() -> None:
    ax = accuracy_figure([curve("snip", [0.25, 0.5, 0.75], 90)], title="t").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        ratio_label(0.25), ratio_label(0.5), ratio_label(0.75)]


def test_close_compressions_keep_their_tick_labels_apart() -> None:
    comps = [0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75]
    fig = accuracy_figure([curve("snip", comps, 90)], title="t")
    fig.canvas.draw()
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks[0] == ratio_label(0.05) and ratio_label(0.1) not in ticks
    assert ratio_label(0.75) in ticks
    no_overlaps(fig, fig.axes[0].get_xticklabels())


def test_accuracy_needs_a_series() -> None:
    with pytest.raises(ValueError, match="at least one series"):
        accuracy_figure([], title="t")


# -- per-layer density -----------------------------------------------------------------------


def test_layer_density_lines_per_pruner_and_empty_layers_on_the_floor() -> None:
    n = len(VGG_LAYERS)
    dens = {"synflow": [0.5 - 0.03 * i for i in range(n)],
            "mag": [0.9] * 10 + [0.0, 0.0, 0.01, 0.3]}
    fig = layer_density_figure(VGG_LAYERS, dens, title="at c = 1")
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert to_hex(lines["Mag"].get_color()) == catalog.PRUNER_COLOURS["mag"]
    floor = ax.get_ylim()[0] * 1.5
    zeros = next(ln for ln in ax.get_lines() if ln.get_marker() == "x" and len(ln.get_xdata()))
    assert list(zeros.get_xdata()) == [10, 11]
    assert list(zeros.get_ydata()) == pytest.approx([floor, floor])
    assert [t.get_text() for t in ax.get_xticklabels()] == VGG_LAYERS
    no_overlaps(fig, ax.get_xticklabels())
    assert png_size(layer_density_png(VGG_LAYERS, dens, title="t"))[0] > 700
    with pytest.raises(ValueError, match="mag: 2 densities for 14 layers"):
        layer_density_figure(VGG_LAYERS, {"mag": [1.0, 0.5]}, title="t")


def test_layer_profiles_a_panel_per_pruner_a_line_per_compression() -> None:
    layers = VGG_LAYERS
    n = len(layers)

    def profiles(collapse_at: float) -> list[LayerProfile]:
        return [LayerProfile(c, tuple(10.0 ** -c * (1 + 0.05 * i) if c < collapse_at or i != 9
                                      else 0.0 for i in range(n)), c >= collapse_at)
                for c in (0.5, 1.0, 2.0, 3.0)]

    panels = {p: profiles(3.0 if p == "mag" else 9.0) for p in ("rand", "mag", "synflow")}
    fig = layer_profiles_figure(layers, panels, title="VGG16")
    fig.canvas.draw()
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["Rand", "Mag", "SynFlow"]
    for ax in axes:
        assert ax.get_yscale() == "log"
        drawn = [ln for ln in ax.get_lines() if ln.get_marker() != "x"]
        assert len(drawn) == 4  # one per compression
        # Light to dark as c grows: the last line is darker than the first.
        first, last = (sum(to_rgba(ln.get_color())[:3]) for ln in (drawn[0], drawn[-1]))
        assert last < first
        no_overlaps(fig, ax.get_xticklabels())
    mag_lines = [ln for ln in axes[1].get_lines() if ln.get_marker() != "x"]
    assert [ln.get_linestyle() for ln in mag_lines] == ["-", "-", "-", "--"]
    assert png_size(layer_profiles_png(layers, panels, title="t"))[1] > 400
    with pytest.raises(ValueError, match="rand at c=1: 1 densities"):
        layer_profiles_figure(layers, {"rand": [LayerProfile(1.0, (0.1,))]}, title="t")


# -- histograms ------------------------------------------------------------------------------


def hists(top: float) -> list[dict[str, Any]]:
    return [{"layer": f"l{i}", "edges": [-1.0, 0.0, 1.0], "fractions": [top / (i + 1), 0.01]}
            for i in range(3)]


def test_histograms_share_one_colour_scale_when_given() -> None:
    a, b = hists(0.2), hists(0.4)
    vmax = shared_vmax([a, b])
    assert vmax == 0.4
    for h in (a, b):
        im = histogram_figure(h, "Rand", vmax).axes[0].images[0]
        assert im.norm.vmin == 0.0 and im.norm.vmax == 0.4
    # Without it, each figure scales to itself (comparing them by colour would mislead).
    assert histogram_figure(a, "Rand").axes[0].images[0].norm.vmax == pytest.approx(0.2)
    assert shared_vmax([]) == 1.0


def test_histograms_share_one_weight_axis_when_given() -> None:
    a = hists(0.2)
    b = [h | {"edges": [-3.0, 0.0, 3.0]} for h in hists(0.4)]
    span = shared_span([a, b])
    assert span == 3.0
    for h in (a, b):
        assert histogram_figure(h, "t", span=span).axes[0].get_xlim() == (-3.0, 3.0)
    assert histogram_figure(a, "t").axes[0].get_xlim() == (-1.0, 1.0)


def test_histogram_says_weights_are_after_training() -> None:
    fig = histogram_figure(hists(0.3), "SynFlow — VGG16, compression 1", 0.5)
    ax = fig.axes[0]
    # A square-root colour scale: the sparse layers' small fractions stay apart from zero.
    assert ax.images[0].norm.gamma == 0.5 and "square-root" in fig.axes[1].get_ylabel()
    assert "after training" in ax.get_title() and "after training" in ax.get_xlabel()
    assert "one scale" in fig.axes[1].get_ylabel()
    assert png_size(histogram_png(hists(0.3), "t"))[0] == 880


def test_a_hundred_layers_stay_legible() -> None:
    # A ResNet-110: names thinned to every k-th so that neighbours never collide.
    layers = [f"stage{i // 36}.block{i % 36 // 2}.conv{i % 2 + 1}" for i in range(110)]
    dens = {"synflow": [0.1] * 110, "snip": [0.2] * 110}
    fig = layer_density_figure(layers, dens, title="t")
    fig.canvas.draw()
    labels = [t for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert 30 <= len(labels) < 110 and labels[0].get_text() == layers[0]
    no_overlaps(fig, labels)
    panels = {"synflow": [LayerProfile(1.0, tuple([0.1] * 110))]}
    fig = layer_profiles_figure(layers, panels, title="t")
    fig.canvas.draw()
    no_overlaps(fig, fig.axes[0].get_xticklabels())

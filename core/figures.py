"""The report's figures, drawn with matplotlib's Agg backend: pure functions from plain data to
PNG bytes. No torch, no store rows: callers turn their runs into the small types below.

Each ``*_png`` function returns the PNG bytes of its ``*_figure`` twin (a matplotlib Figure,
for tests and for callers that save it in another format):

- ``accuracy_png``: top-1 against the compression ratio (the SynFlow paper's Figure 6 axes);
- ``layer_density_png``: each layer's kept fraction across pruners at one compression;
- ``layer_profiles_png``: each layer's kept fraction across compressions, a panel per pruner;
- ``histogram_png``: a run's weights after training, per layer, optionally on a colour scale
  and weight axis shared by several runs (``shared_vmax``, ``shared_span``).

Every pruner has one colour everywhere (``catalog.PRUNER_COLOURS``).
"""

from __future__ import annotations

import io
import itertools
import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunetui.core.catalog import PRUNER_COLOURS, pruner_display

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Line style of each ablation of a pruner: the plain pruner solid, its controls broken.
ABLATION_STYLES: dict[str, Any] = {
    "none": "-",
    "shuffle": (0, (5, 2)),  # dashed
    "reinit": (0, (1, 1.5)),  # dotted
    "invert": (0, (5, 1.5, 1, 1.5)),  # dash-dot
}
COLLAPSE_MARK = "‡"
DPI = 110
# A pruner without a colour of its own (one added later) is drawn in this one, never in
# another pruner's.
OTHER_COLOUR = "#000000"


def pruner_colour(pruner: str) -> str:
    """The pruner's colour in every figure (``catalog.PRUNER_COLOURS``)."""
    return PRUNER_COLOURS.get(pruner, OTHER_COLOUR)


def pruner_name(pruner: str) -> str:
    """Display name of a pruner (SynFlow, GraSP), the key itself for one not in the catalog."""
    return pruner_display(pruner)


@dataclass(frozen=True)
class Point:
    """One cell of an accuracy curve: compression ``c`` and top-1 (%) of each seed's run."""

    compression: float
    values: Sequence[float]  # stored as a tuple
    collapsed: bool = False  # at least one run of the cell collapsed

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError(f"point at compression {self.compression:g} has no values")
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))

    @property
    def mean(self) -> float:
        """Mean over seeds."""
        return statistics.fmean(self.values)


@dataclass(frozen=True)
class Series:
    """One curve: a pruner (its colour), a legend label, an ablation (its line style) and
    points in any order (drawn sorted by compression)."""

    pruner: str
    label: str
    points: Sequence[Point]  # stored as a tuple, sorted by compression
    ablation: str = "none"

    def __post_init__(self) -> None:
        if self.ablation not in ABLATION_STYLES:
            raise ValueError(f"unknown ablation {self.ablation!r}; choose one of: "
                             f"{', '.join(ABLATION_STYLES)}")
        object.__setattr__(self, "points",
                           tuple(sorted(self.points, key=lambda p: p.compression)))


@dataclass(frozen=True)
class LayerProfile:
    """Each layer's kept fraction after pruning at one compression (layers in model order)."""

    compression: float
    densities: Sequence[float]  # stored as a tuple
    collapsed: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "densities", tuple(float(d) for d in self.densities))


# -- shared pieces -----------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    """A figure outside pyplot: no global state to close or leak, safe off the main thread
    (the app draws in workers)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself: draws and measures text without pyplot
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def ratio_label(c: float) -> str:
    """Tick text for compression ``c``: the ratio 10^c and the fraction kept, e.g. "10×\\n10%"."""
    ratio = 10.0 ** c
    ratio_s = f"{round(ratio):,}" if abs(ratio - round(ratio)) < 1e-6 * ratio else f"{ratio:.3g}"
    return f"{ratio_s}×\n{_percent(10.0 ** -c)}"


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.3g}%"


def _ratio_axis(ax: Axes, compressions: Iterable[float]) -> None:
    """x = compression ratio 10^c on a log axis, ticks naming the ratio and the kept fraction.

    Ticks sit at whole decades; a range that holds fewer than two gets its ticks at the
    compressions drawn instead, each at least an eighth of the range from the last, so that
    their two-line labels never run into each other."""
    from matplotlib.ticker import FixedLocator, NullFormatter

    cs = sorted(set(compressions))
    ax.set_xscale("log")
    lo, hi = cs[0], cs[-1]
    decades = list(range(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1))
    if len(decades) >= 2:
        ticks = [float(d) for d in decades]
    else:
        ticks = []
        for c in cs:
            if not ticks or c - ticks[-1] >= (hi - lo) / 8 - 1e-12:
                ticks.append(c)
    ax.xaxis.set_major_locator(FixedLocator([10.0 ** c for c in ticks]))
    ax.set_xticklabels([ratio_label(c) for c in ticks], fontsize=8)
    ax.xaxis.set_minor_formatter(NullFormatter())
    pad = 10.0 ** (0.04 * max(hi - lo, 0.5))
    ax.set_xlim(10.0 ** lo / pad, 10.0 ** hi * pad)
    ax.set_xlabel("compression ratio (fraction of weights kept)")


# -- accuracy against compression --------------------------------------------------------------


def accuracy_png(
    series: Sequence[Series],
    *,
    title: str,
    dense: float | None = None,
    published: Sequence[Series] = (),
    reference: Series | None = None,
    zoom: bool = False,
) -> bytes:
    """``accuracy_figure`` as PNG bytes."""
    return _png(accuracy_figure(series, title=title, dense=dense, published=published,
                                reference=reference, zoom=zoom))


def accuracy_figure(
    series: Sequence[Series],
    *,
    title: str,
    dense: float | None = None,
    published: Sequence[Series] = (),
    reference: Series | None = None,
    zoom: bool = False,
) -> Figure:
    """Top-1 (%) against the compression ratio 10^c on a log axis, as the SynFlow paper's
    Figure 6 draws it.

    Each of ``series`` is a mean line over seeds in its pruner's colour and its ablation's line
    style, with a min–max band when a cell has several seeds, and a ‡ above each cell where a run
    collapsed. ``dense``: the unpruned (c = 0) top-1 as a horizontal line. ``published``: the
    paper's runs of a pruner, drawn behind as a lighter, hatched min–max band in the pruner's
    colour, labelled as published. ``reference``: one run's curve (IMP's per-round accuracy),
    drawn with a marker at every point and no band. The legend sits outside the axes so that
    it never covers a curve.

    ``zoom``: when collapsed cells (top-1 at chance) sit far below the rest (``zoom_range``),
    draw the upper cluster in a large panel and the full range in a small one below it, so
    that curves a point apart do not merge into one line pressed against the top."""
    if not series and reference is None:
        raise ValueError("accuracy_png needs at least one series")
    window = zoom_range(_accuracy_values(series, published, reference, dense)) if zoom else None
    fig = _figure(9, 6.4 if window else 5.2)
    if window:
        top, full = fig.subplots(2, 1, sharex=True, height_ratios=[2.2, 1])
        panels = [top, full]
    else:
        panels = [fig.subplots()]
    for i, ax in enumerate(panels):
        compressions = _draw_accuracy(ax, series, dense, published, reference, legend=i == 0)
        _ratio_axis(ax, compressions)
        ax.grid(True, which="major", alpha=0.3)
        ax.set_ylabel("top-1 accuracy (%)")
    panels[0].set_title(title, fontsize=11)
    if window:
        panels[0].set_ylim(*window)
        panels[0].set_xlabel("")
        panels[0].set_ylabel("top-1 accuracy (%), zoomed")
        panels[1].set_title("full range", fontsize=9, loc="left")
    fig.legend(*panels[0].get_legend_handles_labels(), loc="outside right upper", fontsize=8,
               frameon=False)
    return fig


def _accuracy_values(series: Sequence[Series], published: Sequence[Series],
                     reference: Series | None, dense: float | None) -> list[float]:
    """Every y value the accuracy figure draws: band edges, means, the dense line."""
    drawn = [*series, *published, *([reference] if reference is not None else [])]
    out = [v for s in drawn for p in s.points for v in (min(p.values), max(p.values), p.mean)]
    return out + ([dense] if dense is not None else [])


def zoom_range(values: Sequence[float]) -> tuple[float, float] | None:
    """The y range of a zoomed panel over the upper cluster of ``values``, or None: when one
    gap splits them (collapsed runs at chance below, the working ones above), at least 10
    points, a quarter of the full range and twice any other gap wide (values spread evenly
    have no cluster to zoom on), the values above it, padded."""
    vs = sorted(set(values))
    if len(vs) < 3:
        return None
    gaps = sorted((b - a, b) for a, b in itertools.pairwise(vs))
    gap, above = gaps[-1]
    if gap < max(10.0, 0.25 * (vs[-1] - vs[0]), 2 * gaps[-2][0]):
        return None
    pad = max(0.5, 0.06 * (vs[-1] - above))
    return above - pad, vs[-1] + pad


def _draw_accuracy(ax: Axes, series: Sequence[Series], dense: float | None,
                   published: Sequence[Series], reference: Series | None,
                   legend: bool) -> list[float]:
    """Draw the accuracy figure's content into ``ax`` (labelled for the legend when
    ``legend``); the compressions drawn."""
    from matplotlib.colors import to_rgb

    def label(text: str) -> str:
        return text if legend else "_"

    compressions: list[float] = []
    for s in published:
        xs = [10.0 ** p.compression for p in s.points]
        colour = pruner_colour(s.pruner)
        # Lighter than the user's band and hatched; a thin mean line keeps a narrow band
        # (three runs within a few tenths of a point) visible.
        ax.fill_between(xs, [min(p.values) for p in s.points], [max(p.values) for p in s.points],
                        facecolor=(*to_rgb(colour), 0.16), edgecolor=(*to_rgb(colour), 0.5),
                        hatch="////", linewidth=0.6, zorder=1, label=label(s.label))
        ax.plot(xs, [p.mean for p in s.points], color=colour, alpha=0.45, linewidth=1.0,
                zorder=1)
        compressions += [p.compression for p in s.points]
    collapsed_any = False
    for s in series:
        _draw_series(ax, s, label(s.label))
        compressions += [p.compression for p in s.points]
        collapsed_any |= any(p.collapsed for p in s.points)
    if reference is not None:
        xs = [10.0 ** p.compression for p in reference.points]
        ax.plot(xs, [p.mean for p in reference.points], color=pruner_colour(reference.pruner),
                linestyle=ABLATION_STYLES[reference.ablation], linewidth=1.4, marker="D",
                markersize=4.5, zorder=4, label=label(reference.label))
        _collapse_marks(ax, reference)
        compressions += [p.compression for p in reference.points]
        collapsed_any |= any(p.collapsed for p in reference.points)
    if dense is not None:
        ax.axhline(dense, color="black", linestyle=(0, (1, 2)), linewidth=1.1, zorder=2,
                   label=label(f"dense (c = 0): {dense:.2f}%"))
    if collapsed_any and legend:
        # A legend entry for the mark: an invisible line carrying the marker.
        ax.plot([], [], linestyle="none", marker=f"${COLLAPSE_MARK}$", markersize=10,
                color="black", label="a run of the cell collapsed")
    return compressions


def _draw_series(ax: Axes, s: Series, label: str) -> None:
    colour = pruner_colour(s.pruner)
    xs = [10.0 ** p.compression for p in s.points]
    if any(len(p.values) > 1 for p in s.points):
        ax.fill_between(xs, [min(p.values) for p in s.points], [max(p.values) for p in s.points],
                        color=colour, alpha=0.22, linewidth=0, zorder=2)
    ax.plot(xs, [p.mean for p in s.points], color=colour,
            linestyle=ABLATION_STYLES[s.ablation], linewidth=1.8, marker="o", markersize=3,
            zorder=3, label=label)
    _collapse_marks(ax, s)


def _collapse_marks(ax: Axes, s: Series) -> None:
    marked = [p for p in s.points if p.collapsed]
    if marked:
        # Offset above the mean so the mark does not hide the point it labels.
        ax.plot([10.0 ** p.compression for p in marked], [p.mean for p in marked],
                linestyle="none", marker=f"${COLLAPSE_MARK}$", markersize=10,
                color=pruner_colour(s.pruner), zorder=5,
                transform=_shifted(ax, 0, 9))


def _shifted(ax: Axes, dx_pt: float, dy_pt: float) -> Any:
    from matplotlib.transforms import ScaledTranslation

    return ax.transData + ScaledTranslation(dx_pt / 72, dy_pt / 72, ax.figure.dpi_scale_trans)


# -- per-layer density ---------------------------------------------------------------------------


def _floor(values: Iterable[float]) -> float:
    """Where a log axis draws zero: a decade below the smallest positive value."""
    positive = [v for v in values if v > 0]
    return min(positive, default=1.0) / 10


def _layer_axis(ax: Axes, layers: Sequence[str], fontsize: float, most: int) -> None:
    """Layer names as slanted tick labels; with more than ``most`` layers (a ResNet-110 has
    110), every k-th, so that neighbouring names never run into each other."""
    step = math.ceil(len(layers) / most)
    shown = range(0, len(layers), step)
    ax.set_xticks(list(shown), [layers[i] for i in shown], rotation=55, ha="right",
                  rotation_mode="anchor", fontsize=fontsize)
    if step > 1:
        ax.set_xticks(range(len(layers)), minor=True)
    ax.set_xlim(-0.5, len(layers) - 0.5)


def _zero_marks(ax: Axes, xs: Sequence[int], ys: Sequence[float], floor: float,
                colour: Any) -> None:
    """Empty layers (density 0) as ✕ on the axis floor: a log axis cannot draw 0 itself."""
    zeros = [x for x, y in zip(xs, ys, strict=True) if y <= 0]
    if zeros:
        ax.plot(zeros, [floor] * len(zeros), linestyle="none", marker="x", markersize=7,
                markeredgewidth=1.6, color=colour, zorder=5, clip_on=False)


def layer_density_png(layers: Sequence[str], densities: Mapping[str, Sequence[float]], *,
                      title: str) -> bytes:
    """``layer_density_figure`` as PNG bytes."""
    return _png(layer_density_figure(layers, densities, title=title))


def layer_density_figure(layers: Sequence[str], densities: Mapping[str, Sequence[float]], *,
                         title: str) -> Figure:
    """Kept fraction of each layer (x, in model order, names as in the report's layer tables)
    for each pruner (a line in its colour), on a log y axis. ``densities[pruner]`` has one
    value per layer. An empty layer is a ✕ on the axis floor."""
    if not densities:
        raise ValueError("layer_density_png needs at least one pruner")
    for pruner, ds in densities.items():
        if len(ds) != len(layers):
            raise ValueError(f"{pruner}: {len(ds)} densities for {len(layers)} layers")
    fig = _figure(min(16.0, max(7.0, 0.42 * len(layers) + 3.5)), 5.0)
    ax = fig.subplots()
    floor = _floor(d for ds in densities.values() for d in ds)
    xs = list(range(len(layers)))
    for pruner, ds in densities.items():
        colour = pruner_colour(pruner)
        ax.plot(xs, [d if d > 0 else floor for d in ds], color=colour, marker="o",
                markersize=3.5, linewidth=1.6, label=pruner_name(pruner))
        _zero_marks(ax, xs, ds, floor, colour)
    if any(d <= 0 for ds in densities.values() for d in ds):
        ax.plot([], [], linestyle="none", marker="x", color="black", label="empty layer (0)")
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor / 1.5, top=1.5)
    _layer_axis(ax, layers, 8 if len(layers) <= 24 else 6, 56)
    ax.set_ylabel("fraction of the layer's weights kept")
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="major", axis="y", alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=8, frameon=False)
    return fig


def layer_profiles_png(layers: Sequence[str], panels: Mapping[str, Sequence[LayerProfile]], *,
                       title: str) -> bytes:
    """``layer_profiles_figure`` as PNG bytes."""
    return _png(layer_profiles_figure(layers, panels, title=title))


def layer_profiles_figure(layers: Sequence[str], panels: Mapping[str, Sequence[LayerProfile]],
                          *, title: str) -> Figure:
    """A panel per pruner: each layer's kept fraction (x = layer, log y), one line per
    compression coloured from light (small c) to dark (large c), dashed where the network
    collapsed; an emptied layer is a ✕ on the axis floor.

    x = layer rather than x = compression: compressions are ordered, so one sequential colour
    scale reads them without a legend, and the layer that empties first is the line that drops
    to the floor; one line per layer would need a legend of 15+ colours that nobody can tell
    apart."""
    if not panels:
        raise ValueError("layer_profiles_png needs at least one pruner")
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap, Normalize

    for pruner, profiles in panels.items():
        for p in profiles:
            if len(p.densities) != len(layers):
                raise ValueError(f"{pruner} at c={p.compression:g}: {len(p.densities)} "
                                 f"densities for {len(layers)} layers")
    n = len(panels)
    cols = min(n, 3 if len(layers) <= 20 else 2)
    rows = math.ceil(n / cols)
    panel_w = min(7.0, max(4.2, 0.3 * len(layers) + 1.8))
    fig = _figure(panel_w * cols + 1.2, 3.9 * rows + 0.6)
    axes = fig.subplots(rows, cols, sharey=True, squeeze=False)
    everything = [d for ps in panels.values() for p in ps for d in p.densities]
    floor = _floor(everything)
    cs = [p.compression for ps in panels.values() for p in ps]
    norm = Normalize(min(cs), max(cs) if max(cs) > min(cs) else min(cs) + 1)
    # viridis without its palest yellows (unreadable on white), light = small c, dark = large.
    cmap = ListedColormap(colormaps["viridis"](np.linspace(0.0, 0.82, 256))[::-1])
    xs = list(range(len(layers)))
    for ax, (pruner, profiles) in zip(axes.flat, panels.items(), strict=False):
        for p in sorted(profiles, key=lambda p: p.compression):
            colour = cmap(norm(p.compression))
            ax.plot(xs, [d if d > 0 else floor for d in p.densities], color=colour,
                    linewidth=1.3, linestyle=(0, (4, 2)) if p.collapsed else "-")
            _zero_marks(ax, xs, p.densities, floor, colour)
        ax.set_yscale("log")
        ax.set_ylim(bottom=floor / 1.5, top=1.5)
        ax.set_title(pruner_name(pruner), fontsize=10, color=pruner_colour(pruner))
        _layer_axis(ax, layers, 7, 24)
        ax.grid(True, which="major", axis="y", alpha=0.3)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("fraction kept")
    from matplotlib.cm import ScalarMappable

    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.8, pad=0.01)
    bar.set_label("compression c (keeps $10^{-c}$ of the weights)")
    fig.suptitle(title + "\ndashed: the network collapsed at that compression; ✕: an emptied "
                 "layer", fontsize=10)
    return fig


# -- weight histograms ---------------------------------------------------------------------------


def load_histograms(run_dir: Path) -> list[dict[str, Any]]:
    """A run's stored per-layer histograms (layer, edges, fractions)."""
    data = json.loads((run_dir / "histograms.json").read_text())
    assert isinstance(data, list)
    return data


def shared_vmax(histogram_sets: Iterable[Sequence[Mapping[str, Any]]]) -> float:
    """The largest bin fraction over several runs' histograms: pass it to every
    ``histogram_png`` of a comparison so one colour means one fraction in all of them."""
    top = max((f for hists in histogram_sets for h in hists for f in h["fractions"]),
              default=0.0)
    return float(top) if top > 0 else 1.0


def shared_span(histogram_sets: Iterable[Sequence[Mapping[str, Any]]]) -> float:
    """The widest weight range (max |edge|) over several runs' histograms: pass it to every
    ``histogram_png`` of a comparison so their x axes match. Each run bins its own range
    (``metrics.weight_histograms``), so bins differ in width between runs: equal colours are
    equal fractions per bin, not per unit of weight."""
    top = max((abs(e) for hists in histogram_sets for h in hists[:1] for e in h["edges"]),
              default=0.0)
    return float(top) if top > 0 else 1.0


def histogram_png(hists: Sequence[Mapping[str, Any]], title: str,
                  vmax: float | None = None, span: float | None = None) -> bytes:
    """``histogram_figure`` as PNG bytes."""
    return _png(histogram_figure(hists, title, vmax, span))


def histogram_figure(hists: Sequence[Mapping[str, Any]], title: str,
                     vmax: float | None = None, span: float | None = None) -> Figure:
    """One heat map of a run's kept weights after training: x the weight value, y the layer,
    colour the fraction of that layer's weights in the bin, on a square-root scale (sparse
    layers stay readable beside a layer kept whole). A heat map shows every layer at once where
    a 3-D surface hides some.

    Without ``vmax`` the colour scale runs to this figure's own largest fraction, and without
    ``span`` the x axis to its own range; to compare pruners, give every figure the same
    ``vmax`` and ``span`` (``shared_vmax``, ``shared_span``)."""
    import numpy as np

    edges = np.asarray(hists[0]["edges"])
    grid = np.asarray([h["fractions"] for h in hists])
    fig = _figure(8, 0.35 * len(hists) + 2.0)
    ax = fig.subplots()
    # Zero-fraction bins are masked so "no weight here" reads as blank, not as dark blue.
    # A square-root scale: a layer kept whole (a fraction of 0.1 in its fullest bin) would
    # otherwise leave the sparse layers (0.005) all in the darkest colour.
    from matplotlib.colors import PowerNorm

    norm = PowerNorm(0.5, vmin=0.0,
                     vmax=vmax if vmax is not None else max(float(grid.max()), 1e-12))
    im = ax.imshow(np.ma.masked_equal(grid, 0.0), aspect="auto", cmap="viridis",
                   extent=(edges[0], edges[-1], len(hists) - 0.5, -0.5), interpolation="nearest",
                   norm=norm)
    if span is not None:
        ax.set_xlim(-span, span)
    ax.set_yticks(range(len(hists)), [h["layer"] for h in hists], fontsize=8)
    ax.set_xlabel("weight value after training (kept weights)")
    ax.set_title(f"{title}\nweights after training", fontsize=10)
    scale = "one scale for every figure of the comparison" if vmax is not None \
        else "this figure's own scale"
    bar = fig.colorbar(im, ax=ax,
                       label=f"fraction of layer's weights, square-root scale\n({scale})")
    # Ticks evenly spaced along the bar (squares of even steps): linear ones crowd its top.
    top = float(norm.vmax or 1.0)
    bar.set_ticks([top * f ** 2 for f in (0.0, 0.25, 0.5, 0.75, 1.0)],
                  labels=[f"{top * f ** 2:.2g}" for f in (0.0, 0.25, 0.5, 0.75, 1.0)])
    return fig

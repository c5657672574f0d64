"""Base of the app's plotext charts: keeps its data, redraws from it on every render."""

from __future__ import annotations

import math

from textual.app import RenderResult
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

from prunetui.tui.widgets.fmt import count, flat_range


def integer_ticks(xs: list[int], most: int = 10) -> list[int]:
    """At most ``most`` integer ticks covering ``xs`` (epochs)."""
    if not xs:
        return []
    lo, hi = min(xs), max(xs)
    step = max(1, math.ceil((hi - lo + 1) / most))
    return list(range(lo, hi + 1, step))


# Rows of a chart that are not its canvas: title, the frame's two lines, x ticks, x label.
_CHROME_ROWS = 5


class Chart(PlotextPlot):
    """A PlotextPlot that draws itself from ``draw`` (data set through subclass methods)."""

    TITLE = ""
    EMPTY = "no data yet"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)

    def has_data(self) -> bool:
        raise NotImplementedError

    def draw(self, plt: Plot) -> None:
        raise NotImplementedError

    def legend_room(self, plt: Plot, labels: int, lo: float, hi: float) -> bool:
        """Make room above data spanning ``lo``..``hi`` for plotext's legend of ``labels``
        lines, which it always draws over the canvas's top-left corner, where a rising
        accuracy curve or a falling FLOP ratio starts. Returns False, asking the caller to
        draw no labels, when they would take more than half the canvas."""
        rows = self.size.height - _CHROME_ROWS
        if labels == 0:
            return True
        if rows < 2 * labels:
            return False
        if hi <= lo:
            lo, hi = flat_range(hi)
        span = hi - lo
        plt.ylim(lo, lo + span * rows / (rows - labels))
        # Ticks on the data's range only: none beside the legend (a top-1 of 101.9).
        count = max(2, min(5, (rows - labels) // 2))
        ticks = [lo + span * i / (count - 1) for i in range(count)]
        plt.yticks(ticks, [f"{t:.3g}" for t in ticks])
        return True

    def y_range(self, plt: Plot, lo: float, hi: float) -> None:
        """Show data spanning ``lo``..``hi`` with a margin above and below (a point on the
        frame reads as cut off) and ticks on the data's range only (no top-1 of 103)."""
        if hi <= lo:
            lo, hi = flat_range(hi)
        span = hi - lo
        plt.ylim(lo - 0.06 * span, hi + 0.06 * span)
        rows = self.size.height - _CHROME_ROWS
        count = max(2, min(5, rows // 2))
        ticks = [lo + span * i / (count - 1) for i in range(count)]
        plt.yticks(ticks, [f"{t:.3g}" for t in ticks])

    def render(self) -> RenderResult:
        plt = self.plt
        plt.clear_figure()
        if self.has_data():
            plt.title(self.TITLE)
            self.draw(plt)
        else:
            plt.title(f"{self.TITLE} — {self.EMPTY}")
            plt.xticks([], [])
            plt.yticks([], [])
        return super().render()


def ratio_tick(c: float) -> str:
    """Tick text for compression ``c``: the compression ratio 10^c, short ("3.16×", "100×",
    "3.16k×"), as the exported figure's x axis names it (``core.figures.ratio_label``)."""
    ratio = 10.0 ** c
    return f"{ratio:.3g}×" if ratio < 1000 else f"{count(ratio)}×"


def compression_axis(plt: Plot, compressions: list[float], columns: int) -> None:
    """x = compression c, which is the ratio 10^c on a log axis, as the exported figure
    draws it; ticks name the ratio. ``columns``: the chart's width, for how many tick labels
    fit side by side. Ticks sit at the compressions drawn, each far enough from the last for
    their labels not to touch, or at whole decades when those are fewer and at least two."""
    cs = sorted(set(compressions))
    if not cs:
        return
    lo, hi = cs[0], cs[-1]
    # The canvas is the width less the y tick labels and the frame (about 8 columns).
    room = max(2, (columns - 8) // (max(len(ratio_tick(c)) for c in cs) + 2))
    ticks: list[float] = []
    for c in cs:
        if not ticks or c - ticks[-1] >= (hi - lo) / room - 1e-9:
            ticks.append(c)
    decades = [float(d) for d in range(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1)]
    if len(ticks) < len(cs) and 2 <= len(decades) <= room:
        ticks = decades
    # A margin either side: a point on the frame reads as cut off.
    pad = 0.04 * max(hi - lo, 0.5)
    plt.xlim(lo - pad, hi + pad)
    plt.xticks(ticks, [ratio_tick(c) for c in ticks])
    plt.xlabel("compression ratio 10^c (log)")

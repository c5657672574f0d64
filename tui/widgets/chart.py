"""Base of the app's plotext charts: keeps its data, redraws from it on every render."""

from __future__ import annotations

import math

from textual.app import RenderResult
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

from prunetui.tui.widgets.fmt import flat_range


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

"""FLOP ratio (pruned / dense) against compression, one line per pruner in its fixed colour.

The x axis is the top-1 chart's (``Top1Chart``): the two share the Run tab's Charts view and
its legend (``PrunerLegend``), so this chart draws no legend of its own.
"""

from __future__ import annotations

import math

from textual_plotext.plot import Plot

from prunetui.tui.widgets.chart import Chart, compression_axis
from prunetui.tui.widgets.legend import catalog_order, term_colour


class FlopRatioChart(Chart):
    """Points (compression, FLOP ratio) per pruner, y on a log10 axis."""

    TITLE = "FLOP ratio (log10) vs compression"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._points: dict[str, dict[float, float]] = {}

    def has_data(self) -> bool:
        return any(self._points.values())

    def clear_points(self) -> None:
        self._points.clear()
        self.refresh()

    def add_point(self, pruner: str, compression: float, ratio: float) -> None:
        self._points.setdefault(pruner, {})[compression] = ratio
        self.refresh()

    def pruners(self) -> list[str]:
        """The pruners with a line, in the order drawn."""
        return catalog_order(p for p, points in self._points.items() if points)

    def draw(self, plt: Plot) -> None:
        lines = [(p, self._points[p]) for p in self.pruners()]
        # log10 by hand: plotext's log scale drops the tick labels at small heights.
        logs = {p: {c: math.log10(max(r, 1e-12)) for c, r in points.items()}
                for p, points in lines}
        values = [v for points in logs.values() for v in points.values()]
        self.y_range(plt, min(values), max(values))
        for pruner, points in logs.items():
            xs = sorted(points)
            if len(xs) > 1:
                plt.plot(xs, [points[x] for x in xs], color=term_colour(pruner),
                         marker="braille")
        for pruner, points in logs.items():  # points over every line
            xs = sorted(points)
            plt.scatter(xs, [points[x] for x in xs], color=term_colour(pruner), marker="●")
        compression_axis(plt, [c for points in logs.values() for c in points],
                         self.size.width)
        # The scale is in the title: plotext puts a y label under the x axis, on the left.

"""FLOP ratio (pruned / dense) against compression, one line per pruner."""

from __future__ import annotations

import math

from textual_plotext.plot import Plot

from prunetui.core.catalog import PRUNERS, pruner_display
from prunetui.tui.widgets.chart import Chart


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

    def draw(self, plt: Plot) -> None:
        comps: set[float] = set()
        lines = [(pruner, points) for pruner in PRUNERS if (points := self._points.get(pruner))]
        # log10 by hand: plotext's log scale drops the tick labels at small heights.
        logs = [math.log10(max(r, 1e-12)) for _, points in lines for r in points.values()]
        labelled = self.legend_room(plt, len(lines), min(logs), max(logs))
        for pruner, points in lines:
            xs = sorted(points)
            comps.update(xs)
            ys = [math.log10(max(points[x], 1e-12)) for x in xs]
            plt.plot(xs, ys, label=pruner_display(pruner) if labelled else None, marker="braille")
            plt.scatter(xs, ys, marker="●")
        ticks = sorted(comps)
        if len(ticks) <= 8:
            plt.xticks(ticks, [f"{c:g}" for c in ticks])
        plt.xlabel("compression c")
        # The scale is in the title: plotext puts a y label under the x axis, on the left.

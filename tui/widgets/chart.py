"""Base of the app's plotext charts: keeps its data, redraws from it on every render."""

from __future__ import annotations

import math

from textual.app import RenderResult
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot


def integer_ticks(xs: list[int], most: int = 10) -> list[int]:
    """At most ``most`` integer ticks covering ``xs`` (epochs)."""
    if not xs:
        return []
    lo, hi = min(xs), max(xs)
    step = max(1, math.ceil((hi - lo + 1) / most))
    return list(range(lo, hi + 1, step))


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

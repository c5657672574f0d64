"""The weight histogram of one layer of a finished run (kept weights)."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from textual_plotext.plot import Plot

from prunetui.tui.widgets.chart import Chart


class HistogramChart(Chart):
    """Bars of the fraction of a layer's weights per weight-value bin."""

    TITLE = "Weight histogram"
    EMPTY = "pick a finished run"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._hist: dict[str, Any] | None = None

    def has_data(self) -> bool:
        return self._hist is not None

    def set_histogram(self, hist: dict[str, Any] | None) -> None:
        self._hist = hist
        self.refresh()

    def draw(self, plt: Plot) -> None:
        assert self._hist is not None
        edges, fractions = self._hist["edges"], self._hist["fractions"]
        centers = [(a + b) / 2 for a, b in pairwise(edges)]
        plt.title(f"{self.TITLE}: {self._hist['layer']}")
        plt.bar(centers, fractions, width=1.0, marker="sd")
        lo, hi = edges[0], edges[-1]
        ticks = [lo + (hi - lo) * i / 4 for i in range(5)]
        plt.xticks(ticks, [f"{t:.2g}" for t in ticks])
        plt.xlabel("weight value")

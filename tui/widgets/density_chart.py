"""Per-layer density of one run as horizontal bars."""

from __future__ import annotations

from typing import Any

from textual_plotext.plot import Plot

from prunetui.tui.widgets.chart import Chart
from prunetui.tui.widgets.fmt import short_layer


class DensityChart(Chart):
    """Bars of the fraction of weights kept in each layer."""

    TITLE = "Layer density"
    EMPTY = "pick a pruned run"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._layers: list[tuple[str, float]] = []

    def has_data(self) -> bool:
        return bool(self._layers)

    def set_layers(self, layers: list[dict[str, Any]]) -> None:
        self._layers = [(short_layer(r["name"]), float(r["density"])) for r in layers]
        self.refresh()

    def draw(self, plt: Plot) -> None:
        names = [n for n, _ in self._layers]
        values = [d for _, d in self._layers]
        plt.bar(names, values, orientation="horizontal", width=0.5)
        plt.xlim(0, 1)

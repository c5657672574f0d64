"""Per-layer density of one run as horizontal bars, one text row per layer.

Text rows rather than a plotext bar chart: plotext draws one bar per canvas row and silently
drops bars when layers outnumber the rows (VGG16's 16 layers on an 80x24 terminal showed 11).
Here every layer has its row, with its name and value, and the list scrolls when it is long.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from prunetui.core.run.result import Layer
from prunetui.tui.widgets.fmt import short_layer


class DensityChart(VerticalScroll):
    """Bars of the fraction of weights kept in each layer."""

    TITLE = "Layer density"
    EMPTY = "pick a pruned run"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._layers: list[tuple[str, float]] = []

    def compose(self) -> ComposeResult:
        yield Static("", classes="density-bars")

    def on_mount(self) -> None:
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def has_data(self) -> bool:
        return bool(self._layers)

    def set_layers(self, layers: Sequence[Layer]) -> None:
        """Show these layers (``name`` and ``density`` of each), in order."""
        self._layers = [(short_layer(r.name), r.density) for r in layers]
        self._draw()

    def text(self) -> str:
        """The rows as plain text (what the widget shows, without colour)."""
        return "\n".join(f"{n} {d:.4f}" for n, d in self._layers)

    def _draw(self) -> None:
        if not self.is_mounted:
            return
        bars = self.query_one(".density-bars", Static)
        if not self._layers:
            bars.update(Text(f"{self.TITLE} — {self.EMPTY}", justify="center"))
            return
        name_width = max(len(n) for n, _ in self._layers)
        # name, a space, the bar, a space, 0.0000; and room for the scrollbar a long list
        # brings, so that its arrival does not wrap every row.
        width = max(4, self.size.width - name_width - 8 - self.styles.scrollbar_size_vertical)
        color = self.app.theme_variables.get("primary", "blue")
        rows = Text(no_wrap=True, overflow="crop")
        for i, (name, density) in enumerate(self._layers):
            full = round(min(max(density, 0.0), 1.0) * width)
            rows.append(f"{name:>{name_width}} ")
            rows.append("█" * full, style=color)
            rows.append("░" * (width - full), style="dim")
            rows.append(f" {density:.4f}" + ("\n" if i < len(self._layers) - 1 else ""))
        bars.update(Group(Text(self.TITLE, justify="center", style="bold"), rows))

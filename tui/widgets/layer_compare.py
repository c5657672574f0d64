"""Per-layer density of several pruners side by side at one compression: a row per layer, a
column per pruner (its name in its colour), as the exported per-layer density table and
figure compare them. The table scrolls both ways (VGG's 16 layers, ten pruners at 80 columns).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from prunetui.core.figures import COLLAPSE_MARK, pruner_name
from prunetui.core.run.result import Layer
from prunetui.tui.widgets.fmt import count, short_layer
from prunetui.tui.widgets.legend import term_style
from prunetui.tui.widgets.table import Table

EMPTY_MARK = "✕"  # a layer pruning emptied (density 0), as the exported figure marks it


@dataclass(frozen=True)
class PrunerLayers:
    """One pruner's run at the compression compared: its per-layer rows, whether it
    collapsed, and ``run_id`` (to say which run a column is)."""

    pruner: str
    layers: Sequence[Layer]
    collapsed: bool = False
    run_id: str = ""


def decimals(densities: Sequence[float], least: int = 4, significant: int = 3) -> int:
    """Decimals that show ``significant`` digits of the smallest non-zero density, and at
    least ``least`` (the exported table's four): at c = 3 four decimals would print 0.0010
    for every layer."""
    smallest = min((d for d in densities if d > 0), default=1.0)
    return max(least, significant - 1 - math.floor(math.log10(smallest)))


def kept_text(c: float) -> str:
    """'c=1 (keeps 10%)'."""
    return f"c={c:g} (keeps {100 * 10.0 ** -c:.3g}%)"


class LayerCompare(Vertical):
    """A title line and a table: layer, weights, then one density column per pruner."""

    DEFAULT_CSS = """
    LayerCompare {
        height: 1fr;
    }
    LayerCompare > .layer-compare--title {
        height: 1;
        text-style: bold;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    LayerCompare > Table {
        height: 1fr;
    }
    """
    TITLE = "Layer density by pruner"

    def __init__(self, *, empty: str = "no run to compare", id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.empty = empty
        self.compression: float | None = None
        self.columns: list[PrunerLayers] = []
        self.layer_names: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static(f"{self.TITLE} — {self.empty}", classes="layer-compare--title")
        table: Table[Text] = Table(cursor_type="row", zebra_stripes=True)
        yield table

    def show(self, compression: float | None, columns: Sequence[PrunerLayers],
             caption: str = "") -> None:
        """Compare ``columns`` (one per pruner, in the order given) at ``compression``;
        ``caption`` follows the title (e.g. the model and dataset)."""
        self.compression = compression
        self.columns = list(columns)
        names: list[str] = []
        for col in self.columns:
            names += [r.name for r in col.layers if r.name not in names]
        self.layer_names = names
        title = self.query_one(".layer-compare--title", Static)
        table: Table[Text] = self.query_one(Table)
        table.clear(columns=True)
        if compression is None or not self.columns:
            title.update(f"{self.TITLE} — {self.empty}")
            return
        title.update(" · ".join(part for part in (f"{self.TITLE} at {kept_text(compression)}",
                                                  caption) if part))
        table.add_column("Layer", key="layer")
        table.add_column(Text("Weights", justify="right"), key="weights")
        for col in self.columns:
            label = pruner_name(col.pruner) + (f" {COLLAPSE_MARK}" if col.collapsed else "")
            table.add_column(Text(label, style=term_style(col.pruner) + Style(bold=True),
                                  justify="right"), key=col.pruner)
        error = self.app.theme_variables.get("error", "red")
        digits = decimals([r.density for col in self.columns for r in col.layers])
        by_name = [{r.name: r for r in col.layers} for col in self.columns]
        for name in names:
            size = next(layers[name].params for layers in by_name if name in layers)
            cells = [Text(short_layer(name)), Text(count(size), justify="right")]
            for layers in by_name:
                row = layers.get(name)
                if row is None:
                    cells.append(Text("—", justify="right"))
                elif row.density <= 0:
                    cells.append(Text(f"0 {EMPTY_MARK}", style=error, justify="right"))
                else:
                    cells.append(Text(f"{row.density:.{digits}f}", justify="right"))
            table.add_row(*cells, key=name)

    def text(self) -> str:
        """The table as plain text: a header line, then a line per layer."""
        lines = [" ".join(["Layer", "Weights", *(pruner_name(c.pruner) for c in self.columns)])]
        table = self.query_one(Table)
        for key in table.rows:
            lines.append(" ".join(cell.plain if isinstance(cell, Text) else str(cell)
                                  for cell in table.get_row(key)))
        return "\n".join(lines)

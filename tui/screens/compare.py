"""Several stored runs side by side: accuracy curves and a summary table."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Static

from prunetui.core.store import RunRow, Store
from prunetui.tui.widgets.accuracy_chart import AccuracyChart
from prunetui.tui.widgets.fmt import pct, ratio, run_label
from prunetui.tui.widgets.key_bar import KeyBar
from prunetui.tui.widgets.table import Table


class CompareScreen(Screen[None]):
    """Curves of the given runs (one line each); escape goes back."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back"),
        Binding("backspace", "app.pop_screen", "Back", show=False)]

    def __init__(self, rows: list[RunRow], store: Store) -> None:
        super().__init__()
        self.rows = rows
        self.store = store

    def compose(self) -> ComposeResult:
        yield Static(f"Comparing {len(self.rows)} run{'s' * (len(self.rows) != 1)}",
                     id="compare-title")
        yield AccuracyChart(id="compare-chart")
        table: Table[str] = Table(id="compare-table", cursor_type="row")
        yield table
        yield KeyBar()

    def on_mount(self) -> None:
        chart = self.query_one(AccuracyChart)
        table = self.query_one(DataTable)
        for label in ("Run", "Config", "Status", "Top-1", "FLOPs"):
            table.add_column(label)
        for r in self.rows:
            try:
                epochs = self.store.epochs(r.run_id)
            except Exception:
                epochs = []
            label = f"{run_label(r.config)} s{r.seed}"
            chart.set_run(r.run_id, label,
                          {e.epoch: e.top1 for e in epochs
                           if e.phase == "train" and e.top1 is not None})
            table.add_row(r.run_id[:8], label, r.status, pct(r.top1), ratio(r.flop_ratio))

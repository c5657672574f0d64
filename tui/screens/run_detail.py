"""One stored run: summary, accuracy curve and epochs, per-layer table with histogram, config."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from prunetui.core.errors import StoreError
from prunetui.core.report import collapse_message
from prunetui.core.status import RunStatus
from prunetui.core.store import RunRow, Store
from prunetui.tui.widgets.accuracy_chart import AccuracyChart
from prunetui.tui.widgets.density_chart import DensityChart
from prunetui.tui.widgets.epoch_table import EpochTable
from prunetui.tui.widgets.fmt import cell_label, count, pct, ratio, run_label
from prunetui.tui.widgets.histogram_chart import HistogramChart
from prunetui.tui.widgets.key_bar import KeyBar
from prunetui.tui.widgets.table import FitTable


def summary(row: RunRow) -> str:
    """Two lines about a stored run."""
    first = f"{run_label(row.config)} · seed {row.seed} · {row.run_id} · {row.status}"
    if row.status == RunStatus.FINISHED:
        second = (f"top-1 {pct(row.top1)} · top-5 {pct(row.top5)} · density "
                  f"{row.density:.4f} · FLOP ratio {ratio(row.flop_ratio)}"
                  if row.density is not None else f"top-1 {pct(row.top1)}")
    elif row.status == RunStatus.RUNNING:
        second = f"at epoch {row.epoch}"
    else:
        error = (row.error or "").removesuffix("; run it again to resume")  # said below
        second = f"stopped after epoch {row.epoch}" + (f": {error}" if error else "")
        second += {RunStatus.FAILED: "; r runs it again",
                   RunStatus.DIVERGED: "; seeded, it would diverge again: change the lr or seed in "
                               "Configure, or delete it in Results (del)"
                   }.get(row.status, "; r resumes it")
    return f"{first}\n{second}"


class RunDetailScreen(Screen[None]):
    """A full screen for one run; escape goes back."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back"),
        Binding("backspace", "app.pop_screen", "Back", show=False),
        # This run, not the Configure tab's config: what "r resumes it" above promises.
        Binding("r", "resume", "Resume")]

    def __init__(self, row: RunRow, store: Store) -> None:
        super().__init__()
        self.row = row
        self.store = store
        self.hists: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Static(summary(self.row), id="detail-summary")
        yield Static("", id="detail-warning")
        with TabbedContent(id="detail-tabs"):
            with TabPane("Curve", id="detail-curve"), Horizontal():
                yield AccuracyChart(id="detail-acc")
                yield EpochTable(id="detail-epochs")
            with TabPane("Layers", id="detail-layers"), Horizontal():
                yield FitTable((("Layer", "layer"), ("Density", "density"),
                                ("FLOPs", "flops")), id="layer-table")
                with Vertical(classes="charts-v"):
                    yield HistogramChart(id="detail-hist")
                    yield DensityChart(id="detail-density")
            with TabPane("Config", id="detail-config"):
                yield Static(json.dumps(self.row.config, indent=1, sort_keys=True),
                             id="config-text")
        yield KeyBar()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "resume":
            if self.row.status in (RunStatus.FINISHED, RunStatus.RUNNING, RunStatus.DIVERGED):
                return False  # hidden: nothing to resume (a diverged run would diverge again)
            return None if getattr(self.app, "sweep_active", False) else True
        return True

    def action_resume(self) -> None:
        """Resume (or rerun) this unfinished run from its own stored config."""
        from prunetui.core.config import RunConfig
        from prunetui.core.errors import PrunetuiError

        try:
            config = RunConfig.from_dict(self.row.config)
        except (PrunetuiError, TypeError, ValueError) as e:
            self.notify(f"cannot read this run's config: {e}", severity="error")
            return
        start = getattr(self.app, "start_sweep", None)
        if start is not None:
            start([config])

    def on_mount(self) -> None:
        # Left/right switch Curve | Layers | Config straight away.
        self.query_one("#detail-tabs").query_one("ContentTabs").focus()
        row = self.row
        warning = collapse_message(row.result.collapse.to_dict()) if row.result else None
        w = self.query_one("#detail-warning", Static)
        w.update(f"⚠ {warning}" if warning else "")
        w.display = bool(warning)
        try:
            epochs = self.store.epochs(row.run_id)
            layers = self.store.layers(row.run_id)
        except Exception:
            epochs, layers = [], []
        if not layers and row.result:
            layers = list(row.result.layers)
        train = {r.epoch: r.top1 for r in epochs if r.phase == "train" and r.top1 is not None}
        self.query_one(AccuracyChart).set_run(row.run_id, cell_label(row.config), train)
        epoch_table = self.query_one(EpochTable)
        epoch_table.add_stored(epochs, {"train": int(row.config.get("post_epochs", 0)),
                                        "pretrain": int(row.config.get("pre_epochs", 0))})
        epoch_table.move_cursor(row=0)  # a finished run reads from its first epoch
        table = self.query_one("#layer-table", FitTable)
        for layer in layers:
            table.put_row(layer.name, (
                layer.name, f"{layer.density:.4f}",
                f"{count(layer.flops_pruned)}/{count(layer.flops_dense)}"))
        self.query_one(DensityChart).set_layers(layers)
        try:
            self.hists = self.store.histograms(row.run_id)
        except StoreError:  # missing or damaged: the layer view shows densities only
            self.hists = []
        if self.hists:
            self.query_one(HistogramChart).set_histogram(self.hists[0])

    @on(DataTable.RowHighlighted, "#layer-table")
    def _layer(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        name = event.row_key.value
        chosen = next((h for h in self.hists if h["layer"] == name), None)
        self.query_one(HistogramChart).set_histogram(chosen)

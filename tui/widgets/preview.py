"""The pruning preview: what the chosen pruner keeps of the chosen model at init, per layer."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from prunetui.core.config import RunConfig
from prunetui.core.report import collapse_message
from prunetui.core.run.result import Structure
from prunetui.tui.widgets.fmt import count, run_label
from prunetui.tui.widgets.table import FitTable


class PreviewPanel(Vertical):
    """Title, summary line, collapse warning and a per-layer table of one pruned-at-init model.

    While a new preview is computed (SynFlow on VGG16 takes seconds), the table of the last
    one is dimmed, and emptied when it is of another model or dataset: its rows say nothing
    about the new choice."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: RunConfig | None = None  # whose layers the table holds

    def compose(self) -> ComposeResult:
        yield Static("Preview", id="preview-title")
        yield Static("", id="preview-summary")
        yield Static("", id="preview-warning")
        # Essentials first: a narrow terminal shows the leading ones (the FLOPs totals are in
        # the summary above).
        yield FitTable((("Layer", "layer"), ("Density", "density"), ("Kept", "kept"),
                        ("FLOPs", "flops"), ("Shape", "shape")), id="preview-layers")

    def on_mount(self) -> None:
        self.border_title = "Preview at init"

    def _set(self, title: str, summary: str, warning: str = "", error: bool = False) -> None:
        self.query_one("#preview-title", Static).update(title)
        summary_w = self.query_one("#preview-summary", Static)
        summary_w.update(summary)
        summary_w.set_class(error, "-error")
        warn = self.query_one("#preview-warning", Static)
        warn.update(warning)
        warn.display = bool(warning)

    def show_pending(self, config: RunConfig, waiting: bool = False) -> None:
        """A preview of ``config`` is on its way: the table shown is stale from now."""
        table = self.query_one(FitTable)
        shown = self._shown
        if shown is not None and (shown.model, shown.dataset) != (config.model, config.dataset):
            table.clear()
            self._shown = None
        table.add_class("-stale")
        self._set(_title(config), "waiting for the run to start…" if waiting
                  else "pruning at init…")

    def show_error(self, config: RunConfig | None, message: str) -> None:
        self.query_one(FitTable).clear()
        self._shown = None
        self._set(_title(config) if config else "Preview", f"✗ {message}",
                  error=True)

    def show_info(self, config: RunConfig, info: Structure) -> None:
        params, flops = info.params, info.flops
        summary = (f"weights {count(params.remaining)}/{count(params.prunable)} "
                   f"· density {info.density:.4f}\n"
                   f"FLOPs {count(flops.pruned)}/{count(flops.dense)} "
                   f"· ratio {flops.ratio:.4f}")
        warning = collapse_message(info.collapse.to_dict()) or ""
        self._set(_title(config), summary, f"⚠ {warning}" if warning else "")
        table = self.query_one(FitTable)
        table.clear()
        table.remove_class("-stale")
        self._shown = config
        for layer in info.layers:
            table.put_row(layer.name, (
                layer.name, f"{layer.density:.4f}",
                f"{count(layer.remaining)}/{count(layer.params)}",
                f"{count(layer.flops_pruned)}/{count(layer.flops_dense)}",
                "×".join(str(d) for d in layer.shape)))


def _title(config: RunConfig) -> str:
    return f"{run_label(config)} · keeps {100 * config.density:.3g}%"

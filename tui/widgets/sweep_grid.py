"""The sweep grid: compression rows × pruner columns, filled with top-1 as runs finish."""

from __future__ import annotations

from rich.text import Text

from prunetui.core.catalog import PRUNERS, pruner_display
from prunetui.core.config import RunConfig
from prunetui.core.status import RunStatus
from prunetui.tui.widgets.table import Table

PENDING = "·"
MARKS = {RunStatus.CANCELLED: "cancelled", RunStatus.FAILED: "failed",
         RunStatus.REFUSED: "refused", RunStatus.DIVERGED: "diverged", RunStatus.OOM: "oom",
         RunStatus.INTERRUPTED: "stopped", RunStatus.ELSEWHERE: "elsewhere"}
# (theme colour variable, bold) per status.
STYLES = {RunStatus.RUNNING: ("accent", True), RunStatus.FINISHED: (None, True),
          RunStatus.CANCELLED: ("warning", False), RunStatus.FAILED: ("error", False),
          RunStatus.REFUSED: ("error", False), RunStatus.DIVERGED: ("error", False),
          RunStatus.OOM: ("error", False), RunStatus.ELSEWHERE: ("accent", False)}


class SweepGrid(Table[Text]):
    """One cell per (compression, pruner); the cursor picks a run to inspect."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="cell")
        self._runs: dict[tuple[float, str], str] = {}
        self._pruners: list[str] = []
        self._comps: list[float] = []

    def setup(self, configs: list[RunConfig]) -> None:
        """Lay out the grid for a sweep of ``configs``; every cell pending."""
        self.clear(columns=True)
        self._pruners = [p for p in PRUNERS if any(c.pruner == p for c in configs)]
        self._comps = sorted({c.compression for c in configs})
        self._runs = {(c.compression, c.pruner): c.run_id for c in configs}
        self.add_column("c", key="c")
        for p in self._pruners:
            self.add_column(pruner_display(p), key=p, width=max(9, len(pruner_display(p))))
        for c in self._comps:
            cells = [Text(PENDING if (c, p) in self._runs else "", justify="right")
                     for p in self._pruners]
            self.add_row(Text(f"{c:g}"), *cells, key=f"{c:g}")

    def set_cell(self, config: RunConfig, text: str, status: RunStatus) -> None:
        if config.pruner not in self._pruners or config.compression not in self._comps:
            return
        color, bold = STYLES.get(status, (None, False))
        parts = ["bold"] if bold else []
        if color and self.app.theme_variables.get(color):
            parts.append(self.app.theme_variables[color])
        self.update_cell(f"{config.compression:g}", config.pruner,
                         Text(text, style=" ".join(parts), justify="right"))

    def run_at_cursor(self) -> str | None:
        """The run id under the cursor, if the cursor is on a pruner column."""
        row, col = self.cursor_coordinate
        if col == 0 or row >= len(self._comps) or col > len(self._pruners):
            return None
        return self._runs.get((self._comps[row], self._pruners[col - 1]))

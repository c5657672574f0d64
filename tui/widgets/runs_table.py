"""The stored runs as a table; space marks runs (to compare or export several)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message

from prunetui.core.status import RunStatus
from prunetui.core.store import RunRow
from prunetui.tui.widgets.fmt import epochs, pct, pruner_name, ratio
from prunetui.tui.widgets.table import Table

COLUMNS = (("✓", "mark"), ("Run", "run"), ("Model", "model"), ("Data", "dataset"),
           ("Pruner", "pruner"), ("c", "compression"), ("Seed", "seed"), ("Ep", "epochs"),
           ("Status", "status"),
           ("Top-1", "top1"), ("FLOPs", "flop_ratio"))
STATUS_COLORS = {RunStatus.FINISHED: "success", RunStatus.RUNNING: "accent",
                 RunStatus.CANCELLED: "warning"}


class RunsTable(Table[Text]):
    """One row per stored run, keyed by run id; marked runs carry a ✓."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_mark", "Mark"),
        Binding("v", "compare", "Compare"),
    ]

    class CompareRequested(Message):
        """``v``: compare the marked runs (or the one under the cursor)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.marked: set[str] = set()
        self.shown: list[RunRow] = []

    def on_mount(self) -> None:
        for label, key in COLUMNS:
            self.add_column(label, key=key)

    def set_rows(self, rows: list[RunRow]) -> None:
        """Show ``rows`` in this order, keeping the cursor on the same run when it is there."""
        current = self.current_run_id()
        self.shown = list(rows)
        self.clear()
        vars = self.app.theme_variables
        for r in rows:
            color = vars.get(STATUS_COLORS.get(r.status, "error"), "")
            self.add_row(
                Text("✓" if r.run_id in self.marked else " "), Text(r.run_id[:8]),
                Text(r.model), Text(r.dataset), Text(pruner_name(r.pruner)),
                Text(f"{r.compression:g}", justify="right"), Text(str(r.seed), justify="right"),
                Text(epochs(r.config), justify="right"), Text(r.status, style=color),
                Text(pct(r.top1) + (" ‡" if r.collapsed else ""), justify="right"),
                Text(ratio(r.flop_ratio), justify="right"), key=r.run_id)
        if current is not None and current in self.rows:
            self.move_cursor(row=self.get_row_index(current))

    def current_run_id(self) -> str | None:
        if not self.shown or self.row_count == 0:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:
            return None
        return str(key.value) if key.value is not None else None

    def current_row(self) -> RunRow | None:
        rid = self.current_run_id()
        return next((r for r in self.shown if r.run_id == rid), None)

    def marked_rows(self) -> list[RunRow]:
        return [r for r in self.shown if r.run_id in self.marked]

    def action_toggle_mark(self) -> None:
        rid = self.current_run_id()
        if rid is None:
            return
        self.marked ^= {rid}
        self.update_cell(rid, "mark", Text("✓" if rid in self.marked else " "))

    def action_compare(self) -> None:
        self.post_message(self.CompareRequested())

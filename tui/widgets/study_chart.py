"""Top-1 against compression of stored runs, one model/dataset at a time: the Results tab's
chart (``g``) of the runs its filter shows.

Runs are pooled as the exported report pools them (``core.report``): a stored run whose config
now computes something else is left out, and a cell (pruner, compression) averages the finished
runs that agree on every setting but the seed, the others being left out. So each point is the
mean the report's accuracy table prints for that cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Static

from prunetui.core.status import RunStatus
from prunetui.core.store import RunRow
from prunetui.tui.widgets.legend import PrunerLegend
from prunetui.tui.widgets.top1_chart import Top1Chart, Top1Run


@dataclass
class Top1Group:
    """The runs of one model on one dataset, as the chart draws them."""

    model: str
    dataset: str
    runs: list[Top1Run] = field(default_factory=list)
    left_out: int = 0  # finished runs of a cell with other settings than the ones drawn
    unfinished: int = 0  # runs not finished (running, cancelled, failed...): no top-1

    @property
    def name(self) -> str:
        return f"{self.model}·{self.dataset}"


def top1_groups(rows: Sequence[RunRow]) -> tuple[list[Top1Group], int]:
    """``rows`` as one group per (model, dataset), sorted by name, and how many rows were
    left out as stale (stored by an older prunetui: ``report.is_current``)."""
    from prunetui.core.report import _cell, _top1, is_current

    current = [r for r in rows if is_current(r)]
    by_pair: dict[tuple[str, str], list[RunRow]] = {}
    for r in current:
        by_pair.setdefault((r.model, r.dataset), []).append(r)
    groups = []
    for (model, dataset), runs in sorted(by_pair.items()):
        group = Top1Group(model, dataset)
        cells: dict[tuple[str, float], list[RunRow]] = {}
        for r in runs:
            cells.setdefault((r.pruner, r.compression), []).append(r)
        by_id = {r.run_id: r for r in runs}
        for (pruner, c), cell_runs in cells.items():
            cell = _cell(cell_runs, _top1)
            group.runs += [Top1Run(rid, pruner, c, value, by_id[rid].collapsed)
                           for rid, value in zip(cell.run_ids, cell.values, strict=True)]
            done = [r for r in cell_runs if r.status == RunStatus.FINISHED
                    and r.result is not None]
            group.left_out += len(done) - len(cell.values)
            group.unfinished += len(cell_runs) - len(done)
        groups.append(group)
    return groups, len(rows) - len(current)


class StudyChart(Vertical, can_focus=True):
    """A heading naming the model/dataset shown, the chart, and its legend; ← → show the
    other models/datasets of the runs given."""

    DEFAULT_CSS = """
    StudyChart {
        height: 1fr;
    }
    StudyChart > .study-chart--heading {
        height: auto;
        max-height: 2;
    }
    StudyChart:focus > .study-chart--heading {
        text-style: bold;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("right", "step(1)", "Next model/data", key_display="→"),
        Binding("left", "step(-1)", "Previous model/data", key_display="←", show=False),
        Binding("escape", "close", "Table", show=False),
    ]

    class Closed(Message):
        """escape: back to the table."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.groups: list[Top1Group] = []
        self.stale = 0
        self.index = 0

    def compose(self) -> ComposeResult:
        yield Static("", classes="study-chart--heading")
        yield Top1Chart()
        yield PrunerLegend()

    def set_rows(self, rows: Sequence[RunRow]) -> None:
        """Chart ``rows``, keeping the model/dataset shown when they still have runs."""
        shown = self.group
        self.groups, self.stale = top1_groups(rows)
        names = [g.name for g in self.groups]
        self.index = names.index(shown.name) if shown and shown.name in names else 0
        self._draw()
        self.refresh_bindings()  # ← → only with other models/datasets to show

    @property
    def group(self) -> Top1Group | None:
        """The model/dataset shown."""
        return self.groups[self.index] if self.groups else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return len(self.groups) > 1 if action == "step" else True

    def action_step(self, by: int) -> None:
        if self.groups:
            self.index = (self.index + by) % len(self.groups)
            self._draw()

    def action_close(self) -> None:
        self.post_message(self.Closed())

    def _draw(self) -> None:
        chart = self.query_one(Top1Chart)
        group = self.group
        chart.set_runs(group.runs if group else [])
        self.query_one(PrunerLegend).set_entries(chart.pruners(), chart.notes())
        self.query_one(".study-chart--heading", Static).update(self.heading())

    def heading(self) -> str:
        """What is shown, out of what, and what was left out."""
        group = self.group
        if group is None:
            return "Top-1 vs compression — no run passes the filter" + self._stale_note()
        parts = [group.name]
        if len(self.groups) > 1:
            parts.append(f"{self.index + 1}/{len(self.groups)} (← → the others)")
        parts.append(f"{len(group.runs)} run{'s' * (len(group.runs) != 1)}")
        if group.left_out:
            parts.append(f"{group.left_out} with other settings left out (as in the report)")
        if group.unfinished:
            parts.append(f"{group.unfinished} unfinished")
        return " · ".join(parts) + self._stale_note()

    def _stale_note(self) -> str:
        return (f" · {self.stale} of an older prunetui left out" if self.stale else "")

"""Results: the store's runs in a table — filter, sort, open one, compare several, export.

``ResultsView`` is the Results tab of the main screen; opening a run pushes ``RunDetailScreen``
and comparing pushes ``CompareScreen``. Filtering and sorting are plain functions so they can
be tested without a terminal.
"""

from __future__ import annotations

import operator
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Checkbox, DataTable, Input, Label, Select, Static

from prunetui.core.catalog import PRUNERS, pruner_display
from prunetui.core.errors import PrunetuiError
from prunetui.core.status import RunStatus
from prunetui.core.store import RunRow, Store
from prunetui.tui.screens.compare import CompareScreen
from prunetui.tui.screens.run_detail import RunDetailScreen
from prunetui.tui.widgets.runs_table import RunsTable
from prunetui.tui.widgets.study_chart import StudyChart

# Filter keys: the row field each names, and whether it compares as a number.
_KEYS: dict[str, tuple[str, bool]] = {
    "model": ("model", False), "arch": ("model", False), "dataset": ("dataset", False),
    "data": ("dataset", False), "pruner": ("pruner", False), "status": ("status", False),
    "id": ("run_id", False), "run": ("run_id", False), "c": ("compression", True),
    "compression": ("compression", True), "seed": ("seed", True), "top1": ("top1", True),
    "epochs": ("epochs", True), "ep": ("epochs", True), "density": ("density", True),
    "flops": ("flop_ratio", True),
}
_TOKEN = re.compile(r"^([a-z][a-z0-9_-]*)(>=|<=|!=|=|>|<)(.*)$")
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "=": lambda a, b: abs(a - b) <= 1e-9, "!=": lambda a, b: abs(a - b) > 1e-9,
    ">": operator.gt, "<": operator.lt, ">=": operator.ge, "<=": operator.le}
HINT = "enter open · space mark · v compare · g chart · / filter · del delete"
CHART_HINT = "g or escape: the table · ← → other model/data · / filter: the chart follows it"
FILTER_HELP = ("model, dataset, pruner, status, id (= or !=); c, seed, top1, epochs (after "
               "pruning), density, flops (also > < >= <=); or plain words")


def _field(row: RunRow, field: str) -> Any:
    if field == "epochs":
        return row.config.get("post_epochs")
    return getattr(row, field)


def compile_filter(query: str) -> Callable[[RunRow], bool]:
    """A predicate for ``query``: every token must hold. ``key=value`` (or ``!=``, and
    ``> < >= <=`` for numeric keys, see ``FILTER_HELP``) or a word found in the run's id,
    names or status. A token still being typed (``c=``) is ignored. Raises ``ValueError``
    naming the bad token and the valid keys."""
    tests: list[Callable[[RunRow], bool]] = []
    for token in query.lower().split():
        m = _TOKEN.match(token)
        if m is None:
            tests.append(_word_test(token))
            continue
        key, op, value = m.groups()
        if key not in _KEYS:
            raise ValueError(f"unknown filter key {key!r}; keys: {FILTER_HELP}")
        if not value:
            continue
        field, numeric = _KEYS[key]
        if numeric:
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"{token}: {value!r} is not a number") from None
            tests.append(_number_test(field, _COMPARE[op], number))
            continue
        if op not in ("=", "!="):
            raise ValueError(f"{token}: {key} takes = or != only")
        tests.append(_text_test(field, value, negate=op == "!="))
    return lambda row: all(t(row) for t in tests)


def _word_test(word: str) -> Callable[[RunRow], bool]:
    return lambda row: word in _haystack(row)


def _number_test(field: str, compare: Callable[[float, float], bool],
                 number: float) -> Callable[[RunRow], bool]:
    def test(row: RunRow) -> bool:
        actual = _field(row, field)
        return actual is not None and compare(float(actual), number)
    return test


def _text_test(field: str, value: str, *, negate: bool) -> Callable[[RunRow], bool]:
    return lambda row: _text_match(row, field, value) != negate


def _haystack(row: RunRow) -> str:
    return " ".join([row.run_id, row.model, row.dataset, row.pruner,
                     pruner_display(row.pruner), row.status]).lower()


def _text_match(row: RunRow, field: str, value: str) -> bool:
    if field == "run_id":
        return row.run_id.startswith(value)
    if field == "pruner":
        return value in (row.pruner, pruner_display(row.pruner).lower())
    return str(_field(row, field)).lower() == value


SORTS: dict[str, tuple[str, Callable[[RunRow], Any], bool]] = {
    "newest": ("newest first", lambda r: (r.created, r.run_id), True),
    "oldest": ("oldest first", lambda r: (r.created, r.run_id), False),
    "top1": ("top-1, best first", lambda r: (r.top1 is not None, r.top1 or 0.0), True),
    "compression": ("compression", lambda r: (r.compression, list(PRUNERS).index(r.pruner)
                                              if r.pruner in PRUNERS else 99), False),
    "pruner": ("pruner", lambda r: (list(PRUNERS).index(r.pruner) if r.pruner in PRUNERS
                                    else 99, r.compression), False),
    "model": ("model, data", lambda r: (r.model, r.dataset, r.pruner, r.compression), False),
    "status": ("status", lambda r: (r.status, r.created), False),
    "flop_ratio": ("FLOP ratio", lambda r: (r.flop_ratio is None, r.flop_ratio or 0.0), False),
}
# Clicking a column header sorts by it.
_HEADER_SORT = {"run": "oldest", "model": "model", "dataset": "model", "pruner": "pruner",
                "compression": "compression", "seed": "oldest", "status": "status",
                "top1": "top1", "flop_ratio": "flop_ratio"}


def _stamp(path: Path) -> tuple[int, int]:
    """(mtime ns, size) of a file, (0, 0) when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


def sort_rows(rows: list[RunRow], key: str, reverse: bool = False) -> list[RunRow]:
    _, fn, descending = SORTS[key]
    return sorted(rows, key=fn, reverse=descending != reverse)


class ResultsView(Vertical):
    """Filter bar, runs table, export bar."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("g", "toggle_chart", "Chart"),
        Binding("ctrl+e", "export", "Export"),
        Binding("delete", "delete", "Delete", key_display="del"),
    ]
    WATCH_SECONDS = 2.0  # how often a shown Results tab looks for runs stored elsewhere

    def __init__(self, store: Callable[[], Store], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._store = store
        self.rows: list[RunRow] = []
        self._reverse = False
        self._stamp: tuple[tuple[int, int], ...] = ()

    def compose(self) -> ComposeResult:
        with Horizontal(id="results-bar"):
            yield Input(placeholder="filter: pruner=snip top1>90 or words",
                        id="filter", compact=True)
            yield Select([(label, key) for key, (label, _, _) in SORTS.items()],
                         value="oldest", allow_blank=False, compact=True, id="sort")
        yield RunsTable(id="runs")
        yield StudyChart(id="results-chart")
        with Horizontal(id="export-bar"):
            yield Label("Export to", id="export-label")
            # A real path, all of it selected when focused: typing replaces it.
            yield Input(str(Path.cwd() / "report"), id="export-path", compact=True,
                        select_on_focus=True)
            yield Checkbox("overwrite", id="export-force", compact=True)
            yield Button("Export", id="export", compact=True, variant="primary")
        yield Static(HINT, id="results-hint")

    def on_mount(self) -> None:
        self.query_one(StudyChart).display = False
        self._stamp = self._files()
        self.rows = self._read()
        self._redraw()
        self.set_interval(self.WATCH_SECONDS, self._watch)

    def _watch(self) -> None:
        """Reload when the store's files changed since the last read (a sweep in another
        shell, `prunetui rm`) and the tab is on screen; a stat of two files otherwise."""
        if self.is_on_screen and self._files() != self._stamp:
            self.reload()

    def _files(self) -> tuple[tuple[int, int], ...]:
        """(mtime, size) of the store's database and its write-ahead log."""
        try:
            db = self._store().db_path
        except PrunetuiError:
            return ()
        return (_stamp(db), _stamp(db.with_name(db.name + "-wal")))

    # -- data ------------------------------------------------------------------------------

    def reload(self) -> None:
        """Read the store again and redraw the table if anything changed (the tab reloads
        each time it is shown: rebuilding an unchanged table would only cost the switch)."""
        # Taken before reading, so any reload (a run ending here, a tab switch) spares the
        # watch a second read of the same state, and a write during the read is seen next.
        self._stamp = self._files()
        rows = self._read()
        if rows != self.rows:
            self.rows = rows
            self._redraw()

    def _read(self) -> list[RunRow]:
        try:
            return self._store().query()
        except PrunetuiError as e:
            self.notify(str(e), severity="error", title="Results store")
            return []

    def _filtered(self) -> tuple[list[RunRow], str]:
        """The runs the filter passes, in the chosen order, and what is wrong with the
        filter ("" if nothing; then no run passes)."""
        try:
            keep = compile_filter(self.query_one("#filter", Input).value)
        except ValueError as e:
            return [], str(e)
        key = str(self.query_one("#sort", Select).value)
        return sort_rows([r for r in self.rows if keep(r)], key, self._reverse), ""

    def _redraw(self) -> None:
        table = self.query_one(RunsTable)
        shown, problem = self._filtered()
        table.set_rows(shown)
        table.border_title = f"Runs {len(shown)}/{len(self.rows)}"
        self.query_one("#filter", Input).set_class(bool(problem), "-rejected")
        # The border has room for what is wrong; the line under the table, for the fix.
        if self.charting:
            self.query_one(StudyChart).set_rows(shown)
        hint = self.query_one("#results-hint", Static)
        hint.update(f"✗ {problem}" if problem else CHART_HINT if self.charting else HINT)
        hint.set_class(bool(problem), "-error")
        if problem:
            table.border_subtitle = f"✗ {problem.split(';')[0]}"
        elif table.marked:
            table.border_subtitle = f"{len(table.marked & {r.run_id for r in shown})} marked"
        elif not self.rows:
            table.border_subtitle = ("no runs yet: configure one (1) and press r, or use "
                                     "`prunetui run`")
        elif not shown:
            table.border_subtitle = "no run matches the filter"
        else:
            table.border_subtitle = ""

    # -- the chart -------------------------------------------------------------------------

    @property
    def charting(self) -> bool:
        """Whether the tab shows the top-1 chart of the filtered runs (else their table)."""
        return bool(self.query_one(StudyChart).display)

    def action_toggle_chart(self) -> None:
        """Table ↔ top-1 vs compression of the runs the filter shows, by model/dataset."""
        chart = not self.charting
        self.query_one(StudyChart).display = chart
        self.query_one(RunsTable).display = not chart
        self._redraw()
        (self.query_one(StudyChart) if chart else self.query_one(RunsTable)).focus()
        self.refresh_bindings()

    @on(StudyChart.Closed)
    def _chart_closed(self, event: StudyChart.Closed) -> None:
        event.stop()
        self.action_toggle_chart()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        # The hidden table would take the keys meant for the chart (the app focuses the
        # table on showing the tab, a filter's enter hands it the focus).
        if self.charting and event.widget is self.query_one(RunsTable):
            self.query_one(StudyChart).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Delete acts on the table's cursor and marks, out of view under the chart.
        return not (action == "delete" and self.charting)

    def export_rows(self) -> list[RunRow]:
        """The marked runs, or every run the filter shows."""
        table = self.query_one(RunsTable)
        return table.marked_rows() or table.shown

    # -- events ----------------------------------------------------------------------------

    @on(Input.Changed, "#filter")
    @on(Select.Changed, "#sort")
    def _refilter(self, event: Any) -> None:
        event.stop()
        if isinstance(event, Select.Changed):
            self._reverse = False
        self._redraw()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one(RunsTable).focus()

    @on(DataTable.HeaderSelected, "#runs")
    def _header(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        key = _HEADER_SORT.get(str(event.column_key.value))
        if key is None:
            return
        sort = self.query_one("#sort", Select)
        if sort.value == key:
            self._reverse = not self._reverse
            self._redraw()
        else:
            sort.value = key

    @on(DataTable.RowSelected, "#runs")
    def _open(self, event: DataTable.RowSelected) -> None:
        event.stop()
        row = next((r for r in self.rows if r.run_id == event.row_key.value), None)
        if row is not None:
            self.app.push_screen(RunDetailScreen(row, self._store()))

    @on(RunsTable.CompareRequested)
    def _compare(self, event: RunsTable.CompareRequested) -> None:
        event.stop()
        table = self.query_one(RunsTable)
        rows = table.marked_rows()
        if not rows and (current := table.current_row()) is not None:
            rows = [current]
        if not rows:
            self.notify("mark runs with space first", severity="warning")
            return
        self.app.push_screen(CompareScreen(rows, self._store()))

    def action_delete(self) -> None:
        """Delete the marked runs (or the one under the cursor), after asking."""
        table = self.query_one(RunsTable)
        rows = table.marked_rows() or ([r] if (r := table.current_row()) else [])
        if not rows:
            return
        live = [r.run_id for r in rows if r.status == RunStatus.RUNNING]
        if live:
            self.notify(f"{', '.join(live)} is running; cancel it first", severity="error",
                        title="Delete")
            return
        what = (f"run {rows[0].run_id}" if len(rows) == 1 else f"{len(rows)} runs")
        question = (f"Delete {what} with {'its' if len(rows) == 1 else 'their'} checkpoints "
                    "and histograms?\nThis cannot be undone.")

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            ids = [r.run_id for r in rows]
            try:
                self._store().remove(ids)
            except PrunetuiError as e:
                self.notify(str(e), severity="error", title="Delete")
                return
            table.marked -= set(ids)
            self.reload()
            self.notify(f"deleted {what}", title="Delete")

        from prunetui.tui.screens.confirm import ConfirmScreen

        self.app.push_screen(ConfirmScreen(question, yes="Delete", no="Keep"), answered)

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    @on(Button.Pressed, "#export")
    @on(Input.Submitted, "#export-path")
    def _export_pressed(self, event: Any) -> None:
        event.stop()
        self._start_export()

    def action_export(self) -> None:
        """ctrl+e: confirm (or change) the folder, then export."""
        from prunetui.tui.screens.path_prompt import PathScreen

        rows = self.export_rows()
        if not rows:
            self.notify("no runs to export (check the filter)", severity="warning",
                        title="Export")
            return
        field = self.query_one("#export-path", Input)

        def chosen(path: Path | None) -> None:
            if path is not None:
                field.value = str(path)
                self._start_export()

        self.app.push_screen(PathScreen(
            f"Export the report of {len(rows)} run{'s' * (len(rows) != 1)} to the folder:",
            field.value.strip() or str(Path.cwd() / "report"), "Export"), chosen)

    def _start_export(self) -> None:
        rows = self.export_rows()
        text = self.query_one("#export-path", Input).value.strip()
        if not text:
            self.notify("give a folder to export to", severity="error", title="Export")
            return
        if not rows:
            self.notify("no runs to export (check the filter)", severity="warning",
                        title="Export")
            return
        self.query_one("#export", Button).disabled = True
        self._export(rows, Path(text).expanduser(),
                     self.query_one("#export-force", Checkbox).value)

    @work(thread=True, exclusive=True, group="export", exit_on_error=False)
    def _export(self, rows: list[RunRow], out_dir: Path, force: bool) -> None:
        from prunetui.tui.export import export_report, nearest_compression

        # The reference's compressions (1 by architecture, 0.5 per layer) where the runs
        # have them, else the nearest they have, said in the toast.
        at, layers_at = nearest_compression(1.0, rows), nearest_compression(0.5, rows)
        notes = [f"{what} at c={got:g} (no run at {wanted:g})"
                 for what, wanted, got in (("accuracy by architecture", 1.0, at),
                                           ("per-layer tables", 0.5, layers_at))
                 if got != wanted]
        try:
            written = export_report(self._store(), rows, "md", out_dir, at=at,
                                    layers_at=layers_at, force=force) or []
        except PrunetuiError as e:
            msg = str(e).replace("pass --force to overwrite it", "tick overwrite to replace it")
            self.app.call_from_thread(self._export_done, None, msg)
        except Exception as e:
            self.app.call_from_thread(self._export_done, None, f"{type(e).__name__}: {e}")
        else:
            self.app.call_from_thread(self._export_done, written, "", len(rows), notes)

    def _export_done(self, written: list[Path] | None, error: str, runs: int = 0,
                     notes: list[str] | None = None) -> None:
        self.query_one("#export", Button).disabled = False
        if written is None:
            self.notify(error, severity="error", title="Export failed")
            return
        report = written[0]
        figures = len(written) - 1
        self.notify(f"wrote {report} ({runs} run{'s' * (runs != 1)})"
                    + (f" and {figures} figure{'s' * (figures != 1)}" if figures else "")
                    + "".join(f"; {n}" for n in notes or []),
                    title="Exported")

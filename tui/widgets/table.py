"""The app's table: Textual's ``DataTable``, with the widget's style looked up once per render.

Why: ``DataTable.render_line`` asks for ``self.rich_style`` on every line it draws, and that
property walks every ancestor's styles without a cache (~0.15-0.2 ms on the 2-core dev box). A
focus change clears the table's caches, and each tab switch moves the focus into the shown
tab's table, so a 32-line table spent 5-7 ms of a ~60 ms key → repaint on the same lookup
(bench/NOTES.md §5). The style cannot change within one render, so it is computed at its
start and forgotten at its end: never stale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self, TypeVar

from rich.style import Style
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import DataTable

Cell = TypeVar("Cell")


class Table(DataTable[Cell]):
    """A ``DataTable`` that draws all its lines of one render with one style lookup."""

    _render_style: Style | None = None

    @property
    def rich_style(self) -> Style:
        """The widget's style: the one fixed for the render in progress, if any."""
        style = self._render_style
        return style if style is not None else super().rich_style

    def render_lines(self, crop: Region) -> list[Strip]:
        self._render_style = super().rich_style
        try:
            return super().render_lines(crop)
        finally:
            self._render_style = None


class FitTable(Table[str]):
    """A table of text that shows as many of its columns as fit its width, in the order
    given (most important first), instead of cutting the last one off mid-value: on an
    80-column terminal a cell cut to "650/" reads as a wrong number, and a column whose
    header is cut to "To" as a mystery. Cells are kept for every column, so a wider
    terminal shows the hidden ones again."""

    def __init__(self, columns: Sequence[tuple[str, str]], *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._spec = list(columns)
        self._cells: dict[str, tuple[str, ...]] = {}
        self._widths = [len(label) for label, _ in self._spec]
        self._shown = 0

    def on_mount(self) -> None:
        self._refit(force=True)

    def on_resize(self) -> None:
        self._refit()

    def put_row(self, key: str, cells: Sequence[str]) -> None:
        """Add the row ``key``, or update its cells if it is there."""
        if len(cells) != len(self._spec):
            raise ValueError(f"{len(cells)} cells for {len(self._spec)} columns")
        self._cells[key] = tuple(cells)
        self._widths = [max(w, len(c)) for w, c in zip(self._widths, cells, strict=True)]
        if self._refit():
            return
        if key in self.rows:
            for (_, column), value in zip(self._spec[: self._shown], cells, strict=False):
                self.update_cell(key, column, value)
        else:
            self.add_row(*cells[: self._shown], key=key)

    def clear(self, columns: bool = False) -> Self:
        """Drop every row (the columns stay: they are the table's own)."""
        self._cells.clear()
        self._widths = [len(label) for label, _ in self._spec]
        return super().clear()

    def _fitting(self) -> int:
        """How many leading columns fit the width (at least one)."""
        room = self.content_size.width
        # The vertical scrollbar the rows will need once laid out (no resize event says so).
        if len(self._cells) + int(self.show_header) > self.content_size.height:
            room -= self.styles.scrollbar_size_vertical
        used = shown = 0
        for width in self._widths:
            used += width + 2 * self.cell_padding
            if shown and used > room:
                break
            shown += 1
        return shown

    def _refit(self, force: bool = False) -> bool:
        """Rebuild with the columns that fit, if that changed; return whether it rebuilt."""
        shown = self._fitting()
        if shown == self._shown and not force:
            return False
        row = self.cursor_row
        super().clear(columns=True)
        self._shown = shown
        for label, key in self._spec[:shown]:
            self.add_column(label, key=key)
        for key, cells in self._cells.items():
            self.add_row(*cells[:shown], key=key)
        if self.row_count:
            self.move_cursor(row=min(row, self.row_count - 1), animate=False)
        return True

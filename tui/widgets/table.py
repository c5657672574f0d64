"""The app's table: Textual's ``DataTable``, with the widget's style looked up once per render.

Why: ``DataTable.render_line`` asks for ``self.rich_style`` on every line it draws, and that
property walks every ancestor's styles without a cache (~0.15-0.2 ms on the 2-core dev box). A
focus change clears the table's caches, and each tab switch moves the focus into the shown
tab's table, so a 32-line table spent 5-7 ms of a ~60 ms key → repaint on the same lookup
(bench/NOTES.md §5). The style cannot change within one render, so it is computed at its
start and forgotten at its end: never stale.
"""

from __future__ import annotations

from typing import TypeVar

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

"""Each pruner's fixed terminal colour, and a legend of pruner names in those colours.

The legend is a widget of its own, under the charts it explains, rather than plotext's: plotext
draws its legend over the top-left of the canvas and cuts it when the chart is short (an 80×24
terminal showed none). This one wraps between entries, never inside a name, and grows a line
for each wrap, so every pruner shown is named at any width.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from plotext._dict import color_codes  # plotext's colour names → their ANSI numbers
from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.widget import Widget

from prunetui.core.catalog import PRUNER_TERM_COLOURS, PRUNERS, pruner_display

# plotext's name for "no colour" (the terminal's text colour): a pruner added to the catalog
# without a colour of its own is drawn in it, never in another pruner's.
NO_COLOUR = "default"
# What a line of the legend shows before each pruner's name.
SWATCH = "━━"


def term_colour(pruner: str) -> str:
    """The pruner's plotext colour in every chart of the app (``PRUNER_TERM_COLOURS``)."""
    return PRUNER_TERM_COLOURS.get(pruner, NO_COLOUR)


def term_style(pruner: str) -> Style:
    """The rich style of the pruner's colour: the ANSI colour plotext draws its lines in."""
    code = color_codes.get(term_colour(pruner))
    return Style(color=Color.from_ansi(code)) if code is not None else Style()


def catalog_order(pruners: Iterable[str]) -> list[str]:
    """``pruners`` once each, in the catalog's order, those not in it last (by name)."""
    present = set(pruners)
    known = [p for p in PRUNERS if p in present]
    return known + sorted(present - set(known))


def wrap_entries(widths: Sequence[int], width: int, gap: int = 2) -> list[list[int]]:
    """Indexes of entries of ``widths`` packed greedily into lines of ``width`` columns,
    ``gap`` apart; an entry wider than a line gets a line of its own."""
    lines: list[list[int]] = []
    used = 0
    for i, w in enumerate(widths):
        if lines and used + gap + w <= width:
            lines[-1].append(i)
            used += gap + w
        else:
            lines.append([i])
            used = w
    return lines


class PrunerLegend(Widget):
    """One entry per pruner (a coloured swatch and its name), then notes such as
    "‡ collapsed", on as many lines as the width needs."""

    DEFAULT_CSS = """
    PrunerLegend {
        height: auto;
        width: 1fr;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._pruners: list[str] = []
        self._notes: list[str] = []

    def set_entries(self, pruners: Iterable[str], notes: Sequence[str] = ()) -> None:
        """Name ``pruners`` (shown in the catalog's order) and then ``notes`` (dim)."""
        pruners, notes = catalog_order(pruners), list(notes)
        if (pruners, notes) != (self._pruners, self._notes):
            self._pruners, self._notes = pruners, notes
            self.refresh(layout=True)

    @property
    def pruners(self) -> list[str]:
        return list(self._pruners)

    def _entries(self) -> list[Text]:
        out = []
        for p in self._pruners:
            style = term_style(p)
            entry = Text(no_wrap=True)
            entry.append(SWATCH, style)
            entry.append(" ")
            entry.append(pruner_display(p), style + Style(bold=True))
            out.append(entry)
        out += [Text(note, style="dim", no_wrap=True) for note in self._notes]
        return out

    def _lines(self, width: int) -> list[Text]:
        entries = self._entries()
        lines = []
        for indexes in wrap_entries([e.cell_len for e in entries], max(1, width)):
            lines.append(Text("  ").join(entries[i] for i in indexes))
        return lines

    def text(self, width: int | None = None) -> str:
        """The legend as plain lines at ``width`` (default: its own)."""
        return "\n".join(line.plain for line in self._lines(width or self.size.width))

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self._lines(width)) if self._pruners or self._notes else 0

    def render(self) -> Text:
        return Text("\n").join(self._lines(self.size.width))

"""Four progress bars of a sweep: cells of the sweep, prune iterations, epochs, batches.

One widget draws all four as text. Built from Textual's ProgressBar (a Horizontal, two Labels
and a Bar per row) it was twenty widgets, and every one of them is laid out and rendered again
whenever the Run tab is shown: ~10 ms of a tab switch on a 2-core box (bench/NOTES.md §5).
"""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group
from rich.style import Style
from rich.text import Text
from textual.widget import Widget

BARS = (("sweep", "Sweep"), ("prune", "Prune"), ("epoch", "Epoch"), ("batch", "Batch"))
LABEL = 6  # columns of a bar's label
COUNT = 9  # columns of its "done/total" counter


def bar_text(width: int, fraction: float, done: Style, rest: Style) -> Text:
    """A ``width``-column bar filled to ``fraction`` (0-1) with half-cell resolution."""
    halves = round(max(0.0, min(1.0, fraction)) * width * 2)
    full, half = divmod(halves, 2)
    text = Text(end="")
    text.append("━" * full, done)
    if half:
        text.append("╸", done)
    text.append("━" * (width - full - half), rest)
    return text


class RunProgress(Widget):
    """A 2×2 grid of labelled progress bars with an 'n/total' counter each."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"run-progress--label", "run-progress--bar",
                                             "run-progress--complete"}

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._state: dict[str, tuple[float, float | None]] = {key: (0, 0) for key, _ in BARS}

    def set(self, key: str, done: float, total: float | None) -> None:
        """Set bar ``key`` to ``done`` of ``total`` (total 0 or None: nothing to do yet)."""
        if key not in self._state:
            raise KeyError(f"no progress bar {key!r}; bars: {', '.join(self._state)}")
        if self._state[key] != (done, total):
            self._state[key] = (done, total)
            self.refresh()

    def reset(self, *keys: str) -> None:
        for key in keys or [k for k, _ in BARS]:
            self.set(key, 0, 0)

    def value(self, key: str) -> tuple[float, float | None]:
        """(done, total) of bar ``key``."""
        return self._state[key]

    def counter(self, key: str) -> str:
        """The 'done/total' text of bar ``key`` ('' when it has nothing to do)."""
        done, total = self._state[key]
        return f"{done:g}/{total:g}" if total else ""

    def render(self) -> Group:
        label_style = self.get_component_rich_style("run-progress--label")
        bar = self.get_component_rich_style("run-progress--bar")
        complete = self.get_component_rich_style("run-progress--complete")
        # Textual's Bar look: the filled part in the colour, the rest as a track in the
        # background colour.
        track = Style(color=bar.bgcolor)
        width = self.size.width
        lines = []
        for row in (BARS[:2], BARS[2:]):
            line = Text(no_wrap=True, overflow="crop")
            for i, (key, label) in enumerate(row):
                cell = width // 2 if i == 0 else width - width // 2
                done, total = self._state[key]
                fraction = min(done, total) / total if total else 0.0
                filled = Style(color=(complete if fraction >= 1 else bar).color)
                line.append(label.ljust(LABEL)[:LABEL], label_style)
                line.append_text(bar_text(max(0, cell - LABEL - COUNT), fraction, filled,
                                          track))
                line.append(" " + self.counter(key).ljust(COUNT - 1))
            lines.append(line)
        return Group(*lines)

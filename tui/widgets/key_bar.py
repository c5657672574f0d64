"""The key bar: the screen's active key bindings on one line, clickable.

It does the job of Textual's ``Footer`` at a fraction of the cost. ``Footer`` recomposes a
widget per key every time the bindings change, which a focus change does: on each tab switch
that is twice 20-50 ms of widget creation and CSS matching plus a relayout on a 2-core box,
enough to push key-press → repaint past 100 ms (bench/NOTES.md §5). The key bar re-renders
one line of text, and only when the line changes.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import events
from textual.screen import Screen
from textual.widget import Widget

Entry = tuple[str, str, str, bool]  # (key, key as shown, description, enabled)
_PINNED = ("question_mark",)  # kept at the right end with the command palette


class KeyBar(Widget):
    """Active bindings with ``show=True`` as ``key description`` pairs; a disabled action
    (``check_action`` returned None) is shown dimmed; clicking a key presses it."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"key-bar--key", "key-bar--description",
                                             "key-bar--disabled"}

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._items: tuple[list[Entry], list[Entry]] = ([], [])
        self._spans: list[tuple[int, int, str]] = []  # (start, end, key) for clicks

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[object]) -> None:
        if not self.is_attached or screen is not self.screen:
            return
        items = self.items()
        if items != self._items:
            self._items = items
            self.refresh()

    def items(self) -> tuple[list[Entry], list[Entry]]:
        """What the bar shows: (key, key as shown, description, enabled) per binding, in
        binding order, and the entries pinned to its right end: help and the command
        palette, which stay in view when the others do not all fit."""
        app = self.app
        shown: list[Entry] = []
        pinned: list[Entry] = []
        seen: set[str] = set()
        for key, (_, binding, enabled, _tooltip) in self.screen.active_bindings.items():
            entry = (key, app.get_key_display(binding), binding.description, enabled)
            palette = key == app.COMMAND_PALETTE_BINDING and app.ENABLE_COMMAND_PALETTE
            # One entry per action (e.g. escape and backspace both "Back"): the first key.
            if not palette and (not binding.show or binding.action in seen):
                continue
            seen.add(binding.action)
            if palette or key in _PINNED:
                pinned.append(entry)
            else:
                shown.append(entry)
        return shown, pinned

    def render(self) -> Text:
        styles = {name: self.get_component_rich_style(f"key-bar--{name}")
                  for name in ("key", "description", "disabled")}
        shown, pinned = self._items
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        self._spans = []

        def width(entry: Entry) -> int:
            return len(entry[1]) + len(entry[2]) + 3  # " key description "

        def add(entry: Entry) -> None:
            key, display, description, enabled = entry
            start = len(text)
            text.append(f" {display} ", styles["key" if enabled else "disabled"])
            text.append(f"{description} ", styles["description" if enabled else "disabled"])
            self._spans.append((start, len(text), key))

        right = sum(width(e) for e in pinned) + (1 if pinned else 0)
        for entry in shown:
            if len(text) + width(entry) > self.size.width - right:
                break  # the rest would push help and the palette off the line
            add(entry)
        if pinned and self.size.width - len(text) >= right:
            text.append(" " * (self.size.width - len(text) - right))
            text.append("▏", styles["disabled"])
            for entry in pinned:
                add(entry)
        return text

    def key_at(self, x: int) -> str | None:
        """The key whose entry covers column ``x`` (None between entries)."""
        for start, end, key in self._spans:
            if start <= x < end:
                return key
        return None

    def on_click(self, event: events.Click) -> None:
        key = self.key_at(event.x)
        if key is not None:
            self.app.simulate_key(key)

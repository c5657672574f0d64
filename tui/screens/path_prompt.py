"""Asks for a file or folder path in a modal: opening or saving a sweep file, exporting."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingsMap
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from prunetui.tui.widgets.key_bar import KeyBar


class PathScreen(ModalScreen[Path | None]):
    """Dismisses with the typed path (enter / the action's button) or None (escape).

    The field starts with ``value``, all of it selected: typing replaces it, the arrow keys
    keep it and edit it."""

    def __init__(self, question: str, value: str, action: str) -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.action = action
        self._bindings = BindingsMap([Binding("escape", "cancel", "Cancel")])

    def compose(self) -> ComposeResult:
        with Vertical(id="path-box"):
            yield Static(self.question, id="path-question")
            yield Input(self.value, id="path-input", compact=True, select_on_focus=True)
            with Horizontal(id="path-buttons"):
                yield Button(f"{self.action} ⏎", id="path-ok", variant="primary", compact=True)
                yield Button("Cancel", id="path-cancel", compact=True)
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#path-input", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted, "#path-input")
    @on(Button.Pressed, "#path-ok")
    def _ok(self, event: Input.Submitted | Button.Pressed) -> None:
        event.stop()
        text = self.query_one("#path-input", Input).value.strip()
        self.dismiss(Path(text).expanduser() if text else None)

    @on(Button.Pressed, "#path-cancel")
    def _cancel(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

"""A yes/no question in a modal (quitting while a run is active)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingsMap
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from prunetui.tui.widgets.key_bar import KeyBar


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses with True (y / Yes) or False (n / escape / No)."""

    def __init__(self, question: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question = question
        self.yes = yes
        self.no = no
        # The key bar names the keys as the buttons do ("y Delete", not "y Yes").
        self._bindings = BindingsMap([
            Binding("y", "answer(True)", yes),
            Binding("n", "answer(False)", no),
            Binding("escape", "answer(False)", no, show=False)])

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(self.question, id="confirm-question")
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.yes} (y)", id="yes", variant="error", compact=True)
                yield Button(f"{self.no} (n)", id="no", compact=True)
        yield KeyBar()  # this screen's keys, over the main screen's

    def ask(self, question: str) -> None:
        """Change the question while it is shown (what it was about has changed)."""
        self.question = question
        self.query_one("#confirm-question", Static).update(question)

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

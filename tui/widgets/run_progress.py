"""Four progress bars of a sweep: cells of the sweep, prune iterations, epochs, batches."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Grid, Horizontal
from textual.widgets import Label, ProgressBar

BARS = (("sweep", "Sweep"), ("prune", "Prune"), ("epoch", "Epoch"), ("batch", "Batch"))


class RunProgress(Grid):
    """A 2×2 grid of labelled progress bars with an 'n/total' counter each."""

    def compose(self) -> ComposeResult:
        for key, label in BARS:
            with Horizontal(classes="progress-row", id=f"row-{key}"):
                yield Label(label, classes="progress-label")
                yield ProgressBar(total=1, show_eta=False, show_percentage=False,
                                  id=f"bar-{key}")
                yield Label("", classes="progress-count", id=f"count-{key}")

    def set(self, key: str, done: float, total: float | None) -> None:
        """Set bar ``key`` to ``done`` of ``total`` (total 0 or None: nothing to do yet)."""
        bar = self.query_one(f"#bar-{key}", ProgressBar)
        shown_total = total if total else 1
        bar.update(total=shown_total, progress=min(done, shown_total) if total else 0)
        self.query_one(f"#count-{key}", Label).update(
            f"{done:g}/{total:g}" if total else "")

    def reset(self, *keys: str) -> None:
        for key in keys or [k for k, _ in BARS]:
            self.set(key, 0, 0)

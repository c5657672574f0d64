"""The live table of the current run: one row per epoch as the engine reports it."""

from __future__ import annotations

from collections.abc import Sequence

from prunetui.core.run.result import Epoch
from prunetui.tui.widgets.table import FitTable

COLUMNS = (("Epoch", "epoch"), ("Train loss", "train_loss"), ("Test loss", "test_loss"),
           ("Top-1", "top1"), ("Top-5", "top5"), ("LR", "lr"))


class EpochTable(FitTable):
    """Epoch, losses, top-1, top-5 and lr of the run being trained (newest row followed)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(COLUMNS, id=id)

    def add_epoch(self, phase: str, epoch: int, epochs: int, train_loss: float,
                  test_loss: float, top1: float, top5: float, lr: float) -> None:
        label = f"{'pre ' if phase == 'pretrain' else ''}{epoch}/{epochs}"
        self.put_row(f"{phase}:{epoch}", (label, f"{train_loss:.4f}", f"{test_loss:.4f}",
                                          f"{top1:.2f}", f"{top5:.2f}", f"{lr:.3g}"))
        self.move_cursor(row=self.row_count - 1)

    def add_stored(self, rows: Sequence[Epoch], epochs: dict[str, int]) -> None:
        """Rows from the store (a resumed run's earlier epochs)."""
        for r in rows:
            self.add_epoch(r.phase, r.epoch, epochs.get(r.phase, r.epoch),
                           r.train_loss or 0.0, r.test_loss or 0.0, r.top1 or 0.0,
                           r.top5 or 0.0, r.lr or 0.0)

"""What flows out of the engine: small event dataclasses, and the cancel token that flows in.

The engine only knows an ``Emit`` callable. The console renders events as progress bars, the
TUI posts them as messages, the sweep driver forwards them across processes.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prunetui.core.errors import RunCancelled
from prunetui.core.status import RunStatus

if TYPE_CHECKING:
    from prunetui.core.run.result import RunResult


@dataclass(frozen=True)
class Event:
    """Base: every event names its run."""

    run_id: str


@dataclass(frozen=True)
class RunStarted(Event):
    config: dict[str, Any]
    # Where an interrupted run continues from its checkpoint: the phase ("pretrain" or
    # "train"; "" for a fresh start) and the epoch of it done (0 in "train": just pruned).
    resumed_phase: str = ""
    resumed_from_epoch: int = 0

    @property
    def resumed_after(self) -> str:
        """What a resumed run keeps, for a status line ("" when it starts afresh)."""
        return checkpoint_point(self.resumed_phase, self.resumed_from_epoch)


@dataclass(frozen=True)
class Checkpointed(Event):
    """A resume checkpoint was written: the run resumes after this point if it stops."""

    phase: str  # pretrain | train (epoch 0: just pruned)
    epoch: int

    @property
    def point(self) -> str:
        return checkpoint_point(self.phase, self.epoch)


def checkpoint_point(phase: str, epoch: int) -> str:
    """A checkpoint's place in a run, for a status line: "pre-training epoch 2", "pruning"
    (training's epoch 0), "epoch 3"; "" for no checkpoint."""
    if phase == "pretrain":
        return f"pre-training epoch {epoch}"
    if phase.startswith("round"):  # IMP's rounds before the last
        n = phase[5:]
        return f"IMP round {n} epoch {epoch}" if epoch else f"IMP round {n}'s pruning"
    if phase == "train":
        return f"epoch {epoch}" if epoch else "pruning"
    return ""


@dataclass(frozen=True)
class PhaseStarted(Event):
    phase: str  # load | pretrain | prune | train | measure
    total: int = 0  # steps in the phase (epochs, prune iterations), 0 when unknown


@dataclass(frozen=True)
class PruneStep(Event):
    iteration: int
    iterations: int
    density: float  # fraction of prunable weights kept after this step


@dataclass(frozen=True)
class BatchProgress(Event):
    phase: str
    epoch: int
    batch: int
    batches: int


@dataclass(frozen=True)
class EpochEnd(Event):
    phase: str  # pretrain | train
    epoch: int
    epochs: int
    train_loss: float
    test_loss: float
    top1: float
    top5: float
    lr: float
    seconds: float


@dataclass(frozen=True)
class RunWarning(Event):
    message: str
    # Slowest / fastest timed pass when the warning is that the machine was busy while the
    # run was timed (a sweep says so once, not once per run); None for other warnings.
    busy: float | None = None


@dataclass(frozen=True)
class RunFinished(Event):
    result: RunResult
    cached: bool = False  # True when the stored result of an earlier run was reported


@dataclass(frozen=True)
class RunFailed(Event):
    status: RunStatus  # a stored status: failed | cancelled | interrupted | diverged | oom
    error: str


Emit = Callable[[Event], None]


def ignore(_: Event) -> None:
    """An ``Emit`` that drops every event."""


class ProgressThrottle:
    """Thins progress events (batches, pruning steps) to one of each kind per ``interval``
    seconds, for a display or a queue that cannot take hundreds a second; the last batch of
    an epoch and the last step of the pruning always pass, and every other event."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[type, float] = {}

    def passes(self, event: Event) -> bool:
        """Whether ``event`` goes on (and, if it is progress, starts a new interval)."""
        if isinstance(event, BatchProgress):
            final = event.batch == event.batches
        elif isinstance(event, PruneStep):
            final = event.iteration == event.iterations
        else:
            return True
        now = time.monotonic()
        if not final and now - self._last.get(type(event), -math.inf) < self.interval:
            return False
        self._last[type(event)] = now
        return True


class CancelToken:
    """Set from any thread; the engine checks it between batches and pruning steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise ``RunCancelled`` if cancellation was requested."""
        if self._event.is_set():
            raise RunCancelled("cancelled")

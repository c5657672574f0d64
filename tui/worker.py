"""Glue between the engine (which runs in a worker thread) and the app (which owns the screen).

The engine only knows an ``Emit`` callable and a ``CancelToken``. Here the emit callable wraps
every engine event in a Textual ``Message`` and posts it to the app (``post_message`` is
thread-safe), throttling the very frequent batch and prune-step events so a fast CPU run can't
flood the message queue. Torch is imported lazily, inside the worker thread, so the app paints
its first frame without paying for it.

A sweep runs through the same ``SweepRunner`` as ``prunetui sweep`` (its in-process executor,
in this worker thread), so the app and the CLI run, skip, resume and report cells alike.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.message import Message

from prunetui.core import events as ev
from prunetui.core.config import RunConfig
from prunetui.core.errors import PrunetuiError
from prunetui.core.run.result import Structure
from prunetui.core.status import RunStatus
from prunetui.core.store import Store
from prunetui.core.sweep import CellOutcome, InProcess, SweepRunner

_THREADS_LOCK = threading.Lock()
_saved_threads: int | None = None
# Minimum seconds between two posted batch (or prune-step) events of one run; the last one of
# an epoch (or of the pruning) is always posted.
THROTTLE = 0.1

Post = Callable[[Message], Any]


class EngineEvent(Message):
    """An engine event, crossed over from the worker thread."""

    def __init__(self, event: ev.Event) -> None:
        super().__init__()
        self.event = event


class CellStarted(Message):
    """The sweep moved on to its ``index``-th cell (0-based) of ``total``."""

    def __init__(self, index: int, total: int, config: RunConfig) -> None:
        super().__init__()
        self.index = index
        self.total = total
        self.config = config


class CellDone(Message):
    """The sweep's ``index``-th cell (0-based) of ``total`` ended (finished, cached, cancelled
    or failed)."""

    def __init__(self, outcome: CellOutcome, index: int, total: int) -> None:
        super().__init__()
        self.outcome = outcome
        self.index = index
        self.total = total


class SweepDone(Message):
    """The worker ran (or gave up on) every cell."""

    def __init__(self, outcomes: list[CellOutcome], cancelled: bool) -> None:
        super().__init__()
        self.outcomes = outcomes
        self.cancelled = cancelled


class PreviewReady(Message):
    """``inspect`` finished for preview number ``serial``: ``info`` or ``error``."""

    def __init__(self, serial: int, config: RunConfig, info: Structure | None,
                 error: str = "") -> None:
        super().__init__()
        self.serial = serial
        self.config = config
        self.info = info
        self.error = error


class Throttled:
    """An ``Emit`` posting engine events as ``EngineEvent`` messages, rate-limiting progress."""

    def __init__(self, post: Post, interval: float = THROTTLE) -> None:
        self.post = post
        self._throttle = ev.ProgressThrottle(interval)

    def __call__(self, event: ev.Event) -> None:
        if self._throttle.passes(event):
            self.post(EngineEvent(event))


def default_torch_threads() -> int | None:
    """Torch threads for the app's engine work: every core but one, left to the UI (on a
    2-core SSH box torch's spinning threads otherwise starve the event loop and each other).
    None (leave torch alone) when the user chose with ``OMP_NUM_THREADS``."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return max(1, (os.cpu_count() or 2) - 1)


def freeze_gc() -> None:
    """Move every object alive now out of the cyclic collector's view.

    Called once the app has painted and again once the engine (torch) is imported: those
    objects live as long as the app, yet each full collection walks them all, a 50-90 ms stall
    of the UI thread every few seconds on a 2-core box (bench/NOTES.md §5). Frozen, they are
    still freed by reference counting; only cycles among them would outlive the app's use."""
    gc.freeze()


def unfreeze_gc() -> None:
    """Give frozen objects back to the collector (the app is closing; tests share the
    process)."""
    gc.unfreeze()


def load_engine(threads: int | None) -> None:
    """Import the engine (torch) in the calling worker thread, set torch's threads, and take
    the imported objects out of the UI's garbage-collection pauses."""
    import prunetui.core.run.engine  # noqa: F401  (the import is the point)

    limit_torch_threads(threads)
    freeze_gc()


def limit_torch_threads(threads: int | None) -> None:
    """Set torch's intra-op threads (remembering the old count for ``restore``)."""
    global _saved_threads
    if threads is None:
        return
    import torch

    with _THREADS_LOCK:
        if _saved_threads is None:
            _saved_threads = torch.get_num_threads()
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def restore_torch_threads() -> None:
    """Undo ``limit_torch_threads`` (when the app exits: tests share the process)."""
    global _saved_threads
    with _THREADS_LOCK:
        if _saved_threads is not None and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(_saved_threads)
        _saved_threads = None


def run_sweep(post: Post, configs: list[RunConfig], store: Store, data_dir: Path | None,
              cancel: ev.CancelToken, *, download: bool = True, threads: int | None = None,
              is_cancelled: Callable[[], bool] = lambda: False) -> list[CellOutcome]:
    """Run ``configs`` one after another in the calling (worker) thread, posting messages.

    Never raises: every failure becomes a ``CellDone`` with an error. A cancelled cell stops
    the sweep; a failed one moves on to the next cell."""
    total = len(configs)
    index = {c.run_id: i for i, c in enumerate(configs)}
    outcomes: list[CellOutcome] = []
    try:
        load_engine(threads)
    except Exception as e:  # a broken install must not take the app down
        msg = f"cannot load the engine: {type(e).__name__}: {e}"
        outcomes = [CellOutcome(c, RunStatus.FAILED, msg) for c in configs]
        for o in outcomes:
            post(CellDone(o, index[o.config.run_id], total))
        post(SweepDone(outcomes, False))
        return outcomes
    throttled = Throttled(post)

    def emit(event: ev.Event) -> None:
        if isinstance(event, ev.PhaseStarted | ev.EpochEnd):
            # What a run imports or builds lazily (torchvision, the optimizer's kernels, the
            # dataset) stays for the app's life too: out of the UI's collection pauses.
            freeze_gc()
        throttled(event)

    def done(o: CellOutcome) -> None:
        outcomes.append(o)
        post(CellDone(o, index[o.config.run_id], total))
        if o.status == RunStatus.CANCELLED:
            cancel.cancel()  # a cancelled cell stops the sweep

    def stop_if_asked(config: RunConfig) -> None:
        if is_cancelled():
            cancel.cancel()
        post(CellStarted(index[config.run_id], total, config))

    runner = SweepRunner(store.root, data_dir, download, InProcess(), emit=emit, cancel=cancel,
                         on_cell=done, on_start=stop_if_asked)
    try:
        runner.run(configs)
    except Exception as e:  # a bug: the cells not run are reported, the app stays up
        msg = f"{type(e).__name__}: {e}"
        for c in configs[len(outcomes):]:
            done(CellOutcome(c, RunStatus.FAILED, msg))
    post(SweepDone(outcomes, cancel.cancelled))
    return outcomes


class _PreviewCancelled(Exception):
    """Raised from the preview's emit callable to stop a superseded ``inspect`` early."""


def run_preview(post: Post, serial: int, config: RunConfig, data_dir: Path | None,
                is_cancelled: Callable[[], bool] = lambda: False,
                threads: int | None = None) -> None:
    """Build and prune ``config`` at init (no training, no download) and post the result."""
    if is_cancelled():
        return
    try:
        load_engine(threads)
        from prunetui.core.run.build import inspect

        def stop_if_superseded(_: ev.Event) -> None:
            # inspect() has no cancel token; its pruning steps report here, so a preview
            # nobody waits for any more (SynFlow: 100 steps) stops at the next step.
            if is_cancelled():
                raise _PreviewCancelled

        seen = inspect(config, data_dir=data_dir, download=False, emit=stop_if_superseded)
    except _PreviewCancelled:
        return
    except PrunetuiError as e:
        post(PreviewReady(serial, config, None, str(e)))
    except Exception as e:
        post(PreviewReady(serial, config, None, f"{type(e).__name__}: {e}"))
    else:
        post(PreviewReady(serial, config, seen.structure))

"""Glue between the engine (which runs in a worker thread) and the app (which owns the screen).

The engine only knows an ``Emit`` callable and a ``CancelToken``. Here the emit callable wraps
every engine event in a Textual ``Message`` and posts it to the app (``post_message`` is
thread-safe), throttling the very frequent batch and prune-step events so a fast CPU run can't
flood the message queue. Torch is imported lazily, inside the worker thread, so the app paints
its first frame without paying for it.

Torch's global RNG is shared by every thread of the process, and both ``experiment.run`` and
``experiment.inspect`` seed it before building the model (the only step that draws from it:
data order and pruning use their own generators). ``ENGINE_LOCK`` keeps a preview from
reseeding it between a run's seeding and its build, so a run started from the app gives the
same numbers as one started from the CLI. A run holds the lock until it reports
``RunStarted`` (or ends), so previews still work while it trains.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.message import Message

from prunetui.core import events as ev
from prunetui.core.config import RunConfig
from prunetui.core.errors import PrunetuiError, RunCancelled
from prunetui.core.report import collapse_message
from prunetui.core.store import RunRow, Store, failed_attempt_status

ENGINE_LOCK = threading.Lock()
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


@dataclass(frozen=True)
class CellOutcome:
    """How one cell of a sweep ended."""

    index: int
    config: RunConfig
    status: str  # finished | cached | cancelled | failed | diverged | oom | error
    result: dict[str, Any] | None = None
    error: str = ""


class CellDone(Message):
    """One cell of the sweep ended (finished, cached, cancelled or failed)."""

    def __init__(self, outcome: CellOutcome, total: int) -> None:
        super().__init__()
        self.outcome = outcome
        self.total = total


class SweepDone(Message):
    """The worker ran (or gave up on) every cell."""

    def __init__(self, outcomes: list[CellOutcome], cancelled: bool) -> None:
        super().__init__()
        self.outcomes = outcomes
        self.cancelled = cancelled


class PreviewReady(Message):
    """``experiment.inspect`` finished for preview number ``serial``: ``info`` or ``error``."""

    def __init__(self, serial: int, config: RunConfig, info: dict[str, Any] | None,
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


def load_engine(threads: int | None) -> Any:
    """Import the engine (torch) in the calling worker thread, set torch's threads, and take
    the imported objects out of the UI's garbage-collection pauses. Returns the module."""
    from prunetui.core import experiment

    limit_torch_threads(threads)
    freeze_gc()
    return experiment


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


class _HeldUntilStarted:
    """Holds ``ENGINE_LOCK`` from creation until the run says it started (or ended)."""

    def __init__(self) -> None:
        ENGINE_LOCK.acquire()
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            ENGINE_LOCK.release()

    def wrap(self, emit: ev.Emit) -> ev.Emit:
        def inner(event: ev.Event) -> None:
            if isinstance(event, ev.RunStarted | ev.RunFinished | ev.RunFailed):
                self.release()
            emit(event)

        return inner


def _row(store: Store, run_id: str) -> RunRow | None:
    try:
        return store.get(run_id)
    except PrunetuiError:
        return None


def run_sweep(post: Post, configs: list[RunConfig], store: Store, data_dir: Path | None,
              cancel: ev.CancelToken, *, download: bool = True, threads: int | None = None,
              is_cancelled: Callable[[], bool] = lambda: False) -> list[CellOutcome]:
    """Run ``configs`` one after another in the calling (worker) thread, posting messages.

    Never raises: every failure becomes a ``CellDone`` with an error. A cancelled cell stops
    the sweep; a failed one moves on to the next cell."""
    outcomes: list[CellOutcome] = []
    total = len(configs)
    cancelled = False
    try:
        experiment = load_engine(threads)
    except Exception as e:  # a broken install must not take the app down
        msg = f"cannot load the engine: {type(e).__name__}: {e}"
        outcomes = [CellOutcome(i, c, "error", error=msg) for i, c in enumerate(configs)]
        for o in outcomes:
            post(CellDone(o, total))
        post(SweepDone(outcomes, False))
        return outcomes
    throttled = Throttled(post)

    def emit(event: ev.Event) -> None:
        if isinstance(event, ev.PhaseStarted | ev.EpochEnd):
            # What a run imports or builds lazily (torchvision, the optimizer's kernels, the
            # dataset) stays for the app's life too: out of the UI's collection pauses.
            freeze_gc()
        throttled(event)

    for index, config in enumerate(configs):
        if cancel.cancelled or is_cancelled():
            cancelled = True
            break
        post(CellStarted(index, total, config))
        before = _row(store, config.run_id)
        lock = _HeldUntilStarted()
        try:
            result = experiment.run(config, store=store, data_dir=data_dir,
                                    download=download, emit=lock.wrap(emit),
                                    cancel=cancel)
        except RunCancelled:
            outcome = CellOutcome(index, config, "cancelled", error="cancelled by the user")
            cancelled = True
        except PrunetuiError as e:
            status = failed_attempt_status(before, _row(store, config.run_id), "error")
            outcome = CellOutcome(index, config, status, error=str(e))
        except Exception as e:
            status = failed_attempt_status(before, _row(store, config.run_id), "failed")
            outcome = CellOutcome(index, config, status, error=f"{type(e).__name__}: {e}")
        else:
            outcome = CellOutcome(index, config, "finished", result=result)
        finally:
            lock.release()
        outcomes.append(outcome)
        post(CellDone(outcome, total))
        if cancelled:
            break
    post(SweepDone(outcomes, cancelled))
    return outcomes


class _PreviewCancelled(Exception):
    """Raised from the preview's emit callable to stop a superseded ``inspect`` early."""


def run_preview(post: Post, serial: int, config: RunConfig, data_dir: Path | None,
                is_cancelled: Callable[[], bool] = lambda: False,
                threads: int | None = None) -> None:
    """Build and prune ``config`` at init (no training, no download) and post the result."""
    while not ENGINE_LOCK.acquire(timeout=0.2):
        if is_cancelled():
            return
    try:
        if is_cancelled():
            return
        experiment = load_engine(threads)

        def stop_if_superseded(_: ev.Event) -> None:
            # inspect() has no cancel token; its pruning steps report here, so a preview
            # nobody waits for any more (SynFlow: 100 steps) stops at the next step.
            if is_cancelled():
                raise _PreviewCancelled

        info = experiment.inspect(config, data_dir=data_dir, download=False,
                                  emit=stop_if_superseded)
        info["warning"] = collapse_message(info["collapse"])
    except _PreviewCancelled:
        return
    except PrunetuiError as e:
        post(PreviewReady(serial, config, None, str(e)))
    except Exception as e:
        post(PreviewReady(serial, config, None, f"{type(e).__name__}: {e}"))
    else:
        post(PreviewReady(serial, config, info))
    finally:
        ENGINE_LOCK.release()

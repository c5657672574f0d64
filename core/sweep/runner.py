"""Running a sweep's cells: in this process (jobs=1), in worker processes (jobs>1), or as tasks
on a Ray cluster (``executor="ray"``, ``core/sweep/ray.py``).

Each cell is an ordinary run with its own ``run_id``, so a re-run skips finished cells and
resumes unfinished ones from their checkpoints. Local workers are spawned processes (torch and
fork don't mix); they write to the store themselves — SQLite serialises concurrent writers — and
send their events back to the driver through a queue for the progress display. With Ray, cells
run on a cluster's nodes and the driver is the only writer of the store; Ray is imported only
then.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import signal
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunetui.core.config import RunConfig
from prunetui.core.errors import ConfigError, choices_message
from prunetui.core.events import CancelToken, Emit, Event, ProgressThrottle, ignore
from prunetui.core.sweep.cell import CellOutcome, run_cell

EXECUTORS = ("local", "ray")


@dataclass
class SweepRunner:
    """Runs a sweep's cells: in this process (jobs=1), in worker processes (jobs>1), or as
    tasks on a Ray cluster (executor="ray").

    The Ray fields (``ray_address`` … ``task_hook``) are used only with ``executor="ray"``;
    see ``core/sweep/ray.py``. Bad executor settings raise ``ConfigError`` on construction,
    including a missing Ray install."""

    store_root: Path
    data_dir: Path | None = None
    download: bool = True
    jobs: int = 1
    devices: list[str] = field(default_factory=list)
    emit: Emit = ignore
    cancel: CancelToken | None = None
    on_cell: Callable[[CellOutcome], None] | None = None
    executor: str = "local"
    # "auto", "HOST:PORT" (the head's GCS port, 6379 by default), or None: attach to the
    # cluster `ray start` made on this machine, else start a local one for this sweep.
    ray_address: str | None = None
    gpus_per_run: float = 0.0
    cpus_per_run: float = 1.0
    # Where tasks keep each run's checkpoint (a path every node can read and write);
    # None: the results dir.
    checkpoint_dir: Path | None = None
    # Retries of a task whose worker or node died; application errors are never retried.
    max_retries: int = 3
    # Called inside each Ray task with every engine event (runs on the worker, so it must be
    # picklable): instrumentation and fault-injection tests.
    task_hook: Callable[[Event], None] | None = None

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Refuse impossible executor settings with one line (a ``ConfigError``)."""
        if self.executor not in EXECUTORS:
            raise ConfigError(choices_message("executor", self.executor, list(EXECUTORS)))
        if self.executor != "ray":
            return
        if self.jobs != 1 or self.devices:
            raise ConfigError("--jobs and --devices are for --executor local; with --executor "
                              "ray the cluster's free resources decide how many runs run at "
                              "once (see --gpus-per-run and --cpus-per-run)")
        if not self.gpus_per_run >= 0:
            raise ConfigError(f"invalid --gpus-per-run {self.gpus_per_run!r}; it must be >= 0")
        if not self.cpus_per_run > 0:
            raise ConfigError(f"invalid --cpus-per-run {self.cpus_per_run!r}; it must be > 0")
        if self.max_retries < 0:
            raise ConfigError(f"invalid max retries {self.max_retries!r}; it must be >= 0")
        from prunetui.core.sweep.ray import require_ray

        require_ray()

    def run(self, configs: list[RunConfig]) -> list[CellOutcome]:
        """Run every cell; a failing cell is recorded and the sweep goes on."""
        if self.executor == "ray":
            from prunetui.core.sweep.ray import run_sweep

            return run_sweep(self, configs)
        if self.jobs <= 1:
            return [self._done(self._one(c, self.devices[0] if self.devices else None))
                    for c in configs if not self._stop()]
        return self._parallel(configs)

    def _stop(self) -> bool:
        return self.cancel is not None and self.cancel.cancelled

    def _done(self, outcome: CellOutcome) -> CellOutcome:
        if self.on_cell is not None:
            self.on_cell(outcome)
        return outcome

    def _one(self, config: RunConfig, device: str | None) -> CellOutcome:
        from prunetui.core.store import Store

        if device:
            config = config.with_(device=device)
        return run_cell(config, Store(self.store_root), self.data_dir, self.download,
                        self.emit, self.cancel)

    def _parallel(self, configs: list[RunConfig]) -> list[CellOutcome]:
        ctx = mp.get_context("spawn")
        # Plain queues and an event, not a Manager's: a Manager is one more process, which
        # a terminal's Ctrl-C would kill while the workers still report through it.
        events: Any = ctx.Queue()
        slots: Any = ctx.Queue()
        stop: Any = ctx.Event()
        devices = self.devices or [""]
        for i in range(self.jobs):
            slots.put(devices[i % len(devices)])
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        outcomes: list[CellOutcome] = []
        pool = ProcessPoolExecutor(self.jobs, mp_context=ctx, initializer=_worker_init,
                                   initargs=(slots, events, stop, threads))
        try:
            pending: dict[Future[CellOutcome], RunConfig] = {}
            todo = list(configs)
            while todo or pending:
                while todo and len(pending) < self.jobs and not self._stop():
                    cfg = todo.pop(0)
                    pending[pool.submit(_worker_run, cfg, str(self.store_root), self.data_dir,
                                        self.download)] = cfg
                if not pending:
                    break
                done, _ = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                self._drain(events)
                for fut in done:
                    cfg = pending.pop(fut)
                    try:
                        outcome = fut.result()
                    except Exception as e:  # a worker died (killed, out of memory)
                        outcome = CellOutcome(cfg, "failed", f"worker process died: {e}")
                    outcomes.append(self._done(outcome))
            self._drain(events)
        except BaseException:
            # Ctrl-C in a terminal reaches the workers too, but `kill -INT`, `timeout` or a
            # scheduler may signal this process only: pass it on, so that each worker stores
            # its run as interrupted (with its checkpoint) before the pool is shut down, and
            # a worker yet to start its run does not start it.
            stop.set()
            for child in mp.active_children():
                if child.pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child.pid, signal.SIGINT)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self._drain(events)
        return outcomes

    def _drain(self, events: Any) -> None:
        while True:
            try:
                event = events.get_nowait()
            except queue.Empty:
                return
            self.emit(event)


_worker_events: Any = None
_worker_device: str = ""
_worker_stop: Any = None
_worker_busy = False
_worker_interrupted = False
_worker_throttle = ProgressThrottle(1.0)


def _worker_init(slots: Any, events: Any, stop: Any, threads: int) -> None:
    global _worker_events, _worker_device, _worker_stop
    # Interrupts count only while a run is in progress: one that lands while the worker
    # starts (importing torch) or waits for work would end it with a traceback instead.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    import torch

    torch.set_num_threads(threads)
    events.cancel_join_thread()  # exiting must not wait on progress events nobody reads
    _worker_events = events
    _worker_stop = stop
    _worker_device = slots.get()


def _interrupt(signum: int, frame: Any) -> None:
    global _worker_interrupted
    # One interrupt is enough: the main process passes a terminal's Ctrl-C on again, and a
    # second one must not cut short the storing of the first. It is ignored here, not by
    # switching to SIG_IGN: a signal already pending when the handler becomes SIG_IGN makes
    # Python print "Signal 15 ignored due to race condition" with a traceback.
    if _worker_busy and not _worker_interrupted:
        _worker_interrupted = True
        raise KeyboardInterrupt


def _forward(event: Event) -> None:
    # Per-batch progress from several workers would flood the queue: one a second each.
    if _worker_throttle.passes(event):
        _worker_events.put(event)


def _worker_run(config: RunConfig, store_root: str, data_dir: Path | None,
                download: bool) -> CellOutcome:
    global _worker_busy
    from prunetui.core.store import Store

    if _worker_device:
        config = config.with_(device=_worker_device)
    _worker_busy = True
    try:
        if _worker_stop.is_set():  # the sweep was interrupted before this run started
            return CellOutcome(config, "cancelled", "the sweep was interrupted")
        return run_cell(config, Store(Path(store_root)), data_dir, download, _forward, None)
    finally:
        _worker_busy = False

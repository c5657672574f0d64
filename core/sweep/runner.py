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
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from prunetui.core.config import RunConfig
from prunetui.core.errors import ConfigError, RunCancelled, choices_message
from prunetui.core.events import CancelToken, Emit, Event, ProgressThrottle, RunWarning, ignore
from prunetui.core.status import RunStatus
from prunetui.core.sweep.cell import CellOutcome, run_cell
from prunetui.core.sweep.ray import RayCluster

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    """Runs a list of cells for a ``SweepRunner``: reports each outcome through
    ``sweep.report`` as it ends and starts no new cell once ``sweep.stopped``."""

    def check(self) -> None:
        """Refuse impossible settings with one line (a ``ConfigError``) before anything runs."""

    def run(self, sweep: SweepRunner, configs: list[RunConfig],
            wait: bool) -> list[CellOutcome]:
        """Run ``configs``; with ``wait``, a cell another process holds is waited for, else
        it ends as ``ELSEWHERE`` (the runner comes back to it)."""
        ...


@dataclass
class InProcess:
    """Cells one after another in the calling thread (the CLI's ``--jobs 1``, the app's
    worker thread)."""

    device: str | None = None  # overrides each cell's device

    def check(self) -> None:
        """Nothing can be wrong."""

    def run(self, sweep: SweepRunner, configs: list[RunConfig],
            wait: bool) -> list[CellOutcome]:
        from prunetui.core.store import Store

        store = Store(sweep.store_root)
        outcomes = []
        for config in configs:
            if sweep.stopped:
                break
            if self.device:
                config = config.with_(device=self.device)
            sweep.started(config)
            try:
                outcome = run_cell(config, store, sweep.data_dir, sweep.download, sweep.emit,
                                   sweep.cancel, wait=wait)
            except RunCancelled:
                # Stored as cancelled by the engine; the token now stops the sweep.
                outcome = CellOutcome(config, RunStatus.CANCELLED, "cancelled by the user")
            outcomes.append(sweep.report(outcome))
        return outcomes


@dataclass
class ProcessPool:
    """Cells in ``jobs`` spawned worker processes (``--jobs N``), each on the next of
    ``devices`` in turn; workers write to the store themselves and send their events back
    through a queue."""

    jobs: int
    devices: list[str] = field(default_factory=list)

    def check(self) -> None:
        """``jobs`` must be a positive count."""
        if self.jobs < 1:
            raise ConfigError(f"invalid --jobs {self.jobs}; it must be >= 1")

    def run(self, sweep: SweepRunner, configs: list[RunConfig],
            wait: bool) -> list[CellOutcome]:
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
                while todo and len(pending) < self.jobs and not sweep.stopped:
                    cfg = todo.pop(0)
                    sweep.started(cfg)
                    pending[pool.submit(_worker_run, cfg, str(sweep.store_root),
                                        sweep.data_dir, sweep.download, wait)] = cfg
                if not pending:
                    break
                done, _ = wait_for(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                _drain(events, sweep.emit)
                for fut in done:
                    cfg = pending.pop(fut)
                    try:
                        outcome = fut.result()
                    except Exception as e:  # a worker died (killed, out of memory)
                        outcome = CellOutcome(cfg, RunStatus.FAILED,
                                              f"worker process died: {e}")
                    outcomes.append(sweep.report(outcome))
            _drain(events, sweep.emit)
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
            _drain(events, sweep.emit)
        return outcomes


def make_executor(name: str = "local", jobs: int = 1, devices: list[str] | None = None, *,
                  ray_address: str | None = None, gpus_per_run: float = 0.0,
                  cpus_per_run: float = 1.0, checkpoint_dir: Path | None = None) -> Executor:
    """The executor ``sweep --executor NAME`` means: ``local`` runs in this process for one job
    and in a pool of worker processes for more; ``ray`` on a Ray cluster. Checked (one
    ``ConfigError`` line) before anything runs."""
    devices = devices or []
    if name not in EXECUTORS:
        raise ConfigError(choices_message("executor", name, list(EXECUTORS)))
    executor: Executor
    if name == "ray":
        if jobs != 1 or devices:
            raise ConfigError("--jobs and --devices are for --executor local; with --executor "
                              "ray the cluster's free resources decide how many runs run at "
                              "once (see --gpus-per-run and --cpus-per-run)")
        executor = RayCluster(ray_address, gpus_per_run, cpus_per_run, checkpoint_dir)
    elif jobs == 1:
        executor = InProcess(devices[0] if devices else None)
    else:
        executor = ProcessPool(jobs, devices)
    executor.check()
    return executor


@dataclass
class SweepRunner:
    """Runs a sweep's cells with an executor (in-process, worker processes, a Ray cluster),
    reporting each outcome (``on_cell``) and the engine's events (``emit``).

    A cell that another process holds right now (a second sweep over the same store, the app
    and a CLI sweep) is not failed: the runner goes on with the rest and comes back to it at
    the end, waiting for it then, so two identical sweeps share the cells instead of each
    training every one."""

    store_root: Path
    data_dir: Path | None = None
    download: bool = True
    executor: Executor = field(default_factory=InProcess)
    emit: Emit = ignore
    cancel: CancelToken | None = None
    on_cell: Callable[[CellOutcome], None] | None = None
    on_start: Callable[[RunConfig], None] | None = None  # a cell is about to run

    def __post_init__(self) -> None:
        self.executor.check()

    @property
    def stopped(self) -> bool:
        """Whether the sweep was cancelled: no new cell starts."""
        return self.cancel is not None and self.cancel.cancelled

    def started(self, config: RunConfig) -> None:
        """Called by executors as a cell starts."""
        if self.on_start is not None:
            self.on_start(config)

    def report(self, outcome: CellOutcome) -> CellOutcome:
        """Called by executors as a cell ends; a held cell is put off, not reported."""
        if outcome.status == RunStatus.ELSEWHERE:
            self.emit(RunWarning(outcome.config.run_id, f"run {outcome.config.run_id} is being "
                                 "run by another process; coming back to it after the rest"))
        elif self.on_cell is not None:
            self.on_cell(outcome)
        return outcome

    def run(self, configs: list[RunConfig]) -> list[CellOutcome]:
        """Run every cell; a failing cell is recorded and the sweep goes on."""
        first = self.executor.run(self, configs, wait=False)
        held = [o.config for o in first if o.status == RunStatus.ELSEWHERE]
        done = [o for o in first if o.status != RunStatus.ELSEWHERE]
        if held and not self.stopped:
            done += self.executor.run(self, held, wait=True)
        return done


def _drain(events: Any, emit: Emit) -> None:
    while True:
        try:
            event = events.get_nowait()
        except queue.Empty:
            return
        emit(event)


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
                download: bool, wait: bool) -> CellOutcome:
    global _worker_busy
    from prunetui.core.store import Store

    if _worker_device:
        config = config.with_(device=_worker_device)
    _worker_busy = True
    try:
        if _worker_stop.is_set():  # the sweep was interrupted before this run started
            return CellOutcome(config, RunStatus.CANCELLED, "the sweep was interrupted")
        return run_cell(config, Store(Path(store_root)), data_dir, download, _forward, None,
                        wait=wait)
    finally:
        _worker_busy = False

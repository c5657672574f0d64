"""Sweeps on a Ray cluster: every cell is a Ray task; the driver is the only writer of the store.

``SweepRunner(..., executor=RayCluster(...)).run(configs)`` lands here. Ray is an optional extra
(``pip install 'prunetui[ray]'``) and is imported only when this executor runs.

How a cell runs:

* The driver (the process the user started) skips cells its store has finished, then submits
  one task per remaining cell with ``num_cpus``/``num_gpus`` from the runner; Ray places them on
  the cluster's nodes as resources free up.
* A task runs ``engine.run`` unchanged against a private ``Store``: its SQLite file lives in
  a node-local temporary dir (SQLite's WAL does not work on network file systems), while its run
  dir — ``resume.pt``, ``final.pt``, ``histograms.json``, plus ``epochs.json`` (the epochs
  stored so far) and ``result.json`` (the finished record) — is ``<checkpoint_dir>/<run_id>/``.
  Put ``checkpoint_dir`` on storage every node can read and write, and a retry on any node
  resumes from the last checkpoint with its earlier epochs, exactly as a local run would.
* The private store relays its writes (run started, epoch recorded, epochs truncated on resume,
  run failed) and the engine's events to a small hub actor on the driver's node; the driver
  drains it a few times a second, applies the writes to the real store and forwards the events
  to the runner's ``emit`` (per-batch progress at most once a second per task).
* The task returns the result record with the artifacts (``final.pt`` bytes,
  ``histograms.json`` text); the driver makes the store's epochs equal the record's, writes the
  artifacts, calls ``finish_run`` and removes the task's checkpoint files.
* A worker or node that dies is a system failure: Ray retries the task (``max_retries``) and it
  resumes from the checkpoint. Application errors (bad config, divergence, out of memory, …)
  come back as the cell's status and are never retried; a task that keeps dying is stored as
  failed. Either way the sweep goes on.
* Data is loaded on each worker from ``data_dir`` as that node sees it (None: the node's
  ``$PRUNETUI_DATA`` or cache dir), never shipped through the driver.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunetui.core.config import RunConfig
from prunetui.core.errors import ConfigError
from prunetui.core.events import Event, ProgressThrottle, RunFailed, RunFinished
from prunetui.core.run.result import RunResult, Structure
from prunetui.core.status import RunStatus
from prunetui.core.store import Store, atomic_write_bytes, atomic_write_text
from prunetui.core.sweep.cell import CellOutcome, run_cell

if TYPE_CHECKING:
    from prunetui.core.sweep.runner import SweepRunner

INSTALL_HINT = "pip install 'prunetui[ray]'"
EPOCHS = "epochs.json"  # in a task's checkpoint dir: epochs stored so far
RESULT = "result.json"  # in a task's checkpoint dir: the finished run's record
# Engine artifact names (as in core/run/steps.py, not imported: it pulls in torch).
RESUME, FINAL, HISTOGRAMS = "resume.pt", "final.pt", "histograms.json"
POLL_SECONDS = 0.2
PROGRESS_EVENT_SECONDS = 1.0  # at most one batch (or pruning step) event a second per task
HUB_TIMEOUT_SECONDS = 60.0


def require_ray() -> Any:
    """The ``ray`` module, or a one-line ``ConfigError`` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray, which is not installed; install it with "
                          f"{INSTALL_HINT}") from None
    return ray


@dataclass
class RayCluster:
    """The executor ``--executor ray``: every cell a task on a Ray cluster's nodes."""

    # "auto", "HOST:PORT" (the head's GCS port, 6379 by default), or None: attach to the
    # cluster `ray start` made on this machine, else start a local one for this sweep.
    address: str | None = None
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

    def check(self) -> None:
        """Refuse impossible settings with one line, including a missing Ray install."""
        if not self.gpus_per_run >= 0:
            raise ConfigError(f"invalid --gpus-per-run {self.gpus_per_run!r}; it must be >= 0")
        if not self.cpus_per_run > 0:
            raise ConfigError(f"invalid --cpus-per-run {self.cpus_per_run!r}; it must be > 0")
        if self.max_retries < 0:
            raise ConfigError(f"invalid max retries {self.max_retries!r}; it must be >= 0")
        require_ray()

    def run(self, sweep: SweepRunner, configs: list[RunConfig],
            wait: bool) -> list[CellOutcome]:
        """Run ``configs`` as Ray tasks; outcomes in completion order. The driver is the only
        writer of the store, so no cell is held elsewhere (``wait`` changes nothing)."""
        ray = require_ray()
        owned = _connect(ray, self.address)
        try:
            _check_fits(ray, self)
            return _Driver(ray, sweep, self).run(configs)
        finally:
            if owned:
                ray.shutdown()


def _connect(ray: Any, address: str | None) -> bool:
    """Attach to (or start) the cluster; True when this call did it and must shut it down."""
    if ray.is_initialized():
        return False
    if address:
        _check_reachable(address)
    # ray.init replaces the SIGTERM handler with sys.exit; keep the caller's (the CLI turns
    # SIGTERM into KeyboardInterrupt so that runs are stored as interrupted).
    main = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main else None
    try:
        # Worker output would tear the live progress display; it stays in Ray's session logs.
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise _unreachable("start or reach", address, first) from None
    finally:
        if main and sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)
    return True


def _check_reachable(address: str) -> None:
    """Refuse a ``host:port`` (or ``ray://host:port``) nobody answers at, in seconds: given
    one, ray.init retries for minutes, printing warnings, before it gives up."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # an IPv6 address: [::1]:6379
    if not sep or not host or not port.isdigit():
        return  # "auto", or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise _unreachable("reach", address, e.strerror or type(e).__name__) from None


def _unreachable(what: str, address: str | None, why: str) -> ConfigError:
    where = f"at {address}" if address else "on this machine"
    return ConfigError(f"cannot {what} a Ray cluster {where}: {why}; start one with "
                       "`ray start --head` or check --ray-address")


def _check_fits(ray: Any, runner: RayCluster) -> None:
    """Refuse per-run resources no node has: such tasks would wait forever."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(r.get("CPU", 0) >= runner.cpus_per_run and r.get("GPU", 0) >= runner.gpus_per_run
           for r in nodes):
        return
    have = ", ".join(f"{r.get('CPU', 0):g} CPUs/{r.get('GPU', 0):g} GPUs" for r in nodes)
    raise ConfigError(f"no node of the Ray cluster has {runner.cpus_per_run:g} CPUs and "
                      f"{runner.gpus_per_run:g} GPUs for one run (nodes: {have or 'none'}); "
                      "lower --cpus-per-run/--gpus-per-run or add nodes")


# -- driver ------------------------------------------------------------------------------------


class _Hub:
    """A Ray actor on the driver's node: tasks put messages, the driver drains them in order."""

    def __init__(self) -> None:
        self._items: list[tuple[Any, ...]] = []

    def put(self, item: tuple[Any, ...]) -> None:
        self._items.append(item)

    def drain(self) -> list[tuple[Any, ...]]:
        items, self._items = self._items, []
        return items


class _Driver:
    """Submits the cells, applies the tasks' messages to the store, collects the outcomes."""

    def __init__(self, ray: Any, sweep: SweepRunner, cluster: RayCluster) -> None:
        self.ray = ray
        self.runner = sweep
        self.cluster = cluster
        self.store = Store(sweep.store_root)
        self.ckpt = Path(cluster.checkpoint_dir or sweep.store_root).absolute()
        self.cells: dict[str, RunConfig] = {}
        self.rows: set[str] = set()  # run ids known to have a row in the store
        self.held: dict[str, Event] = {}  # a run's last event, until its task's reply is in

    def run(self, configs: list[RunConfig]) -> list[CellOutcome]:
        outcomes: list[CellOutcome] = []
        todo: list[RunConfig] = []
        for cfg in configs:
            if self.runner.stopped:
                break
            row = self.store.get(cfg.run_id)
            if row is not None and row.status == RunStatus.FINISHED and row.result is not None:
                outcomes.append(self.runner.report(self._cached(cfg, row.result)))
            else:
                todo.append(cfg)
        if not todo or self.runner.stopped:
            return outcomes
        hub = self._start_hub()
        pending: dict[Any, RunConfig] = {}
        try:
            task = self.ray.remote(_cell_task)
            # System failures (a worker or node lost) are retried; a raised exception is not.
            opts = {"num_cpus": self.cluster.cpus_per_run,
                    "num_gpus": self.cluster.gpus_per_run,
                    "max_retries": self.cluster.max_retries, "retry_exceptions": False}
            data_dir = str(Path(self.runner.data_dir).absolute()) if self.runner.data_dir else None
            threads = max(1, int(self.cluster.cpus_per_run))
            for cfg in todo:
                self.cells[cfg.run_id] = cfg
                # Epochs a local run stored before its checkpoint, for a task resuming from it.
                stored = ([e.to_dict() for e in self.store.epochs(cfg.run_id)]
                          if self.store.get(cfg.run_id) else [])
                ref = task.options(name=f"prunetui-{cfg.run_id}", **opts).remote(
                    cfg, str(self.ckpt), data_dir, self.runner.download, hub, threads,
                    self.cluster.task_hook, stored)
                self.runner.started(cfg)
                pending[ref] = cfg
            while pending:
                if self.runner.stopped:
                    outcomes += self._abandon(pending, hub, RunStatus.CANCELLED,
                                              "cancelled by the user")
                    break
                done, _ = self.ray.wait(list(pending), num_returns=len(pending),
                                        timeout=POLL_SECONDS)
                self._drain(hub)  # a finished task's messages are all in the hub by now
                for ref in done:
                    outcomes.append(self.runner.report(self._collect(ref, pending.pop(ref))))
        except BaseException:  # Ctrl-C, SIGTERM, a store that cannot be written
            with contextlib.suppress(Exception):
                self._abandon(pending, hub, RunStatus.INTERRUPTED,
                              "interrupted (Ctrl-C or SIGTERM)")
            raise
        finally:
            with contextlib.suppress(Exception):
                self.ray.kill(hub)
        return outcomes

    def _start_hub(self) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = self.ray.get_runtime_context().get_node_id()
        return self.ray.remote(_Hub).options(
            num_cpus=0, max_concurrency=1,
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote()

    def _cached(self, cfg: RunConfig, result: RunResult) -> CellOutcome:
        if cfg.sweep:
            self.store.add_to_sweep(cfg.sweep, [cfg.run_id])
        self.runner.emit(RunFinished(cfg.run_id, result, cached=True))
        return CellOutcome(cfg, RunStatus.CACHED, result=result)

    def _drain(self, hub: Any) -> None:
        for msg in self.ray.get(hub.drain.remote()):
            self._apply(msg)

    def _apply(self, msg: tuple[Any, ...]) -> None:
        kind, run_id, *args = msg
        if run_id not in self.cells:
            return
        if kind == "start":
            config, sweep = args
            self.store.start_run(config, run_id, sweep)
            self.rows.add(run_id)
        elif kind == "epoch":
            row, train_epoch = args
            self._ensure_row(run_id)
            self.store.record_epoch(run_id, row, train_epoch)
        elif kind == "truncate":
            phase, after = args
            self._ensure_row(run_id)
            self.store.truncate_epochs(run_id, phase, after)
        elif kind == "pruned":
            (structure,) = args
            self._ensure_row(run_id)
            self.store.record_pruned(run_id, structure)
        elif kind == "fail":
            status, error = args
            self._ensure_row(run_id)
            self.store.fail_run(run_id, status, error)
        elif kind == "event":
            (event,) = args
            if isinstance(event, RunFinished | RunFailed):
                self.held[run_id] = event  # sent on once the store has the run's end
            else:
                self.runner.emit(event)

    def _ensure_row(self, run_id: str) -> None:
        if run_id in self.rows:
            return
        if self.store.get(run_id) is None:
            cfg = self.cells[run_id]
            self.store.start_run(cfg.to_dict(), run_id, cfg.sweep)
        self.rows.add(run_id)

    def _collect(self, ref: Any, cfg: RunConfig) -> CellOutcome:
        run_id = cfg.run_id
        try:
            reply = self.ray.get(ref)
        except self.ray.exceptions.RayError as e:
            cause = getattr(e, "cause", None)
            if isinstance(e, self.ray.exceptions.RayTaskError) and cause is not None:
                msg = f"{type(cause).__name__}: {cause}"  # raised in the task: not retried
            else:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                tries = self.cluster.max_retries + 1
                msg = (f"task failed {tries} time{'s' if tries > 1 else ''} (worker or node "
                       f"lost): {first}")
            self._ensure_row(run_id)
            self.store.fail_run(run_id, RunStatus.FAILED, msg)
            self._release(run_id, RunFailed(run_id, RunStatus.FAILED, msg), replace=True)
            return CellOutcome(cfg, RunStatus.FAILED, msg)
        status, error = RunStatus(reply["status"]), reply["error"]
        if status == RunStatus.FINISHED:
            result = RunResult.from_dict(reply["result"])
            self._store_finished(cfg, result, reply)
            self._release(run_id, RunFinished(run_id, result))
            return CellOutcome(cfg, status, result=result)
        # The relayed 'fail' already stored it, unless it failed before the run started
        # (bad input): then, as with a local run, nothing is stored.
        if run_id in self.rows and status.stored:
            self.store.fail_run(run_id, status, error)
        self._release(run_id, RunFailed(run_id, status, error))
        return CellOutcome(cfg, status, error)

    def _store_finished(self, cfg: RunConfig, result: RunResult,
                        reply: dict[str, Any]) -> None:
        run_id = cfg.run_id
        self._ensure_row(run_id)
        # e.g. rows past a checkpoint from a lost try
        if self.store.epochs(run_id) != list(result.epochs):
            self.store.truncate_epochs(run_id, "pretrain", 0)
            for row in result.epochs:
                self.store.record_epoch(run_id, row.to_dict(),
                                        row.epoch if row.phase == "train" else 0)
        run_dir = self.store.run_dir(run_id)
        atomic_write_text(run_dir / HISTOGRAMS, reply["histograms"])
        atomic_write_bytes(run_dir / FINAL, reply["final"])
        self.store.finish_run(run_id, result)
        self._clean(run_id)

    def _clean(self, run_id: str) -> None:
        """Remove a stored run's checkpoint files (best effort: the dir may not be mounted
        here)."""
        task_dir = self.ckpt / run_id
        run_dir = self.store.run_dir(run_id)
        with contextlib.suppress(OSError):
            if task_dir.resolve() != run_dir.resolve():
                shutil.rmtree(task_dir, ignore_errors=True)
            for name in (EPOCHS, RESULT, RESUME):
                (run_dir / name).unlink(missing_ok=True)

    def _release(self, run_id: str, fallback: Event, replace: bool = False) -> None:
        event = self.held.pop(run_id, None)
        self.runner.emit(fallback if replace or event is None else event)

    def _abandon(self, pending: dict[Any, RunConfig], hub: Any, status: RunStatus,
                 error: str) -> list[CellOutcome]:
        """Cancel the tasks still out; store the runs they started as ``status``."""
        refs = list(pending)
        for ref in refs:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref)
        with contextlib.suppress(Exception):
            self.ray.wait(refs, num_returns=len(refs), timeout=3.0)
        with contextlib.suppress(Exception):
            self._drain(hub)
        outcomes = []
        for cfg in pending.values():
            if cfg.run_id in self.rows:
                self.store.fail_run(cfg.run_id, status, error)
                self._release(cfg.run_id, RunFailed(cfg.run_id, status, error), replace=True)
            outcomes.append(self.runner.report(CellOutcome(cfg, status, error)))
        pending.clear()
        return outcomes


# -- inside a task -------------------------------------------------------------------------------


class _Relay:
    """A task's line to the driver: store writes (acknowledged) and engine events."""

    def __init__(self, hub: Any, hook: Callable[[Event], None] | None) -> None:
        import ray

        self._ray = ray
        self._hub = hub
        self._hook = hook
        self._throttle = ProgressThrottle(PROGRESS_EVENT_SECONDS)

    def op(self, *msg: Any) -> None:
        self._send(msg, wait=True)

    def emit(self, event: Event) -> None:
        if self._hook is not None:
            self._hook(event)
        if self._throttle.passes(event):
            self._send(("event", event.run_id, event), wait=False)

    def flush(self) -> None:
        """Wait until the hub has everything sent so far (calls from one caller run in order)."""
        self._send(("sync", ""), wait=True)

    def _send(self, msg: tuple[Any, ...], wait: bool) -> None:
        try:
            ref = self._hub.put.remote(msg)
            if wait:
                self._ray.get(ref, timeout=HUB_TIMEOUT_SECONDS)
        except self._ray.exceptions.RayError:
            # The driver is gone or unreachable: the run goes on, its state is in the
            # checkpoint dir and a re-run of the sweep picks it up.
            pass


class _TaskStore(Store):
    """A task's private store: SQLite in a node-local dir, the run dir on the checkpoint dir;
    its writes are mirrored to the checkpoint dir (epochs, result) and relayed to the driver."""

    def __init__(self, db_root: Path, run_dir: Path, relay: _Relay) -> None:
        super().__init__(db_root)
        self._dir = run_dir
        self._relay = relay

    def run_dir(self, run_id: str) -> Path:
        return self._dir

    def resume_state(self, config: RunConfig, stored: list[dict[str, Any]]) -> None:
        """Bring back the epochs stored before the checkpoint this try resumes from: an
        earlier try's (on any node), else the driver's (``stored``: a local run's)."""
        if not (self._dir / RESUME).exists():
            return
        try:
            saved = json.loads((self._dir / EPOCHS).read_text())
            rows = saved["epochs"] if saved.get("run_id") == config.run_id else stored
        except (OSError, ValueError, AttributeError, KeyError):
            rows = stored
        if not rows:
            return
        super().start_run(config.to_dict(), config.run_id, config.sweep)
        for row in rows:
            super().record_epoch(config.run_id, row,
                                 row["epoch"] if row["phase"] == "train" else 0)

    def _save_epochs(self, run_id: str) -> None:
        atomic_write_text(self._dir / EPOCHS, json.dumps(
            {"run_id": run_id, "epochs": [e.to_dict() for e in self.epochs(run_id)]}))

    def start_run(self, config: dict[str, Any], run_id: str, sweep: str = "") -> None:
        super().start_run(config, run_id, sweep)
        self._relay.op("start", run_id, config, sweep)

    def record_epoch(self, run_id: str, row: dict[str, Any], train_epoch: int) -> None:
        # The engine records an epoch before it checkpoints it; saving the rows here keeps
        # that order on the checkpoint dir, and the acknowledged relay keeps it at the driver.
        super().record_epoch(run_id, row, train_epoch)
        self._save_epochs(run_id)
        self._relay.op("epoch", run_id, row, train_epoch)

    def truncate_epochs(self, run_id: str, phase: str, after: int) -> None:
        super().truncate_epochs(run_id, phase, after)
        self._save_epochs(run_id)
        self._relay.op("truncate", run_id, phase, after)

    def record_pruned(self, run_id: str, structure: Structure) -> None:
        super().record_pruned(run_id, structure)
        self._relay.op("pruned", run_id, structure)

    def fail_run(self, run_id: str, status: RunStatus, error: str) -> None:
        super().fail_run(run_id, status, error)
        self._relay.op("fail", run_id, status, error)

    def finish_run(self, run_id: str, result: RunResult) -> None:
        # The artifacts are written by now; a reply lost after this point costs no rerun.
        atomic_write_text(self._dir / RESULT,
                          json.dumps({"run_id": run_id, "result": result.to_dict()}))
        super().finish_run(run_id, result)


def _finished(task_dir: Path, run_id: str) -> RunResult | None:
    """The result of a run an earlier try finished but the driver did not store."""
    try:
        saved = json.loads((task_dir / RESULT).read_text())
        if (not isinstance(saved, dict) or saved.get("run_id") != run_id
                or not (task_dir / FINAL).exists() or not (task_dir / HISTOGRAMS).exists()):
            return None
        return RunResult.from_dict(saved["result"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _cell_task(config: RunConfig, checkpoint_dir: str, data_dir: str | None, download: bool,
               hub: Any, threads: int, hook: Callable[[Event], None] | None,
               stored: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell, run on a worker; application errors come back as a status, not raised."""
    import torch

    torch.set_num_threads(threads)
    run_id = config.run_id
    task_dir = Path(checkpoint_dir) / run_id
    relay = _Relay(hub, hook)
    try:
        earlier = _finished(task_dir, run_id)
        if earlier is not None:
            relay.emit(RunFinished(run_id, earlier))
            result = earlier.to_dict()
        else:
            with tempfile.TemporaryDirectory(prefix=f"prunetui-{run_id}-") as tmp:
                store = _TaskStore(Path(tmp), task_dir, relay)
                store.resume_state(config, stored)
                outcome = run_cell(config, store, Path(data_dir) if data_dir else None,
                                   download, relay.emit, None)
                row = store.get(run_id)
            if not outcome.status.ok or row is None or row.result is None:
                status = outcome.status if not outcome.status.ok else RunStatus.FAILED
                return {"status": str(status),
                        "error": outcome.error or "the run did not finish"}
            result = row.result.to_dict()
        return {"status": "finished", "error": "", "result": result,
                "final": (task_dir / FINAL).read_bytes(),
                "histograms": (task_dir / HISTOGRAMS).read_text()}
    finally:
        relay.flush()

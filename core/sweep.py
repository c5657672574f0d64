"""Sweeps: a grid of runs with shared settings and per-pruner overrides, run in order, in
worker processes, or as tasks on a Ray cluster; resumable by re-running the same sweep.

Each cell is an ordinary run with its own ``run_id``, so a re-run skips finished cells and
resumes unfinished ones from their checkpoints. Local workers are spawned processes (torch and
fork don't mix); they write to the store themselves — SQLite serialises concurrent writers — and
send their events back to the driver through a queue for the progress display. With
``executor="ray"`` (``core/ray_executor.py``) cells run on a cluster's nodes and the driver is
the only writer of the store; Ray is imported only then.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing as mp
import os
import queue
import signal
import tomllib
import typing
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from prunetui.core import catalog
from prunetui.core.config import RunConfig
from prunetui.core.errors import ConfigError, PrunetuiError, choices_message
from prunetui.core.events import CancelToken, Emit, Event, ProgressThrottle, ignore

GRID_KEYS = ("models", "datasets", "pruners", "compressions", "seeds")
_GRID_FIELD = {"models": "model", "datasets": "dataset", "pruners": "pruner",
               "compressions": "compression", "seeds": "seed"}
# Settings a sweep shares; grid fields and labels are set per cell.
SETTING_NAMES = tuple(f.name for f in fields(RunConfig)
                      if f.name not in set(_GRID_FIELD.values()) | {"sweep"})


@dataclass
class SweepSpec:
    """A grid (lists per axis), shared settings, and per-pruner setting overrides."""

    models: list[str]
    datasets: list[str]
    pruners: list[str]
    compressions: list[float]
    seeds: list[int] = field(default_factory=lambda: [1])
    settings: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    name: str = ""

    def label(self) -> str:
        """The sweep's name: given, or made from its models and datasets."""
        return self.name or "-".join([*self.models, *self.datasets])

    def configs(self) -> list[RunConfig]:
        """Every cell of the grid as a validated RunConfig, in grid order, without repeats."""
        for pruner in self.overrides:
            if pruner not in catalog.PRUNERS:
                raise ConfigError(choices_message("pruner in override", pruner,
                                                  list(catalog.PRUNERS)))
        out: list[RunConfig] = []
        seen: set[str] = set()
        for model, dataset, pruner, c, seed in itertools.product(
                self.models, self.datasets, self.pruners, self.compressions, self.seeds):
            kw = {**self.settings, **self.overrides.get(pruner, {})}
            cfg = RunConfig(model=model, dataset=dataset, pruner=pruner, compression=c,
                            seed=seed, sweep=self.label(), **kw).validate()
            if cfg.run_id not in seen:
                seen.add(cfg.run_id)
                out.append(cfg)
        # Settings for a pruner the grid does not run are checked all the same: a bad value
        # there is a mistake whether or not the pruner runs today.
        for pruner in sorted(set(self.overrides) - set(self.pruners)):
            for model, dataset in itertools.product(self.models, self.datasets):
                try:
                    RunConfig(model=model, dataset=dataset, pruner=pruner,
                              **{**self.settings, **self.overrides[pruner]}).validate()
                except ConfigError as e:
                    raise ConfigError(f"settings for {pruner} (not in the grid): {e}") from None
        return out


def coerce(key: str, value: Any) -> Any:
    """Check and convert one setting's value to its RunConfig field type (from --set or TOML)."""
    axis = next((a for a, f in _GRID_FIELD.items() if f == key), None)
    if axis:  # --set cannot change one: each has its own option
        raise ConfigError(f"{key!r} is an axis of the grid, not a setting: use --{axis} "
                          f"(grid.{axis} in a sweep file)")
    if key not in SETTING_NAMES:
        raise ConfigError(choices_message("setting", key, list(SETTING_NAMES)))
    hint = typing.get_type_hints(RunConfig)[key]
    text = isinstance(value, str)
    try:
        if hint is bool:
            if text and value.lower() in ("true", "1", "yes", "false", "0", "no"):
                return value.lower() in ("true", "1", "yes")
            if isinstance(value, bool):
                return value
            raise ValueError
        if hint is int or hint == (int | None):
            if isinstance(value, bool) or (not text and not isinstance(value, int)):
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is str:
            if not text:
                raise ValueError
            return value
        if hint == tuple[int, ...]:
            items = value.split(",") if text else value
            if not isinstance(items, list | tuple):
                raise ValueError
            return tuple(int(v) for v in items if str(v).strip())
    except (TypeError, ValueError):
        pass
    kind = _KINDS.get(hint, getattr(hint, "__name__", str(hint)))
    raise ConfigError(f"invalid value {value!r} for setting {key!r}; expected {kind}")


# How each setting type is written on the command line (and in TOML), in words.
_KINDS: dict[Any, str] = {
    bool: "true or false", int: "an integer", int | None: "an integer", float: "a number",
    str: "text", tuple[int, ...]: "comma-separated integers, e.g. 50,75 (or a TOML list)",
}


def parse_sets(items: list[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``--set key=value`` (shared) and ``--set pruner.key=value`` (per pruner) options."""
    shared: dict[str, Any] = {}
    per: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"invalid --set {item!r}; write KEY=VALUE or PRUNER.KEY=VALUE")
        key, value = (s.strip() for s in item.split("=", 1))
        key = key.replace("-", "_")
        if "." in key:
            pruner, key = key.split(".", 1)
            if pruner not in catalog.PRUNERS:
                raise ConfigError(choices_message("pruner in --set", pruner,
                                                  list(catalog.PRUNERS)))
            per.setdefault(pruner, {})[key] = coerce(key, value)
        else:
            shared[key] = coerce(key, value)
    return shared, per


def load_toml(path: Path) -> SweepSpec:
    """A sweep file: ``name``, ``[grid]`` lists, ``[settings]``, ``[pruner.NAME]`` tables."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"sweep file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"sweep file {path} is not valid TOML: {e}") from None
    allowed = {"name", "grid", "settings", "pruner"}
    for key in data:
        if key not in allowed:
            raise ConfigError(choices_message(f"table in {path.name}", key, sorted(allowed)))
    grid = data.get("grid", {})
    if not isinstance(grid, dict):
        raise ConfigError(f"[grid] in {path} must be a table")
    for key, value in grid.items():
        if key not in GRID_KEYS:
            raise ConfigError(choices_message(f"grid key in {path.name}", key, list(GRID_KEYS)))
        if not isinstance(value, list) or not value:
            raise ConfigError(f"grid.{key} in {path} must be a non-empty list")
    for key in ("models", "datasets", "pruners", "compressions"):
        if key not in grid:
            raise ConfigError(f"{path} has no grid.{key}; a sweep needs {', '.join(GRID_KEYS[:4])}")
    settings = {k: coerce(k, v) for k, v in _table(data, "settings", path).items()}
    overrides = {p: {k: coerce(k, v) for k, v in _table(t, "", path, p).items()}
                 for p, t in _table(data, "pruner", path).items()}
    name = data.get("name", "")
    if not isinstance(name, str):
        raise ConfigError(f"name in {path} must be a string")
    return SweepSpec(
        models=[_typed(v, str, "models", path) for v in grid["models"]],
        datasets=[_typed(v, str, "datasets", path) for v in grid["datasets"]],
        pruners=[_typed(v, str, "pruners", path) for v in grid["pruners"]],
        compressions=[float(_typed(v, (int, float), "compressions", path))
                      for v in grid["compressions"]],
        seeds=[_typed(v, int, "seeds", path) for v in grid.get("seeds", [1])],
        settings=settings, overrides=overrides, name=name)


def _table(data: Any, key: str, path: Path, label: str = "") -> dict[str, Any]:
    value = data.get(key, {}) if key else data
    if not isinstance(value, dict):
        raise ConfigError(f"[{key or 'pruner.' + label}] in {path} must be a table")
    return value


def _typed(value: Any, kind: Any, key: str, path: Path) -> Any:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"grid.{key} in {path} has {value!r}; expected "
                          f"{getattr(kind, '__name__', 'a number')} values")
    return value


# -- running -----------------------------------------------------------------------------------


@dataclass
class CellOutcome:
    """How one cell of a sweep ended."""

    config: RunConfig
    status: str  # finished | cached | failed | cancelled | diverged | oom | interrupted
    error: str = ""


EXECUTORS = ("local", "ray")


@dataclass
class SweepRunner:
    """Runs a sweep's cells: in this process (jobs=1), in worker processes (jobs>1), or as
    tasks on a Ray cluster (executor="ray").

    The Ray fields (``ray_address`` … ``task_hook``) are used only with ``executor="ray"``;
    see ``core/ray_executor.py``. Bad executor settings raise ``ConfigError`` on construction,
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
        from prunetui.core.ray_executor import require_ray

        require_ray()

    def run(self, configs: list[RunConfig]) -> list[CellOutcome]:
        """Run every cell; a failing cell is recorded and the sweep goes on."""
        if self.executor == "ray":
            from prunetui.core.ray_executor import run_sweep

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


def run_cell(config: RunConfig, store: Any, data_dir: Path | None, download: bool,
             emit: Emit, cancel: CancelToken | None) -> CellOutcome:
    """Run one cell, turning its failure into an outcome (the sweep goes on); Ctrl-C and
    cancellation propagate."""
    from prunetui.core import experiment
    from prunetui.core.errors import RunCancelled
    from prunetui.core.store import failed_attempt_status

    already = store.get(config.run_id)
    try:
        experiment.run(config, store=store, data_dir=data_dir, download=download, emit=emit,
                       cancel=cancel)
    except RunCancelled:
        raise
    except PrunetuiError as e:
        status = failed_attempt_status(already, store.get(config.run_id), "failed")
        return CellOutcome(config, status, str(e))
    except Exception as e:
        return CellOutcome(config, "failed", f"{type(e).__name__}: {e}")
    cached = already is not None and already.status == "finished"
    return CellOutcome(config, "cached" if cached else "finished")


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

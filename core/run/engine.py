"""One run from config to stored result: load data → build → [pre-train] → prune → train →
measure → store. Every face calls ``run`` (or ``build.inspect``).

Resumability: after pre-training epochs, after pruning and after training epochs the run
writes ``resume.pt`` atomically, then records the epoch in the store. An interrupted run
restarts from that checkpoint; epochs stored past it are dropped and recomputed, so the store
never holds an epoch twice.

Concurrency: a run executes only while its process holds the run's lock (``Store.run_lock``),
and what is stored is read again once the lock is held, so a second process asking for the
same config (two identical sweeps, the app and a CLI sweep) reports the result the first one
stored instead of training it again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from prunetui.core import faults
from prunetui.core.config import RunConfig
from prunetui.core.data import current_fingerprint, fingerprint, load_dataset
from prunetui.core.errors import (
    CheckpointError,
    DataError,
    PrunetuiError,
    RunCancelled,
    RunDiverged,
    StoredDivergence,
    StoreError,
)
from prunetui.core.events import (
    BatchProgress,
    CancelToken,
    Emit,
    Event,
    PruneStep,
    RunFailed,
    RunFinished,
    RunWarning,
    ignore,
)
from prunetui.core.masks import Prunable, counts
from prunetui.core.run import imp
from prunetui.core.run.build import seeded_build
from prunetui.core.run.checkpoint import Checkpoint
from prunetui.core.run.result import RunResult
from prunetui.core.run.steps import RESUME, RunContext, measure, prepare, prune_step, train_phase
from prunetui.core.status import RunStatus
from prunetui.core.store import RunRow, RunState, Store
from prunetui.core.train import resolve_device


def run(config: RunConfig, *, store: Store, data_dir: Path | None = None,
        download: bool = True, emit: Emit = ignore, cancel: CancelToken | None = None,
        force: bool = False, wait: bool = True) -> RunResult:
    """Run ``config`` to completion and store it; return its result.

    A finished run in the store is reported as it is (``force`` reruns it). When another
    process holds the run, ``wait`` waits for it (saying so once; the cancel token stops the
    wait) and then reports what it stored; without ``wait`` it raises ``RunHeldElsewhere``.
    Raises ``ConfigError``/``DataError`` for bad input before anything is written,
    ``RunCancelled`` when cancelled, and re-raises failures after storing the run with its
    status."""
    config.validate()
    emit = _with_kill_points(emit)
    run_id = config.run_id
    # Cheap early answer for a stored run, before building or loading anything.
    kept = _kept(store.get(run_id), config, store, data_dir, emit, force)
    if kept is not None:
        return kept
    device = resolve_device(config.device)
    if config.amp and device.type != "cuda":
        emit(RunWarning(run_id, f"--amp has no effect on {device.type}; training in float32"))
    # Everything that can fail on bad input happens before the first write.
    gens, model, prunables = seeded_build(config, device)
    splits = load_dataset(config.dataset, data_dir, download)
    with store.run_lock(run_id, waiting=_waiter(run_id, emit, cancel) if wait else None):
        # Read again under the lock: another process may have finished (or diverged) the
        # run while this one was loading or waiting for it.
        stored = store.get(run_id)
        kept = _kept(stored, config, store, data_dir, emit, force)
        if kept is not None:
            return kept
        run_dir = store.run_dir(run_id)
        if force and stored is not None:
            (run_dir / RESUME).unlink(missing_ok=True)
        # A checkpoint that cannot be resumed (unreadable, another model, other data) is
        # refused here, before start_run: the stored run keeps its status and stays resumable.
        data = fingerprint(splits)
        ckpt = Checkpoint.load(run_dir / RESUME, config, model, phase_epochs(config, prunables))
        _check_resume_data(ckpt, data, config)
        store.start_run(config.to_dict(), run_id, config.sweep)
        ctx = RunContext(config=config, store=store, device=device, emit=emit, cancel=cancel,
                         model=model, prunables=prunables, splits=splits, gens=gens, data=data,
                         ckpt=ckpt)
        result = _guarded(ctx)
    emit(RunFinished(run_id, result))
    return result


def phase_epochs(config: RunConfig, prunables: list[Prunable]) -> dict[str, tuple[int, int]]:
    """The run's phases, in order, and the epochs a checkpoint of each may be at (epoch 0 of
    a phase that starts with pruning: just pruned)."""
    if config.pruner == "imp":
        total, _ = counts(prunables)
        names = imp.phases(imp.imp_counts(total, config.compression, config.imp_rate))
        return {n: (1 if r == 0 else 0, config.post_epochs) for r, n in enumerate(names)}
    return {"pretrain": (1, config.pre_epochs), "train": (0, config.post_epochs)}


def _with_kill_points(emit: Emit) -> Emit:
    """``emit``, passing a fault-injection point after each event but progress (tests only)."""
    def inner(event: Event) -> None:
        emit(event)
        if not isinstance(event, BatchProgress | PruneStep):
            faults.point("event")

    return inner


def _waiter(run_id: str, emit: Emit, cancel: CancelToken | None) -> Callable[[], None]:
    """What ``run_lock`` calls while another process holds the run: say so once, and stop
    waiting when cancelled."""
    said = False

    def waiting() -> None:
        nonlocal said
        if not said:
            said = True
            emit(RunWarning(run_id, f"run {run_id} is being run by another process; waiting "
                                    "for it to finish"))
        if cancel is not None:
            cancel.check()

    return waiting


def _kept(stored: RunRow | None, config: RunConfig, store: Store, data_dir: Path | None,
          emit: Emit, force: bool) -> RunResult | None:
    """The stored result to report instead of running (finished), or None to run. A stored
    divergence raises ``StoredDivergence``: training is seeded, it would diverge again."""
    if stored is None or force:
        return None
    run_id = config.run_id
    if stored.status == RunStatus.FINISHED:
        check_stored_data([stored], data_dir)
        if config.sweep:
            store.add_to_sweep(config.sweep, [run_id])
        assert stored.result is not None
        # A kill between storing the result and deleting the checkpoint leaves it behind.
        (store.run_dir(run_id) / RESUME).unlink(missing_ok=True)
        emit(RunFinished(run_id, stored.result, cached=True))
        return stored.result
    if stored.status == RunStatus.DIVERGED:
        msg = (f"run {run_id} is stored as diverged ({stored.error}); its training is seeded, "
               "so it would diverge the same way again: change the lr or seed, or force a "
               "rerun (run --force)")
        emit(RunFailed(run_id, RunStatus.DIVERGED, msg))
        raise StoredDivergence(msg)
    return None


def _guarded(ctx: RunContext) -> RunResult:
    """``_execute``, with every way it can end stored as the run's status."""
    store, run_id, emit = ctx.store, ctx.run_id, ctx.emit
    try:
        return _execute(ctx)
    except KeyboardInterrupt:
        store.fail_run(run_id, RunStatus.INTERRUPTED, "interrupted (Ctrl-C or SIGTERM)")
        emit(RunFailed(run_id, RunStatus.INTERRUPTED, "interrupted"))
        raise
    except StoreError:
        raise
    except Exception as e:
        status, msg, instead = _ending(ctx, e)
        # A store that cannot take the status (a full disk) must not hide why the run ended.
        with contextlib.suppress(StoreError):
            store.fail_run(run_id, status, msg)
        emit(RunFailed(run_id, status, msg))
        if instead is None:
            raise
        raise instead from None


def _ending(ctx: RunContext, e: Exception) -> tuple[RunStatus, str, Exception | None]:
    """How ``e`` ends the run: its status, its message, and the error to raise in its place
    (None: ``e`` itself)."""
    if isinstance(e, RunCancelled):
        return RunStatus.CANCELLED, "cancelled by the user", None
    if isinstance(e, RunDiverged):
        return RunStatus.DIVERGED, str(e), None
    # CUDA's allocator fails with its own type, the CPU's with a plain RuntimeError.
    if isinstance(e, torch.OutOfMemoryError | MemoryError) or (
            isinstance(e, RuntimeError) and "DefaultCPUAllocator" in str(e)):
        config = ctx.config
        msg = (f"out of memory on {ctx.device} with batch size {config.batch_size} (test "
               f"batch size {config.test_batch_size}); try a smaller --batch-size or "
               "--test-batch-size" + (", or --amp" if ctx.device.type == "cuda" else ""))
        return RunStatus.OOM, msg, PrunetuiError(msg)
    if isinstance(e, OSError):
        msg = (f"cannot write results under {ctx.run_dir}: {e.strerror or e}; runs already "
               "stored are intact")
        return RunStatus.FAILED, msg, StoreError(msg)
    return RunStatus.FAILED, f"{type(e).__name__}: {e}", None


def _execute(ctx: RunContext) -> RunResult:
    config = ctx.config
    phase, done = prepare(ctx)
    if config.pruner == "imp":
        # IMP prunes after training, round after round (core/run/imp.py).
        first = next(iter(phase_epochs(config, ctx.prunables)))
        imp.execute(ctx, first if phase == "pretrain" else phase, done)
    else:
        if phase == "pretrain":
            if config.pre_epochs:
                train_phase(ctx, "pretrain", config.pre_epochs, done)
            prune_step(ctx)
            done = 0
        train_phase(ctx, "train", config.post_epochs, done)
    result = measure(ctx)
    ctx.store.finish_run(ctx.run_id, result)
    for name in (RESUME, imp.REWIND):  # what only an unfinished run needs
        (ctx.run_dir / name).unlink(missing_ok=True)
    return result


def check_stored_data(rows: Sequence[RunRow | RunState], data_dir: Path | None) -> None:
    """Refuse finished runs that were trained on other data than the data dir holds now (a
    subset or a fake stand-in, then the real files): their run ids are the same, so their
    results would silently stand for this data. Runs stored before fingerprints were kept,
    and datasets whose files are not here, are not checked."""
    wrong: list[str] = []
    for row in rows:
        if isinstance(row, RunState):
            stored = row.data
        else:
            stored = row.result.data if row.result is not None else None
        if stored is None:
            continue
        now = current_fingerprint(row.dataset, data_dir)
        if now is not None and now["digest"] != stored["digest"]:
            wrong.append(f"{row.run_id} ({_sizes(stored)}; the data dir: {_sizes(now)})"
                         if _sizes(stored) != _sizes(now) else
                         f"{row.run_id} (as many images, other ones: fingerprint "
                         f"{stored['digest']}; the data dir: {now['digest']})")
    if wrong:
        more = f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""
        raise DataError(
            f"{_count_runs(len(wrong))} stored from other data than the data dir holds now: "
            f"{', '.join(wrong[:3])}{more}; `prunetui rm` them (or `prunetui run --force`) "
            "to train them on this data, or use another --results-dir")


def _sizes(data: dict[str, object]) -> str:
    return f"{data['train']:,} train / {data['test']:,} test images"


def _count_runs(n: int) -> str:
    return "1 run was" if n == 1 else f"{n} runs were"


def _check_resume_data(ckpt: Checkpoint | None, data: dict[str, object],
                       config: RunConfig) -> None:
    """Refuse to resume a checkpoint trained on other data than ``data``."""
    if ckpt and ckpt.data is not None and ckpt.data["digest"] != data["digest"]:
        run_id = config.run_id
        raise CheckpointError(
            f"run {run_id}'s checkpoint was trained on other {config.dataset} data "
            f"({_sizes(ckpt.data)}, fingerprint {ckpt.data['digest']}) than the data dir "
            f"holds now ({_sizes(data)}, {data['digest']}); "
            f"`prunetui rm {run_id}` (or --force) to start it again on this data")

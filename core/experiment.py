"""One run from config to stored result: load data → build → [pre-train] → prune →
post-train → evaluate → measure → store. Every face calls ``run`` (or ``inspect``).

Resumability: after pre-training epochs, after pruning and after post-training epochs the run
writes ``resume.pt`` (weights, masks, optimizer, scheduler and RNG states) atomically, then
records the epoch in the store. An interrupted run restarts from that checkpoint; epochs stored
past it are dropped and recomputed, so the store never holds an epoch twice.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunetui.core import catalog, metrics
from prunetui.core.config import RunConfig, check_leaves_weights
from prunetui.core.data import (
    Splits,
    current_fingerprint,
    fingerprint,
    load_dataset,
    make_loaders,
    prune_batch,
)
from prunetui.core.errors import (
    CheckpointError,
    ConfigError,
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
    Checkpointed,
    Emit,
    EpochEnd,
    PhaseStarted,
    PruneStep,
    RunFailed,
    RunFinished,
    RunStarted,
    RunWarning,
    ignore,
)
from prunetui.core.masks import (
    Prunable,
    apply_masks,
    attach_masks,
    counts,
    find_prunable,
    reinit_kept,
    shuffle_masks,
    snapshot,
)
from prunetui.core.models import build_meta, build_model
from prunetui.core.pruners.schedule import prune
from prunetui.core.report import busy_spread, collapse_message
from prunetui.core.store import RunRow, Store, atomic_write_bytes, atomic_write_text
from prunetui.core.train import (
    evaluate,
    make_optimizer,
    make_scheduler,
    resolve_device,
    train_epoch,
)

RESUME = "resume.pt"
FINAL = "final.pt"
HISTOGRAMS = "histograms.json"


@dataclass
class Pruned:
    """A model built and pruned at initialization, ready to train or inspect."""

    model: nn.Module
    prunables: list[Prunable]
    device: torch.device
    input_shape: tuple[int, int, int]
    prune_seconds: float


def build(config: RunConfig, device: torch.device) -> tuple[nn.Module, list[Prunable]]:
    """The config's model on ``device`` with masks attached; refuses a compression that would
    keep no weight."""
    info = catalog.DATASETS[config.dataset]
    model = build_model(config.model, info.shape, info.num_classes).to(device)
    prunables = attach_masks(model, config.prune_bias, config.prune_batchnorm)
    total, _ = counts(prunables)
    check_leaves_weights(total, config.compression)
    return model, prunables


def check_stored_data(rows: list[RunRow], data_dir: Path | None) -> None:
    """Refuse finished runs that were trained on other data than the data dir holds now (a
    subset or a fake stand-in, then the real files): their run ids are the same, so their
    results would silently stand for this data. Runs stored before fingerprints were kept,
    and datasets whose files are not here, are not checked."""
    wrong: list[str] = []
    for row in rows:
        stored = (row.result or {}).get("data")
        if stored is None:
            continue
        dataset = str(row.config.get("dataset"))
        now = current_fingerprint(dataset, data_dir)
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


def _sizes(data: dict[str, Any]) -> str:
    return f"{data['train']:,} train / {data['test']:,} test images"


def _count_runs(n: int) -> str:
    return "1 run was" if n == 1 else f"{n} runs were"


def check_keeps_weights(configs: list[RunConfig]) -> None:
    """Refuse, before anything runs or is stored, a config whose compression keeps no weight
    of its model, as ``build`` does for one run: a sweep would otherwise run the rest and
    record that cell as failed."""
    for c in configs:
        try:
            check_leaves_weights(prunable_total(c.model, c.dataset, c.prune_bias,
                                                c.prune_batchnorm), c.compression)
        except ConfigError as e:
            raise ConfigError(f"{c.model} on {c.dataset}: {e}") from None


@functools.lru_cache(maxsize=64)
def prunable_total(model: str, dataset: str, bias: bool = False, batchnorm: bool = False) -> int:
    """How many entries pruning acts on in ``model`` for ``dataset``'s inputs (counted on the
    meta device: no memory, no random numbers)."""
    info = catalog.DATASETS[dataset]
    net = build_meta(model, info.shape, info.num_classes)
    return sum(p.param.numel() for p in find_prunable(net, bias, batchnorm))


def _seed(config: RunConfig) -> tuple[torch.Generator, torch.Generator]:
    """Seed torch and return (data generator, pruning generator), both CPU and independent."""
    torch.manual_seed(config.seed)
    data_gen = torch.Generator().manual_seed(config.seed)
    prune_gen = torch.Generator().manual_seed(config.seed + 7919)
    return data_gen, prune_gen


def _prune_batch(config: RunConfig, splits: Splits | None, device: torch.device,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    info = catalog.DATASETS[config.dataset]
    if config.pruner in catalog.DATA_PRUNERS:
        assert splits is not None
        x, y = prune_batch(splits, config.prune_samples_per_class, gen)
        return x.to(device), y.to(device)
    # Data-free pruners only need the input's shape.
    return torch.ones((1, *info.shape), device=device), torch.zeros(1, dtype=torch.long,
                                                                    device=device)


def prune_model(model: nn.Module, prunables: list[Prunable], config: RunConfig,
                batch: tuple[torch.Tensor, torch.Tensor], gen: torch.Generator,
                emit: Emit, cancel: CancelToken | None, run_id: str) -> float:
    """Prune at the config's compression (plus --shuffle-masks / --reinit); seconds taken."""
    start = time.perf_counter()
    emit(PhaseStarted(run_id, "prune", config.iterations))
    # The values pruning sees, which the shuffled masks' kept weights keep.
    before = snapshot(prunables) if config.shuffle_masks else None
    prune(model, prunables, config.pruner, config.compression, scope=config.scope,
          schedule=config.schedule, iterations=config.iterations, batch=batch,
          generator=gen,
          on_step=lambda i, n, d: emit(PruneStep(run_id, i, n, d)), cancel=cancel)
    if before is not None:
        shuffle_masks(prunables, gen, before)
    if config.reinit:
        # A second build: new values from the model's own init, drawn from the global RNG.
        info = catalog.DATASETS[config.dataset]
        fresh = build_model(config.model, info.shape, info.num_classes)
        reinit_kept(model, prunables, dict(fresh.named_parameters()))
    apply_masks(prunables)
    return time.perf_counter() - start


def inspect(config: RunConfig, *, data_dir: Path | None = None, download: bool = True,
            emit: Emit = ignore) -> dict[str, Any]:
    """Build the model and (if a pruner/compression is given) prune it at init; no training.

    Data is loaded only for the pruners that score with data (snip, grasp)."""
    config.validate()
    device = resolve_device(config.device)
    _, prune_gen = _seed(config)
    model, prunables = build(config, device)
    info = catalog.DATASETS[config.dataset]
    seconds = 0.0
    if config.compression > 0:
        splits = (load_dataset(config.dataset, data_dir, download)
                  if config.pruner in catalog.DATA_PRUNERS else None)
        batch = _prune_batch(config, splits, device, prune_gen)
        seconds = prune_model(model, prunables, config, batch, prune_gen, emit, None,
                              config.run_id)
    return _structure(model, prunables, info.shape) | {
        "config": config.to_dict(), "prune_seconds": seconds, "device": str(device)}


def _structure(model: nn.Module, prunables: list[Prunable],
               shape: tuple[int, int, int]) -> dict[str, Any]:
    """Counts, FLOPs, per-layer rows and collapse flags of a (pruned) model."""
    stats = metrics.layer_stats(model, shape)
    dense, pruned = metrics.flops(stats)
    total, remaining = counts(prunables)
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "params": {"total": n_params, "prunable": total, "remaining": remaining},
        "density": remaining / total if total else 1.0,
        "flops": {"dense": dense, "pruned": pruned, "ratio": pruned / dense if dense else 1.0},
        "layers": [s.to_dict() for s in stats],
        "collapse": _collapse(model, shape),
    }


def _collapse(model: nn.Module, shape: tuple[int, int, int]) -> dict[str, Any]:
    """The result's ``collapse`` record: empty layers, disconnection, either."""
    c = metrics.detect_collapse(model, shape)
    return {"empty_layers": c.empty_layers, "disconnected": c.disconnected,
            "collapsed": c.collapsed}


def run(config: RunConfig, *, store: Store, data_dir: Path | None = None,
        download: bool = True, emit: Emit = ignore, cancel: CancelToken | None = None,
        force: bool = False) -> dict[str, Any]:
    """Run ``config`` to completion and store it; return the result record.

    A finished run in the store is reported as it is (``force`` reruns it). Raises
    ``ConfigError``/``DataError`` for bad input before anything is written, ``RunCancelled``
    when cancelled, and re-raises failures after storing the run with its status."""
    config.validate()
    run_id = config.run_id
    stored = store.get(run_id)
    if stored is not None and stored.status == "finished" and not force:
        check_stored_data([stored], data_dir)
        if config.sweep:
            store.add_to_sweep(config.sweep, [run_id])
        assert stored.result is not None
        # A kill between storing the result and deleting the checkpoint leaves it behind.
        (store.run_dir(run_id) / RESUME).unlink(missing_ok=True)
        emit(RunFinished(run_id, stored.result, cached=True))
        return stored.result
    if stored is not None and stored.status == "diverged" and not force:
        msg = (f"run {run_id} is stored as diverged ({stored.error}); its training is seeded, "
               "so it would diverge the same way again: change the lr or seed, or force a "
               "rerun (run --force)")
        emit(RunFailed(run_id, "diverged", msg))
        raise StoredDivergence(msg)
    device = resolve_device(config.device)
    if config.amp and device.type != "cuda":
        emit(RunWarning(run_id, f"--amp has no effect on {device.type}; training in float32"))
    # Everything that can fail on bad input happens before the first write.
    gens = _seed(config)  # before the build: initial weights come from the seed
    model, prunables = build(config, device)
    splits = load_dataset(config.dataset, data_dir, download)
    run_dir = store.run_dir(run_id)
    with store.run_lock(run_id):
        if force and stored is not None:
            (run_dir / RESUME).unlink(missing_ok=True)
        # A checkpoint that cannot be resumed (unreadable, another model, other data) is
        # refused here, before start_run: the stored run keeps its status and stays resumable.
        data = fingerprint(splits)
        ckpt = _load_resume(run_dir / RESUME, run_id, model)
        _check_resume_data(ckpt, data, config)
        store.start_run(config.to_dict(), run_id, config.sweep)
        result = _guarded(config, model, prunables, splits, device, store, run_dir, emit,
                          cancel, gens, ckpt, data)
    emit(RunFinished(run_id, result))
    return result


def _guarded(config: RunConfig, model: nn.Module, prunables: list[Prunable], splits: Splits,
             device: torch.device, store: Store, run_dir: Path, emit: Emit,
             cancel: CancelToken | None, gens: tuple[torch.Generator, torch.Generator],
             ckpt: dict[str, Any] | None, data: dict[str, Any]) -> dict[str, Any]:
    """``_execute``, with every way it can end stored as the run's status."""
    run_id = config.run_id
    try:
        return _execute(config, model, prunables, splits, device, store, run_dir, emit, cancel,
                        gens, ckpt, data)
    except RunCancelled:
        store.fail_run(run_id, "cancelled", "cancelled by the user")
        emit(RunFailed(run_id, "cancelled", "cancelled by the user"))
        raise
    except KeyboardInterrupt:
        store.fail_run(run_id, "interrupted", "interrupted (Ctrl-C or SIGTERM)")
        emit(RunFailed(run_id, "interrupted", "interrupted"))
        raise
    except RunDiverged as e:
        store.fail_run(run_id, "diverged", str(e))
        emit(RunFailed(run_id, "diverged", str(e)))
        raise
    except StoreError:
        raise
    except OSError as e:
        msg = (f"cannot write results under {run_dir}: {e.strerror or e}; runs already "
               "stored are intact")
        with contextlib.suppress(StoreError):
            store.fail_run(run_id, "failed", msg)
        emit(RunFailed(run_id, "failed", msg))
        raise StoreError(msg) from None
    except torch.OutOfMemoryError:
        msg = (f"out of memory on {device} with batch size {config.batch_size}; try a smaller "
               "--batch-size or --test-batch-size, or --amp on CUDA")
        store.fail_run(run_id, "oom", msg)
        emit(RunFailed(run_id, "oom", msg))
        raise PrunetuiError(msg) from None
    except Exception as e:
        msg = f"{type(e).__name__}: {e}"
        store.fail_run(run_id, "failed", msg)
        emit(RunFailed(run_id, "failed", msg))
        raise


def _execute(config: RunConfig, model: nn.Module, prunables: list[Prunable], splits: Splits,
             device: torch.device, store: Store, run_dir: Path, emit: Emit,
             cancel: CancelToken | None, gens: tuple[torch.Generator, torch.Generator],
             ckpt: dict[str, Any] | None, data: dict[str, Any]) -> dict[str, Any]:
    run_id = config.run_id
    info = splits.info
    start = time.perf_counter()
    data_gen, prune_gen = gens
    channels_last = device.type == "cuda" and config.model != "fc"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_loader, test_loader = make_loaders(splits, config.batch_size, config.test_batch_size,
                                             device, data_gen, channels_last=channels_last)
    phase, done = (ckpt["phase"], int(ckpt["epoch"])) if ckpt else ("pretrain", 0)
    # Before RunStarted: a listener then reads the stored epochs as the resume keeps them;
    # a fresh start (no checkpoint, or --force) drops an earlier attempt's epochs.
    store.truncate_epochs(run_id, phase, done)
    if ckpt:
        torch.set_rng_state(ckpt["torch_rng"])
        data_gen.set_state(ckpt["data_rng"])
        prune_gen.set_state(ckpt["prune_rng"])
    emit(RunStarted(run_id, config.to_dict(), resumed_phase=phase if ckpt else "",
                    resumed_from_epoch=done))
    prune_seconds = float(ckpt.get("prune_seconds", 0.0)) if ckpt else 0.0
    # A resumed run's time includes its earlier sessions up to the checkpoint (a checkpoint
    # from before "elapsed" was kept: its pruning and stored epochs).
    before = 0.0
    if ckpt:
        before = float(ckpt.get("elapsed", prune_seconds + sum(
            float(r.get("seconds") or 0.0) for r in store.epochs(run_id))))

    def elapsed() -> float:
        return before + time.perf_counter() - start

    # With keep_optimizer, pre-training's optimizer and scheduler, handed on to post-training.
    carried: tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler] | None = None

    def train_phase(name: str, epochs: int, first: int) -> None:
        nonlocal carried
        if carried and name == "train":
            opt, sched = carried
        else:
            opt = make_optimizer(config.optimizer, model.parameters(), config.lr,
                                 config.weight_decay)
            sched = make_scheduler(opt, config.lr_drops, config.lr_drop_rate)
        # A checkpoint of this phase has its optimizer, except the one written after pruning
        # (train, epoch 0), which has pre-training's only with keep_optimizer.
        if ckpt and ckpt["phase"] == name and ckpt["optimizer"] is not None and (
                first > 0 or config.keep_optimizer):
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
        if name == "pretrain" and config.keep_optimizer:
            carried = (opt, sched)
        emit(PhaseStarted(run_id, name, epochs))
        batches = len(train_loader)
        for epoch in range(first + 1, epochs + 1):
            lr = opt.param_groups[0]["lr"]
            stats = train_epoch(
                model, train_loader, opt, prunables, device=device, amp=config.amp,
                cancel=cancel,
                on_batch=lambda b, e=epoch: emit(BatchProgress(run_id, name, e, b, batches)))
            if not torch.isfinite(torch.tensor(stats.loss)):
                raise RunDiverged(epoch, stats.loss)
            test_loss, top1, top5 = evaluate(model, test_loader, device=device, amp=config.amp)
            sched.step()
            row = {"phase": name, "epoch": epoch, "train_loss": stats.loss,
                   "test_loss": test_loss, "top1": top1, "top5": top5, "lr": lr,
                   "seconds": stats.seconds}
            # Record first, checkpoint second: killed in between, the resume drops this row
            # (it is past the checkpoint) and recomputes it; the reverse order would lose it.
            store.record_epoch(run_id, row, epoch if name == "train" else 0)
            if epoch % config.checkpoint_every == 0 or epoch == epochs:
                _save_resume(run_dir / RESUME, run_id, name, epoch, model, opt, sched,
                             data_gen, prune_gen, prune_seconds, elapsed(), data)
                emit(Checkpointed(run_id, name, epoch))
            emit(EpochEnd(run_id, name, epoch, epochs, stats.loss, test_loss, top1, top5, lr,
                          stats.seconds))

    if phase == "pretrain":
        if config.pre_epochs:
            train_phase("pretrain", config.pre_epochs, done)
        batch = _prune_batch(config, splits, device, prune_gen)
        prune_seconds = prune_model(model, prunables, config, batch, prune_gen, emit, cancel,
                                    run_id)
        pruned = _structure(model, prunables, info.shape)
        store.record_pruned(run_id, pruned)  # shown while it trains, and if it stops
        warning = collapse_message(pruned["collapse"])
        if warning:
            emit(RunWarning(run_id, warning))
        # Pruning is deterministic but can be slow (SynFlow: 100 iterations): keep it.
        opt, sched = carried if carried else (None, None)
        _save_resume(run_dir / RESUME, run_id, "train", 0, model, opt, sched, data_gen,
                     prune_gen, prune_seconds, elapsed(), data)
        emit(Checkpointed(run_id, "train", 0))
        done = 0
    train_phase("train", config.post_epochs, done)

    emit(PhaseStarted(run_id, "measure", 0))
    history = store.epochs(run_id)
    final = [r for r in history if r["phase"] == "train"]
    if final:
        test_loss, top1, top5 = final[-1]["test_loss"], final[-1]["top1"], final[-1]["top5"]
    else:
        test_loss, top1, top5 = evaluate(model, test_loader, device=device, amp=config.amp)
    structure = _structure(model, prunables, info.shape)
    timing = metrics.time_inference(model, lambda: (x for x, _ in test_loader), device,
                                    config.timing_repeats)
    compacted = _compacted_timing(model, info.shape, test_loader, device, config) \
        if config.sparse_inference else None
    for what, t in (("inference", timing.to_dict()), ("compacted inference", compacted)):
        if t and busy_spread(t["min"], t["max"], timing.repeats):
            emit(RunWarning(run_id, f"{what} passes took {t['min']:.3g} to {t['max']:.3g} s: "
                                    "the machine was busy, so the median time may be off; "
                                    "time on a quiet machine to compare pruners"))
            break
    hists = metrics.weight_histograms(model)
    atomic_write_text(run_dir / HISTOGRAMS,
                      json.dumps([{"layer": h.layer, "edges": h.edges,
                                   "fractions": h.fractions} for h in hists]))
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    atomic_write_bytes(run_dir / FINAL, buf.getvalue())
    result = {
        "run_id": run_id,
        "config": config.to_dict(),
        "status": "finished",
        "epochs": history,
        "top1": top1, "top5": top5, "test_loss": test_loss,
        **structure,
        "inference": {"median": timing.median, "min": timing.min, "max": timing.max,
                      "repeats": timing.repeats, "batch_size": timing.batch_size,
                      "images": timing.images, "device": str(device),
                      **({"compacted": compacted} if compacted else {})},
        "prune_seconds": prune_seconds,
        "seconds": elapsed(),
        "data": data,
        "device": str(device),
        # CPU sums are ordered by thread: metrics are bit-identical for equal thread counts.
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    store.finish_run(run_id, result)
    (run_dir / RESUME).unlink(missing_ok=True)
    return result


def _compacted_timing(model: nn.Module, shape: tuple[int, int, int], test_loader: Any,
                      device: torch.device, config: RunConfig) -> dict[str, Any]:
    """``--sparse-inference``: time the model with its dead structure removed and sparse
    kernels where they pay (``core.compact``), checked equal to the masked model."""
    from prunetui.core.compact import compact

    small = compact(model, shape)
    t = metrics.time_inference(small, lambda: (x for x, _ in test_loader), device,
                               config.timing_repeats)
    return {"median": t.median, "min": t.min, "max": t.max,
            "structural": small.info.structural, "fallback": small.info.fallback,
            "params_after": small.info.params_after, "stored_after": small.info.stored_after,
            "max_abs_error": small.info.max_abs_error}


def _save_resume(path: Path, run_id: str, phase: str, epoch: int, model: nn.Module,
                 opt: torch.optim.Optimizer | None,
                 sched: torch.optim.lr_scheduler.LRScheduler | None,
                 data_gen: torch.Generator, prune_gen: torch.Generator,
                 prune_seconds: float, elapsed: float, data: dict[str, Any]) -> None:
    state = {
        "run_id": run_id, "phase": phase, "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": opt.state_dict() if opt else None,
        "scheduler": sched.state_dict() if sched else None,
        "torch_rng": torch.get_rng_state(), "data_rng": data_gen.get_state(),
        "prune_rng": prune_gen.get_state(), "prune_seconds": prune_seconds,
        "elapsed": elapsed, "data": data,
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def _check_resume_data(ckpt: dict[str, Any] | None, data: dict[str, Any],
                       config: RunConfig) -> None:
    """Refuse to resume a checkpoint trained on other data than ``data``."""
    if ckpt and ckpt.get("data", data)["digest"] != data["digest"]:
        run_id = config.run_id
        raise CheckpointError(
            f"run {run_id}'s checkpoint was trained on other {config.dataset} data "
            f"({_sizes(ckpt['data'])}, fingerprint {ckpt['data']['digest']}) than the data dir "
            f"holds now ({_sizes(data)}, {data['digest']}); "
            f"`prunetui rm {run_id}` (or --force) to start it again on this data")


def _load_resume(path: Path, run_id: str, model: nn.Module) -> dict[str, Any] | None:
    """The run's checkpoint, loaded into ``model``; None when there is none."""
    if not path.exists():
        return None
    try:
        # weights_only: a checkpoint is data; never execute pickled code from disk. Its
        # warnings about a file it may not read are dropped: a refusal is one line, below.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"checkpoint {path} cannot be loaded safely ({type(e).__name__}); delete it to "
            "restart the run from scratch") from None
    if not isinstance(ckpt, dict) or ckpt.get("run_id") != run_id:
        raise CheckpointError(f"checkpoint {path} belongs to another run; delete it")
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError) as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {path} does not match the run's model ({first}); "
                              "delete it") from None
    return ckpt

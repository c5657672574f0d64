"""The steps of one run after its lock is held, over one ``RunContext``:

    prepare → [pre-train] → prune → train → measure

Each step reads and updates the context; checkpoints are written at every epoch boundary (and
after pruning), so a run stopped anywhere resumes from the last one bit-identically.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunetui.core import catalog, metrics
from prunetui.core.config import RunConfig
from prunetui.core.data import Splits, make_loaders
from prunetui.core.errors import RunDiverged
from prunetui.core.events import (
    BatchProgress,
    CancelToken,
    Checkpointed,
    Emit,
    EpochEnd,
    PhaseStarted,
    RunStarted,
    RunWarning,
)
from prunetui.core.masks import Prunable, counts
from prunetui.core.provenance import version
from prunetui.core.report import busy_spread, collapse_message
from prunetui.core.run.build import Generators, prune_model, pruning_batch, structure
from prunetui.core.run.checkpoint import Checkpoint
from prunetui.core.run.result import Compacted, Inference, RunResult
from prunetui.core.store import Store, atomic_write_bytes, atomic_write_text
from prunetui.core.train import evaluate, make_optimizer, make_scheduler, train_epoch

RESUME = "resume.pt"
FINAL = "final.pt"
HISTOGRAMS = "histograms.json"

Optimizer = torch.optim.Optimizer
Scheduler = torch.optim.lr_scheduler.LRScheduler


@dataclass
class RunContext:
    """Everything one run's steps share: what it runs, where it stores, its live state."""

    config: RunConfig
    store: Store
    device: torch.device
    emit: Emit
    cancel: CancelToken | None
    model: nn.Module
    prunables: list[Prunable]
    splits: Splits
    gens: Generators
    data: dict[str, Any]  # the data's fingerprint
    ckpt: Checkpoint | None  # the checkpoint this session resumes from, if any
    prune_seconds: float = 0.0
    # Wall time of earlier sessions up to the checkpoint, and when this session started.
    before: float = 0.0
    start: float = field(default_factory=time.perf_counter)
    # With keep_optimizer: pre-training's optimizer and scheduler, handed on to training.
    carried: tuple[Optimizer, Scheduler] | None = None
    loaders: tuple[Any, Any] | None = None

    @property
    def run_id(self) -> str:
        return self.config.run_id

    @property
    def run_dir(self) -> Path:
        return self.store.run_dir(self.run_id)

    @property
    def train_loader(self) -> Any:
        assert self.loaders is not None
        return self.loaders[0]

    @property
    def test_loader(self) -> Any:
        assert self.loaders is not None
        return self.loaders[1]

    def elapsed(self) -> float:
        """Seconds the run has taken, earlier sessions included."""
        return self.before + time.perf_counter() - self.start

    def checkpoint(self, phase: str, epoch: int, opt: Optimizer | None,
                   sched: Scheduler | None) -> None:
        """Write the resume checkpoint at this boundary and say so."""
        Checkpoint(
            run_id=self.run_id, phase=phase, epoch=epoch, model=self.model.state_dict(),
            optimizer=opt.state_dict() if opt else None,
            scheduler=sched.state_dict() if sched else None,
            torch_rng=torch.get_rng_state(), data_rng=self.gens.data.get_state(),
            prune_rng=self.gens.prune.get_state(), prune_seconds=self.prune_seconds,
            elapsed=self.elapsed(), data=self.data,
        ).save(self.run_dir / RESUME)
        self.emit(Checkpointed(self.run_id, phase, epoch))


def prepare(ctx: RunContext) -> tuple[str, int]:
    """Loaders, the resumed state, and ``RunStarted``; returns where the run goes on from:
    (phase, epochs of it done)."""
    config, ckpt = ctx.config, ctx.ckpt
    channels_last = ctx.device.type == "cuda" and config.model != "fc"
    if channels_last:
        ctx.model = ctx.model.to(memory_format=torch.channels_last)
    ctx.loaders = make_loaders(ctx.splits, config.batch_size, config.test_batch_size,
                               ctx.device, ctx.gens.data, channels_last=channels_last)
    phase, done = (ckpt.phase, ckpt.epoch) if ckpt else ("pretrain", 0)
    # Before RunStarted: a listener then reads the stored epochs as the resume keeps them;
    # a fresh start (no checkpoint, or --force) drops an earlier attempt's epochs.
    ctx.store.truncate_epochs(ctx.run_id, phase, done)
    if ckpt:
        torch.set_rng_state(ckpt.torch_rng)
        ctx.gens.data.set_state(ckpt.data_rng)
        ctx.gens.prune.set_state(ckpt.prune_rng)
        ctx.prune_seconds = ckpt.prune_seconds
        # A checkpoint from before "elapsed" was kept: its pruning and stored epochs.
        ctx.before = ckpt.elapsed if ckpt.elapsed is not None else ckpt.prune_seconds + sum(
            r.seconds or 0.0 for r in ctx.store.epochs(ctx.run_id))
    ctx.emit(RunStarted(ctx.run_id, config.to_dict(), resumed_phase=phase if ckpt else "",
                        resumed_from_epoch=done))
    return phase, done


def train_phase(ctx: RunContext, name: str, epochs: int, first: int,
                after_epoch: Callable[[int], None] | None = None) -> None:
    """Train epochs ``first + 1 .. epochs`` of phase ``name`` (pretrain | train | an IMP
    round), recording and checkpointing each; ``after_epoch(epoch)`` runs before the
    epoch's checkpoint is written."""
    config, ckpt = ctx.config, ctx.ckpt
    if ctx.carried and name == "train":
        opt, sched = ctx.carried
    else:
        opt = make_optimizer(config.optimizer, ctx.model.parameters(), config.lr,
                             config.weight_decay)
        sched = make_scheduler(opt, config.lr_drops, config.lr_drop_rate)
    # A checkpoint of this phase has its optimizer, except the one written after pruning
    # (train, epoch 0), which has pre-training's only with keep_optimizer.
    if ckpt and ckpt.phase == name and ckpt.optimizer is not None and (
            first > 0 or config.keep_optimizer):
        opt.load_state_dict(ckpt.optimizer)
        sched.load_state_dict(ckpt.scheduler or {})
    if name == "pretrain" and config.keep_optimizer:
        ctx.carried = (opt, sched)
    run_id = ctx.run_id
    ctx.emit(PhaseStarted(run_id, name, epochs))
    batches = len(ctx.train_loader)

    def progress(epoch: int) -> Callable[[int], None]:
        return lambda batch: ctx.emit(BatchProgress(run_id, name, epoch, batch, batches))

    for epoch in range(first + 1, epochs + 1):
        lr = opt.param_groups[0]["lr"]
        with _overflow_diverges(epoch):
            stats = train_epoch(ctx.model, ctx.train_loader, opt, ctx.prunables,
                                device=ctx.device, amp=config.amp, cancel=ctx.cancel,
                                on_batch=progress(epoch), label_smoothing=config.label_smoothing)
            if not math.isfinite(stats.loss):
                raise RunDiverged(epoch, stats.loss)
            test_loss, top1, top5 = evaluate(ctx.model, ctx.test_loader, device=ctx.device,
                                             amp=config.amp)
        # The last step of an epoch can blow the weights up after its loss was taken.
        if not math.isfinite(test_loss):
            raise RunDiverged(epoch, test_loss, f"the test loss became {test_loss}")
        sched.step()
        row = {"phase": name, "epoch": epoch, "train_loss": stats.loss,
               "test_loss": test_loss, "top1": top1, "top5": top5, "lr": lr,
               "seconds": stats.seconds}
        # Record first, checkpoint second: killed in between, the resume drops this row
        # (it is past the checkpoint) and recomputes it; the reverse order would lose it.
        ctx.store.record_epoch(run_id, row, epoch if name == "train" else 0)
        if after_epoch is not None:
            after_epoch(epoch)
        if epoch % config.checkpoint_every == 0 or epoch == epochs:
            ctx.checkpoint(name, epoch, opt, sched)
        ctx.emit(EpochEnd(run_id, name, epoch, epochs, stats.loss, test_loss, top1, top5, lr,
                          stats.seconds))


@contextlib.contextmanager
def _overflow_diverges(epoch: int) -> Iterator[None]:
    """Raise ``RunDiverged`` for the form divergence takes when a Python number no tensor
    type holds meets a tensor (``--lr 1e300``: the optimizer's step, or a weight that grew
    past float's range): torch's RuntimeError "value cannot be converted to type float
    without overflow", not a NaN loss."""
    try:
        yield
    except RuntimeError as e:
        if "without overflow" not in str(e):
            raise
        raise RunDiverged(epoch, math.inf, f"a value overflowed ({e})") from None


def prune_step(ctx: RunContext) -> None:
    """Prune, store what pruning left (shown while the run trains, and if it stops), warn of
    collapse, and checkpoint: pruning is deterministic but can be slow (SynFlow: 100
    iterations)."""
    config = ctx.config
    batch = pruning_batch(config, ctx.splits, ctx.device, ctx.gens.prune)
    ctx.prune_seconds = prune_model(ctx.model, ctx.prunables, config, batch, ctx.gens.prune,
                                    ctx.emit, ctx.cancel, ctx.run_id)
    pruned = structure(ctx.model, ctx.prunables, ctx.splits.info.shape)
    ctx.store.record_pruned(ctx.run_id, pruned)
    warning = collapse_message(pruned.collapse.to_dict())
    if warning:
        ctx.emit(RunWarning(ctx.run_id, warning))
    opt, sched = ctx.carried if ctx.carried else (None, None)
    ctx.checkpoint("train", 0, opt, sched)


def measure(ctx: RunContext) -> RunResult:
    """The final metrics, structure, timings, histograms and weights; the run's result."""
    config, model, device = ctx.config, ctx.model, ctx.device
    ctx.emit(PhaseStarted(ctx.run_id, "measure", 0))
    history = ctx.store.epochs(ctx.run_id)
    final = [r for r in history if r.phase == "train"]
    if final:
        test_loss, top1, top5 = final[-1].test_loss, final[-1].top1, final[-1].top5
    else:
        test_loss, top1, top5 = evaluate(model, ctx.test_loader, device=device, amp=config.amp)
    shape = ctx.splits.info.shape
    built = structure(model, ctx.prunables, shape)
    timing = metrics.time_inference(model, lambda: (x for x, _ in ctx.test_loader), device,
                                    config.timing_repeats)
    compacted = _compacted_timing(ctx) if config.sparse_inference else None
    for what, t in (("inference", timing), ("compacted inference", compacted)):
        if t and (spread := busy_spread(t.min, t.max, timing.repeats)):
            ctx.emit(RunWarning(ctx.run_id, f"{what} passes took {t.min:.3g} to {t.max:.3g} "
                                            "s: the machine was busy, so the median time may be "
                                            "off; time on a quiet machine to compare pruners",
                                busy=spread))
            break
    hists = metrics.weight_histograms(model)
    atomic_write_text(ctx.run_dir / HISTOGRAMS,
                      json.dumps([{"layer": h.layer, "edges": h.edges,
                                   "fractions": h.fractions} for h in hists]))
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    atomic_write_bytes(ctx.run_dir / FINAL, buf.getvalue())
    assert top1 is not None and top5 is not None and test_loss is not None
    rounds = ()
    if config.pruner == "imp":
        from prunetui.core.run import imp

        total, _ = counts(ctx.prunables)
        rounds = imp.rounds(imp.imp_counts(total, config.compression, config.imp_rate),
                            history)
    return RunResult(
        run_id=ctx.run_id, config=config.to_dict(), epochs=tuple(history), top1=top1,
        top5=top5, test_loss=test_loss, structure=built,
        inference=Inference(timing.median, timing.min, timing.max, timing.repeats,
                            timing.batch_size, timing.images, str(device), compacted),
        prune_seconds=ctx.prune_seconds, seconds=ctx.elapsed(), data=ctx.data,
        device=str(device),
        # CPU sums are ordered by thread: metrics are bit-identical for equal thread counts.
        threads=torch.get_num_threads(), torch=torch.__version__, version=version(),
        rounds=rounds)


def _compacted_timing(ctx: RunContext) -> Compacted:
    """``--sparse-inference``: time the model with its dead structure removed and sparse
    kernels where they pay (``core.compact``), checked equal to the masked model."""
    from prunetui.core.compact import compact

    small = compact(ctx.model, catalog.DATASETS[ctx.config.dataset].shape)
    t = metrics.time_inference(small, lambda: (x for x, _ in ctx.test_loader), ctx.device,
                               ctx.config.timing_repeats)
    return Compacted(t.median, t.min, t.max, small.info.structural, small.info.fallback,
                     small.info.params_after, small.info.stored_after,
                     small.info.max_abs_error)

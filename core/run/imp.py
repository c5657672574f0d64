"""Iterative magnitude pruning (IMP, lottery tickets): the reference line pruning at
initialization is measured against ("magnitude pruning after training").

Round 0 trains the dense network. Each later round prunes ``imp_rate`` of the weights still
kept, globally by magnitude after training, rewinds the kept weights (and every other
parameter and buffer) to their values at epoch ``rewind_epoch`` of round 0 (0: the
initialization, the original lottery ticket; k > 0: late rewinding), and trains again with a
fresh optimizer and lr schedule, until the round that keeps exactly ``kept_count(total, c)``
weights: its training is the run's ``train`` phase, measured like any run. Every round's
accuracy and density is stored (``RunResult.rounds``), so one IMP run draws its own
accuracy-vs-compression curve.

Rounds are phases ``round0`` … ``round{R-1}`` then ``train``; a checkpoint is written after every
epoch and after every pruning (epoch 0 of the next round), so a run stopped anywhere resumes
bit-identically. The rewind point is kept beside the checkpoint (``rewind.pt``).
"""

from __future__ import annotations

import io
import math
import time
import warnings

import torch

from prunetui.core.config import kept_count
from prunetui.core.errors import CheckpointError
from prunetui.core.events import PhaseStarted, PruneStep
from prunetui.core.masks import apply_masks, counts
from prunetui.core.pruners.schedule import prune
from prunetui.core.run.build import structure
from prunetui.core.run.result import Epoch, Round
from prunetui.core.run.steps import RunContext, train_phase
from prunetui.core.store import atomic_write_bytes

REWIND = "rewind.pt"


def imp_counts(total: int, compression: float, rate: float) -> list[int]:
    """Weights kept in each round: all of them in round 0, then ``rate`` of the rest pruned
    per round, the last round keeping exactly ``kept_count(total, compression)``."""
    target = kept_count(total, compression)
    out = [total]
    while out[-1] > target:
        out.append(max(target, round(out[-1] * (1 - rate))))
    return out


def phases(kept: list[int]) -> list[str]:
    """The run's training phases, one per round: ``round0`` …, the last one ``train``."""
    return [f"round{r}" for r in range(len(kept) - 1)] + ["train"]


def execute(ctx: RunContext, phase: str, done: int) -> None:
    """Train every round from ``phase`` (``done`` epochs of it already done), pruning and
    rewinding between rounds."""
    config = ctx.config
    total, _ = counts(ctx.prunables)
    kept = imp_counts(total, config.compression, config.imp_rate)
    names = phases(kept)
    start = names.index(phase)
    for r in range(start, len(names)):
        first = done if r == start else 0
        if r == 0 and config.rewind_epoch == 0 and first == 0:
            _save_rewind(ctx)  # rewinding to the initialization
        train_phase(ctx, names[r], config.post_epochs, first,
                    after_epoch=(lambda e: _save_rewind(ctx) if e == config.rewind_epoch
                                 else None) if r == 0 else None)
        if r + 1 < len(names):
            _prune_and_rewind(ctx, kept[r + 1], total, r + 1, len(names) - 1)
            ctx.checkpoint(names[r + 1], 0, None, None)


def _prune_and_rewind(ctx: RunContext, keep: int, total: int, r: int, rounds: int) -> None:
    """Prune to ``keep`` weights by magnitude (globally, among those still kept), rewind, and
    store what pruning left (shown while the next round trains)."""
    run_id = ctx.run_id
    start = time.perf_counter()
    ctx.emit(PhaseStarted(run_id, "prune", 1))
    # The compression whose exact count is ``keep``: round(total * keep / total) == keep.
    compression = -math.log10(keep / total)
    info = ctx.splits.info
    batch = (torch.ones((1, *info.shape), device=ctx.device),
             torch.zeros(1, dtype=torch.long, device=ctx.device))
    prune(ctx.model, ctx.prunables, "mag", compression, scope="global", iterations=1,
          batch=batch, generator=ctx.gens.prune, cancel=ctx.cancel,
          on_step=lambda i, n, d: ctx.emit(PruneStep(run_id, r, rounds, d)))
    _rewind(ctx)
    ctx.prune_seconds += time.perf_counter() - start  # every round's pruning, all sessions
    ctx.store.record_pruned(run_id, structure(ctx.model, ctx.prunables, info.shape))


def _weights(ctx: RunContext) -> dict[str, torch.Tensor]:
    """The model's state without its masks: what rewinding restores."""
    return {k: v.detach().cpu().clone() for k, v in ctx.model.state_dict().items()
            if not k.endswith("_mask")}


def _save_rewind(ctx: RunContext) -> None:
    buf = io.BytesIO()
    torch.save(_weights(ctx), buf)
    atomic_write_bytes(ctx.run_dir / REWIND, buf.getvalue())


def _rewind(ctx: RunContext) -> None:
    """Every parameter and buffer back to the rewind point; the masks stay."""
    path = ctx.run_dir / REWIND
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saved = torch.load(path, map_location="cpu", weights_only=True)
        missing, unexpected = ctx.model.load_state_dict(saved, strict=False)
    except (OSError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"IMP's rewind point {path} cannot be loaded ({type(e).__name__})"
                              f"; `prunetui rm {ctx.run_id}` to start the run again") from None
    if unexpected or any(not k.endswith("_mask") for k in missing):
        raise CheckpointError(f"IMP's rewind point {path} does not match the run's model; "
                              f"`prunetui rm {ctx.run_id}` to start the run again")
    apply_masks(ctx.prunables)


def rounds(kept: list[int], history: list[Epoch]) -> tuple[Round, ...]:
    """Each round's density and the top-1 its training ended with."""
    names = phases(kept)
    total = kept[0]
    out = []
    for name, k in zip(names, kept, strict=True):
        last = [e for e in history if e.phase == name]
        out.append(Round(density=k / total if total else 1.0, kept=k,
                         top1=last[-1].top1 if last else None))
    return tuple(out)

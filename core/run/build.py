"""Building and pruning a run's model: seeding, the model with its masks, the pruning batch,
pruning itself, and the structure it leaves. ``inspect`` is these steps alone (no training)."""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from prunetui.core import catalog, metrics
from prunetui.core.config import RunConfig, kept_count
from prunetui.core.data import Splits, load_dataset, prune_batch
from prunetui.core.errors import ConfigError
from prunetui.core.events import CancelToken, Emit, PhaseStarted, PruneStep, ignore
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
from prunetui.core.pruners.schedule import prune, validate
from prunetui.core.run.result import Collapse, Flops, Inspection, Layer, Params, Structure
from prunetui.core.train import resolve_device


@dataclass(frozen=True)
class Generators:
    """The run's independent CPU random streams: data order and augmentation, and pruning."""

    data: torch.Generator
    prune: torch.Generator


# Torch's global RNG is shared by every thread of a process, and the initial weights come from
# it: seeding and building hold this lock together, so a run and a preview started from the
# app's threads build exactly what the CLI builds. (Nothing after the build draws from it.)
BUILD_LOCK = threading.Lock()
# --reinit's second build draws from seed + this: independent of the first build's stream.
REINIT_SEED_OFFSET = 104729


def seed(config: RunConfig) -> Generators:
    """Seed torch's global RNG (the initial weights come from it) and make the run's streams.
    Call it with ``BUILD_LOCK`` held, and build before releasing it."""
    torch.manual_seed(config.seed)
    return Generators(torch.Generator().manual_seed(config.seed),
                      torch.Generator().manual_seed(config.seed + 7919))


def seeded_build(config: RunConfig,
                 device: torch.device) -> tuple[Generators, nn.Module, list[Prunable]]:
    """The run's random streams and its model, built from its seed (``seed`` then ``build``
    under ``BUILD_LOCK``)."""
    with BUILD_LOCK:
        gens = seed(config)
        model, prunables = build(config, device)
    return gens, model, prunables


def build(config: RunConfig, device: torch.device) -> tuple[nn.Module, list[Prunable]]:
    """The config's model on ``device`` with masks attached; refuses a compression that would
    keep no weight."""
    info = catalog.DATASETS[config.dataset]
    model = build_model(config.model, info.shape, info.num_classes).to(device)
    prunables = attach_masks(model, config.prune_bias, config.prune_batchnorm)
    _check_pruning(prunables, config)
    return model, prunables


def _check_pruning(prunables: list[Prunable], config: RunConfig) -> None:
    """What pruning would refuse (a compression that keeps no weight, a layerwise pruner's
    budget that does not fit, ...), refused before anything is written. IMP's rounds prune
    by magnitude, globally, one step each."""
    training = catalog.PRUNERS[config.pruner].kind == "training"
    validate(prunables, "mag" if training else config.pruner, config.compression,
             scope=config.scope, schedule=config.schedule, iterations=config.iterations)


@functools.lru_cache(maxsize=64)
def prunable_total(model: str, dataset: str, bias: bool = False, batchnorm: bool = False) -> int:
    """How many entries pruning acts on in ``model`` for ``dataset``'s inputs (counted on the
    meta device: no memory, no random numbers)."""
    return sum(p.param.numel() for p in _meta_prunables(model, dataset, bias, batchnorm))


def check_keeps_weights(configs: list[RunConfig]) -> None:
    """Refuse, before anything runs or is stored, a config whose pruning cannot be done (a
    compression that keeps no weight of its model, ...), as ``build`` does for one run: a
    sweep would otherwise run the rest and record that cell as failed."""
    checked: set[tuple[object, ...]] = set()
    for c in configs:
        key = (c.model, c.dataset, c.prune_bias, c.prune_batchnorm, c.pruner, c.compression,
               c.scope, c.schedule, c.iterations)
        if key in checked:  # a grid repeats these for every seed and setting
            continue
        checked.add(key)
        try:
            _check_pruning(_meta_prunables(c.model, c.dataset, c.prune_bias,
                                           c.prune_batchnorm), c)
        except ConfigError as e:  # keeping its field: the app marks the compression
            raise e.within(f"{c.model} on {c.dataset}") from None


def infeasible_cells(configs: list[RunConfig]) -> dict[str, str]:
    """The cells whose layerwise pruner's rule cannot hold at their compression (uniform-plus
    keeps the first layer dense and 20% of the last: more than fc on MNIST keeps at c=1), by
    run id, with why. A sweep skips these and runs the rest; one ``run`` of such a cell is
    refused (``build``). Known from the model's shapes alone, so a resumed sweep skips them
    again at no cost. A compression that keeps no weight at all is not one of these: that is
    a mistake in the grid, which ``check_keeps_weights`` refuses."""
    out: dict[str, str] = {}
    reasons: dict[tuple[object, ...], str | None] = {}
    for c in configs:
        if catalog.PRUNERS[c.pruner].kind != "layerwise":
            continue
        key = (c.model, c.dataset, c.prune_bias, c.prune_batchnorm, c.pruner, c.compression)
        if key not in reasons:
            prunables = _meta_prunables(c.model, c.dataset, c.prune_bias, c.prune_batchnorm)
            reasons[key] = None
            total = sum(p.param.numel() for p in prunables)
            if kept_count(total, c.compression) >= 1:
                try:
                    _check_pruning(prunables, c)
                except ConfigError as e:
                    reasons[key] = str(e)
        reason = reasons[key]
        if reason is not None:
            out[c.run_id] = reason
    return out


def runnable_cells(configs: list[RunConfig]) -> tuple[list[RunConfig], dict[str, str]]:
    """A sweep's cells split into those to run and those skipped (``infeasible_cells``: run
    id → why), after refusing what would fail any cell (``check_keeps_weights``). A sweep of
    skipped cells only is one ``ConfigError``, the reason of the first."""
    skipped = infeasible_cells(configs)
    runnable = [c for c in configs if c.run_id not in skipped]
    if skipped and not runnable:
        raise ConfigError(f"no cell of the sweep can run: {next(iter(skipped.values()))}",
                          field="pruner")
    check_keeps_weights(runnable)
    return runnable, skipped


@functools.lru_cache(maxsize=64)
def _meta_prunables(model: str, dataset: str, bias: bool, batchnorm: bool) -> list[Prunable]:
    info = catalog.DATASETS[dataset]
    return find_prunable(build_meta(model, info.shape, info.num_classes), bias, batchnorm)


def pruning_batch(config: RunConfig, splits: Splits | None, device: torch.device,
                  gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch the pruner scores with: sampled images for data pruners, else a ones input of
    the data's shape (data-free pruners need only the shape)."""
    info = catalog.DATASETS[config.dataset]
    if config.pruner in catalog.DATA_PRUNERS:
        assert splits is not None
        x, y = prune_batch(splits, config.prune_samples_per_class, gen)
        return x.to(device), y.to(device)
    return (torch.ones((1, *info.shape), device=device),
            torch.zeros(1, dtype=torch.long, device=device))


def prune_model(model: nn.Module, prunables: list[Prunable], config: RunConfig,
                batch: tuple[torch.Tensor, torch.Tensor], gen: torch.Generator,
                emit: Emit, cancel: CancelToken | None, run_id: str) -> float:
    """Prune at the config's compression, with its ablation (``--ablation``); seconds taken.

    shuffle: each layer's mask permuted, the kept weights keeping the values pruning saw
    (random pruning at the method's per-layer densities); reinit: the kept weights re-drawn
    from the model's own init; invert: the lowest-ranked weights kept (the ranking reversed,
    right for signed scores too: ``schedule.prune``)."""
    start = time.perf_counter()
    emit(PhaseStarted(run_id, "prune", config.iterations))
    # The values pruning sees, which the shuffled masks' kept weights keep.
    before = snapshot(prunables) if config.ablation == "shuffle" else None
    prune(model, prunables, config.pruner, config.compression, scope=config.scope,
          schedule=config.schedule, iterations=config.iterations, batch=batch,
          generator=gen, on_step=lambda i, n, d: emit(PruneStep(run_id, i, n, d)),
          cancel=cancel, invert=config.ablation == "invert")
    if before is not None:
        shuffle_masks(prunables, gen, before)
    if config.ablation == "reinit":
        reinit_kept(model, prunables, dict(_fresh_build(config).named_parameters()))
    apply_masks(prunables)
    return time.perf_counter() - start


def _fresh_build(config: RunConfig) -> nn.Module:
    """A second build of the run's model, for re-initialising kept weights: new values from
    the model's own init, drawn from a stream of the run's seed, whatever else drew from the
    global RNG since (the app's previews run in other threads)."""
    info = catalog.DATASETS[config.dataset]
    with BUILD_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + REINIT_SEED_OFFSET)
        return build_model(config.model, info.shape, info.num_classes)


def structure(model: nn.Module, prunables: list[Prunable],
              shape: tuple[int, int, int]) -> Structure:
    """Counts, FLOPs, per-layer rows and collapse record of a (pruned) model."""
    stats = metrics.layer_stats(model, shape)
    dense, pruned = metrics.flops(stats)
    total, remaining = counts(prunables)
    c = metrics.detect_collapse(model, shape)
    return Structure(
        params=Params(sum(p.numel() for p in model.parameters()), total, remaining),
        density=remaining / total if total else 1.0,
        flops=Flops(dense, pruned, pruned / dense if dense else 1.0),
        layers=tuple(Layer.from_dict(s.to_dict()) for s in stats),
        collapse=Collapse(tuple(c.empty_layers), c.disconnected, c.collapsed))


def inspect(config: RunConfig, *, data_dir: Path | None = None, download: bool = True,
            emit: Emit = ignore) -> Inspection:
    """Build the model and (if a compression is given) prune it at init; no training.

    Data is loaded only for the pruners that score with data (snip, grasp)."""
    config.validate()
    if catalog.PRUNERS[config.pruner].kind == "training":
        raise ConfigError(f"{config.pruner} prunes while it trains, not at initialization: "
                          "there is nothing to inspect; `prunetui run --pruner imp` runs it",
                          field="pruner", value=config.pruner)
    device = resolve_device(config.device)
    gens, model, prunables = seeded_build(config, device)
    info = catalog.DATASETS[config.dataset]
    seconds = 0.0
    if config.compression > 0:
        splits = (load_dataset(config.dataset, data_dir, download)
                  if config.pruner in catalog.DATA_PRUNERS else None)
        batch = pruning_batch(config, splits, device, gens.prune)
        seconds = prune_model(model, prunables, config, batch, gens.prune, emit, None,
                              config.run_id)
    return Inspection(config, structure(model, prunables, info.shape), seconds, str(device))

"""Pruning-at-initialization scorers and the registries the schedule looks pruners up in.

A scorer maps a model and its prunable parameters to one score tensor per parameter (same
shape, finite values of any sign); pruning keeps the highest scores. ``schedule.prune`` turns
scores into masks; scorers never touch masks.

A layerwise pruner (``LAYERWISE``) is a rule instead: it maps the prunables and the number of
entries to keep, k, to how many each layer keeps (summing to k exactly); the schedule keeps
that many at random positions within each layer. The two registries are disjoint and name
every pruner in ``catalog.PRUNERS`` but the one that prunes while it trains (IMP).
"""

from __future__ import annotations

import importlib
from typing import Protocol

import torch
from torch import Tensor, nn

from prunetui.core import catalog
from prunetui.core.masks import Prunable
from prunetui.core.pruners import layerwise
from prunetui.core.pruners.layerwise import LayerCounts


class Scorer(Protocol):
    """``score(model, prunables, batch, generator)``: fresh tensors the caller may modify.

    ``batch`` is (inputs, targets) on the model's device; data-free scorers use at most its
    shape. ``generator`` is a CPU generator, the only source of randomness. A scorer leaves the
    model as it found it (values, dtypes, training flags, ``requires_grad``) and no ``.grad``.
    """

    def __call__(
        self,
        model: nn.Module,
        prunables: list[Prunable],
        batch: tuple[Tensor, Tensor] | None,
        generator: torch.Generator,
    ) -> list[Tensor]: ...


# Built from the catalog's registry: a pruner is its module here plus its catalog entry.
SCORERS: dict[str, Scorer] = {
    name: importlib.import_module(f"{__name__}.{info.module_name}").score
    for name, info in catalog.PRUNERS.items() if info.kind == "scorer"
}

# ``rule(prunables, k)``: per-layer counts summing to k, from the parameters' shapes only.
LAYERWISE: dict[str, LayerCounts] = dict(layerwise.RULES)

__all__ = ["LAYERWISE", "SCORERS", "LayerCounts", "Scorer"]

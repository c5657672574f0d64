"""Pruning-at-initialization scorers and the registry the schedule looks them up in.

A scorer maps a model and its prunable parameters to one score tensor per parameter (same
shape, finite values of any sign); pruning keeps the highest scores. ``schedule.prune`` turns
scores into masks; scorers never touch masks.
"""

from __future__ import annotations

import importlib
from typing import Protocol

import torch
from torch import Tensor, nn

from prunetui.core import catalog
from prunetui.core.masks import Prunable


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
    for name, info in catalog.PRUNERS.items()
}

__all__ = ["SCORERS", "Scorer"]

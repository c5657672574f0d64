"""Pruning-at-initialization scorers and the registry the schedule looks them up in.

A scorer maps a model and its prunable parameters to one score tensor per parameter (same
shape, finite values of any sign); pruning keeps the highest scores. ``schedule.prune`` turns
scores into masks; scorers never touch masks.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn

from prunetui.core.masks import Prunable
from prunetui.core.pruners import grasp, mag, rand, snip, synflow


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


SCORERS: dict[str, Scorer] = {
    "rand": rand.score,
    "mag": mag.score,
    "snip": snip.score,
    "grasp": grasp.score,
    "synflow": synflow.score,
}

__all__ = ["SCORERS", "Scorer"]

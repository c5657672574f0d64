"""Magnitude pruning at initialization: keep the largest |w|."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from prunetui.core.masks import Prunable


def score(
    model: nn.Module,
    prunables: list[Prunable],
    batch: tuple[Tensor, Tensor] | None,
    generator: torch.Generator,
) -> list[Tensor]:
    """|w|, as fresh tensors (the caller may modify them)."""
    for param in model.parameters():
        param.grad = None
    return [p.param.detach().abs() for p in prunables]

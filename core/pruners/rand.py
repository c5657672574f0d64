"""Random pruning: iid scores, so the kept set is a uniformly random subset."""

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
    """|N(0, 1)| draws from ``generator`` (a CPU generator, so results do not depend on the
    device), one per entry, moved to each parameter's device."""
    for param in model.parameters():
        param.grad = None
    out: list[Tensor] = []
    for p in prunables:
        draw = torch.randn(p.param.shape, generator=generator, dtype=torch.float32, device="cpu")
        out.append(draw.abs_().to(p.param.device))
    return out

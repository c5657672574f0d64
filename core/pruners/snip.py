"""SNIP (Lee et al. 2019): connection sensitivity |dL/dw * w| on one batch of data.

This module also holds the small helpers every gradient-based scorer shares: the context that
puts a model in scoring state and restores it exactly, and the batch check.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunetui.core.masks import Prunable


@contextmanager
def scoring_state(
    model: nn.Module, params: list[nn.Parameter], only: bool = False
) -> Iterator[None]:
    """Eval mode, gradients enabled and required on ``params`` (and, with ``only``, on no other
    parameter), no ``.grad`` anywhere; undone on exit (per-module training flags, per-parameter
    ``requires_grad``), even on error.

    Scorers run in eval mode, as the SynFlow reference code does: a train-mode forward would
    update batch-norm running statistics, i.e. modify the model just by scoring it.
    """
    modes = [(m, m.training) for m in model.modules()]
    all_params = list(model.parameters())
    flags = [(p, p.requires_grad) for p in all_params]
    for p in all_params:
        p.grad = None
    try:
        model.eval()
        if only:
            for p in all_params:
                p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        with torch.enable_grad():
            yield
    finally:
        for p in all_params:
            p.grad = None
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode


def require_batch(batch: tuple[Tensor, Tensor] | None, pruner: str) -> tuple[Tensor, Tensor]:
    """The batch, or a ``ValueError`` naming the pruner that needs one."""
    if batch is None:
        raise ValueError(f"the {pruner} pruner scores weights on a batch of data; none was given")
    return batch


def grads_or_zeros(grads: tuple[Tensor | None, ...], prunables: list[Prunable]) -> list[Tensor]:
    """Gradients with ``None`` (a parameter the output does not depend on) as zeros."""
    return [
        torch.zeros_like(p.param) if g is None else g for g, p in zip(grads, prunables, strict=True)
    ]


def score(
    model: nn.Module,
    prunables: list[Prunable],
    batch: tuple[Tensor, Tensor] | None,
    generator: torch.Generator,
) -> list[Tensor]:
    """|dL/dw * w| with cross-entropy loss on ``batch`` (already on the model's device)."""
    x, y = require_batch(batch, "snip")
    params = [p.param for p in prunables]
    with scoring_state(model, params):
        loss = F.cross_entropy(model(x), y)
        # autograd.grad rather than backward(): nothing is accumulated into .grad.
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [
        (g * p.param.detach()).abs_()
        for g, p in zip(grads_or_zeros(grads, prunables), prunables, strict=True)
    ]

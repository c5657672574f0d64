"""GraSP (Wang et al. 2020): keep the weights whose removal would hurt gradient flow most.

The paper scores S(w) = -w * Hg, where g is the loss gradient and Hg the Hessian-gradient
product, and *removes* the weights with the highest S. Pruning here keeps the highest scores,
so this scorer returns w * Hg = -S (as the SynFlow reference code does): keeping its highest
values is removing the highest S. The scores are signed; the schedule ranks any finite values.

Masks: pruned weights are zero in the parameters, but the loss still has a gradient with
respect to them. The reference code multiplies each weight by its mask in the forward pass, so
its g and its Hessian live on the kept weights only. Here the forward pass is unmasked, so g is
masked before the Hessian-vector product: H (m * g) at a kept weight equals the reference's
(m H m) g there, and a pruned weight's score is w * Hg = 0 either way. With all-True masks (the
first iteration) multiplying by the mask changes nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunetui.core.masks import Prunable
from prunetui.core.pruners.snip import grads_or_zeros, require_batch, scoring_state

# Softmax temperature of the reference implementation: it flattens the logits so the
# Hessian-gradient product is not dominated by a few saturated outputs.
TEMPERATURE = 200.0


def score(
    model: nn.Module,
    prunables: list[Prunable],
    batch: tuple[Tensor, Tensor] | None,
    generator: torch.Generator,
) -> list[Tensor]:
    """w * Hg with Hg the Hessian of the temperature-scaled cross-entropy times its gradient,
    both on ``batch``."""
    x, y = require_batch(batch, "grasp")
    params = [p.param for p in prunables]
    with scoring_state(model, params):
        # First pass: g, a constant for the second pass, zero on pruned weights (see above).
        loss = F.cross_entropy(model(x) / TEMPERATURE, y)
        g = [
            t.detach() * p.mask
            for t, p in zip(
                grads_or_zeros(torch.autograd.grad(loss, params, allow_unused=True), prunables),
                prunables, strict=True)
        ]
        # Second pass: d(g_const . grad L)/dw = H g.
        loss = F.cross_entropy(model(x) / TEMPERATURE, y)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        z = sum(
            ((gc * gr).sum() for gc, gr in zip(g, grads, strict=True) if gr is not None),
            torch.zeros((), device=x.device),
        )
        if z.requires_grad:
            hg = grads_or_zeros(torch.autograd.grad(z, params, allow_unused=True), prunables)
        else:  # the output depends on no prunable parameter
            hg = [torch.zeros_like(p) for p in params]
    return [h.detach() * p.detach() for h, p in zip(hg, params, strict=True)]

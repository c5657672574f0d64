"""SynFlow (Tanaka et al. 2020): data-free synaptic saliency |w * dR/dw| of the linearized net.

R = sum(f(1)) where f is the model with every parameter replaced by its absolute value, biases
and batch-norm shifts zeroed, batch norm on its running variance, fed an all-ones input. R is
then the sum over all input-output paths of the product of |w| along each path, and a weight's
score is the total flow of the paths through it.

Why float64: R is a product of per-layer |W| sums over the depth of the net and overflows
float32 on deep nets (ResNet-110 reaches ~1e140). The conversion is done in place, parameter by
parameter: each float32 tensor is replaced by its float64 absolute value and only its sign bits
(a bool tensor, 1 byte per entry) are kept, so the extra memory while scoring is the float64
excess (1x the float32 bytes) + the signs (0.25x) + float64 gradients (2x), which then become
the scores. Values round-trip exactly: float32 -> float64 -> float32 is lossless.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from prunetui.core.masks import Prunable
from prunetui.core.pruners.snip import scoring_state

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass
class _Saved:
    """How to restore one parameter: the original tensor (biases, kept whole: small), or the
    sign bits and dtype (weights: rebuilt from their float64 magnitude)."""

    param: nn.Parameter
    original: Tensor | None = None
    negative: Tensor | None = None
    dtype: torch.dtype | None = None


def _unique_params(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """(attribute name, parameter) once per parameter, shared ones included once."""
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) not in seen:
                seen.add(id(param))
                yield name, param


@contextmanager
def linearized(model: nn.Module) -> Iterator[dict[int, Tensor]]:
    """Put ``model`` in SynFlow's linear, all-positive float64 form; restore it exactly on exit.

    Yields, for every bias-like parameter (zeroed while scoring), its original |value| keyed by
    ``id(param)``: a prunable bias's score is |b| times the flow through its unit.
    """
    saved: list[_Saved] = []
    buffers: list[tuple[nn.Module, str, Tensor]] = []
    bias_abs: dict[int, Tensor] = {}
    try:
        with torch.no_grad():
            for name, param in _unique_params(model):
                if not param.is_floating_point():
                    continue
                if name == "bias":
                    # Biases (and batch-norm shifts) would add flow that no weight carries.
                    saved.append(_Saved(param, original=param.data))
                    bias_abs[id(param)] = param.data.abs().double()
                    param.data = torch.zeros_like(param.data, dtype=torch.float64)
                else:
                    negative = torch.signbit(param.data)  # keeps -0.0 exact too
                    saved.append(_Saved(param, negative=negative, dtype=param.dtype))
                    # Assigning .data drops the float32 storage: no full copy stays alive.
                    param.data = param.data.to(torch.float64).abs_()
            for module in model.modules():
                for bname, buf in module.named_buffers(recurse=False):
                    if not buf.is_floating_point():
                        continue
                    buffers.append((module, bname, buf))
                    if isinstance(module, _BATCH_NORMS) and bname == "running_mean":
                        new = torch.zeros_like(buf, dtype=torch.float64)  # a shift, like a bias
                    else:
                        new = buf.to(torch.float64).abs()
                    setattr(module, bname, new)
        yield bias_abs
    finally:
        with torch.no_grad():
            for s in saved:
                if s.original is not None:
                    s.param.data = s.original
                else:
                    assert s.negative is not None and s.dtype is not None
                    magnitude = s.param.data.to(s.dtype)
                    s.param.data = torch.where(s.negative, magnitude.neg(), magnitude)
            for module, bname, buf in buffers:
                setattr(module, bname, buf)


def input_shape(model: nn.Module, batch: tuple[Tensor, Tensor] | None) -> tuple[int, ...]:
    """One sample's shape: from ``batch`` when given, else from a ``model.input_shape``."""
    if batch is not None:
        return tuple(batch[0].shape[1:])
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError("synflow needs the input shape: pass a batch (any data of that shape)")
    return tuple(int(d) for d in shape)


def score(
    model: nn.Module,
    prunables: list[Prunable],
    batch: tuple[Tensor, Tensor] | None,
    generator: torch.Generator,
) -> list[Tensor]:
    """|w * dR/dw| in float64 (finite on deep nets). Masked-out weights must already be zero
    in the parameters (``apply_masks``), so they carry no flow."""
    shape = input_shape(model, batch)
    params = [p.param for p in prunables]
    if not params:
        return []
    device = batch[0].device if batch is not None else params[0].device
    with scoring_state(model, params), linearized(model) as bias_abs:
        ones = torch.ones((1, *shape), dtype=torch.float64, device=device)
        flow = model(ones).sum()
        grads: list[Tensor | None] = list(torch.autograd.grad(flow, params, allow_unused=True))
        del flow, ones  # free the graph before building the scores
        scores: list[Tensor] = []
        for i, param in enumerate(params):
            g = grads[i]
            grads[i] = None  # hand the buffer over to the scores
            magnitude = bias_abs.get(id(param), param.data)
            if g is None:
                scores.append(torch.zeros_like(param.data, dtype=torch.float64))
            else:
                # In place: the gradient buffer becomes the score, no second 2x allocation.
                scores.append(g.mul_(magnitude).abs_())
    return scores

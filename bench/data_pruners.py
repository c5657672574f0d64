"""Benchmark 3: SNIP and GraSP on vgg16 (CIFAR shape) with one batch of 100 images, c=1,
global: prunetui must be no slower than the straightforward implementations.

Baselines, the SynFlow repository's ``pruners.SNIP`` / ``pruners.GraSP`` plus
``Pruner._global_mask``, on a plain model (no mask in the forward pass: the gradient of a mask
of ones is the weight's gradient times the weight, which is what is computed):

- SNIP: ``loss.backward()``; ``torch.clone(p.grad * p).abs_()`` per weight; normalized by the
  sum of all scores.
- GraSP (temperature 200): first gradients with ``autograd.grad`` flattened into one vector;
  second pass with ``create_graph=True``, ``(g_stopped * g).sum().backward()`` to get Hg;
  ``torch.clone(p.grad * p.data)``, normalized by |sum| + 1e-10.
- Masks: ``torch.cat`` of all scores, ``torch.kthvalue``, ``torch.where(score <= threshold,
  0, 1)`` per layer.

prunetui: ``core.pruners.schedule.prune(model, prunables, 'snip'|'grasp', 1.0, iterations=1,
batch=(x, y))``. Both in eval mode (as both codes score). ``--quick`` uses 10 images (1 per
class) instead of 100: both sides do the same passes on the same batch, so the ratio still
compares the implementations; ``--full`` uses 100.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.synflow import _global_mask, _overlap, masked_weights
from bench.timing import Context, Row, alternate, speedup_row

MODEL = "vgg16"
SHAPE = (3, 32, 32)
CLASSES = 10
COMPRESSION = 1.0
FULL_IMAGES = 100
QUICK_IMAGES = 10
TARGET = 1.0
TEMPERATURE = 200.0
EPS = 1e-10


def snip_baseline(model: nn.Module, masks: list[Tensor], x: Tensor, y: Tensor,
                  compression: float) -> None:
    masked_parameters = list(zip(masks, masked_weights(model), strict=True))
    model.eval()
    model.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    scores: dict[int, Tensor] = {}
    for _, p in masked_parameters:
        assert p.grad is not None
        scores[id(p)] = torch.clone(p.grad * p).detach().abs_()
        p.grad.data.zero_()
    all_scores = torch.cat([torch.flatten(v) for v in scores.values()])
    norm = torch.sum(all_scores)
    for _, p in masked_parameters:
        scores[id(p)].div_(norm)
    _global_mask(masked_parameters, scores, 10.0 ** (-compression))
    with torch.no_grad():
        for mask, param in masked_parameters:
            param.mul_(mask)


def grasp_baseline(model: nn.Module, masks: list[Tensor], x: Tensor, y: Tensor,
                   compression: float) -> None:
    masked_parameters = list(zip(masks, masked_weights(model), strict=True))
    weights = [p for _, p in masked_parameters]
    model.eval()
    model.zero_grad()
    output = model(x) / TEMPERATURE
    loss = F.cross_entropy(output, y)
    grads = torch.autograd.grad(loss, weights, create_graph=False)
    stopped_grads = torch.cat([g.reshape(-1) for g in grads if g is not None])
    output = model(x) / TEMPERATURE
    loss = F.cross_entropy(output, y)
    grads = torch.autograd.grad(loss, weights, create_graph=True)
    flatten_grads = torch.cat([g.reshape(-1) for g in grads if g is not None])
    gnorm = (stopped_grads * flatten_grads).sum()
    gnorm.backward()
    scores: dict[int, Tensor] = {}
    for _, p in masked_parameters:
        assert p.grad is not None
        scores[id(p)] = torch.clone(p.grad * p.data).detach()
        p.grad.data.zero_()
    all_scores = torch.cat([torch.flatten(v) for v in scores.values()])
    norm = torch.abs(torch.sum(all_scores)) + EPS
    for _, p in masked_parameters:
        scores[id(p)].div_(norm)
    _global_mask(masked_parameters, scores, 10.0 ** (-compression))
    with torch.no_grad():
        for mask, param in masked_parameters:
            param.mul_(mask)


def run(ctx: Context) -> list[Row]:
    from prunetui.core.models import build_model

    n = QUICK_IMAGES if ctx.quick else FULL_IMAGES
    torch.manual_seed(0)
    template = build_model(MODEL, SHAPE, CLASSES)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, *SHAPE, generator=gen)
    y = torch.arange(n) % CLASSES
    rows = []
    for name, base_fn in (("snip", snip_baseline), ("grasp", grasp_baseline)):
        ctx.log(f"{name} ...")
        rows.append(_measure(ctx, name, base_fn, template, x, y))
    return rows


def _measure(ctx: Context, name: str, base_fn: Callable[..., None], template: nn.Module,
             x: Tensor, y: Tensor) -> Row:
    from prunetui.core.masks import attach_masks
    from prunetui.core.pruners.schedule import prune

    final: dict[str, list[Tensor]] = {}

    def baseline(xb: Tensor = x, yb: Tensor = y) -> float:
        model = copy.deepcopy(template)
        masks = [torch.ones_like(w) for w in masked_weights(model)]
        start = time.perf_counter()
        base_fn(model, masks, xb, yb, COMPRESSION)
        elapsed = time.perf_counter() - start
        if xb is x:
            final.setdefault("baseline", masks)
        return elapsed

    def prunetui(xb: Tensor = x, yb: Tensor = y) -> float:
        model = copy.deepcopy(template)
        start = time.perf_counter()
        prunables = attach_masks(model)
        prune(model, prunables, name, COMPRESSION, iterations=1, batch=(xb, yb),
              generator=torch.Generator().manual_seed(0))
        elapsed = time.perf_counter() - start
        if xb is x:
            final.setdefault("prunetui", [p.mask for p in prunables])
        return elapsed

    # Warm-up on a 2-image batch: same kernels and allocations, a fraction of the time.
    baseline(x[:2], y[:2])
    prunetui(x[:2], y[:2])
    base_s, new_s = alternate(baseline, prunetui, ctx.repeats, warmup=0, log=ctx.log)
    agree = _overlap(final["baseline"], final["prunetui"])
    n = len(x)
    scale = f"{n} images" + (f" (quick; --full: {FULL_IMAGES})" if n != FULL_IMAGES else "")
    label = "SNIP" if name == "snip" else "GraSP"
    return speedup_row(
        f"{label} vgg16 c=1 global, {n} images (s)", base_s, new_s, TARGET,
        note=f"{scale}; masks: {agree['overlap']:.6f} of kept weights agree "
             f"({agree['kept_baseline']:,} vs {agree['kept_prunetui']:,} kept)",
        data={"images": n, "masks": agree})

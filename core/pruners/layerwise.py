"""Layerwise random baselines: a density rule fixes how many weights each layer keeps, and the
schedule keeps that many at random positions within the layer (Liu et al. 2022, 'The
Unreasonable Effectiveness of Random Pruning').

Each rule maps the prunables and the global count ``k`` to per-layer counts that sum to ``k``
exactly. Densities are computed in exact rational arithmetic (``Fraction``), so the counts do
not depend on float rounding, and turned into integers by ``apportion``'s largest-remainder
rounding (earlier layer first on equal remainders).

- ``erk``: density of a layer proportional to sum(shape) / prod(shape), i.e.
  (n_in + n_out + k_h + k_w) / (n_in * n_out * k_h * k_w) for a conv weight of shape
  (n_out, n_in, k_h, k_w), (n_in + n_out) / (n_in * n_out) for a linear one.
- ``er``: the same without the kernel terms: (n_in + n_out) / (n_in * n_out) from the first two
  dimensions only.
  For both, one scale factor is chosen so that the kept total is ``k``; a layer whose density
  would exceed 1 is kept dense and the scale factor is recomputed over the other layers, until
  none exceeds 1. A 1-D prunable (a bias or batch-norm parameter, with ``--prune-bias`` or
  ``--prune-batchnorm``) has sum/prod = 1, far above a weight matrix's ratio, so it is among
  the first to be kept dense.
- ``uniform``: the same density in every layer.
- ``uniform-plus``: the first weight tensor of more than one dimension (the first conv or
  linear layer) dense, the last one (the classifier) at least 20% dense (ceil(n / 5) entries),
  every other prunable at one common density (Gale et al. 2019, as Liu et al. 2022 use it).
  When the first layer dense plus 20% of the last exceed ``k``, the rule cannot be met: it is
  refused with a ``ConfigError`` naming the largest compression that fits, rather than capped
  into some other rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction

from prunetui.core.errors import ConfigError
from prunetui.core.masks import Prunable

# The share of the last layer uniform-plus keeps at least (Liu et al. 2022: 80% sparsity).
LAST_SHARE = Fraction(1, 5)


def erk(prunables: list[Prunable], k: int) -> list[int]:
    """Per-layer counts by the Erdős–Rényi-Kernel rule (module docstring)."""
    return _scaled(prunables, k, lambda shape: Fraction(sum(shape), math.prod(shape)))


def er(prunables: list[Prunable], k: int) -> list[int]:
    """Per-layer counts by the Erdős–Rényi rule: ERK without the kernel dimensions."""
    return _scaled(prunables, k, lambda shape: Fraction(sum(shape[:2]), math.prod(shape[:2])))


def uniform(prunables: list[Prunable], k: int) -> list[int]:
    """Per-layer counts at one density: ``k`` split in proportion to layer size."""
    sizes = _sizes(prunables, k)
    return apportion(k, sizes, sizes)


def uniform_plus(prunables: list[Prunable], k: int) -> list[int]:
    """Per-layer counts by the uniform+ rule: first layer dense, last at least 20%, the rest
    uniform (module docstring). ``ConfigError`` when the first two alone exceed ``k``."""
    sizes = _sizes(prunables, k)
    layers = [i for i, p in enumerate(prunables) if p.param.dim() > 1]
    if not layers:
        return uniform(prunables, k)
    first, last = layers[0], layers[-1]
    last_min = math.ceil(LAST_SHARE * sizes[last]) if last != first else 0
    need = sizes[first] + last_min
    if k < need:
        raise ConfigError(_too_few(prunables, first, last, need, k, sum(sizes)))
    targets: list[Fraction] = [Fraction(0)] * len(sizes)
    targets[first] = Fraction(sizes[first])
    rest = [i for i in range(len(sizes)) if i != first]
    left = k - sizes[first]
    density = Fraction(left, sum(sizes[i] for i in rest)) if rest else Fraction(0)
    if last != first and density * sizes[last] < last_min:
        # The common density would leave the last layer under 20%: it gets its minimum and
        # the others share what is left, at a density below the common one (so at most 1).
        targets[last] = Fraction(last_min)
        rest.remove(last)
        left -= last_min
        middle = sum(sizes[i] for i in rest)
        density = Fraction(left, middle) if middle else Fraction(0)
    for i in rest:
        targets[i] = density * sizes[i]
    return _round(k, targets, sizes)


def apportion(k: int, sizes: list[int], caps: list[int]) -> list[int]:
    """Split ``k`` over layers of ``sizes`` entries in proportion to size (largest-remainder
    rounding, earlier layer first on equal remainders), layer i getting at most ``caps[i]``.
    The parts sum to ``k`` exactly (``k <= sum(caps)`` required)."""
    total = sum(sizes)
    if k > sum(caps):
        raise ValueError(f"cannot keep {k} entries of layers holding {sum(caps)}")
    if total == 0:
        return [0] * len(sizes)
    # Integer arithmetic: the exact share is k*n/total, no float rounding to disagree with.
    parts = [min(k * n // total, cap) for n, cap in zip(sizes, caps, strict=True)]
    left = k - sum(parts)
    order = sorted(range(len(sizes)), key=lambda i: (-((k * sizes[i]) % total), i))
    for i in order:
        if left == 0:
            break
        if parts[i] < caps[i]:
            parts[i] += 1
            left -= 1
    # Only when caps bind (masks that did not start full): fill the spare room in order.
    for i in order:
        if left == 0:
            break
        extra = min(left, caps[i] - parts[i])
        parts[i] += extra
        left -= extra
    return parts


LayerCounts = Callable[[list[Prunable], int], list[int]]

RULES: dict[str, LayerCounts] = {
    "erk": erk,
    "er": er,
    "uniform": uniform,
    "uniform-plus": uniform_plus,
}


def _sizes(prunables: list[Prunable], k: int) -> list[int]:
    """Entries per prunable; ``ValueError`` unless ``0 <= k <= total``."""
    sizes = [p.param.numel() for p in prunables]
    if not 0 <= k <= sum(sizes):
        raise ValueError(f"cannot keep {k} entries of layers holding {sum(sizes)}")
    return sizes


def _scaled(prunables: list[Prunable], k: int,
            ratio: Callable[[tuple[int, ...]], Fraction]) -> list[int]:
    """Counts with density min(1, eps * ratio(shape)) per layer, eps such that they sum to
    ``k``: layers that would exceed 1 are dense and eps is recomputed over the others, until
    none does (each round only adds dense layers, so this ends within one round per layer)."""
    sizes = _sizes(prunables, k)
    ratios = [ratio(tuple(p.param.shape)) if n else Fraction(0)
              for p, n in zip(prunables, sizes, strict=True)]
    dense: set[int] = set()
    while True:
        free = [i for i, n in enumerate(sizes) if n and i not in dense]
        weight = sum((ratios[i] * sizes[i] for i in free), Fraction(0))
        if not free or weight == 0:
            scale = Fraction(0)
            break
        scale = (k - sum(sizes[i] for i in dense)) / weight
        over = {i for i in free if scale * ratios[i] > 1}
        if not over:
            break
        dense |= over
    targets = [Fraction(n) if i in dense else scale * ratios[i] * n
               for i, n in enumerate(sizes)]
    return _round(k, targets, sizes)


def _round(k: int, targets: Sequence[Fraction], sizes: list[int]) -> list[int]:
    """Integer counts summing to ``k`` from exact targets summing to ``k``: largest remainder,
    by ``apportion`` on the targets scaled to integers by their common denominator (its shares
    k * w_i / sum(w) are then exactly the targets)."""
    assert sum(targets) == k, (targets, k)
    scale = math.lcm(*(t.denominator for t in targets)) if targets else 1
    weights = [int(t * scale) for t in targets]
    return apportion(k, weights, sizes)


def _too_few(prunables: list[Prunable], first: int, last: int, need: int, k: int,
             total: int) -> str:
    """Why uniform-plus cannot keep ``k``, and the largest compression that it can."""
    # round(total * 10^-c) >= need  <=>  c <= log10(total / (need - 0.5)); two decimals down.
    most = math.floor(100 * math.log10(total / (need - 0.5))) / 100
    what = f"{prunables[first].name} dense ({prunables[first].param.numel():,} weights)"
    if last != first:
        what += f" and 20% of {prunables[last].name}"
    return (f"pruner uniform-plus keeps {what}: {need:,} of {total:,} prunable weights, more "
            f"than the {k:,} to keep; use a compression of at most {most:.2f}, or another "
            "pruner")

"""Turn scores into masks: the iterative schedule, global or per-layer scope, exact counts.

Every iteration keeps exactly k_i entries, the k_i highest scores among those still kept (so
masks are nested: iterative pruning only removes), ties going to the lower position in module
order then flat index. The last iteration keeps exactly ``kept_count(total, compression)``.

Selection is O(n) per iteration instead of a sort: a random sample of the scores brackets the
k-th largest value, one pass keeps everything above the bracket, and only the few entries inside
it are ranked (recursively, with the same method, until they are few enough to sort).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from prunetui.core import catalog
from prunetui.core.config import check_leaves_weights, kept_count
from prunetui.core.errors import ConfigError, choices_message
from prunetui.core.events import CancelToken
from prunetui.core.masks import Prunable, apply_masks
from prunetui.core.pruners import SCORERS

OnStep = Callable[[int, int, float], None]

# Below this many candidates, ranking them by a stable sort is as fast as bracketing.
_SORT_LIMIT = 1 << 17
# Target number of live entries in the sample that brackets the k-th largest score.
_SAMPLE = 1 << 16
_NEG_INF = float("-inf")


def kept_schedule(total: int, compression: float, schedule: str, iterations: int) -> list[int]:
    """Entries kept after each of ``iterations`` steps: round(total * d_i), with
    d_i = 10^(-c*i/N) (exponential) or 1 - (1 - 10^-c)*i/N (linear), non-increasing, and the
    last exactly ``kept_count(total, compression)``."""
    final = kept_count(total, compression)
    out: list[int] = []
    previous = total
    for i in range(1, iterations + 1):
        if i == iterations:
            # Not from the formula: c*N/N need not equal c in floating point.
            k = final
        else:
            frac = i / iterations
            if schedule == "exponential":
                density = 10.0 ** (-compression * frac)
            else:
                density = 1.0 - (1.0 - 10.0 ** (-compression)) * frac
            k = max(final, min(previous, round(total * density)))
        out.append(k)
        previous = k
    return out


def prune(
    model: nn.Module,
    prunables: list[Prunable],
    scorer_name: str,
    compression: float,
    *,
    scope: str = "global",
    schedule: str = "exponential",
    iterations: int,
    batch: tuple[Tensor, Tensor] | None,
    generator: torch.Generator,
    on_step: OnStep | None = None,
    cancel: CancelToken | None = None,
) -> None:
    """Prune ``prunables`` in ``iterations`` steps to keep 10^-compression of their entries.

    Starts from the current masks (entries already masked out stay out). After each step the
    masks are set and applied, ``on_step(i, iterations, kept / total)`` is called and ``cancel``
    checked. The scorer sees the model with the previous step's masks applied.
    """
    if scorer_name not in SCORERS:
        raise ConfigError(choices_message("pruner", scorer_name, list(SCORERS)))
    if scope not in catalog.SCOPES:
        raise ConfigError(choices_message("scope", scope, list(catalog.SCOPES)))
    if schedule not in catalog.SCHEDULES:
        raise ConfigError(choices_message("schedule", schedule, list(catalog.SCHEDULES)))
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ConfigError(f"invalid prune-iterations {iterations!r}; it must be an integer >= 1")
    if not math.isfinite(compression) or compression < 0:
        raise ConfigError(f"invalid compression {compression!r}; it must be >= 0")
    total = sum(p.mask.numel() for p in prunables)
    if total and compression > 0:
        check_leaves_weights(total, compression)
    scorer = SCORERS[scorer_name]
    # Scorers (SynFlow above all) assume masked-out weights are zero in the parameters.
    apply_masks(prunables)
    for i, k in enumerate(kept_schedule(total, compression, schedule, iterations), start=1):
        alive = [int(torch.count_nonzero(p.mask)) for p in prunables]
        k = min(k, sum(alive))  # masks only shrink: what is already gone cannot come back
        if k < sum(alive):
            scores = scorer(model, prunables, batch, generator)
            _set_masks(prunables, scores, k, scope, alive)
            del scores  # free them before the next scoring pass allocates its own
            apply_masks(prunables)
        if on_step is not None:
            on_step(i, iterations, k / total if total else 1.0)
        if cancel is not None:
            cancel.check()


@torch.no_grad()
def _set_masks(
    prunables: list[Prunable], scores: list[Tensor], k: int, scope: str, alive: list[int]
) -> None:
    """Overwrite the masks with the top ``k`` live scores (globally or apportioned per layer)."""
    if len(scores) != len(prunables):
        raise ValueError(f"scorer returned {len(scores)} score tensors for {len(prunables)}")
    dtype = torch.float32
    for s in scores:
        dtype = torch.promote_types(dtype, s.dtype if s.is_floating_point() else torch.float64)
    flats: list[Tensor] = []
    for p, s in zip(prunables, scores, strict=True):
        if s.shape != p.param.shape:
            raise ValueError(
                f"score for {p.name} has shape {tuple(s.shape)}, "
                f"the parameter {tuple(p.param.shape)}"
            )
        flat = s.detach().to(dtype=dtype, device=p.mask.device).reshape(-1)
        # A NaN would be neither kept nor ranked. The sum is a cheap first test: it is finite
        # unless some entry is NaN or infinite (or it overflows); only then look closer.
        if not bool(torch.isfinite(flat.sum())) and bool(torch.isnan(flat).any()):
            raise ValueError(f"scores for {p.name} contain NaN")
        # Entries pruned earlier rank below every live one; scores are >= 0, so -inf marks
        # them unambiguously. The scorer handed over these tensors: reuse them in place.
        torch.where(p.mask.reshape(-1), flat, flat.new_full((), _NEG_INF), out=flat)
        flats.append(flat)
    # The scores now carry the old masks (as -inf), so the new ones can be written straight
    # into the mask buffers, without a temporary and a copy.
    outs = [
        p.mask.view(-1)
        if p.mask.is_contiguous()
        else torch.empty(f.shape, dtype=torch.bool, device=f.device)
        for p, f in zip(prunables, flats, strict=True)
    ]
    if scope == "global":
        _select(flats, k, outs, sum(alive))
    else:
        quotas = apportion(k, [f.numel() for f in flats], alive)
        for flat, out, quota, live in zip(flats, outs, quotas, alive, strict=True):
            _select([flat], quota, [out], live)
    for p, out in zip(prunables, outs, strict=True):
        if not p.mask.is_contiguous():
            p.set_mask(out.view(p.mask.shape))


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


def _select(values: list[Tensor], k: int, outs: list[Tensor], alive: int) -> None:
    """Write into ``outs`` (flat bool) the ``k`` largest of ``values`` (flat; -inf marks an
    excluded entry; ``alive`` entries are not -inf), ties to the lower position (tensor order,
    then index). Requires ``0 <= k <= alive``."""
    if k <= 0:
        for out in outs:
            out.fill_(False)
        return
    if k >= alive:
        for v, out in zip(values, outs, strict=True):
            torch.gt(v, _NEG_INF, out=out)
        return
    if alive <= _SORT_LIMIT:
        _select_sorted(values, k, outs)
        return
    if alive * 8 < sum(v.numel() for v in values):
        # Mostly pruned already: gather the live entries once, so that sampling and the
        # passes below run over them rather than over every dead entry.
        positions, live = _compact(values)
        chosen = torch.empty(alive, dtype=torch.bool, device=live.device)
        _select([live], k, [chosen], alive)
        _scatter(positions, chosen, outs)
        return
    sample = torch.sort(_sample(values, alive), descending=True).values
    m = sample.numel()
    if m < 2:
        _select_sorted(values, k, outs)
        return
    # Where the k-th largest should sit in the sample, and a margin of several binomial
    # standard deviations around it; a miss only widens the margin and costs another pass.
    q = k / alive
    pos = q * m
    margin = 4.0 * math.sqrt(m * q * (1.0 - q)) + 16.0
    while True:
        hi_i, lo_i = math.floor(pos - margin), math.ceil(pos + margin)
        hi = sample[hi_i] if hi_i >= 0 else None  # None: +inf, nothing is "above"
        lo = sample[lo_i] if lo_i < m else None  # None: every live entry may be in the band
        if hi is None and lo is None:
            _select_sorted(values, k, outs)
            return
        above = 0
        for v, out in zip(values, outs, strict=True):
            if hi is None:
                out.fill_(False)
            else:
                torch.gt(v, hi, out=out)
                above += int(torch.count_nonzero(out))
        if above > k:
            margin *= 4.0
            continue
        band_pos: list[Tensor] = []
        band_val: list[Tensor] = []
        for v, out in zip(values, outs, strict=True):
            band = torch.ge(v, lo) if lo is not None else torch.gt(v, _NEG_INF)
            band ^= out  # out (> hi) lies inside band (>= lo): xor leaves lo <= v <= hi
            idx = band.nonzero().squeeze(1)
            band_pos.append(idx)
            band_val.append(v[idx])
        size = sum(i.numel() for i in band_pos)
        if above + size < k:
            margin *= 4.0
            continue
        break
    need = k - above
    vals = torch.cat(band_val)
    if need == size:
        chosen = torch.ones(size, dtype=torch.bool, device=vals.device)
    elif hi is not None and lo is not None and bool(hi == lo):
        # All tied: the lowest positions win, and the band is already in position order.
        chosen = torch.zeros(size, dtype=torch.bool, device=vals.device)
        chosen[:need] = True
    elif size == alive:  # the bracket did not narrow anything: rank directly
        _select_sorted(values, k, outs)
        return
    else:
        chosen = torch.empty(size, dtype=torch.bool, device=vals.device)
        _select([vals], need, [chosen], size)
    start = 0
    for idx, out in zip(band_pos, outs, strict=True):
        picked = chosen[start : start + idx.numel()]
        out[idx[picked]] = True
        start += idx.numel()


def _sample(values: list[Tensor], alive: int) -> Tensor:
    """About ``_SAMPLE`` live entries drawn uniformly at random (with replacement), from a
    fixed seed so that pruning stays deterministic. Not a strided slice: scores are structured
    by channel and kernel position, and a regular stride can alias with that structure."""
    n = sum(v.numel() for v in values)
    draws = math.ceil(_SAMPLE * n / alive)
    gen = torch.Generator().manual_seed(0)
    parts = []
    for v in values:
        count = math.ceil(draws * v.numel() / n)
        if count and v.numel():
            idx = torch.randint(v.numel(), (count,), generator=gen).to(v.device)
            parts.append(v[idx])
    sample = torch.cat(parts)
    return sample[sample > _NEG_INF]


def _select_sorted(values: list[Tensor], k: int, outs: list[Tensor]) -> None:
    """``_select`` by a stable sort of the live entries (ties keep position order)."""
    positions, live = _compact(values)
    order = torch.sort(live, descending=True, stable=True).indices[:k]
    chosen = torch.zeros(live.numel(), dtype=torch.bool, device=live.device)
    chosen[order] = True
    _scatter(positions, chosen, outs)


def _compact(values: list[Tensor]) -> tuple[list[Tensor], Tensor]:
    """Positions of the live (not -inf) entries of each tensor, and their values concatenated
    in position order."""
    positions = [torch.gt(v, _NEG_INF).nonzero().squeeze(1) for v in values]
    return positions, torch.cat([v[idx] for v, idx in zip(values, positions, strict=True)])


def _scatter(positions: list[Tensor], chosen: Tensor, outs: list[Tensor]) -> None:
    """Set ``outs`` to True exactly at the ``positions`` whose entry in ``chosen`` is True."""
    start = 0
    for idx, out in zip(positions, outs, strict=True):
        out.fill_(False)
        out[idx[chosen[start : start + idx.numel()]]] = True
        start += idx.numel()

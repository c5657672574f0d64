"""What a (pruned) model costs and looks like: per-layer FLOPs, weight histograms, layer collapse
and inference timing.

FLOP convention (the reference report's, from the SynFlow code), per forward pass of one input:

- conv: weight term ``in·out·k·k·H_out·W_out``, bias term ``out·H_out·W_out``;
- linear: weight term ``in·out``, bias term ``out`` (times any leading positions, e.g. tokens);
- batch norm (affine only): weight term ``C·H·W`` and bias term ``C·H·W``, one multiply and one
  add per output element (``C`` alone for 1-d batch norm).

Each weight term is scaled by its layer's density, so the pruned term is exactly
``remaining · H_out · W_out`` (an integer); a bias term is scaled by the bias mask's density when
biases are masked. Pooling, activations and residual additions cost nothing here.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from prunetui.core.masks import find_prunable

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass
class LayerStat:
    """Size, sparsity and FLOPs of one conv, linear or batch-norm layer."""

    name: str  # module name, e.g. 'layers.0.conv'
    kind: str  # conv | linear | batchnorm
    shape: tuple[int, ...]  # the weight's shape
    params: int  # weight entries
    remaining: int  # weight entries kept by the mask (all of them without one)
    density: float
    flops_dense: int  # weight term, dense
    flops_pruned: int  # weight term scaled by density: remaining · positions, exact
    bias_flops_dense: int
    bias_flops_pruned: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``shape`` as a list)."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


def _kind(module: nn.Module) -> str | None:
    if isinstance(module, _CONVS):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, _NORMS) and module.affine:
        return "batchnorm"
    return None


def _positions(kind: str, out: Tensor) -> int:
    """How many times each weight entry is used for one input (batch of 1)."""
    if kind == "linear":
        # (1, *, out_features): one use per leading position; 1 for the usual (1, out).
        return math.prod(out.shape[1:-1])
    # conv / batch norm: (1, C, *spatial), one use per output position.
    return math.prod(out.shape[2:])


def _kept(module: nn.Module, param: str, total: int) -> int:
    mask = getattr(module, f"{param}_mask", None)
    if isinstance(mask, Tensor):
        return int(mask.sum().item())
    return total


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    for b in model.buffers():
        if b.is_floating_point():
            return b.device, b.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def _eval_flags(model: nn.Module) -> dict[nn.Module, bool]:
    # Submodules may disagree (e.g. frozen BN), so restore each flag rather than model.train().
    return {m: m.training for m in model.modules()}


def _restore_flags(flags: dict[nn.Module, bool]) -> None:
    for m, training in flags.items():
        m.training = training


@torch.no_grad()
def layer_stats(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerStat]:
    """Per-layer statistics of every conv, linear and affine batch-norm layer, in module order.

    Output sizes come from forward hooks on one input of shape ``(1, *input_shape)`` on the
    model's device, in eval mode (each module's mode is restored afterwards). Layers without a
    mask count as dense. A module called several times counts once per call; one never called
    costs nothing.
    """
    layers = [(name, m, k) for name, m in model.named_modules() if (k := _kind(m)) is not None]
    positions: dict[str, int] = {name: 0 for name, _, _ in layers}

    def hook_for(name: str, kind: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(_module: nn.Module, _inputs: Any, out: Any) -> None:
            positions[name] += _positions(kind, out)

        return hook

    handles = [m.register_forward_hook(hook_for(name, kind)) for name, m, kind in layers]
    flags = _eval_flags(model)
    device, dtype = _device_dtype(model)
    try:
        model.eval()
        model(torch.zeros(1, *input_shape, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        _restore_flags(flags)

    stats: list[LayerStat] = []
    for name, m, kind in layers:
        weight = m.weight
        assert isinstance(weight, Tensor)
        params = weight.numel()
        remaining = _kept(m, "weight", params)
        pos = positions[name]
        bias = m.bias
        n_bias = bias.numel() if isinstance(bias, Tensor) else 0
        kept_bias = _kept(m, "bias", n_bias) if n_bias else 0
        # The per-output-element convention: one bias add per output channel and position,
        # i.e. out·H·W for conv and out for linear; n_bias is 'out' / 'C' in every case.
        stats.append(LayerStat(
            name=name,
            kind=kind,
            shape=tuple(weight.shape),
            params=params,
            remaining=remaining,
            density=remaining / params if params else 0.0,
            flops_dense=params * pos,
            flops_pruned=remaining * pos,
            bias_flops_dense=n_bias * pos,
            bias_flops_pruned=kept_bias * pos,
        ))
    return stats


def flops(stats: list[LayerStat]) -> tuple[int, int]:
    """(dense, pruned) FLOPs of one forward pass: weight plus bias terms of every layer."""
    dense = sum(s.flops_dense + s.bias_flops_dense for s in stats)
    pruned = sum(s.flops_pruned + s.bias_flops_pruned for s in stats)
    return dense, pruned


@dataclass
class Histogram:
    """Kept weights of one layer, as fractions of all its weights per bin."""

    layer: str
    edges: list[float]  # bins + 1 edges, shared by every layer of the model
    fractions: list[float]  # sums to the layer's density


@torch.no_grad()
def weight_histograms(model: nn.Module, bins: int = 50) -> list[Histogram]:
    """Histogram of the kept (mask True) weights of each conv/linear layer, in module order.

    Counts are divided by the layer's total number of weights, pruned ones included, so a
    layer's fractions sum to its density. All layers share one symmetric range
    ``±max |kept weight|`` over the whole model, so their histograms can be compared directly.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    kept: list[tuple[str, Tensor, int]] = []
    for p in find_prunable(model):
        w = p.param.detach()
        mask = getattr(p.module, "weight_mask", None)
        values = w[mask] if isinstance(mask, Tensor) else w.reshape(-1)
        # float64 on the CPU: torch.histogram's only backend, and exact bin assignment.
        kept.append((p.layer, values.to(device="cpu", dtype=torch.float64), w.numel()))
    bound = max((float(v.abs().max()) for _, v, _ in kept if v.numel()), default=0.0)
    if bound == 0.0:
        bound = 1.0  # nothing kept, or all zeros: any non-empty range gives empty/central bins
    edges = torch.linspace(-bound, bound, bins + 1, dtype=torch.float64)
    out: list[Histogram] = []
    for layer, values, total in kept:
        counts, _ = torch.histogram(values, bins=edges)
        out.append(Histogram(layer, edges.tolist(), (counts / total).tolist()))
    return out


@dataclass
class Collapse:
    """What pruning emptied: the layers with nothing kept, and whether any path from input to
    output survives. Only the latter is layer collapse: a residual shortcut can carry the
    signal around an empty layer."""

    empty_layers: list[str]
    disconnected: bool

    @property
    def collapsed(self) -> bool:
        """True when the pruned network cannot pass any signal from its input to its output."""
        return self.disconnected


_NORM_LIKE = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm,
)


def _binarize(out: Any) -> Any:
    if isinstance(out, Tensor) and out.is_floating_point():
        return (out > 0).to(out.dtype)
    if isinstance(out, tuple):
        return tuple(_binarize(o) for o in out)
    if isinstance(out, list):
        return [_binarize(o) for o in out]
    return out


def _norm_as_identity(module: nn.Module, x: Tensor) -> Tensor:
    # A normalisation of the constant all-ones probe would give zeros (x - mean), so a norm layer
    # is treated as the identity times its (masked) scale, broadcast along its channel axis.
    weight = getattr(module, "weight", None)
    if not isinstance(weight, Tensor):
        return x
    if isinstance(module, nn.LayerNorm):
        return x * weight  # scale over the trailing normalized_shape dims
    return x * weight.reshape(1, -1, *([1] * (x.dim() - 2)))


@torch.no_grad()
def detect_collapse(model: nn.Module, input_shape: tuple[int, ...]) -> Collapse:
    """Find conv/linear layers whose weight mask keeps nothing, and whether any path survives.

    Connectivity is checked on a deep copy: every masked parameter becomes its mask as 0/1,
    every other weight 1 (an initialised weight is non-zero), biases 0 (they carry no signal
    from the input), norm layers the identity times their scale. An all-ones input is then
    propagated with each leaf module's output binarised to ``out > 0`` so values stay 0/1 and
    cannot overflow however deep the net. Everything is non-negative, so no sums cancel: the
    output is non-zero exactly when some path of kept weights joins input and output.
    """
    empty = [
        p.layer
        for p in find_prunable(model)
        if isinstance(getattr(p.module, "weight_mask", None), Tensor)
        and not bool(p.mask.any())
    ]

    probe = copy.deepcopy(model)
    probe.eval()
    for module in probe.modules():
        for pname, param in module.named_parameters(recurse=False):
            mask = getattr(module, f"{pname}_mask", None)
            if pname == "bias" or pname.endswith("_bias"):
                param.zero_()
            elif isinstance(mask, Tensor):
                param.copy_(mask.to(param.dtype))
            else:
                param.fill_(1.0)

    def hook(module: nn.Module, inputs: Any, out: Any) -> Any:
        if isinstance(module, _NORM_LIKE) and inputs and isinstance(inputs[0], Tensor):
            out = _norm_as_identity(module, inputs[0])
        return _binarize(out)

    handles = [
        m.register_forward_hook(hook) for m in probe.modules() if next(m.children(), None) is None
    ]
    device, dtype = _device_dtype(probe)
    try:
        result = probe(torch.ones(1, *input_shape, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
    outputs = [result] if isinstance(result, Tensor) else [
        r for r in (result if isinstance(result, (tuple, list)) else ()) if isinstance(r, Tensor)
    ]
    disconnected = not any(bool((o != 0).any()) for o in outputs)
    return Collapse(empty, disconnected)


@dataclass
class Timing:
    """Wall-clock seconds of one full inference pass over the inputs, over several passes."""

    median: float
    min: float
    max: float
    repeats: int
    batch_size: int  # size of the first batch
    images: int  # inputs per pass

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


def _synchronize(device: torch.device) -> None:
    # Kernels run asynchronously: without a sync the clock would stop before the work is done.
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_inference(
    model: nn.Module,
    batches: Callable[[], Iterable[Tensor]],
    device: torch.device,
    repeats: int,
    warmup: int = 1,
) -> Timing:
    """Time full inference passes of ``model`` over the inputs ``batches()`` yields.

    ``batches`` is called once per pass and should yield tensors already on ``device`` (the
    whole test set), so each timed interval is the forward passes plus cheap iteration.
    ``warmup`` untimed passes come first (allocator, cuDNN autotuning, lazy init). The model runs
    in eval mode under ``torch.inference_mode``; each module's mode is restored afterwards.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    flags = _eval_flags(model)
    times: list[float] = []
    images = 0
    batch_size = 0
    try:
        model.eval()
        with torch.inference_mode():
            for i in range(warmup + repeats):
                seen = 0
                _synchronize(device)
                start = time.perf_counter()
                for x in batches():
                    model(x)
                    if seen == 0:
                        batch_size = int(x.shape[0])
                    seen += int(x.shape[0])
                _synchronize(device)
                elapsed = time.perf_counter() - start
                images = seen
                if i >= warmup:
                    times.append(elapsed)
    finally:
        _restore_flags(flags)
    return Timing(
        median=statistics.median(times),
        min=min(times),
        max=max(times),
        repeats=repeats,
        batch_size=batch_size,
        images=images,
    )

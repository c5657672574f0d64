"""Real sparse inference: a pruned model with its dead structure physically removed.

``compact(model, input_shape)`` returns a NEW inference-only module that computes what the
masked model computes (eval mode) with less work:

1. **Structure.** For a plain chain of layers (what ``torch.fx`` traces as one path from input to
   output through ``Linear`` / ``Conv2d`` / ``BatchNorm`` / activations / pools / ``Flatten`` /
   ``Dropout``: the ``fc``, ``conv`` and ``vgg*`` families), output units and filters that can be
   dropped are dropped, with the matching input columns / channels of the next weighted layer:

   - *dead* units, whose masked weights are all zero. Such a unit does not depend on the input:
     it outputs its bias (a constant map for a conv), and whatever the channel-wise layers after
     it make of that (``relu(bias)``, batch norm of it, pooled...). That input-independent
     value times the next layer's weights is computed once, exactly, by running those very
     layers on it, and folded into the next layer: into its bias when the contribution is the
     same at every position (always for a linear layer; for a conv without padding), otherwise
     into a per-position bias map (a padded conv sees the constant only partly at the borders;
     the map makes the compact model specific to ``input_shape``'s spatial size). A dead unit
     whose constant is 0 (``relu`` of a zero or negative bias: the usual case at
     initialization) just disappears.
   - *unused* units, which no kept weight of the next weighted layer reads.

   One forward sweep (dead units, with the cascade: a unit whose only inputs were dead is dead
   in turn) and one backward sweep (unused units, cascading towards the input) reach the fixed
   point. The classifier's outputs and the first layer's inputs are never removed. A layer is
   never emptied: if every unit would go, its first one stays (computed normally).

   The rest is inference plumbing: a batch norm right after a weighted layer is folded into
   its weights and bias, and a ReLU right after one runs in place inside it
   (``CompactLinear`` / ``CompactConv2d`` / ``SparseLinear``), so a small compact net is not
   dominated by per-module call overhead.

2. **Sparse kernels.** Each remaining ``Linear`` whose weight density is at most
   ``sparse_threshold`` (and which has at least ``SPARSE_MIN_SIZE`` entries) runs as a CSR
   ``torch.sparse`` matmul (``SparseLinear``). The default threshold, ``SPARSE_DENSITY`` = 0.05,
   is where CSR started to beat the dense kernel on a 2-core CPU for 100x784 and 512x512 layers
   at batch 256 (``bench/NOTES.md``); ``sparse="measure"`` times both kernels per layer on the
   actual input size instead and keeps the faster. Convolutions stay dense (PyTorch has no
   sparse convolution kernel on the CPU); their removed filters are where their savings come from.

Models that are not such a chain (ResNets: residual additions) fall back to the sparse kernels
only: a copy of the model with the masks multiplied in, mask buffers dropped and eligible
``Linear`` layers as CSR. The returned module is then numerically the masked model, and
``info.structural`` is False with the reason in ``info.fallback``.

The result is always checked against the masked model on a random probe batch (eval mode);
if it disagrees by more than ``atol`` + ``rtol``·|reference| the structural result is discarded
for the fallback, with the error in ``info.fallback``. ``info.max_abs_error`` records the check.

The compact module is for inference only: eval mode, no gradients, parameters frozen, on the
model's device and dtype. Use ``metrics.time_inference`` on it like on any model.
"""

from __future__ import annotations

import copy
import itertools
import math
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Linear layers at or below this weight density run as CSR sparse matmuls ("auto").
SPARSE_DENSITY = 0.05
# Linear layers with fewer entries stay dense: a small dense matmul is always fast.
SPARSE_MIN_SIZE = 4096
# Probe batch for the equivalence check and for sparse="measure".
PROBE_BATCH = 8
MEASURE_BATCH = 256

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
# Parameter-free modules that act on every element (or channel) independently.
_ELEMENTWISE = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Identity,
    nn.Dropout, nn.Dropout2d,
)
# Parameter-free spatial ops that act on every channel independently.
_POOLS = (
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
)


# ---------------------------------------------------------------------------------------------
# What compact() reports


@dataclass
class LayerInfo:
    """One weighted layer before and after compaction."""

    name: str  # module name in the original model
    kind: str  # linear | conv
    in_before: int
    in_after: int
    out_before: int
    out_after: int
    nonzero: int  # non-zero weights kept
    kernel: str  # dense | csr
    bias_map: bool = False  # a per-position bias map absorbed dead inputs (conv only)


@dataclass
class CompactInfo:
    """What ``compact`` did. ``structural`` is False when it fell back (``fallback`` says why)."""

    structural: bool
    fallback: str | None
    params_before: int  # parameter entries of the model (masked ones included)
    params_after: int  # dense-equivalent entries of the compact model (rows x cols of CSR)
    stored_after: int  # values actually stored: CSR non-zeros instead of their dense size
    max_abs_error: float  # against the masked model on the probe batch
    input_shape: tuple[int, ...]
    layers: list[LayerInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


class CompactModel(nn.Module):
    """The compact network (``body``, run module by module) and ``info`` (a ``CompactInfo``)."""

    def __init__(self, body: nn.Sequential, info: CompactInfo) -> None:
        super().__init__()
        self.body = body
        self.info = info

    def forward(self, x: Tensor) -> Tensor:
        # The Sequential's loop inlined: one module call less per batch.
        for module in self.body:
            x = module(x)
        return x


# ---------------------------------------------------------------------------------------------
# The modules a compact model is made of. Each weighted one applies the ReLU that followed it
# in the original, in place on its own fresh output (one module call and one tensor fewer), and
# any batch norm that followed it is folded into its weights and bias.


class CompactLinear(nn.Module):
    """``y = x W^T + b``, then ``relu`` in place when ``relu`` (inference only)."""

    weight: Tensor
    bias: Tensor | None

    def __init__(self, weight: Tensor, bias: Tensor | None, relu: bool = False) -> None:
        super().__init__()
        self.out_features, self.in_features = (int(s) for s in weight.shape)
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = (nn.Parameter(bias.detach().clone(), requires_grad=False)
                     if bias is not None else None)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        out = F.linear(x, self.weight, self.bias)
        return torch.relu_(out) if self.relu else out

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, relu={self.relu}")


class SparseLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` stored as a CSR sparse tensor, then ``relu`` in place when
    ``relu`` (inference only)."""

    weight: Tensor
    bias: Tensor

    def __init__(self, weight: Tensor, bias: Tensor | None, relu: bool = False) -> None:
        super().__init__()
        self.out_features, self.in_features = (int(s) for s in weight.shape)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            csr = weight.detach().to_sparse_csr()
        self.register_buffer("weight", csr)
        b = bias.detach().clone() if bias is not None else torch.zeros(
            self.out_features, dtype=weight.dtype, device=weight.device)
        self.register_buffer("bias", b.reshape(-1, 1))
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features)
        # (out x in, CSR) @ (in x N) = out x N; returned as the N x out view.
        out = torch.addmm(self.bias, self.weight, flat.t()).t()
        if self.relu:
            out = torch.relu_(out)
        return out.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        nnz = int(self.weight.values().numel())
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"nnz={nnz}, relu={self.relu}")


class CompactConv2d(nn.Module):
    """A zero-padded 2-d convolution, plus an optional fixed per-position ``bias_map``
    (1 x C x H x W: the exact contribution of removed constant input channels through the zero
    padding; valid only for the input size it was computed for), then ``relu`` in place when
    ``relu``."""

    weight: Tensor
    bias: Tensor | None
    bias_map: Tensor | None

    def __init__(self, weight: Tensor, bias: Tensor | None, stride: tuple[int, ...],
                 padding: tuple[int, ...], dilation: tuple[int, ...],
                 bias_map: Tensor | None = None, relu: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = (nn.Parameter(bias.detach().clone(), requires_grad=False)
                     if bias is not None else None)
        self.register_buffer("bias_map", bias_map.detach().clone()
                             if bias_map is not None else None)
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        out = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
        if self.bias_map is not None:
            out = out.add_(self.bias_map)
        return torch.relu_(out) if self.relu else out

    def extra_repr(self) -> str:
        o, i, kh, kw = self.weight.shape
        return (f"{i}, {o}, kernel_size=({kh}, {kw}), stride={self.stride}, "
                f"padding={self.padding}, bias_map={self.bias_map is not None}, "
                f"relu={self.relu}")


# ---------------------------------------------------------------------------------------------
# The chain


class _Unsupported(Exception):
    """The model is not a chain compact() can restructure; the message says why."""


@dataclass
class _Weighted:
    """A Linear or Conv2d of the chain, as tensors we can slice."""

    name: str
    kind: str  # linear | conv
    weight: Tensor
    bias: Tensor  # zeros when the layer had none (has_bias False)
    has_bias: bool
    module: nn.Module  # the original (for conv hyper-parameters)
    bias_map: Tensor | None = None
    in_before: int = 0
    out_before: int = 0
    # Spatial positions per input channel, as seen by this layer's columns (Flatten before a
    # Linear turns channel c into columns c*S .. c*S+S-1); 1 for a conv.
    cols_per_channel: int = 1


@dataclass
class _Op:
    """A channel-wise module of the chain (batch norm, activation, pool, flatten)."""

    name: str
    module: nn.Module


Step = _Weighted | _Op


def _bake(model: nn.Module) -> nn.Module:
    """A deep copy with every ``<param>_mask`` multiplied into its parameter and dropped."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for module in out.modules():
            for pname, param in list(module.named_parameters(recurse=False)):
                key = f"{pname}_mask"
                mask = module._buffers.get(key)
                if isinstance(mask, Tensor):
                    param.mul_(mask.to(param.dtype))
                    del module._buffers[key]
    out.eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def _chain(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model as an ordered list of (name, leaf module), or ``_Unsupported``."""
    import torch.fx as fx

    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # any tracing failure means "not a plain chain"
        raise _Unsupported(f"torch.fx cannot trace it ({type(e).__name__}: {e})") from e
    steps: list[tuple[str, nn.Module]] = []
    prev: fx.Node | None = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if prev is not None:
                raise _Unsupported("more than one input")
            prev = node
            continue
        if node.op == "output":
            if node.args[0] is not prev:
                raise _Unsupported("the output is not the last layer's")
            break
        if prev is None or node.args[:1] != (prev,) or any(
            isinstance(a, fx.Node) for a in list(node.args[1:]) + list(node.kwargs.values())
        ):
            raise _Unsupported(f"{node.name} does not take only the previous layer's output "
                               "(a residual or branching connection)")
        if len(node.users) != 1:
            raise _Unsupported(f"{node.name}'s output is used more than once")
        if node.op == "call_module":
            steps.append((str(node.target), gm.get_submodule(str(node.target))))
        elif node.op == "call_function" and node.target is torch.flatten:
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            steps.append((node.name, nn.Flatten(int(start), int(end))))
        elif node.op in ("call_function", "call_method") and node.target in (
            F.relu, torch.relu, "relu"
        ):
            steps.append((node.name, nn.ReLU()))
        else:
            raise _Unsupported(f"unsupported operation {node.op} {node.target}")
        prev = node
    return steps


def _steps(model: nn.Module, input_shape: tuple[int, ...]) -> list[Step]:
    """Classify the chain's modules and record the shapes each weighted layer sees."""
    steps: list[Step] = []
    for name, module in _chain(model):
        if isinstance(module, nn.Linear):
            bias = module.bias
            steps.append(_Weighted(
                name, "linear", module.weight.detach().clone(),
                bias.detach().clone() if bias is not None
                else module.weight.new_zeros(module.out_features),
                bias is not None, module))
        elif isinstance(module, nn.Conv2d):
            if module.groups != 1 or module.padding_mode != "zeros":
                raise _Unsupported(f"{name}: grouped or non-zero-padded convolution")
            if isinstance(module.padding, str):
                raise _Unsupported(f"{name}: string padding {module.padding!r}")
            conv_bias: Tensor | None = module.bias
            steps.append(_Weighted(
                name, "conv", module.weight.detach().clone(),
                conv_bias.detach().clone() if conv_bias is not None
                else module.weight.new_zeros(module.out_channels),
                conv_bias is not None, module))
        elif isinstance(module, _BN):
            if module.running_mean is None or module.running_var is None:
                raise _Unsupported(f"{name}: batch norm without running statistics")
            steps.append(_Op(name, module))
        elif isinstance(module, (*_ELEMENTWISE, *_POOLS, nn.Flatten)):
            steps.append(_Op(name, module))
        else:
            raise _Unsupported(f"{name}: unsupported layer {type(module).__name__}")
    _record_shapes(steps, input_shape)
    return steps


@torch.no_grad()
def _record_shapes(steps: list[Step], input_shape: tuple[int, ...]) -> None:
    """Run one zero input through the chain; check each weighted layer's input layout."""
    first = next((s for s in steps if isinstance(s, _Weighted)), None)
    if first is None:
        raise _Unsupported("no linear or conv layer")
    x = torch.zeros(1, *input_shape, dtype=first.weight.dtype, device=first.weight.device)
    last_weighted: _Weighted | None = None
    width = int(x.shape[1]) if x.dim() >= 2 else 0  # size of dim 1 the channel-wise ops keep
    for step in steps:
        if isinstance(step, _Weighted):
            step.in_before = int(step.weight.shape[1])
            if step.kind == "linear":
                if x.dim() != 2:
                    raise _Unsupported(f"{step.name}: linear layer on a {x.dim()}-d input")
                if last_weighted is not None:
                    channels = int(last_weighted.weight.shape[0])
                    if x.shape[1] % channels:
                        raise _Unsupported(f"{step.name}: inputs do not map onto the channels "
                                           f"of {last_weighted.name}")
                    step.cols_per_channel = int(x.shape[1]) // channels
            elif x.dim() != 4:
                raise _Unsupported(f"{step.name}: conv on a {x.dim()}-d input")
            x = step.module(x)
            step.out_before = int(step.weight.shape[0])
            last_weighted = step
        elif isinstance(step.module, nn.Flatten):
            if step.module.start_dim not in (1, 1 - x.dim()) or step.module.end_dim != -1:
                raise _Unsupported(f"{step.name}: flatten must be over all but the batch dim")
            x = step.module(x)
        else:
            x = step.module(x)
            if last_weighted is not None and (x.dim() < 2 or int(x.shape[1]) != width):
                raise _Unsupported(f"{step.name} changes the number of channels")
        width = int(x.shape[1]) if x.dim() >= 2 else 0


# ---------------------------------------------------------------------------------------------
# Slicing


def _weighted_indices(steps: list[Step]) -> list[int]:
    return [i for i, s in enumerate(steps) if isinstance(s, _Weighted)]


def _ops_between(steps: list[Step], a: int, b: int) -> list[_Op]:
    return [s for s in steps[a + 1 : b] if isinstance(s, _Op)]


def _slice_bn(bn: nn.Module, keep: Tensor) -> nn.Module:
    assert isinstance(bn, _BN)
    new = copy.deepcopy(bn)
    new.num_features = int(keep.numel())
    for pname in ("weight", "bias"):
        p = getattr(bn, pname)
        if p is not None:
            setattr(new, pname, nn.Parameter(p.detach()[keep].clone(), requires_grad=False))
    for bname in ("running_mean", "running_var"):
        setattr(new, bname, getattr(bn, bname)[keep].clone())
    return new


def _keep_outputs(layer: _Weighted, ops: list[_Op], nxt: _Weighted, keep: Tensor) -> None:
    """Keep only output channels ``keep`` of ``layer`` and the matching inputs of ``nxt``."""
    layer.weight = layer.weight[keep]
    layer.bias = layer.bias[keep]
    if layer.bias_map is not None:
        layer.bias_map = layer.bias_map[:, keep]
    for op in ops:
        if isinstance(op.module, _BN):
            op.module = _slice_bn(op.module, keep)
    nxt.weight = nxt.weight[:, _columns(keep, nxt.cols_per_channel)]


def _columns(channels: Tensor, per_channel: int) -> Tensor:
    """Column indices of ``channels`` when each spans ``per_channel`` consecutive columns."""
    if per_channel == 1:
        return channels
    offsets = torch.arange(per_channel, device=channels.device)
    return (channels.view(-1, 1) * per_channel + offsets).reshape(-1)


def _row_zero(w: Tensor) -> Tensor:
    """Per output unit: True when all its weights are zero."""
    return (w.reshape(w.shape[0], -1) == 0).all(dim=1)


def _col_zero(w: Tensor, per_channel: int) -> Tensor:
    """Per input channel: True when no weight reads it."""
    if w.dim() == 2:
        return (w == 0).reshape(w.shape[0], -1, per_channel).all(dim=2).all(dim=0)
    return (w == 0).transpose(0, 1).reshape(w.shape[1], -1).all(dim=1)


@torch.no_grad()
def _fold_dead(layer: _Weighted, ops: list[_Op], nxt: _Weighted, dead: Tensor,
               spatial: tuple[int, ...]) -> None:
    """Add to ``nxt`` the exact, input-independent contribution of ``layer``'s dead channels.

    ``spatial`` is the shape of one channel of ``layer``'s output (() for a linear layer)."""
    dtype = torch.float64
    channels = int(layer.weight.shape[0])
    const = torch.zeros(1, channels, *spatial, dtype=dtype, device=layer.weight.device)
    pre = layer.bias.to(dtype).view(1, channels, *([1] * len(spatial))).expand_as(const)
    if layer.bias_map is not None:
        pre = pre + layer.bias_map.to(dtype)
    const[:, dead] = pre[:, dead]
    x = const
    for op in ops:
        x = copy.deepcopy(op.module).to(dtype)(x)
    # Channel-wise ops: live channels carry input-dependent values, only dead ones count.
    live = ~dead
    if nxt.kind == "linear":
        per = nxt.cols_per_channel
        cols = _columns(torch.nonzero(live).view(-1), per)
        x = x.reshape(1, -1).clone()
        x[:, cols] = 0
        contribution = F.linear(x, nxt.weight.to(dtype)).view(-1)
        if bool((contribution != 0).any()):
            nxt.bias = (nxt.bias.to(dtype) + contribution).to(nxt.bias.dtype)
        return
    x = x.clone()
    x[:, live] = 0
    conv = nxt.module
    assert isinstance(conv, nn.Conv2d)
    cmap = F.conv2d(x, nxt.weight.to(dtype), None, conv.stride, conv.padding, conv.dilation)
    if not bool((cmap != 0).any()):
        return
    first = cmap[:, :, :1, :1]
    if torch.equal(cmap, first.expand_as(cmap)):
        nxt.bias = (nxt.bias.to(dtype) + first.view(-1)).to(nxt.bias.dtype)
    else:
        base = nxt.bias_map.to(dtype) if nxt.bias_map is not None else 0.0
        nxt.bias_map = (base + cmap).to(nxt.weight.dtype)


@torch.no_grad()
def _restructure(steps: list[Step], input_shape: tuple[int, ...]) -> None:
    """Remove dead (forward sweep) then unused (backward sweep) units, in place."""
    idx = _weighted_indices(steps)
    # One channel's spatial shape at each weighted layer's output, from a shape probe.
    spatial = _output_spatial(steps, input_shape)
    for a, b in itertools.pairwise(idx):
        layer, nxt = steps[a], steps[b]
        assert isinstance(layer, _Weighted) and isinstance(nxt, _Weighted)
        ops = _ops_between(steps, a, b)
        dead = _row_zero(layer.weight)
        if bool(dead.all()):
            dead[0] = False  # never empty a layer
        if not bool(dead.any()):
            continue
        _fold_dead(layer, ops, nxt, dead, spatial[a])
        _keep_outputs(layer, ops, nxt, torch.nonzero(~dead).view(-1))
    for a, b in reversed(list(itertools.pairwise(idx))):
        layer, nxt = steps[a], steps[b]
        assert isinstance(layer, _Weighted) and isinstance(nxt, _Weighted)
        unused = _col_zero(nxt.weight, nxt.cols_per_channel)
        if bool(unused.all()):
            unused[0] = False
        if bool(unused.any()):
            _keep_outputs(layer, _ops_between(steps, a, b), nxt,
                          torch.nonzero(~unused).view(-1))


@torch.no_grad()
def _output_spatial(steps: list[Step], input_shape: tuple[int, ...]) -> dict[int, tuple[int, ...]]:
    first = next(s for s in steps if isinstance(s, _Weighted))
    x = torch.zeros(1, *input_shape, dtype=first.weight.dtype, device=first.weight.device)
    out: dict[int, tuple[int, ...]] = {}
    for i, step in enumerate(steps):
        if isinstance(step, _Weighted):
            x = step.module(x)
            out[i] = tuple(int(d) for d in x.shape[2:])
        else:
            x = step.module(x)
    return out


# ---------------------------------------------------------------------------------------------
# Building the compact module


def _module(step: _Weighted, relu: bool, csr: bool) -> nn.Module:
    w = step.weight
    b = step.bias if step.has_bias or bool((step.bias != 0).any()) else None
    if step.kind == "linear":
        return SparseLinear(w, b, relu) if csr else CompactLinear(w, b, relu)
    src = step.module
    assert isinstance(src, nn.Conv2d)
    padding = src.padding
    assert not isinstance(padding, str)  # _steps refused string padding
    return CompactConv2d(w, b, tuple(src.stride), tuple(padding), tuple(src.dilation),
                         step.bias_map, relu)


def _sparse_wanted(step: _Weighted, sparse: str, threshold: float,
                   batch_shape: tuple[int, ...]) -> bool:
    if step.kind != "linear" or sparse == "never":
        return False
    n = step.weight.numel()
    if n == 0:
        return False
    if sparse == "always":
        return True
    density = int(torch.count_nonzero(step.weight)) / n
    if sparse == "auto":
        return n >= SPARSE_MIN_SIZE and density <= threshold
    # "measure": time both kernels on an input of the layer's size.
    x = torch.randn(*batch_shape, int(step.weight.shape[1]), dtype=step.weight.dtype,
                    device=step.weight.device)
    dense = _module(step, relu=False, csr=False)
    sparse_mod = _module(step, relu=False, csr=True)
    return _median_time(lambda: sparse_mod(x), x.device) < _median_time(lambda: dense(x), x.device)


def _median_time(fn: Callable[[], Tensor], device: torch.device, repeats: int = 7) -> float:
    times = []
    with torch.inference_mode():
        fn()
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def _fold_bn(step: _Weighted, bn: nn.Module) -> None:
    """Fold an eval-mode batch norm that directly follows ``step`` into its weight and bias."""
    assert isinstance(bn, _BN) and bn.running_mean is not None and bn.running_var is not None
    dtype = torch.float64
    scale = (bn.running_var.to(dtype) + bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.to(dtype)
    shift = -bn.running_mean.to(dtype) * scale
    if bn.bias is not None:
        shift = shift + bn.bias.to(dtype)
    shape = (-1, *([1] * (step.weight.dim() - 1)))
    step.weight = (step.weight.to(dtype) * scale.view(shape)).to(step.weight.dtype)
    step.bias = (step.bias.to(dtype) * scale + shift).to(step.bias.dtype)
    step.has_bias = True
    if step.bias_map is not None:
        step.bias_map = (step.bias_map.to(dtype) * scale.view(1, -1, 1, 1)).to(
            step.bias_map.dtype)


def _build(steps: list[Step], sparse: str, threshold: float,
           ) -> tuple[nn.Sequential, list[LayerInfo]]:
    modules: list[nn.Module] = []
    infos: list[LayerInfo] = []
    i = 0
    while i < len(steps):
        step = steps[i]
        i += 1
        if isinstance(step, _Op):
            modules.append(step.module)
            continue
        nonzero = int(torch.count_nonzero(step.weight))
        follower = steps[i] if i < len(steps) else None
        if isinstance(follower, _Op) and isinstance(follower.module, _BN):
            _fold_bn(step, follower.module)
            i += 1
        follower = steps[i] if i < len(steps) else None
        relu = isinstance(follower, _Op) and type(follower.module) is nn.ReLU
        if relu:
            i += 1
        use_csr = _sparse_wanted(step, sparse, threshold, (MEASURE_BATCH,))
        modules.append(_module(step, relu, use_csr))
        infos.append(LayerInfo(
            name=step.name, kind=step.kind, in_before=step.in_before,
            in_after=int(step.weight.shape[1]), out_before=step.out_before,
            out_after=int(step.weight.shape[0]), nonzero=nonzero,
            kernel="csr" if use_csr else "dense", bias_map=step.bias_map is not None))
    return nn.Sequential(*modules), infos


def _fallback(baked: nn.Module, sparse: str, threshold: float,
              ) -> tuple[nn.Sequential, list[LayerInfo]]:
    """The baked copy with eligible Linear layers swapped for CSR ones."""
    infos: list[LayerInfo] = []
    for name, module in list(baked.named_modules()):
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        kind = "linear" if isinstance(module, nn.Linear) else "conv"
        w = module.weight.detach()
        bias: Tensor | None = module.bias
        step = _Weighted(name, kind, w, bias.detach() if bias is not None
                         else w.new_zeros(w.shape[0]), bias is not None, module)
        use_csr = _sparse_wanted(step, sparse, threshold, (MEASURE_BATCH,))
        if use_csr:
            parent_name, _, attr = name.rpartition(".")
            parent = baked.get_submodule(parent_name) if parent_name else baked
            setattr(parent, attr, _module(step, relu=False, csr=True))
        infos.append(LayerInfo(name, kind, int(w.shape[1]), int(w.shape[1]), int(w.shape[0]),
                               int(w.shape[0]), int(torch.count_nonzero(w)),
                               "csr" if use_csr else "dense"))
    return nn.Sequential(baked), infos


def _dense_size(module: nn.Module) -> tuple[int, int]:
    """(dense-equivalent entries, stored values) of parameters and CSR weights."""
    dense = stored = 0
    for m in module.modules():
        for p in m.parameters(recurse=False):
            dense += p.numel()
            stored += p.numel()
        if isinstance(m, SparseLinear):
            dense += m.in_features * m.out_features + m.out_features
            stored += int(m.weight.values().numel()) + m.out_features
    return dense, stored


@torch.no_grad()
def _check(reference: nn.Module, candidate: nn.Module, input_shape: tuple[int, ...],
           device: torch.device, dtype: torch.dtype, atol: float, rtol: float,
           ) -> tuple[bool, float]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(PROBE_BATCH, *input_shape, generator=gen, dtype=torch.float32)
    x = x.to(device=device, dtype=dtype)
    with torch.inference_mode():
        ref = reference(x)
        out = candidate(x)
    if out.shape != ref.shape:
        return False, math.inf
    err = (out - ref).abs()
    max_err = float(err.max()) if err.numel() else 0.0
    ok = bool((err <= atol + rtol * ref.abs()).all()) and math.isfinite(max_err)
    return ok, max_err


def compact(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    sparse: str = "auto",
    sparse_threshold: float = SPARSE_DENSITY,
    atol: float = 1e-5,
    rtol: float = 1e-5,
) -> CompactModel:
    """A new inference-only module equivalent to the masked ``model`` (eval mode), with its
    dead structure removed and sparse kernels where they pay.

    ``input_shape`` is one sample's shape (C, H, W); the compact model is checked on a random
    batch of that shape. ``sparse``: ``"auto"`` (CSR for Linear layers at density <=
    ``sparse_threshold``), ``"measure"`` (time both kernels per layer), ``"never"``,
    ``"always"``. ``model`` itself is not modified. See the module docstring for what is
    removed and when the result falls back (``result.info.structural`` False).
    """
    if sparse not in ("auto", "measure", "never", "always"):
        raise ValueError(f"sparse must be auto, measure, never or always, got {sparse!r}")
    shape = tuple(int(d) for d in input_shape)
    ref_param = next(model.parameters(), None)
    device = ref_param.device if ref_param is not None else torch.device("cpu")
    dtype = ref_param.dtype if ref_param is not None else torch.float32
    baked = _bake(model)
    params_before = sum(p.numel() for p in model.parameters())
    try:
        with torch.inference_mode():
            baked(torch.zeros(1, *shape, device=device, dtype=dtype))
    except RuntimeError as e:
        raise ValueError(f"input_shape {shape} does not fit the model: {e}") from e

    body: nn.Sequential
    fallback: str | None = None
    max_err = 0.0
    try:
        steps = _steps(baked, shape)
        _restructure(steps, shape)
        body, infos = _build(steps, sparse, sparse_threshold)
        body.eval()
        ok, max_err = _check(baked, body, shape, device, dtype, atol, rtol)
        if not ok:
            raise _Unsupported(f"the restructured model differs from the masked one "
                               f"(max |error| {max_err:.3g})")
    except _Unsupported as e:
        fallback = str(e)
        body, infos = _fallback(_bake(model), sparse, sparse_threshold)
        body.eval()
        _, max_err = _check(baked, body, shape, device, dtype, atol, rtol)
    for p in body.parameters():
        p.requires_grad_(False)
    dense_after, stored_after = _dense_size(body)
    info = CompactInfo(
        structural=fallback is None, fallback=fallback, params_before=params_before,
        params_after=dense_after, stored_after=stored_after, max_abs_error=max_err,
        input_shape=shape, layers=infos)
    out = CompactModel(body, info)
    out.eval()
    return out


__all__ = [
    "SPARSE_DENSITY",
    "SPARSE_MIN_SIZE",
    "CompactConv2d",
    "CompactInfo",
    "CompactLinear",
    "CompactModel",
    "LayerInfo",
    "SparseLinear",
    "compact",
]

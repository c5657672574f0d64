"""Training and evaluation loops: masked weights stay exactly zero, events flow out, the cancel
token is honoured between batches."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import MultiStepLR

from prunetui.core.events import CancelToken
from prunetui.core.masks import Prunable, apply_masks

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def make_optimizer(name: str, params: Iterable[nn.Parameter], lr: float,
                   weight_decay: float) -> Optimizer:
    """The optimizers of the reference scripts: sgd, momentum (Nesterov, 0.9), adam, rmsprop."""
    ps = list(params)
    # Multi-tensor (foreach) and fused kernels: one call per step instead of one per tensor;
    # the fc Adam step drops from ~1.1 ms to ~0.4 ms (bench/NOTES.md). Same update rule.
    if name == "sgd":
        return torch.optim.SGD(ps, lr=lr, weight_decay=weight_decay, foreach=True)
    if name == "momentum":
        return torch.optim.SGD(ps, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay,
                               foreach=True)
    if name == "adam":
        return torch.optim.Adam(ps, lr=lr, weight_decay=weight_decay, fused=True)
    if name == "rmsprop":
        return torch.optim.RMSprop(ps, lr=lr, weight_decay=weight_decay, foreach=True)
    raise ValueError(name)  # unreachable: RunConfig.validate checks the name


def make_scheduler(optimizer: Optimizer, drops: tuple[int, ...], rate: float) -> MultiStepLR:
    """Multiply the learning rate by ``rate`` at each epoch listed in ``drops``."""
    return MultiStepLR(optimizer, milestones=list(drops), gamma=rate)


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on CUDA when ``amp``; a no-op elsewhere."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class EpochStats:
    """What one training epoch returns."""

    loss: float
    seconds: float


def train_epoch(
    model: nn.Module,
    batches: Batches,
    optimizer: Optimizer,
    prunables: list[Prunable],
    *,
    device: torch.device,
    amp: bool = False,
    cancel: CancelToken | None = None,
    on_batch: Callable[[int], None] | None = None,
    label_smoothing: float = 0.0,
) -> EpochStats:
    """One pass over ``batches``; masks re-applied after every optimizer step so pruned
    weights are exactly zero whatever momentum or weight decay do."""
    model.train()
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    # Sum losses on the device: a .item() per batch would synchronise a GPU every step.
    total = torch.zeros((), device=device, dtype=torch.float64)
    seen = 0
    start = time.perf_counter()
    for i, (x, y) in enumerate(batches):
        if cancel is not None:
            cancel.check()
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        apply_masks(prunables)
        total += loss.detach().double() * len(y)
        seen += len(y)
        if on_batch is not None:
            on_batch(i + 1)
    _sync(device)
    return EpochStats(loss=float(total.item()) / max(seen, 1),
                      seconds=time.perf_counter() - start)


@torch.inference_mode()
def evaluate(model: nn.Module, batches: Batches, *, device: torch.device,
             amp: bool = False) -> tuple[float, float, float]:
    """(mean loss, top-1 %, top-5 %) over ``batches``."""
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    loss = torch.zeros((), device=device, dtype=torch.float64)
    c1 = torch.zeros((), device=device, dtype=torch.long)
    c5 = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    for x, y in batches:
        with autocast(device, amp):
            out = model(x)
        out = out.float()
        loss += loss_fn(out, y).double()
        k = min(5, out.shape[1])
        top = out.topk(k, dim=1).indices
        hit = top == y[:, None]
        c1 += hit[:, 0].sum()
        c5 += hit.any(dim=1).sum()
        n += len(y)
    n = max(n, 1)
    return float(loss.item()) / n, 100.0 * float(c1.item()) / n, 100.0 * float(c5.item()) / n


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resolve_device(name: str) -> torch.device:
    """``auto`` → cuda, then mps, then cpu; an explicit device must exist."""
    from prunetui.core.errors import ConfigError

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(field="device", value=name, problem="is not available: no CUDA "
                              "GPU is visible", hint="set {field} to cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(field="device", value=name, problem="is not available: only "
                              f"{torch.cuda.device_count()} CUDA device(s)", hint="use cuda:0..")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None)
                                  and torch.backends.mps.is_available()):
        raise ConfigError(field="device", value=name, problem="is not available on this "
                          "machine", hint="set {field} to cpu or auto")
    return dev


"""The weight initialisations a ``ModelInfo.init`` names (descriptions in ``catalog.INITS``).

Each reproduces what the SynFlow reference code leaves a model family with:

- ``torch-default``: its ``fc`` and ``conv`` (Models/mlp.py) set no init, so they keep
  PyTorch's layer init: weights and biases uniform in ±1/√fan_in. Drawn here explicitly, with the
  very calls PyTorch's ``reset_parameters`` makes, so a change of PyTorch's default cannot
  change ours.
- ``kaiming-in``: its CIFAR VGGs and ResNets (lottery_vgg.py, lottery_resnet.py) call
  ``kaiming_normal_`` with its defaults (fan_in, gain √2: the ReLU gain) on every conv and
  linear weight, zero every bias, and set batch norms to 1/0.
- ``kaiming-out``: its Tiny-ImageNet ResNets initialise conv weights Kaiming normal with
  ``mode='fan_out'`` and batch norms to 1/0; the linear classifier keeps PyTorch's init.
- ``kaiming-out-n01``: its Tiny-ImageNet VGGs: convs as ``kaiming-out`` with zero biases,
  linear layers N(0, 0.01²) with zero biases.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from torch import nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
Weighted = nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _uniform(module: Weighted) -> None:
    # U(±1/√fan_in) for the weight (what kaiming_uniform_ with a=√5 works out to) and the bias;
    # fan_in is in_features, or in_channels/groups times the kernel size.
    bound = 1.0 / math.sqrt(module.weight[0].numel())
    nn.init.uniform_(module.weight, -bound, bound)
    if module.bias is not None:
        nn.init.uniform_(module.bias, -bound, bound)


def _kaiming(module: Weighted, mode: Literal["fan_in", "fan_out"]) -> None:
    nn.init.kaiming_normal_(module.weight, mode=mode, nonlinearity="relu")
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def _norm(module: nn.Module) -> None:
    if isinstance(module, _NORMS) and module.affine:
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _torch_default(module: nn.Module) -> None:
    if isinstance(module, (*_CONVS, nn.Linear)):
        _uniform(module)
    _norm(module)


def _kaiming_in(module: nn.Module) -> None:
    if isinstance(module, (*_CONVS, nn.Linear)):
        _kaiming(module, "fan_in")
    _norm(module)


def _kaiming_out(module: nn.Module) -> None:
    if isinstance(module, _CONVS):
        _kaiming(module, "fan_out")
    elif isinstance(module, nn.Linear):
        _uniform(module)
    _norm(module)


def _kaiming_out_n01(module: nn.Module) -> None:
    if isinstance(module, _CONVS):
        _kaiming(module, "fan_out")
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.01)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    _norm(module)


INITS: dict[str, Callable[[nn.Module], None]] = {
    "torch-default": _torch_default,
    "kaiming-in": _kaiming_in,
    "kaiming-out": _kaiming_out,
    "kaiming-out-n01": _kaiming_out_n01,
}

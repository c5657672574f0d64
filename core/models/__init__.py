"""Model builders keyed by the names in ``catalog.MODELS``, weight init and parameter counts.

Every model is made of plain ``nn.Conv2d`` / ``nn.Linear`` / ``nn.BatchNorm2d`` / ``nn.ReLU`` /
pooling modules, so ``core.masks`` can prune any of them without custom layer classes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from prunetui.core import catalog
from prunetui.core.errors import ConfigError, choices_message
from prunetui.core.models.conv import conv
from prunetui.core.models.fc import fc
from prunetui.core.models.resnet import resnet_builder
from prunetui.core.models.vgg import vgg_builder

Builder = Callable[[tuple[int, int, int], int], nn.Module]


def _builders() -> dict[str, Builder]:
    out: dict[str, Builder] = {"fc": fc, "conv": conv}
    for depth in (11, 13, 16, 19):
        out[f"vgg{depth}"] = vgg_builder(depth, batch_norm=False)
        out[f"vgg{depth}-bn"] = vgg_builder(depth, batch_norm=True)
    for depth in (20, 32, 44, 56, 110):
        out[f"resnet{depth}"] = resnet_builder(depth)
    return out


BUILDERS: dict[str, Builder] = _builders()


def _builder(name: str) -> Builder:
    if name not in BUILDERS:
        raise ConfigError(choices_message("model", name, list(catalog.MODELS)))
    return BUILDERS[name]


def _shape(input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    # Configs loaded from JSON hand over lists; builders want a real (C, H, W) tuple of ints.
    c, h, w = (int(v) for v in input_shape)
    return c, h, w


@torch.no_grad()
def init_weights(model: nn.Module) -> None:
    """Initialise ``model`` in place: Kaiming-normal conv/linear weights, zero biases, BN 1/0.

    Kaiming normal with ``mode='fan_in'`` and the ReLU gain (std = sqrt(2 / fan_in)) is He et
    al.'s choice for ReLU nets: it keeps the forward activations' variance constant with depth.
    The SynFlow reference code's default ``kaiming_normal_`` (fan_in, gain sqrt(2)) is the same.
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Build model ``name`` for inputs of ``input_shape`` (C, H, W) and initialise it.

    Raises ``ConfigError`` for an unknown name. The caller picks the device (``.to``) and seeds
    the RNG beforehand for reproducible weights.
    """
    model = _builder(name)(_shape(input_shape), num_classes)
    init_weights(model)
    return model


def build_meta(name: str, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Model ``name``'s structure on the ``meta`` device, which allocates no storage and draws
    no random numbers: cheap even for vgg19, and the global RNG is left untouched."""
    builder = _builder(name)
    with torch.device("meta"):
        return builder(_shape(input_shape), num_classes)


def parameter_count(
    name: str, input_shape: tuple[int, int, int], num_classes: int
) -> tuple[int, int]:
    """(total parameters, prunable weights: conv/linear weights) of model ``name``."""
    model = build_meta(name, input_shape, num_classes)
    total = sum(p.numel() for p in model.parameters())
    prunable = sum(
        m.weight.numel()
        for m in model.modules()
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
    )
    return total, prunable


__all__ = ["BUILDERS", "Builder", "build_meta", "build_model", "init_weights",
           "parameter_count"]

"""Model builders keyed by the names in ``catalog.MODELS``, weight init and parameter counts.

Each model is built as the SynFlow reference code builds the model of that name, and drawn with
the init that code gives it (``ModelInfo.init``, ``core.models.init``).

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
from prunetui.core.models.init import INITS
from prunetui.core.models.resnet import resnet18_builder, resnet_builder
from prunetui.core.models.vgg import vgg_builder

Builder = Callable[[tuple[int, int, int], int], nn.Module]


def _builders() -> dict[str, Builder]:
    out: dict[str, Builder] = {"fc": fc, "conv": conv}
    for depth in (11, 13, 16, 19):
        out[f"vgg{depth}"] = vgg_builder(depth, batch_norm=False)
        out[f"vgg{depth}-bn"] = vgg_builder(depth, batch_norm=True)
    for depth in (20, 32, 44, 56, 110):
        out[f"resnet{depth}"] = resnet_builder(depth)
    out["resnet18"] = resnet18_builder()
    # The reference's wide-resnet18 passes a width factor its basic blocks never read.
    out["wide-resnet18"] = resnet18_builder()
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


# The attribute build_model records a model's init under, so a later re-initialisation
# (``--reinit``, which only has the model) draws from the same distribution.
INIT_ATTR = "prunetui_init"
# For a model built elsewhere (no recorded init): the reference's CIFAR VGG/ResNet init.
FALLBACK_INIT = "kaiming-in"


@torch.no_grad()
def init_weights(model: nn.Module, init: str | None = None) -> None:
    """Initialise ``model`` in place with ``init`` (a key of ``catalog.INITS``), by default the
    one ``build_model`` recorded on it (``kaiming-in`` for a model it did not build)."""
    key = init or getattr(model, INIT_ATTR, FALLBACK_INIT)
    if key not in INITS:
        raise ConfigError(choices_message("init", key, list(INITS)))
    draw = INITS[key]
    for module in model.modules():
        draw(module)


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Build model ``name`` for inputs of ``input_shape`` (C, H, W) and initialise it the way
    its ``ModelInfo`` declares for that input size.

    Raises ``ConfigError`` for an unknown name. The caller picks the device (``.to``) and seeds
    the RNG beforehand for reproducible weights.
    """
    shape = _shape(input_shape)
    model = _builder(name)(shape, num_classes)
    init = catalog.MODELS[name].init_for(shape[1:])
    setattr(model, INIT_ATTR, init)
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


__all__ = ["BUILDERS", "INITS", "Builder", "build_meta", "build_model", "init_weights",
           "parameter_count"]

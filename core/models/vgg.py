"""CIFAR-style VGG, laid out so parameter names match the reference report.

``layers`` holds conv blocks (``layers.<i>.conv``, plus ``.bn`` for the -bn variants) and
``nn.MaxPool2d(2)`` entries. The usual VGG cfgs drop their final max-pool: the last block runs at
2x2 and ``nn.AvgPool2d(2)`` reduces it to 1x1 before ``fc``, as in the SynFlow code.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

CFGS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512],
}


class ConvBlock(nn.Module):
    """3x3 conv (padding 1), optional batch norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool) -> None:
        super().__init__()
        # Conv keeps its bias even with batch norm, like the reference implementation, so the
        # parameter counts and FLOPs agree with its report.
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(out_channels) if batch_norm else None
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        out: Tensor = self.relu(x)
        return out


def _features(cfg: list[int | str], channels: int, batch_norm: bool) -> tuple[nn.Sequential, int]:
    """The conv blocks and max-pools of ``cfg``, and the channels they end with."""
    layers: list[nn.Module] = []
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            assert isinstance(item, int)
            layers.append(ConvBlock(channels, item, batch_norm))
            channels = item
    return nn.Sequential(*layers), channels


class VGG(nn.Module):
    """VGG for 32x32 inputs: conv blocks and max-pools, 2x2 average pool, linear classifier."""

    def __init__(
        self, cfg: list[int | str], input_shape: tuple[int, int, int], num_classes: int,
        batch_norm: bool,
    ) -> None:
        super().__init__()
        self.layers, channels = _features(cfg, input_shape[0], batch_norm)
        self.pool = nn.AvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.fc(self.flatten(self.pool(self.layers(x))))
        return out


TINY_HW = (64, 64)  # the input size built as the Tiny-ImageNet family
TINY_HIDDEN = 1024  # width of that family's classifier's hidden layers


class TinyVGG(nn.Module):
    """VGG for 64x64 inputs: conv blocks and five max-pools, then three linear layers with ReLU
    and dropout between them."""

    def __init__(
        self, cfg: list[int | str], input_shape: tuple[int, int, int], num_classes: int,
        batch_norm: bool,
    ) -> None:
        super().__init__()
        self.layers, channels = _features([*cfg, "M"], input_shape[0], batch_norm)
        self.flatten = nn.Flatten()
        side = input_shape[1] // 32  # halved by each of the five max-pools: 2
        self.classifier = nn.Sequential(
            nn.Linear(channels * side * side, TINY_HIDDEN), nn.ReLU(), nn.Dropout(),
            nn.Linear(TINY_HIDDEN, TINY_HIDDEN), nn.ReLU(), nn.Dropout(),
            nn.Linear(TINY_HIDDEN, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.classifier(self.flatten(self.layers(x)))
        return out


def vgg_builder(depth: int, batch_norm: bool) -> Callable[[tuple[int, int, int], int], nn.Module]:
    """A builder ``(input_shape, num_classes) -> VGG`` for one depth, with or without BN: the
    Tiny-ImageNet family's for 64x64 inputs, the CIFAR one's otherwise."""

    def build(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
        cls = TinyVGG if tuple(input_shape[1:]) == TINY_HW else VGG
        return cls(CFGS[depth], input_shape, num_classes, batch_norm)

    return build

"""ResNets of basic blocks: the CIFAR family and ResNet-18.

CIFAR ResNets (He et al. 2016, section 4.2; the SynFlow code's lottery_resnet.py): 6n+2 layers
in 3 stages of n blocks and 16/32/64 channels. ResNet-18 (the SynFlow code's
tinyimagenet_resnet.py, which its Figure 6 trains on CIFAR and Tiny-ImageNet): 4 stages of 2
blocks and 64/128/256/512 channels, after a 3x3 stem conv and no max-pool, so it takes 32x32 and
64x64 inputs alike (global average pooling before the classifier).

In both, the first block of every stage after the first halves the resolution and widens the
channels, with a 1x1 conv + BN shortcut (option B) wherever the shape changes. Where the shape
does not change the shortcut is the identity. The reference's identity shortcut is a per-channel
scale fixed at 1 (``Identity2d``: not trained, and not pruned unless ``--prune-residual``), so it
computes the same as ours but its parameter totals count those scales (1,024 for ResNet-18, 240
for ResNet-20) where ours have none.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

STAGES = (16, 32, 64)  # CIFAR ResNets' channels per stage
STAGES18 = (64, 128, 256, 512)  # ResNet-18's


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        # No conv biases: the batch norm that follows each conv would cancel them.
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        result: Tensor = self.relu2(out + self.shortcut(x))
        return result


class ResNet(nn.Module):
    """Stem conv, stages of basic blocks, global average pool, linear classifier."""

    def __init__(self, widths: tuple[int, ...], blocks: int, input_shape: tuple[int, int, int],
                 num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(input_shape[0], widths[0], 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        layers: list[nn.Module] = []
        channels = widths[0]
        for stage, width in enumerate(widths):
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(channels, width, stride))
                channels = width
        self.blocks = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.relu(self.bn(self.conv(x))))
        out: Tensor = self.fc(self.flatten(self.pool(x)))
        return out


def resnet_builder(depth: int) -> Callable[[tuple[int, int, int], int], nn.Module]:
    """A builder ``(input_shape, num_classes) -> ResNet`` for one CIFAR depth (6n+2)."""
    if (depth - 2) % 6 != 0:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")

    def build(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
        return ResNet(STAGES, (depth - 2) // 6, input_shape, num_classes)

    return build


def resnet18_builder() -> Callable[[tuple[int, int, int], int], nn.Module]:
    """A builder ``(input_shape, num_classes) -> ResNet`` for ResNet-18."""

    def build(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
        return ResNet(STAGES18, 2, input_shape, num_classes)

    return build

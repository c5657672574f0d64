"""CIFAR ResNets (He et al. 2016, section 4.2): 6n+2 layers in 3 stages of 16/32/64 channels.

Each stage has n basic blocks; the first block of stages 2 and 3 halves the resolution and
doubles the channels, with a 1x1 conv + BN shortcut (option B) wherever the shape changes.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

STAGES = (16, 32, 64)


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
    """Stem conv, three stages of basic blocks, global average pool, linear classifier."""

    def __init__(self, depth: int, input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(input_shape[0], STAGES[0], 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(STAGES[0])
        self.relu = nn.ReLU()
        blocks: list[nn.Module] = []
        channels = STAGES[0]
        for stage, width in enumerate(STAGES):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(channels, width, stride))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.relu(self.bn(self.conv(x))))
        out: Tensor = self.fc(self.flatten(self.pool(x)))
        return out


def resnet_builder(depth: int) -> Callable[[tuple[int, int, int], int], nn.Module]:
    """A builder ``(input_shape, num_classes) -> ResNet`` for one depth (6n+2)."""

    def build(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
        return ResNet(depth, input_shape, num_classes)

    return build

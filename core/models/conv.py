"""The small convolutional net of the SynFlow reference code (``conv`` in its Models/mlp.py).

Two 3x3 convolutions of 32 filters (padding 1, so the image keeps its size), ReLU after each,
and one linear classifier over all 32·H·W activations: no pooling, so it takes any image size
and its classifier holds most of its weights (250,880 of 260,384 on MNIST).
"""

from __future__ import annotations

from torch import Tensor, nn

FILTERS = 32


class Conv(nn.Module):
    """conv 32 3x3 → ReLU → conv 32 3x3 → ReLU → flatten → linear (32·H·W → classes)."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        channels, height, width = input_shape
        self.conv1 = nn.Conv2d(channels, FILTERS, kernel_size=3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(FILTERS, FILTERS, kernel_size=3, padding=1)
        self.relu2 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(FILTERS * height * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        out: Tensor = self.fc(self.flatten(x))
        return out


def conv(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Build the reference's small conv net for images of ``input_shape`` (any size)."""
    return Conv(input_shape, num_classes)

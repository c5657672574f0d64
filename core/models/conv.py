"""A small convolutional net that accepts any image size (used with MNIST and 8x8 digits)."""

from __future__ import annotations

from torch import Tensor, nn

POOLED = 4  # adaptive pooling to 4x4 makes the classifier's size independent of the input's


class Conv(nn.Module):
    """conv 32 3x3 → ReLU → conv 64 3x3 → ReLU → adaptive avg-pool 4x4 → linear."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(input_shape[0], 32, kernel_size=3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(POOLED)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64 * POOLED * POOLED, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        out: Tensor = self.fc(self.flatten(self.pool(x)))
        return out


def conv(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Build the small conv net for images of any size."""
    return Conv(input_shape, num_classes)

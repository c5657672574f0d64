"""The fully connected baseline: six linear layers of width 100 with ReLU between them."""

from __future__ import annotations

import itertools
import math

from torch import Tensor, nn

WIDTH = 100
DEPTH = 6  # linear layers, the last one being the classifier


class FC(nn.Module):
    """Flatten, then in→100, 100→100 ×4, 100→classes, ReLU between linear layers."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        widths = [math.prod(input_shape)] + [WIDTH] * (DEPTH - 1) + [num_classes]
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(fan_in, fan_out))
            if i < DEPTH - 1:
                layers.append(nn.ReLU())
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.layers(self.flatten(x))
        return out


def fc(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Build the 6-layer fully connected net for inputs of any shape."""
    return FC(input_shape, num_classes)

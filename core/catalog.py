"""Names and static facts of every model, dataset, pruner and optimizer, without torch.

The registries that build things (``models``, ``data``, ``pruners``, ``train``) key on these
names; a test checks they agree. Keeping the facts here lets the CLI validate a config in
milliseconds, before torch is imported.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset looks like: input shape, classes, normalization and augmentation."""

    name: str
    shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool  # random crop of the padded image (4 pixels) and horizontal flip
    train_size: int
    test_size: int
    description: str


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo("mnist", (1, 28, 28), 10, (0.1307,), (0.3081,), False, 60000, 10000,
                    "MNIST handwritten digits (torchvision)"),
        DatasetInfo("fashion-mnist", (1, 28, 28), 10, (0.2860,), (0.3530,), False, 60000, 10000,
                    "Fashion-MNIST clothing images (torchvision)"),
        DatasetInfo("cifar10", (3, 32, 32), 10, (0.4914, 0.4822, 0.4465),
                    (0.2470, 0.2435, 0.2616), True, 50000, 10000, "CIFAR-10 (torchvision)"),
        DatasetInfo("cifar100", (3, 32, 32), 100, (0.5071, 0.4865, 0.4409),
                    (0.2673, 0.2564, 0.2762), True, 50000, 10000, "CIFAR-100 (torchvision)"),
        DatasetInfo("digits", (1, 8, 8), 10, (0.3333,), (0.3833,), False, 1437, 360,
                    "scikit-learn's bundled 8x8 digits: real data, no download"),
        # Mean/std are the reference code's (Utils/load.py); test = the labelled val split.
        DatasetInfo("tiny-imagenet", (3, 64, 64), 200, (0.480, 0.448, 0.397),
                    (0.276, 0.269, 0.282), True, 100000, 10000,
                    "Tiny ImageNet, 200 classes (unzip tiny-imagenet-200.zip into the data dir)"),
    )
}


@dataclass(frozen=True)
class ModelInfo:
    """A model family member: its name, family, and the input sizes it accepts."""

    name: str
    family: str  # fc | conv | vgg | resnet
    description: str
    needs_hw: tuple[int, int] | None = None  # required (H, W) of the input, if any

    @property
    def default_dataset(self) -> str:
        """The dataset it is listed and inspected on when none is named."""
        return "cifar10" if self.needs_hw else "mnist"

    def check_dataset(self, data: DatasetInfo) -> str | None:
        """Return why this model cannot take ``data``'s inputs, or None when it can."""
        if self.needs_hw is not None and data.shape[1:] != self.needs_hw:
            h, w = self.needs_hw
            fits = [d.name for d in DATASETS.values() if d.shape[1:] == self.needs_hw]
            return (
                f"model {self.name!r} needs {h}x{w} inputs but dataset {data.name!r} has "
                f"{data.shape[1]}x{data.shape[2]}; use it with: {', '.join(fits)}"
            )
        return None


def _models() -> dict[str, ModelInfo]:
    out = [
        ModelInfo("fc", "fc", "6 fully connected layers of width 100, ReLU"),
        ModelInfo("conv", "conv", "small conv net: 2 conv layers, pooling, 1 linear"),
    ]
    for depth in (11, 13, 16, 19):
        out.append(ModelInfo(f"vgg{depth}", "vgg", f"CIFAR-style VGG-{depth}", (32, 32)))
        out.append(ModelInfo(f"vgg{depth}-bn", "vgg", f"CIFAR-style VGG-{depth} with batch norm",
                             (32, 32)))
    for depth in (20, 32, 44, 56, 110):
        out.append(ModelInfo(f"resnet{depth}", "resnet", f"CIFAR ResNet-{depth}", (32, 32)))
    return {m.name: m for m in out}


MODELS: dict[str, ModelInfo] = _models()

# Display names follow the reference report's column headers.
PRUNERS: dict[str, str] = {
    "rand": "Rand",
    "mag": "Mag",
    "snip": "SNIP",
    "grasp": "GraSP",
    "synflow": "SynFlow",
    # Layerwise random baselines (core/pruners/layerwise.py): random positions, per-layer
    # counts from a density rule.
    "erk": "ERK",
    "er": "ER",
    "uniform": "Uniform",
    "uniform-plus": "Uniform+",
}
# What a sweep runs when it names no pruners: the five methods the SynFlow paper compares (the
# layerwise baselines are asked for by name).
DEFAULT_PRUNERS = ("rand", "mag", "snip", "grasp", "synflow")
# Pruners that need a batch of data to score; the others are data-free.
DATA_PRUNERS = frozenset({"snip", "grasp"})
OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop")
SCOPES = ("global", "local")
SCHEDULES = ("exponential", "linear")
DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps"

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
    augment: bool  # CIFAR-style random crop (4-pixel padding) and horizontal flip
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


@dataclass(frozen=True)
class PrunerInfo:
    """A pruner as every face and the validation see it; its scorer is the ``score``
    function of ``prunetui.core.pruners.<module>`` (default: its name).

    Adding a pruner is its module plus one entry below: the CLI's help, the app's lists and
    help screen, the validation and the scorer registry all read this table."""

    name: str
    display: str  # as the reference report's column headers spell it
    needs_data: bool  # scores with a batch of real data (else data-free)
    default_iterations: int  # pruning iterations when --prune-iterations is not given
    description: str
    module: str = ""

    @property
    def module_name(self) -> str:
        """The module under ``prunetui.core.pruners`` that holds its ``score``."""
        return self.module or self.name


# Iteration defaults follow the SynFlow paper: 100 rounds for SynFlow, one shot for the rest.
PRUNERS: dict[str, PrunerInfo] = {
    p.name: p
    for p in (
        PrunerInfo("rand", "Rand", False, 1, "random scores (a baseline)"),
        PrunerInfo("mag", "Mag", False, 1, "weight magnitude |w|"),
        PrunerInfo("snip", "SNIP", True, 1, "connection sensitivity |w * dL/dw| on a batch"),
        PrunerInfo("grasp", "GraSP", True, 1, "gradient-signal preservation (Hessian-gradient)"),
        PrunerInfo("synflow", "SynFlow", False, 100, "iterative synaptic flow, data-free"),
    )
}
# Pruners that need a batch of data to score; the others are data-free.
DATA_PRUNERS = frozenset(p.name for p in PRUNERS.values() if p.needs_data)


def pruner_display(name: str) -> str:
    """A pruner's display name ('SynFlow'), or the name itself when it is not registered."""
    info = PRUNERS.get(name)
    return info.display if info is not None else name


OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop")
SCOPES = ("global", "local")
SCHEDULES = ("exponential", "linear")
DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps"

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


# Weight initialisations, by the key a ModelInfo names (``core.models.init`` draws them). Each is
# what the SynFlow reference code gives that model family.
INITS: dict[str, str] = {
    "torch-default": "PyTorch's own layer init: weights and biases U(±1/√fan_in)",
    "kaiming-in": "Kaiming normal, fan_in (std √(2/fan_in)), zero biases, batch norm 1/0",
    "kaiming-out": "convs Kaiming normal, fan_out (std √(2/fan_out)), batch norm 1/0; "
                   "linear layers PyTorch's own U(±1/√fan_in)",
    "kaiming-out-n01": "convs Kaiming normal, fan_out, zero biases, batch norm 1/0; "
                       "linear layers N(0, 0.01²), zero biases",
}

HW = tuple[int, int]


@dataclass(frozen=True)
class ModelInfo:
    """A model family member: its name, family, the input sizes it accepts and its init."""

    name: str
    family: str  # fc | conv | vgg | resnet
    description: str
    input_sizes: tuple[HW, ...] = ()  # the (H, W) of inputs it accepts; empty: any size
    init: str = "kaiming-in"  # key of INITS: how its weights are drawn
    # Input sizes built as another family of the reference, with that family's init.
    init_at: tuple[tuple[HW, str], ...] = ()
    # Bumped whenever the model's construction or init changes, so runs of the old one are not
    # taken for runs of the new one: above 1 it enters the run id (RunConfig.identity).
    revision: int = 1

    @property
    def default_dataset(self) -> str:
        """The dataset it is listed and inspected on when none is named."""
        return "cifar10" if self.input_sizes else "mnist"

    def init_for(self, hw: HW) -> str:
        """The INITS key used for inputs of size ``hw``."""
        return dict(self.init_at).get((hw[0], hw[1]), self.init)

    def init_text(self) -> str:
        """The init as listed: its key, plus the size-specific ones (``vgg``'s 64x64)."""
        extra = "".join(f"; {h}x{w}: {key}" for (h, w), key in self.init_at)
        return self.init + extra

    def check_dataset(self, data: DatasetInfo) -> str | None:
        """Return why this model cannot take ``data``'s inputs, or None when it can."""
        if self.input_sizes and data.shape[1:] not in self.input_sizes:
            sizes = " or ".join(f"{h}x{w}" for h, w in self.input_sizes)
            fits = [d.name for d in DATASETS.values() if d.shape[1:] in self.input_sizes]
            return (
                f"model {self.name!r} needs {sizes} inputs but dataset {data.name!r} has "
                f"{data.shape[1]}x{data.shape[2]}; use it with: {', '.join(fits)}"
            )
        return None


# CIFAR (32x32) and Tiny-ImageNet (64x64) inputs.
_IMAGE_SIZES: tuple[HW, ...] = ((32, 32), (64, 64))


def _models() -> dict[str, ModelInfo]:
    out = [
        # Revision 2: the reference's init (was Kaiming normal with zero biases).
        ModelInfo("fc", "fc", "6 fully connected layers of width 100, ReLU",
                  init="torch-default", revision=2),
        # Revision 2: the reference's conv (was conv32, conv64, 4x4 pooling, Kaiming init).
        ModelInfo("conv", "conv", "2 conv layers of 32 3x3 filters, ReLU, 1 linear (no pooling)",
                  init="torch-default", revision=2),
    ]
    for depth in (11, 13, 16, 19):
        for suffix, bn in (("", ""), ("-bn", " with batch norm")):
            out.append(ModelInfo(
                f"vgg{depth}{suffix}", "vgg",
                f"CIFAR-style VGG-{depth}{bn}; at 64x64 the Tiny-ImageNet one",
                _IMAGE_SIZES, init="kaiming-in", init_at=(((64, 64), "kaiming-out-n01"),)))
    for depth in (20, 32, 44, 56, 110):
        out.append(ModelInfo(f"resnet{depth}", "resnet", f"CIFAR ResNet-{depth}", ((32, 32),)))
    out.append(ModelInfo("resnet18", "resnet", "ResNet-18 (4 stages of 64-512 channels, no "
                         "max-pool)", _IMAGE_SIZES, init="kaiming-out"))
    out.append(ModelInfo("wide-resnet18", "resnet", "resnet18 again, as the reference builds "
                         "it (its width factor goes unused)", _IMAGE_SIZES, init="kaiming-out"))
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
    # scorer: ranks the weights by its module's ``score``; layerwise: a per-layer density rule
    # (``pruners/layerwise.py``) with random positions, so --scope and iterations do not
    # apply; training: prunes while it trains (IMP, ``core/run/imp.py``).
    kind: str = "scorer"

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
        # Layerwise random baselines (Liu et al. 2022): random positions, per-layer counts
        # from a density rule. "Random at method X's per-layer densities" is X with
        # --ablation shuffle.
        PrunerInfo("erk", "ERK", False, 1, "random, Erdős–Rényi-Kernel layer densities",
                   kind="layerwise"),
        PrunerInfo("er", "ER", False, 1, "random, Erdős–Rényi layer densities",
                   kind="layerwise"),
        PrunerInfo("uniform", "Uniform", False, 1, "random, the same density in every layer",
                   kind="layerwise"),
        PrunerInfo("uniform-plus", "Uniform+", False, 1,
                   "random, uniform with the first layer dense and the last at >= 20%",
                   kind="layerwise"),
        PrunerInfo("imp", "IMP", False, 1, "iterative magnitude pruning after training "
                   "(lottery tickets; --imp-rate, --rewind-epoch)", kind="training"),
    )
}
# What a sweep runs when it names no pruners: the five methods the SynFlow paper compares (the
# layerwise baselines and IMP are asked for by name).
DEFAULT_PRUNERS = tuple(p.name for p in PRUNERS.values() if p.kind == "scorer")
# Pruners that need a batch of data to score; the others are data-free.
DATA_PRUNERS = frozenset(p.name for p in PRUNERS.values() if p.needs_data)


def pruner_display(name: str) -> str:
    """A pruner's display name ('SynFlow'), or the name itself when it is not registered."""
    info = PRUNERS.get(name)
    return info.display if info is not None else name


OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop")
# Controls of what a pruner found (Frankle et al. 2021, arXiv 2009.08576): none, or its masks
# shuffled within each layer, its kept weights re-initialised, or its ranking inverted.
ABLATIONS = ("none", "shuffle", "reinit", "invert")
SCOPES = ("global", "local")
SCHEDULES = ("exponential", "linear")
DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps"

# One colour per pruner in every figure and in the app. The five of the SynFlow paper keep the
# colours its Figure 6 draws them in (matplotlib's tab10: Rand grey, Mag blue, SNIP green, GraSP
# orange, SynFlow red, IMP/lottery purple); the baselines take the rest of tab10.
PRUNER_COLOURS: dict[str, str] = {
    "rand": "#7f7f7f",
    "mag": "#1f77b4",
    "snip": "#2ca02c",
    "grasp": "#ff7f0e",
    "synflow": "#d62728",
    "imp": "#9467bd",
    "erk": "#17becf",
    "er": "#e377c2",
    "uniform": "#bcbd22",
    "uniform-plus": "#8c564b",
}
# The same pruners in plotext's colour names (the 16 ANSI colours): the nearest hue, bright
# variants where the dark one is hard to read on a dark terminal (blue, grey), no two alike.
PRUNER_TERM_COLOURS: dict[str, str] = {
    "rand": "gray+",
    "mag": "blue+",
    "snip": "green+",
    "grasp": "orange",
    "synflow": "red+",
    "imp": "magenta+",
    "erk": "cyan+",
    "er": "magenta",
    "uniform": "orange+",
    "uniform-plus": "white",
}

"""Model registry: names, shapes, parameter counts against the reference's, VGG naming,
initialisation and the model revision in run ids."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from prunetui.core import catalog
from prunetui.core.config import RunConfig
from prunetui.core.errors import ConfigError
from prunetui.core.masks import find_prunable
from prunetui.core.models import BUILDERS, INITS, build_model, init_weights, parameter_count

CIFAR = (3, 32, 32)
MNIST = (1, 28, 28)
TINY = (3, 64, 64)


def test_builders_match_catalog() -> None:
    assert list(BUILDERS) == list(catalog.MODELS)


def test_unknown_model_is_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown model 'vgg17'"):
        build_model("vgg17", CIFAR, 10)
    with pytest.raises(ConfigError):
        parameter_count("nope", CIFAR, 10)


@pytest.mark.parametrize("name", list(catalog.MODELS))
def test_output_shape_and_parameter_count(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, CIFAR, 7)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, *CIFAR))
    assert out.shape == (2, 7)
    total, prunable = parameter_count(name, CIFAR, 7)
    assert total == sum(p.numel() for p in model.parameters())
    assert prunable == sum(p.param.numel() for p in find_prunable(model))
    assert 0 < prunable < total  # every model has biases or BN parameters besides weights


@pytest.mark.parametrize(("name", "shape"), [("fc", MNIST), ("conv", MNIST), ("conv", (1, 8, 8)),
                                             ("fc", (1, 8, 8)), ("conv", (3, 32, 32))])
def test_small_models_take_any_image_size(name: str, shape: tuple[int, int, int]) -> None:
    model = build_model(name, shape, 10)
    assert model(torch.randn(3, *shape)).shape == (3, 10)


def test_fc_layout_on_mnist() -> None:
    model = build_model("fc", MNIST, 10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    dims = [(m.in_features, m.out_features) for m in linears]
    assert dims == [(784, 100), (100, 100), (100, 100), (100, 100), (100, 100), (100, 10)]
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 5


def test_vgg16_layer_names() -> None:
    model = build_model("vgg16", CIFAR, 10)
    names = [p.layer for p in find_prunable(model)]
    convs = [0, 1, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15, 16]
    assert names == [f"layers.{i}.conv" for i in convs] + ["fc"]
    layers = model.layers
    assert isinstance(layers, nn.Sequential)
    assert [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)] == [2, 5, 9, 13]
    assert len(layers) == 17  # no max-pool after the last block
    conv = layers[0].conv
    assert isinstance(conv, nn.Conv2d)
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.padding) == (
        3, 64, (3, 3), (1, 1))
    fc = model.fc
    assert isinstance(fc, nn.Linear) and (fc.in_features, fc.out_features) == (512, 10)
    assert any(isinstance(m, nn.AvgPool2d) for m in model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize(("name", "convs"), [("vgg11", 8), ("vgg13", 10), ("vgg19", 16)])
def test_vgg_depths(name: str, convs: int) -> None:
    model = build_model(name + "-bn", CIFAR, 10)
    blocks = [m for m in model.layers if not isinstance(m, nn.MaxPool2d)]
    assert len(blocks) == convs
    assert all(isinstance(b.bn, nn.BatchNorm2d) for b in blocks)
    assert not isinstance(model.layers[-1], nn.MaxPool2d)
    assert {p.layer for p in find_prunable(model)} == {
        f"layers.{i}.conv" for i, m in enumerate(model.layers)
        if not isinstance(m, nn.MaxPool2d)} | {"fc"}


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_resnet_depth(depth: int) -> None:
    """6n+2 weighted layers on the main path, plus two 1x1 projection shortcuts."""
    total, _ = parameter_count(f"resnet{depth}", CIFAR, 10)
    with torch.device("meta"):
        model = BUILDERS[f"resnet{depth}"](CIFAR, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    projections = [m for m in convs if m.kernel_size == (1, 1)]
    assert len(convs) - len(projections) + 1 == depth  # + the final linear layer
    assert len(projections) == 2
    assert {m.out_channels for m in convs} == {16, 32, 64}
    assert total > 0


def test_resnet110_runs() -> None:
    model = build_model("resnet110", CIFAR, 10)
    with torch.no_grad():
        out = model(torch.randn(2, *CIFAR))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_init_statistics() -> None:
    torch.manual_seed(0)
    model = build_model("vgg16-bn", CIFAR, 10)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert m.bias is not None and torch.count_nonzero(m.bias) == 0
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    # Kaiming normal, fan_in, ReLU gain: std = sqrt(2 / fan_in).
    conv = model.layers[14].conv
    fan_in = conv.weight[0].numel()
    std = conv.weight.std().item()
    assert std == pytest.approx((2 / fan_in) ** 0.5, rel=0.02)
    assert abs(conv.weight.mean().item()) < 0.1 * std


def test_init_weights_resets_and_is_seeded() -> None:
    torch.manual_seed(3)
    a = build_model("fc", MNIST, 10)
    torch.manual_seed(3)
    b = build_model("fc", MNIST, 10)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    with torch.no_grad():
        for p in b.parameters():
            p.fill_(5.0)
    init_weights(b)  # the model's own init (--reinit): fc's is PyTorch's uniform, biases too
    first = b.layers[0]
    bound = 1 / 784**0.5
    assert first.weight.abs().max() <= bound and first.bias.abs().max() <= bound
    assert torch.count_nonzero(first.bias) == 100


def test_parameter_count_is_cheap_and_leaves_rng_alone() -> None:
    torch.manual_seed(11)
    before = torch.rand(1)
    torch.manual_seed(11)
    total, prunable = parameter_count("vgg19", CIFAR, 100)
    after = torch.rand(1)
    assert torch.equal(before, after)
    assert prunable == 20024000 - 512 * 10 + 512 * 100
    assert total == prunable + sum([64, 64, 128, 128] + [256] * 4 + [512] * 8) + 100


def test_init_keys_agree_with_catalog() -> None:
    assert list(INITS) == list(catalog.INITS)
    for m in catalog.MODELS.values():
        assert m.init in INITS and all(k in INITS for _, k in m.init_at)


def _layers(model: nn.Module, kind: type[nn.Module]) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind)]


@pytest.mark.parametrize(("name", "shape"), [("fc", MNIST), ("conv", MNIST), ("conv", CIFAR)])
def test_small_models_draw_pytorchs_uniform_init(name: str, shape: tuple[int, int, int]) -> None:
    """The reference's fc and conv set no init: weights and biases U(±1/√fan_in)."""
    torch.manual_seed(0)
    model = build_model(name, shape, 10)
    assert catalog.MODELS[name].init == "torch-default"
    for m in _layers(model, nn.Linear) + _layers(model, nn.Conv2d):
        bound = 1 / m.weight[0].numel() ** 0.5
        assert m.weight.abs().max() <= bound and m.bias.abs().max() <= bound
        assert torch.count_nonzero(m.bias) == m.bias.numel()
        if m.weight.numel() >= 5000:  # enough draws for the std of U(-b, b): b/√3
            assert m.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.05)


def test_conv_is_the_references() -> None:
    """Models/mlp.py's conv: two 3x3 convs of 32 filters (padding 1), Linear(32·H·W)."""
    model = build_model("conv", MNIST, 10)
    convs = _layers(model, nn.Conv2d)
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 32, (3, 3), (1, 1)), (32, 32, (3, 3), (1, 1))]
    (fc,) = _layers(model, nn.Linear)
    assert (fc.in_features, fc.out_features) == (32 * 28 * 28, 10)
    assert not any(isinstance(m, (nn.AdaptiveAvgPool2d, nn.MaxPool2d, nn.AvgPool2d))
                   for m in model.modules())


def test_resnet18_init_is_the_tiny_imagenet_familys() -> None:
    """Convs Kaiming normal, fan_out; the classifier keeps PyTorch's uniform init."""
    torch.manual_seed(0)
    model = build_model("resnet18", CIFAR, 10)
    conv = model.blocks[6].conv1  # 256 -> 256 channels, 3x3
    fan_out = conv.weight.shape[0] * 9
    assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.02)
    bound = 1 / 512**0.5
    assert model.fc.weight.abs().max() <= bound and torch.count_nonzero(model.fc.bias) == 10
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0)
               for m in _layers(model, nn.BatchNorm2d))


def test_vgg_at_64x64_is_the_tiny_imagenet_family() -> None:
    """tinyimagenet_vgg.py: the cfg with its last max-pool, 2048-1024-1024-classes classifier,
    convs Kaiming normal fan_out, linear N(0, 0.01), zero biases; 32x32 stays CIFAR-style."""
    torch.manual_seed(0)
    model = build_model("vgg16-bn", TINY, 200)
    assert model.prunetui_init == "kaiming-out-n01"
    assert isinstance(model.layers[-1], nn.MaxPool2d)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.layers) == 5
    linears = _layers(model, nn.Linear)
    assert [(m.in_features, m.out_features) for m in linears] == [
        (2048, 1024), (1024, 1024), (1024, 200)]
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 2
    assert linears[0].weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert all(torch.count_nonzero(m.bias) == 0 for m in linears + _layers(model, nn.Conv2d))
    conv = model.layers[1].conv  # 64 -> 64
    assert conv.weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.05)
    assert model(torch.randn(2, *TINY)).shape == (2, 200)
    assert build_model("vgg16-bn", CIFAR, 10).prunetui_init == "kaiming-in"


# Counts from instantiating the reference's own classes (ganguli-lab/Synaptic-Flow, commit
# HEAD of /work/.mirror: Models/mlp.py, lottery_vgg.py, lottery_resnet.py, tinyimagenet_vgg.py,
# tinyimagenet_resnet.py) on torch 2.14: (model, input, classes) -> (sum of its parameters,
# sum over Utils/generator.masked_parameters, i.e. the prunable weights).
REFERENCE_COUNTS = {
    ("fc", MNIST, 10): (119_910, 119_400),
    ("conv", MNIST, 10): (260_458, 260_384),
    ("conv", CIFAR, 10): (337_834, 337_760),
    ("vgg16", CIFAR, 10): (14_719_818, 14_715_584),
    ("vgg11-bn", CIFAR, 10): (9_231_114, 9_222_848),
    ("vgg16-bn", CIFAR, 10): (14_728_266, 14_715_584),
    ("vgg11-bn", TINY, 200): (12_578_760, 12_568_256),
    ("vgg16-bn", TINY, 200): (18_075_912, 18_060_992),
    ("vgg16", TINY, 200): (18_067_464, 18_060_992),
    ("resnet20", CIFAR, 10): (272_714, 270_896),
    ("resnet18", CIFAR, 10): (11_174_986, 11_164_352),
    ("resnet18", CIFAR, 100): (11_221_156, 11_210_432),
    ("resnet18", TINY, 200): (11_272_456, 11_261_632),
    ("wide-resnet18", CIFAR, 100): (11_221_156, 11_210_432),
    ("wide-resnet18", TINY, 200): (11_272_456, 11_261_632),
}
# The reference's identity shortcuts (Identity2d) hold a per-channel scale fixed at 1, never
# trained nor pruned by default; ours are parameter-free, so our totals lack these.
IDENTITY_SCALES = {"resnet20": 3 * 16 + 2 * 32 + 2 * 64, "resnet18": 64 * 2 + 128 + 256 + 512,
                   "wide-resnet18": 64 * 2 + 128 + 256 + 512}


@pytest.mark.parametrize(("key", "counts"), list(REFERENCE_COUNTS.items()), ids=str)
def test_parameter_counts_match_the_reference(
    key: tuple[str, tuple[int, int, int], int], counts: tuple[int, int]
) -> None:
    name, shape, classes = key
    total, prunable = parameter_count(name, shape, classes)
    assert (total + IDENTITY_SCALES.get(name, 0), prunable) == counts


def test_resnet18_takes_both_sizes_and_wide_is_the_same_net() -> None:
    for shape, classes in ((CIFAR, 100), (TINY, 200)):
        torch.manual_seed(0)
        a = build_model("resnet18", shape, classes).eval()
        torch.manual_seed(0)
        b = build_model("wide-resnet18", shape, classes).eval()
        x = torch.randn(2, *shape)
        with torch.no_grad():
            assert torch.equal(a(x), b(x)) and a(x).shape == (2, classes)
    convs = _layers(build_model("resnet18", CIFAR, 10), nn.Conv2d)
    assert sum(c.kernel_size == (3, 3) for c in convs) + 1 == 18  # + the classifier
    assert [c.out_channels for c in convs if c.kernel_size == (1, 1)] == [128, 256, 512]


def test_image_models_accept_their_sizes_only() -> None:
    tiny = catalog.DatasetInfo("tiny-imagenet", (3, 64, 64), 200, (0.5,) * 3, (0.25,) * 3,
                               True, 100000, 10000, "stand-in")
    for name in ("resnet18", "wide-resnet18", "vgg11-bn", "vgg16-bn", "vgg16"):
        assert catalog.MODELS[name].check_dataset(tiny) is None
        assert catalog.MODELS[name].check_dataset(catalog.DATASETS["cifar100"]) is None
    assert "needs 32x32 inputs" in str(catalog.MODELS["resnet20"].check_dataset(tiny))
    problem = catalog.MODELS["resnet18"].check_dataset(catalog.DATASETS["mnist"])
    assert problem == ("model 'resnet18' needs 32x32 or 64x64 inputs but dataset 'mnist' has "
                       "28x28; use it with: cifar10, cifar100"
                       + "".join(f", {d.name}" for d in catalog.DATASETS.values()
                                 if d.shape[1:] == (64, 64)))


# Run ids of the code before model revisions (commit 24afcdc): fc and conv changed (init; conv's
# layers too), so their runs get new ids; vgg16 and resnet20 did not, so theirs stay.
OLD_IDS = {"fc": ("mnist", "44136fa355"), "conv": ("mnist", "f0fb51c05c"),
           "vgg16": ("cifar10", "61eded55f9"), "resnet20": ("cifar10", "d35424243b")}


@pytest.mark.parametrize("name", list(OLD_IDS))
def test_changed_models_get_new_run_ids(name: str) -> None:
    dataset, old = OLD_IDS[name]
    config = RunConfig(model=name, dataset=dataset)
    revision = catalog.MODELS[name].revision
    assert revision == (2 if name in ("fc", "conv") else 1)
    assert (config.run_id != old) == (revision > 1)
    assert ("model_revision" in config.identity()) == (revision > 1)


def test_models_command_shows_each_init() -> None:
    from typer.testing import CliRunner

    from prunetui.tui.cli import app

    r = CliRunner().invoke(app, ["models", "--json"])
    assert r.exit_code == 0, r.output
    rows = {row["model"]: row for row in json.loads(r.stdout)}
    assert list(rows) == list(catalog.MODELS)
    assert rows["fc"]["init"] == rows["conv"]["init"] == "torch-default"
    assert rows["vgg16-bn"]["init"] == "kaiming-in; 64x64: kaiming-out-n01"
    assert rows["resnet20"]["init"] == "kaiming-in"
    assert rows["resnet18"]["init"] == rows["wide-resnet18"]["init"] == "kaiming-out"
    assert (rows["resnet18"]["params"], rows["resnet18"]["prunable"]) == (
        11_174_986 - IDENTITY_SCALES["resnet18"], 11_164_352)  # on cifar10
    r = CliRunner().invoke(app, ["models"])
    assert r.exit_code == 0
    assert "init" in r.output and "torch-default: PyTorch's own layer init" in r.output

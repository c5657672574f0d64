"""Model registry: names, shapes, parameter counts, VGG naming and initialisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunetui.core import catalog
from prunetui.core.errors import ConfigError
from prunetui.core.masks import find_prunable
from prunetui.core.models import BUILDERS, build_model, init_weights, parameter_count

CIFAR = (3, 32, 32)
MNIST = (1, 28, 28)


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
    init_weights(b)
    first = b.layers[0]
    assert torch.count_nonzero(first.bias) == 0
    assert first.weight.abs().max() < 5.0


def test_parameter_count_is_cheap_and_leaves_rng_alone() -> None:
    torch.manual_seed(11)
    before = torch.rand(1)
    torch.manual_seed(11)
    total, prunable = parameter_count("vgg19", CIFAR, 100)
    after = torch.rand(1)
    assert torch.equal(before, after)
    assert prunable == 20024000 - 512 * 10 + 512 * 100
    assert total == prunable + sum([64, 64, 128, 128] + [256] * 4 + [512] * 8) + 100

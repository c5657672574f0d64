"""core.compact: the compact model computes what the masked model computes, with less."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunetui.core.compact import (
    CompactConv2d,
    CompactLinear,
    CompactModel,
    SparseLinear,
    compact,
)
from prunetui.core.masks import attach_masks, masked
from prunetui.core.metrics import time_inference
from prunetui.core.models import build_model

MNIST = (1, 28, 28)
CIFAR = (3, 32, 32)
ATOL = 1e-5


def _randomize(model: nn.Module, gen: torch.Generator) -> None:
    """Non-zero biases (positive ones included) and non-trivial batch-norm statistics, so dead
    units carry constants that must be folded, not dropped."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)) and m.bias is not None:
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) * 1.5 - 0.5)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=gen) - 0.5)


def _pruned(name: str, shape: tuple[int, int, int], density: float, dead: float,
            seed: int = 0, include_bias: bool = False) -> nn.Module:
    """``name`` with random masks at ``density`` and a fraction ``dead`` of whole output units
    masked out, weights multiplied by their masks (as the engine leaves them)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build_model(name, shape, 10)
    _randomize(model, gen)
    attach_masks(model, include_bias=include_bias)
    with torch.no_grad():
        for p in masked(model):
            mask = torch.rand(p.mask.shape, generator=gen) < density
            if p.param_name == "weight" and dead:
                rows = torch.rand(p.mask.shape[0], generator=gen) < dead
                mask[rows] = False
            p.set_mask(mask)
            p.param.mul_(p.mask)
    model.eval()
    return model


def _outputs(model: nn.Module, compacted: nn.Module, shape: tuple[int, int, int],
             n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, *shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        return model(x), compacted(x)


def _dense_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


_CASES = [
    *((name, MNIST, d, dead) for name in ("fc", "conv")
      for d, dead in ((0.5, 0.2), (0.1, 0.3), (0.01, 0.5))),
    # VGGs are slower to build and run: fewer densities, each with dead units.
    ("vgg11", CIFAR, 0.3, 0.3),
    ("vgg11", CIFAR, 0.01, 0.5),
    ("vgg11-bn", CIFAR, 0.1, 0.3),
]


@pytest.mark.parametrize(("name", "shape", "density", "dead"), _CASES)
def test_compact_equals_masked(name: str, shape: tuple[int, int, int], density: float,
                               dead: float) -> None:
    model = _pruned(name, shape, density, dead)
    compacted = compact(model, shape)
    assert isinstance(compacted, CompactModel)
    assert compacted.info.structural, compacted.info.fallback
    ref, out = _outputs(model, compacted, shape, n=4 if name.startswith("vgg") else 16)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=ATOL)
    assert compacted.info.max_abs_error <= ATOL
    # Dead units went away: fewer parameters, and fewer units in some layer.
    assert compacted.info.params_after < compacted.info.params_before
    assert any(layer.out_after < layer.out_before for layer in compacted.info.layers)
    # Classifier outputs are all kept.
    assert compacted.info.layers[-1].out_after == 10


def test_model_left_untouched() -> None:
    model = _pruned("conv", MNIST, 0.1, 0.3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    compact(model, MNIST)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training  # flags are the caller's


@pytest.mark.parametrize(("name", "shape"), [("fc", MNIST), ("conv", MNIST), ("vgg11", CIFAR)])
def test_dense_model_compacts_to_itself(name: str, shape: tuple[int, int, int]) -> None:
    model = _pruned(name, shape, 1.0, 0.0)
    compacted = compact(model, shape)
    assert compacted.info.structural
    assert compacted.info.params_after == compacted.info.params_before
    assert all(layer.out_after == layer.out_before and layer.kernel == "dense"
               for layer in compacted.info.layers)
    ref, out = _outputs(model, compacted, shape, n=4)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)


def test_dead_unit_with_positive_bias_is_folded_into_next_linear() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3)).eval()
    with torch.no_grad():
        model[0].weight[1].zero_()  # unit 1 is dead: it outputs relu(bias) = 2.0 ...
        model[0].bias[1] = 2.0
        model[0].weight[2].zero_()  # ... unit 2 outputs relu(-1) = 0
        model[0].bias[2] = -1.0
    compacted = compact(model, (6,))
    first = compacted.info.layers[0]
    assert (first.out_before, first.out_after) == (4, 2)
    ref, out = _outputs(model, compacted, (6,))
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=ATOL)
    # The constant 2.0 * W2[:, 1] now lives in the second layer's bias.
    first_module, second = compacted.body
    assert isinstance(first_module, CompactLinear) and first_module.relu  # ReLU fused in
    assert isinstance(second, CompactLinear)
    torch.testing.assert_close(second.bias, model[2].bias + 2.0 * model[2].weight[:, 1])


def test_dead_filter_folds_into_bias_without_padding_and_a_map_with_padding() -> None:
    torch.manual_seed(0)
    for padding, expect_map in ((0, False), (1, True)):
        model = nn.Sequential(
            nn.Conv2d(2, 5, 3, padding=padding), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(5, 4, 3, padding=padding), nn.ReLU(), nn.Flatten(),
            nn.Linear(4 * (1 if padding == 0 else 16), 3),
        ).eval()
        with torch.no_grad():
            model[0].weight[3].zero_()
            model[0].bias[3] = 0.7  # a dead filter with a positive bias
        compacted = compact(model, (2, 8, 8))
        assert compacted.info.structural
        assert compacted.info.layers[0].out_after == 4
        assert compacted.info.layers[1].bias_map is expect_map
        assert any(isinstance(m, CompactConv2d) and m.bias_map is not None
                   for m in compacted.modules()) is expect_map
        ref, out = _outputs(model, compacted, (2, 8, 8))
        torch.testing.assert_close(out, ref, atol=ATOL, rtol=ATOL)


def test_unused_units_are_removed() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 2)).eval()
    with torch.no_grad():
        model[2].weight[:, :4].zero_()  # only units 4 and 5 of the first layer are read
    compacted = compact(model, (5,))
    assert compacted.info.layers[0].out_after == 2
    ref, out = _outputs(model, compacted, (5,))
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=ATOL)


def test_collapsed_layer_gives_the_constant_output() -> None:
    model = _pruned("fc", MNIST, 0.3, 0.0)
    with torch.no_grad():
        for p in masked(model):
            if p.layer == "layers.4":
                p.mask.zero_()
                p.param.zero_()
    compacted = compact(model, MNIST)
    assert compacted.info.structural
    ref, out = _outputs(model, compacted, MNIST)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=ATOL)
    assert torch.allclose(out, out[:1].expand_as(out))  # nothing reaches the output


def test_masked_biases_are_respected() -> None:
    model = _pruned("fc", MNIST, 0.1, 0.3, include_bias=True)
    compacted = compact(model, MNIST)
    ref, out = _outputs(model, compacted, MNIST)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=ATOL)


def test_sparse_kernels() -> None:
    model = _pruned("fc", MNIST, 0.02, 0.0)
    auto = compact(model, MNIST)
    kernels = [layer.kernel for layer in auto.info.layers]
    assert kernels[0] == "csr"  # 100x784 at 2%: sparse; the 100x10 classifier is too small
    assert kernels[-1] == "dense"
    assert any(isinstance(m, SparseLinear) for m in auto.modules())
    assert auto.info.stored_after < auto.info.params_after
    never = compact(model, MNIST, sparse="never")
    assert all(layer.kernel == "dense" for layer in never.info.layers)
    always = compact(model, MNIST, sparse="always")
    assert all(layer.kernel == "csr" for layer in always.info.layers)
    measured = compact(model, MNIST, sparse="measure")
    for variant in (auto, never, always, measured):
        ref, out = _outputs(model, variant, MNIST)
        torch.testing.assert_close(out, ref, atol=ATOL, rtol=ATOL)
    with pytest.raises(ValueError, match="sparse"):
        compact(model, MNIST, sparse="maybe")


def test_resnet_falls_back_to_the_masked_model() -> None:
    model = _pruned("resnet20", CIFAR, 0.1, 0.3)
    compacted = compact(model, CIFAR)
    assert not compacted.info.structural
    assert compacted.info.fallback and "more than once" in compacted.info.fallback
    assert compacted.info.params_after == compacted.info.params_before
    # No mask buffers left: the masks are multiplied into the weights.
    assert not any(name.endswith("_mask") for name, _ in compacted.named_buffers())
    ref, out = _outputs(model, compacted, CIFAR, n=4)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=ATOL)


def test_untraceable_model_falls_back() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.a(x) * 2  # a multiplication compact() does not know
            return out

    model = Odd().eval()
    compacted = compact(model, (4,))
    assert not compacted.info.structural
    ref, out = _outputs(model, compacted, (4,))
    torch.testing.assert_close(out, ref)


def test_wrong_input_shape_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="input_shape"):
        compact(_pruned("conv", MNIST, 0.5, 0.0), CIFAR)


def test_inference_only_and_timeable() -> None:
    model = _pruned("conv", MNIST, 0.1, 0.3)
    compacted = compact(model, MNIST)
    assert not compacted.training
    assert not any(p.requires_grad for p in compacted.parameters())
    batches = [torch.randn(32, *MNIST) for _ in range(2)]
    timing = time_inference(compacted, lambda: batches, torch.device("cpu"), repeats=2)
    assert timing.images == 64
    assert compacted.info.to_dict()["structural"] is True

"""FLOPs, weight histograms, layer-collapse detection and inference timing."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from prunetui.core.masks import Prunable, apply_masks, attach_masks, counts
from prunetui.core.metrics import (
    Collapse,
    LayerStat,
    detect_collapse,
    flops,
    layer_stats,
    time_inference,
    weight_histograms,
)
from prunetui.core.models import build_model
from prunetui.core.report import collapse_message

CIFAR = (3, 32, 32)
DIGITS = (1, 8, 8)


def _by_name(prunables: list[Prunable], name: str) -> Prunable:
    return next(p for p in prunables if p.name == name)


def _record(c: Collapse) -> dict[str, Any]:
    """The result's ``collapse`` record, as ``experiment`` stores it."""
    return {"empty_layers": c.empty_layers, "disconnected": c.disconnected,
            "collapsed": c.collapsed}


def _stat(stats: list[LayerStat], name: str) -> LayerStat:
    return next(s for s in stats if s.name == name)


@pytest.fixture(scope="module")
def vgg16() -> nn.Module:
    torch.manual_seed(0)
    return build_model("vgg16", CIFAR, 10)


def test_dense_vgg16_flops_match_reference(vgg16: nn.Module) -> None:
    stats = layer_stats(vgg16, CIFAR)
    assert flops(stats) == (313_478_154, 313_478_154)
    assert _stat(stats, "layers.0.conv").flops_dense == 1_769_472
    assert _stat(stats, "layers.14.conv").flops_dense == 9_437_184
    assert _stat(stats, "fc").flops_dense == 5_120
    assert _stat(stats, "fc").bias_flops_dense == 10
    assert _stat(stats, "layers.0.conv").bias_flops_dense == 64 * 32 * 32
    assert [s.kind for s in stats] == ["conv"] * 13 + ["linear"]
    assert all(s.density == 1.0 and s.remaining == s.params for s in stats)
    first = stats[0].to_dict()
    assert first["shape"] == [64, 3, 3, 3] and first["name"] == "layers.0.conv"


def test_pruned_flops_are_exact() -> None:
    model = build_model("vgg16", CIFAR, 10)
    prunables = attach_masks(model, include_bias=True)
    first = _by_name(prunables, "layers.0.conv.weight")
    deep = _by_name(prunables, "layers.14.conv.weight")
    fc_bias = _by_name(prunables, "fc.bias")
    first.mask.view(-1)[:1000] = False
    deep.mask.view(-1)[::3] = False
    fc_bias.mask[:4] = False
    apply_masks(prunables)
    stats = layer_stats(model, CIFAR)
    s0, s14, sfc = (_stat(stats, n) for n in ("layers.0.conv", "layers.14.conv", "fc"))
    assert s0.remaining == 1728 - 1000
    assert s0.flops_pruned == (1728 - 1000) * 32 * 32
    deep_kept = deep.mask.numel() - len(range(0, deep.mask.numel(), 3))
    assert s14.remaining == deep_kept and s14.flops_pruned == deep_kept * 2 * 2
    assert s14.density == pytest.approx(deep_kept / deep.mask.numel())
    assert isinstance(s14.flops_pruned, int)
    assert (sfc.bias_flops_dense, sfc.bias_flops_pruned) == (10, 6)
    dense, pruned = flops(stats)
    assert dense == 313_478_154
    assert pruned == dense - 1000 * 32 * 32 - (deep.mask.numel() - deep_kept) * 4 - 4
    total, remaining = counts([p for p in prunables if p.param_name == "weight"])
    assert sum(s.remaining for s in stats) == remaining and sum(s.params for s in stats) == total


def test_fc_flops_on_mnist() -> None:
    model = build_model("fc", (1, 28, 28), 10)
    weights = 784 * 100 + 4 * 100 * 100 + 100 * 10
    biases = 5 * 100 + 10
    assert flops(layer_stats(model, (1, 28, 28))) == (weights + biases, weights + biases)


def test_batchnorm_flops_and_mode_restored() -> None:
    model = build_model("vgg11-bn", CIFAR, 10)
    model.train()
    model.fc.eval()
    stats = layer_stats(model, CIFAR)
    assert model.training and not model.fc.training
    bn = _stat(stats, "layers.0.bn")
    assert bn.kind == "batchnorm"
    assert (bn.flops_dense, bn.bias_flops_dense) == (64 * 32 * 32, 64 * 32 * 32)
    plain = flops(layer_stats(build_model("vgg11", CIFAR, 10), CIFAR))[0]
    bn_terms = sum(s.flops_dense + s.bias_flops_dense for s in stats if s.kind == "batchnorm")
    assert flops(stats)[0] == plain + bn_terms


def test_histograms_count_only_kept_weights() -> None:
    torch.manual_seed(0)
    model = build_model("fc", DIGITS, 10)
    prunables = attach_masks(model)
    gen = torch.Generator().manual_seed(1)
    for p in prunables:
        p.set_mask(torch.rand(p.mask.shape, generator=gen) < 0.3)
    apply_masks(prunables)
    # A pruned entry holding a huge value must be ignored, both in counts and in the range.
    first = prunables[0]
    idx = (~first.mask).nonzero()[0]
    with torch.no_grad():
        first.param[tuple(idx)] = 1000.0
    hists = weight_histograms(model, bins=20)
    assert [h.layer for h in hists] == [p.layer for p in prunables]
    bound = max(p.param[p.mask].abs().max().item() for p in prunables)
    for h, p in zip(hists, prunables, strict=True):
        assert h.edges == hists[0].edges
        assert len(h.edges) == 21 and len(h.fractions) == 20
        assert h.edges[0] == pytest.approx(-bound) and h.edges[-1] == pytest.approx(bound)
        density = p.mask.sum().item() / p.mask.numel()
        assert sum(h.fractions) == pytest.approx(density)
        assert density < 0.5


def test_histograms_without_masks_are_dense() -> None:
    model = build_model("conv", DIGITS, 10)
    hists = weight_histograms(model, bins=10)
    assert len(hists) == 3
    for h in hists:
        assert sum(h.fractions) == pytest.approx(1.0)
    # Symmetric range: the initial weights fall on both sides of zero.
    assert hists[0].edges[0] == pytest.approx(-hists[0].edges[-1])
    assert sum(hists[0].fractions[:5]) > 0 and sum(hists[0].fractions[5:]) > 0


def test_collapse_detects_empty_layer() -> None:
    model = build_model("fc", DIGITS, 10)
    prunables = attach_masks(model)
    assert detect_collapse(model, DIGITS) == Collapse([], False)
    assert not detect_collapse(model, DIGITS).collapsed
    prunables[2].mask.zero_()
    result = detect_collapse(model, DIGITS)
    assert result.empty_layers == [prunables[2].layer]
    assert result.disconnected and result.collapsed


def test_collapse_detects_disconnection_without_empty_layer() -> None:
    model = build_model("fc", DIGITS, 10)
    prunables = attach_masks(model)
    layer1, layer2 = prunables[0], prunables[1]
    # Layer 1 feeds only hidden units 0-9; layer 2 reads from every unit except those.
    layer1.mask[10:] = False
    layer2.mask[:, :10] = False
    apply_masks(prunables)
    result = detect_collapse(model, DIGITS)
    assert result.empty_layers == []
    assert result.disconnected and result.collapsed
    # One surviving edge from unit 5 reconnects the net.
    layer2.mask[17, 5] = True
    assert not detect_collapse(model, DIGITS).disconnected


def test_collapse_ignores_biases_and_leaves_model_untouched() -> None:
    model = build_model("fc", DIGITS, 10)
    prunables = attach_masks(model)
    prunables[0].mask.zero_()
    with torch.no_grad():
        model.layers[2].bias.fill_(1.0)  # signal from a bias is not a path from the input
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert detect_collapse(model, DIGITS).disconnected
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_dense_resnet110_is_connected() -> None:
    model = build_model("resnet110", CIFAR, 10)
    attach_masks(model)
    assert detect_collapse(model, CIFAR) == Collapse([], False)


def test_resnet_shortcut_keeps_connection_around_empty_conv() -> None:
    model = build_model("resnet20", CIFAR, 10)
    prunables = attach_masks(model, include_batchnorm=True)
    _by_name(prunables, "blocks.1.conv1.weight").mask.zero_()
    result = detect_collapse(model, CIFAR)
    assert result.empty_layers == ["blocks.1.conv1"]
    assert not result.disconnected  # the identity shortcut still carries the signal
    assert not result.collapsed  # an empty layer alone is not layer collapse
    message = collapse_message(_record(result))
    assert message == ("empty layer: no weight left in blocks.1.conv1; a path from input to "
                       "output remains")
    # Pruning every scale of a batch norm on the only path (the stem) cuts everything.
    _by_name(prunables, "bn.weight").mask.zero_()
    assert detect_collapse(model, CIFAR).disconnected


@pytest.mark.parametrize("name", ["resnet20", "resnet18"])
def test_resnet_with_one_stage_emptied_is_collapsed(name: str) -> None:
    """Every conv of the second stage, its projection shortcut included: nothing gets past."""
    model = build_model(name, CIFAR, 10)
    prunables = attach_masks(model)
    first = 3 if name == "resnet20" else 2  # the first block of stage 2
    stage = {f"blocks.{first + i}." for i in range(3 if name == "resnet20" else 2)}
    emptied = [p for p in prunables if any(p.layer.startswith(b) for b in stage)]
    assert any(p.layer.endswith("shortcut.0") for p in emptied)
    for p in emptied:
        p.mask.zero_()
    result = detect_collapse(model, CIFAR)
    assert result.empty_layers == [p.layer for p in emptied]
    assert result.disconnected and result.collapsed
    message = collapse_message(_record(result))
    assert message is not None
    assert message.startswith("layer collapse: no path from input to output (no weight left in "
                              f"{emptied[0].layer}, ")


def test_collapse_message_reads_old_records() -> None:
    """Runs stored when ``collapsed`` also meant "some layer is empty" say what really fired."""
    old = {"empty_layers": ["blocks.1.conv1"], "disconnected": False, "collapsed": True}
    assert collapse_message(old) == ("empty layer: no weight left in blocks.1.conv1; a path "
                                     "from input to output remains")
    assert collapse_message({"empty_layers": [], "disconnected": False, "collapsed": False}) \
        is None
    fc = {"empty_layers": ["layers.4", "layers.6"], "disconnected": True, "collapsed": True}
    assert collapse_message(fc) == ("layer collapse: no path from input to output (no weight "
                                    "left in layers.4, layers.6)")


def test_time_inference_reports_sane_numbers() -> None:
    model = build_model("conv", DIGITS, 10)
    model.train()
    calls = []

    def batches() -> list[torch.Tensor]:
        calls.append(1)
        return [torch.randn(16, *DIGITS), torch.randn(16, *DIGITS), torch.randn(4, *DIGITS)]

    t = time_inference(model, batches, torch.device("cpu"), repeats=3, warmup=1)
    assert len(calls) == 4  # one warm-up pass, three timed ones
    assert (t.repeats, t.batch_size, t.images) == (3, 16, 36)
    assert 0 < t.min <= t.median <= t.max
    assert model.training  # mode restored
    assert t.to_dict()["images"] == 36
    with pytest.raises(ValueError):
        time_inference(model, batches, torch.device("cpu"), repeats=0)

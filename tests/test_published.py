"""The SynFlow paper's Figure 6 data as shipped: names mapped to ours, recipes as RunConfig
settings, and the comparison of a user's cells with the published runs."""

from __future__ import annotations

import fnmatch
import json
import tomllib
from pathlib import Path

import pytest

from prunetui.core import catalog
from prunetui.core.config import RunConfig
from prunetui.core.errors import DataError
from prunetui.core.published import (
    FILE,
    TOLERANCE,
    Comparison,
    compare,
    load_published,
    recipe_differences,
)

ROOT = Path(__file__).parent.parent
SHIPPED = ROOT / "core" / "reference_data" / FILE


def test_the_shipped_file_keeps_its_provenance_and_every_cell() -> None:
    raw = json.loads(SHIPPED.read_text())
    pub = load_published()
    assert pub.what == raw["what"] and "Tanaka" in pub.what
    assert pub.source == raw["source"] and "ganguli-lab/Synaptic-Flow" in pub.source
    assert pub.layout == raw["layout"]
    assert "Mag scores the weights at initialization" in pub.pruning_note
    assert len(pub.experiments) == 12
    for e in pub.experiments.values():
        assert e.compressions == tuple(i / 4 for i in range(13))
        assert e.pruners == ["rand", "mag", "snip", "grasp", "synflow"]
        assert all(len(runs) == 3 and all(len(r) == 13 for r in runs)
                   for runs in e.top1.values())


def test_the_wheel_ships_the_file() -> None:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert cfg["package-dir"]["prunetui.core"] == "core"
    patterns = cfg["package-data"]["prunetui.core"]
    assert any(fnmatch.fnmatch(f"reference_data/{FILE}", p) for p in patterns)


def test_names_map_to_ours() -> None:
    pub = load_published()
    resnet = pub.find("resnet18", "cifar10")
    assert resnet is not None and resnet.key == "cifar10_tiny_resnet18"
    assert "Models/tinyimagenet_resnet.py" in resnet.model_source
    wide = pub.find("wide-resnet18", "tiny-imagenet")
    assert wide is not None and wide.key == "tinyimagenet_wide_resnet18"
    vgg = pub.find("vgg16-bn", "cifar100")
    assert vgg is not None and vgg.key == "cifar100_lottery_vgg16_bn"
    assert pub.find("vgg16", "cifar10") is None
    assert {e.model for e in pub.experiments.values()} == {
        "vgg11-bn", "vgg16-bn", "resnet18", "wide-resnet18"}
    assert {e.dataset for e in pub.experiments.values()} == {
        "cifar10", "cifar100", "tiny-imagenet"}


def test_cells_match_the_file_exactly_and_only_at_its_compressions() -> None:
    vgg = load_published().find("vgg16-bn", "cifar100")
    assert vgg is not None
    assert vgg.runs_at("snip", 0.0) == (73.21, 73.2, 72.86)
    assert vgg.runs_at("snip", 0.25 + 1e-12) == (72.84, 73.85, 73.29)
    assert vgg.runs_at("snip", 0.25 + 1e-6) is None
    assert vgg.runs_at("snip", 0.05) is None
    assert vgg.runs_at("snip", 3.25) is None
    assert vgg.runs_at("erk", 1.0) is None
    band = vgg.series("synflow")
    assert band.label == "SynFlow, published (3 runs)" and len(band.points) == 13
    assert band.points[0].values == vgg.runs_at("synflow", 0.0)


def test_recipes_become_our_settings() -> None:
    pub = load_published()
    vgg = pub.find("vgg16-bn", "cifar10")
    assert vgg is not None and vgg.unsupported() is None
    s = vgg.settings("synflow")
    assert s == {"model": "vgg16-bn", "dataset": "cifar10", "pruner": "synflow",
                 "scope": "global", "schedule": "exponential", "prune_iterations": 100,
                 "optimizer": "momentum", "lr": 0.1, "lr_drops": (60, 120),
                 "lr_drop_rate": 0.1, "weight_decay": 0.0001, "batch_size": 128,
                 "pre_epochs": 0, "post_epochs": 160, "prune_samples_per_class": 10}
    assert vgg.settings("grasp")["prune_iterations"] == 1
    cfg = vgg.run_config("synflow", 1.5, seed=2).validate()
    assert (cfg.iterations, cfg.compression, cfg.seed) == (100, 1.5, 2)
    resnet = pub.find("resnet18", "cifar100")
    assert resnet is not None
    r = resnet.settings("mag")
    assert (r["lr"], r["lr_drop_rate"], r["weight_decay"]) == (0.01, 0.2, 0.0005)
    tiny = pub.find("vgg11-bn", "tiny-imagenet")
    assert tiny is not None
    assert tiny.recipe.lr_drops == (30, 60, 80) and tiny.recipe.post_epochs == 100
    if "resnet18" not in catalog.MODELS:
        assert resnet.unsupported() == "model 'resnet18' not in prunetui's catalog"


def test_momentum_is_the_references_nesterov_sgd() -> None:
    import torch

    from prunetui.core.train import make_optimizer

    opt = make_optimizer("momentum", [torch.nn.Parameter(torch.zeros(2))], 0.1, 1e-4)
    group = opt.param_groups[0]
    assert isinstance(opt, torch.optim.SGD)
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.9, True, 1e-4)


def test_a_sweep_preset_covers_the_panel() -> None:
    vgg = load_published().find("vgg11-bn", "cifar10")
    assert vgg is not None
    configs = vgg.sweep_spec().configs()
    assert len(configs) == 5 * 13 * 3
    assert {c.seed for c in configs} == {0, 1, 2}
    syn = next(c for c in configs if c.pruner == "synflow" and c.compression == 2.0)
    assert syn == vgg.run_config("synflow", 2.0, seed=syn.seed)
    assert syn.sweep == "synflow-fig6-cifar10_lottery_vgg11_bn"
    small = vgg.sweep_spec(seeds=[1], pruners=["rand"], compressions=[1.0], name="x")
    assert [(c.pruner, c.compression, c.seed) for c in small.configs()] == [("rand", 1.0, 1)]


# -- comparison ------------------------------------------------------------------------------


def test_recipe_differences_say_yours_vs_the_papers() -> None:
    vgg = load_published().find("vgg16-bn", "cifar10")
    assert vgg is not None
    short = RunConfig(model="vgg16-bn", dataset="cifar10", pruner="synflow", compression=1.0,
                      optimizer="momentum", lr=0.01, post_epochs=2, batch_size=128,
                      lr_drops=(60, 120), weight_decay=1e-4, prune_iterations=10,
                      ablation="shuffle")
    assert recipe_differences(vgg, "synflow", short.to_dict()) == [
        "lr 0.01 vs 0.1", "post_epochs 2 vs 160", "prune_iterations 10 vs 100",
        "ablation shuffle vs none"]
    # The paper's own recipe (as stored: the default iterations as None) differs in nothing.
    same = vgg.run_config("grasp", 2.0, seed=5).to_dict()
    assert same["prune_iterations"] is None
    assert recipe_differences(vgg, "grasp", same) == []
    snip = vgg.run_config("snip", 1.0).with_(prune_samples_per_class=5, amp=True).to_dict()
    assert recipe_differences(vgg, "snip", snip) == ["prune_samples_per_class 5 vs 10",
                                                     "amp true vs false"]
    # Data-free pruners ignore the setting.
    rand = vgg.run_config("rand", 1.0).with_(prune_samples_per_class=5).to_dict()
    assert recipe_differences(vgg, "rand", rand) == []
    # Missing keys take RunConfig's defaults (adam, 10 epochs, ...).
    assert "optimizer adam vs momentum" in recipe_differences(vgg, "rand", {})


def test_compare_flags_only_what_lies_outside_the_band_by_more_than_a_point() -> None:
    vgg = load_published().find("vgg16-bn", "cifar10")
    assert vgg is not None
    lo, hi = min(vgg.runs_at("synflow", 1.0) or ()), max(vgg.runs_at("synflow", 1.0) or ())
    paper = {k: vgg.run_config(k[0], k[1]).to_dict()
             for k in [("synflow", 1.0), ("mag", 1.0), ("snip", 1.0), ("rand", 0.05),
                       ("erk", 1.0)]}
    short = dict(paper[("snip", 1.0)], post_epochs=2)
    rows = compare(vgg, {
        ("synflow", 1.0): [hi + TOLERANCE - 0.01, hi + TOLERANCE - 0.01],  # just inside
        ("mag", 1.0): [40.0],  # far below, trained as the paper: a real discrepancy
        ("snip", 1.0): [60.0, 62.0],  # far below, but 2 epochs: differs by recipe
        ("rand", 0.05): [93.0],  # the paper has no 0.05
        ("erk", 1.0): [90.0],  # nor ERK
        ("grasp", 1.0): [],  # no runs: no row
    }, {**{k: v for k, v in paper.items() if k[0] != "snip"}, ("snip", 1.0): short})
    assert [(r.pruner, r.compression) for r in rows] == [
        ("rand", 0.05), ("mag", 1.0), ("snip", 1.0), ("synflow", 1.0), ("erk", 1.0)]
    by = {r.pruner: r for r in rows}
    syn = by["synflow"]
    assert not syn.outside and syn.verdict == "within the published range"
    assert syn.published_range == (lo, hi)
    assert syn.published_mean == pytest.approx(sum(vgg.runs_at("synflow", 1.0) or ()) / 3)
    assert by["mag"].outside and by["mag"].differences == ()
    assert by["mag"].verdict == "outside the published range"
    assert by["snip"].outside and by["snip"].differences == ("post_epochs 2 vs 160",)
    assert by["snip"].verdict == "differs by recipe" and by["snip"].user_mean == 61.0
    for r in (by["rand"], by["erk"]):
        assert r.published is None and r.verdict == "not in the paper" and not r.outside
        assert r.published_mean is None and r.published_range is None


def test_just_outside_the_tolerance_is_flagged() -> None:
    row = Comparison("mag", 1.0, (91.0 + TOLERANCE + 0.01,), (90.0, 90.5, 91.0), ())
    assert row.outside and row.verdict == "outside the published range"
    below = Comparison("mag", 1.0, (90.0 - TOLERANCE - 0.01,), (90.0, 90.5, 91.0), ())
    assert below.outside


def test_a_bad_data_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_published(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(DataError, match=r"bad\.json is malformed"):
        load_published(bad)
    data = json.loads(SHIPPED.read_text())
    data["experiments"]["cifar10_lottery_vgg16_bn"]["top1"]["mag"][0].pop()
    bad.write_text(json.dumps(data))
    with pytest.raises(DataError, match="cifar10_lottery_vgg16_bn, mag: each run needs 13"):
        load_published(bad)
    data = json.loads(SHIPPED.read_text())
    data["experiments"]["cifar10_lottery_vgg16_bn"]["model"] = "mystery-net"
    bad.write_text(json.dumps(data))
    with pytest.raises(DataError, match="unknown model 'mystery-net'"):
        load_published(bad)

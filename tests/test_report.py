"""Export tables from a known store, compared with expected markdown cell by cell."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import fakes
import pytest

from prunetui.core import figures, report
from prunetui.core.analysis import CollapseCurve, CollapsePoint
from prunetui.core.config import RunConfig
from prunetui.core.errors import ConfigError
from prunetui.core.report import (
    Report,
    Table,
    build_report,
    markdown_table,
    to_csv,
    to_json,
    to_markdown,
)
from prunetui.core.run.result import Compacted, Round
from prunetui.core.store import Store

LAYERS = [("layers.0.conv", 1769472), ("fc", 5120)]


def put(store: Store, pruner: str, c: float, seed: int, top1: float, *, t: float = 0.6,
        ratio: float = 0.5, status: str = "finished", collapsed: bool = False,
        density: tuple[float, float] = (0.5, 0.25), batchnorm: bool = False,
        timed_on: str = "cpu", **settings: Any) -> str:
    cfg = RunConfig(model="vgg16", dataset="cifar10", pruner=pruner, compression=c, seed=seed,
                    **settings)
    rid = cfg.run_id
    store.start_run(cfg.to_dict(), rid, "ref")
    if status != "finished":
        store.fail_run(rid, status, "boom")
        return rid
    layers = [fakes.layer(n, kind="conv", shape=[1], params=1, remaining=1, density=d,
                          flops_dense=f, flops_pruned=round(f * d))
              for (n, f), d in zip(LAYERS, density, strict=True)]
    if batchnorm:  # as metrics.layer_stats lists it, after its conv
        layers.insert(1, fakes.layer("layers.0.bn", kind="batchnorm", shape=[64], density=1.0,
                                     flops_dense=65536))
    built = fakes.structure(layers, density=0.1, dense=313478154, ratio=ratio,
                            collapsed=collapsed)
    store.finish_run(rid, fakes.result(cfg, top1, built=built,
                                       timing=fakes.inference(t, device=timed_on,
                                                              images=10000)))
    d = store.run_dir(rid)
    d.mkdir(parents=True, exist_ok=True)
    (d / "histograms.json").write_text(json.dumps(
        [{"layer": n, "edges": [-1.0, 0.0, 1.0], "fractions": [0.2, 0.3]} for n, _ in LAYERS]))
    return rid


def make_store(tmp_path: Path) -> Store:
    s = Store(tmp_path)
    put(s, "rand", 1.0, 1, 10.0, collapsed=True)
    put(s, "mag", 1.0, 1, 89.0, t=0.5, ratio=0.25)
    put(s, "mag", 1.0, 2, 91.0, t=0.7, ratio=0.25)
    put(s, "snip", 1.0, 1, 0.0, status="failed")
    put(s, "rand", 0.5, 1, 88.0, density=(0.3, 0.4))
    put(s, "mag", 0.5, 1, 89.5, density=(0.9, 0.1))
    return s


def test_report_tables(tmp_path: Path) -> None:
    s = make_store(tmp_path)
    rep = build_report(s.query(sweep="ref"), at=1.0, layers_at=0.5)
    by = {t.key: t for t in rep.tables}
    assert markdown_table(by["accuracy_by_arch"]) == [
        "| Data    | Arch  | Rand    | Mag                | SNIP |",
        "|---------|-------|---------|--------------------|------|",
        "| Cifar10 | VGG16 | 10.00 ‡ | 90.00 ± 1.41 (n=2) | —    |",
    ]
    assert markdown_table(by["accuracy:vgg16:cifar10"]) == [
        "| Compression | Rand    | Mag                | SNIP |",
        "|-------------|---------|--------------------|------|",
        "| 0.5         | 88.00   | 89.50              | —    |",
        "| 1           | 10.00 ‡ | 90.00 ± 1.41 (n=2) | —    |",
    ]
    assert markdown_table(by["time:vgg16:cifar10"])[3] == (
        "| 1           | 0.600 ‡ | 0.600 ± 0.141 (n=2) | —    |")
    assert markdown_table(by["flop_ratio:vgg16:cifar10"])[3] == (
        "| 1           | 0.5000 ‡ | 0.2500 ± 0.0000 (n=2) | —    |")
    assert "313478154" in by["flop_ratio:vgg16:cifar10"].intro
    assert markdown_table(by["layer_flops:vgg16:cifar10"]) == [
        "| Layers        | Unpruned | Rand   | Mag     | SNIP |",
        "|---------------|----------|--------|---------|------|",
        "| layers.0.conv | 1769472  | 530842 | 1592525 | —    |",
        "| fc            | 5120     | 2048   | 512     | —    |",
    ]
    assert markdown_table(by["layer_density:vgg16:cifar10"])[2] == (
        "| layers.0.conv | 0.3000 | 0.9000 | —    |")
    assert by["layer_density:vgg16:cifar10"].notes == [
        "— SNIP: no finished run at compression 0.5"]  # it has one at 1
    notes = by["accuracy:vgg16:cifar10"].notes
    assert "— SNIP at compression 1: failed" in notes
    assert "— SNIP at compression 0.5: not run" in notes
    assert any(n.startswith("‡ layer collapse") for n in notes)
    assert [(f.section, f.filename) for f in rep.figures] == [
        ("1.2.4", "accuracy.png"), ("2.1", "weight_hist_rand.png"), ("2.1", "weight_hist_mag.png"),
        ("2.4", "layer_density.png")]


def test_report_renderers(tmp_path: Path) -> None:
    rep = build_report(make_store(tmp_path).query())
    md = to_markdown(rep)
    assert "#### 1.1 Testing accuracy (top 1)" in md
    assert "#### 1.2.3 FLOP — VGG16 on Cifar10" in md
    assert "![Rand — VGG16 on Cifar10, compression 0.5](weight_hist_rand.png)" in md
    rows = to_csv(rep).splitlines()
    assert rows[0] == ("table,section,row,column,mean,std,n,collapsed,missing,left_out,epochs,"
                       "run_ids,text,note")
    mag = [r for r in rows if r.startswith("accuracy_by_arch,1.1,Cifar10 VGG16,Mag,")]
    assert len(mag) == 1 and mag[0].startswith(
        "accuracy_by_arch,1.1,Cifar10 VGG16,Mag,90.0,1.4142135623730951,2,0,,,10,")
    assert len(mag[0].split(",")[11].split()) == 2  # the two runs' ids
    assert any(r.startswith("accuracy_by_arch,1.1,Cifar10 VGG16,Rand,10.0,,1,1,,,10,")
               for r in rows)  # one run: no std
    doc = json.loads(to_json(rep))
    cell = doc["tables"][0]["rows"][0]["cells"][2]
    assert cell == {"n": 0, "values": [], "run_ids": [], "collapsed": False,
                    "missing": "failed"}
    # The reference's order: 1.1, 1.2.*, 2.1 (figures), 2.2, 2.3.
    heads = [line for line in md.splitlines() if line.startswith("#### ")]
    assert [h.split()[1] for h in heads] == ["1.1", "1.2.1", "1.2.2", "1.2.3", "1.2.4", "2.1",
                                             "2.2", "2.3", "2.4"]


def test_a_cell_pools_the_seeds_of_one_setting_only(tmp_path: Path) -> None:
    s = make_store(tmp_path)  # Mag at c=1: seeds 1 and 2 at the default lr 0.001
    put(s, "mag", 1.0, 1, 40.0, lr=0.0001)  # the same cell, another experiment
    by = {t.key: t for t in build_report(s.query(sweep="ref")).tables}
    assert markdown_table(by["accuracy_by_arch"])[2] == (
        "| Cifar10 | VGG16 | 10.00 ‡ | 90.00 ± 1.41 (n=2) | —    |")
    assert ("Cifar10 VGG16, Mag: left out 1 run with lr=0.0001 (shown: lr=0.001)"
            in by["accuracy_by_arch"].notes)
    assert by["accuracy:vgg16:cifar10"].rows[1][1][1].values == [89.0, 91.0]
    # The setting with more finished runs is the one shown.
    put(s, "mag", 1.0, 2, 42.0, lr=0.0001)
    put(s, "mag", 1.0, 3, 44.0, lr=0.0001)
    by = {t.key: t for t in build_report(s.query(sweep="ref")).tables}
    assert markdown_table(by["accuracy_by_arch"])[2] == (
        "| Cifar10 | VGG16 | 10.00 ‡ | 42.00 ± 2.00 (n=3) | —    |")
    assert ("Cifar10 VGG16, Mag: left out 2 runs with lr=0.001 (shown: lr=0.0001)"
            in by["accuracy_by_arch"].notes)


def test_two_architectures_get_numbered_sections(tmp_path: Path) -> None:
    s = make_store(tmp_path)
    cfg = RunConfig(model="fc", dataset="mnist", pruner="rand", compression=1.0)
    s.start_run(cfg.to_dict(), cfg.run_id)
    s.fail_run(cfg.run_id, "diverged", "nan")
    rep = build_report(s.query())
    t = rep.tables[0]
    assert [labels for labels, _ in t.rows] == [["Cifar10", "VGG16"], ["MNIST", "FC"]]
    assert [x.section for x in rep.tables[1:]] == [
        "1.2.1.1", "1.2.1.2", "1.2.1.3", "1.2.2.1", "1.2.2.2", "1.2.2.3",
        "2.2.1", "2.2.2", "2.3.1", "2.3.2"]
    assert "— MNIST FC, Rand: diverged" in t.notes


def test_small_times_keep_three_significant_digits_and_bn_layers_are_left_out(
        tmp_path: Path) -> None:
    s = Store(tmp_path)
    put(s, "rand", 0.5, 1, 88.0, t=0.000612, batchnorm=True)
    put(s, "mag", 0.5, 1, 89.0, t=0.00116, batchnorm=True)
    rep = build_report(s.query(), at=0.5, layers_at=0.5)
    by = {t.key: t for t in rep.tables}
    # 0.001 for both with the reference's 3 decimals; the difference is the point.
    assert markdown_table(by["time:vgg16:cifar10"])[2] == "| 0.5         | 0.000612 | 0.001160 |"
    layers = by["layer_density:vgg16:cifar10"]
    assert [labels[0] for labels, _ in layers.rows] == ["layers.0.conv", "fc"]
    assert "Batch-norm layers (not pruned) are left out." in layers.intro
    put(s, "snip", 0.5, 1, 87.0, batchnorm=True, prune_batchnorm=True)
    rep = build_report(s.query(), at=0.5, layers_at=0.5)
    layers = {t.key: t for t in rep.tables}["layer_density:vgg16:cifar10"]
    assert [labels[0] for labels, _ in layers.rows] == ["layers.0.conv", "layers.0.bn", "fc"]


def test_a_layer_table_with_no_run_says_so_without_an_empty_table(tmp_path: Path) -> None:
    s = Store(tmp_path)
    put(s, "rand", 1.0, 1, 88.0)
    md = to_markdown(build_report(s.query(), at=1.0, layers_at=0.5))
    section = md.split("#### 2.2 ")[1].split("####")[0]
    assert "- — no finished run at compression 0.5" in section
    assert "|" not in section


def test_a_run_that_diverged_after_pruning_still_has_its_flop_ratio(tmp_path: Path) -> None:
    s = Store(tmp_path)
    put(s, "rand", 1.0, 1, 88.0)
    rid = put(s, "mag", 1.0, 1, 0.0, status="diverged")
    s.record_pruned(rid, fakes.structure(density=0.1, ratio=0.2283))
    by = {t.key: t for t in build_report(s.query(), at=1.0).tables}
    assert markdown_table(by["flop_ratio:vgg16:cifar10"])[2] == "| 1           | 0.5000 | 0.2283 |"
    assert "Runs that stopped after pruning (diverged) count too" in by[
        "flop_ratio:vgg16:cifar10"].intro
    assert markdown_table(by["accuracy:vgg16:cifar10"])[2] == "| 1           | 88.00 | —   |"


def test_times_from_different_devices_get_a_table_each(tmp_path: Path) -> None:
    """Seeds timed on a CPU and on a GPU must not be averaged into one cell."""
    s = Store(tmp_path)
    put(s, "mag", 1.0, 1, 89.0, t=0.5)
    put(s, "mag", 1.0, 2, 90.0, t=0.7)
    put(s, "mag", 1.0, 3, 91.0, t=0.002, timed_on="cuda")
    put(s, "mag", 1.0, 4, 91.0, t=0.003, timed_on="cuda:0")  # the same GPU
    put(s, "snip", 1.0, 1, 0.0, status="failed")
    rep = build_report(s.query())
    by = {t.key: t for t in rep.tables}
    cpu, cuda = by["time:cpu:vgg16:cifar10"], by["time:cuda:0:vgg16:cifar10"]
    assert [t.section for t in rep.tables[1:4]] == ["1.2.1", "1.2.2", "1.2.3"]
    assert "on cpu" in cpu.title and "on cuda:0" in cuda.title
    assert "(batch 256, cpu)" in cpu.intro and "(batch 256, cuda)" in cuda.intro
    assert cpu.columns == ["Mag", "SNIP"]
    assert cpu.rows[0][1][0].values == [0.5, 0.7]
    assert cuda.rows[0][1][0].values == [0.002, 0.003]
    # The failed run is in both, saying why its cell is empty.
    assert cpu.rows[0][1][1].why_empty == cuda.rows[0][1][1].why_empty == "failed"
    # One device: one table, under its usual key and title.
    one = {t.key: t for t in build_report([r for r in s.query()
                                            if r.result is None or r.seed < 3]).tables}
    assert "time:vgg16:cifar10" in one
    assert "on cpu" not in one["time:vgg16:cifar10"].title


def test_a_busy_machines_timings_are_flagged(tmp_path: Path) -> None:
    s = Store(tmp_path)
    quiet = put(s, "mag", 1.0, 1, 89.0, t=0.5)
    busy = put(s, "mag", 1.0, 2, 90.0, t=0.5)
    for rid, (lo, hi) in ((quiet, (0.49, 0.55)), (busy, (0.4, 2.0))):
        row = s.get(rid)
        assert row is not None and row.result is not None
        s.finish_run(rid, replace(row.result, inference=replace(row.result.inference, min=lo,
                                                                max=hi)))
    intro = {t.key: t for t in build_report(s.query()).tables}["time:vgg16:cifar10"].intro
    assert intro.endswith("In 1 of the runs the slowest pass took up to 5.0× the fastest: "
                          "the machine was busy then, and those medians are less reliable.")
    # The compacted model's passes (--sparse-inference) count too.
    row = s.get(quiet)
    assert row is not None and row.result is not None
    s.finish_run(quiet, replace(row.result, inference=replace(
        row.result.inference, compacted=Compacted(median=0.1, min=0.1, max=0.6))))
    intro = {t.key: t for t in build_report(s.query()).tables}["time:vgg16:cifar10"].intro
    assert "In 2 of the runs the slowest pass took up to 6.0× the fastest" in intro
    # Millisecond passes vary twofold with the scheduler alone: not a busy machine.
    from prunetui.core.report import busy_spread

    assert busy_spread(0.0007, 0.0015, 5) is None and busy_spread(0.004, 0.02, 5) == 5.0


def test_the_apps_export_picks_compressions_that_finished_runs_have(tmp_path: Path) -> None:
    """A cancelled run at 0.5 has no per-layer table to show: the nearest finished one is."""
    from prunetui.tui.export import nearest_compression

    s = Store(tmp_path)
    put(s, "mag", 1.0, 1, 89.0)
    put(s, "mag", 2.0, 1, 85.0)
    put(s, "mag", 0.5, 1, 0.0, status="cancelled")
    rows = s.query()
    assert nearest_compression(0.5, rows) == 1.0
    assert nearest_compression(2.0, rows) == 2.0
    assert nearest_compression(1.6, rows) == 2.0
    assert nearest_compression(1.5, rows) == 1.0  # a tie goes to the lower


def test_the_setup_says_how_the_numbers_were_made_and_how_to_make_them_again(
        tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from prunetui.tui.cli import app

    s = Store(tmp_path)
    for p in ("rand", "mag", "grasp"):
        for c in (0.5, 1.0):
            for seed in (1, 2):
                extra: dict[str, Any] = {"post_epochs": 300} if p == "grasp" else {}
                if p == "mag":
                    extra["pre_epochs"] = 20
                put(s, p, c, seed, 80.0 + seed, post_epochs=extra.pop("post_epochs", 100),
                    lr=0.01, lr_drops=(30, 60), **extra)
    rep = build_report(s.query(), at=1.0)
    (setup,) = rep.setups
    shared = dict(setup.shared)
    assert shared["lr"] == "0.01" and shared["lr_drops"] == "30, 60"
    assert shared["optimizer"] == "adam" and "post_epochs" not in shared
    assert "post_epochs: 100 (Rand, Mag); 300 (GraSP)" in setup.differing
    assert "pre_epochs: 0 (Rand, GraSP); 20 (Mag)" in setup.differing
    assert setup.seeds == [1, 2] and setup.software == ["torch test, prunetui test"]
    (command,) = setup.commands
    assert command.startswith("prunetui sweep --models vgg16 --datasets cifar10 --pruners "
                              "rand,mag,grasp --compressions 0.5,1 --seeds 1,2 ")
    assert "--set lr=0.01" in command and "--set grasp.post_epochs=300" in command
    # The command names exactly the stored runs: all of them already finished.
    r = CliRunner().invoke(app, [*command.split()[1:], "--dry-run", "--results-dir",
                                 str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "12 runs, 12 already finished" in r.output
    md = to_markdown(rep)
    assert "### Setup" in md and command in md
    # Cells trained for other budgets than their row's are marked and footnoted.
    acc = {t.key: t for t in rep.tables}["accuracy:vgg16:cifar10"]
    assert markdown_table(acc)[3].count("†") == 2  # Mag (20+100) and GraSP (300) at c=1
    assert any(n.startswith("† GraSP trained 300 epochs where the rest of its row trained 100")
               for n in acc.notes), acc.notes
    # JSON cells carry the ids of the runs they pool.
    doc = json.loads(to_json(rep))
    cell = next(t for t in doc["tables"] if t["key"] == "accuracy:vgg16:cifar10")["rows"][0][
        "cells"][0]
    assert len(cell["run_ids"]) == 2 and cell["epochs"] == "100"
    assert doc["setup"][0]["commands"] == [command]


def test_runs_that_do_not_form_a_grid_get_a_command_each_part(tmp_path: Path) -> None:
    from prunetui.core.sweep.reproduce import commands

    s = Store(tmp_path)
    put(s, "rand", 0.5, 1, 80.0)
    put(s, "rand", 1.0, 2, 80.0)  # (0.5, 1) and (1, 2): not a product
    put(s, "mag", 1.0, 1, 80.0, lr=0.01)
    put(s, "mag", 1.0, 1, 80.0, lr=0.1)  # two settings of one pruner
    got = commands(r.config for r in s.query())
    assert len(got) == 4
    from typer.testing import CliRunner

    from prunetui.tui.cli import app

    for command in got:
        r = CliRunner().invoke(app, [*command.split()[1:], "--dry-run", "--results-dir",
                                     str(tmp_path)])
        assert "1 runs, 1 already finished" in r.output or "1 run, 1 already finished" in (
            r.output), (command, r.output)


def test_ablations_are_an_axis_and_imp_beside_a_sweep_its_own_command(tmp_path: Path) -> None:
    """Pruners sharing a grid share a command, ablations given as --ablations (not a --set a
    sweep refuses), and IMP at one compression beside them does not split the sweep into a
    command per pruner."""
    from typer.testing import CliRunner

    from prunetui.core.sweep.reproduce import commands
    from prunetui.tui.cli import app

    s = Store(tmp_path)
    for pruner in ("snip", "synflow"):
        for ablation in ("none", "shuffle"):
            for c in (1.0, 2.0):
                put(s, pruner, c, 1, 80.0, ablation=ablation, post_epochs=3)
    put(s, "imp", 2.0, 1, 70.0, post_epochs=3)
    got = commands(r.config for r in s.query())
    assert got == [
        "prunetui sweep --models vgg16 --datasets cifar10 --pruners snip,synflow "
        "--compressions 1,2 --ablations none,shuffle --seeds 1 --set post_epochs=3",
        "prunetui sweep --models vgg16 --datasets cifar10 --pruners imp --compressions 2 "
        "--seeds 1 --set post_epochs=3"]
    for command in got:
        r = CliRunner().invoke(app, [*command.split()[1:], "--dry-run", "--results-dir",
                                     str(tmp_path)])
        assert r.exit_code == 0 and "already finished" in r.output, (command, r.output)
        n = 8 if "snip" in command else 1
        assert f"{n} run{'s' * (n > 1)}, {n} already finished" in r.output, r.output


def test_ablations_and_seeds_that_form_no_grid_get_a_command_each(tmp_path: Path) -> None:
    """At one compression, shuffle at seed 1 and none at seed 2 are no grid: one command for
    both would list cells never run, and the store would not report them all as stored."""
    from typer.testing import CliRunner

    from prunetui.core.sweep.reproduce import commands
    from prunetui.tui.cli import app

    s = Store(tmp_path)
    put(s, "snip", 1.0, 1, 80.0, ablation="shuffle")
    put(s, "snip", 1.0, 2, 80.0)
    got = commands(r.config for r in s.query())
    assert got == [
        "prunetui sweep --models vgg16 --datasets cifar10 --pruners snip --compressions 1 "
        "--seeds 2",
        "prunetui sweep --models vgg16 --datasets cifar10 --pruners snip --compressions 1 "
        "--ablations shuffle --seeds 1"]
    for command in got:
        r = CliRunner().invoke(app, [*command.split()[1:], "--dry-run", "--results-dir",
                                     str(tmp_path)])
        assert "1 run, 1 already finished" in r.output, (command, r.output)


def test_runs_an_older_prunetui_computed_otherwise_are_left_out_and_named(
        tmp_path: Path) -> None:
    """fc's init changed: a run stored before has fc's config but the old run id; pooled with
    the new runs it would average two different networks."""
    s = Store(tmp_path)
    new = put(s, "rand", 1.0, 1, 80.0)
    cfg = RunConfig(model="vgg16", dataset="cifar10", pruner="rand", compression=1.0, seed=2)
    old_id = "0" * 10  # what an older prunetui hashed the same config to
    s.start_run(cfg.to_dict(), old_id, "ref")
    s.finish_run(old_id, fakes.result({**cfg.to_dict(), "run_id": old_id}, 10.0))
    rep = build_report(s.query())
    assert rep.stale == [old_id] and rep.runs == 1
    acc = {t.key: t for t in rep.tables}["accuracy:vgg16:cifar10"]
    assert acc.rows[0][1][0].run_ids == [new]
    assert "1 other stored run left out: made by an older prunetui" in to_markdown(rep)


# -- the study: ablations, IMP, the published runs, the critical compression, figures --------

KNOWN = {f.name for f in fields(RunConfig)}


@pytest.fixture
def newer_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs stored with settings this RunConfig does not have yet (``ablation``) count as
    current: their ids are not RunConfig's hashes here. Once RunConfig has them, ``stored``
    hashes them as any run and this changes nothing."""
    real = report.is_current
    monkeypatch.setattr(report, "is_current",
                        lambda row: bool(set(row.config) - KNOWN) or real(row))


def stored(s: Store, pruner: str, c: float, seed: int, top1: float | None, *,
           model: str = "vgg16-bn", dataset: str = "cifar10", ablation: str = "none",
           rounds: tuple[Round, ...] = (), collapsed: bool = False, status: str = "finished",
           densities: tuple[float, ...] = (0.5, 0.25), **settings: Any) -> str:
    """A stored run of the given settings (``ablation`` as the setting RunConfig will have)."""
    extra = {}
    if ablation != "none":
        if "ablation" in KNOWN:
            settings["ablation"] = ablation
        else:
            extra["ablation"] = ablation
    cfg = RunConfig(model=model, dataset=dataset, pruner=pruner, compression=c, seed=seed,
                    **settings)
    config = {**cfg.to_dict(), **extra}
    rid = cfg.run_id if not extra else hashlib.sha256(
        json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]
    s.start_run(config, rid, "study")
    if status != "finished":
        s.fail_run(rid, status, "boom")
        return rid
    layers = [fakes.layer(n, kind="conv", shape=[1], params=1, remaining=1, density=d,
                          flops_dense=f, flops_pruned=round(f * d))
              for (n, f), d in zip(LAYERS, densities, strict=True)]
    result = fakes.result({**config, "run_id": rid}, 0.0 if top1 is None else top1,
                          built=fakes.structure(layers, collapsed=collapsed))
    s.finish_run(rid, replace(result, rounds=rounds))
    d = s.run_dir(rid)
    d.mkdir(parents=True, exist_ok=True)
    (d / "histograms.json").write_text(json.dumps(
        [{"layer": n, "edges": [-top1 / 100, 0.0, top1 / 100] if top1 else [-1.0, 0.0, 1.0],
          "fractions": [seed / 10, 0.1]} for n, _ in LAYERS]))
    return rid


def tables(rep: Report) -> dict[str, Table]:
    return {t.key: t for t in rep.tables}


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the report's figures are drawn from: the keyword arguments of the last call of
    each figure function (called through a figure's ``draw``)."""
    seen: dict[str, Any] = {}
    for name in ("accuracy_png", "layer_density_png", "layer_profiles_png"):
        def capture(*args: Any, name: str = name, **kw: Any) -> bytes:
            seen[name] = (args, kw)
            return b"png"
        monkeypatch.setattr(figures, name, capture)
    return seen


def draw_all(rep: Report) -> None:
    for f in rep.figures:
        if f.draw is not None:
            assert f.draw() == b"png"


def test_an_ablation_is_never_a_replicate_of_the_plain_run(tmp_path: Path) -> None:
    """Three shuffled-mask runs (the legacy flag) and one plain run of Mag at c = 1: the plain
    cell is the plain run, not the larger group of shuffled ones."""
    s = Store(tmp_path)
    stored(s, "mag", 1.0, 1, 89.0)
    for seed, top1 in ((1, 40.0), (2, 42.0), (3, 44.0)):
        stored(s, "mag", 1.0, seed, top1, shuffle_masks=True)
    rep = build_report(s.query(), at=1.0, layers_at=1.0)
    by = tables(rep)
    assert markdown_table(by["accuracy:vgg16-bn:cifar10"])[2] == "| 1           | 89.00 |"
    assert by["accuracy:vgg16-bn:cifar10"].notes == []  # nothing "left out": not the cell's
    assert markdown_table(by["accuracy_by_arch"])[2].endswith("| 89.00 |")
    assert markdown_table(by["ablations:vgg16-bn:cifar10"]) == [
        "| Pruner | Compression | None  | Shuffle (legacy)   | Δ Shuffle (legacy) |",
        "|--------|-------------|-------|--------------------|--------------------|",
        "| Mag    | 1           | 89.00 | 42.00 ± 2.00 (n=3) | -49.00             |",
    ]  # Δ over seed 1, the one both have
    assert "(legacy): runs stored with the older shuffle_masks/reinit flags" in by[
        "ablations:vgg16-bn:cifar10"].intro
    # The per-layer tables and the histograms are the plain run's too.
    hist = [f for f in rep.figures if f.kind == "histogram"]
    assert [f.run_id for f in hist] == [s.query(pruner="mag")[0].run_id]


def test_ablations_table_pairs_seeds_and_compares_like_with_like(
        tmp_path: Path, newer_settings: None, drawn: dict[str, Any]) -> None:
    s = Store(tmp_path)
    for seed, plain, shuffle in ((1, 90.0, 89.0), (2, 91.0, 89.5), (3, 92.0, 91.0)):
        stored(s, "synflow", 1.0, seed, plain)
        stored(s, "synflow", 1.0, seed, shuffle, ablation="shuffle")
    stored(s, "synflow", 1.0, 1, 50.0, lr=0.01)  # another experiment: not the None column
    stored(s, "synflow", 1.0, 1, 80.0, ablation="invert")
    stored(s, "synflow", 1.0, 2, 84.0, ablation="invert")
    stored(s, "snip", 2.0, 1, 85.0)
    stored(s, "snip", 2.0, 2, 87.0)
    stored(s, "snip", 2.0, 4, 83.0, ablation="shuffle")  # no seed in common with the plain runs
    rep = build_report(s.query(), at=1.0, layers_at=1.0)
    t = tables(rep)["ablations:vgg16-bn:cifar10"]
    assert t.section == "1.2.5"  # after the tables 1.2.1-3 and the figure 1.2.4
    assert markdown_table(t) == [
        "| Pruner  | Compression | None               | Shuffle            | Δ Shuffle          "
        "| Invert             | Δ Invert           |",
        "|---------|-------------|--------------------|--------------------|--------------------"
        "|--------------------|--------------------|",
        "| SNIP    | 2           | 86.00 ± 1.41 (n=2) | 83.00              | -3.00              "
        "| —                  | —                  |",
        "| SynFlow | 1           | 91.00 ± 1.00 (n=3) | 89.83 ± 1.04 (n=3) | -1.17 ± 0.29 (n=3) "
        "| 82.00 ± 2.83 (n=2) | -8.50 ± 2.12 (n=2) |",
    ]
    assert "SNIP at compression 2, Δ Shuffle: no seed in common with the plain runs: the " \
           "difference of the means" in t.notes
    assert "— SNIP at compression 2, Invert: not run" in t.notes
    # The plain tables hold plain runs only.
    acc = tables(rep)["accuracy:vgg16-bn:cifar10"]
    assert acc.rows[0][1][1].values == [90.0, 91.0, 92.0]  # SynFlow at 1
    draw_all(rep)
    # The figure: a solid line per pruner, a broken one per ablation, in the pruner's colour.
    (series,), kw = drawn["accuracy_png"]
    assert [(x.pruner, x.label, x.ablation, [(p.compression, p.values) for p in x.points])
            for x in series] == [
        ("snip", "SNIP", "none", [(2.0, (85.0, 87.0))]),
        ("synflow", "SynFlow", "none", [(1.0, (90.0, 91.0, 92.0))]),
        ("snip", "SNIP, shuffle", "shuffle", [(2.0, (83.0,))]),
        ("synflow", "SynFlow, shuffle", "shuffle", [(1.0, (89.0, 89.5, 91.0))]),
        ("synflow", "SynFlow, invert", "invert", [(1.0, (80.0, 84.0))]),
    ]
    assert kw["reference"] is None and kw["published"] == [] and kw["dense"] is None


def test_imp_rounds_are_a_table_and_the_reference_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drawn: dict[str, Any]) -> None:
    # Once "imp" is a pruner of the catalog it is still no column of the plain tables.
    monkeypatch.setitem(report.PRUNERS, "imp", "IMP")
    s = Store(tmp_path)
    stored(s, "mag", 1.0, 1, 88.0)
    kept = (1000, 500, 250, 100)
    for seed, top1 in ((1, (90.0, 91.0, 89.0, 85.0)), (2, (92.0, 91.0, 90.0, None))):
        stored(s, "imp", 1.0, seed, 85.0, collapsed=seed == 2,
               rounds=tuple(Round(k / 1000, k, t) for k, t in zip(kept, top1, strict=True)))
    stored(s, "imp", 0.5, 1, 90.0, rounds=(Round(1.0, 1000, 90.0), Round(0.316, 316, 90.5)))
    rep = build_report(s.query(), at=1.0, layers_at=1.0)
    by = tables(rep)
    assert by["accuracy:vgg16-bn:cifar10"].columns == ["Mag"]
    t = by["imp:vgg16-bn:cifar10"]
    assert markdown_table(t) == [
        "| Round     | Compression | Kept  | Top-1              |",
        "|-----------|-------------|-------|--------------------|",
        "| 0         | 0.000       | 1,000 | 91.00 ± 1.41 (n=2) |",
        "| 1         | 0.301       | 500   | 91.00 ± 0.00 (n=2) |",
        "| 2         | 0.602       | 250   | 89.50 ± 0.71 (n=2) |",
        "| 3 (final) | 1.000       | 100   | 85.00 ‡            |",
    ]
    assert "IMP runs at compression 0.5 are not shown: the runs at 1 reach further through " \
           "the same rounds" in t.notes
    assert "mean ± std over 2 runs" in t.intro
    draw_all(rep)
    (series,), kw = drawn["accuracy_png"]
    imp = kw["reference"]
    assert imp.pruner == "imp" and imp.label == "IMP, after each round (2 runs)"
    assert [(round(p.compression, 3), p.values, p.collapsed) for p in imp.points] == [
        (0.0, (90.0, 92.0), False), (0.301, (91.0, 91.0), False),
        (0.602, (89.0, 90.0), False), (1.0, (85.0,), True)]
    assert [x.pruner for x in series] == ["mag"]


def paper_recipe(pruner: str, **changes: Any) -> dict[str, Any]:
    from prunetui.core.published import load_published

    experiment = load_published().find("vgg16-bn", "cifar10")
    assert experiment is not None
    settings = experiment.settings(pruner)
    for key in ("model", "dataset", "pruner"):
        del settings[key]
    return settings | changes


def published_store(tmp_path: Path) -> Store:
    """VGG16-BN on CIFAR-10 stand-ins: the paper's five pruners at c = 0, 0.5, 1 (and Rand at
    0.1, off the paper's grid), 3 seeds. Most cells hold the paper's own three runs and were
    trained as the paper's but for 2 epochs; SynFlow at 1 is 2.46 below the published range
    (flagged, the recipe differs), Mag at 0.5 0.56 below (within the tolerance), and GraSP,
    trained exactly as the paper's, is 1.5 below at 1 (flagged: same recipe)."""
    from prunetui.core.published import load_published

    experiment = load_published().find("vgg16-bn", "cifar10")
    assert experiment is not None
    s = Store(tmp_path)
    odd = {("synflow", 1.0): (90.5, 90.7, 90.9), ("mag", 0.5): (92.5, 92.6, 92.7),
           ("grasp", 1.0): (90.1, 90.2, 90.3)}
    for p in experiment.pruners:
        recipe = paper_recipe(p) if p == "grasp" else paper_recipe(p, post_epochs=2)
        for c in (0.0, 0.5, 1.0):
            values = odd.get((p, c)) or experiment.runs_at(p, c)
            assert values is not None
            for seed, top1 in enumerate(values, start=1):
                stored(s, p, c, seed, top1, **recipe)
    stored(s, "rand", 0.1, 1, 93.0, **paper_recipe("rand", post_epochs=2))
    return s


def test_published_comparison_flags_what_lies_outside_and_says_why(
        tmp_path: Path, drawn: dict[str, Any]) -> None:
    rep = build_report(published_store(tmp_path).query(), reference="synflow-fig6")
    t = tables(rep)["reference:vgg16-bn:cifar10"]
    assert t.section == "1.2.5" and t.title == ("Against the published runs — VGG16-BN on "
                                                "Cifar10")
    lines = markdown_table(t)
    assert [x.strip() for x in lines[0].split("|")[1:-1]] == [
        "Pruner", "Compression", "Yours", "Published: mean (min–max)", "Δ mean",
        "Against the range", "Recipe differences"]
    row = {tuple(x.strip() for x in ln.split("|")[1:3]): [x.strip() for x in ln.split("|")[3:-1]]
           for ln in lines[2:]}
    assert len(row) == 15  # five pruners at 0, 0.5, 1; Rand at 0.1 is not on the paper's grid
    assert row[("Rand", "0")] == ["93.53 ± 0.14 (n=3)", "93.53 (93.37–93.63)", "+0.00",
                                  "inside", ""]
    assert row[("SynFlow", "1")] == ["90.70 ± 0.20 (n=3)", "93.26 (93.16–93.39)", "-2.56",
                                     "⚑ 2.46 below: recipe differs", "post_epochs 2 vs 160"]
    assert row[("Mag", "0.5")] == ["92.60 ± 0.10 (n=3)", "93.33 (93.16–93.53)", "-0.73",
                                   "0.56 below (within 1 point)", ""]
    assert row[("GraSP", "1")] == ["90.20 ± 0.10 (n=3)", "91.84 (91.70–92.05)", "-1.64",
                                   "⚑ 1.50 below: same recipe", "none"]
    flagged = [k for k, v in row.items() if v[3].startswith("⚑")]
    assert sorted(flagged) == [("GraSP", "1"), ("SynFlow", "1")]
    assert any(n.startswith("not compared") and n.endswith(": Rand at 0.1") for n in t.notes)
    assert "SGD with Nesterov momentum 0.9, lr 0.1 (×0.1 at epochs 60, 120)" in t.intro
    assert "All your compared runs differ" not in t.intro  # GraSP's do not
    # The JSON cell keeps the paper's three runs and the user's.
    doc = json.loads(to_json(rep))
    ref = next(x for x in doc["tables"] if x["key"] == "reference:vgg16-bn:cifar10")
    syn = next(r for r in ref["rows"] if r["labels"] == ["SynFlow", "1"])["cells"]
    assert syn[0]["values"] == [90.5, 90.7, 90.9]
    assert syn[1]["values"] == [93.39, 93.24, 93.16] and syn[1]["text"].startswith("93.26")
    assert syn[3]["values"] == [pytest.approx(-2.46)]
    # The figure draws the paper's bands behind the user's pruners, within c = 0 … 1, and the
    # dense line: the c = 0 runs that trained alike (GraSP's 160 epochs are another setting).
    draw_all(rep)
    _, kw = drawn["accuracy_png"]
    assert [(b.pruner, [p.compression for p in b.points]) for b in kw["published"]] == [
        (p, [0.0, 0.25, 0.5, 0.75, 1.0]) for p in ("rand", "mag", "snip", "grasp", "synflow")]
    assert kw["dense"] == pytest.approx(1122.06 / 12) and kw["zoom"] is True
    fig_ = next(f for f in rep.figures if f.kind == "accuracy")
    assert "mean of 12 runs" in fig_.intro and "Hatched bands" in fig_.intro


def test_when_every_cell_differs_alike_the_differences_are_said_once(tmp_path: Path) -> None:
    s = Store(tmp_path)
    for seed, top1 in ((1, 80.0), (2, 81.0)):
        stored(s, "synflow", 1.0, seed, top1, **paper_recipe("synflow", post_epochs=2,
                                                             lr=0.05))
        stored(s, "snip", 1.0, seed, 92.5, **paper_recipe("snip", post_epochs=2, lr=0.05))
    t = tables(build_report(s.query(), reference="synflow-fig6"))["reference:vgg16-bn:cifar10"]
    assert t.intro.endswith("All your compared runs differ from it in: lr 0.05 vs 0.1; "
                            "post_epochs 2 vs 160.")
    assert [[c.text(2) for c in cells][3:] for _, cells in t.rows] == [
        ["inside", ""], ["⚑ 12.66 below: recipe differs", "as above"]]


def test_a_model_the_paper_lacks_and_an_unknown_reference(tmp_path: Path) -> None:
    s = Store(tmp_path)
    put(s, "rand", 1.0, 1, 88.0)  # VGG16 without batch norm: not in Figure 6
    t = tables(build_report(s.query(), reference="synflow-fig6"))["reference:vgg16:cifar10"]
    assert t.rows == [] and t.notes[0].startswith(
        "Nothing to compare: it has no VGG16 on Cifar10; its experiments are ")
    assert "VGG16-BN on Cifar10" in t.notes[0]
    with pytest.raises(ConfigError, match=r"^unknown reference 'fig7'; choose one of: "
                                          r"synflow-fig6$"):
        build_report(s.query(), reference="fig7")
    assert "reference:vgg16:cifar10" not in tables(build_report(s.query()))


def curve(pruner: str, points: list[tuple[float, tuple[str, ...], bool]]) -> CollapseCurve:
    """A critical-compression curve over fc's two layers: (c, emptied layers, disconnected)
    per point."""
    return CollapseCurve("vgg16-bn", "cifar10", pruner, ("layers.0.conv", "fc"), tuple(
        CollapsePoint(c, 10 ** -c, 10 ** -c,
                      tuple(0.0 if n in empty else 10 ** -c for n in ("layers.0.conv", "fc")),
                      empty, gone, gone or bool(empty), 0.1) for c, empty, gone in points))


def test_critical_compression_table_and_profiles(tmp_path: Path,
                                                 drawn: dict[str, Any]) -> None:
    s = Store(tmp_path)
    for p in ("rand", "mag", "synflow"):
        stored(s, p, 1.0, 1, 80.0)
    curves = [
        curve("rand", [(0, (), False), (1, (), False), (2, (), True), (3, ("fc",), True)]),
        curve("mag", [(0, (), False), (1, ("fc",), True), (2, (), False), (3, ("fc",), True)]),
        curve("synflow", [(0, (), False), (1, (), False), (2, (), False), (3, (), False)]),
    ]
    rep = build_report(s.query(), at=1.0, layers_at=1.0, curves=curves)
    t = tables(rep)["critical:vgg16-bn:cifar10"]
    assert t.section == "2.5"  # after 2.4, the per-layer density figure
    assert markdown_table(t) == [
        "| Pruner  | Critical c                | First break | Critical c (a layer emptied) "
        "| At the first break                                      | Whole again above it |",
        "|---------|---------------------------|-------------|------------------------------"
        "|---------------------------------------------------------|----------------------|",
        "| Rand    | 1                         | 2           | 2                            "
        "| no path from input to output; every layer keeps weights | none                 |",
        "| Mag     | 0                         | 1           | 0                            "
        "| emptied: fc                                             | 2                    |",
        "| SynFlow | ≥ 3 (no collapse up to 3) | none        | ≥ 3 (no collapse up to 3)    "
        "| —                                                       | none                 |",
    ]
    assert "at c = 0 to 3 in steps of 1" in t.intro
    plot = next(f for f in rep.figures if f.kind == "layer_profiles")
    assert (plot.section, plot.filename) == ("2.6", "layer_profiles.png")
    assert plot.draw is not None and plot.draw() == b"png"
    (layers, panels), _ = drawn["layer_profiles_png"]
    assert layers == ("layers.0.conv", "fc") and list(panels) == ["rand", "mag", "synflow"]
    assert panels["mag"][1].densities == (0.1, 0.0) and panels["mag"][1].collapsed
    # Nothing is computed without curves: no table, no figure.
    rep = build_report(s.query(), at=1.0, layers_at=1.0)
    assert not any(t.key.startswith("critical") for t in rep.tables)


def test_critical_configs_are_the_plain_runs_settings_at_their_lowest_seed(
        tmp_path: Path, newer_settings: None) -> None:
    s = Store(tmp_path)
    for c in (0.5, 1.0):
        for seed in (3, 2):
            stored(s, "snip", c, seed, 80.0, lr=0.01)
    stored(s, "snip", 1.0, 1, 80.0)  # one run of another lr
    stored(s, "snip", 1.0, 1, 80.0, ablation="shuffle")
    stored(s, "imp", 1.0, 1, 80.0)
    stored(s, "mag", 1.0, 4, 80.0, model="fc", dataset="mnist")
    got = report.critical_configs(s.query())
    assert [(c.model, c.pruner, c.seed, c.lr) for c in got] == [
        ("vgg16-bn", "snip", 2, 0.01), ("fc", "mag", 4, 0.001)]


def test_layer_density_figure_is_the_density_table(tmp_path: Path,
                                                   drawn: dict[str, Any]) -> None:
    s = Store(tmp_path)
    stored(s, "rand", 1.0, 1, 80.0, densities=(0.1, 0.1))
    stored(s, "synflow", 1.0, 1, 80.0, densities=(0.3, 0.0))
    stored(s, "synflow", 1.0, 2, 80.0, densities=(0.5, 0.0))
    stored(s, "snip", 1.0, 1, 0.0, status="failed")
    rep = build_report(s.query(), at=1.0, layers_at=1.0)
    plot = next(f for f in rep.figures if f.kind == "layer_density")
    assert (plot.section, plot.filename) == ("2.4", "layer_density.png")
    assert plot.draw is not None and plot.draw() == b"png"
    (layers, lines), kw = drawn["layer_density_png"]
    assert layers == ["layers.0.conv", "fc"]
    assert lines == {"rand": [0.1, 0.1], "synflow": [pytest.approx(0.4), 0.0]}  # no SNIP
    assert kw["title"] == "Density of each layer at compression 1 — VGG16-BN on Cifar10"


def full_store(tmp_path: Path) -> Store:
    """Two models: VGG16-BN stand-ins with every kind of run, and an fc on MNIST."""
    s = published_store(tmp_path)
    stored(s, "synflow", 1.0, 1, 85.0, ablation="shuffle", **paper_recipe("synflow",
                                                                           post_epochs=2))
    stored(s, "imp", 1.0, 1, 85.0, rounds=(Round(1.0, 10, 93.0), Round(0.1, 1, 85.0)))
    stored(s, "rand", 1.0, 1, 90.0, model="fc", dataset="mnist")
    stored(s, "mag", 1.0, 1, 91.0, model="fc", dataset="mnist")
    return s


def test_markdown_sections_figures_and_the_other_formats(
        tmp_path: Path, newer_settings: None) -> None:
    s = full_store(tmp_path)
    curves = [CollapseCurve(cv.model, d, cv.pruner, cv.layers, cv.points)
              for d, cv in (("cifar10", curve("rand", [(0, (), False), (1, (), True)])),)]
    rep = build_report(s.query(), at=1.0, layers_at=1.0, reference="synflow-fig6",
                       curves=curves)
    md = to_markdown(rep)
    heads = [ln.split(" ", 2)[1:] for ln in md.splitlines() if ln.startswith("#### ")]
    assert heads == [
        ["1.1", "Testing accuracy (top 1)"],
        ["1.2.1.1", "Testing accuracy (top 1) — VGG16-BN on Cifar10"],
        ["1.2.1.2", "Testing time (inference on testing dataset, s) — VGG16-BN on Cifar10"],
        ["1.2.1.3", "FLOP — VGG16-BN on Cifar10"],
        ["1.2.1.4", "Top-1 against compression — VGG16-BN on Cifar10"],
        ["1.2.1.5", "Against the published runs — VGG16-BN on Cifar10"],
        ["1.2.1.6", "Ablations — VGG16-BN on Cifar10"],
        ["1.2.1.7", "IMP reference: top-1 after each round — VGG16-BN on Cifar10"],
        ["1.2.2.1", "Testing accuracy (top 1) — FC on MNIST"],
        ["1.2.2.2", "Testing time (inference on testing dataset, s) — FC on MNIST"],
        ["1.2.2.3", "FLOP — FC on MNIST"],
        ["1.2.2.4", "Top-1 against compression — FC on MNIST"],
        ["1.2.2.5", "Against the published runs — FC on MNIST"],
        ["2.1", "Weight histograms"],
        ["2.2.1", "FLOPs of each layer — VGG16-BN on Cifar10"],
        ["2.2.2", "FLOPs of each layer — FC on MNIST"],
        ["2.3.1", "Density of each layer (kept fraction) — VGG16-BN on Cifar10"],
        ["2.3.2", "Density of each layer (kept fraction) — FC on MNIST"],
        ["2.4.1", "Density of each layer at compression 1 — VGG16-BN on Cifar10"],
        ["2.4.2", "Density of each layer at compression 1 — FC on MNIST"],
        ["2.5.1", "Critical compression — VGG16-BN on Cifar10"],
        ["2.6.1", "Fraction kept per layer across compressions — VGG16-BN on Cifar10"],
    ]
    links = [ln for ln in md.splitlines() if ln.startswith("![")]
    assert [ln.rsplit("(", 1)[1] for ln in links] == [
        "accuracy_vgg16-bn_cifar10.png)", "accuracy_fc_mnist.png)",
        *(f"weight_hist_vgg16-bn_cifar10_{p}.png)"
          for p in ("rand", "mag", "snip", "grasp", "synflow")),
        "weight_hist_fc_mnist_rand.png)", "weight_hist_fc_mnist_mag.png)",
        "layer_density_vgg16-bn_cifar10.png)", "layer_density_fc_mnist.png)",
        "layer_profiles_vgg16-bn_cifar10.png)"]
    assert sorted(f.filename + ")" for f in rep.figures) == sorted(x.rsplit("(", 1)[1]
                                                                  for x in links)
    # On stdout no file is written beside the markdown: the sections say so instead.
    bare = to_markdown(rep, figures=False)
    assert "![" not in bare and "(Figure accuracy_fc_mnist.png: written when the report is " \
                               "exported into a folder.)" in bare
    assert [ln for ln in bare.splitlines() if ln.startswith("#### ")] == [
        ln for ln in md.splitlines() if ln.startswith("#### ")]
    # CSV and JSON carry every table, the study's included, and name the figures.
    keys = [t.key for t in rep.tables]
    for key in ("ablations:vgg16-bn:cifar10", "imp:vgg16-bn:cifar10",
                "reference:vgg16-bn:cifar10", "reference:fc:mnist", "critical:vgg16-bn:cifar10"):
        assert key in keys
    rows = list(csv.DictReader(io.StringIO(to_csv(rep))))
    assert {r["table"] for r in rows} == set(keys) - {"reference:fc:mnist"}  # it has no rows
    syn = next(r for r in rows if r["table"] == "reference:vgg16-bn:cifar10"
               and r["row"] == "SynFlow 1" and r["column"] == "Against the range")
    assert syn["text"] == "⚑ 2.46 below: recipe differs" and float(syn["mean"]) == \
        pytest.approx(-2.46)
    crit = next(r for r in rows if r["table"] == "critical:vgg16-bn:cifar10"
                and r["column"] == "Critical c")
    assert (crit["row"], crit["mean"], crit["text"]) == ("Rand", "0.0", "0")
    doc = json.loads(to_json(rep))
    assert [t["key"] for t in doc["tables"]] == keys
    assert {f["kind"] for f in doc["figures"]} == {"accuracy", "histogram", "layer_density",
                                                  "layer_profiles"}
    assert "draw" not in doc["figures"][0]

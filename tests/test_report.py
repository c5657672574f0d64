"""Export tables from a known store, compared with expected markdown cell by cell."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import fakes

from prunetui.core.config import RunConfig
from prunetui.core.report import build_report, markdown_table, to_csv, to_json, to_markdown
from prunetui.core.run.result import Compacted
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
    assert [f.filename for f in rep.figures] == ["weight_hist_rand.png", "weight_hist_mag.png"]


def test_report_renderers(tmp_path: Path) -> None:
    rep = build_report(make_store(tmp_path).query())
    md = to_markdown(rep)
    assert "#### 1.1 Testing accuracy (top 1)" in md
    assert "#### 1.2.3 FLOP — VGG16 on Cifar10" in md
    assert "![Rand — VGG16 on Cifar10, compression 0.5](weight_hist_rand.png)" in md
    rows = to_csv(rep).splitlines()
    assert rows[0] == ("table,section,row,column,mean,std,n,collapsed,missing,left_out,epochs,"
                       "run_ids")
    mag = [r for r in rows if r.startswith("accuracy_by_arch,1.1,Cifar10 VGG16,Mag,")]
    assert len(mag) == 1 and mag[0].startswith(
        "accuracy_by_arch,1.1,Cifar10 VGG16,Mag,90.0,1.4142135623730951,2,0,,,10,")
    assert len(mag[0].rsplit(",", 1)[1].split()) == 2  # the two runs' ids
    assert any(r.startswith("accuracy_by_arch,1.1,Cifar10 VGG16,Rand,10.0,,1,1,,,10,")
               for r in rows)  # one run: no std
    doc = json.loads(to_json(rep))
    cell = doc["tables"][0]["rows"][0]["cells"][2]
    assert cell == {"n": 0, "values": [], "run_ids": [], "collapsed": False,
                    "missing": "failed"}
    # The reference's order: 1.1, 1.2.*, 2.1 (figures), 2.2, 2.3.
    heads = [line for line in md.splitlines() if line.startswith("#### ")]
    assert [h.split()[1] for h in heads] == ["1.1", "1.2.1", "1.2.2", "1.2.3", "2.1", "2.2",
                                             "2.3"]


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

"""The CLI through typer's CliRunner: runs, JSON output, listing, export, and bad input
(one line, exit 2, nothing written)."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path
from typing import Any

import fakes
import pytest
from typer.testing import CliRunner

from prunetui.tui.cli import app

runner = CliRunner()
FAST = ["--model", "fc", "--dataset", "digits", "--device", "cpu", "--timing-repeats", "1",
        "--batch-size", "128"]


def results() -> Path:
    return Path(os.environ["PRUNETUI_RESULTS"])


def test_help_lists_commands() -> None:
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("run", "inspect", "sweep", "runs", "show", "export", "models", "rm", "gc"):
        assert cmd in r.output


def test_run_json_then_runs_show_export(tmp_path: Path) -> None:
    r = runner.invoke(app, ["run", *FAST, "--pruner", "mag", "--compression", "0.5",
                            "--post-epochs", "2", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    for key in ("run_id", "config", "status", "epochs", "top1", "top5", "params", "density",
                "flops", "inference", "layers", "collapse"):
        assert key in doc
    assert doc["params"]["remaining"] == round(doc["params"]["prunable"] * 10 ** -0.5)
    rid = doc["run_id"]

    r = runner.invoke(app, ["runs"])
    assert r.exit_code == 0 and rid in r.output and "finished" in r.output
    row = next(ln for ln in r.output.splitlines() if rid in ln)
    assert re.search(r"│ 2 +│ finished", row), row  # its epochs: runs differing only there
    r = runner.invoke(app, ["runs", "--model", "vgg16", "--pruner", "snip"])
    assert r.exit_code == 0
    assert r.output == f"no run in {results()} matches --model vgg16 --pruner snip\n"
    r = runner.invoke(app, ["runs", "--results-dir", str(tmp_path / "none")])
    assert r.output == f"0 runs in {tmp_path / 'none'} (nothing stored there yet)\n"
    r = runner.invoke(app, ["runs", "--json"])
    assert json.loads(r.stdout)[0]["run_id"] == rid
    r = runner.invoke(app, ["show", rid[:4]])
    assert r.exit_code == 0 and "Per-layer" in r.output and "weight histograms" in r.output
    r = runner.invoke(app, ["show", rid, "--json"])
    assert json.loads(r.stdout)["run_id"] == rid

    r = runner.invoke(app, ["export"])
    assert r.exit_code == 0 and "| Data | Arch | Mag |" in re.sub(" +", " ", r.stdout)
    assert "no selected run has compression 1 (--at); they have 0.5" in r.stderr
    out = tmp_path / "report"
    r = runner.invoke(app, ["export", "--out", str(out), "--layers-at", "0.5"])
    assert r.exit_code == 0, r.output
    assert (out / "report.md").exists() and (out / "weight_hist_mag.png").exists()
    assert "![Mag" in (out / "report.md").read_text()
    r = runner.invoke(app, ["export", "--out", str(out)])
    assert r.exit_code == 2 and "pass --force" in r.stderr
    r = runner.invoke(app, ["export", "--out", str(out), "--force"])
    assert r.exit_code == 0
    blocked = out / "report.md" / "sub"  # a file on the path: the folder cannot be made
    r = runner.invoke(app, ["export", "--out", str(blocked)])
    assert r.exit_code == 2 and "Traceback" not in r.output
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot write the report to {blocked}")

    r = runner.invoke(app, ["run", *FAST, "--pruner", "mag", "--compression", "0.5",
                            "--post-epochs", "2"])
    assert r.exit_code == 0 and "already stored" in r.stderr
    r = runner.invoke(app, ["rm", rid, rid[:6]])  # the same run twice
    assert r.exit_code == 0 and not (results() / rid).exists()
    assert r.stdout.strip() == f"removed 1 run: {rid}"


@pytest.mark.parametrize(("extra", "expect"), [
    (["--datasets", "mnist", "--set", "device=cpu", "--data-dir", "{tmp}/none",
      "--no-download"], "mnist not found: expected {tmp}/none/MNIST/raw/"),
    (["--datasets", "digits", "--devices", "cuda:0"], "device 'cuda:0' of --devices is not "
     "available: no CUDA GPU is visible; use --devices cpu, or leave it out"),
    (["--datasets", "digits", "--set", "device=cpu", "--results-dir", "{tmp}/file"],
     "results dir {tmp}/file is a file"),
])
def test_sweep_fails_once_before_any_run_on_what_every_run_would_hit(
        tmp_path: Path, extra: list[str], expect: str) -> None:
    (tmp_path / "file").write_text("")
    args = ["sweep", "--models", "fc", "--pruners", "rand,mag", "--compressions", "0.5,1",
            *(x.format(tmp=tmp_path) for x in extra)]
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {expect.format(tmp=tmp_path)}")
    assert r.stdout == ""
    assert not results().exists() and not (tmp_path / "none").exists()


@pytest.mark.parametrize("args", [["--compression", "abc"], ["--pre-epochs=x"]])
def test_a_badly_typed_value_is_named_once(args: list[str]) -> None:
    r = runner.invoke(app, ["run", *args])
    value = args[-1].split("=")[-1]
    assert r.exit_code == 2 and r.stderr.count(repr(value)) == 1, r.stderr


@pytest.mark.parametrize("command", [[], ["runs"], ["show", "abc"], ["export"], ["gc"],
                                     ["run", "--dataset", "digits", "--post-epochs", "1"]])
def test_a_results_dir_that_is_a_file_is_an_error_not_an_empty_store(
        tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "file").write_text("")
    r = runner.invoke(app, ["--results-dir", str(tmp_path / "file"), *command])
    assert r.exit_code == 2, r.output
    assert r.stderr == f"error: results dir {tmp_path}/file is a file; pass --results-dir DIR\n"
    assert r.stdout == ""


@pytest.mark.parametrize(("stop_after", "expect"), [
    (1, "interrupted: 1 of 2 runs finished; the same command resumes the rest"),
    (2, "interrupted: 2 of 2 runs finished; nothing is left to run"),
])
def test_an_interrupted_sweep_says_what_it_kept(
        monkeypatch: pytest.MonkeyPatch, stop_after: int, expect: str) -> None:
    from prunetui.core.sweep import SweepRunner

    real = SweepRunner.run

    def interrupted(self: SweepRunner, configs: list[Any]) -> Any:
        real(self, configs[:stop_after])
        raise KeyboardInterrupt  # lands after those runs were stored

    monkeypatch.setattr(SweepRunner, "run", interrupted)
    r = runner.invoke(app, ["sweep", "--models", "fc", "--datasets", "digits", "--pruners",
                            "rand", "--compressions", "0.5,1", "--set", "post_epochs=1",
                            "--set", "device=cpu", "--set", "timing_repeats=1"])
    assert r.exit_code == 130
    assert r.stderr.strip().splitlines()[-1] == expect


def test_inspect_prints_table() -> None:
    r = runner.invoke(app, ["inspect", "vgg16", "--dataset", "cifar10", "--pruner", "synflow",
                            "--compression", "1", "--prune-iterations", "2"])
    assert r.exit_code == 0, r.output
    assert "layers.0.conv" in r.stdout and "313,478,154" in r.stdout
    assert not results().exists()  # inspect stores nothing
    # Without --dataset and --compression: the model's own dataset, and c=1 as `run` has.
    r = runner.invoke(app, ["inspect", "vgg16", "--pruner", "mag", "--json"])
    assert r.exit_code == 0, r.output
    shown = json.loads(r.stdout)
    assert shown["config"]["dataset"] == "cifar10" and shown["density"] == pytest.approx(0.1,
                                                                                         abs=1e-6)


def test_inspect_json_collapse_flag() -> None:
    r = runner.invoke(app, ["inspect", "fc", "--pruner", "synflow", "--compression", "2",
                            "--prune-iterations", "1", "--json"])
    assert r.exit_code == 0
    assert json.loads(r.stdout)["collapse"]["collapsed"] is True
    r = runner.invoke(app, ["inspect", "fc", "--pruner", "synflow", "--compression", "2",
                            "--prune-iterations", "1"])
    assert "layer collapse" in r.stderr


def test_models_lists_counts() -> None:
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0 and "vgg16" in r.output and "resnet110" in r.output


def test_sweep_dry_run_and_run() -> None:
    args = ["sweep", "--models", "fc", "--datasets", "digits", "--pruners", "rand,snip",
            "--compressions", "0.5,1", "--set", "post_epochs=1", "--set", "device=cpu",
            "--set", "timing_repeats=1", "--set", "snip.post_epochs=2", "--name", "t"]
    r = runner.invoke(app, [*args, "--dry-run"])
    assert r.exit_code == 0 and "4 runs, 0 already finished" in r.output
    assert not results().exists()
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "4 of 4 runs finished" in r.stdout
    r = runner.invoke(app, [*args, "--dry-run"])
    assert "4 runs, 4 already finished" in r.output
    r = runner.invoke(app, args)
    assert "(4 already stored)" in r.stdout
    r = runner.invoke(app, ["runs", "--sweep", "t", "--json"])
    snip = [x for x in json.loads(r.stdout) if x["pruner"] == "snip"]
    for command in (["runs"], ["export", "--out", str(results() / "rep")]):
        r = runner.invoke(app, [*command, "--sweep", "typo"])
        assert r.exit_code == 2 and r.stderr == (
            "error: unknown sweep 'typo'; choose one of: t\n")
    r = runner.invoke(app, ["export", "--at", "-1", "--out", str(results() / "rep")])
    assert r.exit_code == 2 and r.stderr == (
        "error: invalid --at -1; it must be a compression >= 0\n")
    assert not (results() / "rep").exists()
    assert {x["config"]["post_epochs"] for x in snip} == {2}
    # A run stopped part-way is named with the epoch it stopped at, then completed.
    rid = snip[0]["run_id"]
    with sqlite3.connect(results() / "runs.sqlite") as con:
        con.execute("UPDATE runs SET status='interrupted', epoch=1 WHERE run_id=?", (rid,))
    r = runner.invoke(app, args)
    assert f"3 already finished, 1 to resume ({rid} at epoch 1)" in r.stderr
    assert "4 of 4 runs finished (3 already stored)" in r.stdout


def test_compression_minus_zero_is_the_cell_of_zero() -> None:
    r = runner.invoke(app, ["sweep", "--models", "fc", "--datasets", "digits", "--pruners",
                            "rand", "--compressions", "-0,0", "--dry-run"])
    assert r.exit_code == 0 and "1 run, 0 already finished" in r.output, r.output
    assert " -0 " not in r.output


def test_a_dry_run_over_250k_cells_is_bounded() -> None:
    """10,001 compressions x 25 seeds: the listing stops after DRY_RUN_ROWS cells and sums
    up the rest by status (every cell's run id and stored state looked up, in chunks no
    SQLite variable limit stops)."""
    runner.invoke(app, ["run", *FAST, "--pruner", "rand", "--post-epochs", "0",
                        "--compression", "0.0004"])
    compressions = ",".join(f"{i * 0.0004:.4f}" for i in range(10_001))
    r = runner.invoke(app, ["sweep", "--models", "fc", "--datasets", "digits", "--pruners",
                            "rand", "--compressions", compressions, "--seeds",
                            ",".join(str(s) for s in range(1, 26)), "--set", "post_epochs=0",
                            "--set", "batch_size=128", "--dry-run"])
    assert r.exit_code == 0, r.output[-2000:]
    assert "250025 runs, 1 already finished" in r.stdout
    assert r.stdout.rstrip().splitlines()[-1] == (
        "… and 249,925 more; all 250,025: 250,024 not stored, 1 finished")
    assert len(r.stdout.splitlines()) < 120


def test_a_sweep_skips_the_cells_uniform_plus_cannot_prune() -> None:
    grid = ["sweep", "--models", "fc", "--datasets", "mnist", "--ablations", "none,shuffle",
            "--dry-run"]
    r = runner.invoke(app, [*grid, "--pruners", "snip,uniform-plus", "--compressions",
                            "0.1,1"])
    assert r.exit_code == 0, r.output
    assert "sweep fc-mnist: 6 runs, 0 already finished" in r.stdout
    assert r.stderr.splitlines() == [
        "warning: skipping 2 cells fc/mnist uniform-plus: compression 1: pruner "
        "uniform-plus keeps layers.0.weight dense (78,400 weights) and 20% of layers.10.weight: "
        "78,600 of 119,400 prunable weights, more than the 11,940 to keep; use a compression "
        "of at most 0.18, or another pruner"]
    r = runner.invoke(app, [*grid, "--pruners", "uniform-plus", "--compressions", "1"])
    assert r.exit_code == 2 and r.stderr.splitlines()[-1].startswith(
        "error: no cell of the sweep can run: compression 1: pruner uniform-plus keeps")
    assert not results().exists()


BAD = [
    (["run", "--model", "vgg99"], "unknown --model 'vgg99'; choose one of: fc, conv"),
    (["run", "--dataset", "imagenet"], "unknown --dataset 'imagenet'"),
    (["run", "--pruner", "obd"], "unknown --pruner 'obd'; choose one of: rand, mag, snip"),
    (["run", "--optimizer", "lbfgs"], "unknown --optimizer 'lbfgs'"),
    (["run", "--scope", "layer"], "unknown --scope 'layer'"),
    (["run", "--schedule", "cubic"], "unknown --schedule 'cubic'"),
    (["run", "--device", "tpu"], "invalid --device 'tpu'; use auto, cpu, cuda, cuda:N or mps"),
    (["run", "--device", "cpu\n"], "invalid --device 'cpu\\n'; use auto, cpu, cuda, cuda:N"),
    (["run", "--device", "cuda:\u0663"], "invalid --device 'cuda:\u0663'; use auto, cpu"),
    (["run", "--device", "cuda:" + "9" * 20], "invalid --device 'cuda:999"),
    (["run", "--device", "cuda:7", "--dataset", "digits"], "--device 'cuda:7' is not available: "
     "no CUDA GPU is visible; set --device to cpu or auto"),
    (["run", "--lr-drops", "60,x"], "invalid --lr-drops '60,x'; give integers, repeated or "
     "comma-separated"),
    (["run", "--lr-drops", "5", "--lr-drops", "3"], "invalid --lr-drops [5, 3]; give "
     "increasing epochs"),
    (["run", "--keep-optimizer", "--prune-iterations", "0"], "invalid --prune-iterations 0"),
    (["inspect", "fc", "--seed", "-1"], "invalid --seed -1"),
    (["run", "--compression", "-1"], "invalid --compression -1.0; it must be a number >= 0"),
    (["run", "--seed", "99999999999999999999999"],
     "invalid --seed 99999999999999999999999; it must be an integer from 0 to 4294967295"),
    (["run", "--compression", "abc"], "Invalid value for '--compression': 'abc' is not a"),
    (["run", "--dataset", "digits", "--compression", "9"], "keeps no weight of"),
    (["run", "--post-epochs", "-2"],
     "invalid --post-epochs -2; it must be an integer from 0 to 1000000"),
    (["run", "--pre-epochs=x"], "Invalid value for '--pre-epochs'"),
    (["run", "--batch-size", "0"], "invalid --batch-size 0"),
    (["run", "--model", "fc", "--dataset", "mnist", "--pruner", "uniform-plus",
      "--compression", "1"], "compression 1: pruner uniform-plus keeps layers.0.weight dense"),
    (["run", "--timing-repeats", "100000000"], "invalid --timing-repeats 100000000; it must be "
     "an integer from 1 to 1000"),
    (["run", "--pruner", "synflow", "--prune-iterations", "10000001"],
     "invalid --prune-iterations 10000001; it must be an integer from 1 to 10000"),
    (["run", "--post-epochs", "1000000000000000000000000000000"],
     "invalid --post-epochs 1000000000000000000000000000000; it must be an integer from 0 to "
     "1000000"),
    # The old ablation switches, typed by an old script or sweep file: what they are now.
    (["run", "--shuffle-masks"], "No such option: --shuffle-masks (an old switch, no longer "
     "run; stored runs that used it stay readable): use --ablation shuffle"),
    (["sweep", "--models", "fc", "--datasets", "digits", "--compressions", "1", "--set",
      "reinit=true"], "'reinit' is an old switch no longer run (stored runs that used it stay "
     "readable); use the ablations axis: --ablations reinit"),
    (["sweep", "--models", "fc", "--datasets", "digits", "--compressions", "1", "--set",
      "timing_repeats=5000"], "invalid timing_repeats 5000; it must be an integer from 1 to "
     "1000"),
    (["run", "--test-batch-size", "-1"], "invalid --test-batch-size -1"),
    (["run", "--lr", "0"], "invalid --lr 0.0; it must be a number > 0"),
    (["run", "--model", "vgg16", "--dataset", "mnist"],
     "model 'vgg16' needs 32x32 or 64x64 inputs"),
    (["run", "--dataset", "mnist", "--no-download"], "MNIST"),
    (["run", "--bogus"], "No such option: --bogus"),
    (["inspect", "nope"], "unknown model 'nope'"),  # an argument, not an option
    (["inspect", "vgg16", "--dataset", "mnist"], "model 'vgg16' needs 32x32 or 64x64 inputs"),
    (["sweep", "--models", "fc", "--datasets", "digits", "--compressions", "1", "--set",
      "epochs=3"], "unknown setting 'epochs'"),
    (["sweep", "--models", "fc", "--datasets", "digits", "--compressions", "1", "--set",
      "seed=3"], "'seed' is an axis of the grid, not a setting: use --seeds"),
    (["sweep", "--models", "fc", "--datasets", "digits", "--compressions", "1", "--pruners",
      "rand", "--set", "mag.lr=-1"], "settings for mag (not in the grid): invalid lr -1.0"),
    (["sweep", "--models", "fc", "--datasets", "digits", "--compressions", "1", "--set",
      "device=cuda:7"], "device 'cuda:7' is not available: no CUDA GPU is visible; set "
     "device to cpu or auto"),
    (["sweep", "--models", "fc", "--datasets", "digits", "--compressions", "x"],
     "invalid compressions 'x'"),
    (["sweep", "--models", "fc", "--datasets", "digits", "--compressions", "1", "--set",
      "lr=0"], "invalid lr 0.0; it must be a number > 0"),  # named as --set names it
    (["sweep", "--models", "fc", "--datasets", "digits", "--compressions", "1", "--set",
      "mag.post_epochs=-1"], "settings for mag: invalid post_epochs -1"),
    (["sweep", "--models", "fc", "--datasets", "digits"], "a sweep needs --compressions"),
    (["sweep", "--models", "fc", "--datasets", "digits", "--compressions", "1,9"],
     "fc on digits: compression 9 keeps no weight of 47,400 prunable ones; use a compression "
     "below 4.98"),
    (["sweep", "--models", "fc", "--datasets", "digits", "--compressions", "1", "--jobs", "0"],
     "invalid --jobs 0"),
    (["runs", "--pruner", "nope"], "unknown pruner 'nope'"),
    (["runs", "--status", "done"], "unknown status 'done'"),
    (["export", "--format", "pdf"], "unknown format 'pdf'; choose one of: md, csv, json"),
    (["bogus"], "No such command 'bogus'"),
]


@pytest.mark.parametrize(("args", "needle"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_one_line_exit_2_nothing_written(args: list[str], needle: str) -> None:
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and needle in lines[0]
    assert "Traceback" not in r.output
    assert not results().exists()


def test_show_and_export_on_empty_store() -> None:
    r = runner.invoke(app, ["show", "abc"])
    assert r.exit_code == 2 and "no results store" in r.stderr
    r = runner.invoke(app, ["export"])
    assert r.exit_code == 2


def test_show_unknown_prefix(tmp_path: Path) -> None:
    runner.invoke(app, ["run", *FAST, "--pruner", "rand", "--post-epochs", "1"])
    r = runner.invoke(app, ["show", "fffff"])
    assert r.exit_code == 2 and "no stored run matches 'fffff'" in r.stderr
    r = runner.invoke(app, ["export", "--model", "conv"])
    assert r.exit_code == 2 and "no stored runs match" in r.stderr


def test_global_results_dir_applies_to_subcommand(tmp_path: Path) -> None:
    r = runner.invoke(app, ["--results-dir", str(tmp_path / "elsewhere"), "runs", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout) == []
    r = runner.invoke(app, ["--results-dir", str(tmp_path / "elsewhere"), "show", "abc"])
    assert "elsewhere" in r.stderr


def test_sparse_inference_is_timed_and_reported() -> None:
    r = runner.invoke(app, ["run", *FAST, "--pruner", "synflow", "--compression", "2",
                            "--prune-iterations", "10", "--post-epochs", "1",
                            "--sparse-inference", "--json"])
    assert r.exit_code == 0, r.output
    c = json.loads(r.stdout)["inference"]["compacted"]
    assert c["structural"] is True and c["max_abs_error"] <= 1e-5 and c["median"] > 0
    r = runner.invoke(app, ["export"])
    assert "Testing time, compacted network" in r.stdout
    r = runner.invoke(app, ["show", json.loads(runner.invoke(app, ["runs", "--json"]).stdout)
                            [0]["run_id"]])
    assert "compacted" in r.stdout and "faster" in r.stdout


def test_gc_removes_orphaned_artifacts() -> None:
    runner.invoke(app, ["run", *FAST, "--pruner", "rand", "--post-epochs", "1"])
    orphan = results() / "0123456789"
    orphan.mkdir()
    (orphan / "final.pt").write_bytes(b"x")
    keep = results() / "notes"
    keep.mkdir()
    r = runner.invoke(app, ["gc"])
    assert r.exit_code == 0 and r.stdout.split() == [
        "removed", "1", "orphaned", "artifact", "folder:", str(orphan)]
    assert not orphan.exists() and keep.exists()
    assert len(json.loads(runner.invoke(app, ["runs", "--json"]).stdout)) == 1


def test_datasets_lists_what_is_found(tmp_path: Path) -> None:
    from datafiles import write_mnist

    root = write_mnist(tmp_path / "data")
    r = runner.invoke(app, ["datasets", "--data-dir", str(root)])
    assert r.exit_code == 0, r.output
    lines = {ln.split("│")[1].strip(): ln for ln in r.stdout.splitlines() if ln.count("│") > 2}
    assert "found in" in lines["mnist"] and "missing" in lines["cifar10"]
    assert "scikit-learn" in lines["digits"]
    # The images found, not the standard sizes; those where the files are missing.
    assert [c.strip() for c in lines["mnist"].split("│")[4:6]] == ["60", "20"]
    assert [c.strip() for c in lines["cifar10"].split("│")[4:6]] == ["50,000", "10,000"]
    digest = lines["mnist"].split("│")[7].strip()
    from prunetui.core.data import fingerprint, load_dataset

    assert digest == fingerprint(load_dataset("mnist", root, download=False))["digest"]


@pytest.mark.parametrize("argv", [["--help"], ["runs"], ["runs", "--json"]])
def test_light_commands_import_neither_torch_nor_pydantic(argv: list[str]) -> None:
    """The start-up budget of the listing commands (issue 5: <= 0.4 s) holds only while
    they import no torch and no pydantic (typer 0.29's option coercion imports it)."""
    import subprocess
    import sys

    code = ("import sys\n"
            f"sys.argv = ['prunetui', *{argv!r}]\n"
            "from prunetui.tui.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print([m for m in ('torch', 'pydantic') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=os.environ)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def test_a_diverged_run_is_kept_not_rerun_and_json_reports_it() -> None:
    args = ["run", "--dataset", "digits", "--pruner", "rand", "--compression", "0",
            "--optimizer", "sgd", "--lr", "1e6", "--post-epochs", "3", "--device", "cpu",
            "--timing-repeats", "1", "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 1
    row = json.loads(r.stdout)  # stdout still says what happened
    assert row["status"] == "diverged" and "epoch 1" in row["error"]
    assert [(e["phase"], e["epoch"]) for e in row["epochs"]] == []  # none completed
    r = runner.invoke(app, args)  # seeded: it would diverge again, so it is not rerun
    assert r.exit_code == 1 and json.loads(r.stdout)["status"] == "diverged"
    assert r.stderr.startswith(f"error: run {row['run_id']} is stored as diverged (")
    assert "change the lr or seed, or force a rerun (run --force)" in r.stderr
    r = runner.invoke(app, ["sweep", "--models", "fc", "--datasets", "digits", "--pruners",
                            "rand", "--compressions", "0", "--set", "optimizer=sgd",
                            "--set", "lr=1e6", "--set", "post_epochs=3", "--set",
                            "device=cpu", "--set", "timing_repeats=1", "--dry-run"])
    assert "1 run, 0 already finished" in r.stdout
    r = runner.invoke(app, ["sweep", "--models", "fc", "--datasets", "digits", "--pruners",
                            "rand", "--compressions", "0", "--set", "optimizer=sgd",
                            "--set", "lr=1e6", "--set", "post_epochs=3", "--set",
                            "device=cpu", "--set", "timing_repeats=1"])
    assert r.exit_code == 1
    assert "1 diverged (kept; `prunetui rm` them to retry)" in r.stderr
    assert f"diverged: {row['run_id']}" in r.stdout
    assert "0 of 1 run finished (0 already stored, 1 stored as diverged and kept)" in r.stdout


def test_an_lr_that_overflows_is_one_line_and_stored_diverged() -> None:
    r = runner.invoke(app, ["run", *FAST, "--pruner", "rand", "--post-epochs", "1", "--lr",
                            "1e300", "--optimizer", "momentum"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.stderr.strip().splitlines() == [
        "error: a value overflowed (value cannot be converted to type float without "
        "overflow) in epoch 1; stopped the run as diverged"]
    rows = json.loads(runner.invoke(app, ["runs", "--json"]).stdout)
    assert [row["status"] for row in rows] == ["diverged"]


def test_run_says_it_resumes_only_once_the_engine_resumes(tmp_path: Path) -> None:
    """A checkpoint from other data is refused before "resuming" is said; on its own data
    the line names the epoch the checkpoint resumes after."""
    from datafiles import write_mnist

    from prunetui.core.config import RunConfig
    from prunetui.core.errors import RunCancelled
    from prunetui.core.events import CancelToken, EpochEnd, Event
    from prunetui.core.run import engine
    from prunetui.core.store import Store

    small = write_mnist(tmp_path / "small", train=40, test=20)
    other = write_mnist(tmp_path / "other", train=50, test=20)
    args = ["--model", "fc", "--dataset", "mnist", "--pruner", "mag", "--post-epochs", "3",
            "--batch-size", "16", "--device", "cpu", "--timing-repeats", "1"]
    config = RunConfig(model="fc", dataset="mnist", pruner="mag", post_epochs=3, batch_size=16,
                       device="cpu", timing_repeats=1)
    token = CancelToken()

    def cancel_after_first(e: Event) -> None:
        if isinstance(e, EpochEnd) and e.phase == "train" and e.epoch == 1:
            token.cancel()

    with pytest.raises(RunCancelled):
        engine.run(config, store=Store(results()), data_dir=small, download=False,
                       cancel=token, emit=cancel_after_first)
    r = runner.invoke(app, ["run", *args, "--data-dir", str(other), "--no-download", "--json"])
    assert r.exit_code == 2 and "resuming" not in r.output
    assert "checkpoint was trained on other mnist data" in r.stderr
    # --json says this attempt's status, not the stored "cancelled" of the earlier one.
    said = json.loads(r.stdout)
    assert said["status"] == "error" and "other mnist data" in said["error"]
    r = runner.invoke(app, ["run", *args, "--data-dir", str(small), "--no-download"])
    assert r.exit_code == 0, r.output
    assert f"run {config.run_id} stopped (cancelled); resuming after epoch 1" in r.stderr



def test_a_sweep_cell_refused_for_other_data_is_failed_not_its_earlier_status(
        tmp_path: Path) -> None:
    from datafiles import write_mnist

    from prunetui.core.config import RunConfig
    from prunetui.core.errors import RunCancelled
    from prunetui.core.events import CancelToken, EpochEnd, Event
    from prunetui.core.run import engine
    from prunetui.core.store import Store
    from prunetui.core.sweep import run_cell

    small = write_mnist(tmp_path / "small", train=40, test=20)
    other = write_mnist(tmp_path / "other", train=50, test=20)
    config = RunConfig(model="fc", dataset="mnist", pruner="mag", post_epochs=3, batch_size=16,
                       device="cpu", timing_repeats=1)
    token = CancelToken()

    def cancel_after_first(e: Event) -> None:
        if isinstance(e, EpochEnd) and e.epoch == 1:
            token.cancel()

    store = Store(results())
    with pytest.raises(RunCancelled):
        engine.run(config, store=store, data_dir=small, download=False, cancel=token,
                       emit=cancel_after_first)
    outcome = run_cell(config, store, other, False, lambda e: None, None)
    assert outcome.status == "refused" and "other mnist data" in outcome.error
    assert store.get(config.run_id).status == "cancelled"  # type: ignore[union-attr]

@pytest.mark.parametrize(("stop", "said"), [
    (("train", 1), "resuming after pruning"),  # its checkpoint is the one pruning wrote
    (("pretrain", 2), "resuming after pre-training epoch 2"),  # cancelled while pruning
])
def test_run_names_the_point_it_resumes_after(tmp_path: Path, stop: tuple[str, int],
                                              said: str) -> None:
    """The line says what the checkpoint keeps, in pre-training and right after pruning
    (epoch 0 of training, which is not "no checkpoint")."""
    from datafiles import write_mnist

    from prunetui.core.config import RunConfig
    from prunetui.core.errors import RunCancelled
    from prunetui.core.events import CancelToken, EpochEnd, Event
    from prunetui.core.run import engine
    from prunetui.core.store import Store

    data = write_mnist(tmp_path / "data", train=40, test=20)
    config = RunConfig(model="fc", dataset="mnist", pruner="mag", pre_epochs=2, post_epochs=3,
                       checkpoint_every=2, batch_size=16, device="cpu", timing_repeats=1)
    token = CancelToken()

    def cancel_at(e: Event) -> None:
        if isinstance(e, EpochEnd) and (e.phase, e.epoch) == stop:
            token.cancel()

    with pytest.raises(RunCancelled):
        engine.run(config, store=Store(results()), data_dir=data, download=False,
                       cancel=token, emit=cancel_at)
    r = runner.invoke(app, ["run", "--model", "fc", "--dataset", "mnist", "--pruner", "mag",
                            "--pre-epochs", "2", "--post-epochs", "3", "--checkpoint-every", "2",
                            "--batch-size", "16", "--device", "cpu", "--timing-repeats", "1",
                            "--data-dir", str(data), "--no-download"])
    assert r.exit_code == 0, r.output
    assert f"run {config.run_id} stopped (cancelled); {said}" in r.stderr
    epochs = [(e.phase, e.epoch) for e in Store(results()).epochs(config.run_id)]
    assert epochs == [("pretrain", 1), ("pretrain", 2), ("train", 1), ("train", 2), ("train", 3)]

def test_a_sweep_into_a_results_dir_that_cannot_be_made_fails_once(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    target = tmp_path / "afile" / "x"
    r = runner.invoke(app, ["--results-dir", str(target), "sweep", "--models", "fc",
                            "--datasets", "digits", "--compressions", "1"])
    assert r.exit_code == 2 and r.stderr == (
        f"error: cannot write results under {target}: Not a directory; pass --results-dir DIR\n")
    # A folder that can be made is made by the runs, not by the check, which leaves nothing.
    fresh = tmp_path / "new" / "results"
    r = runner.invoke(app, ["--results-dir", str(fresh), "sweep", "--models", "fc",
                            "--datasets", "mnist", "--compressions", "1", "--data-dir",
                            str(tmp_path / "no-data"), "--no-download"])
    assert r.exit_code == 2 and "mnist" in r.stderr, r.output  # checked after the store
    assert not (tmp_path / "new").exists()


def test_shows_curve_of_a_flat_run_keeps_its_axis_at_its_value() -> None:
    from rich.console import Console

    from prunetui.tui.cli import _curve

    def ticks(top1: float) -> list[float]:
        console = Console(width=80, record=True)
        console.print(_curve(list(fakes.epochs([top1] * 5))))
        return [float(ln.split("┤")[0]) for ln in console.export_text().splitlines()
                if "┤" in ln]

    assert max(ticks(100.0)) == 100.0 and min(ticks(100.0)) >= 90.0, ticks(100.0)
    assert min(ticks(0.0)) == 0.0, ticks(0.0)  # no negative accuracy


def test_an_unknown_command_lists_the_commands() -> None:
    r = runner.invoke(app, ["foo"])
    assert r.exit_code == 2 and r.stderr == (
        "error: No such command 'foo'. Commands: models, pruners, datasets, run, inspect, sweep, "
        "runs, show, rm, gc, export.\n")
    r = runner.invoke(app, ["rnu"])  # click's suggestion stays a sentence of its own
    assert r.stderr.startswith("error: No such command 'rnu'. Did you mean 'run'? Commands: ")


def test_a_run_interrupted_before_it_started_says_nothing_was_stored(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from prunetui.core.run import engine

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C while the data loads, say

    monkeypatch.setattr(engine, "run", interrupted)
    r = runner.invoke(app, ["run", *FAST, "--pruner", "mag"])
    assert r.exit_code == 130
    assert r.stderr.startswith("interrupted before run ")
    assert r.stderr.endswith(" started; nothing was stored\n")


def test_ctrl_c_names_the_checkpoint_the_run_resumes_after(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Epochs past the last checkpoint are recomputed: the line names the checkpoint, and
    the stored progress follows it (it was left at the interrupted attempt's epoch)."""
    from prunetui.core.run import steps
    from prunetui.core.store import Store

    real = steps.train_epoch
    calls = {"n": 0, "stop_at": 8}

    def train_epoch(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == calls["stop_at"]:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(steps, "train_epoch", train_epoch)
    args = ["run", *FAST, "--pruner", "mag", "--post-epochs", "9", "--checkpoint-every", "5"]
    r = runner.invoke(app, args)  # stopped in epoch 8: epochs 1-7 stored, checkpoint at 5
    rid = Store(results()).query()[0].run_id
    assert r.exit_code == 130
    assert r.stderr.endswith(f"interrupted: run {rid} is stored as interrupted; the same "
                             "command resumes it after epoch 5\n")
    calls.update(n=0, stop_at=2)  # resumed after 5: stopped in epoch 7
    r = runner.invoke(app, args)
    assert f"run {rid} stopped (interrupted); resuming after epoch 5" in r.stderr
    assert r.stderr.endswith("resumes it after epoch 5\n")
    assert Store(results()).get(rid).epoch == 6  # type: ignore[union-attr]
    # A forced rerun stopped before its first checkpoint starts again; nothing old is kept.
    calls.update(n=0, stop_at=0)
    assert runner.invoke(app, args).exit_code == 0
    monkeypatch.setattr(steps, "prune_model", lambda *a, **k: (_ for _ in ()).throw(
        KeyboardInterrupt))
    r = runner.invoke(app, [*args, "--force"])
    assert r.stderr.endswith(f"interrupted: run {rid} is stored as interrupted, before its "
                             "first checkpoint; the same command starts it again\n")
    row = Store(results()).get(rid)
    assert row is not None and row.epoch == 0 and Store(results()).epochs(rid) == []


def test_a_sweep_says_once_that_the_machine_was_busy_while_it_timed_runs() -> None:
    import io

    from rich.console import Console

    from prunetui.core.events import RunWarning
    from prunetui.tui.console import ConsoleSink, busy_summary

    buf = io.StringIO()
    with ConsoleSink(Console(file=buf, width=200), sweep=True) as sink:
        for rid, spread in (("a" * 10, 2.5), ("b" * 10, 4.0)):
            sink(RunWarning(rid, "inference passes took ...", busy=spread))
        sink(RunWarning("c" * 10, "layer collapse: no weight left in fc"))
    printed = buf.getvalue()
    assert "inference passes" not in printed and "layer collapse" in printed
    assert busy_summary(sink.busy) == (
        "2 runs were timed while the machine was busy (the slowest pass took up to 4.0× the "
        "fastest): their inference medians may be off; time on a quiet machine to compare "
        "pruners")
    assert busy_summary({}) is None


def test_run_and_inspect_have_an_option_per_setting_with_its_help() -> None:
    from prunetui.core.config import SETTINGS

    text = runner.invoke(app, ["run", "--help"]).output
    for s in SETTINGS.values():
        assert s.cli_flag in text, s.cli_flag
    assert "[default: 100 for synflow, 1 otherwise]" in " ".join(text.split())
    text = " ".join(runner.invoke(app, ["inspect", "--help"]).output.split())
    assert "--prune-iterations" in text and "--post-epochs" not in text
    assert "[default: cpu]" in text  # inspect's own default device


@pytest.mark.parametrize("args", [["--lr-drops", "60", "--lr-drops", "120"],
                                  ["--lr-drops", "60,120"], ["--lr-drops", "60, 120"]])
def test_lr_drops_repeated_or_as_a_comma_list(monkeypatch: pytest.MonkeyPatch,
                                              args: list[str]) -> None:
    import typer

    from prunetui.tui import cli

    seen = []
    real = cli._config

    def config(**kw: Any) -> Any:  # the config the options make; then stop
        seen.append(real(**kw))
        raise typer.Exit(0)

    monkeypatch.setattr(cli, "_config", config)
    r = runner.invoke(app, ["run", *args, "--post-epochs", "130", "--keep-optimizer"])
    assert r.exit_code == 0, r.output
    assert seen[0].lr_drops == (60, 120) and seen[0].keep_optimizer is False  # no pre-epochs


def test_a_toml_file_as_the_first_word_opens_it_in_the_app(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from prunetui.tui.app import PruneApp

    opened: list[Path | None] = []
    monkeypatch.setattr(PruneApp, "run", lambda self: opened.append(self.sweep_file))
    example = Path(__file__).resolve().parents[1] / "examples" / "vgg16-cifar10.toml"
    for argv in ([str(example)], ["--open", str(example)],
                 ["--results-dir", str(tmp_path / "r"), str(example)]):
        r = runner.invoke(app, argv)
        assert r.exit_code == 0, r.output
    assert opened == [example] * 3
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid]\nmodels = ['fc']\ndatasets = ['digits']\ncompressions = [1]\n"
                   "[settings]\nlr = 'fast'\n")
    r = runner.invoke(app, [str(bad)])
    assert r.exit_code == 2 and r.stderr == (  # named as the file names it, and the file
        f"error: [settings] in {bad}: invalid lr 'fast'; it must be a number > 0\n")
    r = runner.invoke(app, [str(tmp_path / "none.toml")])
    assert r.exit_code == 2 and "does not exist" in r.stderr
    r = runner.invoke(app, ["notes.txt"])  # not a TOML file: still an unknown command
    assert r.exit_code == 2 and "No such command 'notes.txt'" in r.stderr
    assert len(opened) == 3


def test_runs_at_80_columns_keeps_whole_ids_and_the_key_columns(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console
    from test_app import prepared_store

    from prunetui.tui import cli

    ids = [r.run_id for r in prepared_store(results()).query()]
    monkeypatch.setattr(cli, "out", Console(width=80))
    r = runner.invoke(app, ["runs"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), r.stdout
    assert all(any(rid in line for line in lines) for rid in ids)
    header = next(line for line in lines if "status" in line)
    for column in ("id", "model", "dataset", "pruner", "c", "seed", "status", "top-1"):
        assert f" {column} " in header
    assert "--json for" in lines[0]  # says what it left out
    monkeypatch.setattr(cli, "out", Console(width=160))
    wide = runner.invoke(app, ["runs"]).stdout
    assert "FLOP ratio" in wide and "--json for" not in wide

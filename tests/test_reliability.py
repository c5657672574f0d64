"""Faults: kill -9 anywhere, Ctrl-C/SIGTERM, disk full, out of memory, corrupt inputs, unsafe
checkpoints, parallel workers. Nothing finished is lost; nothing half-written is kept."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from prunetui.core.config import RunConfig
from prunetui.core.errors import CheckpointError, PrunetuiError
from prunetui.core.run import build as run_build
from prunetui.core.run import engine, steps
from prunetui.core.store import Store
from prunetui.tui.cli import app

runner = CliRunner()
CLI = [sys.executable, "-m", "prunetui.tui.cli"]
def foreground() -> None:
    """Popen's preexec_fn: Ctrl-C's default action, as a shell gives a foreground command.
    A shell that starts a job in the background (`pytest ... &`) sets SIGINT to ignored, a
    process inherits that, and Python then installs no KeyboardInterrupt handler: these
    tests signal the process as a terminal's Ctrl-C would, whatever started the suite."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def env(results: Path) -> dict[str, str]:
    return {**os.environ, "PRUNETUI_RESULTS": str(results), "PYTHONUNBUFFERED": "1"}


def _wait_for_epoch(results: Path, timeout: float = 60) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            rows = Store(results).query()
        except Exception:  # the store may not exist yet
            rows = []
        if rows and rows[0].epoch >= 1:
            return
        time.sleep(0.1)
    raise AssertionError("run never reached epoch 1")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stores_interrupted_and_resumes(tmp_path: Path, sig: int) -> None:
    args = [*CLI, "run", "--model", "fc", "--dataset", "digits", "--pruner", "rand",
            "--post-epochs", "100000", "--device", "cpu", "--timing-repeats", "1",
            *(["--json"] if sig == signal.SIGTERM else [])]
    p = subprocess.Popen(args, env=env(tmp_path), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, preexec_fn=foreground)
    _wait_for_epoch(tmp_path)
    p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130
    if sig == signal.SIGTERM:  # --json: a script still reads the stored row
        assert json.loads(out)["status"] == "interrupted"
    assert "Traceback" not in err
    row = Store(tmp_path).query()[0]
    said = [ln for ln in err.splitlines() if ln.startswith(("error:", "interrupted"))]
    m = re.fullmatch(f"interrupted: run {row.run_id} is stored as interrupted; the same "
                     r"command resumes it after (pruning|epoch (\d+))", said[0])
    assert len(said) == 1 and m, said
    # The checkpoint's (one per epoch here; an epoch is stored before it is checkpointed, so
    # a signal in between resumes after the one before): at most the last epoch stored.
    assert int(m.group(2) or 0) <= row.epoch
    assert row.status == "interrupted" and row.epoch >= 1
    assert (tmp_path / row.run_id / "resume.pt").exists()
    if sig == signal.SIGINT:  # what pruning left is shown, though the run has no result
        shown = subprocess.run([*CLI, "show", row.run_id], env=env(tmp_path),
                               capture_output=True, text=True, timeout=60).stdout
        assert "Per-layer, as pruned" in shown and "layers.0" in shown
    # The same command resumes from the checkpoint (a few epochs are enough to see it).
    stopped = row.epoch
    p = subprocess.Popen(args, env=env(tmp_path), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, preexec_fn=foreground)
    _wait_for_epoch(tmp_path)
    deadline = time.time() + 60
    while Store(tmp_path).get(row.run_id).epoch <= stopped and time.time() < deadline:  # type: ignore[union-attr]
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    # After the checkpoint of the last epoch stored, or of the one before when the signal
    # came between an epoch's record and its checkpoint ("pruning" before epoch 1's).
    assert re.search(r"stopped \(interrupted\); resuming after (pruning|epoch \d+)\n", err)
    epochs = [e.epoch for e in Store(tmp_path).epochs(row.run_id)]
    assert epochs == list(range(1, len(epochs) + 1))  # no gap, no duplicate


def test_disk_full_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["run", "--model", "fc", "--dataset", "digits", "--pruner", "rand", "--post-epochs",
            "1", "--device", "cpu", "--timing-repeats", "1"]
    assert runner.invoke(app, [*args, "--seed", "1"]).exit_code == 0
    before = Store().query()[0]

    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(steps, "atomic_write_bytes", full)
    r = runner.invoke(app, [*args, "--seed", "2"])
    assert r.exit_code == 2
    assert r.stderr.strip().startswith("error: cannot write results under")
    assert "No space left on device" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    s = Store()
    assert s.get(before.run_id) == before  # what was stored is intact
    assert s.integrity_check() == "ok"


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory"),
    # What the CPU's allocator raises (a plain RuntimeError), as torch words it.
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
                 "memory: you tried to allocate 17179869184 bytes. Error code 12 (Cannot "
                 "allocate memory)"),
], ids=["cuda", "cpu"])
def test_out_of_memory_is_stored_as_oom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        error: Exception) -> None:
    def oom(*a: Any, **k: Any) -> None:
        raise error

    monkeypatch.setattr(steps, "train_epoch", oom)
    store = Store(tmp_path)
    c = RunConfig(model="fc", dataset="digits", pruner="rand", post_epochs=1, batch_size=512,
                  device="cpu")
    with pytest.raises(PrunetuiError, match="out of memory on cpu with batch size 512"):
        engine.run(c, store=store)
    assert store.get(c.run_id).status == "oom"  # type: ignore[union-attr]
    r = runner.invoke(app, ["run", "--model", "fc", "--dataset", "digits", "--pruner", "rand",
                            "--post-epochs", "1", "--batch-size", "256", "--device", "cpu"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.stderr.strip().splitlines() == [
        "error: out of memory on cpu with batch size 256 (test batch size 256); try a smaller "
        "--batch-size or --test-batch-size"]


def test_sweep_goes_on_after_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    real = steps.train_epoch

    def flaky(model: Any, *a: Any, **k: Any) -> Any:
        if len(list(model.parameters())) and os.environ.get("FAIL_NEXT") == "1":
            raise torch.OutOfMemoryError("boom")
        return real(model, *a, **k)

    monkeypatch.setattr(steps, "train_epoch", flaky)
    monkeypatch.setenv("FAIL_NEXT", "1")
    r = runner.invoke(app, ["sweep", "--models", "fc", "--datasets", "digits", "--pruners",
                            "rand,mag", "--compressions", "1", "--set", "post_epochs=1",
                            "--set", "device=cpu", "--set", "timing_repeats=1"])
    assert r.exit_code == 1
    assert "0 of 2 runs finished" in r.stdout and r.stdout.count("oom:") == 2


def test_corrupt_checkpoint_and_mismatched_checkpoint(tmp_path: Path) -> None:
    store = Store(tmp_path)
    c = RunConfig(model="fc", dataset="digits", pruner="rand", post_epochs=1, device="cpu")
    run_dir = store.run_dir(c.run_id)
    run_dir.mkdir(parents=True)
    (run_dir / "resume.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        engine.run(c, store=store)
    other = RunConfig(model="conv", dataset="digits", pruner="rand", post_epochs=1,
                      device="cpu")
    model, _ = run_build.build(other, torch.device("cpu"))
    ckpt = {"run_id": c.run_id, "phase": "train", "epoch": 1, "model": model.state_dict(),
            "optimizer": None, "scheduler": None, "torch_rng": torch.get_rng_state(),
            "data_rng": torch.get_rng_state(), "prune_rng": torch.get_rng_state(),
            "prune_seconds": 0.1}
    torch.save(ckpt, run_dir / "resume.pt")
    with pytest.raises(CheckpointError, match="does not match the run's model"):
        engine.run(c, store=store)
    # One that loads safely but lacks fields, or claims an epoch the run does not have, is
    # refused in one line naming what is wrong, and the run is not stored as finished.
    own, _ = run_build.build(c, torch.device("cpu"))
    for change, why in (({"prune_rng": None}, "its prune_rng is not a generator state"),
                        ({"epoch": 10**6}, "training epoch 1000000, but the run has 1"),
                        ({"phase": "sideways"}, "phase 'sideways'"),
                        ({"prune_seconds": float("nan")}, "prune_seconds nan")):
        state = {**ckpt, "model": own.state_dict(), **change}
        if change.get("prune_rng", 0) is None:
            del state["prune_rng"]
            why = "no prune_rng"
        torch.save(state, run_dir / "resume.pt")
        with pytest.raises(CheckpointError, match=re.escape(why)) as info:
            engine.run(c, store=store)
        assert "\n" not in str(info.value)
        row = store.get(c.run_id)
        assert row is None or row.status != "finished"


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("touch /tmp/prunetui-pwned",))


def test_checkpoint_needing_code_execution_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path)
    c = RunConfig(model="fc", dataset="digits", pruner="rand", post_epochs=1, device="cpu")
    run_dir = store.run_dir(c.run_id)
    run_dir.mkdir(parents=True)
    with open(run_dir / "resume.pt", "wb") as f:
        pickle.dump({"run_id": c.run_id, "x": _Evil()}, f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and nothing but the one line: no torch warning
        with pytest.raises(CheckpointError, match="cannot be loaded safely"):
            engine.run(c, store=store)
    assert not Path("/tmp/prunetui-pwned").exists()
    assert store.get(c.run_id) is None  # refused before anything was written


def test_cli_refuses_corrupt_store(tmp_path: Path) -> None:
    (tmp_path / "runs.sqlite").write_bytes(b"\x00garbage" * 1000)
    r = runner.invoke(app, ["runs", "--results-dir", str(tmp_path)])
    assert r.exit_code == 2 and "is not a prunetui results store" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_refuses_truncated_dataset(tmp_path: Path) -> None:
    from datafiles import write_mnist

    root = write_mnist(tmp_path / "data")
    img = next((root / "MNIST" / "raw").glob("train-images*"))
    img.write_bytes(img.read_bytes()[:100])
    r = runner.invoke(app, ["run", "--model", "fc", "--dataset", "mnist", "--data-dir",
                            str(root), "--no-download"])
    assert r.exit_code == 2 and "corrupt" in r.stderr and len(r.stderr.splitlines()) == 1
    assert not Path(os.environ["PRUNETUI_RESULTS"]).exists()


def test_files_follow_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        store = Store(tmp_path / "r")
        c = RunConfig(model="fc", dataset="digits", pruner="rand", post_epochs=1, device="cpu",
                      timing_repeats=1)
        engine.run(c, store=store)
    finally:
        os.umask(old)
    for p in (tmp_path / "r").rglob("*"):
        assert not p.stat().st_mode & 0o002, p  # nothing world-writable
    assert (store.run_dir(c.run_id) / "final.pt").stat().st_mode & 0o777 == 0o640


def test_two_parallel_workers_one_store(tmp_path: Path) -> None:
    r = subprocess.run([*CLI, "sweep", "--models", "fc", "--datasets", "digits", "--pruners",
                        "rand,mag,snip,synflow", "--compressions", "1", "--jobs", "2",
                        "--devices", "cpu,cpu",
                        "--set", "post_epochs=1", "--set", "device=cpu",
                        "--set", "timing_repeats=1", "--set", "synflow.prune_iterations=5"],
                       env=env(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "4 of 4 runs finished" in r.stdout
    s = Store(tmp_path)
    rows = s.query()
    assert len(rows) == 4 and all(x.status == "finished" for x in rows)
    assert all(len(s.epochs(x.run_id)) == 1 for x in rows)
    assert s.integrity_check() == "ok"


@pytest.mark.parametrize("how", ["SIGINT to the main process", "SIGTERM to the group"])
def test_a_parallel_sweep_signalled_alone_stops_its_workers(tmp_path: Path, how: str) -> None:
    """`kill -INT`, `timeout` or a scheduler may signal the main process only: it passes the
    interrupt on, each worker stores its run as interrupted, and nothing is left running.
    Signalled as a group, each worker gets the signal and then the one passed on: the
    second must be ignored without Python's "ignored due to race condition" traceback."""
    p = subprocess.Popen([*CLI, "sweep", "--models", "fc", "--datasets", "digits", "--pruners",
                          "rand,mag,snip", "--compressions", "1", "--jobs", "2",
                          "--set", "post_epochs=100000", "--set", "device=cpu",
                          "--set", "timing_repeats=1"],
                         env=env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True, preexec_fn=foreground)
    try:
        end = time.time() + 90
        # Both workers training (100,000 epochs: on a loaded box one worker may start
        # seconds after the other, and must not have finished by then).
        while time.time() < end:
            with contextlib.suppress(Exception):
                rows = Store(tmp_path).query()
                if len(rows) == 2 and all(r.epoch >= 1 for r in rows):
                    break
            time.sleep(0.1)
        else:
            raise AssertionError("the two runs never reached epoch 1")
        if how == "SIGTERM to the group":
            os.killpg(p.pid, signal.SIGTERM)
        else:
            p.send_signal(signal.SIGINT)  # to the main process only, not its process group
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "interrupted: 0 of 3 runs finished; the same command resumes the rest")
    rows = Store(tmp_path).query()
    assert sorted(r.status for r in rows) == ["interrupted", "interrupted"]
    assert all((tmp_path / r.run_id / "resume.pt").exists() for r in rows)

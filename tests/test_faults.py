"""Faults at deterministic points (``core/faults.py``): a kill at every boundary of a run, each
resumed to the same result as an uninterrupted run; and two processes on one store, one held at
a known point while the other acts. No test here sleeps to hit a moment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from prunetui.core.config import RunConfig
from prunetui.core.run import engine
from prunetui.core.status import RunStatus
from prunetui.core.store import Store

CLI = [sys.executable, "-m", "prunetui.tui.cli"]
# Small, but every phase: pre-training, pruning, training, measuring.
CONFIG = RunConfig(model="fc", dataset="digits", pruner="mag", pre_epochs=1, post_epochs=1,
                   device="cpu", timing_repeats=1)
# Runs CONFIG in a fresh process (one torch thread: CPU sums are ordered by thread).
RUN_ONE = ("import sys, torch; torch.set_num_threads(1); "
           "from pathlib import Path; from prunetui.core.config import RunConfig; "
           "from prunetui.core.run import engine; from prunetui.core.store import Store; "
           "engine.run(RunConfig(**eval(sys.argv[1])), store=Store(Path(sys.argv[2])))")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNETUI_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def _run_in_process(config: RunConfig, root: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        engine.run(config, store=Store(root))
    finally:
        torch.set_num_threads(threads)


def _state(root: Path, run_id: str) -> tuple[object, ...]:
    store = Store(root)
    row = store.get(run_id)
    assert row is not None and row.status == RunStatus.FINISHED, row
    assert row.result is not None
    weights = torch.load(root / run_id / "final.pt", weights_only=True)
    return (row.top1, row.density, row.flop_ratio,
            [(e.phase, e.epoch, e.top1, e.train_loss) for e in store.epochs(run_id)],
            [(e.phase, e.epoch, e.top1) for e in row.result.epochs],
            sorted((k, v.sum().item()) for k, v in weights.items()))


def _points(root: Path, kind: str, config: RunConfig) -> int:
    """How many points of ``kind`` a fresh run of ``config`` passes, each store
    ``root/<n>`` left with the run killed at its n-th one: kill at 1, 2, ... until a run
    survives. Two at a time (each process runs on one thread): most of a point's cost is a
    fresh interpreter importing torch, and CI has two cores."""
    n = 1
    while True:
        procs = [subprocess.Popen([*CLI[:1], "-c", RUN_ONE, repr(config.to_dict()),
                                   str(root / str(i))],
                                  env=_env(PRUNETUI_KILL_AT=f"{kind}:{i}"),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for i in (n, n + 1)]
        codes = []
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode in (0, -9), err.decode()[-2000:]
            codes.append(p.returncode)
        if codes[0] == 0:
            return n - 1
        if codes[1] == 0:
            return n
        n += 2


# IMP: three rounds (dense, then two prunings and rewinds) and the final training.
IMP_CONFIG = RunConfig(model="fc", dataset="digits", pruner="imp", compression=0.2,
                       post_epochs=1, device="cpu", timing_repeats=1)


@pytest.mark.slow
@pytest.mark.parametrize(("config", "kind", "least"), [
    # Every state a kill can leave lies between two commits or inside a write: an engine
    # event (PRUNETUI_KILL_AT=event:N, the kind the two-process tests pause at) adds none.
    (CONFIG, "commit", 6), (CONFIG, "write", 5),
    # IMP at every commit: each round's record, pruning and rewind. Its artifact writes go
    # through the same atomic write the Mag run is killed in at every point (the suite's time
    # budget holds one IMP kind).
    (IMP_CONFIG, "commit", 9)], ids=lambda v: getattr(v, "pruner", v))
def test_a_kill_at_every_boundary_resumes_to_the_uninterrupted_result(
        tmp_path: Path, config: RunConfig, kind: str, least: int) -> None:
    """SIGKILL a run at its N-th store commit / artifact write / engine event, for every N
    it has; resume each; every one ends as the uninterrupted run did, bit for bit, with no
    temporary file but those a kill leaves mid-write, which `gc` removes, and a sound
    database."""
    clean = tmp_path / "clean"
    _run_in_process(config, clean)
    want = _state(clean, config.run_id)
    killed = tmp_path / "killed"
    n = _points(killed, kind, config)  # each store killed/<n>: a run killed at its n-th point
    assert n >= least, n
    for i in range(1, n + 1):
        root = killed / str(i)
        _run_in_process(config, root)  # resumes (or reports the run stored before the kill)
        assert _state(root, config.run_id) == want, f"killed at {kind} {i}"
        store = Store(root)
        assert store.integrity_check() == "ok"
        assert len(store.query()) == 1
        store.collect_garbage()
        leftovers = [p.name for p in root.rglob(".*") if p.is_file() and p.name != ".lock"]
        assert leftovers == [], leftovers
        assert not (root / config.run_id / "resume.pt").exists()


# -- two processes ---------------------------------------------------------------------------


def _held(results: Path, gate: Path, *args: str) -> subprocess.Popen[str]:
    """``prunetui ARGS`` held at its first engine event (the run started, its lock held)."""
    p = subprocess.Popen([*CLI, *args], text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE,
                         env=_env(PRUNETUI_RESULTS=str(results), PRUNETUI_PAUSE_AT="event:1",
                                  PRUNETUI_PAUSE_FILE=str(gate)))
    _until(lambda: Path(f"{gate}.reached").exists() or p.poll() is not None)
    assert p.poll() is None, p.communicate()
    return p


def _until(condition: object, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def _go(gate: Path) -> None:
    Path(f"{gate}.go").touch()


RUN = ["run", "--model", "fc", "--dataset", "digits", "--pruner", "rand", "--post-epochs", "2",
       "--device", "cpu", "--timing-repeats", "1"]
SWEEP = ["sweep", "--models", "fc", "--datasets", "digits", "--pruners", "rand",
         "--compressions", "1,2", "--set", "post_epochs=2", "--set", "device=cpu",
         "--set", "timing_repeats=1", "--name", "twice"]


def test_a_second_run_of_a_config_in_progress_waits_and_reports_its_result(
        tmp_path: Path) -> None:
    """The race: the second process read the store before the first finished; it must not
    train the run again (nor report it failed), but wait and report the stored result."""
    gate = tmp_path / "gate"
    results = tmp_path / "r"
    first = _held(results, gate, *RUN)
    second = subprocess.Popen([*CLI, *RUN], text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=_env(PRUNETUI_RESULTS=str(results)))
    # The second one says it waits (its warning comes once the lock is found held) ...
    line = second.stderr.readline() if second.stderr else ""
    while "being run by another process" not in line:
        assert line, second.communicate()
        line = second.stderr.readline() if second.stderr else ""
    _go(gate)
    _, err1 = first.communicate(timeout=240)
    _, err2 = second.communicate(timeout=240)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert "is already stored" in err2  # ... and then reports what the first one stored
    store = Store(results)
    (row,) = store.query()
    assert row.status == RunStatus.FINISHED
    assert [e.epoch for e in store.epochs(row.run_id)] == [1, 2]  # trained once


def test_two_identical_sweeps_share_the_cells_and_fail_none(tmp_path: Path) -> None:
    """A sweep finding a cell held by another process runs the others first, then waits for
    it; the two sweeps together train each cell once, and neither lists a failure."""
    gate = tmp_path / "gate"
    results = tmp_path / "r"
    first = _held(results, gate, *SWEEP)  # holds the sweep's first cell
    assert len(Store(results).query()) == 1  # the held cell
    second = subprocess.Popen([*CLI, *SWEEP], text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=_env(PRUNETUI_RESULTS=str(results)))
    # The second sweep trains the other cell meanwhile.
    _until(lambda: sum(r.status == RunStatus.FINISHED for r in Store(results).query()) == 1)
    _go(gate)
    out1, err1 = first.communicate(timeout=300)
    out2, err2 = second.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, (err1, err2)
    for out in (out1, out2):
        assert "2 of 2 runs finished (1 already stored)" in out, out
    rows = Store(results).query(sweep="twice")
    assert [r.status for r in rows] == [RunStatus.FINISHED] * 2
    assert all([e.epoch for e in Store(results).epochs(r.run_id)] == [1, 2] for r in rows)


def test_a_run_and_a_sweep_over_it_share_it(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    results = tmp_path / "r"
    first = _held(results, gate, *RUN, "--compression", "1")
    sweep = subprocess.Popen([*CLI, *SWEEP], text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=_env(PRUNETUI_RESULTS=str(results)))
    _until(lambda: sum(r.status == RunStatus.FINISHED for r in Store(results).query()) == 1)
    _go(gate)
    assert first.wait(timeout=300) == 0
    out, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, err
    assert "2 of 2 runs finished (1 already stored)" in out, out


def test_rm_of_a_run_in_progress_is_refused_and_loses_nothing(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    results = tmp_path / "r"
    first = _held(results, gate, *RUN)
    (row,) = Store(results).query()
    rm = subprocess.run([*CLI, "rm", row.run_id], text=True, capture_output=True, timeout=120,
                        env=_env(PRUNETUI_RESULTS=str(results)))
    assert rm.returncode == 2 and "is running right now" in rm.stderr, rm.stderr
    assert "Traceback" not in rm.stderr
    _go(gate)
    assert first.wait(timeout=300) == 0
    done = Store(results).get(row.run_id)
    assert done is not None and done.status == RunStatus.FINISHED
    rm = subprocess.run([*CLI, "rm", row.run_id], text=True, capture_output=True, timeout=120,
                        env=_env(PRUNETUI_RESULTS=str(results)))
    assert rm.returncode == 0 and Store(results).query() == []

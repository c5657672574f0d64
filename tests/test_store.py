"""The SQLite result store: transactions, resolution, schema checks, concurrent writers."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path
from typing import Any

import fakes
import pytest

from prunetui.core.errors import ConfigError, PrunetuiError, StoreError
from prunetui.core.run.result import RunResult
from prunetui.core.store import SCHEMA_VERSION, Store, failed_attempt_status


def fake_result(run_id: str, top1: float = 50.0) -> RunResult:
    return fakes.result({**CFG, "run_id": run_id}, top1,
                        built=fakes.structure([fakes.layer("fc", shape=(10, 4))]))


CFG = {"model": "fc", "dataset": "digits", "pruner": "rand", "compression": 1.0, "seed": 1}


def test_run_lifecycle(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.start_run(CFG, "0123456789", "sw")
    s.record_epoch("0123456789", {"phase": "train", "epoch": 1, "train_loss": 1.0,
                                  "test_loss": 1.1, "top1": 40.0, "top5": 80.0, "lr": 0.1,
                                  "seconds": 0.5}, 1)
    s.finish_run("0123456789", fake_result("0123456789"))
    row = s.get("0123456789")
    assert row is not None and row.status == "finished" and row.epoch == 1
    assert row.top1 == 50.0 and row.flop_ratio == 0.1
    assert s.layers("0123456789")[0].shape == (10, 4)
    assert s.query(sweep="sw")[0].run_id == "0123456789"
    assert s.integrity_check() == "ok"


def test_truncate_epochs_past_checkpoint(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.start_run(CFG, "aaaaaaaaaa")
    for e in (1, 2, 3):
        s.record_epoch("aaaaaaaaaa", {"phase": "train", "epoch": e, "train_loss": 1.0,
                                      "test_loss": 1.0, "top1": 1.0, "top5": 1.0, "lr": 0.1,
                                      "seconds": 0.1}, e)
    s.truncate_epochs("aaaaaaaaaa", "train", 2)
    assert [e.epoch for e in s.epochs("aaaaaaaaaa")] == [1, 2]


def test_resolve_prefix(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.start_run(CFG, "abc0000000")
    s.start_run(CFG, "abd0000000")
    assert s.resolve("abc").run_id == "abc0000000"
    with pytest.raises(ConfigError, match="matches 2 runs"):
        s.resolve("ab")
    with pytest.raises(ConfigError, match="no stored run matches 'fff'"):
        s.resolve("fff")
    with pytest.raises(ConfigError, match="invalid run id 'xyz'"):
        s.resolve("xyz")


def test_not_sqlite_is_refused(tmp_path: Path) -> None:
    (tmp_path / "runs.sqlite").write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="is not a prunetui results store"):
        Store(tmp_path)


def test_future_schema_is_refused(tmp_path: Path) -> None:
    Store(tmp_path).start_run(CFG, "0123456789")
    con = sqlite3.connect(tmp_path / "runs.sqlite")
    con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer than this prunetui understands"):
        Store(tmp_path)


def test_older_store_is_migrated(tmp_path: Path) -> None:
    """A store made before the schema version was recorded (no meta table) is brought forward
    without losing its runs."""
    Store(tmp_path).start_run(CFG, "0123456789")
    con = sqlite3.connect(tmp_path / "runs.sqlite")
    con.execute("DROP TABLE meta")
    con.execute("DROP TABLE sweep_runs")
    con.commit()
    con.close()
    s = Store(tmp_path)
    assert s.get("0123456789") is not None
    s.add_to_sweep("later", ["0123456789"])
    assert s.sweeps() == [("later", 1)]


def test_missing_store_without_create(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no results store"):
        Store(tmp_path / "nope", create=False)


def _writer(root: str, worker: int, n: int) -> None:
    s = Store(root)
    for i in range(n):
        rid = f"{worker:02d}{i:08d}"
        s.start_run({**CFG, "seed": i}, rid, "para")
        s.record_epoch(rid, {"phase": "train", "epoch": 1, "train_loss": 1.0, "test_loss": 1.0,
                             "top1": 1.0, "top5": 1.0, "lr": 0.1, "seconds": 0.1}, 1)
        s.finish_run(rid, fake_result(rid, top1=float(i)))


def test_four_concurrent_writers(tmp_path: Path) -> None:
    Store(tmp_path).query()  # nothing yet; the writers create the schema concurrently
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 15)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    s = Store(tmp_path)
    rows = s.query(sweep="para")
    assert len(rows) == 60
    assert all(r.status == "finished" and r.top1 == float(int(r.run_id[2:])) for r in rows)
    assert all(len(s.epochs(r.run_id)) == 1 for r in rows)
    assert s.integrity_check() == "ok"


def _hold_lock_then_die(root: str, started: Any) -> None:
    s = Store(root)
    with s.run_lock("bbbbbbbbbb"):
        s.start_run(CFG, "bbbbbbbbbb")
        started.set()
        import os

        os._exit(0)  # killed mid-run: no status stored, the OS drops the lock


def test_a_running_row_whose_process_died_reads_as_interrupted(tmp_path: Path) -> None:
    s = Store(tmp_path)
    with s.run_lock("aaaaaaaaaa"):
        s.start_run(CFG, "aaaaaaaaaa")
        assert s.get("aaaaaaaaaa").status == "running"  # type: ignore[union-attr]
        with (pytest.raises(PrunetuiError, match="being run by another process"),
              Store(tmp_path).run_lock("aaaaaaaaaa")):
            pass
        with pytest.raises(StoreError, match="aaaaaaaaaa is running right now; stop it first"):
            s.remove(["aaaaaaaaaa"])  # its process would go on writing to a run that is gone
    # The same row once nobody holds its lock: the process is gone.
    row = s.get("aaaaaaaaaa")
    assert row is not None and row.status == "interrupted" and "run it again" in (row.error or "")
    assert [r.run_id for r in s.query(status="interrupted")] == ["aaaaaaaaaa"]
    assert s.query(status="running") == []
    with sqlite3.connect(tmp_path / "runs.sqlite") as con:  # reading changed nothing
        assert con.execute("SELECT status FROM runs").fetchone()[0] == "running"
    # A process killed while it held the lock.
    ctx = mp.get_context("spawn")
    started = ctx.Event()
    p = ctx.Process(target=_hold_lock_then_die, args=(str(tmp_path), started))
    p.start()
    p.join(60)
    assert started.is_set()
    assert s.get("bbbbbbbbbb").status == "interrupted"  # type: ignore[union-attr]


def test_a_failed_attempt_is_told_from_a_refused_one(tmp_path: Path) -> None:
    """What a sweep reports for a run that raised: the status it stored, unless it stored
    nothing (refused before writing), where the row's status is an earlier attempt's."""
    s = Store(tmp_path)
    rid = "0123456789"
    assert failed_attempt_status(None, None, "error") == "error"  # refused, never stored
    s.start_run(CFG, rid)
    s.fail_run(rid, "cancelled", "cancelled by the user")
    before = s.get(rid)
    assert failed_attempt_status(before, s.get(rid), "error") == "error"  # refused
    s.start_run(CFG, rid)
    s.fail_run(rid, "interrupted", "interrupted")
    assert failed_attempt_status(before, s.get(rid), "error") == "interrupted"
    s.start_run(CFG, rid)
    s.fail_run(rid, "diverged", "loss became nan")
    diverged = s.get(rid)
    # A stored divergence refused as such (not retrained) is still reported as diverged.
    assert failed_attempt_status(diverged, s.get(rid), "error") == "diverged"
    s.start_run(CFG, rid)
    s.finish_run(rid, fake_result(rid))
    assert failed_attempt_status(s.get(rid), s.get(rid), "failed") == "failed"


def test_a_results_dir_that_cannot_be_made_leaves_no_folder_behind(tmp_path: Path) -> None:
    # The parent can be made, the name under it cannot (too long): the check makes neither.
    root = tmp_path / "made" / ("x" * 300)
    with pytest.raises(StoreError, match=r"cannot write results under .*File name too long"):
        Store(root).check_writable()
    assert not (tmp_path / "made").exists()

"""The SQLite result store: transactions, resolution, schema checks, concurrent writers, and
every way a store can be unusable (read-only, full, corrupt, foreign, unreadable rows, missing
artifacts, killed writers) as one line with nothing lost or written."""

from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import fakes
import pytest
from typer.testing import CliRunner

from prunetui.core import store as store_module
from prunetui.core.errors import ConfigError, PrunetuiError, StoreError
from prunetui.core.run.result import RunResult
from prunetui.core.store import SCHEMA_VERSION, Store, failed_attempt_status
from prunetui.tui.cli import app


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


# -- robustness: every way a store can be unusable is one line, nothing lost or written -------

runner = CliRunner()
FAST = ["--model", "fc", "--dataset", "digits", "--device", "cpu", "--timing-repeats", "1",
        "--batch-size", "128", "--compression", "0.5", "--post-epochs", "1"]
EXPORT = ["export", "--at", "0.5"]  # where the runs are: no warning line about --at


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results dir with two real finished runs (rand and mag at c = 0.5), made once."""
    root = tmp_path_factory.mktemp("made")
    for pruner in ("rand", "mag"):
        r = runner.invoke(app, ["run", *FAST, "--pruner", pruner, "--results-dir", str(root),
                                "--data-dir", str(root.parent / "data")])
        assert r.exit_code == 0, r.output
    return root


@pytest.fixture
def store_copy(made: Path, tmp_path: Path) -> Path:
    """This test's own copy of ``made``."""
    shutil.copytree(made, tmp_path / "store")
    return tmp_path / "store"


def _ids(root: Path) -> list[str]:
    return sorted(r.run_id for r in Store(root).query())


def _one_line(r: Any) -> str:
    """The error line of a CLI result that must be exactly one line, exit 2."""
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and len(r.stderr.strip().splitlines()) == 1, r.stderr
    return str(r.stderr.strip())


def _fill(root: Path, n: int) -> Store:
    s = Store(root)
    for i in range(n):
        rid = f"{i:010x}"
        s.start_run({**CFG, "seed": i}, rid)
        s.finish_run(rid, fake_result(rid))
    return s


def _garble(db: Path) -> bytes:
    """Garbage over the middle third of a database file (past its header page), as a bad
    disk or a copy taken mid-write leaves; forgets that this process found it sound."""
    data = bytearray(db.read_bytes())
    lo, hi = len(data) // 3, 2 * len(data) // 3
    data[lo:hi] = (b"\xde\xad\xbe\xef" * (hi - lo))[: hi - lo]
    db.write_bytes(bytes(data))
    store_module._SOUND.clear()
    return bytes(data)


# 1. read-only results dir, full disk

def _read_only(root: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    """`prunetui ARGS` in a process that may not write ``root``: its folder made 0555, and
    for root (whom permissions do not stop) also mounted read-only in a mount namespace of
    its own, as a read-only share or disk is."""
    cmd = [sys.executable, "-m", "prunetui.tui.cli", *args]
    if os.geteuid() == 0:
        mount = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0"'
        probe = ["unshare", "--mount", "sh", "-c", mount, str(root)]
        if shutil.which("unshare") is None or subprocess.run(probe).returncode != 0:
            pytest.skip("running as root, and no read-only mount can be made here")
        cmd = ["unshare", "--mount", "sh", "-c", mount + ' && exec "$@"', str(root), *cmd]
    root.chmod(0o555)
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "COLUMNS": "200"})
    finally:
        root.chmod(0o755)


@pytest.mark.parametrize("log", ["none", "pending"])
def test_a_read_only_store_is_read_and_writing_to_it_says_so(
        store_copy: Path, tmp_path: Path, log: str) -> None:
    """Reads work in a read-only results dir (with a writer's log pending: ``mode=ro``, which
    sees it; without: ``immutable``); a write says the folder is read-only, not that the
    store is no prunetui store to move away."""
    root = store_copy
    ids = _ids(root)
    con = None
    if log == "pending":  # a writer that stays open: its -wal and -shm are there
        con = sqlite3.connect(root / "runs.sqlite", isolation_level=None)
        con.execute("UPDATE runs SET error='only in the log' WHERE run_id=?", (ids[0],))
        assert (root / "runs.sqlite-wal").stat().st_size > 0
    at = ["--results-dir", str(root)]
    try:
        before = (root / "runs.sqlite").read_bytes()
        r = _read_only(root, ["runs", *at])
        assert r.returncode == 0 and all(i in r.stdout for i in ids), r.stderr
        r = _read_only(root, ["show", ids[0], *at])
        assert r.returncode == 0 and "weight histograms" in r.stdout, r.stderr
        assert ("only in the log" in r.stdout) == (log == "pending")
        r = _read_only(root, [*EXPORT, *at, "--out", str(tmp_path / "rep")])
        assert r.returncode == 0 and (tmp_path / "rep" / "report.md").exists(), r.stderr
        r = _read_only(root, ["rm", ids[0], *at])
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith(f"error: cannot write to {root}/runs.sqlite: its folder "
                                   f"{root} is read-only")
        assert "not a prunetui results store" not in r.stderr and "move" not in r.stderr
        assert (root / "runs.sqlite").read_bytes() == before
    finally:
        if con is not None:
            con.close()
    assert _ids(root) == ids


def test_a_read_only_store_whose_log_cannot_be_read_says_so(store_copy: Path) -> None:
    """A pending log without its -shm in a read-only folder cannot be read safely (reading
    the file alone would miss what the log holds): one line that says so."""
    root = store_copy
    con = sqlite3.connect(root / "runs.sqlite", isolation_level=None)
    con.execute("UPDATE runs SET error='only in the log'")
    shutil.copy(root / "runs.sqlite-wal", root / "wal")  # as a crash leaves it, -shm gone
    con.close()
    (root / "wal").rename(root / "runs.sqlite-wal")
    r = _read_only(root, ["runs", "--results-dir", str(root)])
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"error: cannot read {root}/runs.sqlite: its folder is "
                               "read-only (or its disk full), and runs.sqlite-wal beside it "
                               "holds changes")


def _cap_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk, as SQLite meets it: no connection may grow the file (SQLITE_FULL)."""
    real = Store._connect

    def capped(self: Store, write: bool = True) -> sqlite3.Connection:
        con = real(self, write)
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        con.execute(f"PRAGMA max_page_count={max(pages, 1)}")
        return con

    monkeypatch.setattr(Store, "_connect", capped)


def test_a_full_disk_is_named_and_stored_runs_are_intact(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = _fill(tmp_path, 3)
    before = s.query()
    _cap_pages(monkeypatch)
    big = {**CFG, "seed": 99, "note": "x" * 20000}  # needs new pages
    with pytest.raises(StoreError) as e:
        Store(tmp_path).start_run(big, "ffffffffff")
    assert str(e.value).startswith(f"cannot write to {tmp_path}/runs.sqlite: the disk is full "
                                   "(database or disk is full); nothing stored was changed")
    monkeypatch.undo()
    assert Store(tmp_path).query() == before and Store(tmp_path).integrity_check() == "ok"


class _NoRoomForShm(sqlite3.Connection):
    """A connection on a full disk, as SQLite 3.40 meets it (checked on a full tmpfs): the
    WAL index (-shm) a read needs cannot be made, SQLITE_IOERR_SHMSIZE."""

    def execute(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
        e = sqlite3.OperationalError("disk I/O error")
        e.sqlite_errorcode = sqlite3.SQLITE_IOERR | (19 << 8)  # type: ignore[attr-defined]
        e.sqlite_errorname = "SQLITE_IOERR_SHMSIZE"  # type: ignore[attr-defined]
        raise e


def test_a_store_on_a_full_disk_is_read_and_writing_says_the_disk_is_full(
        store_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening a WAL store makes its -shm file, which a full disk refuses: the store is read
    without it (immutable: no log pending), and a write says the disk is full."""
    real = sqlite3.connect

    def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if not kwargs.get("uri"):  # the usual way in needs the -shm file
            kwargs["factory"] = _NoRoomForShm
        return real(database, *args, **kwargs)

    ids = _ids(store_copy)
    monkeypatch.setattr(sqlite3, "connect", connect)
    monkeypatch.setattr(store_module, "_free_bytes", lambda path: 0)
    at = ["--results-dir", str(store_copy)]
    r = runner.invoke(app, ["runs", *at])
    assert r.exit_code == 0 and all(i in r.stdout for i in ids), r.output
    r = runner.invoke(app, ["show", ids[0], *at])
    assert r.exit_code == 0 and "weight histograms" in r.stdout, r.output
    assert _one_line(runner.invoke(app, ["rm", ids[0], *at])) == (
        f"error: cannot write to {store_copy}/runs.sqlite: the disk is full (disk I/O error); "
        "nothing stored was changed; free some space, then run it again")
    monkeypatch.undo()
    assert _ids(store_copy) == ids


def test_a_full_disk_under_the_cli_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    _cap_pages(monkeypatch)
    line = _one_line(runner.invoke(app, ["run", *FAST, "--pruner", "rand"]))
    assert "the disk is full" in line and "not a prunetui" not in line


def test_a_full_disk_under_export_leaves_nothing(
        store_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Path.write_bytes
    calls = []

    def full(self: Path, data: Any) -> int:
        calls.append(self)
        if len(calls) == 2:  # the second figure
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    out = tmp_path / "out"
    line = _one_line(runner.invoke(app, [*EXPORT, "--results-dir", str(store_copy),
                                         "--out", str(out)]))
    assert line == f"error: cannot write the report to {out}: No space left on device"
    assert list(tmp_path.iterdir()) == [store_copy]  # no report folder, no hidden one


# 2. corruption

def test_a_corrupt_store_is_refused_with_how_to_recover_and_never_written(
        tmp_path: Path) -> None:
    _fill(tmp_path, 60)
    data = _garble(tmp_path / "runs.sqlite")
    with pytest.raises(StoreError) as e:
        Store(tmp_path).start_run({**CFG, "seed": 999}, "ffffffffff")
    msg = str(e.value)
    assert msg.startswith(f"results store {tmp_path}/runs.sqlite is corrupt (quick_check: ")
    assert "nothing is written to a corrupt store" in msg and ".recover" in msg
    assert "\n" not in msg
    assert (tmp_path / "runs.sqlite").read_bytes() == data  # not a byte written
    assert not (tmp_path / "runs.sqlite-wal").exists() or \
        (tmp_path / "runs.sqlite-wal").stat().st_size == 0
    # Reads that meet the damage fail with the same line.
    for args in (["runs"], ["export"], ["rm", "0000000001"]):
        line = _one_line(runner.invoke(app, [*args, "--results-dir", str(tmp_path)]))
        assert line == f"error: {msg}", args
    assert (tmp_path / "runs.sqlite").read_bytes() == data


def _recover_works() -> bool:
    """Whether the sqlite3 shell here has a working .recover (Debian's 3.40.1 build links a
    libsqlite3 without the sqlite_dbpage table it needs: 'SQL logic error')."""
    return shutil.which("sqlite3") is not None and subprocess.run(
        ["sqlite3", ":memory:", "CREATE TABLE t(x)", ".recover"], capture_output=True,
    ).returncode == 0


@pytest.mark.skipif(not _recover_works(), reason="needs an sqlite3 shell whose .recover works")
def test_the_recovery_a_corrupt_store_suggests_works(tmp_path: Path) -> None:
    _fill(tmp_path, 60)
    _garble(tmp_path / "runs.sqlite")
    with pytest.raises(StoreError) as e:
        Store(tmp_path).start_run(CFG, "ffffffffff")
    steps = re.findall(r"`([^`]+)`", str(e.value))
    assert len(steps) == 2
    subprocess.run(steps[0], shell=True, cwd=tmp_path, check=True)
    (tmp_path / "runs.sqlite").rename(tmp_path / "aside.sqlite")
    subprocess.run(steps[1], shell=True, cwd=tmp_path, check=True)
    s = Store(tmp_path)  # a sound store with the runs that could be read
    s.start_run({**CFG, "seed": 999}, "ffffffffff")
    assert 0 < len(s.query()) <= 61 and s.integrity_check() == "ok"


# 3. schema version

def test_a_schema_version_that_is_no_integer_is_one_line(tmp_path: Path) -> None:
    Store(tmp_path).start_run(CFG, "0123456789")
    with sqlite3.connect(tmp_path / "runs.sqlite") as con:
        con.execute("UPDATE meta SET value='1.x' WHERE key='schema_version'")
    con.close()
    line = _one_line(runner.invoke(app, ["runs", "--results-dir", str(tmp_path)]))
    assert line == (f"error: {tmp_path}/runs.sqlite has schema_version '1.x' in its meta "
                    "table, not an integer: it is damaged, or was not written by prunetui; "
                    "it was left as it is: pass --results-dir DIR to use another folder")


# 4. one unreadable row

def test_a_row_with_corrupt_json_is_named_and_skipped(store_copy: Path) -> None:
    bad_config, bad_result = _ids(store_copy)
    with sqlite3.connect(store_copy / "runs.sqlite") as con:
        con.execute("UPDATE runs SET config='{\"model\": \"fc\"' WHERE run_id=?", (bad_config,))
        con.execute("UPDATE runs SET result='[1, 2]' WHERE run_id=?", (bad_result,))
        con.execute("INSERT INTO runs(run_id, model, dataset, pruner, compression, seed, config,"
                    " status, created, updated) SELECT 'aaaaaaaaaa', model, dataset, pruner, "
                    "compression, seed+1, config, 'failed', created, updated FROM runs "
                    "WHERE run_id=?", (bad_result,))
    con.close()
    s = Store(store_copy)
    assert [r.run_id for r in s.query()] == ["aaaaaaaaaa"]
    assert sorted(s.unreadable) == [bad_config, bad_result]
    assert list(s.states([bad_config, bad_result, "aaaaaaaaaa", "ffffffffff"])) == ["aaaaaaaaaa"]
    assert sorted(s.unreadable) == [bad_config, bad_result]
    warning = (f"warning: skipped 2 unreadable runs (corrupt JSON in the store): "
               f"{', '.join(sorted([bad_config, bad_result]))}; `prunetui show ID` says what "
               "is wrong, `prunetui rm ID` removes it")
    at = ["--results-dir", str(store_copy)]
    r = runner.invoke(app, ["runs", *at])
    assert r.exit_code == 0 and "aaaaaaaaaa" in r.stdout and r.stderr.strip() == warning
    r = runner.invoke(app, ["runs", "--json", *at])
    assert [d["run_id"] for d in json.loads(r.stdout)] == ["aaaaaaaaaa"]
    r = runner.invoke(app, [*EXPORT, "--format", "csv", *at])
    assert r.exit_code == 0 and warning in r.stderr.splitlines()
    assert _one_line(runner.invoke(app, ["show", bad_config[:5], *at])) == (
        f"error: run {bad_config} is unreadable: its stored config is not JSON (Expecting ',' "
        f"delimiter: line 1 column 15 (char 14)); `prunetui rm {bad_config}` removes it (its "
        "config can then be run again)")
    assert "its stored result is a JSON list, not an object" in _one_line(
        runner.invoke(app, ["show", bad_result, *at]))
    r = runner.invoke(app, ["gc", *at])  # their artifacts are a run's, not orphans
    assert r.exit_code == 0 and (store_copy / bad_config).exists()
    r = runner.invoke(app, ["rm", bad_config, bad_result, *at])
    assert r.exit_code == 0 and not (store_copy / bad_config).exists()
    assert [r.run_id for r in s.query()] == ["aaaaaaaaaa"] and s.unreadable == {}


# 5. another program's database

def _foreign(db: Path, sql: str) -> bytes:
    con = sqlite3.connect(db)
    con.executescript(sql)
    con.close()
    return db.read_bytes()


@pytest.mark.parametrize(("sql", "tables"), [
    ("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'a')",
     "users"),
    ("CREATE TABLE runs(id INTEGER PRIMARY KEY, name TEXT)", "runs"),  # ours in name only
    ("CREATE TABLE runs(run_id TEXT, config TEXT, status TEXT); CREATE TABLE notes(x)", "notes"),
])
def test_another_programs_database_is_refused_not_extended(
        tmp_path: Path, sql: str, tables: str) -> None:
    data = _foreign(tmp_path / "runs.sqlite", sql)
    for args in (["runs"], ["run", *FAST, "--pruner", "rand"]):
        line = _one_line(runner.invoke(app, [*args, "--results-dir", str(tmp_path)]))
        assert line == (f"error: {tmp_path}/runs.sqlite is an SQLite database of another "
                        f"program (tables: {tables}), not a prunetui results store; it was left "
                        "as it is: pass --results-dir DIR to use another folder")
    assert (tmp_path / "runs.sqlite").read_bytes() == data


@pytest.mark.parametrize("sql", [
    "",  # an empty file: creation interrupted before anything was written
    "CREATE TABLE runs(run_id TEXT PRIMARY KEY, model TEXT, dataset TEXT, pruner TEXT, "
    "compression REAL, seed INTEGER, config TEXT, status TEXT, error TEXT, created REAL, "
    "updated REAL, finished REAL, epoch INTEGER DEFAULT 0, top1 REAL, top5 REAL, density REAL, "
    "flop_ratio REAL, seconds REAL, collapsed INTEGER DEFAULT 0, result TEXT)",
])
def test_an_empty_or_half_made_store_is_brought_forward(tmp_path: Path, sql: str) -> None:
    (tmp_path / "runs.sqlite").write_bytes(b"")
    if sql:
        _foreign(tmp_path / "runs.sqlite", sql)
    s = Store(tmp_path)
    s.start_run(CFG, "0123456789", "sw")
    assert s.get("0123456789") is not None and s.sweeps() == [("sw", 1)]


# 6. sizes: any number of ids, a bounded prefix

def test_query_takes_any_number_of_run_ids(tmp_path: Path) -> None:
    """More ids than SQLite's variable limit (250,000 in most builds, 32,766 in some)."""
    _fill(tmp_path, 3)
    wanted = [f"{i:010x}" for i in range(2, 300_002)] + ["0000000000"]
    rows = Store(tmp_path).query(run_ids=wanted)
    assert [r.run_id for r in rows] == ["0000000000", "0000000002"]
    assert sorted(Store(tmp_path).states(wanted)) == ["0000000000", "0000000002"]
    assert [r.run_id for r in Store(tmp_path).query(run_ids=wanted, model="vgg16")] == []
    assert Store(tmp_path).query(run_ids=[]) == []


def test_states_say_what_query_says_without_decoding_rows(store_copy: Path) -> None:
    s = Store(store_copy)
    done, stopped = _ids(store_copy)
    with s.run_lock(stopped):
        s.start_run(s.get(stopped).config, stopped)  # type: ignore[union-attr]
        assert s.states([stopped])[stopped].status == "running"
    # Its process is gone now (the lock is free): interrupted, as query() reads it.
    rows = {r.run_id: r for r in s.query()}
    states = s.states([done, stopped, "ffffffffff"])
    assert sorted(states) == [done, stopped]
    for rid, st in states.items():
        row = rows[rid]
        assert (st.status, st.epoch, st.dataset) == (row.status, row.epoch, row.dataset)
        assert row.result is not None and st.data == row.result.data and st.data["digest"]
    assert states[stopped].status == "interrupted"


def test_a_huge_run_id_prefix_is_one_short_line(tmp_path: Path) -> None:
    _fill(tmp_path, 1)
    before = (tmp_path / "runs.sqlite").read_bytes()
    for command in ("show", "rm"):
        for prefix in ("0" * 100_000, "z" * 100_000, "0000000000a"):
            line = _one_line(runner.invoke(app, [command, prefix, "--results-dir",
                                                 str(tmp_path)]))
            assert line.startswith("error: invalid run id '") and len(line) < 200, line[:300]
            assert "run ids are 10 hex digits" in line
    assert (tmp_path / "runs.sqlite").read_bytes() == before  # rm removed nothing


# 7. artifacts

def _histograms_file(root: Path, run_id: str) -> Path:
    return root / run_id / "histograms.json"


@pytest.mark.parametrize(("content", "problem"), [
    (None, "is missing"),
    ("[{\"layer\": ", "are corrupt (Expecting value: line 1 column 12 (char 11))"),
    ("[1, 2]", "are corrupt (entry 0 is not a layer's histogram)"),
    ("[{\"layer\": \"fc1\", \"edges\": [0, 1, 2], \"fractions\": [0.5]}]",
     "are corrupt (layer 'fc1' does not have one fraction per bin)"),
    ("[{\"layer\": \"a\", \"edges\": [0, 1], \"fractions\": [0.5]}, "
     "{\"layer\": \"b\", \"edges\": [0, 2], \"fractions\": [0.5]}]",
     "are corrupt (layer 'b' has other bin edges than layer 'a')"),
])
def test_missing_or_corrupt_histograms_are_one_line_naming_the_run(
        store_copy: Path, tmp_path: Path, content: str | None, problem: str) -> None:
    run_id = _ids(store_copy)[0]
    path = _histograms_file(store_copy, run_id)
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    with pytest.raises(StoreError, match=re.escape(problem)) as e:
        Store(store_copy).histograms(run_id)
    assert f"run {run_id}" in str(e.value) and "run its config again with --force" in str(e.value)
    at = ["--results-dir", str(store_copy)]
    r = runner.invoke(app, ["show", run_id, *at])  # shows the rest, warns once
    assert r.exit_code == 0 and "Per-layer" in r.stdout
    assert r.stderr == f"warning: {e.value}\n"
    out = tmp_path / "out"
    assert _one_line(runner.invoke(app, [*EXPORT, "--out", str(out), *at])) == \
        f"error: {e.value}"
    assert not out.exists()
    r = runner.invoke(app, [*EXPORT, "--format", "csv", "--out", str(out), *at])
    assert r.exit_code == 0  # no figures, no histograms needed


def test_gc_removes_temp_files_of_killed_runs_but_not_under_a_live_one(
        store_copy: Path) -> None:
    done, live = _ids(store_copy)
    left = [store_copy / done / ".resume.pt.k3j9x0ab", store_copy / done / ".final.pt.a_b1c2d3"]
    busy = store_copy / live / ".resume.pt.zz99yy88"
    kept = [store_copy / done / "notes.txt", store_copy / done / ".resume.pt"]
    for p in [*left, busy, *kept]:
        p.write_bytes(b"part")
    orphan_live = store_copy / "0123456789"  # a run that locked its folder, no row yet
    s = Store(store_copy)
    with s.run_lock(live), s.run_lock("0123456789"):
        r = runner.invoke(app, ["gc", "--results-dir", str(store_copy)])
    assert r.exit_code == 0, r.output
    assert r.stdout.split() == ["removed", "0", "orphaned", "artifact", "folders", "removed",
                                "2", "temporary", "files", "left", "by", "killed", "runs:",
                                *map(str, sorted(left))]
    assert not any(p.exists() for p in left)
    assert busy.exists() and all(p.exists() for p in kept) and orphan_live.exists()
    r = runner.invoke(app, ["gc", "--results-dir", str(store_copy)])  # the run is gone now
    assert not busy.exists() and not orphan_live.exists()


def test_a_killed_export_leaves_nothing_that_needs_force(
        store_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prunetui.core import figures

    real = figures.histogram_png
    drawn: list[str] = []

    def killed(hists: Any, title: str, *scales: Any) -> bytes:
        drawn.append(title)
        if len(drawn) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second figure is drawn
        return real(hists, title, *scales)

    monkeypatch.setattr(figures, "histogram_png", killed)
    at = ["--results-dir", str(store_copy)]
    out = tmp_path / "out"
    for existing in (False, True):
        if existing:
            out.mkdir()
            (out / "mine.txt").write_text("kept")
        drawn.clear()
        r = runner.invoke(app, [*EXPORT, "--out", str(out), *at])
        assert r.exit_code == 130 and len(drawn) == 2
        assert sorted(p.name for p in tmp_path.iterdir()) == (["out", "store"] if existing
                                                              else ["store"])
        assert not existing or [p.name for p in out.iterdir()] == ["mine.txt"]
    monkeypatch.undo()
    # A SIGKILL leaves the hidden folder; the next export removes it and needs no --force.
    stale = out / ".export-deadbeef"
    stale.mkdir()
    (stale / "weight_hist_mag.png").write_bytes(b"part")
    r = runner.invoke(app, [*EXPORT, "--out", str(out), *at])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == [
        "accuracy.png", "layer_density.png", "mine.txt", "report.md", "weight_hist_mag.png",
        "weight_hist_rand.png"]
    new = tmp_path / "new"
    r = runner.invoke(app, [*EXPORT, "--out", str(new), *at])
    assert r.exit_code == 0 and sorted(p.name for p in tmp_path.iterdir()) == [
        "new", "out", "store"]
    assert oct(new.stat().st_mode & 0o777) == oct(0o777 & ~_umask())
    r = runner.invoke(app, [*EXPORT, "--out", str(new), *at])
    assert _one_line(r).endswith("report.md exists; pass --force to overwrite it")
    assert runner.invoke(app, [*EXPORT, "--out", str(new), "--force", *at]).exit_code == 0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

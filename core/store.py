"""The result store: SQLite (WAL) tables for runs, epochs and layers, artifacts beside it.

Layout of a results dir::

    results/runs.sqlite           runs, epochs, layers, sweep membership, schema version
    results/<run_id>/final.pt     final weights and masks (state_dict, loadable weights_only)
    results/<run_id>/resume.pt    last epoch checkpoint of an unfinished run
    results/<run_id>/histograms.json

Every write is one transaction on a fresh connection, so a crash leaves the old or the new
state, never half, and several processes can write at once (SQLite serialises writers; a busy
timeout makes them wait instead of failing). Artifacts are written to a temporary file and
renamed into place. This module does not import torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from prunetui.core import faults
from prunetui.core.errors import ConfigError, RunHeldElsewhere, StoreError
from prunetui.core.run.result import Epoch, Layer, RunResult, Structure
from prunetui.core.status import STORED, STORED_ORDER, RunStatus

SCHEMA_VERSION = 1
DB_NAME = "runs.sqlite"
LOCK_NAME = ".lock"  # in each run's folder, held while the run executes
# Statuses a run can be in. Only 'finished' counts as done; every other one is redone or
# resumed by the next request for the same config.
STATUSES = tuple(str(s) for s in STORED_ORDER)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    model TEXT NOT NULL, dataset TEXT NOT NULL, pruner TEXT NOT NULL,
    compression REAL NOT NULL, seed INTEGER NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    created REAL NOT NULL, updated REAL NOT NULL, finished REAL,
    epoch INTEGER NOT NULL DEFAULT 0,
    top1 REAL, top5 REAL, density REAL, flop_ratio REAL, seconds REAL,
    collapsed INTEGER NOT NULL DEFAULT 0,
    result TEXT
);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    phase TEXT NOT NULL, epoch INTEGER NOT NULL,
    train_loss REAL, test_loss REAL, top1 REAL, top5 REAL, lr REAL, seconds REAL,
    PRIMARY KEY (run_id, phase, epoch)
);
CREATE TABLE IF NOT EXISTS layers (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    idx INTEGER NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL, shape TEXT NOT NULL,
    params INTEGER NOT NULL, remaining INTEGER NOT NULL, density REAL NOT NULL,
    flops_dense INTEGER NOT NULL, flops_pruned INTEGER NOT NULL,
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS sweep_runs (
    sweep TEXT NOT NULL,
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    PRIMARY KEY (sweep, run_id)
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs(status);
"""


def default_results_dir() -> Path:
    """``$PRUNETUI_RESULTS`` if set, else ``./results``."""
    return Path(os.environ.get("PRUNETUI_RESULTS", "results"))


@dataclasses.dataclass(frozen=True)
class RunRow:
    """One row of the runs table, config and result decoded."""

    run_id: str
    model: str
    dataset: str
    pruner: str
    compression: float
    seed: int
    config: dict[str, Any]
    status: RunStatus
    error: str | None
    created: float
    updated: float
    finished: float | None
    epoch: int
    top1: float | None
    top5: float | None
    density: float | None
    flop_ratio: float | None
    seconds: float | None
    collapsed: bool
    result: RunResult | None

    @classmethod
    def from_sql(cls, row: sqlite3.Row) -> RunRow:
        d = dict(row)
        d["config"] = json.loads(d["config"])
        d["result"] = RunResult.from_dict(json.loads(d["result"])) if d["result"] else None
        d["collapsed"] = bool(d["collapsed"])
        d["status"] = RunStatus(d["status"])
        return cls(**d)


def failed_attempt_status(before: RunRow | None, after: RunRow | None,
                          default: RunStatus) -> RunStatus:
    """The status a run attempt that raised ended with, from its stored row ``before`` and
    ``after`` the attempt. If the attempt wrote the row, its status (interrupted, diverged,
    oom, ...). If not, the engine refused the run before writing anything (a stored result or
    a checkpoint from other data, an unreadable checkpoint) and the row's status, perhaps
    "finished", is an earlier attempt's: ``default``. A stored divergence refused as such
    is still "diverged"."""
    if after is None or after.status in (RunStatus.RUNNING, RunStatus.FINISHED):
        return default
    if wrote_row(before, after) or after.status == RunStatus.DIVERGED:
        return after.status
    return default


def wrote_row(before: RunRow | None, after: RunRow | None) -> bool:
    """Whether a run attempt wrote the run's row, from the row ``before`` and ``after`` it
    (an attempt the engine refused leaves it as it was)."""
    return after is not None and (before is None or after.updated != before.updated)


class Store:
    """A results dir: the SQLite database plus one artifact folder per run."""

    def __init__(self, root: Path | str | None = None, create: bool = True) -> None:
        self.root = Path(root) if root is not None else default_results_dir()
        self.db_path = self.root / DB_NAME
        if self.root.exists() and not self.root.is_dir():
            # Every command would otherwise read it as an empty store ("0 runs").
            raise StoreError(f"results dir {self.root} is a file; pass --results-dir DIR")
        if not create and not self.db_path.exists():
            raise StoreError(f"no results store at {self.db_path}; run something first")
        self._ready = False
        if self.db_path.exists():
            self._open_existing()

    # -- connection and schema -------------------------------------------------------------

    def _ensure(self) -> None:
        if self._ready:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create results dir {self.root}: {e.strerror}") from None
        with self._tx() as con:
            # executescript() would commit on its own; run the statements inside our tx.
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    con.execute(stmt)
            con.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        self._ready = True

    def _open_existing(self) -> None:
        try:
            con = self._connect()
            try:
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
                version = None
                if "meta" in tables:
                    got = con.execute(
                        "SELECT value FROM meta WHERE key='schema_version'"
                    ).fetchone()
                    version = int(got[0]) if got else None
            finally:
                con.close()
        except sqlite3.DatabaseError as e:
            raise StoreError(
                f"{self.db_path} is not a prunetui results store ({e}); move it away or pass "
                "--results-dir to use another one"
            ) from None
        if version is not None and version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.db_path} has schema version {version}, newer than this prunetui "
                f"understands ({SCHEMA_VERSION}); upgrade prunetui"
            )
        if version == SCHEMA_VERSION:
            self._ready = True  # current: reading it must not write (read-only dirs, speed)
        else:
            # Older or partially created stores are brought forward by the idempotent schema.
            self._migrate(version)

    def _migrate(self, version: int | None) -> None:
        """Bring an older store forward. Version 1 is the first schema; later versions add
        steps here, each in its own transaction."""
        self._ensure()

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.db_path, timeout=60.0, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("PRAGMA busy_timeout=60000")
        return con

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it commits, or none of it."""
        try:
            con = self._connect()
        except sqlite3.Error as e:
            raise StoreError(f"cannot open {self.db_path}: {e}") from None
        try:
            con.execute("BEGIN IMMEDIATE")
            yield con
            con.execute("COMMIT")
            faults.point("commit")
        except sqlite3.OperationalError as e:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
            # Disk full, read-only file or dir, lock held too long: nothing was committed.
            raise StoreError(f"cannot write to {self.db_path}: {e}; nothing stored was "
                             "changed") from None
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        self._ensure()
        con = self._connect()
        try:
            yield con
        finally:
            con.close()

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        self._ensure()
        return self._tx()

    def check_writable(self) -> None:
        """Raise ``StoreError`` unless runs can be stored here, found out without writing
        (a sweep checks once before it starts, rather than failing every run)."""
        existing = next(p for p in [self.root, *self.root.parents] if p.exists())
        for path in (existing, self.db_path):
            # access() also reports a read-only file system, which permission bits do not.
            if path.exists() and not os.access(path, os.W_OK):
                raise StoreError(f"cannot write results under {self.root}: {path} is not "
                                 "writable; pass --results-dir DIR")
        if existing != self.root:
            # Folders still to make: access() cannot tell whether they can be (a file on the
            # path, /proc), so make them and take them away again.
            missing = [p for p in [self.root, *self.root.parents] if not p.exists()]
            try:
                self.root.mkdir(parents=True)
            except OSError as e:
                raise StoreError(f"cannot write results under {self.root}: "
                                 f"{e.strerror or e}; pass --results-dir DIR") from None
            finally:  # a failure deep down may have made the folders above it
                for folder in missing:  # deepest first
                    with contextlib.suppress(OSError):
                        folder.rmdir()

    # -- runs ------------------------------------------------------------------------------

    def run_dir(self, run_id: str) -> Path:
        """The artifact folder of a run (not created)."""
        return self.root / run_id

    def get(self, run_id: str) -> RunRow | None:
        """The stored run with exactly this id, or None."""
        if not self.db_path.exists():
            return None
        with self._read() as con:
            row = con.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return self._alive(RunRow.from_sql(row)) if row else None

    def resolve(self, prefix: str) -> RunRow:
        """The one run whose id starts with ``prefix``; ConfigError when none or several."""
        if not prefix or not all(c in "0123456789abcdef" for c in prefix):
            raise ConfigError(f"invalid run id {prefix!r}; run ids are hex, see `prunetui runs`")
        rows = self.query(id_prefix=prefix)
        if not rows:
            raise ConfigError(f"no stored run matches {prefix!r}; see `prunetui runs`")
        if len(rows) > 1:
            ids = ", ".join(r.run_id for r in rows[:5]) + ("…" if len(rows) > 5 else "")
            raise ConfigError(f"run id prefix {prefix!r} matches {len(rows)} runs ({ids}); "
                              "give more characters")
        return rows[0]

    def query(
        self,
        *,
        id_prefix: str | None = None,
        model: str | None = None,
        dataset: str | None = None,
        pruner: str | None = None,
        status: str | None = None,
        sweep: str | None = None,
        run_ids: list[str] | None = None,
    ) -> list[RunRow]:
        """Stored runs matching every given filter, oldest first."""
        if not self.db_path.exists():
            return []
        where, args = [], []
        for col, val in (("model", model), ("dataset", dataset), ("pruner", pruner)):
            if val is not None:
                where.append(f"{col}=?")
                args.append(val)
        if id_prefix:
            where.append("run_id LIKE ?")
            args.append(id_prefix + "%")
        if sweep is not None:
            where.append("run_id IN (SELECT run_id FROM sweep_runs WHERE sweep=?)")
            args.append(sweep)
        if run_ids is not None:
            where.append(f"run_id IN ({','.join('?' * len(run_ids))})")
            args.extend(run_ids)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        with self._read() as con:
            rows = con.execute(sql + " ORDER BY created, run_id", args).fetchall()
        runs = [self._alive(RunRow.from_sql(r)) for r in rows]
        # After _alive, not in SQL: a dead 'running' row is an interrupted one.
        return runs if status is None else [r for r in runs if r.status == status]

    def sweeps(self) -> list[tuple[str, int]]:
        """(sweep name, number of runs) for every sweep in the store."""
        if not self.db_path.exists():
            return []
        with self._read() as con:
            rows = con.execute(
                "SELECT sweep, COUNT(*) FROM sweep_runs GROUP BY sweep ORDER BY sweep"
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    @contextlib.contextmanager
    def run_lock(self, run_id: str,
                 waiting: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold an exclusive lock on a run while it executes, so two processes sharing a
        store never run the same config at once. The OS drops the lock when the holder dies,
        which is how a 'running' row left by a killed process is told apart (``_alive``).

        Held by another process: ``RunHeldElsewhere`` at once, or with ``waiting`` given, wait
        for it, calling ``waiting()`` a few times a second (it may raise to stop waiting)."""
        run_dir = self.run_dir(run_id)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise StoreError(f"cannot write results under {run_dir}: {e.strerror or e}") from None
        try:
            # A few quick tries first: a reader testing the lock (``_alive``) holds it for a
            # moment.
            tries = 0
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    tries += 1
                    if tries >= 5:
                        if waiting is None:
                            raise RunHeldElsewhere(run_id) from None
                        waiting()
                    time.sleep(0.02 if tries < 5 else 0.2)
            yield
        finally:
            os.close(fd)

    def _alive(self, row: RunRow) -> RunRow:
        """``row``, or for a 'running' row whose process is gone (its lock file is there and
        nobody holds it: killed, or the machine went down), the same row as 'interrupted'.
        Not written back: reading a store never changes it."""
        if row.status != RunStatus.RUNNING:
            return row
        try:
            fd = os.open(self.run_dir(row.run_id) / LOCK_NAME, os.O_RDONLY)
        except OSError:
            # No lock here (a Ray task locks its own checkpoint dir): trust the row. A lock
            # file left by an earlier local attempt would make such a row read as
            # interrupted while its Ray task runs, when --checkpoint-dir is elsewhere.
            return row
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return row  # held: the run is live
        finally:
            os.close(fd)  # also drops the shared lock, if taken
        return dataclasses.replace(
            row, status=RunStatus.INTERRUPTED,
            error="its process ended without storing a status (killed, or the machine went "
                  "down); run it again to resume")

    def start_run(self, config: dict[str, Any], run_id: str, sweep: str = "") -> None:
        """Record a run as running (new, or an unfinished one being resumed)."""
        now = time.time()
        with self._write() as con:
            con.execute(
                """INSERT INTO runs(run_id, model, dataset, pruner, compression, seed, config,
                       status, created, updated)
                   VALUES (?,?,?,?,?,?,?, 'running', ?, ?)
                   ON CONFLICT(run_id) DO UPDATE SET status='running', error=NULL,
                       updated=excluded.updated, config=excluded.config""",
                (run_id, config["model"], config["dataset"], config["pruner"],
                 config["compression"], config["seed"], json.dumps(config), now, now),
            )
            if sweep:
                con.execute("INSERT OR IGNORE INTO sweep_runs VALUES (?, ?)", (sweep, run_id))

    def add_to_sweep(self, sweep: str, run_ids: list[str]) -> None:
        """Record that these (stored) runs belong to ``sweep``."""
        with self._write() as con:
            con.executemany("INSERT OR IGNORE INTO sweep_runs SELECT ?, run_id FROM runs "
                            "WHERE run_id=?", [(sweep, r) for r in run_ids])

    def record_epoch(self, run_id: str, row: dict[str, Any], train_epoch: int) -> None:
        """Store one epoch's metrics and the run's progress in one transaction."""
        with self._write() as con:
            con.execute(
                """INSERT OR REPLACE INTO epochs(run_id, phase, epoch, train_loss, test_loss,
                       top1, top5, lr, seconds) VALUES (?,?,?,?,?,?,?,?,?)""",
                (run_id, row["phase"], row["epoch"], row["train_loss"], row["test_loss"],
                 row["top1"], row["top5"], row["lr"], row["seconds"]),
            )
            con.execute("UPDATE runs SET epoch=?, updated=? WHERE run_id=?",
                        (train_epoch, time.time(), run_id))

    def truncate_epochs(self, run_id: str, phase: str, after: int) -> None:
        """Forget epochs past a checkpoint (they are recomputed when the run resumes), and
        set the run's progress to it; ``("pretrain", 0)``: every epoch (a fresh start)."""
        with self._write() as con:
            con.execute("DELETE FROM epochs WHERE run_id=? AND phase=? AND epoch>?",
                        (run_id, phase, after))
            if phase == "pretrain":
                con.execute("DELETE FROM epochs WHERE run_id=? AND phase='train'", (run_id,))
            con.execute("UPDATE runs SET epoch=? WHERE run_id=?",
                        (after if phase == "train" else 0, run_id))

    def epochs(self, run_id: str) -> list[Epoch]:
        """The run's epoch rows, pre-training first."""
        with self._read() as con:
            rows = con.execute(
                "SELECT phase, epoch, train_loss, test_loss, top1, top5, lr, seconds FROM epochs"
                " WHERE run_id=? ORDER BY phase='train', epoch", (run_id,)).fetchall()
        return [Epoch.from_dict(dict(r)) for r in rows]

    def layers(self, run_id: str) -> list[Layer]:
        """The run's per-layer rows in module order."""
        with self._read() as con:
            rows = con.execute("SELECT * FROM layers WHERE run_id=? ORDER BY idx",
                               (run_id,)).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["shape"] = json.loads(d["shape"])
            out.append(Layer.from_dict(d))
        return out

    def record_pruned(self, run_id: str, structure: Structure) -> None:
        """Store what pruning left (per-layer rows, density, FLOP ratio, collapse) as soon as
        it is known, so that a run stopped while training still shows it."""
        with self._write() as con:
            self._put_layers(con, run_id, structure.layers)
            con.execute("UPDATE runs SET density=?, flop_ratio=?, collapsed=?, updated=? "
                        "WHERE run_id=?",
                        (structure.density, structure.flops.ratio,
                         int(structure.collapse.collapsed), time.time(), run_id))

    @staticmethod
    def _put_layers(con: sqlite3.Connection, run_id: str, layers: tuple[Layer, ...]) -> None:
        con.execute("DELETE FROM layers WHERE run_id=?", (run_id,))
        con.executemany(
            "INSERT INTO layers VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(run_id, i, r.name, r.kind, json.dumps(list(r.shape)), r.params, r.remaining,
              r.density, r.flops_dense, r.flops_pruned)
             for i, r in enumerate(layers)],
        )

    def finish_run(self, run_id: str, result: RunResult) -> None:
        """Store a finished run's result and per-layer rows atomically."""
        now = time.time()
        with self._write() as con:
            self._put_layers(con, run_id, result.layers)
            con.execute(
                """UPDATE runs SET status='finished', error=NULL, finished=?, updated=?,
                       top1=?, top5=?, density=?, flop_ratio=?, seconds=?, collapsed=?, result=?
                   WHERE run_id=?""",
                (now, now, result.top1, result.top5, result.density, result.flops.ratio,
                 result.seconds, int(result.collapse.collapsed), json.dumps(result.to_dict()),
                 run_id),
            )

    def fail_run(self, run_id: str, status: RunStatus, error: str) -> None:
        """Mark a run as ended without a result (failed, cancelled, interrupted, …)."""
        assert status in STORED and status != RunStatus.FINISHED, status
        with self._write() as con:
            con.execute("UPDATE runs SET status=?, error=?, updated=? WHERE run_id=?",
                        (str(status), error, time.time(), run_id))

    def remove(self, run_ids: list[str]) -> None:
        """Delete runs (rows and artifact folders); refuses (``StoreError``) if any of them is
        running, since its process would go on writing to a run that is gone."""
        running = [r.run_id for r in self.query(run_ids=run_ids, status=RunStatus.RUNNING)]
        if running:
            raise StoreError(f"run {', '.join(running)} is running right now; stop it first "
                             "(Ctrl-C where it runs, or c in the app), then remove it")
        with self._write() as con:
            con.executemany("DELETE FROM runs WHERE run_id=?", [(r,) for r in run_ids])
        for r in run_ids:
            _rmtree(self.run_dir(r))

    def orphan_dirs(self) -> list[Path]:
        """Artifact folders whose run is no longer in the store."""
        if not self.root.exists():
            return []
        known = {r.run_id for r in self.query()}
        return sorted(p for p in self.root.iterdir()
                      if p.is_dir() and len(p.name) == 10 and p.name not in known
                      and all(c in "0123456789abcdef" for c in p.name))

    def integrity_check(self) -> str:
        """SQLite's own verdict on the database file ('ok' when sound)."""
        with self._read() as con:
            return str(con.execute("PRAGMA integrity_check").fetchone()[0])


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old or the new content, never a part."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file through ``write(f)`` so that readers see the old or the new content, never
    a part (``atomic_write_bytes`` for content that is not all in memory at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp makes the file 0600; give it the mode the user's umask asks for instead.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        faults.point("write")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Text variant of ``atomic_write_bytes``."""
    atomic_write_bytes(path, text.encode())


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)

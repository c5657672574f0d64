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

What can go wrong is one ``StoreError`` line that says what it is, and nothing is written
into a store that is not sound:

- a read-only results dir is read (SQLite's ``mode=ro``, or ``immutable`` when no writer's
  log is pending); writing to it, or to a full disk, names the folder or the disk;
- a corrupt ``runs.sqlite`` (``PRAGMA quick_check`` before a process's first write, and
  after any unexpected SQLite error) is refused with how to recover its runs;
- an SQLite file of another program is refused, not extended; a schema version that is no
  integer is refused;
- a run whose stored JSON cannot be decoded is skipped by ``query`` and listed in
  ``Store.unreadable``; asked for by id, it is an ``UnreadableRun`` naming it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import itertools
import json
import math
import os
import re
import shlex
import sqlite3
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from prunetui.core import faults
from prunetui.core.errors import ConfigError, RunHeldElsewhere, StoreError, shown_value
from prunetui.core.figures import load_histograms
from prunetui.core.run.result import Epoch, Layer, RunResult, Structure
from prunetui.core.status import STORED, STORED_ORDER, RunStatus

SCHEMA_VERSION = 1
DB_NAME = "runs.sqlite"
LOCK_NAME = ".lock"  # in each run's folder, held while the run executes
HISTOGRAMS = "histograms.json"  # in each finished run's folder
RUN_ID_LEN = 10  # RunConfig.run_id: the first 10 hex digits of a sha256
# Statuses a run can be in. Only 'finished' counts as done; every other one is redone or
# resumed by the next request for the same config.
STATUSES = tuple(str(s) for s in STORED_ORDER)
# The tables this module makes and the columns it relies on: a database holding other tables
# and no schema version is another program's.
_COLUMNS = {"meta": {"key", "value"}, "runs": {"run_id", "config", "status"},
            "epochs": {"run_id", "phase", "epoch"}, "layers": {"run_id", "idx"},
            "sweep_runs": {"sweep", "run_id"}}
# atomic_write_bytes' temporary files: mkstemp(prefix=".NAME.") appends 8 characters.
_TEMP_FILE = re.compile(r"\.(.+)\.[a-z0-9_]{8}")
# Databases PRAGMA quick_check found sound in this process, by (device, inode). The check reads
# the whole file (about 1.5 s per GB), so it runs before a process's first write to a store,
# not before each of a sweep's writes; an SQLite error later runs it again.
_SOUND: set[tuple[int, int]] = set()

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


class UnreadableRun(StoreError):
    """A stored run whose config or result JSON cannot be decoded (corrupt bytes, an edit)."""

    def __init__(self, run_id: str, reason: str) -> None:
        super().__init__(f"run {run_id} is unreadable: {reason}; `prunetui rm {run_id}` "
                         "removes it (its config can then be run again)")
        self.run_id = run_id
        self.reason = reason


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
        """Decode a runs row; ``UnreadableRun`` when its config or result is not a JSON
        object."""
        d = dict(row)
        for key in ("config", "result"):
            raw = d[key]
            if key == "result" and not raw:
                d[key] = None
                continue
            try:
                value = json.loads(raw)
            except (ValueError, TypeError) as e:  # TypeError: a number where text belongs
                raise UnreadableRun(d["run_id"], f"its stored {key} is not JSON "
                                                 f"({_short(str(e))})") from None
            if not isinstance(value, dict):
                raise UnreadableRun(d["run_id"], f"its stored {key} is a JSON "
                                                 f"{type(value).__name__}, not an object")
            d[key] = value
        if d["result"] is not None:
            try:
                d["result"] = RunResult.from_dict(d["result"])
            except (KeyError, TypeError, ValueError) as e:
                raise UnreadableRun(d["run_id"], "its stored result is not a result record "
                                                 f"({type(e).__name__}: {_short(str(e))})"
                                    ) from None
        # From the result where there is one: older stores set the column for an empty layer
        # that a residual shortcut gets around, which is not a collapse.
        d["collapsed"] = (d["result"].collapse.collapsed if d["result"] is not None
                          else bool(d["collapsed"]))
        d["status"] = RunStatus(d["status"])
        return cls(**d)


# The order of a run's phases: pre-training, IMP's rounds (round0, round1, ...), training.
_PHASE_RANK = ("(CASE WHEN phase='pretrain' THEN -1 WHEN phase='train' THEN 1000000 "
               "WHEN phase GLOB 'round[0-9]*' THEN CAST(substr(phase, 6) AS INTEGER) "
               "ELSE 999999 END)")


def phase_rank(phase: str) -> int:
    """Where ``phase`` comes in a run (``_PHASE_RANK`` in Python)."""
    if phase == "pretrain":
        return -1
    if phase == "train":
        return 1_000_000
    if phase.startswith("round") and phase[5:].isdigit():
        return int(phase[5:])
    return 999_999


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


@dataclasses.dataclass(frozen=True)
class RunState:
    """What a sweep needs of a stored run, read without decoding its config or result."""

    run_id: str
    status: RunStatus  # as ``_alive`` reads it: a dead 'running' row is 'interrupted'
    epoch: int
    dataset: str
    data: dict[str, Any] | None  # the result's fingerprint of the data it was trained on


@dataclasses.dataclass(frozen=True)
class Garbage:
    """What ``Store.collect_garbage`` removed."""

    folders: list[Path]  # artifact folders of runs no longer in the store
    temp_files: list[Path]  # temporary files of atomic writes whose process was killed


class Store:
    """A results dir: the SQLite database plus one artifact folder per run."""

    def __init__(self, root: Path | str | None = None, create: bool = True) -> None:
        self.root = Path(root) if root is not None else default_results_dir()
        self.db_path = self.root / DB_NAME
        # Run id -> why, for the rows the last query() skipped because their JSON is corrupt.
        self.unreadable: dict[str, str] = {}
        self._ro_uri: str | None = None  # how to read a store in a read-only folder, once met
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
        with self._reading() as con:
            tables = {r[0]: {c[1] for c in con.execute(f"PRAGMA table_info({_quoted(r[0])})")}
                      for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            raw = None
            if _COLUMNS["meta"] <= tables.get("meta", set()):
                got = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                raw = got[0] if got else None
        version = self._version(raw)
        if version is None:
            self._refuse_foreign(tables)
        elif version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.db_path} has schema version {version}, newer than this prunetui "
                f"understands ({SCHEMA_VERSION}); upgrade prunetui"
            )
        if version == SCHEMA_VERSION:
            self._ready = True  # current: reading it must not write (read-only dirs, speed)
        else:
            # Older or partially created stores are brought forward by the idempotent schema.
            self._migrate(version)

    def _version(self, raw: Any) -> int | None:
        if raw is None:
            return None
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise StoreError(
                f"{self.db_path} has schema_version {_shown(raw)} in its meta table, not an "
                "integer: it is damaged, or was not written by prunetui; it was left as it "
                "is: pass --results-dir DIR to use another folder") from None

    def _refuse_foreign(self, tables: dict[str, set[str]]) -> None:
        """Refuse another program's database: tables this module does not make, or ones of
        its names without the columns it relies on. A store whose creation was interrupted
        (empty, or some of our tables and no version yet) passes and is brought forward."""
        foreign = sorted(t for t, cols in tables.items() if not t.startswith("sqlite_")
                         and (t not in _COLUMNS or not _COLUMNS[t] <= cols))
        if foreign:
            shown = ", ".join(foreign[:5]) + (", …" if len(foreign) > 5 else "")
            raise StoreError(
                f"{self.db_path} is an SQLite database of another program (tables: {shown}), "
                "not a prunetui results store; it was left as it is: pass --results-dir DIR "
                "to use another folder")

    def _migrate(self, version: int | None) -> None:
        """Bring an older store forward. Version 1 is the first schema; later versions add
        steps here, each in its own transaction."""
        self._ensure()

    def _connect(self, write: bool = True) -> sqlite3.Connection:
        """A connection to the database; one to ``write`` with puts it in WAL mode (once,
        persistent), which a read must not do: reading never changes the file."""
        con = sqlite3.connect(self.db_path, timeout=60.0, isolation_level=None)
        try:
            con.row_factory = sqlite3.Row
            if write:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=NORMAL")
            con.execute("PRAGMA foreign_keys=ON")
            con.execute("PRAGMA busy_timeout=60000")
            # The first read opens the file, and its -shm where it is in WAL mode: fail here.
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except BaseException:
            con.close()
            raise
        return con

    def _reader(self) -> sqlite3.Connection:
        """A connection to read with: the usual one where the folder can be written (WAL
        readers share a ``-shm`` file they may have to create), else a read-only one."""
        if self._ro_uri is None:
            try:
                return self._connect(write=False)
            except sqlite3.OperationalError as e:
                name = _errname(e)
                # No right to make the -shm file here, or no room for it (a full disk).
                if not (name.startswith("SQLITE_IOERR_SHM") or (not self._writable()
                        and name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")))):
                    raise
            self._ro_uri = self._readonly_uri()
        con = sqlite3.connect(self._ro_uri, uri=True, timeout=60.0, isolation_level=None)
        con.row_factory = sqlite3.Row
        return con

    def _writable(self) -> bool:
        # access() also reports a read-only file system, which permission bits do not.
        return os.access(self.root, os.W_OK) and os.access(self.db_path, os.W_OK)

    def _readonly_uri(self) -> str:
        """How to open the database where its ``-shm`` file cannot be made (a read-only
        folder, a full disk): ``mode=ro`` works while a writer's ``-wal`` and ``-shm`` files
        are there; without them, nobody has the store open for writing, and ``immutable``
        reads the file as it is, without the locks that need the ``-shm`` file."""
        base = "file:" + urllib.parse.quote(str(self.db_path.absolute()))
        try:
            con = sqlite3.connect(base + "?mode=ro", uri=True)
            try:
                con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                con.close()
            return base + "?mode=ro"
        except sqlite3.Error:
            pass
        wal = Path(f"{self.db_path}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            # immutable would ignore the log: runs stored since its last checkpoint.
            raise StoreError(
                f"cannot read {self.db_path}: its folder is read-only (or its disk full), and "
                f"{wal.name} beside it holds changes that only a process able to write there "
                "can bring in; open the store once where it can be written, or copy the "
                "folder")
        return base + "?immutable=1"

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads; SQLite's errors come out as one ``StoreError``."""
        try:
            con = self._reader()
        except sqlite3.Error as e:
            if not _ours(e):
                raise
            raise self._error(e, writing=False) from None
        try:
            yield con
        except sqlite3.Error as e:
            if not _ours(e):
                raise
            raise self._error(e, writing=False) from None
        finally:
            con.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it commits, or none of it. The file is checked
        first (once per process, ``_SOUND``): nothing is ever written into a corrupt store."""
        try:
            con = self._connect()
        except sqlite3.Error as e:
            if not _ours(e):
                raise
            raise self._error(e, writing=True) from None
        try:
            self._check_sound(con)
            con.execute("BEGIN IMMEDIATE")
            yield con
            con.execute("COMMIT")
            faults.point("commit")
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
            if not _ours(e):  # a constraint broken, a misused API: a bug, with its traceback
                raise
            raise self._error(e, writing=True) from None
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def _check_sound(self, con: sqlite3.Connection) -> None:
        st = os.stat(self.db_path)
        if (st.st_dev, st.st_ino) in _SOUND:
            return
        problem = _quick_check(con)
        if problem is not None:
            raise self._corrupt(problem)
        _SOUND.add((st.st_dev, st.st_ino))

    def _error(self, e: sqlite3.Error, *, writing: bool) -> StoreError:
        """The one line for an SQLite error: what it means for this store, what to do."""
        name = _errname(e)
        db = self.db_path
        doing = "write to" if writing else "read"
        unchanged = "; nothing stored was changed" if writing else ""
        if name == "SQLITE_NOTADB":
            return StoreError(
                f"{db} is not a prunetui results store ({e}: not SQLite, or a store whose "
                "first page is damaged); it was left as it is: pass --results-dir DIR to use "
                "another folder")
        if name.startswith("SQLITE_FULL") or (name.startswith("SQLITE_IOERR")
                                              and _free_bytes(self.root) < 1 << 20):
            # A full disk reads as an I/O error where SQLite cannot make its -shm file.
            return StoreError(f"cannot {doing} {db}: the disk is full ({e}){unchanged}; "
                              "free some space, then run it again")
        if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")):
            if not writing:
                return StoreError(f"cannot read {db}: {e}; check that you may read it and "
                                  "its folder")
            where = (f"its folder {self.root} is read-only" if not os.access(self.root, os.W_OK)
                     else "the file is read-only" if not os.access(db, os.W_OK)
                     else "it cannot be written")
            return StoreError(f"cannot write to {db}: {where} ({e}){unchanged}; its runs can "
                              "be read, not added to: pass --results-dir DIR for a writable "
                              "folder")
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return StoreError(f"cannot {doing} {db}: another process kept it locked for a "
                              f"minute ({e}){unchanged}; try again when it is done")
        # Anything else (malformed pages, an I/O error, a missing table): ask SQLite whether
        # the file is sound, so that a corrupt store always reads the same way.
        problem = self._probe()
        if problem is not None or name.startswith("SQLITE_CORRUPT"):
            return self._corrupt(problem or str(e))
        return StoreError(f"cannot {doing} {db}: {e}{unchanged}")

    def _probe(self) -> str | None:
        """``_quick_check`` on a fresh connection; None when it cannot even be opened."""
        try:
            con = self._reader()
        except (sqlite3.Error, StoreError):
            return None
        try:
            return _quick_check(con)
        finally:
            con.close()

    def _corrupt(self, problem: str) -> StoreError:
        with contextlib.suppress(OSError):
            st = os.stat(self.db_path)
            _SOUND.discard((st.st_dev, st.st_ino))
        db = shlex.quote(str(self.db_path))
        return StoreError(
            f"results store {self.db_path} is corrupt (quick_check: {problem}); nothing is "
            "written to a corrupt store. Keep the file, it holds your runs: "
            f"`sqlite3 {db} .recover > runs.sql` saves what is readable; then move {db} aside "
            f"and `sqlite3 {db} < runs.sql` makes a sound store of it")

    def _read(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        self._ensure()
        return self._reading()

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
        """The stored run with exactly this id, or None; ``UnreadableRun`` when its stored
        JSON cannot be decoded."""
        if not self.db_path.exists():
            return None
        with self._read() as con:
            row = con.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return self._alive(RunRow.from_sql(row)) if row else None

    def resolve_id(self, prefix: str) -> str:
        """The id of the one stored run whose id starts with ``prefix``; ConfigError when
        none or several do, or when ``prefix`` cannot be part of a run id. The row is not
        decoded, so a run whose JSON is corrupt can still be named (to remove it)."""
        if (not prefix or len(prefix) > RUN_ID_LEN
                or not all(c in "0123456789abcdef" for c in prefix)):
            raise ConfigError(f"invalid run id {_shown(prefix)}; run ids are {RUN_ID_LEN} hex "
                              "digits (a unique prefix is enough), see `prunetui runs`")
        ids: list[str] = []
        count = 0
        if self.db_path.exists():
            with self._read() as con:
                # GLOB, unlike LIKE, is case-sensitive and so can use the primary key's index.
                ids = [r[0] for r in con.execute(
                    "SELECT run_id FROM runs WHERE run_id GLOB ? ORDER BY run_id LIMIT 6",
                    (prefix + "*",))]
                count = len(ids) if len(ids) <= 5 else con.execute(
                    "SELECT COUNT(*) FROM runs WHERE run_id GLOB ?", (prefix + "*",)
                ).fetchone()[0]
        if not ids:
            raise ConfigError(f"no stored run matches {prefix!r}; see `prunetui runs`")
        if count > 1:
            shown = ", ".join(ids[:5]) + ("…" if count > 5 else "")
            raise ConfigError(f"run id prefix {prefix!r} matches {count} runs ({shown}); "
                              "give more characters")
        return str(ids[0])

    def resolve(self, prefix: str) -> RunRow:
        """The one run whose id starts with ``prefix``; ConfigError when none or several,
        ``UnreadableRun`` when its stored JSON cannot be decoded."""
        run_id = self.resolve_id(prefix)
        row = self.get(run_id)
        if row is None:  # removed since
            raise ConfigError(f"no stored run matches {prefix!r}; see `prunetui runs`")
        return row

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
        """Stored runs matching every given filter, oldest first. Rows whose JSON cannot be
        decoded are left out and listed in ``self.unreadable``. ``run_ids`` may be any
        number of ids."""
        self.unreadable = {}
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
            where.append("run_id IN (SELECT run_id FROM temp.wanted)")
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        with self._read() as con:
            if run_ids is not None:
                _load_ids(con, run_ids)
            rows = con.execute(sql + " ORDER BY created, run_id", args).fetchall()
        runs = []
        for r in rows:
            try:
                runs.append(self._alive(RunRow.from_sql(r)))
            except UnreadableRun as e:
                self.unreadable[e.run_id] = e.reason
        # After _alive, not in SQL: a dead 'running' row is an interrupted one.
        return runs if status is None else [r for r in runs if r.status == status]

    def states(self, run_ids: list[str]) -> dict[str, RunState]:
        """The stored state of those of ``run_ids`` (any number) that are stored, by id. Only
        the result's data fingerprint is decoded, by SQLite: for 300,000 runs this takes
        about a tenth of the time and memory of ``query(run_ids=...)``. Rows whose JSON is
        corrupt are left out and listed in ``self.unreadable``, as by ``query``."""
        self.unreadable = {}
        if not self.db_path.exists():
            return {}
        with self._read() as con:
            _load_ids(con, run_ids)
            # json_type() raises on malformed JSON where json_valid() says 0: guard it.
            rows = con.execute(
                """SELECT run_id, status, epoch, dataset,
                       result IS NOT NULL AND result != '' AS has_result,
                       CASE WHEN json_valid(config) THEN json_type(config) END AS config_type,
                       CASE WHEN json_valid(result) THEN json_type(result) END AS result_type,
                       CASE WHEN json_valid(result) THEN json_extract(result, '$.data') END
                           AS data
                   FROM runs WHERE run_id IN (SELECT run_id FROM temp.wanted)""").fetchall()
        out = {}
        for r in rows:
            if r["config_type"] != "object":
                self.unreadable[r["run_id"]] = "its stored config is not a JSON object"
            elif r["has_result"] and r["result_type"] != "object":
                self.unreadable[r["run_id"]] = "its stored result is not a JSON object"
            else:
                data = json.loads(r["data"]) if isinstance(r["data"], str) else None
                status = RunStatus(r["status"])
                if status == RunStatus.RUNNING and self._abandoned(r["run_id"]):
                    status = RunStatus.INTERRUPTED
                out[r["run_id"]] = RunState(r["run_id"], status, r["epoch"], r["dataset"],
                                            data if isinstance(data, dict) else None)
        return out

    def sweeps(self) -> list[tuple[str, int]]:
        """(sweep name, number of runs) for every sweep in the store."""
        if not self.db_path.exists():
            return []
        with self._read() as con:
            rows = con.execute(
                "SELECT sweep, COUNT(*) FROM sweep_runs GROUP BY sweep ORDER BY sweep"
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def _ids(self, status: RunStatus | None = None) -> set[str]:
        """Every stored run id (with this stored status), rows not decoded."""
        if not self.db_path.exists():
            return set()
        with self._read() as con:
            rows = (con.execute("SELECT run_id FROM runs") if status is None else
                    con.execute("SELECT run_id FROM runs WHERE status=?", (status,)))
            return {r[0] for r in rows}

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

    @staticmethod
    @contextlib.contextmanager
    def _idle(run_dir: Path, exclusive: bool = True) -> Iterator[bool | None]:
        """Inside: True while this process holds the folder's run lock, which nobody else
        did (the run's process is gone); False when a live process holds it; None when the
        folder has no lock file (no local process ever ran it here). Only looking, not
        removing anything, takes it shared: readers checking at once do not see each other
        as the live run."""
        try:
            fd = os.open(run_dir / LOCK_NAME, os.O_RDONLY)
        except FileNotFoundError:
            yield None
            return
        try:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # also drops the lock, if taken

    def _alive(self, row: RunRow) -> RunRow:
        """``row``, or for a 'running' row whose process is gone (its lock file is there and
        nobody holds it: killed, or the machine went down), the same row as 'interrupted'.
        Not written back: reading a store never changes it."""
        if row.status != RunStatus.RUNNING or not self._abandoned(row.run_id):
            return row
        return dataclasses.replace(
            row, status=RunStatus.INTERRUPTED,
            error="its process ended without storing a status (killed, or the machine went "
                  "down); run it again to resume")

    def _abandoned(self, run_id: str) -> bool:
        """Whether the run's lock file is there and nobody holds it. No lock file (a Ray task
        locks its own checkpoint dir): not abandoned, the row is trusted. A lock file left by
        an earlier local attempt would make such a row read as interrupted while its Ray
        task runs, when --checkpoint-dir is elsewhere."""
        with self._idle(self.run_dir(run_id), exclusive=False) as idle:
            return bool(idle)

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
        """Forget epochs past a checkpoint (they are recomputed when the run resumes): those
        of ``phase`` after epoch ``after`` and every epoch of a later phase; and set the run's
        progress to it. ``("pretrain", 0)``: every epoch (a fresh start)."""
        with self._write() as con:
            con.execute(f"DELETE FROM epochs WHERE run_id=? AND ({_PHASE_RANK} > ? OR "
                        "(phase=? AND epoch>?))", (run_id, phase_rank(phase), phase, after))
            con.execute("UPDATE runs SET epoch=? WHERE run_id=?",
                        (after if phase == "train" else 0, run_id))

    def epochs(self, run_id: str) -> list[Epoch]:
        """The run's epoch rows, pre-training first."""
        with self._read() as con:
            rows = con.execute(
                "SELECT phase, epoch, train_loss, test_loss, top1, top5, lr, seconds FROM epochs"
                f" WHERE run_id=? ORDER BY {_PHASE_RANK}, epoch", (run_id,)).fetchall()
        return [Epoch.from_dict(dict(r)) for r in rows]

    def layers(self, run_id: str) -> list[Layer]:
        """The run's per-layer rows in module order."""
        with self._read() as con:
            rows = con.execute("SELECT * FROM layers WHERE run_id=? ORDER BY idx",
                               (run_id,)).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d.pop("run_id")
            try:
                d["shape"] = json.loads(d["shape"])
            except (ValueError, TypeError) as e:
                raise UnreadableRun(run_id, f"the stored shape of its layer {d['name']!r} is "
                                            f"not JSON ({_short(str(e))})") from None
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
        running, since its process would go on writing to a run that is gone. Rows are not
        decoded: a run whose JSON is corrupt can be removed."""
        running = self._running(run_ids)
        if running:
            raise StoreError(f"run {', '.join(running)} is running right now; stop it first "
                             "(Ctrl-C where it runs, or c in the app), then remove it")
        with self._write() as con:
            con.executemany("DELETE FROM runs WHERE run_id=?", [(r,) for r in run_ids])
        for r in run_ids:
            _rmtree(self.run_dir(r))

    def _running(self, run_ids: list[str]) -> list[str]:
        """Those of ``run_ids`` stored as running whose process is alive (as ``_alive``)."""
        if not self.db_path.exists():
            return []
        with self._read() as con:
            _load_ids(con, run_ids)
            rows = con.execute("SELECT run_id FROM runs WHERE status='running' AND run_id IN "
                               "(SELECT run_id FROM temp.wanted) ORDER BY run_id").fetchall()
        return [run_id for (run_id,) in rows if not self._abandoned(run_id)]

    def _run_dirs(self) -> list[Path]:
        """Folders of the results dir named like a run id."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir()
                      if p.is_dir() and len(p.name) == RUN_ID_LEN
                      and all(c in "0123456789abcdef" for c in p.name))

    def orphan_dirs(self) -> list[Path]:
        """Artifact folders whose run is no longer in the store (a folder whose run lock a
        live process holds is not: it has not stored its row yet)."""
        known = self._ids()
        orphans = []
        for p in self._run_dirs():
            if p.name not in known:
                with self._idle(p, exclusive=False) as idle:
                    if idle is not False:
                        orphans.append(p)
        return orphans

    def collect_garbage(self) -> Garbage:
        """Remove what no run needs: artifact folders of runs no longer in the store, and
        the temporary files (``.resume.pt.k3j9x0ab``) that atomic writes leave when their
        process is killed. A folder is touched only while holding its run's lock, so never
        under a live run; nor is a known run's folder without a lock file whose row says
        running (a Ray run, which locks its own checkpoint dir). ``StoreError`` when
        something cannot be removed (a read-only folder)."""
        known = self._ids()
        remote = self._ids(RunStatus.RUNNING)
        folders: list[Path] = []
        temps: list[Path] = []
        for p in self._run_dirs():
            with self._idle(p) as idle:
                if idle is False or (idle is None and p.name in remote):
                    continue
                try:
                    if p.name not in known:
                        _rmtree(p, strict=True)
                        folders.append(p)
                        continue
                    for f in sorted(p.iterdir()):
                        if _TEMP_FILE.fullmatch(f.name) and f.is_file():
                            f.unlink()
                            temps.append(f)
                except OSError as e:
                    raise StoreError(f"cannot remove {e.filename or p}: {e.strerror or e}; "
                                     f"removed {len(folders)} folders and {len(temps)} "
                                     "files before it") from None
        return Garbage(folders, temps)

    def histograms(self, run_id: str) -> list[dict[str, Any]]:
        """A run's stored weight histograms (``histograms.json``: per layer its name, bin
        edges and kept fractions), checked to be what the engine writes: one ``StoreError``
        naming the run when the file is missing, unreadable or malformed."""
        path = self.run_dir(run_id) / HISTOGRAMS
        again = ("run its config again with --force to write them (csv and json exports "
                 "need none)")
        try:
            data = load_histograms(path.parent)
        except FileNotFoundError:
            raise StoreError(f"run {run_id} has no weight histograms: {path} is missing; "
                             f"{again}") from None
        except OSError as e:
            raise StoreError(f"cannot read the weight histograms of run {run_id}, {path}: "
                             f"{e.strerror or e}") from None
        except (ValueError, AssertionError) as e:  # not JSON (or not UTF-8), not a list
            problem: str | None = _short(str(e)) or "not a list of layers"
        else:
            problem = _histogram_problem(data)
        if problem is not None:
            raise StoreError(f"the weight histograms of run {run_id}, {path}, are corrupt "
                             f"({problem}); {again}")
        return data

    def integrity_check(self) -> str:
        """SQLite's own verdict on the database file ('ok' when sound)."""
        with self._read() as con:
            return str(con.execute("PRAGMA integrity_check").fetchone()[0])


def _histogram_problem(data: Any) -> str | None:
    """What is wrong with decoded ``histograms.json`` content, or None: a non-empty list of
    {layer, edges, fractions}, every layer on the same increasing edges, one fraction in
    [0, 1] per bin."""
    if not isinstance(data, list) or not data:
        return "not a list of layers"
    first: list[float] | None = None
    for i, h in enumerate(data):
        if not isinstance(h, dict) or not isinstance(h.get("layer"), str):
            return f"entry {i} is not a layer's histogram"
        layer: str = h["layer"]
        edges: Any = h.get("edges")
        fractions: Any = h.get("fractions")
        if (not _numbers(edges) or len(edges) < 2
                or any(a >= b for a, b in itertools.pairwise(edges))):
            return f"layer {layer!r} has no increasing bin edges"
        if first is None:
            first = edges
        elif edges != first:
            return f"layer {layer!r} has other bin edges than layer {data[0]['layer']!r}"
        if not _numbers(fractions) or len(fractions) != len(edges) - 1:
            return f"layer {layer!r} does not have one fraction per bin"
        if any(not 0.0 <= f <= 1.0 for f in fractions):
            return f"layer {layer!r} has a fraction outside [0, 1]"
    return None


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
        for x in value)


def _load_ids(con: sqlite3.Connection, run_ids: list[str]) -> None:
    """Put ``run_ids`` in the temporary table ``wanted`` of this connection: any number of
    them, where a list of ``?`` stops at SQLite's variable limit (32,766 or 250,000). The
    temporary database is the connection's own (in memory), so a read-only store can too."""
    con.execute("PRAGMA temp_store=MEMORY")
    con.execute("CREATE TEMP TABLE wanted(run_id TEXT PRIMARY KEY) WITHOUT ROWID")
    con.execute("BEGIN")  # one transaction for all the rows, not one each
    con.executemany("INSERT OR IGNORE INTO temp.wanted VALUES (?)", ((r,) for r in run_ids))
    con.execute("COMMIT")


def _quick_check(con: sqlite3.Connection) -> str | None:
    """None when ``PRAGMA quick_check`` finds the database sound, else its first complaint."""
    try:
        rows = con.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as e:
        return str(e)
    lines = [ln for r in rows for ln in str(r[0]).splitlines() if not ln.startswith("***")]
    if lines == ["ok"]:
        return None
    return _short(lines[0] if lines else "no verdict") + (", …" if len(lines) > 1 else "")


def _free_bytes(path: Path) -> int:
    """Bytes free for this user on the disk holding ``path`` (or its nearest existing
    folder); a large number when that cannot be told."""
    for p in [path, *path.absolute().parents]:
        with contextlib.suppress(OSError):
            st = os.statvfs(p)
            return st.f_bavail * st.f_frsize
    return 1 << 62


def _errname(e: sqlite3.Error) -> str:
    return str(getattr(e, "sqlite_errorname", ""))


def _ours(e: sqlite3.Error) -> bool:
    """Whether an SQLite error is the store's state (disk, file, locks, corruption), to be
    reported as such, rather than a bug in the code using it (constraints, API misuse)."""
    return type(e) in (sqlite3.DatabaseError, sqlite3.OperationalError)


def _short(text: str, limit: int = 160) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _shown(value: Any) -> str:
    """``repr(value)``, shortened when long (a 100k-character argument is not echoed)."""
    return shown_value(value, limit=40)


def _quoted(name: str) -> str:
    """An SQL identifier, quoted (a foreign database's table names can be anything)."""
    return '"' + name.replace('"', '""') + '"'


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old or the new content, never a part. The
    temporary file is ``.NAME.xxxxxxxx`` beside it (``_TEMP_FILE``): one a kill leaves
    behind is removed by ``Store.collect_garbage``."""
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


def _rmtree(path: Path, strict: bool = False) -> None:
    """Remove a folder; errors are ignored unless ``strict``."""
    import shutil

    shutil.rmtree(path, ignore_errors=not strict)

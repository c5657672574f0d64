"""Writing a report to stdout or a folder: shared by `prunetui export` and the app."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from prunetui.core import report as rep
from prunetui.core.errors import ConfigError
from prunetui.core.store import RunRow, Store

# The hidden folder an export is made in: ``.NAME.export-xxxxxxxx`` beside a new ``--out``
# folder, ``.export-xxxxxxxx`` inside an existing one.
_STAGE = ".export-"


def nearest_compression(wanted: float, rows: list[RunRow]) -> float:
    """``wanted`` if some finished run of ``rows`` has it, else the closest compression
    finished runs have (the lower on a tie): the app's export has no --at/--layers-at, and a
    report of sweeps at c = 1 and 2 should show its per-layer tables at 1, not say 'no run at
    0.5'. Finished only: those are the runs the report's tables show."""
    comps = sorted({r.compression for r in rows if r.status == "finished"})
    if not comps or wanted in comps:
        return wanted
    return min(comps, key=lambda c: (abs(c - wanted), c))


def export_report(store: Store, rows: list[RunRow], fmt: str, out_dir: Path | None, *,
                  at: float = 1.0, layers_at: float = 0.5, title: str = "Pruning report",
                  force: bool = False) -> list[Path] | None:
    """Render the report of ``rows``; to stdout when ``out_dir`` is None (no figures), else
    ``report.<fmt>`` plus histogram PNGs in ``out_dir``. Returns the files written.

    The files are made in a hidden folder and moved into ``out_dir`` at the end, so an
    export that fails or is killed leaves no part of a report there: a new ``out_dir``
    appears whole (one rename); into an existing one the figures are moved first and the
    report last (a kill between those renames is the one way to leave figures without their
    report). A hidden folder left by a killed export is removed by the next one. Without
    ``force`` an existing file of the report's names is refused; with it, those files are
    replaced and the folder's other files kept. A figure's run whose histograms are missing
    or corrupt is one ``StoreError`` naming the run, before anything is written."""
    report = rep.build_report(rows, at=at, layers_at=layers_at)
    text = {"md": lambda: rep.to_markdown(report, title), "csv": lambda: rep.to_csv(report),
            "json": lambda: rep.to_json(report)}[fmt]()
    if out_dir is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return None
    figures = report.figures if fmt == "md" else []
    main = f"report.{fmt}"
    names = [f.filename for f in figures] + [main]  # the order they are moved in
    clash = [out_dir / n for n in [main, *names[:-1]] if (out_dir / n).exists()]
    if clash and not force:
        raise ConfigError(f"{clash[0]} exists; pass --force to overwrite it")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file, not a folder")
    hists = [store.histograms(f.run_id) for f in figures]
    try:
        _remove_stale_stages(out_dir)
        with _staging(out_dir) as stage:
            if figures:
                from prunetui.core.figures import histogram_png

                for f, h in zip(figures, hists, strict=True):
                    (stage / f.filename).write_bytes(histogram_png(h, f.title))
            (stage / main).write_bytes(text.encode())
            _publish(stage, out_dir, names)
    except OSError as e:
        raise ConfigError(f"cannot write the report to {out_dir}: {e.strerror or e}") from None
    return [out_dir / main, *(out_dir / f.filename for f in figures)]


def _stage_spot(out_dir: Path) -> tuple[Path, str]:
    """Where an export into ``out_dir`` is made: (folder, name prefix)."""
    if out_dir.is_dir():
        return out_dir, _STAGE
    return out_dir.parent, f".{out_dir.name}{_STAGE}"


@contextlib.contextmanager
def _staging(out_dir: Path) -> Iterator[Path]:
    """A new hidden folder to make the report in, locked (``flock`` on the folder) while in
    use so that another export does not take it for a killed one's; removed at the end
    unless it was renamed into place."""
    parent, prefix = _stage_spot(out_dir)
    parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    fd = os.open(stage, os.O_RDONLY)
    try:
        # mkdtemp makes it 0700; when renamed into place it must follow the user's umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(stage, 0o777 & ~umask)
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        os.close(fd)


def _publish(stage: Path, out_dir: Path, names: list[str]) -> None:
    """Move the finished files into ``out_dir``, in the order of ``names``."""
    if not out_dir.exists():
        os.rename(stage, out_dir)  # the whole report at once
        return
    for name in names:
        os.replace(stage / name, out_dir / name)


def _remove_stale_stages(out_dir: Path) -> None:
    """Remove the hidden folders of exports into ``out_dir`` that were killed: those whose
    lock nobody holds (best effort: a folder that cannot be removed is left)."""
    spots = [(out_dir.parent, f".{out_dir.name}{_STAGE}")]
    if out_dir.is_dir():
        spots.append((out_dir, _STAGE))
    stale = [p for parent, prefix in spots if parent.is_dir() for p in parent.iterdir()
             if p.name.startswith(prefix) and p.is_dir() and not p.is_symlink()]
    for p in stale:
        with contextlib.suppress(OSError):
            fd = os.open(p, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: an export is running
                shutil.rmtree(p)
            finally:
                os.close(fd)

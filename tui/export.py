"""Writing a report to stdout or a folder: shared by `prunetui export` and the app."""

from __future__ import annotations

import sys
from pathlib import Path

from prunetui.core import report as rep
from prunetui.core.errors import ConfigError
from prunetui.core.store import RunRow, Store, atomic_write_bytes, atomic_write_text


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
    ``report.<fmt>`` plus histogram PNGs in ``out_dir``. Refuses to overwrite without
    ``force``; each file is written atomically. Returns the files written."""
    report = rep.build_report(rows, at=at, layers_at=layers_at)
    text = {"md": lambda: rep.to_markdown(report, title), "csv": lambda: rep.to_csv(report),
            "json": lambda: rep.to_json(report)}[fmt]()
    if out_dir is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return None
    main = out_dir / f"report.{fmt}"
    targets = [main] + ([out_dir / f.filename for f in report.figures] if fmt == "md" else [])
    clash = [p for p in targets if p.exists()]
    if clash and not force:
        raise ConfigError(f"{clash[0]} exists; pass --force to overwrite it")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file, not a folder")
    written = []
    try:
        # First, so that a folder that cannot be made (a file on its path, a read-only
        # mount) is reported before anything is written.
        out_dir.mkdir(parents=True, exist_ok=True)
        if fmt == "md":
            from prunetui.core.figures import histogram_png, load_histograms

            for f in report.figures:
                png = histogram_png(load_histograms(store.run_dir(f.run_id)), f.title)
                atomic_write_bytes(out_dir / f.filename, png)
                written.append(out_dir / f.filename)
        atomic_write_text(main, text)
    except OSError as e:
        raise ConfigError(f"cannot write the report to {out_dir}: {e.strerror or e}") from None
    return [main, *written]

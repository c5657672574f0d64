"""Writing a report to stdout or a folder: shared by `prunetui export` and the app."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunetui.core import report as rep
from prunetui.core.catalog import pruner_display
from prunetui.core.config import RunConfig
from prunetui.core.errors import ConfigError, choices_message
from prunetui.core.events import CancelToken
from prunetui.core.store import RunRow, Store

if TYPE_CHECKING:
    from prunetui.core.analysis import CollapseCurve, Progress

FORMATS = ("md", "csv", "json")

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


@dataclass(frozen=True)
class CriticalProgress:
    """Where ``critical_curves`` is: pruning curve ``index`` (from 0) of ``total``, one per
    model/dataset and pruner, of ``config``; ``step`` says where inside it."""

    index: int
    total: int
    config: RunConfig
    step: Progress

    def text(self) -> str:
        """One status line, e.g. "critical compression 3/5: vgg16-bn cifar10 SynFlow, c = 2.5
        (2 of 13), pruning step 40/100"."""
        s, c = self.step, self.config
        line = (f"critical compression {self.index + 1}/{self.total}: {c.model} {c.dataset} "
                f"{pruner_display(c.pruner)}, c = {s.compression:g} "
                f"({min(s.done + 1, s.total)} of {s.total})")
        return line + (f", pruning step {s.step}/{s.steps}" if s.steps > 1 else "")


def critical_curves(rows: list[RunRow], compressions: Sequence[float], *,
                    device: str = "auto", data_dir: Path | None = None,
                    on_progress: Callable[[CriticalProgress], None] | None = None,
                    cancel: CancelToken | None = None) -> list[CollapseCurve]:
    """Prune at initialization, without training, each config of ``report.critical_configs``
    (one per model/dataset and pruner of ``rows``) at every one of ``compressions`` on
    ``device``: the critical-compression analysis. Costs a pruning pass per point: seconds
    for fc, minutes for SynFlow's 100 iterations on a VGG on a CPU, so callers run it only
    when asked, and show ``on_progress`` (called after each pruning step).

    Every config and compression is checked before the first pass (a compression that keeps
    no weight, a bad device: one ``ConfigError``); data is read for SNIP and GraSP only, and
    never downloaded (a missing dataset is a ``DataError`` naming it)."""
    from prunetui.core.analysis import collapse_curve
    from prunetui.core.run.build import check_keeps_weights

    if not compressions:
        raise ConfigError("no compressions for the critical compression")
    configs = [c.with_(device=device) for c in rep.critical_configs(rows)]
    check_keeps_weights([c.with_(compression=x).validate() for c in configs
                         for x in sorted(set(compressions))])
    report = on_progress or (lambda _p: None)
    out = []
    for i, config in enumerate(configs):
        def step(p: Progress, i: int = i, config: RunConfig = config) -> None:
            report(CriticalProgress(i, len(configs), config, p))

        out.append(collapse_curve(config, compressions, data_dir=data_dir, download=False,
                                  on_progress=step, cancel=cancel))
    return out


def export_report(store: Store, rows: list[RunRow], fmt: str, out_dir: Path | None, *,
                  at: float = 1.0, layers_at: float = 0.5, title: str = "Pruning report",
                  force: bool = False, reference: str | None = None,
                  critical: Sequence[float] | None = None, device: str = "auto",
                  data_dir: Path | None = None,
                  on_progress: Callable[[CriticalProgress], None] | None = None,
                  cancel: CancelToken | None = None) -> list[Path] | None:
    """Render the report of ``rows``; to stdout when ``out_dir`` is None (no figures), else
    ``report.<fmt>`` in ``out_dir``, with the figures (PNGs, linked from the markdown) for
    ``md``; csv and json carry the figures' numbers as tables. Returns the files written.

    ``reference``: compare with published runs (``report.REFERENCES``): a table per model/
    dataset and their band in the accuracy figure. ``critical``: the compressions at which to
    prune each model/dataset and pruner at initialization for the critical-compression table
    and figure (``critical_curves``, on ``device``, reading data from ``data_dir``; progress
    to ``on_progress``); None, the default, computes nothing: it costs pruning passes.

    The files are made in a hidden folder and moved into ``out_dir`` at the end, so an
    export that fails or is killed leaves no part of a report there: a new ``out_dir``
    appears whole (one rename); into an existing one the figures are moved first and the
    report last (a kill between those renames is the one way to leave figures without their
    report). A hidden folder left by a killed export is removed by the next one. Without
    ``force`` an existing file of the report's names is refused; with it, those files are
    replaced and the folder's other files kept. A figure's run whose histograms are missing
    or corrupt is one ``StoreError`` naming the run, before anything is written; so is a bad
    ``reference`` or ``critical`` (``ConfigError``), before any pruning pass."""
    if fmt not in FORMATS:
        raise ConfigError(choices_message("format", fmt, list(FORMATS)))
    plan = rep.build_report(rows, at=at, layers_at=layers_at, reference=reference)
    figures = plan.figures if fmt == "md" and out_dir is not None else []
    main = f"report.{fmt}"
    names = [f.filename for f in figures]
    if critical is not None and figures:
        # The names the critical-compression figures will take: checked now, before the
        # pruning passes, not minutes later.
        single = len(plan.setups) == 1
        names += sorted({rep.figure_name("layer_profiles", c.model, c.dataset, single)
                         for c in rep.critical_configs(rows)})
    if out_dir is not None:
        clash = [out_dir / n for n in [main, *names] if (out_dir / n).exists()]
        if clash and not force:
            raise ConfigError(f"{clash[0]} exists; pass --force to overwrite it")
        if out_dir.exists() and not out_dir.is_dir():
            raise ConfigError(f"--out {out_dir} is a file, not a folder")
    hists = {f.filename: store.histograms(f.run_id) for f in figures if f.kind == rep.HISTOGRAM}
    report = plan
    if critical is not None:
        curves = critical_curves(rows, critical, device=device, data_dir=data_dir,
                                 on_progress=on_progress, cancel=cancel)
        report = rep.build_report(rows, at=at, layers_at=layers_at, reference=reference,
                                  curves=curves)
        figures = report.figures if figures else []
    text = {"md": lambda: rep.to_markdown(report, title, figures=out_dir is not None),
            "csv": lambda: rep.to_csv(report), "json": lambda: rep.to_json(report)}[fmt]()
    if out_dir is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return None
    names = [f.filename for f in figures] + [main]  # the order they are moved in
    try:
        _remove_stale_stages(out_dir)
        with _staging(out_dir) as stage:
            for f, png in _drawn(figures, hists):
                (stage / f.filename).write_bytes(png)
            (stage / main).write_bytes(text.encode())
            _publish(stage, out_dir, names)
    except OSError as e:
        raise ConfigError(f"cannot write the report to {out_dir}: {e.strerror or e}") from None
    return [out_dir / main, *(out_dir / f.filename for f in figures)]


def _drawn(figures: list[rep.Figure],
           hists: dict[str, list[dict[str, Any]]]) -> Iterator[tuple[rep.Figure, bytes]]:
    """Each figure's PNG, one at a time. The weight histograms of one model/dataset share one
    colour scale and one weight axis (``figures.shared_vmax``/``shared_span``), so that a
    colour is one fraction in all of them and their x axes line up."""
    from prunetui.core import figures as fig

    groups: dict[str, list[list[dict[str, Any]]]] = {}
    for f in figures:
        if f.kind == rep.HISTOGRAM:
            groups.setdefault(f.group, []).append(hists[f.filename])
    scales = {g: (fig.shared_vmax(hs), fig.shared_span(hs)) for g, hs in groups.items()}
    for f in figures:
        if f.kind == rep.HISTOGRAM:
            vmax, span = scales[f.group]
            yield f, fig.histogram_png(hists[f.filename], f.title, vmax, span)
        else:
            assert f.draw is not None
            yield f, f.draw()


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

"""The headless face: engine events rendered as rich progress bars, results as rich tables."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from prunetui.core import events as ev
from prunetui.core.catalog import pruner_display
from prunetui.core.run.result import Inspection, Layer, RunResult


class ConsoleSink:
    """An ``Emit`` that draws progress for one or more runs; use as a context manager."""

    def __init__(self, console: Console, label: str = "", *, sweep: bool = False) -> None:
        """``sweep``: warnings that the machine was busy while runs were timed are kept for
        one summary (``busy_summary``) instead of a line per run."""
        self.console = console
        self.label = label
        self.sweep = sweep
        self.busy: dict[str, float] = {}  # run id → slowest/fastest timed pass
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=True,
        )
        self._tasks: dict[tuple[str, str], TaskID] = {}
        self.warnings: list[str] = []
        self._started = False

    def start(self) -> None:
        """Show the live display (done on the first event, so input errors print alone)."""
        if not self._started:
            self._started = True
            self.progress.start()

    def __enter__(self) -> ConsoleSink:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self.progress.stop()

    def _task(self, run_id: str, kind: str, total: int, desc: str) -> TaskID:
        key = (run_id, kind)
        if key not in self._tasks:
            self._tasks[key] = self.progress.add_task(desc, total=total or None, info="")
        else:
            self.progress.reset(self._tasks[key], total=total or None, description=desc)
        return self._tasks[key]

    def _drop(self, run_id: str) -> None:
        for key in [k for k in self._tasks if k[0] == run_id]:
            self.progress.remove_task(self._tasks.pop(key))

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, (ev.RunFinished, ev.RunFailed)) and not self._started:
            return  # nothing was shown (a stored run): no display to start and clear
        self.start()
        rid = event.run_id
        tag = f"{self.label}{rid}"
        if isinstance(event, ev.PhaseStarted):
            if event.phase == "prune":
                self._task(rid, "prune", event.total, f"{tag} prune")
            elif event.phase in ("pretrain", "train") and event.total:
                self._task(rid, "epoch", event.total, f"{tag} {event.phase} epochs")
                self._task(rid, "batch", 0, f"{tag} batches")
        elif isinstance(event, ev.PruneStep):
            t = self._tasks.get((rid, "prune"))
            if t is not None:
                self.progress.update(t, completed=event.iteration,
                                     info=f"density {event.density:.4g}")
        elif isinstance(event, ev.BatchProgress):
            t = self._tasks.get((rid, "batch"))
            if t is not None:
                self.progress.update(t, completed=event.batch, total=event.batches)
        elif isinstance(event, ev.EpochEnd):
            t = self._tasks.get((rid, "epoch"))
            if t is not None:
                self.progress.update(
                    t, completed=event.epoch,
                    info=f"loss {event.train_loss:.3f} top-1 {event.top1:.2f}%")
        elif isinstance(event, ev.RunWarning):
            self.warnings.append(event.message)
            if self.sweep and event.busy is not None:
                self.busy[rid] = event.busy
            else:
                self.console.print(f"[yellow]warning[/] {tag}: {event.message}")
        elif isinstance(event, (ev.RunFinished, ev.RunFailed)):
            self._drop(rid)


def busy_summary(busy: dict[str, float]) -> str | None:
    """One line for every run of a sweep timed on a busy machine, or None."""
    if not busy:
        return None
    n = len(busy)
    return (f"{n} run{'s were' if n > 1 else ' was'} timed while the machine was busy (the "
            f"slowest pass took up to {max(busy.values()):.1f}× the fastest): their inference "
            "medians may be off; time on a quiet machine to compare pruners")


def fmt_int(n: int) -> str:
    """Thousands separators, as the tables show counts."""
    return f"{n:,}"


def layer_table(layers: Sequence[Layer], title: str = "Per-layer") -> Table:
    """The per-layer table every face shows."""
    # The totals add bias and batch-norm terms; without this, the columns seem not to sum.
    t = Table(title=title, title_justify="left", caption_justify="left",
              caption="FLOPs per layer count the weights only, as the report's table 2.2 does; "
                      "the FLOPs total above also counts biases and batch norm.")
    for col in ("layer", "shape", "params", "remaining", "density", "FLOPs dense",
                "FLOPs pruned"):
        t.add_column(col, justify="left" if col in ("layer", "shape") else "right")
    for r in layers:
        t.add_row(r.name, "×".join(str(s) for s in r.shape), fmt_int(r.params),
                  fmt_int(r.remaining), f"{r.density:.4f}", fmt_int(r.flops_dense),
                  fmt_int(r.flops_pruned))
    return t


def rounds_table(result: RunResult) -> Table | None:
    """IMP's rounds: the weights each kept and the top-1 its training ended with."""
    if not result.rounds:
        return None
    t = Table("round", "kept", "density", "compression", "top-1", title="IMP rounds",
              title_justify="left")
    for i, r in enumerate(result.rounds):
        c = -math.log10(r.density) + 0.0 if r.density > 0 else math.inf  # + 0.0: no "-0"
        t.add_row(str(i), fmt_int(r.kept), f"{r.density:.4f}", f"{c:.3g}",
                  "—" if r.top1 is None else f"{r.top1:.2f}")
    return t


def summary_table(what: RunResult | Inspection) -> Table:
    """Key numbers of a run, or of an inspected model (which has no accuracy)."""
    result = what if isinstance(what, RunResult) else None
    cfg = what.config if isinstance(what, RunResult) else what.config.to_dict()
    s = what.structure
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    t.add_row("run", f"{result.run_id if result else '—'}  {cfg['model']} / {cfg['dataset']} / "
                     f"{pruner_display(cfg['pruner'])} / c={cfg['compression']:g} / "
                     f"seed {cfg['seed']}")
    if result and result.data:  # runs stored before fingerprints were kept have none
        d = result.data
        t.add_row("data", f"{d['train']:,} train / {d['test']:,} test images "
                          f"(fingerprint {d['digest']})")
    if result:
        t.add_row("top-1 / top-5", f"{result.top1:.2f}% / {result.top5:.2f}%")
    p = s.params
    t.add_row("weights", f"{fmt_int(p.remaining)} of {fmt_int(p.prunable)} prunable kept "
                         f"(density {s.density:.4g}); {fmt_int(p.total)} parameters")
    f = s.flops
    t.add_row("FLOPs", f"{fmt_int(f.pruned)} of {fmt_int(f.dense)} (ratio {f.ratio:.4f})")
    if result:
        i = result.inference
        t.add_row("inference", f"{i.median:.4f} s median (min {i.min:.4f}, max {i.max:.4f}; "
                               f"{i.repeats} passes over {i.images:,} images, batch "
                               f"{i.batch_size}, {i.device})")
        if i.compacted is not None:
            c = i.compacted
            how = ("dead units removed, sparse kernels" if c.structural
                   else f"sparse kernels only: {c.fallback}")
            t.add_row("compacted", f"{c.median:.4f} s median (min {c.min:.4f}, max "
                                   f"{c.max:.4f}; {i.median / c.median:.2f}x faster; {how})")
        where = f"; {result.threads} torch threads" if result.threads is not None else ""
        t.add_row("time", f"{result.seconds:.1f} s (pruning {result.prune_seconds:.2f} s"
                          f"{where})")
    return t

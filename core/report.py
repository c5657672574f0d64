"""The report: pure functions from stored runs to the reference report's tables.

Every table is computed here once; the markdown/CSV/JSON export, the console and the TUI only
render it. A cell aggregates the finished runs of its config over seeds (mean ± std, n): runs
that agree on every setting but the seed; runs of the cell with other settings are left out and
named in a note. A cell with no finished run shows "—" and a note saying why; collapsed runs are
marked. Tables come in the reference's section order. No torch.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prunetui.core.catalog import PRUNERS, pruner_display
from prunetui.core.config import EXECUTION_FIELDS, RunConfig
from prunetui.core.errors import ConfigError
from prunetui.core.run.result import Layer
from prunetui.core.status import RunStatus
from prunetui.core.store import RunRow
from prunetui.core.sweep.reproduce import commands, settings_of

# Timed passes whose slowest took this many times the fastest: something else was running.
BUSY_SPREAD = 2.0
# ... and this many seconds longer: passes of a millisecond or two (a small net, a small test
# set) vary twofold with the scheduler alone, and their medians still rank pruners.
BUSY_GAP = 0.005


def busy_spread(fastest: float, slowest: float, repeats: int) -> float | None:
    """``slowest / fastest`` of a run's timed passes when it says the machine was busy (at
    least 3 passes, spread over ``BUSY_SPREAD`` and ``BUSY_GAP``), else None."""
    if (repeats < 3 or fastest <= 0 or slowest <= BUSY_SPREAD * fastest
            or slowest - fastest < BUSY_GAP):
        return None
    return slowest / fastest

DASH = "—"
COLLAPSE_MARK = "‡"
BUDGET_MARK = "†"

DATASET_NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "Cifar10",
                 "cifar100": "Cifar100", "digits": "Digits", "tiny-imagenet": "Tiny-ImageNet"}


def collapse_message(collapse: dict[str, Any]) -> str | None:
    """The warning every face shows for a result's ``collapse`` record, naming what fired: no
    path from input to output (layer collapse), or only empty layers that the signal still
    gets around (residual shortcuts); None when neither.

    Reads ``disconnected`` rather than ``collapsed``: runs stored before ``collapsed`` meant
    "no path" have it true for an empty layer alone."""
    empty = list(collapse.get("empty_layers") or [])
    where = "no weight left in " + ", ".join(empty) if empty else ""
    if collapse.get("disconnected", collapse.get("collapsed")):
        return "layer collapse: no path from input to output" + (f" ({where})" if where else "")
    if empty:
        return f"empty layer{'s' * (len(empty) > 1)}: {where}; a path from input to output remains"
    return None


def arch_name(model: str) -> str:
    """Display name of a model as the reference writes it (VGG16, FC, ResNet20)."""
    if model.startswith("vgg"):
        return "VGG" + model[3:].upper()
    if model.startswith("resnet"):
        return "ResNet" + model[6:]
    return model.upper()


@dataclass
class Cell:
    """One table cell: the values of its finished runs (one per seed), or why it is empty."""

    values: list[float] = field(default_factory=list)
    collapsed: bool = False
    why_empty: str = ""
    left_out: str = ""  # runs of the cell with other settings, not pooled (see _replicates)
    run_ids: list[str] = field(default_factory=list)  # the runs the values come from
    budget: str = ""  # their training epochs ("100", "200+100" with pre-training)
    marked: bool = False  # trained with another budget than the rest of its row

    def text(self, digits: int) -> str:
        if not self.values:
            return DASH
        mean = statistics.fmean(self.values)
        s = _num(mean, digits)
        if len(self.values) > 1:
            s += f" ± {_num(statistics.stdev(self.values), digits)} (n={len(self.values)})"
        return (s + (f" {COLLAPSE_MARK}" if self.collapsed else "")
                + (f" {BUDGET_MARK}" if self.marked else ""))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": len(self.values), "values": self.values,
                               "run_ids": self.run_ids, "collapsed": self.collapsed}
        if self.budget:
            out["epochs"] = self.budget
        if self.marked:
            out["other_budget"] = True
        if self.values:
            out["mean"] = statistics.fmean(self.values)
            # Sample std (n - 1): undefined for one run, not 0.
            out["std"] = statistics.stdev(self.values) if len(self.values) > 1 else None
        else:
            out["missing"] = self.why_empty
        if self.left_out:
            out["left_out"] = self.left_out
        return out


def _num(x: float, digits: int) -> str:
    return f"{round(x):d}" if digits == 0 else f"{x:.{digits}f}"


@dataclass
class Table:
    """A titled grid: row labels (one or more columns) and one Cell per value column."""

    key: str
    section: str
    title: str
    corner: list[str]
    columns: list[str]
    rows: list[tuple[list[str], list[Cell]]]
    digits: int
    intro: str = ""
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "section": self.section, "title": self.title,
                "corner": self.corner, "columns": self.columns, "intro": self.intro,
                "rows": [{"labels": labels, "cells": [c.to_json() for c in cells]}
                         for labels, cells in self.rows],
                "notes": self.notes}


@dataclass
class Figure:
    """A weight-histogram figure of one run: file name and the run it shows."""

    section: str
    title: str
    filename: str
    run_id: str


@dataclass
class Setup:
    """How one model/dataset's runs were made: the settings they share, those that differ
    between cells, the data, seeds, machines and software, and the sweep commands that name
    exactly these runs (on this store they report every cell as already stored)."""

    model: str
    dataset: str
    shared: list[tuple[str, str]]
    differing: list[str]
    data: list[str]
    seeds: list[int]
    devices: list[str]
    software: list[str]
    commands: list[str]

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "shared": dict(self.shared)}


@dataclass
class Report:
    """Everything ``export`` writes, in order."""

    tables: list[Table]
    figures: list[Figure]
    runs: int
    setups: list[Setup] = field(default_factory=list)
    # Runs left out: stored by an older prunetui whose config now computes something else.
    stale: list[str] = field(default_factory=list)


# -- building ----------------------------------------------------------------------------------


def _pruners(rows: Iterable[RunRow]) -> list[str]:
    present = {r.pruner for r in rows}
    return [p for p in PRUNERS if p in present]


# Config keys that say where, how or under which label a run executed, or which replicate it
# is: runs that differ only in these are replicates of one setting.
_NOT_SETTINGS = EXECUTION_FIELDS | {"sweep", "seed"}


def _settings(r: RunRow) -> dict[str, Any]:
    return {k: v for k, v in r.config.items() if k not in _NOT_SETTINGS}


def _replicates(runs: list[RunRow]) -> tuple[list[RunRow], str]:
    """The runs a cell pools, and a note naming those it leaves out.

    Mean ± std over runs is a statistic over seeds only when the runs agree on every other
    setting: runs of the same cell with another lr or more epochs are a different experiment,
    not more samples of this one. Shown: the settings with the most finished runs, then the
    most recently started."""
    groups: dict[str, list[RunRow]] = {}
    for r in runs:
        groups.setdefault(json.dumps(_settings(r), sort_keys=True, default=str), []).append(r)
    if len(groups) <= 1:
        return runs, ""
    shown = max(groups.values(), key=lambda rs: (sum(r.status == RunStatus.FINISHED for r in rs),
                                                 max(r.created for r in rs)))
    base = _settings(shown[0])
    parts = []
    for rs in groups.values():
        if rs is shown:
            continue
        other = _settings(rs[0])
        keys = sorted(k for k in base.keys() | other.keys() if base.get(k) != other.get(k))
        parts.append(f"{len(rs)} run{'s' * (len(rs) != 1)} with "
                     + ", ".join(f"{k}={other.get(k)}" for k in keys)
                     + " (shown: " + ", ".join(f"{k}={base.get(k)}" for k in keys) + ")")
    return shown, "left out " + "; ".join(parts)


def _cell(runs: list[RunRow], value: Callable[[RunRow], float | None],
          pruned: bool = False) -> Cell:
    """``pruned``: the value depends on the masks only (the FLOP ratio), so a run that was
    pruned and then stopped (diverged, interrupted) has it too."""
    runs, left_out = _replicates(runs)
    done = [r for r in runs if (r.status == RunStatus.FINISHED and r.result is not None)
            or (pruned and r.flop_ratio is not None)]
    pairs = [(r, v) for r, v in ((r, value(r)) for r in done) if v is not None]
    if not runs:
        why = "not run"
    elif not done:
        why = ", ".join(sorted({r.status for r in runs}))
    else:
        why = "no value"
    budgets = sorted({budget(r.config) for r, _ in pairs})
    return Cell([v for _, v in pairs], any(r.collapsed for r in done), "" if pairs else why,
                left_out, [r.run_id for r, _ in pairs], ", ".join(budgets))


def budget(config: dict[str, Any]) -> str:
    """A run's training epochs: "100", or "200+100" with pre-training."""
    pre, post = int(config.get("pre_epochs", 0)), int(config.get("post_epochs", 0))
    return f"{pre}+{post}" if pre else f"{post}"


def _mark_budgets(table: Table, labels: Callable[[list[str]], str]) -> None:
    """Mark (†) and footnote each cell trained for another number of epochs than most cells
    of its row: its accuracy is not comparable with theirs as it stands."""
    notes: dict[tuple[str, str, str], list[str]] = {}
    for row_labels, cells in table.rows:
        counts = Counter(c.budget for c in cells if c.budget)
        if len(counts) < 2:
            continue
        # The most common budget; on a tie, the shortest (the others trained longer).
        usual = max(counts, key=lambda b: (counts[b], -sum(int(e) for e in b.split("+"))))
        for col, cell in zip(table.columns, cells, strict=True):
            if cell.budget and cell.budget != usual:
                cell.marked = True
                notes.setdefault((col, cell.budget, usual), []).append(labels(row_labels))
    for (col, own, usual), where in notes.items():
        table.notes.append(f"{BUDGET_MARK} {col} trained {own} epochs where the rest of its "
                           f"row trained {usual} (pre-training+training): "
                           f"{', '.join(where)}")


def _note_missing(table: Table, labels: Callable[[list[str], str], str]) -> None:
    for row_labels, cells in table.rows:
        for col, cell in zip(table.columns, cells, strict=True):
            if not cell.values:
                table.notes.append(f"{DASH} {labels(row_labels, col)}: {cell.why_empty}")
            if cell.left_out:
                table.notes.append(f"{labels(row_labels, col)}: {cell.left_out}")
    if any(c.collapsed for _, cells in table.rows for c in cells):
        table.notes.append(f"{COLLAPSE_MARK} layer collapse (no path from input to output) in "
                           "at least one run of the cell")


def _group(rows: list[RunRow], **match: Any) -> list[RunRow]:
    return [r for r in rows if all(getattr(r, k) == v for k, v in match.items())]


def _top1(r: RunRow) -> float | None:
    return r.top1


def _time(r: RunRow) -> float | None:
    assert r.result is not None
    return r.result.inference.median


def _compacted_time(r: RunRow) -> float | None:
    assert r.result is not None
    c = r.result.inference.compacted
    return c.median if c else None


def _ratio(r: RunRow) -> float | None:
    return r.flop_ratio


def build_report(rows: list[RunRow], at: float = 1.0, layers_at: float = 0.5) -> Report:
    """The reference report's tables over ``rows``: accuracy by architecture at compression
    ``at``; per model/dataset accuracy, time and FLOP ratio by compression; per-layer FLOPs,
    density and histogram figures at compression ``layers_at``."""
    tables: list[Table] = []
    figures: list[Figure] = []
    stale = [r.run_id for r in rows if not is_current(r)]
    rows = [r for r in rows if r.run_id not in stale]
    pruners = _pruners(rows)
    names = [pruner_display(p) for p in pruners]
    pairs = sorted({(r.dataset, r.model) for r in rows})

    t = Table("accuracy_by_arch", "1.1", "Testing accuracy (top 1)", ["Data", "Arch"], names,
              [], 2, intro=f"At compression {at:g}.")
    for dataset, model in pairs:
        cells = [_cell(_group(rows, dataset=dataset, model=model, pruner=p, compression=at),
                       _top1) for p in pruners]
        t.rows.append(([DATASET_NAMES.get(dataset, dataset), arch_name(model)], cells))
    _note_missing(t, lambda lab, col: f"{' '.join(lab)}, {col}")
    _mark_budgets(t, " ".join)
    tables.append(t)

    single = len(pairs) == 1
    for n, (dataset, model) in enumerate(pairs, start=1):
        sub = _group(rows, dataset=dataset, model=model)
        comps = sorted({r.compression for r in sub})
        where = f"{arch_name(model)} on {DATASET_NAMES.get(dataset, dataset)}"
        dense = _dense_flops(sub)
        Spec = tuple[str, str, Callable[[RunRow], float | None], int, str, list[RunRow]]
        times: list[Spec] = []
        # Times from different devices do not compare (nor average): one table per device.
        devices = _timing_devices(sub)
        for device, runs in devices.items():
            on = f" on {device}" if len(devices) > 1 else ""
            suffix = f":{device}" if len(devices) > 1 else ""
            times.append((f"time{suffix}",
                          f"Testing time (inference on testing dataset{on}, s)", _time, 3,
                          _time_intro(runs), runs))
            if any(r.result and r.result.inference.compacted for r in runs):
                # --sparse-inference runs: the same network with dead structure removed.
                times.append((f"time_compacted{suffix}",
                              f"Testing time, compacted network (dead units removed, sparse "
                              f"kernels{on}, s)", _compacted_time, 3, _time_intro(runs), runs))
        specs: list[Spec] = [
            ("accuracy", "Testing accuracy (top 1)", _top1, 2, "", sub),
            *times,
            ("flop_ratio", "FLOP", _ratio, 4,
             f"FLOP / {dense} where {dense} is the total FLOP of the unpruned model."
             if dense else "FLOP of the pruned model / FLOP of the unpruned model.", sub),
        ]
        for i, (key, title, fn, digits, intro, runs) in enumerate(specs, start=1):
            sec = f"1.2.{i}" if single else f"1.2.{n}.{i}"
            tt = Table(f"{key}:{model}:{dataset}", sec, f"{title} — {where}", ["Compression"],
                       names, [], digits, intro=intro)
            masks_only = key == "flop_ratio"
            for c in comps:
                tt.rows.append(([f"{c:g}"], [_cell(_group(runs, pruner=p, compression=c), fn,
                                                   masks_only) for p in pruners]))
            stopped = {r.status for r in sub if masks_only and r.status != RunStatus.FINISHED
                       and r.flop_ratio is not None}
            if stopped:
                tt.intro += (f" Runs that stopped after pruning ({', '.join(sorted(stopped))}) "
                             "count too: the ratio depends on the masks only.")
            _note_missing(tt, lambda lab, col: f"{col} at compression {lab[0]}")
            if key == "accuracy":
                _mark_budgets(tt, lambda lab: f"compression {lab[0]}")
            if key.startswith("time"):
                tt.digits = _decimals(tt, digits)
            tables.append(tt)

        layer_runs = {p: _first_done(_group(sub, pruner=p, compression=layers_at))
                      for p in pruners}
        for sec, key, title, col, digits in (
                ("2.2", "layer_flops", "FLOPs of each layer", "flops_pruned", 0),
                ("2.3", "layer_density", "Density of each layer (kept fraction)", "density", 4)):
            tables.append(_layer_table(f"{key}:{model}:{dataset}",
                                       sec if single else f"{sec}.{n}", f"{title} — {where}",
                                       sub, pruners, names, layers_at, col, digits))
        for p in pruners:
            r = layer_runs[p]
            if r is not None:
                stem = f"weight_hist_{p}" if single else f"weight_hist_{model}_{dataset}_{p}"
                figures.append(Figure("2.1" if single else f"2.1.{n}",
                                      f"{pruner_display(p)} — {where}, compression {layers_at:g}",
                                      stem + ".png", r.run_id))
    # The reference's order: 1.1, 1.2.*, then 2.2 and 2.3 (the figures, 2.1, come before them).
    tables.sort(key=lambda t: _section_key(t.section))
    setups = [_setup(model, dataset, _group(rows, dataset=dataset, model=model))
              for dataset, model in pairs]
    return Report(tables, figures, len(rows), setups, stale)


def is_current(row: RunRow) -> bool:
    """Whether the stored run is what its config computes today: its run id is the one the
    config hashes to now. A model or a method whose computation changed in a later prunetui
    (a fix: fc's init, GraSP's iterative scores) hashes its configs to new ids, so the runs
    stored before the change no longer match and are never pooled with the new ones."""
    try:
        return RunConfig.from_dict(dict(row.config)).run_id == row.run_id
    except (ConfigError, TypeError, ValueError):
        return False


# -- provenance --------------------------------------------------------------------------------


def _setup(model: str, dataset: str, runs: list[RunRow]) -> Setup:
    settings = {r.run_id: settings_of(r.config) for r in runs}
    keys = list(next(iter(settings.values()), {}))
    shared, differing = [], []
    for key in keys:
        values = {json.dumps(s[key]) for s in settings.values()}
        if len(values) == 1:
            shared.append((key, _setting_text(key, settings[runs[0].run_id][key])))
            continue
        by_value: dict[str, list[str]] = {}  # each value and the pruners that use it
        for r in runs:
            who = by_value.setdefault(_setting_text(key, settings[r.run_id][key]), [])
            if pruner_display(r.pruner) not in who:
                who.append(pruner_display(r.pruner))
        differing.append(f"{key}: " + "; ".join(f"{v} ({', '.join(who)})"
                                               for v, who in by_value.items()))
    done = [r.result for r in runs if r.status == RunStatus.FINISHED and r.result]
    data = Counter(f"{d['train']:,} train / {d['test']:,} test images (fingerprint "
                   f"{d['digest']})" if (d := res.data) else "not recorded (stored before "
                   "data fingerprints were kept)" for res in done)
    devices = Counter(res.device + (f", {res.threads} torch thread{'s' * (res.threads > 1)}"
                                    if res.threads and res.device == "cpu" else "")
                      for res in done)
    software = Counter(f"torch {res.torch or 'unknown'}, prunetui "
                       f"{res.version or 'unknown (stored before versions were kept)'}"
                       for res in done)
    return Setup(model, dataset, shared, differing,
                 [_counted(t, n, len(done)) for t, n in data.items()],
                 sorted({r.seed for r in runs}),
                 [_counted(t, n, len(done)) for t, n in devices.items()],
                 [_counted(t, n, len(done)) for t, n in software.items()],
                 commands(r.config for r in runs))


def _setting_text(key: str, value: Any) -> str:
    if key == "prune_iterations" and value is None:
        return "the pruner's default (SynFlow 100, others 1)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _counted(text: str, n: int, total: int) -> str:
    return text if n == total else f"{text}: {n} of {total} runs"


def _decimals(t: Table, least: int, significant: int = 3) -> int:
    """Decimals that give the table's smallest mean ``significant`` digits (at least
    ``least``): an fc's test pass takes ~0.0006 s, which 3 decimals show as 0.001 for every
    pruner, hiding the differences the table is there to show."""
    means = [statistics.fmean(c.values) for _, cells in t.rows for c in cells if c.values]
    smallest = min((m for m in means if m > 0), default=0.0)
    if smallest <= 0:
        return least
    return max(least, significant - 1 - math.floor(math.log10(smallest)))


def _section_key(section: str) -> tuple[int, ...]:
    return tuple(int(x) for x in section.split("."))


def _first_done(runs: list[RunRow]) -> RunRow | None:
    runs, _ = _replicates(runs)
    done = sorted((r for r in runs if r.status == RunStatus.FINISHED and r.result),
                  key=lambda r: r.seed)
    return done[0] if done else None


def _dense_flops(runs: list[RunRow]) -> int | None:
    for r in runs:
        if r.result:
            return r.result.flops.dense
    return None


def _timing_devices(runs: list[RunRow]) -> dict[str, list[RunRow]]:
    """The runs by the device their inference was timed on (in order of first use); runs
    without a result (not timed) go with every device, where their cells say why."""
    timed: dict[str, list[RunRow]] = {}
    for r in runs:
        if r.result:
            device = r.result.inference.device
            # --device cuda is the current GPU, cuda:0 unless the run was told otherwise.
            timed.setdefault("cuda:0" if device == "cuda" else device, []).append(r)
    untimed = [r for r in runs if not r.result]
    if not timed:
        return {"": untimed}
    return {device: [*rs, *untimed] for device, rs in timed.items()}


def _time_intro(runs: list[RunRow]) -> str:
    done = [r.result for r in runs if r.result]
    if not done:
        return ""
    inf = done[0].inference
    intro = (f"Median of {inf.repeats} timed passes over the {inf.images:,} test images "
             f"(batch {inf.batch_size}, {inf.device}), after a warm-up pass.")
    busy = []
    for r in done:
        timing = r.inference
        spreads = [x for lo, hi in [(timing.min, timing.max), *(
                       [(timing.compacted.min, timing.compacted.max)] if timing.compacted
                       else [])]
                   if (x := busy_spread(lo, hi, timing.repeats))]
        if spreads:
            busy.append(max(spreads))
    if busy:
        intro += (f" In {len(busy)} of the runs the slowest pass took up to {max(busy):.1f}× "
                  "the fastest: the machine was busy then, and those medians are less "
                  "reliable.")
    return intro


def _layer_table(key: str, section: str, title: str, runs: list[RunRow], pruners: list[str],
                 names: list[str], at: float, col: str, digits: int) -> Table:
    per: dict[str, list[RunRow]] = {
        p: [r for r in _replicates(_group(runs, pruner=p, compression=at))[0]
            if r.status == RunStatus.FINISHED and r.result] for p in pruners}
    template: tuple[Layer, ...] = next(
        (r.result.layers for rs in per.values() for r in rs if r.result), ())
    dense_col = "flops_dense" if col == "flops_pruned" else None
    intro = f"At compression {at:g}."
    # Batch-norm scales are not pruned unless a run asked for it (--prune-batchnorm): rows of
    # 1.0000 for them would only hide the pruned layers, which the reference lists alone.
    if not any(r.config.get("prune_batchnorm") for rs in per.values() for r in rs) and any(
            layer.kind == "batchnorm" for layer in template):
        intro += " Batch-norm layers (not pruned) are left out."
        shown = [(i, la) for i, la in enumerate(template) if la.kind != "batchnorm"]
    else:
        shown = list(enumerate(template))
    t = Table(key, section, title, ["Layers"], (["Unpruned"] if dense_col else []) + names, [],
              digits, intro=intro)
    for i, layer in shown:
        cells = [Cell([float(getattr(layer, dense_col))])] if dense_col else []
        for p in pruners:
            vals = [float(getattr(r.result.layers[i], col)) for r in per[p] if r.result]
            cells.append(Cell(vals, any(r.collapsed for r in per[p]),
                              "" if vals else f"no finished run at compression {at:g}"))
        t.rows.append(([layer.name], cells))
    if not template:
        t.notes.append(f"{DASH} no finished run at compression {at:g}")
    _note_missing(t, lambda lab, c: f"{c}")
    # One note per pruner is enough for layer tables.
    t.notes = list(dict.fromkeys(t.notes))
    return t


# -- rendering ---------------------------------------------------------------------------------


def to_markdown(report: Report, title: str = "Pruning report") -> str:
    """The report as markdown, laid out like the reference (figures linked by file name)."""
    lines = [f"# {title}", "", f"{report.runs} stored run{'' if report.runs == 1 else 's'}.",
             ""]
    if report.stale:
        lines += [f"{len(report.stale)} other stored run{'s' * (len(report.stale) != 1)} "
                  "left out: made by an older prunetui, whose model or method then computed "
                  "something else than the same config does now "
                  f"({', '.join(report.stale[:5])}{', …' if len(report.stale) > 5 else ''}).",
                  ""]
    lines += _setup_markdown(report.setups)
    figures_done = not report.figures
    for t in report.tables:
        if not figures_done and _section_key(t.section) > (2, 1):
            lines += _figures_markdown(report.figures)
            figures_done = True
        lines += [f"#### {t.section} {t.title}", ""]
        if t.intro:
            lines += [t.intro, ""]
        if t.rows:  # a table of no rows is only its header; the notes say why
            lines += markdown_table(t) + ([""] if t.notes else [])
        lines += [f"- {n}" for n in t.notes]
        lines.append("")
    if not figures_done:
        lines += _figures_markdown(report.figures)
    return "\n".join(lines).rstrip() + "\n"


def _setup_markdown(setups: list[Setup]) -> list[str]:
    if not setups:
        return []
    lines = ["### Setup", ""]
    for s in setups:
        lines += [f"**{arch_name(s.model)} on {DATASET_NAMES.get(s.dataset, s.dataset)}**", ""]
        lines += ["| Setting | Value |", "|---|---|",
                  *(f"| {k} | {v} |" for k, v in s.shared), ""]
        if s.differing:
            lines += ["Settings that differ between cells:", "",
                      *(f"- {d}" for d in s.differing), ""]
        lines += [f"- Data: {s.dataset}, " + "; ".join(s.data) if s.data else
                  f"- Data: {s.dataset} (no finished run)",
                  f"- Seeds: {', '.join(map(str, s.seeds))}",
                  f"- Devices: {'; '.join(s.devices) or '—'}",
                  f"- Software: {'; '.join(s.software) or '—'}", "",
                  "Reproduce (on this store, every finished cell reports as already stored):",
                  "",
                  "```", *s.commands, "```", ""]
    return lines


def _figures_markdown(figures: list[Figure]) -> list[str]:
    lines = ["#### 2.1 Weight histograms", "",
             "Weights after training. x: weight value, y: layer, colour: fraction of the "
             "layer's weights in the bin (kept weights only; normalized by the layer's total "
             "number of weights).", ""]
    for f in figures:
        lines += [f"##### {f.title}", f"![{f.title}]({f.filename})", ""]
    return lines


def markdown_table(t: Table) -> list[str]:
    """The table's rows as markdown lines."""
    head = [*t.corner, *t.columns]
    body = [[*labels, *(c.text(t.digits) for c in cells)] for labels, cells in t.rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
            *(line(r) for r in body)]


def to_csv(report: Report) -> str:
    """Long-format CSV: one line per cell (table, row labels, column, mean, std, n, note)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["table", "section", "row", "column", "mean", "std", "n", "collapsed", "missing",
                "left_out", "epochs", "run_ids"])
    for t in report.tables:
        for labels, cells in t.rows:
            for col, c in zip(t.columns, cells, strict=True):
                j = c.to_json()
                std = j.get("std")
                w.writerow([t.key, t.section, " ".join(labels), col, j.get("mean", ""),
                            "" if std is None else std, j["n"], int(c.collapsed),
                            j.get("missing", ""), c.left_out, c.budget, " ".join(c.run_ids)])
    return buf.getvalue()


def to_json(report: Report) -> str:
    """The report as one JSON document."""
    return json.dumps({"runs": report.runs, "stale": report.stale,
                       "setup": [s.to_json() for s in report.setups],
                       "tables": [t.to_json() for t in report.tables],
                       "figures": [f.__dict__ for f in report.figures]}, indent=2)

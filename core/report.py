"""The report: pure functions from stored runs to the reference report's tables, and the study
a researcher hands to a reader around them.

Every table is computed here once; the markdown/CSV/JSON export, the console and the TUI only
render it. A cell aggregates the finished runs of its config over seeds (mean ± std, n): runs
that agree on every setting but the seed; runs of the cell with other settings are left out and
named in a note. A cell with no finished run shows "—" and a note saying why; collapsed runs are
marked. Tables come in the reference's section order. No torch.

Three kinds of run, kept apart (``run_kind``): plain pruning at initialization (the reference's
tables, one column per pruner), ablations (``ablation`` shuffle/reinit/invert, or the older
``shuffle_masks``/``reinit`` flags: controls, not replicates of the plain run, so they get their
own table and never enter a plain cell) and IMP (iterative magnitude pruning: the reference line,
its rounds in a table of its own).

Per model/dataset, after the reference's tables 1.2.*, come: the accuracy-against-compression
figure; with ``reference``, the comparison with the published runs; the ablations; IMP's rounds.
After the per-layer tables 2.2/2.3: the per-layer density figure and, when the caller computed
it (``curves``: pruning passes, never done here), the critical-compression table and figure.
Every figure is drawn from numbers a table holds (its ``intro`` names which), so the CSV and JSON
exports, which carry no figures, carry the same data.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prunetui.core import figures as fig
from prunetui.core.catalog import PRUNERS, pruner_display
from prunetui.core.config import EXECUTION_FIELDS, IMP_FIELDS, LEGACY_FIELDS, RunConfig
from prunetui.core.errors import ConfigError, choices_message
from prunetui.core.run.result import Layer
from prunetui.core.status import RunStatus
from prunetui.core.store import RunRow
from prunetui.core.sweep.reproduce import commands, settings_of

if TYPE_CHECKING:
    from prunetui.core.analysis import CollapseCurve, CollapsePoint
    from prunetui.core.published import Experiment, Published

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
    if model.startswith("wide-resnet"):
        return "Wide-ResNet" + model[11:]
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
    shown: str | None = None  # text shown instead of the statistic (a range, a verdict)
    note: str = ""  # said under the table (how a change was computed)
    signed: bool = False  # a change: its mean shown with its sign (+1.20, -0.35)

    def text(self, digits: int) -> str:
        if self.shown is not None:
            return self.shown
        if not self.values:
            return DASH
        mean = statistics.fmean(self.values)
        s = _num(mean, digits, self.signed)
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
        if self.shown is not None:
            out["text"] = self.shown
        if self.note:
            out["note"] = self.note
        return out


def _num(x: float, digits: int, signed: bool = False) -> str:
    sign = "+" if signed else ""
    return f"{round(x):{sign}d}" if digits == 0 else f"{x:{sign}.{digits}f}"


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


HISTOGRAM = "histogram"


@dataclass
class Figure:
    """A PNG of the report. ``kind`` histogram: the weights of run ``run_id`` after training,
    drawn at export from the store's histograms, on one colour scale and weight axis shared by
    the histograms of its ``group`` (one model/dataset). Any other kind (accuracy,
    layer_density, layer_profiles) is drawn from the report's own numbers by ``draw``."""

    section: str
    title: str
    filename: str
    run_id: str = ""
    kind: str = HISTOGRAM
    group: str = ""  # "model:dataset"
    intro: str = ""  # what it draws, and from which table
    draw: Callable[[], bytes] | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        out = {"kind": self.kind, "section": self.section, "title": self.title,
               "filename": self.filename, "group": self.group}
        if self.run_id:
            out["run_id"] = self.run_id
        if self.intro:
            out["intro"] = self.intro
        return out


def figure_name(kind: str, model: str, dataset: str, single: bool, pruner: str = "") -> str:
    """A figure's file name: its kind (and pruner), with the model and dataset unless the
    report holds one model/dataset only (``weight_hist_mag.png``, ``accuracy.png``,
    ``accuracy_vgg16-bn_cifar10.png``)."""
    parts = [kind, *([] if single else [model, dataset]), *([pruner] if pruner else [])]
    return "_".join(parts) + ".png"


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
    return [p for p in PRUNERS if p in present and p != IMP]


# -- what a run is -------------------------------------------------------------------------------

PLAIN, ABLATED, IMP = "plain", "ablation", "imp"
# The ablation setting's values other than "none", in the order the report shows them.
ABLATIONS = ("shuffle", "reinit", "invert")
# Config keys that make a run an ablation: the ablation setting, and the flags older prunetuis
# stored for the shuffle and reinit ablations.
_ABLATION_KEYS = frozenset({"ablation", "shuffle_masks", "reinit"})
LEGACY = " (legacy)"


def ablation_of(config: dict[str, Any]) -> str:
    """A stored config's ablation: its ``ablation`` setting ("none" when absent), or, for a run
    stored with the older ``shuffle_masks``/``reinit`` flags, "shuffle (legacy)", "reinit
    (legacy)" or "shuffle+reinit (legacy)".

    Legacy runs are shown, as their own columns, rather than left out: they are the same
    controls and their numbers were paid for; they are not pooled with runs of the
    ``ablation`` setting because those are other configs (other run ids), made by code that
    may apply the control otherwise, and a flag pair (both set) has no counterpart there."""
    new = str(config.get("ablation") or "none")
    legacy = [name for name, key in (("shuffle", "shuffle_masks"), ("reinit", "reinit"))
              if config.get(key)]
    if not legacy:
        return new
    return "+".join([new] * (new != "none") + legacy) + LEGACY


def run_kind(row: RunRow) -> str:
    """``IMP`` for an iterative magnitude pruning run (the reference line), ``ABLATED`` for an
    ablation (``ablation_of`` not "none"), else ``PLAIN``: pruning at initialization, what the
    reference's tables hold."""
    if row.pruner == IMP:
        return IMP
    return ABLATED if ablation_of(row.config) != "none" else PLAIN


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
            if not cell.values and cell.shown is None:
                table.notes.append(f"{DASH} {labels(row_labels, col)}: {cell.why_empty}")
            for said in (cell.left_out, cell.note):
                if said:
                    table.notes.append(f"{labels(row_labels, col)}: {said}")
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


def build_report(rows: list[RunRow], at: float = 1.0, layers_at: float = 0.5, *,
                 reference: str | None = None,
                 curves: Sequence[CollapseCurve] = ()) -> Report:
    """The reference report's tables over ``rows``: accuracy by architecture at compression
    ``at``; per model/dataset accuracy, time and FLOP ratio by compression; per-layer FLOPs,
    density and histogram figures at compression ``layers_at``. Around them the study (the
    module's docstring): the accuracy-against-compression and per-layer density figures, the
    ablations and IMP tables where such runs are stored, the comparison with the published runs
    of ``reference`` (one of ``REFERENCES``; None: no comparison) and, for each of ``curves``
    (computed by the caller from ``critical_configs``: they cost pruning passes), the critical
    compression table and the per-layer profile figure.

    An unknown ``reference`` is a ``ConfigError`` naming the choices."""
    published = load_reference(reference)
    stale = [r.run_id for r in rows if not is_current(r)]
    rows = [r for r in rows if r.run_id not in stale]
    plain = [r for r in rows if run_kind(r) == PLAIN]
    pruners = _pruners(plain)
    names = [pruner_display(p) for p in pruners]
    pairs = sorted({(r.dataset, r.model) for r in rows})
    tables = [_by_arch_table(plain, pairs, pruners, names, at)]
    figures: list[Figure] = []
    single = len(pairs) == 1
    # Part 2's items after 2.3, numbered once every pair's are known: (kind, pair, item).
    later: list[tuple[int, int, Table | Figure]] = []
    for n, (dataset, model) in enumerate(pairs, start=1):
        pair = _Pair(model, dataset, n, single)
        everything = _group(rows, dataset=dataset, model=model)
        sub = [r for r in everything if run_kind(r) == PLAIN]
        comps = sorted({r.compression for r in sub})
        numbered = _compression_tables(pair, sub, comps, pruners, names)
        tables += numbered
        study = _study(pair, everything, sub, numbered[0], comps, pruners, published)
        for i, item in enumerate(study, start=len(numbered) + 1):
            item.section = pair.part1(i)
            _place(item, tables, figures)

        layer_runs = {p: _first_done(_group(sub, pruner=p, compression=layers_at))
                      for p in pruners}
        for sec, key, title, col, digits in (
                ("2.2", "layer_flops", "FLOPs of each layer", "flops_pruned", 0),
                ("2.3", "layer_density", "Density of each layer (kept fraction)", "density", 4)):
            tables.append(_layer_table(f"{key}:{model}:{dataset}",
                                       sec if single else f"{sec}.{n}",
                                       f"{title} — {pair.where}", sub, pruners, names,
                                       layers_at, col, digits))
        for p in pruners:
            r = layer_runs[p]
            if r is not None:
                caption = f"{pruner_display(p)} — {pair.where}, compression {layers_at:g}"
                figures.append(Figure("2.1" if single else f"2.1.{n}", caption,
                                      pair.file("weight_hist", p), r.run_id, group=pair.group))
        plot = _layer_plot(pair, tables[-1], pruners, layers_at)
        if plot is not None:
            later.append((0, n, plot))
        mine = [cv for cv in curves if (cv.model, cv.dataset) == (model, dataset)]
        if mine:
            later += [(k, n, item) for k, item in enumerate(_critical_items(pair, mine), 1)]
    kinds = sorted({k for k, _, _ in later})
    for k, n, item in later:
        number = 4 + kinds.index(k)
        item.section = f"2.{number}" if single else f"2.{number}.{n}"
        _place(item, tables, figures)
    # The reference's order: 1.1, 1.2.*, then 2.2 and 2.3 (the figures, 2.1, come before them).
    tables.sort(key=lambda t: _section_key(t.section))
    figures.sort(key=lambda f: _section_key(f.section))
    setups = [_setup(model, dataset, _group(rows, dataset=dataset, model=model))
              for dataset, model in pairs]
    return Report(tables, figures, len(rows), setups, stale)


def _place(item: Table | Figure, tables: list[Table], figures: list[Figure]) -> None:
    if isinstance(item, Table):
        tables.append(item)
    else:
        figures.append(item)


@dataclass(frozen=True)
class _Pair:
    """One model/dataset of the report: its names, and its sections' and files' names."""

    model: str
    dataset: str
    n: int  # its number among the report's pairs (1.2.n, 2.2.n)
    single: bool  # the report's only pair: sections and files without n

    @property
    def where(self) -> str:
        return f"{arch_name(self.model)} on {DATASET_NAMES.get(self.dataset, self.dataset)}"

    @property
    def group(self) -> str:
        return f"{self.model}:{self.dataset}"

    def part1(self, i: int) -> str:
        return f"1.2.{i}" if self.single else f"1.2.{self.n}.{i}"

    def key(self, kind: str) -> str:
        return f"{kind}:{self.model}:{self.dataset}"

    def file(self, kind: str, pruner: str = "") -> str:
        return figure_name(kind, self.model, self.dataset, self.single, pruner)


def _by_arch_table(plain: list[RunRow], pairs: list[tuple[str, str]], pruners: list[str],
                   names: list[str], at: float) -> Table:
    t = Table("accuracy_by_arch", "1.1", "Testing accuracy (top 1)", ["Data", "Arch"], names,
              [], 2, intro=f"At compression {at:g}.")
    for dataset, model in pairs:
        cells = [_cell(_group(plain, dataset=dataset, model=model, pruner=p, compression=at),
                       _top1) for p in pruners]
        t.rows.append(([DATASET_NAMES.get(dataset, dataset), arch_name(model)], cells))
    _note_missing(t, lambda lab, col: f"{' '.join(lab)}, {col}")
    _mark_budgets(t, " ".join)
    return t


def _compression_tables(pair: _Pair, sub: list[RunRow], comps: list[float],
                        pruners: list[str], names: list[str]) -> list[Table]:
    """The reference's tables 1.2.*: accuracy, time (per timing device) and FLOP ratio by
    compression, the accuracy first."""
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
    out: list[Table] = []
    for i, (key, title, fn, digits, intro, runs) in enumerate(specs, start=1):
        tt = Table(pair.key(key), pair.part1(i), f"{title} — {pair.where}", ["Compression"],
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
        out.append(tt)
    return out


# -- the study: figures, published runs, ablations, IMP, critical compression ------------------

# What ``reference`` may name: published results shipped with prunetui.
REFERENCES = ("synflow-fig6",)
# Settings that only say how a network is pruned: at c = 0 every pruner keeps every weight, so
# runs differing only in these trained the same dense network.
_PRUNING_ONLY = frozenset({"pruner", "prune_iterations", "prune_samples_per_class", "scope",
                           "schedule", "prune_bias", "prune_batchnorm"})


def load_reference(name: str | None) -> Published | None:
    """The published results ``name`` (one of ``REFERENCES``) or None for None; an unknown
    name is a ``ConfigError`` naming the choices."""
    if name is None:
        return None
    if name not in REFERENCES:
        raise ConfigError(choices_message("reference", name, list(REFERENCES)))
    from prunetui.core.published import load_published

    return load_published()


def _study(pair: _Pair, everything: list[RunRow], sub: list[RunRow], acc: Table,
           comps: list[float], pruners: list[str],
           published: Published | None) -> list[Table | Figure]:
    """A pair's items after its tables 1.2.*, in order: the accuracy-against-compression
    figure, the comparison with the published runs, the ablations, IMP's rounds."""
    by_id = {r.run_id: r for r in everything}
    ablated = [r for r in everything if run_kind(r) == ABLATED]
    imp_runs = [r for r in everything if run_kind(r) == IMP]
    abl, abl_series = _ablation_table(pair, ablated, sub, by_id) if ablated else (None, [])
    imp, imp_series = _imp_table(pair, imp_runs) if imp_runs else (None, None)
    experiment = published.find(pair.model, pair.dataset) if published else None
    ref = (_reference_table(pair, acc, comps, pruners, published, experiment, by_id)
           if published else None)
    plot = _accuracy_plot(pair, acc, comps, pruners, abl_series, imp_series,
                          _dense_top1(sub), experiment)
    return [x for x in (plot, ref, abl, imp) if x is not None]


def _accuracy_plot(pair: _Pair, acc: Table, comps: list[float], pruners: list[str],
                   ablations: list[fig.Series], imp: fig.Series | None,
                   dense: tuple[float, int] | None,
                   experiment: Experiment | None) -> Figure | None:
    """Top-1 against the compression ratio: a pruner's line is its column of the accuracy
    table (mean, min–max band over seeds, ‡); dashed lines the ablations table's cells; IMP's
    rounds the reference line; the published runs a hatched band behind, within the
    compressions the user ran (the paper's reach to c = 3 would squeeze a sweep up to c = 1
    into the left third of the plot)."""
    series = []
    for j, p in enumerate(pruners):
        points = [fig.Point(c, cells[j].values, cells[j].collapsed)
                  for c, (_, cells) in zip(comps, acc.rows, strict=True) if cells[j].values]
        if points:
            series.append(fig.Series(p, fig.pruner_name(p), points))
    if not series and not ablations and imp is None:
        return None
    bands: list[fig.Series] = []
    if experiment is not None and series:
        from prunetui.core.published import MATCH

        lo = min(pt.compression for s in series for pt in s.points) - MATCH
        hi = max(pt.compression for s in series for pt in s.points) + MATCH
        for s in series:
            if s.pruner in experiment.top1:
                band = experiment.series(s.pruner)
                inside = [pt for pt in band.points if lo <= pt.compression <= hi]
                if len(inside) >= 2:  # a band needs a width
                    bands.append(fig.Series(s.pruner, band.label, inside))
    title = f"Top-1 against compression — {pair.where}"
    said = ["x: the compression ratio 10^c on a log axis (the ticks also give the fraction "
            "of weights kept), y: top-1 (%), one colour per pruner. Each pruner's line is the "
            "mean over seeds of its column of the accuracy table, the shaded band the min–max "
            f"over seeds; {COLLAPSE_MARK} marks a cell where a run collapsed."]
    if dense is not None:
        said.append(f"Dotted black: the dense network (c = 0), mean of {dense[1]} "
                    f"run{'s' * (dense[1] != 1)}.")
    if ablations:
        said.append("Broken lines in the pruner's colour: its ablations (the Ablations "
                    "table; dashed shuffle, dotted reinit, dash-dot invert).")
    if imp is not None:
        said.append("Diamonds: IMP's top-1 after each round (the IMP table), the reference "
                    "line.")
    if bands:
        said.append("Hatched bands: the SynFlow paper's runs (min–max of 3), within the "
                    "compressions shown.")
    everything = [*series, *ablations]
    dense_top1 = dense[0] if dense else None

    def draw() -> bytes:
        return fig.accuracy_png(everything, title=title, dense=dense_top1, published=bands,
                                reference=imp, zoom=True)

    return Figure("", title, pair.file("accuracy"), kind="accuracy", group=pair.group,
                  intro=" ".join(said), draw=draw)


def _dense_top1(runs: list[RunRow]) -> tuple[float, int] | None:
    """Top-1 of the dense network and the number of runs it is the mean of: the finished runs
    at c = 0, pooled over pruners (each keeps every weight there) but of one training setting
    (the one most runs have)."""
    groups: dict[str, list[float]] = {}
    for r in runs:
        if r.compression == 0 and r.status == RunStatus.FINISHED and r.top1 is not None:
            training = {k: v for k, v in _settings(r).items() if k not in _PRUNING_ONLY}
            groups.setdefault(json.dumps(training, sort_keys=True, default=str),
                              []).append(r.top1)
    if not groups:
        return None
    values = max(groups.values(), key=len)
    return statistics.fmean(values), len(values)


def _ablation_title(ablation: str) -> str:
    return ablation[:1].upper() + ablation[1:]


def _ablation_style(ablation: str) -> str:
    """The line style an ablation is drawn in: its own, a legacy one's namesake's (the first
    for a pair of flags), dashed for one the figures do not know."""
    first = ablation.removesuffix(LEGACY).split("+")[0]
    return first if first in fig.ABLATION_STYLES else "shuffle"


def _base_settings(r: RunRow) -> dict[str, Any]:
    """A run's settings without its ablation: an ablation and the plain run it controls agree
    on these."""
    return {k: v for k, v in _settings(r).items() if k not in _ABLATION_KEYS}


def _ablation_table(pair: _Pair, ablated: list[RunRow], plain: list[RunRow],
                    by_id: dict[str, RunRow]) -> tuple[Table, list[fig.Series]]:
    """Rows (pruner, compression) where an ablation ran; columns: the plain run (None) and,
    per ablation, its top-1 and its change against the plain runs of the same settings (Δ,
    paired by seed). Also the ablations as figure series (one per pruner and ablation)."""
    present = {ablation_of(r.config) for r in ablated}
    kinds = [a for a in ABLATIONS if a in present] + sorted(present - set(ABLATIONS))
    order = {p: i for i, p in enumerate([*PRUNERS, *fig.PRUNER_COLOURS])}
    keys = sorted({(r.pruner, r.compression) for r in ablated},
                  key=lambda k: (order.get(k[0], len(order)), k[0], k[1]))
    columns = ["None"] + [x for a in kinds for x in (_ablation_title(a),
                                                     f"Δ {_ablation_title(a)}")]
    intro = ("Top-1 of each ablation beside the plain runs (None) of the same settings, mean ± "
             "std over seeds. Δ: the ablation's top-1 minus the plain run's of the same seed, "
             "mean ± std over the seeds both have. Shuffle: each layer's mask permuted within "
             "the layer; Reinit: the kept weights drawn anew; Invert: the pruner keeps its "
             "lowest-ranked weights.")
    if any(a.endswith(LEGACY) for a in kinds):
        intro += (" (legacy): runs stored with the older shuffle_masks/reinit flags, shown "
                  "apart from runs of the ablation setting, whose code may apply the control "
                  "otherwise.")
    t = Table(pair.key("ablations"), "", f"Ablations — {pair.where}", ["Pruner", "Compression"],
              columns, [], 2, intro=intro)
    points: dict[tuple[str, str], list[fig.Point]] = {}
    for p, c in keys:
        here = _group(ablated, pruner=p, compression=c)
        runs = {a: [r for r in here if ablation_of(r.config) == a] for a in kinds}
        bases = {a: _base_settings(_replicates(rs)[0][0]) for a, rs in runs.items() if rs}
        row_base = next(iter(bases.values()))
        none_runs = _group(plain, pruner=p, compression=c)
        plain_cell = _matching(none_runs, row_base)
        cells = [plain_cell]
        for a in kinds:
            cell = _cell(runs[a], _top1)
            if a not in bases:
                cells += [cell, Cell(why_empty="not run", signed=True)]
                continue
            against = plain_cell if bases[a] == row_base else _matching(none_runs, bases[a])
            delta = _delta(cell, against, by_id)
            if bases[a] != row_base and delta.values:
                delta.note = "against plain runs of other settings than the None column's"
            cells += [cell, delta]
            if cell.values:
                points.setdefault((p, a), []).append(fig.Point(c, cell.values, cell.collapsed))
        t.rows.append(([fig.pruner_name(p), f"{c:g}"], cells))
    _note_missing(t, lambda lab, col: f"{lab[0]} at compression {lab[1]}, {col}")
    _mark_budgets(t, lambda lab: f"{lab[0]} at compression {lab[1]}")
    series = [fig.Series(p, f"{fig.pruner_name(p)}, {a}", pts, _ablation_style(a))
              for (p, a), pts in points.items()]
    return t, series


def _matching(runs: list[RunRow], base: dict[str, Any]) -> Cell:
    """The cell of the plain ``runs`` whose settings are ``base``: what an ablation with those
    settings is compared with."""
    same = [r for r in runs if _base_settings(r) == base]
    cell = _cell(same, _top1)
    if not same and runs:
        other = _base_settings(runs[0])
        keys = sorted(k for k in base.keys() | other.keys() if base.get(k) != other.get(k))
        cell.why_empty = ("no plain run with the ablations' settings (the plain runs have "
                          + ", ".join(f"{k}={other.get(k)}" for k in keys) + "; the ablations "
                          + ", ".join(f"{k}={base.get(k)}" for k in keys) + ")")
    return cell


def _delta(ablation: Cell, plain: Cell, by_id: dict[str, RunRow]) -> Cell:
    """The ablation's change against the plain runs: paired by seed (the same initial weights
    and data order, so the seed's own luck cancels), over the seeds both have; with no seed in
    common, the difference of the means, said in a note."""
    if not ablation.values or not plain.values:
        missing = "ablation" if not ablation.values else "plain"
        return Cell(why_empty=f"no finished {missing} run to compare", signed=True)
    mine = {by_id[i].seed: v for i, v in zip(ablation.run_ids, ablation.values, strict=True)}
    theirs = {by_id[i].seed: v for i, v in zip(plain.run_ids, plain.values, strict=True)}
    common = sorted(mine.keys() & theirs.keys())
    if common:
        return Cell([mine[s] - theirs[s] for s in common], signed=True,
                    run_ids=[i for i in ablation.run_ids if by_id[i].seed in theirs])
    return Cell([statistics.fmean(ablation.values) - statistics.fmean(plain.values)],
                signed=True, run_ids=list(ablation.run_ids),
                note="no seed in common with the plain runs: the difference of the means")


def _imp_table(pair: _Pair, runs: list[RunRow]) -> tuple[Table, fig.Series | None]:
    """IMP's rounds (``RunResult.rounds``: round 0 dense, the last at the run's compression):
    each round's compression, weights kept and top-1 over seeds, from the runs that reach the
    largest compression; and the same as the figure's reference line."""
    t = Table(pair.key("imp"), "", f"IMP reference: top-1 after each round — {pair.where}",
              ["Round", "Compression", "Kept"], ["Top-1"], [], 2)
    done = [r for r in runs
            if r.status == RunStatus.FINISHED and r.result is not None and r.result.rounds]
    if not done:
        t.notes.append(f"{DASH} no finished IMP run with its rounds stored ("
                       + ", ".join(sorted({str(r.status) for r in runs})) + ")")
        return t, None
    top = max(r.compression for r in done)
    chosen, left_out = _replicates([r for r in done if r.compression == top])
    rounds = max(len(r.result.rounds) for r in chosen if r.result)
    points = []
    for i in range(rounds):
        have = [(r, r.result.rounds[i]) for r in chosen
                if r.result is not None and len(r.result.rounds) > i]
        first = have[0][1]
        c = max(0.0, -math.log10(first.density)) if first.density > 0 else math.inf
        last = i == rounds - 1
        scored = [(r, rd) for r, rd in have if rd.top1 is not None]
        collapsed = last and any(r.collapsed for r, _ in have)
        t.rows.append(([f"{i}" + (" (final)" if last else ""), f"{c:.3f}", f"{first.kept:,}"],
                       [Cell([rd.top1 for _, rd in scored if rd.top1 is not None], collapsed,
                             "" if scored else "top-1 not recorded",
                             run_ids=[r.run_id for r, _ in scored])]))
        if scored:
            points.append(fig.Point(c, [rd.top1 for _, rd in scored if rd.top1 is not None],
                                    collapsed))
        if len({rd.kept for _, rd in have}) > 1:
            t.notes.append(f"round {i}: the runs kept different counts ("
                           + ", ".join(sorted({f'{rd.kept:,}' for _, rd in have})) + ")")
    t.intro = (f"Iterative magnitude pruning (lottery ticket rewinding): round 0 trains the "
               "dense network; each later round prunes the smallest-magnitude weights still "
               "kept, rewinds the rest and trains again, the last keeping 10^-c of the "
               f"weights (c = {top:g}). Top-1 after each round's training, mean ± std over "
               f"{len(chosen)} run{'s' * (len(chosen) != 1)}: the accuracy figure's reference "
               "line.")
    others = sorted({f"{r.compression:g}" for r in runs if r.compression != top})
    if others:
        t.notes.append(f"IMP runs at compression {', '.join(others)} are not shown: the runs "
                       f"at {top:g} reach further through the same rounds")
    if left_out:
        t.notes.append(left_out)
    _note_missing(t, lambda lab, col: f"round {lab[0]}")
    if any(c.collapsed for _, cells in t.rows for c in cells):
        t.notes.append(f"{COLLAPSE_MARK} layer collapse in at least one run's final network")
    n = len(chosen)
    label = f"IMP, after each round ({n} run{'s' * (n != 1)})"
    return t, (fig.Series(IMP, label, points) if points else None)


def _reference_table(pair: _Pair, acc: Table, comps: list[float], pruners: list[str],
                     published: Published, experiment: Experiment | None,
                     by_id: dict[str, RunRow]) -> Table:
    """The user's accuracy cells against the published runs at the compressions both have:
    the user's mean ± std, the published mean and min–max, the difference, where the mean
    lies against the range (⚑ beyond ``published.TOLERANCE``), and for a flagged row the
    settings in which the user's runs differ from the paper's recipe: a shorter run is
    expected to land elsewhere, and the row says so rather than crying wolf."""
    from prunetui.core.published import TOLERANCE, compare

    t = Table(pair.key("reference"), "", f"Against the published runs — {pair.where}",
              ["Pruner", "Compression"],
              ["Yours", "Published: mean (min–max)", "Δ mean", "Against the range",
               "Recipe differences"], [], 2)
    if experiment is None:
        have = sorted({f"{arch_name(e.model)} on {DATASET_NAMES.get(e.dataset, e.dataset)}"
                       for e in published.experiments.values()})
        t.intro = "The SynFlow paper's Figure 6 (synflow-fig6)."
        t.notes.append(f"Nothing to compare: it has no {pair.where}; its experiments are "
                       f"{', '.join(have)}.")
        return t
    cells: dict[tuple[str, float], list[float]] = {}
    settings: dict[tuple[str, float], dict[str, Any]] = {}
    own: dict[tuple[str, float], Cell] = {}
    for c, (_, row) in zip(comps, acc.rows, strict=True):
        for p, cell in zip(pruners, row, strict=True):
            if cell.values:
                cells[(p, c)], own[(p, c)] = cell.values, cell
                settings[(p, c)] = by_id[cell.run_ids[0]].config
    off_grid: list[str] = []
    compared = []
    for cmp in compare(experiment, cells, settings):
        if cmp.published is None:
            off_grid.append(f"{fig.pruner_name(cmp.pruner)} at {cmp.compression:g}")
        else:
            compared.append(cmp)
    # The differences every compared cell has are said once, above the table; a row lists
    # only its own others.
    shared = set(compared[0].differences) if compared else set()
    for cmp in compared[1:]:
        shared &= set(cmp.differences)
    for cmp in compared:
        rng = cmp.published_range
        assert rng is not None and cmp.published_mean is not None
        lo, hi = rng
        mean = cmp.user_mean
        gap = mean - hi if mean > hi else mean - lo if mean < lo else 0.0
        side = "above" if gap > 0 else "below"
        if gap == 0:
            against = "inside"
        elif not cmp.outside:
            against = f"{abs(gap):.2f} {side} (within {TOLERANCE:g} point)"
        else:
            against = (f"⚑ {abs(gap):.2f} {side}: "
                       + ("recipe differs" if cmp.differences else "same recipe"))
        mine = own[(cmp.pruner, cmp.compression)]
        t.rows.append(([fig.pruner_name(cmp.pruner), f"{cmp.compression:g}"], [
            Cell(list(cmp.user), mine.collapsed, run_ids=list(mine.run_ids),
                 budget=mine.budget),
            Cell(list(cmp.published),
                 shown=f"{cmp.published_mean:.2f} ({lo:.2f}–{hi:.2f})"),
            Cell([mean - cmp.published_mean], signed=True),
            Cell([gap], shown=against),
            Cell(shown=_differences_text(cmp.differences, shared) if cmp.outside else ""),
        ]))
    r = experiment.recipe
    optimizer = ("SGD with Nesterov momentum 0.9" if r.optimizer == "momentum"
                 else r.optimizer)
    t.intro = (f"Your top-1 (the accuracy table's cells) against the SynFlow paper's Figure 6 "
               f"({experiment.key}: {len(next(iter(experiment.top1.values())))} runs a cell), "
               f"at the compressions both have. The paper trained with {optimizer}, lr "
               f"{r.lr:g} (×{r.lr_drop_rate:g} at epochs "
               f"{', '.join(map(str, r.lr_drops)) or 'none'}), weight decay "
               f"{r.weight_decay:g}, batch {r.batch_size}, {r.post_epochs} epochs. ⚑: your "
               f"mean lies more than {TOLERANCE:g} point outside the published min–max (a "
               "band of 3 runs; top-1 moves about half a point between seeds). Runs trained "
               "otherwise (fewer epochs, another lr) are expected to land elsewhere: such a "
               "row says 'recipe differs' and lists how; ⚑ with 'same recipe' is a result to "
               "look into.")
    if shared:
        common = [d for d in compared[0].differences if d in shared]
        t.intro += " All your compared runs differ from it in: " + "; ".join(common) + "."
    if off_grid:
        t.notes.append(f"not compared (the paper has c = 0, 0.25, …, 3 and its five pruners "
                       f"only): {', '.join(off_grid)}")
    if any(p in ("snip", "grasp") for p, _ in cells):
        t.notes.append("not among the differences, as no setting removes it: the paper scores "
                       "SNIP and GraSP on 10 × classes random training images with "
                       "augmentation, prunetui on 10 images of each class without")
    if any(c.collapsed for _, cs in t.rows for c in cs):
        t.notes.append(f"{COLLAPSE_MARK} layer collapse in at least one of your runs")
    return t


def _differences_text(differences: Sequence[str], shared: set[str]) -> str:
    """A flagged row's recipe differences: those beyond the ones every row has (said above
    the table), or "as above"; "none" when the row was trained as the paper's."""
    if not differences:
        return "none"
    own = [d for d in differences if d not in shared]
    return "; ".join(own) if own else "as above"


def _layer_plot(pair: _Pair, density: Table, pruners: list[str],
                at: float) -> Figure | None:
    """The per-layer density table (2.3) drawn: layers on x, density on a log y, a line per
    pruner (the mean over its seeds, which prune alike)."""
    layers = [labels[0] for labels, _ in density.rows]
    lines = {p: [statistics.fmean(cells[j].values) for _, cells in density.rows]
             for j, p in enumerate(pruners)
             if density.rows and all(cells[j].values for _, cells in density.rows)}
    if not lines:
        return None
    title = f"Density of each layer at compression {at:g} — {pair.where}"

    def draw() -> bytes:
        return fig.layer_density_png(layers, lines, title=title)

    return Figure("", title, pair.file("layer_density"), kind="layer_density", group=pair.group,
                  intro="The per-layer density table drawn: x the layers in model order, y "
                        "the fraction of the layer's weights kept (log), a line per pruner; "
                        "✕ on the floor: an emptied layer.", draw=draw)


def critical_configs(rows: list[RunRow]) -> list[RunConfig]:
    """What the critical-compression analysis prunes: one config per model/dataset and pruner
    of the plain runs (IMP and ablations left out) that are current, with the settings most of
    that pruner's runs share (compression aside) and the lowest seed among them."""
    plain = [r for r in rows if is_current(r) and run_kind(r) == PLAIN]
    out = []
    for dataset, model in sorted({(r.dataset, r.model) for r in plain}):
        sub = _group(plain, dataset=dataset, model=model)
        for p in _pruners(sub):
            groups: dict[str, list[RunRow]] = {}
            for r in _group(sub, pruner=p):
                settings = {k: v for k, v in _settings(r).items() if k != "compression"}
                groups.setdefault(json.dumps(settings, sort_keys=True, default=str),
                                  []).append(r)
            chosen = max(groups.values(), key=len)
            out.append(RunConfig.from_dict(dict(min(chosen, key=lambda r: r.seed).config)))
    return out


def _grid_text(cs: Sequence[float]) -> str:
    steps = {round(b - a, 9) for a, b in itertools.pairwise(cs)}
    if len(cs) >= 3 and len(steps) == 1:
        return f"c = {cs[0]:g} to {cs[-1]:g} in steps of {steps.pop():g}"
    return "c = " + ", ".join(f"{c:g}" for c in cs)


def _critical_items(pair: _Pair, curves: list[CollapseCurve]) -> list[Table | Figure]:
    """The critical compression of each pruner (table) and each layer's kept fraction across
    the compressions pruned (figure, a panel per pruner)."""
    grid = sorted({p.compression for cv in curves for p in cv.points})
    t = Table(pair.key("critical"), "", f"Critical compression — {pair.where}", ["Pruner"],
              ["Critical c", "First break", "Critical c (a layer emptied)",
               "At the first break", "Whole again above it"], [], 2,
              intro=f"Pruned at initialization, without training, at {_grid_text(grid)}, "
                    "from the initial weights and settings of each pruner's stored runs (the "
                    "lowest seed). Critical c: the largest compression tested below the first "
                    "at which the network broke (no path left from input to output); the "
                    "exact value lies between it and the first break, which a finer grid "
                    "narrows. The SynFlow paper's definition, a layer pruned entirely, is the "
                    "third column (for a plain network never below the first; a ResNet's "
                    "shortcuts can carry the signal around an empty layer). Whole again: "
                    "compressions past the first break where a path was left; they do not "
                    "move the critical compression.")
    for cv in curves:
        crit, empty = cv.critical, cv.critical_by_empty_layer
        first = next((p for p in cv.points if p.compression == crit.first), None)
        t.rows.append(([fig.pruner_name(cv.pruner)], [
            Cell([crit.value] if crit.value is not None else [], shown=crit.text()),
            Cell([crit.first] if crit.first is not None else [],
                 shown=f"{crit.first:g}" if crit.first is not None else "none"),
            Cell([empty.value] if empty.value is not None else [], shown=empty.text()),
            Cell(shown=_break_text(first)),
            Cell(list(crit.recovered),
                 shown=", ".join(f"{c:g}" for c in crit.recovered) or "none"),
        ]))
    layers = curves[0].layers
    panels = {cv.pruner: cv.profiles() for cv in curves if cv.layers == layers}
    odd = [fig.pruner_name(cv.pruner) for cv in curves if cv.layers != layers]
    if odd:
        t.notes.append(f"not drawn in the figure, their pruned layers being others "
                       f"(--prune-batchnorm): {', '.join(odd)}")
    title = f"Fraction kept per layer across compressions — {pair.where}"

    def draw() -> bytes:
        return fig.layer_profiles_png(layers, panels, title=title)

    plot = Figure("", title, pair.file("layer_profiles"), kind="layer_profiles",
                  group=pair.group, draw=draw,
                  intro="From the critical-compression analysis: a panel per pruner, x the "
                        "layers, y the fraction of each layer's weights kept (log), a line per "
                        "compression from light (small c) to dark (large c), dashed where the "
                        "network collapsed, ✕ where a layer emptied.")
    return [t, plot]


def _break_text(point: CollapsePoint | None) -> str:
    if point is None:
        return "—"
    if point.empty_layers:
        return "emptied: " + ", ".join(point.empty_layers)
    if point.disconnected:
        return "no path from input to output; every layer keeps weights"
    return "collapsed"


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
    has_imp = any(r.pruner == IMP for r in runs)
    for key in keys:
        values = {json.dumps(s[key]) for s in settings.values()}
        if len(values) == 1:
            value = settings[runs[0].run_id][key]
            # Flags of earlier versions, and IMP's settings without an IMP run, at their
            # defaults say nothing about these runs.
            if not ((key in LEGACY_FIELDS and not value) or (key in IMP_FIELDS and not has_imp)):
                shared.append((key, _setting_text(key, value)))
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


def to_markdown(report: Report, title: str = "Pruning report", figures: bool = True) -> str:
    """The report as markdown, laid out like the reference. ``figures``: the PNGs are written
    beside it (an export into a folder), so each figure's section links its file; without,
    the section says where the figure would be (markdown on stdout has no files beside it)."""
    lines = [f"# {title}", "", f"{report.runs} stored run{'' if report.runs == 1 else 's'}.",
             ""]
    if report.stale:
        lines += [f"{len(report.stale)} other stored run{'s' * (len(report.stale) != 1)} "
                  "left out: made by an older prunetui, whose model or method then computed "
                  "something else than the same config does now "
                  f"({', '.join(report.stale[:5])}{', …' if len(report.stale) > 5 else ''}).",
                  ""]
    lines += _setup_markdown(report.setups)
    hists = [f for f in report.figures if f.kind == HISTOGRAM]
    items: list[Table | Figure] = [*report.tables,
                                   *(f for f in report.figures if f.kind != HISTOGRAM)]
    items.sort(key=lambda x: _section_key(x.section))  # stable: tables keep their order
    hists_done = not hists
    for item in items:
        if not hists_done and _section_key(item.section) > (2, 1):
            lines += _figures_markdown(hists, figures)
            hists_done = True
        lines += [f"#### {item.section} {item.title}", ""]
        if item.intro:
            lines += [item.intro, ""]
        if isinstance(item, Figure):
            lines += [_figure_link(item, figures), ""]
            continue
        if item.rows:  # a table of no rows is only its header; the notes say why
            lines += markdown_table(item) + ([""] if item.notes else [])
        lines += [f"- {n}" for n in item.notes]
        lines.append("")
    if not hists_done:
        lines += _figures_markdown(hists, figures)
    return "\n".join(lines).rstrip() + "\n"


def _figure_link(f: Figure, written: bool) -> str:
    if written:
        return f"![{f.title}]({f.filename})"
    return f"(Figure {f.filename}: written when the report is exported into a folder.)"


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


def _figures_markdown(figures: list[Figure], written: bool) -> list[str]:
    lines = ["#### 2.1 Weight histograms", "",
             "Weights after training. x: weight value, y: layer, colour: fraction of the "
             "layer's weights in the bin (kept weights only; normalized by the layer's total "
             "number of weights). The figures of one model/dataset share one colour scale and "
             "one weight axis, so that equal colours are equal fractions across pruners.", ""]
    for f in figures:
        lines += [f"##### {f.title}", _figure_link(f, written), ""]
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
    """Long-format CSV: one line per cell (table, row labels, column, mean, std, n, ...; text:
    what a cell shows instead of a statistic, such as a published range or a verdict)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["table", "section", "row", "column", "mean", "std", "n", "collapsed", "missing",
                "left_out", "epochs", "run_ids", "text", "note"])
    for t in report.tables:
        for labels, cells in t.rows:
            for col, c in zip(t.columns, cells, strict=True):
                j = c.to_json()
                std = j.get("std")
                w.writerow([t.key, t.section, " ".join(labels), col, j.get("mean", ""),
                            "" if std is None else std, j["n"], int(c.collapsed),
                            j.get("missing", ""), c.left_out, c.budget, " ".join(c.run_ids),
                            "" if c.shown is None else c.shown, c.note])
    return buf.getvalue()


def to_json(report: Report) -> str:
    """The report as one JSON document."""
    return json.dumps({"runs": report.runs, "stale": report.stale,
                       "setup": [s.to_json() for s in report.setups],
                       "tables": [t.to_json() for t in report.tables],
                       "figures": [f.to_json() for f in report.figures]}, indent=2)

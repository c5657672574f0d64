"""The SynFlow paper's Figure 6 (top-1 of five pruners at 13 compressions, 3 runs each, for 12
model/dataset pairs), shipped as ``reference_data/synflow-fig6.json`` with its provenance, and
a comparison of the user's runs against it.

The file's names map onto ours: models ``vgg11-bn``, ``vgg16-bn``, ``resnet18 (...)`` →
``resnet18``, ``wide-resnet18 (...)`` → ``wide-resnet18``; datasets and pruners keep their
names. Each experiment's recipe becomes our ``RunConfig`` settings (``Experiment.settings``,
``Experiment.sweep_spec``). ``momentum`` is the same optimizer in both: SGD with Nesterov
momentum 0.9 (``core.train.make_optimizer``, the reference's ``Utils/load.py``), weight decay on
every parameter, the lr multiplied by ``lr_drop_rate`` after each epoch in ``lr_drops``.

Two differences that no setting removes (so the comparison does not list them): the reference
scores SNIP/GraSP on a random subset of 10 × classes training images with training-time
augmentation, ours on 10 images of every class without it; and the paper's ResNet-18s and
Tiny-ImageNet are the reference repository's (``Models/tinyimagenet_resnet.py``), which
prunetui's catalog may not have (``Experiment.unsupported``).
"""

from __future__ import annotations

import functools
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunetui.core import catalog
from prunetui.core.config import RunConfig
from prunetui.core.errors import DataError
from prunetui.core.figures import Point, Series, pruner_name

if TYPE_CHECKING:
    from prunetui.core.sweep import SweepSpec

FILE = "synflow-fig6.json"
# The user's mean may sit this many top-1 points outside the published min–max before a row is
# flagged: the band is 3 runs only, and top-1 on a 10,000-image test set moves by ~0.5 point
# between seeds.
TOLERANCE = 1.0
# A user's compression matches a published one only when they are equal to this: the paper
# has no value at 0.05 or 1.1, and interpolating between its points would invent one.
MATCH = 1e-9

_MODELS = {"vgg11-bn": "vgg11-bn", "vgg16-bn": "vgg16-bn", "resnet18": "resnet18",
           "wide-resnet18": "wide-resnet18"}
_DATASETS = {"cifar10": "cifar10", "cifar100": "cifar100", "tiny-imagenet": "tiny-imagenet"}
_PRUNERS = {"rand": "rand", "mag": "mag", "snip": "snip", "grasp": "grasp",
            "synflow": "synflow"}
_RECIPE = ("optimizer", "lr", "lr_drops", "lr_drop_rate", "weight_decay", "batch_size",
           "pre_epochs", "post_epochs")


@dataclass(frozen=True)
class Recipe:
    """How the paper trained an experiment, in our setting names."""

    optimizer: str
    lr: float
    lr_drops: tuple[int, ...]
    lr_drop_rate: float
    weight_decay: float
    batch_size: int
    pre_epochs: int
    post_epochs: int


@dataclass(frozen=True)
class Experiment:
    """One panel of Figure 6: a model on a dataset, its recipe, and top-1 per pruner as 3 runs
    of one value per compression."""

    key: str  # the file's name for it, e.g. "cifar10_lottery_vgg16_bn"
    model: str  # ours, e.g. "resnet18"
    dataset: str
    model_source: str  # as the file writes it, e.g. "resnet18 (Models/tinyimagenet_resnet.py)"
    compressions: tuple[float, ...]
    top1: Mapping[str, tuple[tuple[float, ...], ...]]  # pruner -> runs -> per compression
    recipe: Recipe
    scope: str
    schedule: str
    iterations: Mapping[str, int]  # pruning iterations per pruner

    @property
    def pruners(self) -> list[str]:
        """The pruners it has, in the catalog's order."""
        return [p for p in _PRUNERS.values() if p in self.top1]

    def unsupported(self) -> str | None:
        """Why prunetui cannot run this experiment (a model or dataset it lacks), or None."""
        missing = [f"{what} {name!r}" for what, name, known in (
            ("model", self.model, catalog.MODELS), ("dataset", self.dataset, catalog.DATASETS))
            if name not in known]
        return f"{' and '.join(missing)} not in prunetui's catalog" if missing else None

    def runs_at(self, pruner: str, compression: float) -> tuple[float, ...] | None:
        """The published runs' top-1 of ``pruner`` at ``compression`` (equal within ``MATCH``),
        or None when the paper has no such cell."""
        runs = self.top1.get(pruner)
        if runs is None:
            return None
        for i, c in enumerate(self.compressions):
            if abs(c - compression) <= MATCH:
                return tuple(run[i] for run in runs)
        return None

    def settings(self, pruner: str) -> dict[str, Any]:
        """``RunConfig`` keyword arguments reproducing the paper's run of ``pruner`` (all but
        compression and seed). A pruner the paper did not run gets the same recipe and its
        own default pruning iterations (``prune_iterations`` None)."""
        r = self.recipe
        return {"model": self.model, "dataset": self.dataset, "pruner": pruner,
                "scope": self.scope, "schedule": self.schedule,
                "prune_iterations": self.iterations.get(pruner),
                # The reference's --prune-dataset-ratio 10: 10 × classes images (see above).
                "prune_samples_per_class": 10,
                "optimizer": r.optimizer, "lr": r.lr, "lr_drops": r.lr_drops,
                "lr_drop_rate": r.lr_drop_rate, "weight_decay": r.weight_decay,
                "batch_size": r.batch_size, "pre_epochs": r.pre_epochs,
                "post_epochs": r.post_epochs}

    def run_config(self, pruner: str, compression: float, seed: int = 0) -> RunConfig:
        """The paper's run of ``pruner`` at ``compression`` as a RunConfig (not validated:
        ``unsupported`` says when our catalog lacks its model or dataset)."""
        return RunConfig(compression=compression, seed=seed, **self.settings(pruner))

    def sweep_spec(self, seeds: Sequence[int] = (0, 1, 2), pruners: Sequence[str] | None = None,
                   compressions: Sequence[float] | None = None, name: str = "") -> SweepSpec:
        """The experiment as a ``core.sweep.SweepSpec`` (its recipe shared, the pruning
        iterations per pruner), over all its pruners and compressions unless narrowed."""
        from prunetui.core.sweep import SweepSpec

        shared = {k: v for k, v in self.settings("rand").items()
                  if k not in ("model", "dataset", "pruner", "prune_iterations")}
        chosen = list(pruners) if pruners is not None else self.pruners
        return SweepSpec(models=[self.model], datasets=[self.dataset], pruners=chosen,
                         compressions=list(compressions if compressions is not None
                                           else self.compressions),
                         seeds=list(seeds), settings=shared,
                         overrides={p: {"prune_iterations": self.iterations[p]}
                                    for p in chosen if p in self.iterations},
                         name=name or f"synflow-fig6-{self.key}")

    def series(self, pruner: str) -> Series:
        """The published runs of ``pruner`` as a figure series (for ``accuracy_png``'s
        ``published`` band)."""
        runs = self.top1[pruner]
        points = tuple(Point(c, tuple(run[i] for run in runs))
                       for i, c in enumerate(self.compressions))
        return Series(pruner, f"{pruner_name(pruner)}, published ({len(runs)} runs)", points)


@dataclass(frozen=True)
class Published:
    """The whole file: its provenance and its experiments by key."""

    what: str
    source: str
    layout: str
    pruning_note: str
    experiments: Mapping[str, Experiment]

    def find(self, model: str, dataset: str) -> Experiment | None:
        """The experiment of ``model`` (our name) on ``dataset``, or None."""
        return next((e for e in self.experiments.values()
                     if e.model == model and e.dataset == dataset), None)


def load_published(path: Path | None = None) -> Published:
    """Load Figure 6's data: the file shipped with prunetui, or ``path``. A missing or
    malformed file is a ``DataError`` naming it."""
    if path is None:
        return _shipped()
    return _load(path.read_text() if path.exists() else None, str(path))


@functools.lru_cache(maxsize=1)
def _shipped() -> Published:
    res = resources.files("prunetui.core").joinpath("reference_data", FILE)
    return _load(res.read_text(encoding="utf-8") if res.is_file() else None, str(res))


def _load(text: str | None, where: str) -> Published:
    if text is None:
        raise DataError(f"published data {where} not found")
    try:
        data = json.loads(text)
        pruning = data["pruning"]
        comps = tuple(float(c) for c in data["compressions"])
        experiments = {key: _experiment(key, e, comps, pruning)
                       for key, e in data["experiments"].items()}
        return Published(str(data["what"]), str(data["source"]), str(data["layout"]),
                         str(pruning.get("note", "")), experiments)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"published data {where} is malformed: "
                        f"{type(e).__name__}: {e}") from None


def _experiment(key: str, e: dict[str, Any], comps: tuple[float, ...],
                pruning: dict[str, Any]) -> Experiment:
    model = str(e["model"]).split(" (")[0].strip()
    if model not in _MODELS:
        raise ValueError(f"experiment {key}: unknown model {e['model']!r}")
    if e["dataset"] not in _DATASETS:
        raise ValueError(f"experiment {key}: unknown dataset {e['dataset']!r}")
    top1: dict[str, tuple[tuple[float, ...], ...]] = {}
    for name, runs in e["top1"].items():
        if name not in _PRUNERS:
            raise ValueError(f"experiment {key}: unknown pruner {name!r}")
        rows = tuple(tuple(float(v) for v in run) for run in runs)
        if not rows or any(len(r) != len(comps) or not all(map(math.isfinite, r))
                           for r in rows):
            raise ValueError(f"experiment {key}, {name}: each run needs {len(comps)} finite "
                             "values, one per compression")
        top1[_PRUNERS[name]] = rows
    r = e["recipe"]
    # "momentum (SGD, Nesterov, 0.9)": the first word is the reference's (and our) name.
    optimizer = str(r["optimizer"]).split()[0]
    if optimizer not in catalog.OPTIMIZERS:
        raise ValueError(f"experiment {key}: unknown optimizer {r['optimizer']!r}")
    recipe = Recipe(optimizer, float(r["lr"]), tuple(int(x) for x in r["lr_drops"]),
                    float(r["lr_drop_rate"]), float(r["weight_decay"]), int(r["batch_size"]),
                    int(r["pre_epochs"]), int(r["post_epochs"]))
    iterations = {_PRUNERS[p]: int(n) for p, n in pruning["iterations"].items()}
    return Experiment(key, _MODELS[model], _DATASETS[e["dataset"]], str(e["model"]), comps,
                      top1, recipe, str(pruning["scope"]), str(pruning["schedule"]), iterations)


# -- comparison ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """One cell (pruner, compression): the user's runs against the paper's."""

    pruner: str
    compression: float
    user: tuple[float, ...]  # top-1 of each of the user's runs (seeds)
    published: tuple[float, ...] | None  # the paper's 3 runs; None: no such cell in the paper
    differences: tuple[str, ...]  # recipe differences, "yours vs the paper's"

    @property
    def user_mean(self) -> float:
        """Mean of the user's runs."""
        return statistics.fmean(self.user)

    @property
    def published_mean(self) -> float | None:
        """Mean of the paper's runs, None without any."""
        return statistics.fmean(self.published) if self.published else None

    @property
    def published_range(self) -> tuple[float, float] | None:
        """(min, max) of the paper's runs, None without any."""
        return (min(self.published), max(self.published)) if self.published else None

    @property
    def outside(self) -> bool:
        """The user's mean lies more than ``TOLERANCE`` points outside the published range."""
        rng = self.published_range
        return rng is not None and not (rng[0] - TOLERANCE <= self.user_mean
                                        <= rng[1] + TOLERANCE)

    @property
    def verdict(self) -> str:
        """"not in the paper", "within the published range", "differs by recipe" (outside,
        but the runs were not trained as the paper's were: expected, not a failure) or
        "outside the published range" (trained as the paper's, and still outside)."""
        if self.published is None:
            return "not in the paper"
        if not self.outside:
            return "within the published range"
        return "differs by recipe" if self.differences else "outside the published range"


def compare(experiment: Experiment, cells: Mapping[tuple[str, float], Sequence[float]],
            settings: Mapping[tuple[str, float], Mapping[str, Any]]) -> list[Comparison]:
    """Compare the user's cells with the paper's.

    ``cells[(pruner, compression)]``: top-1 (%) of the user's runs of that cell (one per seed;
    a cell without any is left out). ``settings[(pruner, compression)]``: the cell's run
    settings (a ``RunConfig.to_dict()`` or a stored run's config; missing keys take
    RunConfig's defaults). A compression matches the paper's only when equal within ``MATCH``
    (the paper has 0, 0.25, …, 3): a user's 0.05 or 3.5 gives a row with ``published`` None,
    as does a pruner the paper did not run. Rows come in the catalog's pruner order, then by
    compression."""
    rows: list[Comparison] = []
    order = {p: i for i, p in enumerate(dict.fromkeys([*catalog.PRUNERS,
                                                       *catalog.PRUNER_COLOURS]))}
    for (pruner, c), values in sorted(cells.items(),
                                      key=lambda kv: (order.get(kv[0][0], len(order)),
                                                      kv[0][0], kv[0][1])):
        if not values:
            continue
        published = experiment.runs_at(pruner, c)
        diffs = (recipe_differences(experiment, pruner, settings.get((pruner, c), {}))
                 if published is not None else ())
        rows.append(Comparison(pruner, c, tuple(float(v) for v in values), published,
                               tuple(diffs)))
    return rows


# Options the paper did not use (ablations, pruning biases or batch norm, bf16 training): set
# in the user's config, they make a different experiment.
_NOT_IN_PAPER = ("shuffle_masks", "reinit", "prune_bias", "prune_batchnorm", "amp")


def recipe_differences(experiment: Experiment, pruner: str,
                       settings: Mapping[str, Any]) -> list[str]:
    """Each setting of the user's run that differs from the paper's run of ``pruner``, as
    "<name> <yours> vs <paper's>", e.g. "post_epochs 2 vs 160", "lr 0.01 vs 0.1"."""
    known = {f.name for f in fields(RunConfig)}
    cfg = RunConfig(**{k: v for k, v in settings.items() if k in known})
    paper = RunConfig(compression=cfg.compression, seed=cfg.seed,
                      **experiment.settings(pruner))
    out: list[str] = []
    for name in ("model", "dataset", "pruner", "scope", "schedule", *_RECIPE):
        mine, theirs = getattr(cfg, name), getattr(paper, name)
        if mine != theirs:
            out.append(f"{name} {_show(mine)} vs {_show(theirs)}")
    if cfg.iterations != paper.iterations:
        out.append(f"prune_iterations {cfg.iterations} vs {paper.iterations}")
    if pruner in catalog.DATA_PRUNERS and \
            cfg.prune_samples_per_class != paper.prune_samples_per_class:
        out.append(f"prune_samples_per_class {cfg.prune_samples_per_class} vs "
                   f"{paper.prune_samples_per_class}")
    for name in ("ablation", "label_smoothing"):  # what the paper's runs left at its default
        if getattr(cfg, name) != getattr(RunConfig(), name):
            out.append(f"{name} {_show(getattr(cfg, name))} vs "
                       f"{_show(getattr(RunConfig(), name))}")
    for name in _NOT_IN_PAPER:
        if getattr(cfg, name):
            out.append(f"{name} {_show(getattr(cfg, name))} vs {_show(False)}")
    return out


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)

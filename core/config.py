"""The typed, validated, hashable description of one run, and every setting's metadata.

``RunConfig.run_id`` is a short hash of every field that changes a run's numbers, so the same
config is the same run: a second request reports the stored result, an interrupted one resumes.
Where a run executes (device, data dir, checkpoint cadence) is not part of its identity.

Each field is declared once, with its ``Setting`` (help, label, group, CLI flag, bounds or
choices, grid axis): the CLI's options of ``run``/``inspect``, ``sweep --set`` and the TOML
keys, the app's form, ``--help``, the README's option table and ``validate`` all read
``SETTINGS``. Adding a setting is adding a field here (and using it in the engine).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import typing
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from prunetui.core import catalog
from prunetui.core.errors import ConfigError, choices_message

MAX_SEED = 2**32 - 1
# Fields of stored runs that are no setting any more (no option, no form field): read, not
# run; each with what it is now, the ablation that does what it meant to do.
LEGACY_ABLATIONS = {"shuffle_masks": "shuffle", "reinit": "reinit"}
LEGACY_FIELDS = tuple(LEGACY_ABLATIONS)
DEFAULT_IMP_RATE = 0.2
# Settings only IMP reads (every other pruner's runs hold their defaults).
IMP_FIELDS = ("imp_rate", "rewind_epoch")
# Upper bounds where a larger value can only be a typo: 100 (SynFlow's) iterations are the
# most any paper uses, and the timing's median is steady long before 1,000 passes.
MAX_PRUNE_ITERATIONS = 10_000
MAX_TIMING_REPEATS = 1_000
MAX_EPOCHS = 1_000_000  # beyond any schedule: a value above it is a typo (10^30 trains forever)

# Matched whole (fullmatch: "$" also matches before a final newline), ASCII digits only
# (\d takes other scripts' digits), an index torch can parse: anything else is a traceback
# from torch.device.
_DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(:[0-9]{1,9})?")

# The app's Options groups and the order of the README's table.
GROUPS = ("Model & data", "Pruning", "Training", "Timing", "Device")
MODEL, PRUNING, TRAINING, TIMING, DEVICE = GROUPS

# How a grid axis is filled when a sweep does not list it: it must be given ("required"),
# the field's default alone ("default"), or every choice ("all").
AxisDefault = Literal["required", "default", "all"]


@dataclass(frozen=True)
class Setting:
    """How one ``RunConfig`` field is shown, typed on the command line and checked.

    ``choices``: the valid values (a catalog dict or tuple, read when used, so entries added
    to the catalog count). ``low``/``high``: numeric bounds, open when ``*_open``. ``axis``:
    the sweep grid axis listing this field (``models``), with ``axis_default``. ``inspect``:
    ``prunetui inspect`` takes it too. ``execution``: where or how a run executes, not part of
    its identity. ``default_help``: the default in words where the value does not say it."""

    label: str
    help: str
    group: str
    flag: str = ""
    choices: Collection[str] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    axis: str = ""
    axis_default: AxisDefault = "default"
    # With axis_default "all": the values a sweep takes when it names none (default: every
    # choice).
    axis_values: Collection[str] | None = None
    inspect: bool = False
    execution: bool = False
    default_help: str = ""
    name: str = ""  # the field's name, filled in by ``SETTINGS``
    value_type: Any = None  # the field's type, filled in by ``SETTINGS``

    @property
    def cli_flag(self) -> str:
        """``--post-epochs``: the option of ``run`` (and ``inspect``)."""
        return self.flag or "--" + self.name.replace("_", "-")

    @functools.cached_property
    def kind(self) -> str:
        """The widget and parser it takes: switch, select, list (of integers), or input."""
        if self.value_type is bool:
            return "switch"
        if self.choices is not None:
            return "select"
        if self.value_type == tuple[int, ...]:
            return "list"
        return "input"

    @functools.cached_property
    def optional(self) -> bool:
        """Whether None is a value (it means a default that depends on other fields)."""
        return self.value_type == (int | None)

    @functools.cached_property
    def number(self) -> type | None:
        """int or float for a numeric setting (a list's items for ``list``), else None."""
        if self.value_type in (int, int | None, tuple[int, ...]):
            return int
        return float if self.value_type is float else None

    def choice_list(self) -> list[str]:
        """The valid values, in catalog order."""
        return list(self.choices or ())

    def bounds_text(self) -> str:
        """'an integer >= 1', 'a number in (0, 1]': what a value must be, in words."""
        what = "an integer" if self.number is int else "a number"
        lo, hi = self.low, self.high
        if lo is not None and hi is not None:
            if self.number is int and not (self.low_open or self.high_open):
                return f"{what} from {_num(lo)} to {_num(hi)}"
            return (f"{what} in {'(' if self.low_open else '['}{_num(lo)}, {_num(hi)}"
                    f"{')' if self.high_open else ']'}")
        if lo is not None:
            return f"{what} {'>' if self.low_open else '>='} {_num(lo)}"
        if hi is not None:
            return f"{what} {'<' if self.high_open else '<='} {_num(hi)}"
        return what

    def check(self, value: Any) -> None:
        """Raise ``ConfigError`` naming this field unless ``value`` has its type, is among
        its choices and within its bounds."""
        if self.choices is not None:
            if value not in self.choices:
                raise ConfigError(field=self.name, value=value, choices=self.choice_list())
            return
        if self.value_type is bool:
            if not isinstance(value, bool):
                raise ConfigError(field=self.name, value=value, hint="it must be true or false")
            return
        if self.number is None or self.kind == "list" or (value is None and self.optional):
            return
        if self.number is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = (isinstance(value, int | float) and not isinstance(value, bool)
                  and math.isfinite(value))
        if not (ok and self._within(value)):
            raise ConfigError(field=self.name, value=value,
                              hint=f"it must be {self.bounds_text()}")

    def _within(self, v: float) -> bool:
        lo, hi = self.low, self.high
        if lo is not None and (v <= lo if self.low_open else v < lo):
            return False
        return not (hi is not None and (v >= hi if self.high_open else v > hi))


def _num(x: float) -> str:
    return f"{x:g}" if abs(x) < 1e6 else str(int(x))


def _setting(default: Any, **meta: Any) -> Any:
    """A dataclass field with its ``Setting`` (``dataclasses.field``; typed as the value)."""
    return field(default=default, metadata={"setting": Setting(**meta)})


def _iterations_help() -> str:
    special = [f"{p.default_iterations} for {p.name}" for p in catalog.PRUNERS.values()
               if p.default_iterations != 1]
    return ", ".join([*special, "1 otherwise"])


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one prune-and-train run. Build with keywords; call ``validate``.

    Field order is the order of the CLI's options and the app's form within each group."""

    model: str = _setting(
        "fc", label="Model", help="Model; see `prunetui models`.", group=MODEL,
        choices=catalog.MODELS, axis="models", axis_default="required", inspect=True)
    dataset: str = _setting(
        "mnist", label="Dataset", help="Dataset; see `prunetui datasets`.", group=MODEL,
        choices=catalog.DATASETS, axis="datasets", axis_default="required", inspect=True)
    pruner: str = _setting(
        "synflow", label="Pruner", help="Pruning method; see `prunetui pruners`.",
        group=PRUNING,
        choices=catalog.PRUNERS, axis="pruners", axis_default="all",
        axis_values=catalog.DEFAULT_PRUNERS, inspect=True)
    compression: float = _setting(
        1.0, label="Compression", help="Keep exactly round(prunable × 10^-c) weights; 0 is dense.",
        group=PRUNING, low=0, axis="compressions", axis_default="required", inspect=True)
    scope: str = _setting(
        "global", label="Scope", help="global: one ranking over all layers; local: one per layer.",
        group=PRUNING, choices=catalog.SCOPES, inspect=True)
    schedule: str = _setting(
        "exponential", label="Schedule", help="How the kept fraction shrinks over iterations.",
        group=PRUNING, choices=catalog.SCHEDULES, inspect=True)
    # None means the pruner's default (its catalog entry: 100 for synflow, 1 for the rest).
    prune_iterations: int | None = _setting(
        None, label="Iterations", help="Pruning iterations.", group=PRUNING, low=1,
        high=MAX_PRUNE_ITERATIONS, inspect=True, default_help=_iterations_help())
    prune_samples_per_class: int = _setting(
        10, label="Samples/cls", help="Images per class in the batch SNIP and GraSP score.",
        group=PRUNING, low=1, inspect=True)
    prune_bias: bool = _setting(
        False, label="Prune bias", help="Prune biases too.", group=PRUNING, inspect=True)
    prune_batchnorm: bool = _setting(
        False, label="Prune BN", help="Prune batch-norm parameters too.", group=PRUNING,
        inspect=True)
    ablation: str = _setting(
        "none", label="Ablation", help="A control of what the pruner found (Frankle et al. "
        "2021): shuffle permutes each layer's mask, kept weights keeping their values (random "
        "pruning at the method's per-layer densities); reinit re-draws the kept weights from "
        "the model's init; invert keeps the lowest-ranked weights instead.", group=PRUNING,
        choices=catalog.ABLATIONS, axis="ablations", inspect=True)
    imp_rate: float = _setting(
        DEFAULT_IMP_RATE, label="IMP rate", help="With --pruner imp: the fraction of the "
        "remaining weights each round prunes.", group=PRUNING, low=0, high=1, low_open=True,
        high_open=True)
    rewind_epoch: int = _setting(
        0, label="Rewind to", help="With --pruner imp: the epoch of the dense round the kept "
        "weights are rewound to after each pruning (0: the initialization, the original "
        "lottery ticket; k > 0: late rewinding).", group=PRUNING, low=0)
    pre_epochs: int = _setting(
        0, label="Pre-epochs", help="Dense training epochs before pruning (e.g. for mag).",
        group=TRAINING, low=0, high=MAX_EPOCHS)
    # Post-training goes on with pre-training's optimizer state and lr schedule (as the
    # SynFlow code's singleshot experiment, the reference report's, does) instead of fresh
    # ones. Only meaningful with pre_epochs; normalised to False without.
    keep_optimizer: bool = _setting(
        False, label="Keep optim", help="With pre-epochs: post-training continues "
        "pre-training's optimizer state and lr schedule (as the SynFlow code does) instead "
        "of fresh ones.", group=TRAINING)
    post_epochs: int = _setting(
        10, label="Epochs", help="Training epochs after pruning.", group=TRAINING, low=0,
        high=MAX_EPOCHS)
    optimizer: str = _setting(
        "adam", label="Optimizer", help="Optimizer (momentum: SGD, Nesterov, 0.9).",
        group=TRAINING, choices=catalog.OPTIMIZERS)
    lr: float = _setting(
        0.001, label="LR", help="Learning rate.", group=TRAINING, low=0, low_open=True)
    lr_drops: tuple[int, ...] = _setting(
        (), label="LR drops", help="Epochs at which the lr is multiplied by the drop rate "
        "(repeat the option, or a comma list).", group=TRAINING)
    lr_drop_rate: float = _setting(
        0.1, label="LR drop ×", help="Factor applied to the lr at each drop.", group=TRAINING,
        low=0, low_open=True, high=1)
    weight_decay: float = _setting(
        0.0, label="Weight decay", help="Weight decay (L2).", group=TRAINING, low=0)
    label_smoothing: float = _setting(
        0.0, label="Label smooth", help="Label smoothing of the training loss (0 is off; the "
        "test loss stays plain cross-entropy).", group=TRAINING, low=0, high=1, high_open=True)
    batch_size: int = _setting(
        64, label="Batch size", help="Training batch size.", group=TRAINING, low=1)
    test_batch_size: int = _setting(
        256, label="Test batch", help="Test (and timing) batch size.", group=TRAINING, low=1)
    seed: int = _setting(
        1, label="Seed", help="Random seed (initial weights, pruning, data order).",
        group=MODEL, low=0, high=MAX_SEED, axis="seeds", inspect=True)
    amp: bool = _setting(
        False, label="AMP (bf16)", help="bf16 autocast on CUDA.", group=DEVICE)
    sparse_inference: bool = _setting(
        False, label="Sparse inf.", help="Also time the compacted network: dead units and "
        "filters removed, CSR kernels for very sparse linear layers.", group=TIMING)
    device: str = _setting(
        "auto", label="Device", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or "
        "mps.", group=DEVICE, inspect=True, execution=True)
    checkpoint_every: int = _setting(
        1, label="Checkpoint", help="Write a resume checkpoint every N epochs.", group=DEVICE,
        low=1, execution=True)
    timing_repeats: int = _setting(
        5, label="Timing reps", help="Timed passes over the test set for the inference "
        "time (median, min, max); when the slowest of 3 or more takes over 2× the fastest, "
        "the run warns that the machine was busy.",
        group=TIMING, low=1, high=MAX_TIMING_REPEATS, execution=True)
    # Free-form label grouping the runs of one sweep; not part of a run's identity.
    sweep: str = field(default="", compare=False)
    # The ablation switches before --ablation: read from stored runs (their ids include them),
    # never run anew: --shuffle-masks left most kept weights at 0 (shuffle keeps their values).
    shuffle_masks: bool = False
    reinit: bool = False

    def __post_init__(self) -> None:
        # Normalise so that equal runs hash equally (e.g. lr_drops given as a list, 1 vs 1.0).
        object.__setattr__(self, "lr_drops", tuple(int(e) for e in self.lr_drops))
        if isinstance(self.compression, int | float) and not isinstance(self.compression, bool):
            # + 0.0 turns -0.0 into 0.0: `--compression -0` is the dense run, not another id.
            object.__setattr__(self, "compression", float(self.compression) + 0.0)
        if self.prune_iterations is not None and self.prune_iterations == self._default_iters():
            object.__setattr__(self, "prune_iterations", None)
        if self.pre_epochs == 0:  # nothing to keep: the same run as without the flag
            object.__setattr__(self, "keep_optimizer", False)
        if self.pruner != "imp":  # IMP's own settings change nothing else: one run, one id
            for name, default in _IMP_DEFAULTS.items():
                object.__setattr__(self, name, default)

    def _default_iters(self) -> int:
        info = catalog.PRUNERS.get(self.pruner)
        return info.default_iterations if info is not None else 1

    @property
    def iterations(self) -> int:
        """Pruning iterations actually used (the pruner's default when not given)."""
        if self.prune_iterations is not None:
            return self.prune_iterations
        return self._default_iters()

    @property
    def density(self) -> float:
        """Fraction of prunable weights kept: 10^-compression."""
        return 10.0 ** (-self.compression)

    def identity(self) -> dict[str, Any]:
        """The fields that define the run's results and differ from their defaults, plus the
        model's ``revision`` when above 1 (as ``model_revision``).

        Leaving defaults out keeps every stored run's id stable when a later version adds a
        field (with a default that reproduces the old behaviour)."""
        out: dict[str, Any] = {}
        for name, default in _IDENTITY_DEFAULTS:
            value = getattr(self, name)
            if value != default:
                out[name] = list(value) if isinstance(value, tuple) else value
        # A model rebuilt or re-initialised since runs were stored gets new ids (revision 1,
        # every model's first, stays out so those ids do not move).
        model = catalog.MODELS.get(self.model)
        if model is not None and model.revision > 1:
            out["model_revision"] = model.revision
        return out

    @functools.cached_property
    def run_id(self) -> str:
        """A 10-hex-digit hash of ``identity()``: the same config is the same run (computed
        once per config: it is frozen, and a sweep of 250,000 cells asks for each twice)."""
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-ready values."""
        d = asdict(self)
        d["lr_drops"] = list(self.lr_drops)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Build from a dict, refusing unknown keys with the list of valid ones."""
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(choices_message("setting", key, sorted(known)))
        return cls(**data)

    def with_(self, **changes: Any) -> RunConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def validate(self) -> RunConfig:
        """Raise ``ConfigError`` naming the first invalid field; return self.

        Each field is checked against its ``Setting`` (type, choices, bounds), in declaration
        order; then what concerns several fields."""
        self.check_own(SETTINGS)
        if not (isinstance(self.device, str) and _DEVICE_RE.fullmatch(self.device)):
            raise ConfigError(field="device", value=self.device,
                              hint=f"use {catalog.DEVICE_HELP}")
        drops = list(self.lr_drops)
        if any(e <= 0 for e in drops):
            raise ConfigError(field="lr_drops", value=drops, hint="epochs count from 1")
        if drops != sorted(set(drops)):
            raise ConfigError(field="lr_drops", value=drops, hint="give increasing epochs")
        if self.post_epochs + self.pre_epochs == 0 and drops:
            raise ConfigError(field="lr_drops", value=drops,
                              problem="given, but there are no epochs to train")
        problem = catalog.MODELS[self.model].check_dataset(catalog.DATASETS[self.dataset])
        if problem:
            raise ConfigError(problem, field="dataset", value=self.dataset)
        self._check_pruner()
        return self

    def check_own(self, names: Collection[str]) -> None:
        """Check each of these fields against its ``Setting`` alone (type, choices, bounds),
        in declaration order: the first part of ``validate``."""
        for name in names:
            s = SETTINGS[name]
            s.check(self.iterations if name == "prune_iterations" else getattr(self, name))

    def _check_pruner(self) -> None:
        """What the pruner's kind allows (``catalog.PrunerInfo.kind``)."""
        if self.shuffle_masks or self.reinit:
            old = "shuffle_masks" if self.shuffle_masks else "reinit"
            new = LEGACY_ABLATIONS[old]
            raise ConfigError(field=old, value=True, problem="is an old switch no longer run "
                              "(stored runs that used it stay readable)",
                              hint=f"set ablation to {new}")
        kind = catalog.PRUNERS[self.pruner].kind
        if kind in ("layerwise", "training"):
            why = ("sets each layer's count itself" if kind == "layerwise"
                   else "prunes globally by magnitude, round after round")
            if self.scope != "global":
                raise ConfigError(field="scope", value=self.scope,
                                  problem=f"does not apply: {self.pruner} {why}",
                                  hint="leave it global")
            if self.iterations != 1:
                raise ConfigError(field="prune_iterations", value=self.iterations,
                                  problem=f"does not apply: {self.pruner} {why}",
                                  hint="leave it at 1")
        if kind != "training":
            return
        if self.ablation != "none":
            raise ConfigError(field="ablation", value=self.ablation,
                              problem="applies to pruning at initialization, not to imp")
        if self.pre_epochs:
            raise ConfigError(field="pre_epochs", value=self.pre_epochs,
                              problem="does not apply to imp: its round 0 trains the dense "
                              "network", hint="set it to 0")
        if self.post_epochs < 1:
            raise ConfigError(field="post_epochs", value=self.post_epochs,
                              hint="imp trains every round for {field} epochs: at least 1")
        if self.rewind_epoch > self.post_epochs:
            raise ConfigError(field="rewind_epoch", value=self.rewind_epoch,
                              hint=f"rewind to an epoch of the dense round: 0 to "
                              f"{self.post_epochs}")


def _settings() -> dict[str, Setting]:
    hints = typing.get_type_hints(RunConfig)
    out: dict[str, Setting] = {}
    for f in fields(RunConfig):
        meta = f.metadata.get("setting")
        if meta is not None:
            out[f.name] = replace(meta, name=f.name, value_type=hints[f.name])
    return out


# Fields that ``validate`` checks against their own Setting only, never together with another
# field (a check added to validate that involves one must take it out of here): a sweep
# validates each combination of the other fields once and checks these per cell.
SELF_CONTAINED = ("compression", "seed")
# (name, default) of the fields a run's identity is made of.
_IDENTITY_DEFAULTS = tuple((f.name, f.default) for f in fields(RunConfig)
                           if not f.metadata.get("setting", Setting("", "", "")).execution
                           and f.name != "sweep")
# Every setting, in field order: what the faces generate their options and forms from.
SETTINGS: dict[str, Setting] = _settings()
# The same settings in the order the faces show them: by group, then in field order.
ORDERED: tuple[Setting, ...] = tuple(sorted(SETTINGS.values(), key=lambda s: GROUPS.index(s.group)))
# Fields that say where or how a run executes, not what it computes.
EXECUTION_FIELDS = frozenset(s.name for s in SETTINGS.values() if s.execution)
# The sweep grid's axes (``models``, ...) and the field each lists, in field order.
AXES: dict[str, Setting] = {s.axis: s for s in SETTINGS.values() if s.axis}
_IMP_DEFAULTS = {f.name: f.default for f in fields(RunConfig) if f.name in IMP_FIELDS}
DEFAULTS = RunConfig()


def field_name(key: str) -> str:
    """A field's name from a key as users type it (``post-epochs``, ``post_epochs``)."""
    return key.strip().replace("-", "_")


def kept_count(total: int, compression: float) -> int:
    """Exact number of prunable weights kept out of ``total`` at ``compression``."""
    return round(total * 10.0 ** (-compression))


def check_leaves_weights(total: int, compression: float) -> None:
    """Refuse a compression that would keep no weight at all."""
    if kept_count(total, compression) < 1:
        most = math.log10(total * 2)  # largest c with round(total*10^-c) >= 1
        raise ConfigError(
            f"compression {compression:g} keeps no weight of {total:,} prunable ones; "
            f"use a compression below {most:.2f}", field="compression", value=compression)

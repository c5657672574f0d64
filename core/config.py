"""The typed, validated, hashable description of one run.

``RunConfig.run_id`` is a short hash of every field that changes a run's numbers, so the same
config is the same run: a second request reports the stored result, an interrupted one resumes.
Where a run executes (device, data dir, checkpoint cadence) is not part of its identity.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from prunetui.core import catalog
from prunetui.core.errors import ConfigError, choices_message

# Fields that say where or how a run executes, not what it computes.
EXECUTION_FIELDS = frozenset({"device", "checkpoint_every", "timing_repeats"})
MAX_SEED = 2**32 - 1

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one prune-and-train run. Build with keywords; call ``validate``."""

    model: str = "fc"
    dataset: str = "mnist"
    pruner: str = "synflow"
    compression: float = 1.0
    scope: str = "global"
    schedule: str = "exponential"
    # None means the pruner's default: 100 for synflow, 1 for the rest (SynFlow paper).
    prune_iterations: int | None = None
    prune_samples_per_class: int = 10
    prune_bias: bool = False
    prune_batchnorm: bool = False
    shuffle_masks: bool = False
    reinit: bool = False
    pre_epochs: int = 0
    # Post-training goes on with pre-training's optimizer state and lr schedule (as the
    # SynFlow code's singleshot experiment, the reference report's, does) instead of fresh
    # ones. Only meaningful with pre_epochs; normalised to False without.
    keep_optimizer: bool = False
    post_epochs: int = 10
    optimizer: str = "adam"
    lr: float = 0.001
    lr_drops: tuple[int, ...] = ()
    lr_drop_rate: float = 0.1
    weight_decay: float = 0.0
    batch_size: int = 64
    test_batch_size: int = 256
    seed: int = 1
    amp: bool = False
    sparse_inference: bool = False
    device: str = "auto"
    checkpoint_every: int = 1
    timing_repeats: int = 5
    # Free-form label grouping the runs of one sweep; not part of a run's identity.
    sweep: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        # Normalise so that equal runs hash equally (e.g. lr_drops given as a list, 1 vs 1.0).
        object.__setattr__(self, "lr_drops", tuple(int(e) for e in self.lr_drops))
        object.__setattr__(self, "compression", float(self.compression))
        if self.prune_iterations is not None and self.prune_iterations == self._default_iters():
            object.__setattr__(self, "prune_iterations", None)
        if self.pre_epochs == 0:  # nothing to keep: the same run as without the flag
            object.__setattr__(self, "keep_optimizer", False)

    def _default_iters(self) -> int:
        return 100 if self.pruner == "synflow" else 1

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
        for f in fields(self):
            if f.name in EXECUTION_FIELDS or f.name == "sweep":
                continue
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        # A model rebuilt or re-initialised since runs were stored gets new ids (revision 1,
        # every model's first, stays out so those ids do not move).
        model = catalog.MODELS.get(self.model)
        if model is not None and model.revision > 1:
            out["model_revision"] = model.revision
        return out

    @property
    def run_id(self) -> str:
        """A 10-hex-digit hash of ``identity()``: the same config is the same run."""
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
        """Raise ``ConfigError`` with one actionable line if any field is invalid; return self."""
        _choice("model", self.model, list(catalog.MODELS))
        _choice("dataset", self.dataset, list(catalog.DATASETS))
        _choice("pruner", self.pruner, list(catalog.PRUNERS))
        _choice("scope", self.scope, list(catalog.SCOPES))
        _choice("schedule", self.schedule, list(catalog.SCHEDULES))
        _choice("optimizer", self.optimizer, list(catalog.OPTIMIZERS))
        if not _DEVICE_RE.match(self.device):
            raise ConfigError(f"invalid device {self.device!r}; use {catalog.DEVICE_HELP}")
        if not math.isfinite(self.compression) or self.compression < 0:
            raise ConfigError(
                f"invalid compression {self.compression!r}; it must be >= 0 (keeps 10^-c of "
                "the weights; 0 is dense)"
            )
        _positive("post-epochs", self.post_epochs, allow_zero=True)
        _positive("pre-epochs", self.pre_epochs, allow_zero=True)
        _positive("batch-size", self.batch_size)
        _positive("test-batch-size", self.test_batch_size)
        _positive("prune-iterations", self.iterations)
        _positive("prune-samples-per-class", self.prune_samples_per_class)
        _positive("checkpoint-every", self.checkpoint_every)
        _positive("timing-repeats", self.timing_repeats)
        if self.post_epochs + self.pre_epochs == 0 and self.lr_drops:
            raise ConfigError("--lr-drops given but no epochs to train")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"invalid lr {self.lr!r}; it must be a positive number")
        if not (0 < self.lr_drop_rate <= 1):
            raise ConfigError(f"invalid lr-drop-rate {self.lr_drop_rate!r}; it must be in (0, 1]")
        if self.weight_decay < 0 or not math.isfinite(self.weight_decay):
            raise ConfigError(f"invalid weight-decay {self.weight_decay!r}; it must be >= 0")
        for e in self.lr_drops:
            if e <= 0:
                raise ConfigError(f"invalid lr-drops epoch {e}; epochs count from 1")
        if list(self.lr_drops) != sorted(set(self.lr_drops)):
            raise ConfigError(f"invalid lr-drops {list(self.lr_drops)}; give increasing epochs")
        if not 0 <= self.seed <= MAX_SEED:
            # Bounded as NumPy bounds seeds; far larger ones overflow torch and SQLite.
            raise ConfigError(f"invalid seed {self.seed}; it must be from 0 to {MAX_SEED}")
        problem = catalog.MODELS[self.model].check_dataset(catalog.DATASETS[self.dataset])
        if problem:
            raise ConfigError(problem)
        return self


def _choice(what: str, value: str, choices: list[str]) -> None:
    if value not in choices:
        raise ConfigError(choices_message(what, value, choices))


def _positive(what: str, value: int, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        bound = ">= 0" if allow_zero else ">= 1"
        raise ConfigError(f"invalid {what} {value!r}; it must be an integer {bound}")


def kept_count(total: int, compression: float) -> int:
    """Exact number of prunable weights kept out of ``total`` at ``compression``."""
    return round(total * 10.0 ** (-compression))


def check_leaves_weights(total: int, compression: float) -> None:
    """Refuse a compression that would keep no weight at all."""
    if kept_count(total, compression) < 1:
        most = math.log10(total * 2)  # largest c with round(total*10^-c) >= 1
        raise ConfigError(
            f"compression {compression:g} keeps no weight of {total:,} prunable ones; "
            f"use a compression below {most:.2f}"
        )

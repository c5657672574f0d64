"""What a run leaves: its structure after pruning and its finished result, as typed records.

The store keeps a result as JSON (``RunResult.to_dict``); ``RunResult.from_dict`` reads every
schema written so far, so results stored by older versions stay readable. The store, the
report, the CLI and the app read these attributes, never the JSON's keys. No torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from prunetui.core.config import RunConfig

# 1: the first stored results (no "schema" key). 2: "schema" and "version" added.
RESULT_SCHEMA = 2


@dataclass(frozen=True)
class Params:
    """Parameter counts: all of the model's, the prunable ones, and the prunable ones kept."""

    total: int
    prunable: int
    remaining: int


@dataclass(frozen=True)
class Flops:
    """Forward FLOPs of one image in the report's convention, dense and as pruned."""

    dense: int
    pruned: int
    ratio: float


@dataclass(frozen=True)
class Collapse:
    """Layers pruning emptied, and whether any path from input to output is left."""

    empty_layers: tuple[str, ...] = ()
    disconnected: bool = False
    collapsed: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Collapse:
        # Collapse means no path from input to output: older records also set "collapsed"
        # for a layer emptied behind a residual shortcut, which is only an empty layer.
        disconnected = bool(d.get("disconnected", False))
        return cls(tuple(d.get("empty_layers", ())), disconnected, disconnected)

    def to_dict(self) -> dict[str, Any]:
        return {"empty_layers": list(self.empty_layers), "disconnected": self.disconnected,
                "collapsed": self.collapsed}


@dataclass(frozen=True)
class Layer:
    """One prunable (or batch-norm) layer: size, what is kept, and its FLOPs."""

    name: str
    kind: str  # conv | linear | batchnorm
    shape: tuple[int, ...]
    params: int
    remaining: int
    density: float
    flops_dense: int
    flops_pruned: int
    bias_flops_dense: int = 0
    bias_flops_pruned: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Layer:
        return cls(name=str(d["name"]), kind=str(d["kind"]),
                   shape=tuple(int(s) for s in d["shape"]), params=int(d["params"]),
                   remaining=int(d["remaining"]), density=float(d["density"]),
                   flops_dense=int(d["flops_dense"]), flops_pruned=int(d["flops_pruned"]),
                   bias_flops_dense=int(d.get("bias_flops_dense", 0)),
                   bias_flops_pruned=int(d.get("bias_flops_pruned", 0)))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclass(frozen=True)
class Structure:
    """A (pruned) model's counts, FLOPs, per-layer rows and collapse record."""

    params: Params
    density: float
    flops: Flops
    layers: tuple[Layer, ...]
    collapse: Collapse

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Structure:
        return cls(params=Params(**d["params"]), density=float(d["density"]),
                   flops=Flops(**d["flops"]),
                   layers=tuple(Layer.from_dict(r) for r in d["layers"]),
                   collapse=Collapse.from_dict(d["collapse"]))

    def to_dict(self) -> dict[str, Any]:
        return {"params": asdict(self.params), "density": self.density,
                "flops": asdict(self.flops), "layers": [r.to_dict() for r in self.layers],
                "collapse": self.collapse.to_dict()}


@dataclass(frozen=True)
class Epoch:
    """One epoch's record: ``phase`` pretrain (before pruning) or train (after)."""

    phase: str
    epoch: int
    train_loss: float | None
    test_loss: float | None
    top1: float | None
    top5: float | None
    lr: float | None
    seconds: float | None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Epoch:
        def num(key: str) -> float | None:
            value = d.get(key)
            return None if value is None else float(value)

        return cls(str(d["phase"]), int(d["epoch"]), num("train_loss"), num("test_loss"),
                   num("top1"), num("top5"), num("lr"), num("seconds"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Compacted:
    """``--sparse-inference``: the compacted network's timing and what compaction did."""

    median: float
    min: float
    max: float
    structural: Any = None
    fallback: Any = None
    params_after: int | None = None
    stored_after: int | None = None
    max_abs_error: float | None = None


@dataclass(frozen=True)
class Inference:
    """Timed inference passes over the test set: median, fastest, slowest seconds."""

    median: float
    min: float
    max: float
    repeats: int
    batch_size: int
    images: int
    device: str
    compacted: Compacted | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Inference:
        c = d.get("compacted")
        fields = {k: d[k] for k in ("median", "min", "max", "repeats", "batch_size", "images")}
        return cls(**fields, device=str(d.get("device", "")),
                   compacted=Compacted(**c) if c else None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.compacted is None:
            del d["compacted"]
        return d


@dataclass(frozen=True)
class Round:
    """One round of iterative magnitude pruning: the weights it kept and its final top-1."""

    density: float
    kept: int
    top1: float | None


@dataclass(frozen=True)
class RunResult:
    """A finished run: its config, epochs, final metrics, structure, timing and provenance."""

    run_id: str
    config: dict[str, Any]
    epochs: tuple[Epoch, ...]
    top1: float
    top5: float
    test_loss: float
    structure: Structure
    inference: Inference
    prune_seconds: float
    seconds: float
    data: dict[str, Any] | None
    device: str
    threads: int | None
    torch: str
    version: str = ""  # prunetui's version (and git commit) that ran it; "" before schema 2
    rounds: tuple[Round, ...] = ()  # IMP's rounds, dense first; () for pruning at init
    schema: int = RESULT_SCHEMA
    status: str = field(default="finished", repr=False)

    # The structure's fields, read as the result's own (as its JSON has them).
    @property
    def params(self) -> Params:
        return self.structure.params

    @property
    def density(self) -> float:
        return self.structure.density

    @property
    def flops(self) -> Flops:
        return self.structure.flops

    @property
    def layers(self) -> tuple[Layer, ...]:
        return self.structure.layers

    @property
    def collapse(self) -> Collapse:
        return self.structure.collapse

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        """Read a stored result of any schema so far (``KeyError``/``TypeError``/``ValueError``
        on one that is not a result)."""
        threads = d.get("threads")
        return cls(
            run_id=str(d["run_id"]), config=dict(d["config"]),
            epochs=tuple(Epoch.from_dict(e) for e in d.get("epochs", ())),
            top1=float(d["top1"]), top5=float(d["top5"]), test_loss=float(d["test_loss"]),
            structure=Structure.from_dict(d), inference=Inference.from_dict(d["inference"]),
            prune_seconds=float(d.get("prune_seconds", 0.0)), seconds=float(d["seconds"]),
            data=d.get("data"), device=str(d.get("device", "")),
            threads=int(threads) if threads is not None else None,
            torch=str(d.get("torch", "")), version=str(d.get("version", "")),
            rounds=tuple(Round(**r) for r in d.get("rounds", ())),
            schema=int(d.get("schema", 1)))

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record the store keeps (and ``--json`` prints)."""
        return {
            "schema": self.schema, "run_id": self.run_id, "config": self.config,
            "status": self.status, "epochs": [e.to_dict() for e in self.epochs],
            "top1": self.top1, "top5": self.top5, "test_loss": self.test_loss,
            **self.structure.to_dict(),
            "inference": self.inference.to_dict(),
            "prune_seconds": self.prune_seconds, "seconds": self.seconds, "data": self.data,
            "device": self.device, "threads": self.threads, "torch": self.torch,
            "version": self.version,
            **({"rounds": [asdict(r) for r in self.rounds]} if self.rounds else {}),
        }


@dataclass(frozen=True)
class Inspection:
    """A model built and pruned at initialization (``prunetui inspect``): its structure,
    without training."""

    config: RunConfig
    structure: Structure
    prune_seconds: float
    device: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON ``inspect --json`` prints."""
        return {**self.structure.to_dict(), "config": self.config.to_dict(),
                "prune_seconds": self.prune_seconds, "device": self.device}

"""Typed stand-ins for what a run stores, for tests of the store, the report and the faces that
need many results without training them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from prunetui.core.config import RunConfig
from prunetui.core.run.result import (
    Collapse,
    Epoch,
    Flops,
    Inference,
    Layer,
    Params,
    RunResult,
    Structure,
)


def layer(name: str, *, kind: str = "linear", shape: Sequence[int] = (10, 4),
          params: int | None = None, density: float = 0.1, flops_dense: int | None = None,
          flops_pruned: int | None = None, remaining: int | None = None) -> Layer:
    """One layer's row; counts follow from ``shape`` and ``density`` unless given."""
    n = params if params is not None else math.prod(shape)
    dense = flops_dense if flops_dense is not None else n
    return Layer(name, kind, tuple(shape), n,
                 remaining if remaining is not None else round(n * density), density, dense,
                 flops_pruned if flops_pruned is not None else round(dense * density))


def structure(layers: Sequence[Layer] = (), *, density: float = 0.1, dense: int = 100,
              ratio: float = 0.1, collapsed: bool = False, total: int | None = None,
              empty: Sequence[str] = ()) -> Structure:
    """What pruning left: counts summed over ``layers``, the FLOP ``ratio`` of ``dense``."""
    prunable = sum(r.params for r in layers) or 100
    remaining = sum(r.remaining for r in layers) or round(prunable * density)
    return Structure(Params(total or prunable, prunable, remaining), density,
                     Flops(dense, round(dense * ratio), ratio), tuple(layers),
                     Collapse(tuple(empty), collapsed, collapsed))


def inference(t: float = 0.01, *, lo: float | None = None, hi: float | None = None,
              device: str = "cpu", images: int = 360, repeats: int = 5) -> Inference:
    """Timed passes of median ``t`` (fastest ``lo``, slowest ``hi``)."""
    return Inference(t, t if lo is None else lo, t if hi is None else hi, repeats, 256, images,
                     device)


def epochs(top1: Sequence[float], phase: str = "train") -> tuple[Epoch, ...]:
    """One epoch row per value of ``top1``."""
    return tuple(Epoch(phase, i, 1.0 / i, 1.1 / i, t, 99.0, 0.001, 0.1)
                 for i, t in enumerate(top1, start=1))


def result(config: RunConfig | dict[str, Any], top1: float, *,
           built: Structure | None = None, timing: Inference | None = None,
           history: Sequence[Epoch] = (), data: dict[str, Any] | None = None) -> RunResult:
    """A finished run's result for ``config``."""
    cfg = config.to_dict() if isinstance(config, RunConfig) else dict(config)
    run_id = config.run_id if isinstance(config, RunConfig) else str(cfg.get("run_id", ""))
    return RunResult(run_id=run_id, config=cfg, epochs=tuple(history), top1=top1, top5=99.0,
                     test_loss=0.5, structure=built or structure(),
                     inference=timing or inference(), prune_seconds=0.1, seconds=1.0,
                     data=data, device="cpu", threads=1, torch="test", version="test")

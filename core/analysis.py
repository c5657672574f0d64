"""Collapse analytics without training: prune at initialization over a range of compressions and
record, per compression, each layer's kept fraction, the FLOP ratio and whether the network
collapsed; from those, the critical compression (the SynFlow paper's Figure 1).

Each compression is pruned from the same initial weights (the config's seed), independently, as
a run at that compression would be: SynFlow's 100 iterations follow the schedule to that
compression, so one compression's masks cannot be reused for the next.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from prunetui.core.config import RunConfig
from prunetui.core.errors import ConfigError
from prunetui.core.events import CancelToken, Event, PruneStep
from prunetui.core.figures import LayerProfile

# More points than this is a typo (a step of 0.0001), not an analysis anyone waits for.
MAX_POINTS = 1000
_RANGE_HELP = "give start:stop:step (e.g. 0:4:0.25), a number, or a comma list of those"


def parse_compressions(text: str) -> list[float]:
    """Compressions from ``"0:4:0.25"`` (start:stop:step, stop included when the steps reach
    it), a number, or a comma list of either; sorted, without repeats.

    Values are computed in decimal, so "0:1:0.1" gives 0.3, not 0.30000000000000004. Anything
    else is one ``ConfigError`` line naming the bad part."""
    out: set[float] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            raise ConfigError(f"invalid compressions {text!r}: an empty item; {_RANGE_HELP}")
        out.update(_parse_part(part, text))
        if len(out) > MAX_POINTS:
            raise ConfigError(f"invalid compressions {text!r}: more than {MAX_POINTS} values")
    return sorted(out)


def _parse_part(part: str, text: str) -> list[float]:
    bits = part.split(":")
    if len(bits) not in (1, 3):
        raise ConfigError(f"invalid compression range {part!r}; {_RANGE_HELP}")
    try:
        nums = [Decimal(b.strip()) for b in bits]
    except InvalidOperation:
        raise ConfigError(f"invalid compression range {part!r}: not a number; "
                          f"{_RANGE_HELP}") from None
    if any(not n.is_finite() for n in nums):
        raise ConfigError(f"invalid compression range {part!r}: not a finite number")
    if nums[0] < 0:
        raise ConfigError(f"invalid compression {nums[0]} in {text!r}; it must be >= 0 "
                          "(keeps 10^-c of the weights; 0 is dense)")
    if len(nums) == 1:
        return [float(nums[0])]
    start, stop, step = nums
    if step <= 0:
        raise ConfigError(f"invalid compression range {part!r}: the step must be > 0")
    if stop < start:
        raise ConfigError(f"invalid compression range {part!r}: stop {stop} is below "
                          f"start {start}")
    count = int((stop - start) / step) + 1
    if count > MAX_POINTS:
        raise ConfigError(f"invalid compressions {text!r}: more than {MAX_POINTS} values")
    return [float(start + i * step) for i in range(count)]


@dataclass(frozen=True)
class Critical:
    """The critical compression on a grid of compressions: the largest compression tested
    below the first one at which the network broke (collapsed, or a layer emptied).

    Non-monotone grids are judged by the first break only: if c = 3 breaks, 3.25 does not and
    3.5 does, the critical compression is the point before 3 (2.75), and 3.25 is listed in
    ``recovered``. Where breaking is monotone in c, the exact critical compression lies in
    [``value``, ``first``): a finer grid narrows it."""

    value: float | None  # None: nothing broke (>= ``top``) or the first point broke (< it)
    first: float | None  # the smallest compression that broke; None if none did
    top: float  # the largest compression tested
    bottom: float  # the smallest compression tested
    recovered: tuple[float, ...]  # compressions above ``first`` that did not break

    def text(self) -> str:
        """In words: "3.25", "≥ 4 (no collapse up to 4)" or "< 0.25 (collapsed at the
        smallest compression tested)"."""
        if self.first is None:
            return f"≥ {self.top:g} (no collapse up to {self.top:g})"
        if self.value is None:
            return f"< {self.bottom:g} (collapsed at the smallest compression tested)"
        return f"{self.value:g}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, with the text."""
        return {"value": self.value, "first": self.first, "top": self.top,
                "bottom": self.bottom, "recovered": list(self.recovered), "text": self.text()}


@dataclass(frozen=True)
class CollapsePoint:
    """The pruned network at one compression."""

    compression: float
    density: float  # kept fraction of all prunable weights
    flop_ratio: float  # pruned / dense FLOPs
    layer_density: tuple[float, ...]  # per layer of ``CollapseCurve.layers``
    empty_layers: tuple[str, ...]  # layers whose mask keeps nothing
    disconnected: bool  # no path of kept weights from input to output
    collapsed: bool  # the result's collapse flag (empty layer or disconnected, per model)
    prune_seconds: float


@dataclass(frozen=True)
class CollapseCurve:
    """A model/dataset/pruner pruned at init over several compressions (ascending)."""

    model: str
    dataset: str
    pruner: str
    layers: tuple[str, ...]  # the pruned layers (conv, linear; batch norm when it is pruned)
    points: tuple[CollapsePoint, ...]

    @property
    def critical(self) -> Critical:
        """The critical compression by the engine's collapse flag (``collapsed``: for a plain
        net, a layer emptied or no path from input to output; for a ResNet, as the engine
        defines it), judged as ``Critical`` says."""
        return _critical(self.points, lambda p: p.collapsed)

    @property
    def critical_by_empty_layer(self) -> Critical:
        """The critical compression by the SynFlow paper's definition of layer collapse, "a
        layer pruned entirely". A net can disconnect before any layer empties (every path cut
        with weights left in each layer), so on one grid this is never below ``critical``
        for a plain net."""
        return _critical(self.points, lambda p: bool(p.empty_layers))

    def profiles(self) -> list[LayerProfile]:
        """The points as ``figures.layer_profiles_png`` input."""
        return [LayerProfile(p.compression, p.layer_density, p.collapsed) for p in self.points]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, the critical compressions included."""
        return {"model": self.model, "dataset": self.dataset, "pruner": self.pruner,
                "layers": list(self.layers), "critical": self.critical.to_dict(),
                "critical_by_empty_layer": self.critical_by_empty_layer.to_dict(),
                "points": [{"compression": p.compression, "density": p.density,
                            "flop_ratio": p.flop_ratio, "layer_density": list(p.layer_density),
                            "empty_layers": list(p.empty_layers),
                            "disconnected": p.disconnected, "collapsed": p.collapsed,
                            "prune_seconds": p.prune_seconds} for p in self.points]}


def _critical(points: Sequence[CollapsePoint],
              broke: Callable[[CollapsePoint], bool]) -> Critical:
    first = next((i for i, p in enumerate(points) if broke(p)), None)
    cs = [p.compression for p in points]
    if first is None:
        return Critical(None, None, cs[-1], cs[0], ())
    return Critical(cs[first - 1] if first > 0 else None, cs[first], cs[-1], cs[0],
                    tuple(p.compression for p in points[first + 1:] if not broke(p)))


@dataclass(frozen=True)
class Progress:
    """Where ``collapse_curve`` is: ``done`` of ``total`` compressions finished; within the
    one under way (``compression``), pruning step ``step`` of ``steps`` (``step == steps``
    and ``done`` counting it once that compression is finished)."""

    done: int
    total: int
    compression: float
    step: int
    steps: int


def collapse_curve(config: RunConfig, compressions: Sequence[float], *,
                   data_dir: Path | None = None, download: bool = True,
                   on_progress: Callable[[Progress], None] | None = None,
                   cancel: CancelToken | None = None) -> CollapseCurve:
    """Prune ``config``'s model at init (``experiment.inspect``, no training) at each of
    ``compressions`` and collect the collapse record of each.

    ``config`` gives the model, dataset, pruner, seed, scope, schedule, iterations, device
    and the rest; its compression is replaced by each of ``compressions`` (sorted, repeats
    dropped). Data is loaded only for SNIP and GraSP. ``on_progress`` is called after every
    pruning step and after every compression; ``cancel`` is checked at the same points and
    raises ``RunCancelled``. A bad config or a compression that keeps no weight raises
    ``ConfigError`` before anything is pruned."""
    from prunetui.core.run.build import check_keeps_weights, inspect

    cs = sorted(set(float(c) for c in compressions))
    if not cs:
        raise ConfigError("no compressions to analyse")
    configs = [config.with_(compression=c).validate() for c in cs]
    check_keeps_weights(configs)
    report = on_progress or (lambda _p: None)
    points: list[CollapsePoint] = []
    layers: tuple[str, ...] = ()
    for i, cfg in enumerate(configs):
        if cancel is not None:
            cancel.check()
        steps = cfg.iterations if cfg.compression > 0 else 0
        report(Progress(i, len(cs), cfg.compression, 0, steps))

        def on_event(event: Event, i: int = i, cfg: RunConfig = cfg, steps: int = steps) -> None:
            if isinstance(event, PruneStep):
                if cancel is not None:
                    cancel.check()
                report(Progress(i, len(cs), cfg.compression, event.iteration, steps))

        seen = inspect(cfg, data_dir=data_dir, download=download, emit=on_event)
        built = seen.structure
        rows = [r for r in built.layers if r.kind != "batchnorm" or cfg.prune_batchnorm]
        layers = tuple(r.name for r in rows)
        points.append(CollapsePoint(
            compression=cfg.compression, density=built.density, flop_ratio=built.flops.ratio,
            layer_density=tuple(r.density for r in rows),
            empty_layers=built.collapse.empty_layers,
            disconnected=built.collapse.disconnected, collapsed=built.collapse.collapsed,
            prune_seconds=seen.prune_seconds))
        report(Progress(i + 1, len(cs), cfg.compression, steps, steps))
    return CollapseCurve(config.model, config.dataset, config.pruner, layers, tuple(points))


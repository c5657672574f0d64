"""Small text formatters shared by the app's widgets (no widget here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prunetui.core.catalog import pruner_display


def count(n: float) -> str:
    """1234567 → '1.23M'; small numbers as they are."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def pct(x: float | None, digits: int = 2) -> str:
    """A top-1/top-5 accuracy (already in percent) or '—'."""
    return "—" if x is None else f"{x:.{digits}f}"


def ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.4f}"


def epochs(config: dict[str, Any]) -> str:
    """A stored run's training length: '10', or '1+10' with pre-training (runs that differ
    only in it would otherwise look alike in a list)."""
    pre, post = int(config.get("pre_epochs", 0)), int(config.get("post_epochs", 0))
    return f"{pre}+{post}" if pre else str(post)


def seconds(x: float | None) -> str:
    """A wall time: '0.42s' under 10 s (a tiny run is not '0s'), else whole seconds."""
    if x is None:
        return "—"
    return f"{x:.2g}s" if x < 10 else f"{x:.0f}s"


def pruner_name(key: str) -> str:
    """'SynFlow' for 'synflow'; an unregistered name as it is."""
    return pruner_display(key)


def cell_label(config: dict[str, Any] | Any) -> str:
    """'SynFlow c=1' of a config (dict or RunConfig)."""
    get: Callable[[str], Any] = (config.__getitem__ if isinstance(config, dict)
                                 else lambda k: getattr(config, k))
    return f"{pruner_name(get('pruner'))} c={float(get('compression')):g}"


def run_label(config: dict[str, Any] | Any) -> str:
    """'fc·digits SynFlow c=1' of a config (dict or RunConfig)."""
    get = config.get if isinstance(config, dict) else lambda k: getattr(config, k)
    return f"{get('model')}·{get('dataset')} {cell_label(config)}"


def short_layer(name: str) -> str:
    """A layer name short enough for a chart axis: 'layers.0.conv' → 'l0.conv'."""
    return name.replace("layers.", "l").replace("features.", "f").replace("classifier", "cls")


def flat_range(value: float) -> tuple[float, float]:
    """The y range to draw a flat series (a top-1 of 100.00 every epoch) in, instead of
    plotext's, which stretches to 150: the value at the top, 5% of it below; 0..1 for 0
    (an accuracy has no negative ticks)."""
    return (value - abs(value) * 0.05, value) if value else (0.0, 1.0)

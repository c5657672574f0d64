"""The ``prunetui sweep`` commands that name exactly a set of stored runs: a report's way to say
how its numbers were made. Run on the same store, they report every cell as already stored;
on an empty one, they train the same runs (same run ids). No torch."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from dataclasses import fields
from typing import Any

from prunetui.core.config import EXECUTION_FIELDS, RunConfig

# Set per cell by the grid's axes, or not part of a run's identity.
_GRID = ("model", "dataset", "pruner", "compression", "ablation", "seed")
_DEFAULTS = RunConfig().to_dict()
SETTINGS = tuple(f.name for f in fields(RunConfig)
                 if f.name not in (*_GRID, "sweep", *EXECUTION_FIELDS))

# A cell of one pruner's grid: (compression, ablation, seed).
Cell = tuple[float, str, int]


def settings_of(config: dict[str, Any]) -> dict[str, Any]:
    """A stored config's settings (grid axes and execution fields left out), every one of
    them: one missing from an older stored config has its default."""
    return {k: _plain(config.get(k, _DEFAULTS[k])) for k in SETTINGS}


def commands(configs: Iterable[dict[str, Any]]) -> list[str]:
    """Sweep commands whose cells are exactly ``configs`` (stored configs), as few as the grid
    allows: the pruners whose cells form the same grid (compressions × ablations × seeds)
    share one command, with their own settings as ``--set PRUNER.KEY``; a pruner's runs with
    other settings or another grid (IMP at one compression beside a sweep) get commands of
    their own, and cells that form no grid one command per compression (and ablation)."""
    cells: dict[tuple[str, str, str, str], set[Cell]] = {}
    for c in configs:
        key = (str(c["model"]), str(c["dataset"]), str(c["pruner"]),
               json.dumps(settings_of(c), sort_keys=True))
        cells.setdefault(key, set()).add((float(c["compression"]) + 0.0,
                                          str(c.get("ablation", "none")), int(c["seed"])))
    out: list[str] = []
    for model, dataset in sorted({(k[0], k[1]) for k in cells}):
        groups = [(k[2], json.loads(k[3]), v) for k, v in cells.items()
                  if k[:2] == (model, dataset)]
        out += _pair_commands(model, dataset, groups)
    return out


def _pair_commands(model: str, dataset: str,
                   groups: list[tuple[str, dict[str, Any], set[Cell]]]) -> list[str]:
    # Buckets of groups that one command can hold: the same grid, each pruner once.
    buckets: list[tuple[frozenset[Cell], list[tuple[str, dict[str, Any]]]]] = []
    out = []
    for pruner, own, grid in groups:
        if not _is_product(grid):
            out += [_command(model, dataset, [pruner], part, own, {})
                    for part in _product_parts(grid)]
            continue
        key = frozenset(grid)
        bucket = next((b for b in buckets if b[0] == key and pruner not in dict(b[1])), None)
        if bucket is None:
            buckets.append((key, [(pruner, own)]))
        else:
            bucket[1].append((pruner, own))
    for cells, members in buckets:
        base = _common([own for _, own in members])
        out.append(_command(model, dataset, [p for p, _ in members], set(cells), base,
                            {p: _diff(own, base) for p, own in members}))
    return out


def _product_parts(grid: set[Cell]) -> list[set[Cell]]:
    """``grid`` split into grids a command can name exactly: per compression, and where a
    compression's ablations and seeds form no grid either, per compression and ablation
    (whose seeds always do)."""
    parts = []
    for comp in sorted({c for c, _, _ in grid}):
        part = {g for g in grid if g[0] == comp}
        parts += [part] if _is_product(part) else [
            {g for g in part if g[1] == a} for a in sorted({a for _, a, _ in part})]
    return parts


def _is_product(grid: set[Cell]) -> bool:
    axes = [{cell[i] for cell in grid} for i in range(3)]
    return len(grid) == len(axes[0]) * len(axes[1]) * len(axes[2])


def _common(all_settings: list[dict[str, Any]]) -> dict[str, Any]:
    first = all_settings[0]
    return {k: v for k, v in first.items() if all(s[k] == v for s in all_settings)}


def _diff(settings: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in base}


def _command(model: str, dataset: str, pruners: list[str], grid: set[Cell],
             shared: dict[str, Any], per: dict[str, dict[str, Any]]) -> str:
    comps = sorted({c for c, _, _ in grid})
    ablations = sorted({a for _, a, _ in grid})
    seeds = sorted({s for _, _, s in grid})
    args = ["prunetui", "sweep", "--models", model, "--datasets", dataset,
            "--pruners", ",".join(pruners), "--compressions", ",".join(map(_number, comps))]
    if ablations != ["none"]:
        args += ["--ablations", ",".join(ablations)]
    args += ["--seeds", ",".join(map(str, seeds))]
    for key, value in shared.items():
        if value != _plain(_DEFAULTS[key]):  # a default is what the sweep uses anyway
            args += ["--set", f"{key}={_value(value)}"]
    for pruner, own in per.items():
        for key, value in own.items():
            args += ["--set", f"{pruner}.{key}={_value(_iterations(key, value, pruner))}"]
    return shlex.join(args)


def _iterations(key: str, value: Any, pruner: str) -> Any:
    # None means the pruner's default iterations; --set needs the number.
    if key == "prune_iterations" and value is None:
        return RunConfig(pruner=pruner).iterations
    return value


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _number(x: float) -> str:
    text = repr(float(x))  # the shortest text that reads back as the same float
    return text[:-2] if text.endswith(".0") else text


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)

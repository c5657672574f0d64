"""A sweep's declaration: grid axes, shared settings and per-pruner overrides, from options
(``--set``) or a TOML file, expanded into validated ``RunConfig`` cells. No torch."""

from __future__ import annotations

import itertools
import tomllib
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from prunetui.core import catalog
from prunetui.core.config import RunConfig
from prunetui.core.errors import ConfigError, choices_message

GRID_KEYS = ("models", "datasets", "pruners", "compressions", "seeds")
_GRID_FIELD = {"models": "model", "datasets": "dataset", "pruners": "pruner",
               "compressions": "compression", "seeds": "seed"}
# Settings a sweep shares; grid fields and labels are set per cell.
SETTING_NAMES = tuple(f.name for f in fields(RunConfig)
                      if f.name not in set(_GRID_FIELD.values()) | {"sweep"})


@dataclass
class SweepSpec:
    """A grid (lists per axis), shared settings, and per-pruner setting overrides."""

    models: list[str]
    datasets: list[str]
    pruners: list[str]
    compressions: list[float]
    seeds: list[int] = field(default_factory=lambda: [1])
    settings: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    name: str = ""

    def label(self) -> str:
        """The sweep's name: given, or made from its models and datasets."""
        return self.name or "-".join([*self.models, *self.datasets])

    def configs(self) -> list[RunConfig]:
        """Every cell of the grid as a validated RunConfig, in grid order, without repeats."""
        for pruner in self.overrides:
            if pruner not in catalog.PRUNERS:
                raise ConfigError(choices_message("pruner in override", pruner,
                                                  list(catalog.PRUNERS)))
        out: list[RunConfig] = []
        seen: set[str] = set()
        for model, dataset, pruner, c, seed in itertools.product(
                self.models, self.datasets, self.pruners, self.compressions, self.seeds):
            kw = {**self.settings, **self.overrides.get(pruner, {})}
            cfg = RunConfig(model=model, dataset=dataset, pruner=pruner, compression=c,
                            seed=seed, sweep=self.label(), **kw).validate()
            if cfg.run_id not in seen:
                seen.add(cfg.run_id)
                out.append(cfg)
        # Settings for a pruner the grid does not run are checked all the same: a bad value
        # there is a mistake whether or not the pruner runs today.
        for pruner in sorted(set(self.overrides) - set(self.pruners)):
            for model, dataset in itertools.product(self.models, self.datasets):
                try:
                    RunConfig(model=model, dataset=dataset, pruner=pruner,
                              **{**self.settings, **self.overrides[pruner]}).validate()
                except ConfigError as e:
                    raise ConfigError(f"settings for {pruner} (not in the grid): {e}") from None
        return out


def coerce(key: str, value: Any) -> Any:
    """Check and convert one setting's value to its RunConfig field type (from --set or TOML)."""
    axis = next((a for a, f in _GRID_FIELD.items() if f == key), None)
    if axis:  # --set cannot change one: each has its own option
        raise ConfigError(f"{key!r} is an axis of the grid, not a setting: use --{axis} "
                          f"(grid.{axis} in a sweep file)")
    if key not in SETTING_NAMES:
        raise ConfigError(choices_message("setting", key, list(SETTING_NAMES)))
    hint = typing.get_type_hints(RunConfig)[key]
    text = isinstance(value, str)
    try:
        if hint is bool:
            if text and value.lower() in ("true", "1", "yes", "false", "0", "no"):
                return value.lower() in ("true", "1", "yes")
            if isinstance(value, bool):
                return value
            raise ValueError
        if hint is int or hint == (int | None):
            if isinstance(value, bool) or (not text and not isinstance(value, int)):
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is str:
            if not text:
                raise ValueError
            return value
        if hint == tuple[int, ...]:
            items = value.split(",") if text else value
            if not isinstance(items, list | tuple):
                raise ValueError
            return tuple(int(v) for v in items if str(v).strip())
    except (TypeError, ValueError):
        pass
    kind = _KINDS.get(hint, getattr(hint, "__name__", str(hint)))
    raise ConfigError(f"invalid value {value!r} for setting {key!r}; expected {kind}")


# How each setting type is written on the command line (and in TOML), in words.
_KINDS: dict[Any, str] = {
    bool: "true or false", int: "an integer", int | None: "an integer", float: "a number",
    str: "text", tuple[int, ...]: "comma-separated integers, e.g. 50,75 (or a TOML list)",
}


def parse_sets(items: list[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``--set key=value`` (shared) and ``--set pruner.key=value`` (per pruner) options."""
    shared: dict[str, Any] = {}
    per: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"invalid --set {item!r}; write KEY=VALUE or PRUNER.KEY=VALUE")
        key, value = (s.strip() for s in item.split("=", 1))
        key = key.replace("-", "_")
        if "." in key:
            pruner, key = key.split(".", 1)
            if pruner not in catalog.PRUNERS:
                raise ConfigError(choices_message("pruner in --set", pruner,
                                                  list(catalog.PRUNERS)))
            per.setdefault(pruner, {})[key] = coerce(key, value)
        else:
            shared[key] = coerce(key, value)
    return shared, per


def load_toml(path: Path) -> SweepSpec:
    """A sweep file: ``name``, ``[grid]`` lists, ``[settings]``, ``[pruner.NAME]`` tables."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"sweep file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"sweep file {path} is not valid TOML: {e}") from None
    allowed = {"name", "grid", "settings", "pruner"}
    for key in data:
        if key not in allowed:
            raise ConfigError(choices_message(f"table in {path.name}", key, sorted(allowed)))
    grid = data.get("grid", {})
    if not isinstance(grid, dict):
        raise ConfigError(f"[grid] in {path} must be a table")
    for key, value in grid.items():
        if key not in GRID_KEYS:
            raise ConfigError(choices_message(f"grid key in {path.name}", key, list(GRID_KEYS)))
        if not isinstance(value, list) or not value:
            raise ConfigError(f"grid.{key} in {path} must be a non-empty list")
    for key in ("models", "datasets", "pruners", "compressions"):
        if key not in grid:
            raise ConfigError(f"{path} has no grid.{key}; a sweep needs {', '.join(GRID_KEYS[:4])}")
    settings = {k: coerce(k, v) for k, v in _table(data, "settings", path).items()}
    overrides = {p: {k: coerce(k, v) for k, v in _table(t, "", path, p).items()}
                 for p, t in _table(data, "pruner", path).items()}
    name = data.get("name", "")
    if not isinstance(name, str):
        raise ConfigError(f"name in {path} must be a string")
    return SweepSpec(
        models=[_typed(v, str, "models", path) for v in grid["models"]],
        datasets=[_typed(v, str, "datasets", path) for v in grid["datasets"]],
        pruners=[_typed(v, str, "pruners", path) for v in grid["pruners"]],
        compressions=[float(_typed(v, (int, float), "compressions", path))
                      for v in grid["compressions"]],
        seeds=[_typed(v, int, "seeds", path) for v in grid.get("seeds", [1])],
        settings=settings, overrides=overrides, name=name)


def _table(data: Any, key: str, path: Path, label: str = "") -> dict[str, Any]:
    value = data.get(key, {}) if key else data
    if not isinstance(value, dict):
        raise ConfigError(f"[{key or 'pruner.' + label}] in {path} must be a table")
    return value


def _typed(value: Any, kind: Any, key: str, path: Path) -> Any:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"grid.{key} in {path} has {value!r}; expected "
                          f"{getattr(kind, '__name__', 'a number')} values")
    return value

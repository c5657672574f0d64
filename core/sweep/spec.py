"""A sweep's declaration: grid axes, shared settings and per-pruner overrides, from options
(``--set``) or a TOML file, expanded into validated ``RunConfig`` cells; and the same file
written back (the app saves what ``prunetui sweep FILE`` reads). No torch.

The axes are the fields whose ``Setting`` names one (``config.AXES``: models, datasets,
pruners, compressions, seeds): a new axis is declared on its field, nowhere here.
"""

from __future__ import annotations

import itertools
import json
import math
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prunetui.core import catalog
from prunetui.core.config import (
    AXES,
    LEGACY_ABLATIONS,
    SELF_CONTAINED,
    SETTINGS,
    RunConfig,
    Setting,
    field_name,
)
from prunetui.core.errors import ConfigError, choices_message, shown_value

GRID_KEYS = tuple(AXES)
# The order of SweepSpec's positional lists: the five axes every sweep has had, then the rest
# (an axis added later, like ablations, must not shift the positions of existing callers).
POSITIONAL_AXES = ("models", "datasets", "pruners", "compressions", "seeds",
                   *(a for a in GRID_KEYS
                     if a not in ("models", "datasets", "pruners", "compressions", "seeds")))
# Settings a sweep shares (``[settings]``, ``--set``); grid fields are set per cell.
SETTING_NAMES = tuple(name for name, s in SETTINGS.items() if not s.axis)


def axis_default(axis: str) -> list[Any] | None:
    """The values of ``axis`` when a sweep does not list it, or None when it must."""
    s = AXES[axis]
    if s.axis_default == "required":
        return None
    if s.axis_default == "all":
        return list(s.axis_values) if s.axis_values is not None else s.choice_list()
    return [getattr(RunConfig(), s.name)]


class SweepSpec:
    """A grid (a list of values per axis), shared settings, per-pruner setting overrides, a
    name and, optionally, the data dir its runs read (``--data-dir`` and ``PRUNETUI_DATA``
    come first).

    ``SweepSpec(models, datasets, pruners, compressions, seeds, settings=..., ...)``: lists
    given in ``POSITIONAL_AXES`` order, or by axis name; an axis left out takes its default
    (``axis_default``; an empty list for a required one, which ``configs`` refuses)."""

    def __init__(self, *lists: Sequence[Any], settings: dict[str, Any] | None = None,
                 overrides: dict[str, dict[str, Any]] | None = None, name: str = "",
                 data_dir: str = "", **axes: Sequence[Any]) -> None:
        if len(lists) > len(POSITIONAL_AXES):
            raise TypeError(f"at most {len(POSITIONAL_AXES)} axis lists: "
                            f"{', '.join(POSITIONAL_AXES)}")
        given = dict(zip(POSITIONAL_AXES, lists, strict=False))
        for axis, values in axes.items():
            if axis not in AXES:
                raise TypeError(f"unknown axis {axis!r}; axes: {', '.join(GRID_KEYS)}")
            given[axis] = values
        self.grid: dict[str, list[Any]] = {
            axis: list(given[axis]) if axis in given else list(axis_default(axis) or [])
            for axis in GRID_KEYS}
        self.settings: dict[str, Any] = dict(settings or {})
        self.overrides: dict[str, dict[str, Any]] = {p: dict(kv) for p, kv in
                                                     (overrides or {}).items()}
        self.name = name
        self.data_dir = data_dir

    def __repr__(self) -> str:
        return (f"SweepSpec(grid={self.grid!r}, settings={self.settings!r}, "
                f"overrides={self.overrides!r}, name={self.name!r}, "
                f"data_dir={self.data_dir!r})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SweepSpec) and (
            (self.grid, self.settings, self.overrides, self.name, self.data_dir)
            == (other.grid, other.settings, other.overrides, other.name, other.data_dir))

    def label(self) -> str:
        """The sweep's name: given, or made from its models and datasets."""
        return self.name or "-".join([*self.grid["models"], *self.grid["datasets"]])

    def configs(self) -> list[RunConfig]:
        """Every cell of the grid as a validated RunConfig, in grid order, without repeats."""
        for axis, values in self.grid.items():
            if not values:
                raise ConfigError(f"a sweep needs {axis}: give at least one",
                                  field=axis, value=values)
        for pruner in self.overrides:
            if pruner not in catalog.PRUNERS:
                raise ConfigError(choices_message("pruner in override", pruner,
                                                  list(catalog.PRUNERS)))
        out: list[RunConfig] = []
        seen: set[str] = set()
        validated: set[tuple[Any, ...]] = set()
        names = [AXES[axis].name for axis in self.grid]
        label = self.label()
        for cell in itertools.product(*self.grid.values()):
            at = dict(zip(names, cell, strict=True))
            cfg = self._cell(at, at["pruner"], label, validated)
            if cfg.run_id not in seen:
                seen.add(cfg.run_id)
                out.append(cfg)
        # Settings for a pruner the grid does not run are checked all the same: a bad value
        # there is a mistake whether or not the pruner runs today.
        for pruner in sorted(set(self.overrides) - set(self.grid["pruners"])):
            for cell in itertools.product(*(v for a, v in self.grid.items() if a != "pruners")):
                at = {AXES[a].name: value for a, value in
                      zip([a for a in self.grid if a != "pruners"], cell, strict=True)}
                try:
                    self._cell({**at, "pruner": pruner}, pruner)
                except ConfigError as e:
                    raise e.within(f"settings for {pruner} (not in the grid)", pruner) from None
        return out

    def _cell(self, at: dict[str, Any], pruner: str, label: str | None = None,
              validated: set[tuple[Any, ...]] | None = None) -> RunConfig:
        """One validated cell; an error in a pruner's own setting names that pruner.

        With ``validated`` (the combinations of the other axes validated so far), a cell
        that differs from one validated only in its compression and seed (``SELF_CONTAINED``)
        has just those checked: a grid of 250,000 cells is validated in a second, not a
        minute."""
        own = self.overrides.get(pruner, {})
        try:
            cfg = RunConfig(**{**self.settings, **own, **at},
                            sweep=self.label() if label is None else label)
            key = tuple(v for k, v in at.items() if k not in SELF_CONTAINED)
            if validated is None or key not in validated:
                cfg.validate()
                if validated is not None:
                    validated.add(key)
            else:
                cfg.check_own(SELF_CONTAINED)
            return cfg
        except ConfigError as e:
            if e.field in own and e.pruner is None:
                raise e.within(f"settings for {pruner}", pruner) from None
            raise

    def with_sets(self, items: Sequence[str]) -> SweepSpec:
        """This spec with ``--set`` options applied on top (shared and per pruner)."""
        shared, per = parse_sets(items)
        self.settings.update(shared)
        for p, kv in per.items():
            self.overrides.setdefault(p, {}).update(kv)
        return self


def coerce(key: str, value: Any) -> Any:
    """Check and convert one setting's value to its RunConfig field type (from --set, TOML
    or the app's text fields)."""
    setting = SETTINGS.get(key)
    if setting is not None and setting.axis:  # --set cannot change one: it has its option
        raise ConfigError(f"{key!r} is an axis of the grid, not a setting: use "
                          f"--{setting.axis} (grid.{setting.axis} in a sweep file)",
                          field=setting.axis, value=value)
    if key in LEGACY_ABLATIONS:  # an old sweep file or script: say what it is now
        new = LEGACY_ABLATIONS[key]
        raise ConfigError(f"{key!r} is an old switch no longer run (stored runs that used it "
                          f"stay readable); use the ablations axis: --ablations {new} "
                          f"(grid.ablations = [\"{new}\"] in a sweep file)",
                          field="ablations", value=value)
    if setting is None:
        raise ConfigError(choices_message("setting", key, list(SETTING_NAMES)))
    try:
        return convert(setting, value)
    except (TypeError, ValueError):
        raise ConfigError(field=key, value=value,
                          hint=f"it must be {_expected(setting)}") from None


def convert(setting: Setting, value: Any) -> Any:
    """``value`` (text, or a TOML value) as ``setting``'s type; ValueError when it is not."""
    text = isinstance(value, str)
    if setting.kind == "switch":
        if text and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, bool):
            return value
        raise ValueError(value)
    if setting.kind == "list":
        items = value.replace(",", " ").split() if text else value
        if not isinstance(items, list | tuple) or any(isinstance(v, bool) for v in items):
            raise ValueError(value)
        return tuple(int(v) for v in items)
    if isinstance(value, bool):
        raise ValueError(value)
    if setting.optional and text and value.strip().lower() in ("", "default", "none"):
        return None
    if setting.number is int:
        if not text and not isinstance(value, int):
            raise ValueError(value)
        return int(value)
    if setting.number is float:
        return float(value)
    if not text:
        raise ValueError(value)
    return value.strip()


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _expected(setting: Setting) -> str:
    """How a setting's value is written on the command line (and in TOML), in words."""
    if setting.kind == "switch":
        return "true or false"
    if setting.kind == "list":
        return "comma-separated integers, e.g. 50,75 (or a TOML list)"
    if setting.number is not None:
        return setting.bounds_text()
    return "text"


def parse_sets(items: Sequence[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``--set key=value`` (shared) and ``--set pruner.key=value`` (per pruner) options."""
    shared: dict[str, Any] = {}
    per: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"invalid --set {item!r}; write KEY=VALUE or PRUNER.KEY=VALUE")
        key, value = (s.strip() for s in item.split("=", 1))
        key = field_name(key)
        if "." in key:
            pruner, key = key.split(".", 1)
            if pruner not in catalog.PRUNERS:
                raise ConfigError(choices_message("pruner in --set", pruner,
                                                  list(catalog.PRUNERS)))
            per.setdefault(pruner, {})[key] = coerce(key, value)
        else:
            shared[key] = coerce(key, value)
    return shared, per


# A sweep file is a few lines; past this it is some other file (or /dev/zero), not read whole.
MAX_TOML_BYTES = 1 << 20


def load_toml(path: Path) -> SweepSpec:
    """A sweep file: ``name``, ``data_dir``, ``[grid]`` lists, ``[settings]``,
    ``[pruner.NAME]`` tables. Whatever the file holds, a bad one is one ``ConfigError``
    naming it and the problem."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_TOML_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"sweep file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"sweep file {path} is a folder") from None
    except OSError as e:
        raise ConfigError(f"cannot read sweep file {path}: {e.strerror or e}") from None
    if len(raw) > MAX_TOML_BYTES:
        raise ConfigError(f"sweep file {path} is over {MAX_TOML_BYTES >> 20} MB: not a sweep "
                          "file")
    try:
        data = tomllib.loads(raw.decode())
    except UnicodeDecodeError as e:
        raise ConfigError(f"sweep file {path} is not text (UTF-8): byte {e.start} cannot be "
                          "decoded") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays or tables
        raise ConfigError(f"sweep file {path} nests arrays or tables too deeply to be read") \
            from None
    except ValueError as e:  # TOMLDecodeError, or an integer too long for Python to convert
        why = ("it has an integer of over 4,300 digits" if "integer string conversion" in str(e)
               else str(e))
        raise ConfigError(f"sweep file {path} is not valid TOML: {why}") from None
    return spec_from_toml(data, path)


def spec_from_toml(data: dict[str, Any], path: Path) -> SweepSpec:
    """The sweep a parsed TOML document declares (``path`` names it in errors)."""
    allowed = {"name", "data_dir", "grid", "settings", "pruner"}
    for key in data:
        if key not in allowed:
            raise ConfigError(choices_message(f"table in {path.name}", key, sorted(allowed)))
    grid = _table(data, "grid", path)
    for key, value in grid.items():
        if key not in GRID_KEYS:
            raise ConfigError(choices_message(f"grid key in {path.name}", key, list(GRID_KEYS)))
        if not isinstance(value, list) or not value:
            raise ConfigError(f"grid.{key} in {path} must be a non-empty list")
    required = [a for a in GRID_KEYS if axis_default(a) is None]
    for key in required:
        if key not in grid:
            raise ConfigError(f"{path} has no grid.{key}; a sweep needs {', '.join(required)}")
    settings = _settings(_table(data, "settings", path), f"[settings] in {path}")
    overrides = {p: _settings(_table(t, "", path, p), f"[pruner.{p}] in {path}", p)
                 for p, t in _table(data, "pruner", path).items()}
    name, data_dir = data.get("name", ""), data.get("data_dir", "")
    for key, value in (("name", name), ("data_dir", data_dir)):
        if not isinstance(value, str):
            raise ConfigError(f"{key} in {path} must be a string")
    if data_dir:  # a relative one is relative to the file, wherever it is read from
        data_dir = str(path.parent / Path(data_dir).expanduser())
    axes = {key: [_typed(v, AXES[key], key, path) for v in values]
            for key, values in grid.items()}
    return SweepSpec(settings=settings, overrides=overrides, name=name, data_dir=data_dir,
                     **axes)


def _table(data: Any, key: str, path: Path, label: str = "") -> dict[str, Any]:
    value = data.get(key, {}) if key else data
    if not isinstance(value, dict):
        raise ConfigError(f"[{key or 'pruner.' + label}] in {path} must be a table")
    return value


def _settings(table: dict[str, Any], where: str, pruner: str | None = None) -> dict[str, Any]:
    """A table of settings, each converted and checked against its ``Setting`` (type,
    choices, bounds) as it is read, so a bad value names the file it is in."""
    out = {}
    for key, value in table.items():
        try:
            out[key] = coerce(key, value)
            SETTINGS[key].check(out[key])
        except ConfigError as e:
            raise e.within(where, pruner) from None
    return out


def _typed(value: Any, setting: Setting, key: str, path: Path) -> Any:
    kind: Any = {int: int, float: (int, float)}.get(setting.number, str)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"grid.{key} in {path} has {shown_value(value)}; expected "
                          f"{'a number' if kind == (int, float) else kind.__name__} values")
    try:
        value = float(value) if setting.number is float else value
    except OverflowError:  # an integer past float's range (10^400) as a compression
        raise ConfigError(f"grid.{key} in {path} has {shown_value(value)}; it must be "
                          f"{setting.bounds_text()}") from None
    try:
        setting.check(value)
    except ConfigError as e:
        raise e.within(f"grid.{key} in {path}") from None
    return value


# -- writing -----------------------------------------------------------------------------------


def to_toml(spec: SweepSpec) -> str:
    """The sweep file that ``load_toml`` reads back as ``spec`` (same cells, same run ids):
    every axis, then the shared settings and each pruner's overrides, in field order."""
    lines = [f"name = {_toml_value(spec.name)}"] if spec.name else []
    if spec.data_dir:
        lines.append(f"data_dir = {_toml_value(spec.data_dir)}")
    lines += ["", "[grid]"] if lines else ["[grid]"]
    lines += [f"{axis} = {_toml_value(values)}" for axis, values in spec.grid.items()]
    lines += ["", "[settings]"]
    lines += [f"{k} = {_toml_value(spec.settings[k])}" for k in SETTINGS if k in spec.settings]
    for pruner in (p for p in catalog.PRUNERS if spec.overrides.get(p)):
        own = spec.overrides[pruner]
        lines += ["", f"[pruner.{pruner}]"]
        lines += [f"{k} = {_toml_value(own[k])}" for k in SETTINGS if k in own]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{value!r} cannot be written to a sweep file")
        return repr(value)
    if isinstance(value, str):
        # A TOML basic string: JSON's escapes are TOML's for every character we may meet.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"{value!r} cannot be written to a sweep file")


def save_toml(spec: SweepSpec, path: Path) -> None:
    """Write ``spec`` to ``path`` atomically (readers see the old file or the new one)."""
    from prunetui.core.store import atomic_write_text

    text = to_toml(spec)
    path = Path(path).expanduser()
    try:
        atomic_write_text(path, text)
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror or e}") from None

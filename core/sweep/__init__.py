"""Sweeps: a grid of runs declared once (``spec``), each cell run and reported the same way
(``cell``) by whichever executor runs them (``runner``: in-process, worker processes, Ray)."""

from prunetui.core.sweep.cell import CellOutcome, run_cell
from prunetui.core.sweep.runner import EXECUTORS, SweepRunner
from prunetui.core.sweep.spec import (
    GRID_KEYS,
    SETTING_NAMES,
    SweepSpec,
    coerce,
    load_toml,
    parse_sets,
    save_toml,
    to_toml,
)

__all__ = ["EXECUTORS", "GRID_KEYS", "SETTING_NAMES", "CellOutcome", "SweepRunner", "SweepSpec",
           "coerce", "load_toml", "parse_sets", "run_cell", "save_toml", "to_toml"]

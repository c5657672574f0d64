"""Sweeps: a grid of runs declared once (``spec``), each cell run and reported the same way
(``cell``) by whichever executor runs them (``runner``: in-process, worker processes, Ray)."""

from prunetui.core.sweep.cell import CellOutcome, run_cell
from prunetui.core.sweep.ray import RayCluster
from prunetui.core.sweep.runner import (
    EXECUTORS,
    Executor,
    InProcess,
    ProcessPool,
    SweepRunner,
    make_executor,
)
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

__all__ = ["EXECUTORS", "GRID_KEYS", "SETTING_NAMES", "CellOutcome", "Executor", "InProcess",
           "ProcessPool", "RayCluster", "SweepRunner", "SweepSpec", "coerce", "load_toml",
           "make_executor", "parse_sets", "run_cell", "save_toml", "to_toml"]

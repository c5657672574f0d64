"""Shared fixtures: every test gets its own results dir and an offline, empty data dir."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/datafiles.py is a helper module


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing a test does may land in the user's results or cache dirs.
    monkeypatch.setenv("PRUNETUI_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("PRUNETUI_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")

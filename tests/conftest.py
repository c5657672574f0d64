"""Shared fixtures: every test gets its own results dir and an offline, empty data dir."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/datafiles.py is a helper module


# The suite's four groups, by file (`pytest -m GROUP`): the engine and the store on tiny models
# (unit), the command line (cli), the Textual app (app), and processes killed, signalled or
# racing each other (faults). `make test` runs all of them, as CI does; `make test-fast` leaves
# out the app and the faults, the slow half, for the edit-test loop.
GROUPS = {
    "app": ("test_app.py", "test_app_settings.py", "test_app_snapshots.py"),
    "cli": ("test_cli.py", "test_export.py", "test_readme.py", "test_hygiene.py"),
    "faults": ("test_faults.py", "test_reliability.py", "test_ray.py"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its group (``GROUPS``; a file not listed there is ``unit``)."""
    group_of = {name: group for group, names in GROUPS.items() for name in names}
    for item in items:
        item.add_marker(getattr(pytest.mark, group_of.get(item.path.name, "unit")))


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing a test does may land in the user's results or cache dirs.
    monkeypatch.setenv("PRUNETUI_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("PRUNETUI_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")

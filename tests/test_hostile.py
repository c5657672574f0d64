"""Hostile sweep files: whatever a file given to ``prunetui sweep`` holds, the answer is one
line naming the file and the problem, exit 2, no traceback, nothing written."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prunetui.tui.cli import app

runner = CliRunner()
GRID = "[grid]\nmodels = ['fc']\ndatasets = ['digits']\npruners = ['rand']\n"
BIG = "1" + "0" * 400  # a 401-digit integer


def _text(text: str) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / "s.toml"
        path.write_text(text)
        return path

    return write


def _folder(folder: Path) -> Path:
    (folder / "s.toml").mkdir()
    return folder / "s.toml"


def _binary(folder: Path) -> Path:
    path = folder / "s.toml"
    path.write_bytes(bytes(range(128, 256)) * 20)
    return path


def _under_a_file(folder: Path) -> Path:
    (folder / "s.toml").write_text(GRID)
    return folder / "s.toml" / "x.toml"  # reading it: "Not a directory", an OSError


def _huge(folder: Path) -> Path:
    path = folder / "s.toml"
    with open(path, "wb") as f:  # sparse: 2 MB of zeros without writing them
        f.truncate(2 << 20)
    return path


CASES = [
    (_text(GRID + f"compressions = [1]\nseeds = [{BIG}]"),
     "grid.seeds in {path}: invalid seed 100000000000000000000000000000… (401 digits); it "
     "must be an integer from 0 to 4294967295"),
    (_text(GRID + f"compressions = [{BIG}]"),
     "grid.compressions in {path} has 100000000000000000000000000000… (401 digits); it must "
     "be a number >= 0"),
    (_text(GRID + "compressions = [1e400]"),
     "grid.compressions in {path}: invalid compression inf; it must be a number >= 0"),
    (_text(GRID + "compressions = [1]\n[settings]\npost_epochs = 1e400"),
     "[settings] in {path}: invalid post_epochs inf; it must be an integer from 0 to 1000000"),
    (_text(GRID + f"compressions = [1]\n[pruner.rand]\ntiming_repeats = {BIG}"),
     "[pruner.rand] in {path}: invalid timing_repeats 100000000000000000000000000000… (401 "
     "digits); it must be an integer from 1 to 1000"),
    (_text("x = " + "1" * 5000),
     "sweep file {path} is not valid TOML: it has an integer of over 4,300 digits"),
    (_text("x = " + "[" * 200_000 + "]" * 200_000),
     "sweep file {path} nests arrays or tables too deeply to be read"),
    (_text("x = " + "{a = " * 100_000 + "1" + "}" * 100_000),
     "sweep file {path} nests arrays or tables too deeply to be read"),
    (_folder, "sweep file {path} is a folder"),
    (_binary, "sweep file {path} is not text (UTF-8): byte 0 cannot be decoded"),
    (_under_a_file, "cannot read sweep file {path}: Not a directory"),
    (_huge, "sweep file {path} is over 1 MB: not a sweep file"),
]


@pytest.mark.parametrize(("make", "message"), CASES,
                         ids=["seed", "compression-int", "compression-inf", "settings",
                              "override", "digits", "nested-arrays", "nested-tables", "folder",
                              "binary", "unreadable", "huge"])
def test_a_hostile_sweep_file_is_one_line_naming_it(tmp_path: Path, make: Callable[[Path], Path],
                                                    message: str) -> None:
    path = make(tmp_path)
    r = runner.invoke(app, ["sweep", str(path), "--dry-run"])
    assert r.exit_code == 2, r.output[-2000:]
    assert "Traceback" not in r.output
    assert r.stderr.splitlines() == [f"error: {message.format(path=path)}"]
    assert not Path(os.environ["PRUNETUI_RESULTS"]).exists()

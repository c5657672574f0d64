"""Writing the report into a folder: every figure a file, linked from the markdown, histograms
on shared scales, the critical compression only when asked (with progress), and nothing left
behind by an export that fails."""

from __future__ import annotations

import errno
import io
import re
from pathlib import Path
from typing import Any

import pytest
from test_report import Round, newer_settings, stored  # noqa: F401 (a fixture)

from prunetui.core import figures
from prunetui.core.errors import ConfigError
from prunetui.core.store import Store
from prunetui.tui.export import CriticalProgress, export_report


def png_ok(path: Path) -> bool:
    from matplotlib.image import imread

    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and imread(io.BytesIO(data), format="png").size > 0


def study_store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "store")
    for p, base in (("rand", 90.0), ("mag", 92.0)):
        for c in (0.0, 1.0, 2.0):
            for seed in (1, 2):
                stored(s, p, c, seed, base - 5 * c + seed, model="fc", dataset="mnist",
                       device="cpu", collapsed=p == "rand" and c == 2)
    stored(s, "mag", 1.0, 1, 80.0, model="fc", dataset="mnist", device="cpu",
           ablation="shuffle")
    stored(s, "imp", 2.0, 1, 88.0, model="fc", dataset="mnist", device="cpu",
           rounds=(Round(1.0, 100, 93.0), Round(0.1, 10, 91.0), Round(0.01, 1, 88.0)))
    return s


@pytest.mark.usefixtures("newer_settings")
def test_an_export_into_a_folder_writes_every_figure_it_links(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = study_store(tmp_path)
    scales: dict[str, tuple[Any, Any]] = {}
    real = figures.histogram_png

    def seen(hists: Any, title: str, vmax: Any = None, span: Any = None) -> bytes:
        scales[title.split(" — ")[0]] = (vmax, span)
        return real(hists, title, vmax, span)

    monkeypatch.setattr(figures, "histogram_png", seen)
    out = tmp_path / "out"
    written = export_report(s, s.query(), "md", out, at=1.0, layers_at=1.0)
    assert written is not None
    names = sorted(p.name for p in written)
    assert names == ["accuracy.png", "layer_density.png", "report.md", "weight_hist_mag.png",
                     "weight_hist_rand.png"]
    assert sorted(p.name for p in out.iterdir()) == names
    assert all(png_ok(out / n) for n in names if n.endswith(".png"))
    md = (out / "report.md").read_text()
    for n in names:
        assert n == "report.md" or f"]({n})" in md
    # One colour scale and one weight axis for the histograms of one model/dataset: the
    # largest bin (0.1: seed 1 is drawn) and the widest range, Mag's (its seed 1 at c = 1 has
    # top-1 88, its fake histogram edges ±0.88; Rand's ±0.86).
    assert scales == {"Rand": (0.1, 0.88), "Mag": (0.1, 0.88)}


@pytest.mark.usefixtures("newer_settings")
def test_csv_json_and_stdout_write_no_figure(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    s = study_store(tmp_path)
    for fmt in ("csv", "json"):
        out = tmp_path / fmt
        written = export_report(s, s.query(), fmt, out, at=1.0, layers_at=1.0)
        assert written == [out / f"report.{fmt}"]
        assert [p.name for p in out.iterdir()] == [f"report.{fmt}"]
        assert "ablations:fc:mnist" in (out / f"report.{fmt}").read_text()
    assert export_report(s, s.query(), "md", None, at=1.0, layers_at=1.0) is None
    md = capsys.readouterr().out
    assert "![" not in md and "(Figure accuracy.png: written when the report is exported" in md
    assert sorted(p.name for p in tmp_path.iterdir()) == ["csv", "json", "store"]
    with pytest.raises(ConfigError, match="unknown format 'pdf'; choose one of: md, csv, json"):
        export_report(s, s.query(), "pdf", None)


@pytest.mark.usefixtures("newer_settings")
def test_a_failed_or_killed_export_leaves_nothing(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    s = study_store(tmp_path)
    drawn: list[str] = []

    def full(*args: Any, **kw: Any) -> bytes:
        drawn.append("density")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(figures, "layer_density_png", full)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=re.escape(f"cannot write the report to {out}: No "
                                                   "space left on device")):
        export_report(s, s.query(), "md", out, at=1.0, layers_at=1.0)
    assert drawn and sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    # Into a folder of the user's: it keeps what it had, nothing more.
    out.mkdir()
    (out / "mine.txt").write_text("kept")

    def killed(*args: Any, **kw: Any) -> bytes:
        raise KeyboardInterrupt

    monkeypatch.setattr(figures, "accuracy_png", killed)
    with pytest.raises(KeyboardInterrupt):
        export_report(s, s.query(), "md", out, at=1.0, layers_at=1.0)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_the_critical_compression_is_computed_only_when_asked_with_progress(
        tmp_path: Path) -> None:
    s = Store(tmp_path / "store")
    for c in (1.0, 2.0):
        stored(s, "rand", c, 1, 90.0 - c, model="fc", dataset="mnist", device="cpu")
    out = tmp_path / "out"
    seen: list[CriticalProgress] = []
    written = export_report(s, s.query(), "md", out, at=1.0, layers_at=1.0,
                            critical=[2.5, 0, 2], device="cpu", on_progress=seen.append)
    assert written is not None and out / "layer_profiles.png" in written
    assert png_ok(out / "layer_profiles.png")
    md = (out / "report.md").read_text()
    section = md.split("#### 2.5 Critical compression — FC on MNIST")[1].split("####")[0]
    # fc's rand at seed 1 cuts every path at 2.5 with weights left in every layer (as
    # test_analysis finds it).
    row = next(ln for ln in section.splitlines() if ln.startswith("| Rand"))
    assert [x.strip() for x in row.split("|")[1:-1]] == [
        "Rand", "2", "2.5", "≥ 2.5 (no collapse up to 2.5)",
        "no path from input to output; every layer keeps weights", "none"]
    assert "![Fraction kept per layer across compressions — FC on MNIST](layer_profiles.png)" \
        in md
    # One curve (rand), three compressions: a start and an end each, one pruning step at
    # c > 0.
    assert [(p.index, p.total, p.step.compression, p.step.done) for p in seen] == [
        (0, 1, 0.0, 0), (0, 1, 0.0, 1), (0, 1, 2.0, 1), (0, 1, 2.0, 1), (0, 1, 2.0, 2),
        (0, 1, 2.5, 2), (0, 1, 2.5, 2), (0, 1, 2.5, 3)]
    assert seen[-1].text() == "critical compression 1/1: fc mnist Rand, c = 2.5 (3 of 3)"
    # Without the flag: no pruning pass, no table.
    again = tmp_path / "again"
    export_report(s, s.query(), "md", again, at=1.0, layers_at=1.0)
    assert "Critical compression" not in (again / "report.md").read_text()
    assert not (again / "layer_profiles.png").exists()


def test_a_critical_compression_that_cannot_be_made_fails_before_any_pass(
        tmp_path: Path) -> None:
    s = Store(tmp_path / "store")
    stored(s, "rand", 1.0, 1, 90.0, model="fc", dataset="mnist", device="cpu")
    seen: list[CriticalProgress] = []
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="compression 9 keeps no weight"):
        export_report(s, s.query(), "md", out, critical=[1, 9], on_progress=seen.append)
    with pytest.raises(ConfigError, match="no compressions for the critical compression"):
        export_report(s, s.query(), "md", out, critical=[], on_progress=seen.append)
    # A figure it would write is already there: refused before the pruning, not after.
    out.mkdir()
    (out / "layer_profiles.png").write_bytes(b"mine")
    with pytest.raises(ConfigError, match=r"layer_profiles\.png exists; pass --force"):
        export_report(s, s.query(), "md", out, critical=[1], on_progress=seen.append)
    assert seen == [] and [p.name for p in out.iterdir()] == ["layer_profiles.png"]
    with pytest.raises(ConfigError, match="unknown reference 'x'; choose one of"):
        export_report(s, s.query(), "md", out, reference="x")
    assert not (tmp_path / "out" / "report.md").exists()


def test_the_cli_exports_the_study_with_reference_and_critical(tmp_path: Path) -> None:
    """`prunetui export --reference synflow-fig6 --critical RANGE`: the published comparison
    and the critical-compression table reach the command line; bad values are one line."""
    from typer.testing import CliRunner

    from prunetui.tui.cli import app

    s = Store(tmp_path / "store")
    for c in (1.0, 2.0):
        stored(s, "rand", c, 1, 90.0 - c, model="fc", dataset="mnist", device="cpu")
    runner = CliRunner()
    base = ["export", "--results-dir", str(tmp_path / "store"), "--at", "1", "--layers-at", "1"]
    r = runner.invoke(app, [*base, "--reference", "synflow"])
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and "synflow-fig6" in r.stderr
    r = runner.invoke(app, [*base, "--critical", "0:x"])
    assert r.exit_code == 2 and "0:x" in r.stderr and "Traceback" not in r.stderr
    r = runner.invoke(app, [*base, "--critical", "0,2.5", "--device", "tpu"])
    assert r.exit_code == 2 and "tpu" in r.stderr
    out = tmp_path / "out"
    r = runner.invoke(app, [*base, "--out", str(out), "--reference", "synflow-fig6",
                            "--critical", "0,2,2.5", "--device", "cpu"])
    assert r.exit_code == 0, r.stderr
    md = (out / "report.md").read_text()
    assert "Critical compression — FC on MNIST" in md
    assert png_ok(out / "layer_profiles.png") and png_ok(out / "accuracy.png")
    # fc/mnist is not one of the paper's Figure 6 experiments: said, not silently dropped.
    assert "synflow-fig6" in md

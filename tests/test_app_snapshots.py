"""SVG snapshots of the app at 80×24 and 120×40: the main screen, the results screen over a
prepared store, and a run in progress fed with synthetic engine events (no training).

Update with ``pytest tests/test_app_snapshots.py --snapshot-update`` and look at the SVGs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fakes
import pytest
from test_app import feed_sweep, prepared_store, wait_for
from textual.pilot import Pilot
from textual.widgets import Collapsible, TabbedContent

from prunetui.core import events as ev
from prunetui.core.config import RunConfig
from prunetui.core.run.result import RunResult, Structure
from prunetui.core.status import RunStatus
from prunetui.tui.app import PruneApp
from prunetui.tui.widgets.config_form import ConfigForm
from prunetui.tui.widgets.preview import PreviewPanel
from prunetui.tui.widgets.run_panel import RunPanel

SIZES = [(80, 24), (120, 40)]
LAYERS = [("layers.0", (100, 64), 0.1016), ("layers.2", (100, 100), 0.0981),
          ("layers.4", (100, 100), 0.1002), ("layers.6", (100, 100), 0.0994),
          ("layers.8", (100, 100), 0.1007), ("layers.10", (10, 100), 0.121)]


def fake_info(config: RunConfig, ratio: float | None = None) -> Structure:
    layers = [fakes.layer(n, shape=shape, density=d) for n, shape, d in LAYERS]
    dense = sum(r.params for r in layers)
    pruned = sum(r.flops_pruned for r in layers)
    return fakes.structure(layers, density=0.1, dense=dense,
                           ratio=pruned / dense if ratio is None else ratio, total=48010)


def fake_result(config: RunConfig, top1: float, epochs: int) -> RunResult:
    ratio = 10 ** -config.compression * {"rand": 1.0, "mag": 0.8, "synflow": 0.6}[config.pruner]
    return fakes.result(config, top1, built=fake_info(config, ratio),
                        history=fakes.epochs([top1 * (0.7 + 0.3 * e / epochs)
                                              for e in range(1, epochs + 1)]))


def app_for(tmp_path: Path) -> PruneApp:
    app = PruneApp(results_dir=tmp_path / "results", preview=False)
    app.animation_level = "none"  # tab underlines jump instead of sliding: still frames
    return app


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen(snap_compare: Any, tmp_path: Path, size: tuple[int, int],
                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Options shows the data dir's check (open at 40 rows): one path for every run of this.
    monkeypatch.setenv("PRUNETUI_DATA", "/nonexistent/prunetui-data")

    async def before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, PruneApp)
        state = app.query_one(ConfigForm).state()
        assert state.preview is not None
        app.query_one(PreviewPanel).show_info(state.preview, fake_info(state.preview))
        if not app.query_one("#options", Collapsible).collapsed:  # a terminal it all fits
            form = app.query_one(ConfigForm)
            await wait_for(pilot, lambda: form._built, what="Options")
            status = app.query_one("#data-status")
            await wait_for(pilot, lambda: "mnist:" in str(status.render()), what="the check")
        await pilot.pause()

    assert snap_compare(app_for(tmp_path), terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_results_screen(snap_compare: Any, tmp_path: Path, size: tuple[int, int],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    prepared_store(tmp_path / "results")
    monkeypatch.chdir("/")  # the export field shows the working dir's report/: "/report"
    assert snap_compare(app_for(tmp_path), terminal_size=size, press=["3"])


def feed_run(panel: RunPanel) -> None:
    """A sweep of 3 pruners × 2 compressions: two cells done, the third in epoch 3 of 5."""
    base = RunConfig(model="fc", dataset="digits", post_epochs=5, device="cpu")
    configs = [base.with_(pruner=p, compression=c, sweep="fc-digits")
               for p in ("rand", "mag", "synflow") for c in (1.0, 2.0)]
    panel.begin(configs)
    for i, (cfg, top1) in enumerate([(configs[0], 91.25), (configs[1], 84.5)]):
        panel.cell_started(i, 6, cfg)
        panel.cell_done(i, 6, cfg, RunStatus.FINISHED, fake_result(cfg, top1, 5))
    cfg = configs[2]
    rid = cfg.run_id
    panel.cell_started(2, 6, cfg)
    for event in [
        ev.RunStarted(rid, cfg.to_dict()),
        ev.PhaseStarted(rid, "prune", 1),
        ev.PruneStep(rid, 1, 1, 0.1),
        ev.RunWarning(rid, "layer collapse: no weight left in layers.10"),
        ev.PhaseStarted(rid, "train", 5),
        *[ev.EpochEnd(rid, "train", e, 5, 2.0 / e, 2.1 / e, 60.0 + 10 * e, 90.0 + e, 0.001,
                      1.0) for e in (1, 2)],
        ev.BatchProgress(rid, "train", 3, 12, 23),
    ]:
        panel.engine_event(event)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_run_in_progress(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        pilot.app.action_tab("run")
        feed_run(pilot.app.query_one(RunPanel))
        await pilot.pause()

    assert snap_compare(app_for(tmp_path), terminal_size=size, run_before=before)


def test_run_charts(snap_compare: Any, tmp_path: Path) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        panel = pilot.app.query_one(RunPanel)
        feed_run(panel)
        await pilot.press("2", "v")  # the Run tab, then its next view: Charts
        await pilot.pause()
        assert panel.query_one("#run-tabs", TabbedContent).active == "tab-charts"

    assert snap_compare(app_for(tmp_path), terminal_size=(120, 40), run_before=before)


STUDY = ("rand", "mag", "snip", "synflow", "erk")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_top1_vs_compression(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    """The Charts view of a finished sweep: top-1 vs compression by pruner (Mag collapsed at
    c=2), the epochs beside it, one legend under both."""
    async def before(pilot: Pilot[Any]) -> None:
        await pilot.press("2")
        feed_sweep(pilot.app.query_one(RunPanel), STUDY, seeds=(1, 2))
        await pilot.press("v")
        await pilot.pause()

    assert snap_compare(app_for(tmp_path), terminal_size=size, run_before=before)


def test_layers_by_pruner(snap_compare: Any, tmp_path: Path) -> None:
    """The Layers view's comparison (p) at 80x24: 16 layers, five pruners, Mag's emptied
    layer."""
    async def before(pilot: Pilot[Any]) -> None:
        await pilot.press("2")
        panel = pilot.app.query_one(RunPanel)
        configs = feed_sweep(panel, STUDY, layers=16)
        panel.select_run(next(c.run_id for c in configs
                              if c.pruner == "snip" and c.compression == 2.0))
        panel.show_view("tab-layers")
        await pilot.pause()
        await pilot.press("p")
        await pilot.pause()

    assert snap_compare(app_for(tmp_path), terminal_size=(80, 24), run_before=before)


def test_results_chart(snap_compare: Any, tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The Results tab's chart (g) of the prepared store at 80x24."""
    prepared_store(tmp_path / "results")
    monkeypatch.chdir("/")  # the export field shows the working dir's report/: "/report"
    assert snap_compare(app_for(tmp_path), terminal_size=(80, 24), press=["3", "g"])

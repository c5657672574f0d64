"""The Textual app driven by a pilot: configure with keys, preview, run, cancel and resume,
a failing run, results (filter, sort, open, compare) and export.

Real runs use the bundled ``digits`` data with the small ``fc`` model on the CPU."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fakes
import pytest
from rich.style import Style
from textual.pilot import Pilot
from textual.widgets import (
    Button,
    Collapsible,
    Input,
    Select,
    SelectionList,
    Static,
    TabbedContent,
)

from prunetui.core import events as ev
from prunetui.core.config import RunConfig
from prunetui.core.status import RunStatus
from prunetui.core.store import RunRow, Store
from prunetui.tui import worker as glue
from prunetui.tui.app import PruneApp
from prunetui.tui.screens.compare import CompareScreen
from prunetui.tui.screens.confirm import ConfirmScreen
from prunetui.tui.screens.help import HelpScreen
from prunetui.tui.screens.results import ResultsView, compile_filter, sort_rows
from prunetui.tui.screens.run_detail import RunDetailScreen
from prunetui.tui.widgets.accuracy_chart import AccuracyChart
from prunetui.tui.widgets.config_form import OPTIONS_OPEN_HEIGHT, ConfigForm
from prunetui.tui.widgets.density_chart import DensityChart
from prunetui.tui.widgets.epoch_table import EpochTable
from prunetui.tui.widgets.flops_chart import FlopRatioChart
from prunetui.tui.widgets.key_bar import KeyBar
from prunetui.tui.widgets.preview import PreviewPanel
from prunetui.tui.widgets.run_panel import RunPanel
from prunetui.tui.widgets.run_progress import RunProgress, bar_text
from prunetui.tui.widgets.runs_table import RunsTable
from prunetui.tui.widgets.sweep_grid import SweepGrid
from prunetui.tui.widgets.table import FitTable, Table

FAST = {"timing_repeats": 1}
SIZE = (120, 40)


class RecordingApp(PruneApp):
    """The app, remembering every engine event and notification it got."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.events: list[ev.Event] = []
        self.notes: list[tuple[str, str]] = []

    def on_engine_event(self, message: glue.EngineEvent) -> None:
        self.events.append(message.event)
        super().on_engine_event(message)

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               **kw: Any) -> None:
        self.notes.append((str(severity), f"{title}: {message}"))
        super().notify(message, title=title, severity=severity, **kw)


def make_app(tmp_path: Path, **kw: Any) -> RecordingApp:
    kw.setdefault("preview", False)
    return RecordingApp(results_dir=tmp_path / "results", settings=FAST, **kw)


async def wait_for(pilot: Pilot[Any], cond: Callable[[], bool], timeout: float = 40.0,
                   what: str = "condition") -> None:
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def wait_idle(pilot: Pilot[Any], app: PruneApp, timeout: float = 60.0) -> None:
    await wait_for(pilot, lambda: not app.sweep_active, timeout, "the sweep to end")
    await pilot.pause()


async def form_built(pilot: Pilot[Any], app: PruneApp) -> ConfigForm:
    """The form, with Options opened and its fields mounted (they are on first show)."""
    form = app.query_one(ConfigForm)
    app.query_one("#options", Collapsible).collapsed = False
    await wait_for(pilot, lambda: form._built, what="Options")
    return form


async def configure(pilot: Pilot[Any], app: PruneApp, *, epochs: str) -> None:
    """fc on digits, pruner Rand only, compression 1, ``epochs`` epochs; with keys only."""
    form = await form_built(pilot, app)
    app.query_one("#dataset", Select).focus()
    await pilot.press("enter")  # open the dataset list: mnist, fashion-mnist, cifar10, ...
    await pilot.press("down", "down", "down", "down", "enter")  # ... cifar100, digits
    assert app.query_one("#dataset", Select).value == "digits"
    await pilot.press("tab")  # the pruners list; its cursor starts on the default, SynFlow
    assert app.focused is app.query_one("#pruners", SelectionList)
    await pilot.press("space")  # SynFlow off
    await pilot.press("home", "space")  # Rand on
    assert form.selected_pruners() == ["rand"]
    await pilot.press("tab")  # compressions: 1 is selected by default
    assert form.selected_compressions() == [1.0]
    await pilot.press("tab")  # the Options title: open on a 40-line terminal, else enter
    if app.query_one("#options", Collapsible).collapsed:
        await pilot.press("enter")
    assert not app.query_one("#options", Collapsible).collapsed
    await tab_to(pilot, app, "post_epochs")
    await pilot.press(*epochs)  # typing replaces the (selected) value
    await tab_to(pilot, app, "device")
    await pilot.press(*"cpu")
    await pilot.pause()
    state = form.state()
    assert state.error is None, state.error
    assert [(c.model, c.dataset, c.pruner, c.compression, c.post_epochs, c.device)
            for c in state.configs] == [("fc", "digits", "rand", 1.0, int(epochs), "cpu")]


async def tab_to(pilot: Pilot[Any], app: PruneApp, id: str) -> None:
    """Press tab until the widget ``id`` has the focus (each step stays in the form)."""
    form = app.query_one(ConfigForm)
    for _ in range(60):
        if app.focused is not None and app.focused.id == id:
            return
        await pilot.press("tab")
        assert app.focused is not None and form in app.focused.ancestors_with_self, app.focused
    raise AssertionError(f"tab never reached #{id}")


def digits(**kw: Any) -> RunConfig:
    return RunConfig(**{"model": "fc", "dataset": "digits", "pruner": "rand",
                        "compression": 1, "post_epochs": 2, "device": "cpu", **FAST, **kw})


# -- configure -----------------------------------------------------------------------------


async def test_keys_configure_and_run_updates_table_and_charts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from prunetui.core.run import steps

    real = steps.train_epoch
    checked = threading.Event()

    def held(*args: Any, **kwargs: Any) -> Any:
        # A digits epoch can end before the test looks: hold it until the in-flight state
        # has been checked.
        checked.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(steps, "train_epoch", held)
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await configure(pilot, app, epochs="1")
        # In a text field the letter keys are text; escape leaves it, then 'r' runs.
        assert isinstance(app.focused, Input)
        assert [d for _, _, d, _ in app.query_one(KeyBar).items()[0]] == ["Leave field"]
        await pilot.press("escape")
        assert app.focused is app.query_one("#model")
        assert "Leave field" not in [d for _, _, d, _ in app.query_one(KeyBar).items()[0]]
        await pilot.press("r")
        assert app.sweep_active
        await pilot.pause()
        assert app.query_one("#main-tabs").active == "tab-run"
        shown, _ = app.query_one(KeyBar).items()
        enabled = {description: on for _, _, description, on in shown}
        assert enabled["Cancel"] and not enabled["Run"]  # Run is shown dimmed meanwhile
        assert app.query_one(RunProgress).value("sweep") == (0, 1)
        checked.set()
        await wait_idle(pilot, app)
        table = app.query_one(EpochTable)
        assert table.row_count == 1
        assert str(table.get_row_at(0)[0]) == "1/1"
        chart = app.query_one(AccuracyChart)
        assert chart.has_data()
        assert app.query_one(FlopRatioChart).has_data()
        kinds = {type(e).__name__ for e in app.events}
        assert {"RunStarted", "PhaseStarted", "BatchProgress", "EpochEnd"} <= kinds
        config = digits(post_epochs=1)
        row = Store(tmp_path / "results").get(config.run_id)
        assert row is not None and row.status == "finished"
        grid = app.query_one(SweepGrid)
        assert str(grid.get_cell("1", "rand")) == f"{row.top1:.2f}"
        assert ("information", f"Run finished: fc·digits Rand c=1 ({config.run_id}): top-1 "
                f"{row.top1:.2f}") in app.notes
        # The Layers tab shows the finished run's density bars and a layer's histogram.
        assert app.query_one("#pick-run", Select).value == config.run_id
        assert app.query_one("#pick-layer", Select).value == "layers.0"
        # v cycles the Run tab's views, the focus following; Enter on a cell opens Layers.
        await pilot.press("2")
        tabs = app.query_one("#run-tabs", TabbedContent)
        seen = []
        for _ in range(3):
            await pilot.press("v")
            await pilot.pause()
            seen.append(tabs.active)
        assert seen == ["tab-charts", "tab-layers", "tab-live"]
        grid.focus()
        grid.move_cursor(row=grid.get_row_index("1"), column=grid.get_column_index("rand"))
        await pilot.press("enter")
        await pilot.pause()
        assert tabs.active == "tab-layers"
        # Leaving the Run tab and coming back keeps the view it showed.
        for key in ("1", "2"):
            await pilot.press(key)
            await pilot.pause()
        assert tabs.active == "tab-layers" and app.focused is not None
        assert tabs.get_pane("tab-layers") in app.focused.ancestors
        # Running the same config again shows the stored run and says nothing was retrained.
        await pilot.press("r")
        await wait_idle(pilot, app)
        assert table.row_count == 1 and str(table.get_row_at(0)[0]) == "1/1"
        assert app.query_one(RunProgress).value("epoch") == (1, 1)
        assert "1 of them already stored" in str(app.query_one("#run-status", Static).render())
        assert app.notes[-1] == ("information", f"Already stored: fc·digits Rand c=1 "
                                 f"({config.run_id}): top-1 {row.top1:.2f} (the stored "
                                 "result; nothing was retrained)")
        # The results tab lists it.
        await pilot.press("3")
        assert app.query_one(RunsTable).row_count == 1


async def test_options_open_on_a_tall_terminal_and_follow_resizes(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    tall = OPTIONS_OPEN_HEIGHT  # the whole form fits
    async with app.run_test(size=(100, 30)) as pilot:
        options = app.query_one("#options", Collapsible)
        form = app.query_one(ConfigForm)
        assert options.collapsed and not form._built  # built when first shown
        await pilot.resize_terminal(100, tall)
        await pilot.pause()
        assert not options.collapsed
        await wait_for(pilot, lambda: form._built, what="Options")
        options.collapsed = True  # by hand: kept while the terminal stays tall
        await pilot.resize_terminal(110, tall + 2)
        await pilot.pause()
        assert options.collapsed
        await pilot.resize_terminal(100, 24)
        await pilot.pause()
        assert options.collapsed
        await pilot.resize_terminal(100, tall)
        await pilot.pause()
        assert not options.collapsed


async def test_invalid_values_shown_inline_and_block_the_run(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        form = await form_built(pilot, app)
        form.set_values(lr="abc")
        await pilot.pause()
        msg = str(app.query_one("#validation", Static).render())
        assert msg == "✗ invalid LR 'abc'; it must be a number > 0"  # the field's label
        assert app.query_one("#lr", Input).has_class("-rejected")
        assert app.query_one("#run", Button).disabled
        import torch  # loaded, as the previews load it: the form then checks the device

        if not torch.cuda.is_available():
            form.set_values(lr="0.01", device="cuda")
            await pilot.pause()
            msg = str(app.query_one("#validation", Static).render())
            assert msg == ("✗ Device 'cuda' is not available: no CUDA GPU is visible; "
                           "set Device to cpu or auto")
            assert app.query_one("#device", Input).has_class("-rejected")
            app.query_one("#device", Input).focus()
            await pilot.press("tab")  # leaving the field keeps the mark
            await pilot.pause()
            assert app.query_one("#device", Input).has_class("-rejected")
            assert app.query_one("#run", Button).disabled
        form.set_values(lr="0.01", batch_size="0", device="auto")
        await pilot.pause()
        msg = str(app.query_one("#validation", Static).render())
        assert msg == "✗ invalid Batch size 0; it must be an integer >= 1"  # the field's name
        assert app.query_one("#batch_size", Input).has_class("-rejected")
        form.set_values(batch_size="64", model="vgg11")
        await pilot.pause()
        msg = str(app.query_one("#validation", Static).render())
        assert "needs 32x32 or 64x64 inputs" in msg
        assert app.query_one("#dataset", Select).has_class("-rejected")
        app.query_one("#pruners", SelectionList).focus()
        await pilot.press("r")
        assert not app.sweep_active
        assert app.notes[-1][0] == "error"
        form.set_values(model="fc", pruners=[])
        await pilot.pause()
        assert "choose at least one pruner (space toggles)" in str(
            app.query_one("#validation").render())
        # r on an invalid form puts the focus where the fix is (space then toggles a pruner).
        app.query_one("#compressions", SelectionList).focus()
        await pilot.press("r")
        assert app.focused is app.query_one("#pruners", SelectionList)
        form.set_values(pruners=["rand", "mag"], dataset="digits", extra="9")
        await pilot.pause()
        assert "fc on digits: compression 9 keeps no weight" in str(
            app.query_one("#validation").render())
        assert app.query_one("#extra", Input).has_class("-rejected")
        await pilot.press("r")
        assert app.focused is app.query_one("#extra", Input)
        assert not app.query_one("#options").collapsed
        assert app.query_one("#run", Button).disabled
        form.set_values(extra="nan")  # typed in More c: marked there too
        await pilot.pause()
        assert "invalid Compression nan" in str(app.query_one("#validation").render())
        assert app.query_one("#extra", Input).has_class("-rejected")
        form.set_values(extra="", seeds="1 99999999999999999999999")  # would overflow torch
        await pilot.pause()
        assert str(app.query_one("#validation").render()) == (
            "✗ invalid Seed 99999999999999999999999; it must be an integer from 0 to 4294967295")
        assert app.query_one("#seeds", Input).has_class("-rejected")
        assert app.query_one("#run", Button).disabled
        form.set_values(seeds="1")
        form.set_values(pruners=["rand", "mag"], compressions=[0.5, 2.0], extra="1.25")
        await pilot.pause()
        assert len(form.state().configs) == 6
        assert "6 runs" in str(app.query_one("#sweep-size", Static).render())


async def test_the_reason_a_run_is_refused_stays_in_view_on_a_small_terminal(
        tmp_path: Path) -> None:
    """At 80x24 with Options opened by hand the form scrolls; the validation line and the
    Run button stay on screen with it, whatever the scroll position."""
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await form_built(pilot, app)
        app.query_one("#options", Collapsible).collapsed = False
        form.set_values(lr="abc")
        await pilot.pause()
        assert form.max_scroll_y > 0  # the form does overflow: the test means something
        for y in (0, form.max_scroll_y):
            form.scroll_to(y=y, animate=False)
            await pilot.pause()
            visible = app.screen.find_widget(form).region
            for widget in (app.query_one("#validation"), app.query_one("#run", Button)):
                region = app.screen.find_widget(widget).region
                assert region.height > 0 and visible.contains_region(region), widget
        assert "invalid LR 'abc'" in str(app.query_one("#validation").render())
        # Typing in the last field, it stays in view above the message that grows under it.
        form.set_values(lr="0.001")
        form.scroll_to(y=0, animate=False)
        app.query_one("#extra", Input).focus()
        await pilot.press(*"0.25 9")
        await pilot.pause()
        assert "keeps no weight" in str(app.query_one("#validation").render())
        extra = app.screen.find_widget(app.query_one("#extra", Input)).region
        foot = app.screen.find_widget(app.query_one("#form-foot")).region
        assert extra.height > 0 and extra.bottom <= foot.y, (extra, foot)


async def test_preview_per_layer_and_data_errors(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        form = await form_built(pilot, app)
        panel = app.query_one(PreviewPanel)
        layers = panel.query_one("#preview-layers")
        # Previews on from here (the default, SynFlow at 100 iterations, is slower to show).
        app.preview_enabled = True
        form.set_values(dataset="digits", pruners=["mag"])
        # The cursor picks the pruner to preview.
        app.query_one("#pruners", SelectionList).highlighted = 1  # Mag
        await wait_for(pilot, lambda: layers.row_count > 0 and "Mag" in str(
            panel.query_one("#preview-title").render()), what="the Mag preview")
        assert "ratio" in str(panel.query_one("#preview-summary").render())
        assert layers.row_count == 6  # fc: 6 linear layers
        assert panel.border_subtitle == ""  # Mag is ticked
        app.query_one("#pruners", SelectionList).highlighted = 0  # Rand: not ticked
        await pilot.pause()
        assert panel.border_subtitle == "under the cursor · not ticked"
        app.query_one("#pruners", SelectionList).highlighted = 1
        form.set_values(extra="abc")  # another field's error: Mag is still ticked
        await pilot.pause()
        assert form.state().error and form.state().preview is not None
        assert panel.border_subtitle == ""
        form.set_values(extra="")
        # SNIP needs data; MNIST isn't there (empty data dir, no download in previews).
        form.set_values(dataset="mnist")
        app.query_one("#pruners", SelectionList).highlighted = 2  # SNIP
        await wait_for(pilot, lambda: "not found" in str(
            panel.query_one("#preview-summary").render()), what="the DataError")
        assert layers.row_count == 0
        shown = str(panel.query_one("#preview-summary").render())  # in the app's terms
        assert "mnist not found" in shown and "--" not in shown  # no CLI flag in the app
        # Keeping less than one weight is refused by the form, as the engine would.
        form.set_values(dataset="digits", extra="9")
        app.query_one("#pruners", SelectionList).highlighted = 0
        await pilot.pause()
        assert "compression 9 keeps no weight" in (form.state().error or "")


# -- run, cancel, resume, fail -------------------------------------------------------------


@pytest.mark.parametrize("cancel_with", ["key", "button"])
async def test_cancel_mid_run_then_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         cancel_with: str) -> None:
    from prunetui.core.run import steps

    real = steps.train_epoch
    calls = {"n": 0}

    def gated(*args: Any, **kwargs: Any) -> Any:
        # Hold the second epoch until the cancel key has landed: a digits epoch is faster
        # than a key press on a loaded machine, and the test is about cancel, not speed.
        calls["n"] += 1
        token = kwargs.get("cancel")
        if calls["n"] == 2 and token is not None:
            deadline = time.monotonic() + 30
            while not token.cancelled and time.monotonic() < deadline:
                time.sleep(0.01)
        return real(*args, **kwargs)

    monkeypatch.setattr(steps, "train_epoch", gated)
    app = make_app(tmp_path)
    config = digits(post_epochs=3)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one(ConfigForm).set_values(dataset="digits", pruners=["rand"],
                                             post_epochs="3", device="cpu")
        await pilot.pause()
        assert app.query_one(ConfigForm).state().configs == [config]
        await pilot.click("#run")
        await wait_for(pilot, lambda: app.query_one(EpochTable).row_count >= 1,
                       what="the first epoch")
        if cancel_with == "key":
            await pilot.press("c")
        else:
            await pilot.click("#cancel")
        await wait_idle(pilot, app)
        row = Store(tmp_path / "results").get(config.run_id)
        assert row is not None and row.status == "cancelled"
        assert ("warning", f"Run cancelled: fc·digits Rand c=1 ({config.run_id}) stored as "
                "cancelled; run it again to resume") in app.notes
        assert "cancelled" in str(app.query_one(SweepGrid).get_cell("1", "rand"))
        stopped_at = row.epoch
        assert 1 <= stopped_at < 3
        # Start the same config again: the engine resumes from the checkpoint.
        app.events.clear()
        if cancel_with == "key":
            assert app.focused is app.query_one(EpochTable)
        await pilot.press("r")
        await wait_idle(pilot, app)
        started = [e for e in app.events if isinstance(e, ev.RunStarted)]
        assert started and started[0].resumed_from_epoch == stopped_at
        ends = [e.epoch for e in app.events if isinstance(e, ev.EpochEnd)]
        assert ends == list(range(stopped_at + 1, 4))
        row = Store(tmp_path / "results").get(config.run_id)
        assert row is not None and row.status == "finished"
        assert app.query_one(EpochTable).row_count == 3  # stored epochs + the new ones


async def test_failing_run_notifies_and_app_stays_alive(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from prunetui.core.run import engine

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom in the worker")

    monkeypatch.setattr(engine, "_execute", boom)
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one(ConfigForm).set_values(dataset="digits", pruners=["rand", "mag"],
                                             device="cpu")
        await pilot.pause()
        app.query_one("#pruners").focus()
        await pilot.press("r")
        await wait_idle(pilot, app)
        errors = [n for s, n in app.notes if s == "error"]
        assert len(errors) == 2  # each cell fails, the sweep goes on
        assert "RuntimeError: boom in the worker" in errors[0]
        store = Store(tmp_path / "results")
        assert [r.status for r in store.query()] == ["failed", "failed"]
        assert "failed" in str(app.query_one(SweepGrid).get_cell("1", "mag"))
        # Still alive and responsive.
        await pilot.press("3")
        assert app.query_one("#main-tabs").active == "tab-results"
        assert app.query_one(RunsTable).row_count == 2
        assert app.is_running


async def test_quit_asks_while_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prunetui.core.errors import RunCancelled
    from prunetui.core.run import engine

    def endless(config: RunConfig, *, emit: Any, cancel: ev.CancelToken, **kw: Any) -> Any:
        emit(ev.RunStarted(config.run_id, config.to_dict()))
        while not cancel.cancelled:
            time.sleep(0.01)
        emit(ev.RunFailed(config.run_id, "cancelled", "cancelled by the user"))
        raise RunCancelled("cancelled")

    monkeypatch.setattr(engine, "run", endless)
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one(ConfigForm).set_values(dataset="digits", pruners=["rand"])
        await pilot.pause()
        app.query_one("#pruners").focus()
        await pilot.press("r")
        await wait_for(pilot, lambda: any(isinstance(e, ev.RunStarted) for e in app.events),
                       what="the run to start")
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        await pilot.press("n")
        assert app.is_running and app.sweep_active
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        # The run ends while the question is up: it no longer speaks of an active run.
        assert app.cancel_token is not None
        app.cancel_token.cancel()
        await wait_idle(pilot, app)
        question = str(app.screen.query_one("#confirm-question", Static).render())
        assert question == "The run has ended: nothing is left to cancel. Quit?"
        await pilot.press("y")
        await pilot.pause()
    assert not app.is_running
    assert app.cancel_token is not None and app.cancel_token.cancelled


# -- results -------------------------------------------------------------------------------


def put(store: Store, pruner: str, c: float, top1: float, *, seed: int = 1,
        status: str = "finished", epochs: int = 3) -> str:
    cfg = RunConfig(model="fc", dataset="digits", pruner=pruner, compression=c, seed=seed,
                    post_epochs=epochs)
    rid = cfg.run_id
    store.start_run(cfg.to_dict(), rid, "ref")
    for e in range(1, epochs + 1):
        store.record_epoch(rid, {"phase": "train", "epoch": e, "train_loss": 1.0 / e,
                                 "test_loss": 1.1 / e, "top1": top1 * e / epochs,
                                 "top5": 90.0 + e, "lr": 0.001, "seconds": 0.1}, e)
    if status != "finished":
        store.fail_run(rid, status, "boom")
        return rid
    names = ["layers.0", "layers.2", "layers.4"]
    layers = [fakes.layer(n, shape=(100, 64), remaining=640, density=d)
              for n, d in zip(names, (0.2, 0.1, 0.05), strict=True)]
    built = fakes.structure(layers, density=10 ** -c, dense=19200, ratio=10 ** -c)
    store.finish_run(rid, fakes.result(cfg, top1, built=built, history=store.epochs(rid)))
    d = store.run_dir(rid)
    d.mkdir(parents=True, exist_ok=True)
    import json

    (d / "histograms.json").write_text(json.dumps(
        [{"layer": n, "edges": [-0.2, -0.1, 0.0, 0.1, 0.2],
          "fractions": [0.01, 0.05, 0.05, 0.01]} for n in names]))
    return rid


def prepared_store(root: Path) -> Store:
    s = Store(root)
    put(s, "rand", 1.0, 80.0)
    put(s, "mag", 1.0, 91.0)
    put(s, "synflow", 1.0, 92.5)
    put(s, "mag", 2.0, 70.0)
    put(s, "snip", 1.0, 0.0, status="cancelled", epochs=2)
    return s


def test_filter_and_sort_functions(tmp_path: Path) -> None:
    rows = prepared_store(tmp_path / "results").query()
    def matching(query: str) -> list[RunRow]:
        return [r for r in rows if compile_filter(query)(r)]

    assert [r.pruner for r in matching("pruner=mag")] == ["mag", "mag"]
    assert [r.compression for r in matching("mag c=2")] == [2.0]
    assert [r.pruner for r in matching("SynFlow")] == ["synflow"]
    assert [r.pruner for r in matching("status=cancelled")] == ["snip"]
    assert [r.top1 for r in matching("top1>90")] == [91.0, 92.5]
    assert [r.pruner for r in matching("c>=2")] == ["mag"]
    assert [r.pruner for r in matching("status!=finished")] == ["snip"]
    assert [r.pruner for r in matching("epochs=2")] == ["snip"]
    assert len(matching("c=")) == 5  # still being typed: no test yet
    for bad, said in (("foo=bar", "unknown filter key 'foo'; keys: model, dataset"),
                      ("c=abc", "c=abc: 'abc' is not a number"),
                      ("pruner>snip", "pruner>snip: pruner takes = or != only")):
        with pytest.raises(ValueError, match=re.escape(said)):
            compile_filter(bad)
    assert [r.top1 for r in sort_rows(rows, "top1")][:3] == [92.5, 91.0, 80.0]
    assert [r.pruner for r in sort_rows(rows, "pruner")] == ["rand", "mag", "mag", "snip",
                                                             "synflow"]


async def test_results_filter_sort_open_compare(tmp_path: Path) -> None:
    prepared_store(tmp_path / "results")
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        view = app.query_one(ResultsView)
        table = app.query_one(RunsTable)
        assert table.row_count == 5
        table.focus()
        await pilot.press("slash")
        assert app.focused is app.query_one("#filter", Input)
        await pilot.press(*"pruner=mag", "enter")
        assert table.row_count == 2
        assert app.focused is table
        app.query_one("#filter", Input).value = ""
        app.query_one("#sort", Select).value = "top1"
        await pilot.pause()
        assert [r.top1 for r in table.shown][:2] == [92.5, 91.0]
        # Open the best run: its curve, per-layer table and histogram.
        table.focus()
        table.move_cursor(row=0)
        await pilot.press("enter")
        assert isinstance(app.screen, RunDetailScreen)
        detail = app.screen
        assert detail.row.pruner == "synflow"
        assert detail.query_one("#layer-table").row_count == 3
        assert detail.query_one("#detail-epochs").row_count == 3
        assert detail.query_one("#detail-hist").has_data()
        await pilot.press("escape")
        assert not isinstance(app.screen, RunDetailScreen)
        # Mark two runs and compare them.
        await pilot.press("space", "down", "space")
        assert len(table.marked) == 2
        await pilot.press("v")
        assert isinstance(app.screen, CompareScreen)
        assert app.screen.query_one("#compare-table").row_count == 2
        assert app.screen.query_one(AccuracyChart).has_data()
        await pilot.press("escape")
        assert len(view.export_rows()) == 2
        # Delete the two marked runs: asked first, "n" keeps them, "y" deletes them.
        store = Store(tmp_path / "results")
        marked = set(table.marked)
        await pilot.press("delete")
        assert isinstance(app.screen, ConfirmScreen)
        assert "Delete 2 runs with their" in str(app.screen.query_one("#confirm-question").render())
        assert [d for _, _, d, _ in app.screen.query_one(KeyBar).items()[0]] == ["Delete", "Keep"]
        await pilot.press("n")
        assert table.row_count == 5
        await pilot.press("delete", "y")
        await pilot.pause()
        assert table.row_count == 3 and not table.marked
        assert {r.run_id for r in store.query()}.isdisjoint(marked)
        assert not any((tmp_path / "results" / rid).exists() for rid in marked)
        # A run removed elsewhere (`prunetui rm` in another shell) leaves the shown tab soon.
        store.remove([table.shown[0].run_id])
        await wait_for(pilot, lambda: table.row_count == 2, timeout=3 * view.WATCH_SECONDS,
                       what="the Results tab to notice the store changed")


async def test_an_empty_results_table_says_why(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        table = app.query_one(RunsTable)
        assert table.border_subtitle == (
            "no runs yet: configure one (1) and press r, or use `prunetui run`")
    prepared_store(tmp_path / "results")
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        app.query_one("#filter", Input).value = "pruner=grasp"
        await pilot.pause()
        assert app.query_one(RunsTable).border_subtitle == "no run matches the filter"
        app.query_one("#filter", Input).value = "top1>90 foo=1"
        await pilot.pause()
        # What is wrong in the table's border, the keys there are on the line below it,
        # whole at 80 columns.
        assert app.query_one(RunsTable).border_subtitle == "✗ unknown filter key 'foo'"
        hint = app.query_one("#results-hint", Static)
        assert str(hint.render()).replace("\n", " ").startswith(
            "✗ unknown filter key 'foo'; keys: model, dataset")
        assert str(hint.render()).endswith("or plain words")
        assert 2 <= hint.size.height <= 3 and hint.has_class("-error")
        assert app.query_one("#filter", Input).has_class("-rejected")
        app.query_one("#filter", Input).value = "top1>90"
        await pilot.pause()
        assert app.query_one(RunsTable).row_count == 2
        assert not app.query_one("#filter", Input).has_class("-rejected")
        assert str(hint.render()).startswith("enter open · space mark")


async def test_run_detail_resumes_its_own_run(tmp_path: Path) -> None:
    store = prepared_store(tmp_path / "results")
    cancelled = store.query(status="cancelled")[0]
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        table = app.query_one(RunsTable)
        for row in (0, [r.run_id for r in table.shown].index(cancelled.run_id)):
            table.focus()
            table.move_cursor(row=row)
            await pilot.press("enter")
            assert isinstance(app.screen, RunDetailScreen)
            keys = [d for _, _, d, _ in app.screen.query_one(KeyBar).items()[0]]
            if app.screen.row.status == "finished":
                assert "Resume" not in keys and "Run" not in keys  # nothing to resume
                await pilot.press("r")  # nor does it start the Configure tab's run
                await pilot.pause()
                assert not app.sweep_active and isinstance(app.screen, RunDetailScreen)
                await pilot.press("escape")
        assert "r resumes it" in str(app.screen.query_one("#detail-summary").render())
        assert "Resume" in keys
        await pilot.press("r")  # this run, not the Configure tab's (fc/mnist/SynFlow)
        assert app.query_one(RunPanel).configs == [RunConfig.from_dict(cancelled.config)]
        await wait_idle(pilot, app)
        assert store.get(cancelled.run_id).status == "finished"  # type: ignore[union-attr]


def test_run_detail_says_what_r_does_for_each_way_a_run_stopped(tmp_path: Path) -> None:
    from prunetui.tui.screens.run_detail import summary

    store = Store(tmp_path)
    config = digits()
    store.start_run(config.to_dict(), config.run_id)

    def line(status: str, error: str) -> str:
        store.fail_run(config.run_id, status, error)
        return summary(store.get(config.run_id)).splitlines()[1]  # type: ignore[arg-type]

    assert line("cancelled", "cancelled by the user") == (
        "stopped after epoch 0: cancelled by the user; r resumes it")
    assert line("failed", "RuntimeError: x") == (
        "stopped after epoch 0: RuntimeError: x; r runs it again")
    assert line("diverged", "loss became nan in epoch 1") == (
        "stopped after epoch 0: loss became nan in epoch 1; seeded, it would diverge again: "
        "change the lr or seed in Configure, or delete it in Results (del)")
    diverged = RunDetailScreen(store.get(config.run_id), store)  # type: ignore[arg-type]
    assert diverged.check_action("resume", ()) is False  # no Resume key: it would diverge
    # A killed run (its lock is free, its row still says running) says "resume" once.
    store.start_run(config.to_dict(), config.run_id)
    with store.run_lock(config.run_id):
        pass  # what a killed process leaves: the lock file, held by nobody
    killed = summary(store.get(config.run_id)).splitlines()[1]  # type: ignore[arg-type]
    assert killed.endswith("(killed, or the machine went down); r resumes it"), killed


async def test_export_writes_the_report(tmp_path: Path) -> None:
    prepared_store(tmp_path / "results")
    out = tmp_path / "out"
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        app.query_one("#export-path", Input).value = str(out)
        await pilot.click("#export")
        await wait_for(pilot, lambda: any("Exported" in n for _, n in app.notes),
                       what="the export")
        assert (out / "report.md").exists()
        text = (out / "report.md").read_text()
        assert "SynFlow" in text and "Digits" in text
        # The runs are at c = 1 and 2: the per-layer tables take 1, not the default 0.5.
        assert any(f"wrote {out / 'report.md'} (5 runs)" in n
                   and n.endswith("; per-layer tables at c=1 (no run at 0.5)")
                   for _, n in app.notes), app.notes
        assert "compression 0.5" not in text and "compression 1" in text
        # A second export refuses to overwrite unless asked to. A Button ignores clicks for
        # 0.2 s after a press (its "-active" flash), and this export can finish sooner.
        button = app.query_one("#export", Button)
        await wait_for(pilot, lambda: not button.has_class("-active"), what="the press flash")
        app.notes.clear()
        await pilot.click("#export")
        await wait_for(pilot, lambda: bool(app.notes), what="the refusal")
        assert app.notes[0][0] == "error" and "tick overwrite" in app.notes[0][1]


# -- feel ----------------------------------------------------------------------------------


async def test_help_theme_palette_commands(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one("#pruners").focus()
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        theme = app.theme
        await pilot.press("t")
        assert app.theme != theme
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Run", "Cancel run", "Results", "Export report", "Help", "Next view",
                "Filter results", "Compare runs", "Delete runs"} <= titles
        commands = {c.title: c.callback for c in app.get_system_commands(app.screen)}
        commands["Filter results"]()
        await pilot.pause()
        assert app.focused is app.query_one("#filter", Input)
        commands["Next view"]()
        views = app.query_one("#run-tabs", TabbedContent)
        await wait_for(pilot, lambda: views.active == RunPanel.VIEWS[1], what="the next view")
        assert app.query_one("#main-tabs").active == "tab-run"
        await pilot.press("2")
        assert app.query_one("#main-tabs").active == "tab-run"
        await pilot.press("c")  # nothing to cancel: the binding is disabled
        assert app.notes == []
        # The command palette runs the app's commands.
        await pilot.press("ctrl+p")
        await pilot.press(*"export report")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(app.notes), what="the export command")
        assert app.query_one("#main-tabs").active == "tab-results"
        assert app.notes == [("warning", "Export: no runs to export (check the filter)")]
        await pilot.press("q")
        await pilot.pause()
    assert not app.is_running


async def test_key_bar_follows_the_focus_and_clicks_press_keys(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        bar = app.query_one(KeyBar)
        shown, pinned = bar.items()
        enabled = {description: on for _, _, description, on in shown}
        assert enabled == {"Quit": True, "Run": True, "Cancel": False}  # nothing to cancel
        assert [(k, d) for _, k, d, _ in pinned] == [("?", "Help"), ("^p", "palette")]
        await pilot.press("3")  # the runs table has the focus: its keys join
        descriptions = [d for _, _, d, _ in bar.items()[0]]
        assert {"Mark", "Compare", "Filter", "Export"} <= set(descriptions)
        # On a narrow terminal the entries that do not fit go; help and the palette stay.
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        line = str(bar.render())
        assert len(line) == 80 and line.rstrip().endswith("? Help  ^p palette")
        x = next(x for x in range(bar.size.width) if bar.key_at(x) == "question_mark")
        await pilot.click(KeyBar, offset=(x, 0))
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        # A dialog's key bar shows its own keys, not those of the screen under it.
        assert [d for _, _, d, _ in app.screen.query_one(KeyBar).items()[0]] == ["Close"]


async def test_table_draws_as_a_datatable_with_one_style_lookup_per_render(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from textual.app import App, ComposeResult
    from textual.dom import DOMNode
    from textual.geometry import Region
    from textual.widgets import DataTable

    class Pair(App[None]):
        CSS = "DataTable { height: 12; }"

        def compose(self) -> ComposeResult:
            yield Table(id="ours", zebra_stripes=True, cursor_type="row")
            yield DataTable(id="theirs", zebra_stripes=True, cursor_type="row")

        def on_mount(self) -> None:
            for table in self.query(DataTable):
                table.add_columns("Epoch", "Top-1")
                for e in range(5):
                    table.add_row(str(e), f"{90 + e / 10:.2f}")

    def lines(table: DataTable[Any]) -> list[list[tuple[str, Style | None]]]:
        table.notify_style_update()  # drop its caches: draw every line afresh
        return [[(seg.text, seg.style) for seg in strip]
                for strip in table.render_lines(Region(0, 0, *table.outer_size))]

    app = Pair()
    async with app.run_test(size=(40, 30)) as pilot:
        ours, theirs = app.query_one("#ours", Table), app.query_one("#theirs", DataTable)
        drawn = {}
        for focused in (ours, theirs):  # focused: the cursor and header styles change
            focused.focus()
            await pilot.pause()
            drawn[focused.id] = lines(focused)
        assert drawn["ours"] == drawn["theirs"]
        app.set_focus(None)
        await pilot.pause()
        assert lines(ours) == lines(theirs)
        assert ours.rich_style == theirs.rich_style  # outside a render: the live lookup
        calls: list[DOMNode] = []
        lookup = DOMNode.rich_style.fget
        assert lookup is not None

        def counted(node: DOMNode) -> Style:
            calls.append(node)
            return lookup(node)

        monkeypatch.setattr(DOMNode, "rich_style", property(counted))
        lines(ours)
        assert calls.count(ours) == 1
        lines(theirs)
        assert calls.count(theirs) >= 12  # DataTable's own: one per line drawn


async def test_run_progress_bars(tmp_path: Path) -> None:
    done, rest = Style(color="green"), Style(color="grey37")

    def filled(fraction: float) -> tuple[str, int]:
        text = bar_text(10, fraction, done, rest)
        assert len(text) == 10
        return text.plain, sum(s.end - s.start for s in text.spans if s.style == done)

    assert [filled(f) for f in (0, 0.55, 1, 7, -1)] == [
        ("━" * 10, 0), ("━" * 5 + "╸" + "━" * 4, 6), ("━" * 10, 10), ("━" * 10, 10),
        ("━" * 10, 0)]
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        progress = app.query_one(RunProgress)
        progress.set("batch", 12, 23)
        assert progress.value("batch") == (12, 23) and progress.counter("batch") == "12/23"
        progress.reset("batch")
        assert progress.counter("batch") == ""
        with pytest.raises(KeyError, match="no progress bar 'batches'"):
            progress.set("batches", 1, 2)
        # A sweep's bar counts the cells that ended; a cancelled one resumes, it is not done.
        panel = app.query_one(RunPanel)
        configs = [digits(pruner=p) for p in ("rand", "mag", "snip")]
        panel.begin(configs)
        for i, status in enumerate([RunStatus.DIVERGED, RunStatus.REFUSED, RunStatus.CANCELLED]):
            panel.cell_started(i, 3, configs[i])
            panel.cell_done(i, 3, configs[i], status, None, "why")
        assert progress.counter("sweep") == "2/3"
        panel.sweep_done([RunStatus.DIVERGED, RunStatus.REFUSED, RunStatus.CANCELLED],
                         cancelled=True)
        assert str(panel.query_one("#run-status", Static).render()) == (
            "■ 0/3 finished · 1 diverged · 1 refused · cancelled: run it again to resume")
        await pilot.press("q")


async def test_an_imp_run_shows_its_rounds(tmp_path: Path) -> None:
    """IMP's rounds before the last train as phases "round1", "round2"…: the status line says
    "IMP round N" and the epoch bar follows each round's epochs."""
    from prunetui.core import events as ev

    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(RunPanel)
        config = digits(pruner="imp", compression=0.5, post_epochs=2)
        panel.begin([config])
        panel.cell_started(0, 1, config)
        panel.engine_event(ev.PhaseStarted(config.run_id, "round2", 2))
        status = panel.query_one("#run-status", Static)
        assert " · IMP round 2 · " in str(status.render())
        panel.engine_event(ev.EpochEnd(config.run_id, "round2", 1, 2, 0.5, 0.4, 80.0, 99.0,
                                       1e-3, 0.1))
        assert " · IMP round 2 epoch 1/2 · top-1 80.00 · " in str(status.render())
        assert app.query_one(RunProgress).value("epoch") == (1, 2)
        await pilot.press("q")


async def test_a_flat_accuracy_curve_keeps_its_axis_at_its_value() -> None:
    """Every epoch at 100.00: the y axis ends at 100 with the line at its top (it ran to 200
    when the flat range was widened upwards)."""
    from textual.app import App, ComposeResult

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield AccuracyChart()

    app = One()
    async with app.run_test(size=(60, 16)) as pilot:
        chart = app.query_one(AccuracyChart)
        chart.set_run("r1", "fc Rand c=1", {1: 100.0, 2: 100.0, 3: 100.0})
        await pilot.pause()
        ticks = [float(line.split("┤")[0]) for line in str(chart.render()).splitlines()
                 if "┤" in line]
        assert max(ticks) == 100.0 and min(ticks) >= 90.0, ticks


async def test_layers_view_shows_a_training_run_as_pruned(tmp_path: Path) -> None:
    """Pruning's per-layer result is stored when it ends: the Layers view offers it while
    the run trains, instead of waiting for the run to finish, and follows the sweep from
    run to run until the user picks one there."""
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(RunPanel)
        store = panel.store
        assert store is not None
        configs = [digits(pruner=p) for p in ("rand", "mag", "snip")]
        pruned = fakes.structure([fakes.layer("layers.0", shape=(100, 64), density=0.1)])
        done = {c.run_id: fakes.result(c, 50.0, built=pruned) for c in configs}
        pick = panel.query_one("#pick-run", Select)
        panel.begin(configs)

        async def trains(i: int) -> None:
            store.start_run(configs[i].to_dict(), configs[i].run_id)
            store.record_pruned(configs[i].run_id, pruned)
            panel.cell_started(i, 3, configs[i])
            panel.engine_event(ev.PhaseStarted(configs[i].run_id, "train", 2))
            await pilot.pause()

        await trains(0)
        assert pick.value == configs[0].run_id
        assert panel.query_one(DensityChart).has_data()
        panel.cell_done(0, 3, configs[0], RunStatus.FINISHED, done[configs[0].run_id])
        await trains(1)
        assert pick.value == configs[1].run_id  # followed to the next run
        panel.cell_done(1, 3, configs[1], RunStatus.FINISHED, done[configs[1].run_id])
        # Picked in the sweep grid while shown already: still the user's pick, kept.
        panel.select_run(configs[1].run_id)
        await pilot.pause()
        await trains(2)
        assert pick.value == configs[1].run_id
        pick.value = configs[0].run_id  # another pick, in the Layers view's list
        await pilot.pause()
        panel.cell_done(2, 3, configs[2], RunStatus.FINISHED, done[configs[2].run_id])
        await pilot.pause()
        assert pick.value == configs[0].run_id
        assert [r for _, r in pick._options if isinstance(r, str)] == [c.run_id for c in configs]


async def test_torch_threads_limited_while_running_and_restored(tmp_path: Path) -> None:
    import torch

    before = torch.get_num_threads()
    app = make_app(tmp_path, torch_threads=1)
    async with app.run_test(size=SIZE) as pilot:
        glue.limit_torch_threads(app.torch_threads)
        assert torch.get_num_threads() == 1
        await pilot.press("q")
    assert torch.get_num_threads() == before


def test_app_import_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys; from prunetui.tui.app import PruneApp; PruneApp(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_sweep_worker_freezes_the_gc_without_keeping_runs_alive(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker moves live objects out of the cyclic GC at each phase (UI pauses, §5 of
    bench/NOTES.md); a finished run's model must still be freed, not frozen for good."""
    import gc
    import weakref

    from prunetui.core.run import build as run_build

    built: list[weakref.ref[Any]] = []
    real = run_build.build_model

    def spy(*args: Any, **kwargs: Any) -> Any:
        model = real(*args, **kwargs)
        built.append(weakref.ref(model))
        return model

    monkeypatch.setattr(run_build, "build_model", spy)
    before = gc.get_freeze_count()
    try:
        outcomes = glue.run_sweep(lambda _: None, [digits(post_epochs=1, pruner=p)
                                                   for p in ("rand", "synflow")],
                                  Store(tmp_path / "results"), None, ev.CancelToken())
        assert [o.status for o in outcomes] == ["finished", "finished"]
        assert gc.get_freeze_count() > before  # it did freeze
        gc.collect()
        assert len(built) == 2 and all(ref() is None for ref in built)
    finally:
        glue.unfreeze_gc()


def test_a_run_refused_before_it_starts_is_an_error_not_its_stored_status(
        tmp_path: Path) -> None:
    """The engine refuses a stored run trained on other data (and a checkpoint from other
    data) before writing anything; the sweep must report that error, not the status an
    earlier attempt stored ("finished", "cancelled")."""
    from datafiles import write_mnist

    from prunetui.core.errors import RunCancelled
    from prunetui.core.run import engine

    small = write_mnist(tmp_path / "small", train=40, test=20)
    other = write_mnist(tmp_path / "other", train=50, test=20)
    store = Store(tmp_path / "results")
    done = RunConfig(model="fc", dataset="mnist", pruner="rand", post_epochs=1, batch_size=16,
                     device="cpu", **FAST)
    stopped = RunConfig(**{**done.to_dict(), "pruner": "mag", "post_epochs": 3})
    engine.run(done, store=store, data_dir=small, download=False)
    token = ev.CancelToken()

    def cancel_after_first(e: ev.Event) -> None:
        if isinstance(e, ev.EpochEnd) and e.phase == "train":
            token.cancel()

    with pytest.raises(RunCancelled):
        engine.run(stopped, store=store, data_dir=small, download=False, cancel=token,
                       emit=cancel_after_first)
    posted: list[Any] = []
    outcomes = glue.run_sweep(posted.append, [done, stopped], store, other, ev.CancelToken(),
                              download=False)
    assert [o.status for o in outcomes] == ["refused", "refused"]
    assert "stored from other data than the data dir holds now" in outcomes[0].error
    assert "checkpoint was trained on other mnist data" in outcomes[1].error
    assert [store.get(c.run_id).status for c in (done, stopped)] == [  # type: ignore[union-attr]
        "finished", "cancelled"]


async def test_a_fit_table_shows_the_leading_columns_that_fit_and_keeps_the_rest() -> None:
    from textual.app import App, ComposeResult

    columns = (("Layer", "layer"), ("Density", "density"), ("Kept", "kept"), ("Shape", "shape"))

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield FitTable(columns)

    app = One()
    async with app.run_test(size=(30, 10)) as pilot:
        table = app.query_one(FitTable)
        table.put_row("a", ("layers.0", "0.1016", "650/6.4k", "100×64"))
        table.put_row("b", ("layers.2", "0.0981", "981/10k", "100×100"))
        await pilot.pause()
        # 10+9+10+9 columns with padding: three fit in 30, never a cut-off fourth.
        assert [c.label.plain for c in table.columns.values()] == ["Layer", "Density", "Kept"]
        assert table.get_row("b") == ["layers.2", "0.0981", "981/10k"]
        table.put_row("b", ("layers.2", "0.0990", "990/10k", "100×100"))  # an update
        table.move_cursor(row=1)
        await pilot.resize_terminal(60, 10)
        await pilot.pause()
        assert [c.label.plain for c in table.columns.values()] == [
            "Layer", "Density", "Kept", "Shape"]
        assert table.get_row("b") == ["layers.2", "0.0990", "990/10k", "100×100"]
        assert table.cursor_row == 1  # the cursor stays on its row
        await pilot.resize_terminal(12, 10)
        await pilot.pause()
        assert [c.label.plain for c in table.columns.values()] == ["Layer"]  # at least one
        table.clear()
        assert table.row_count == 0 and len(table.columns) == 1


async def test_layer_density_shows_every_layer_on_a_small_terminal(tmp_path: Path) -> None:
    """VGG16's 16 layers on 80x24: a row each (plotext's bar chart dropped 5 of them)."""
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        panel = app.query_one(RunPanel)
        panel.show_view("tab-layers")
        chart = panel.query_one(DensityChart)
        chart.set_layers([fakes.layer(f"layers.{i}.conv", density=1 - i / 20)
                          for i in range(16)])
        await pilot.pause()
        assert [ln.split()[0] for ln in chart.text().splitlines()] == [
            f"l{i}.conv" for i in range(16)]
        from rich.console import Console

        console = Console(width=chart.size.width, record=True)
        console.print(chart.query_one(".density-bars", Static).content)
        rows = console.export_text().splitlines()
        assert len(rows) == 17 and rows[1].startswith(" l0.conv █") and rows[1].endswith(" 1.0000")
        assert all(len(r.rstrip()) <= chart.size.width - 2 for r in rows)  # none wraps
        assert chart.max_scroll_y > 0  # more rows than lines: it scrolls


# -- top-1 vs compression, the legend, layers by pruner -----------------------------------

ALL_PRUNERS = ("rand", "mag", "snip", "grasp", "synflow", "erk", "er", "uniform", "uniform-plus")


def sweep_result(config: RunConfig, layers: int = 3) -> Any:
    """A finished run of ``config`` with made-up numbers that tell the cells apart: top-1
    falls with compression and the pruner's index (8 points apart: a line of its own on an
    80x24 chart) and rises with the seed; each of
    ``layers`` layers has its own density; Mag collapses at c >= 2 (top-1 10%, an empty
    layer)."""
    from prunetui.core.catalog import PRUNERS

    i = list(PRUNERS).index(config.pruner)
    c = config.compression
    collapsed = config.pruner == "mag" and c >= 2
    top1 = 10.0 if collapsed else 90.0 - 8 * i - 3 * c + config.seed / 4
    rows = [fakes.layer(f"features.{j}.conv" if layers > 6 else f"layers.{2 * j}",
                        shape=(64, 64), density=0.0 if collapsed and j == 1
                        else 10 ** -c * (1 + (i + j) / 10))
            for j in range(layers)]
    built = fakes.structure(rows, density=10 ** -c, ratio=10 ** (-c - 0.6 * i),
                            collapsed=collapsed)
    return fakes.result(config, top1, built=built,
                        history=fakes.epochs([top1 * e / 3 for e in (1, 2, 3)]))


def feed_sweep(panel: RunPanel, pruners: tuple[str, ...] = ALL_PRUNERS,
               compressions: tuple[float, ...] = (0.5, 1.0, 2.0), seeds: tuple[int, ...] = (1,),
               layers: int = 3, model: str = "fc", dataset: str = "digits") -> list[RunConfig]:
    """A sweep fed to the Run tab as the worker would, every cell finished."""
    base = RunConfig(model=model, dataset=dataset, post_epochs=3, device="cpu")
    configs = [base.with_(pruner=p, compression=c, seed=s, sweep="study")
               for p in pruners for c in compressions for s in seeds]
    panel.begin(configs)
    for i, cfg in enumerate(configs):
        panel.cell_started(i, len(configs), cfg)
        panel.cell_done(i, len(configs), cfg, RunStatus.FINISHED, sweep_result(cfg, layers))
    panel.sweep_done([RunStatus.FINISHED] * len(configs), False)
    return configs


def colour_numbers(widget: Any) -> set[int]:
    """The ANSI colour numbers a plotext chart drew in (its frame and text are the theme's
    RGB colours, so these are the lines' and points')."""
    text = widget.render()
    return {span.style.color.number for span in text.spans
            if not isinstance(span.style, str) and span.style.color is not None
            and span.style.color.number is not None}


async def test_top1_chart_draws_each_pruner_in_its_own_colour_with_a_legend_at_80x24(
        tmp_path: Path) -> None:
    """Charts view at 80x24: a line per pruner in its catalog colour (mean over seeds,
    collapsed cells marked), the FLOP ratio in the same colours on f (plotext's own cycle
    gave SNIP and SynFlow one colour), and a legend under the charts naming every pruner."""
    from plotext._dict import color_codes

    from prunetui.core.catalog import PRUNER_TERM_COLOURS, pruner_display
    from prunetui.tui.widgets.legend import PrunerLegend
    from prunetui.tui.widgets.top1_chart import Top1Chart

    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        panel = app.query_one(RunPanel)
        feed_sweep(panel, seeds=(1, 2))
        await pilot.press("v")
        await pilot.pause()
        chart = panel.query_one(Top1Chart)
        assert chart.display and chart.size.width > 0
        series = chart.series()
        assert [s.pruner for s in series] == list(ALL_PRUNERS)
        snip = next(s for s in series if s.pruner == "snip")
        assert [(p.compression, p.mean) for p in snip.points] == [
            (0.5, 72.875), (1.0, 71.375), (2.0, 68.375)]  # 90 - 16 - 3c + mean(1/4, 2/4)
        mag = next(s for s in series if s.pruner == "mag")
        assert [p.collapsed for p in mag.points] == [False, False, True]
        wanted = {color_codes[PRUNER_TERM_COLOURS[p]] for p in ALL_PRUNERS}
        assert len(wanted) == len(ALL_PRUNERS)  # no two pruners alike
        assert colour_numbers(chart) == wanted
        assert "‡" in chart.render().plain
        # The legend: every pruner by name, whole, inside the screen, no line cut.
        legend = panel.query_one("#run-legend", PrunerLegend)
        text = legend.text()
        entries = [e for line in text.splitlines() for e in line.split("  ")]
        assert entries[:len(ALL_PRUNERS)] == [f"━━ {pruner_display(p)}" for p in ALL_PRUNERS]
        assert "‡ collapsed" in text and "mean of 2 seeds" in text
        assert all(len(line) <= legend.size.width for line in text.splitlines())
        assert legend.size.height == len(text.splitlines()) >= 2
        assert legend.region.bottom <= app.query_one(KeyBar).region.y
        # The key bar offers the FLOP ratio there; f shows it in the top-1 chart's place.
        assert "Top-1/FLOPs" in [d for _, _, d, _ in app.query_one(KeyBar).items()[0]]
        await pilot.press("f")
        await pilot.pause()
        flops = panel.query_one(FlopRatioChart)
        assert flops.display and not chart.display and flops.size.width > 0
        assert colour_numbers(flops) == wanted
        assert "‡ collapsed" not in legend.text()  # a top-1 mark, not shown now
        await pilot.press("f")
        await pilot.pause()
        assert chart.display and not flops.display
        # The per-epoch curves take their pruner's colour too.
        assert colour_numbers(panel.query_one(AccuracyChart)) == wanted
        # f belongs to the Charts view only.
        await pilot.press("v")
        await pilot.pause()
        assert "Top-1/FLOPs" not in [d for _, _, d, _ in app.query_one(KeyBar).items()[0]]


async def test_top1_chart_fills_as_cells_finish(tmp_path: Path) -> None:
    """A cell enters the chart when it finishes; the legend names the sweep's pruners from
    its start, so it does not reflow as they finish."""
    from prunetui.tui.widgets.legend import PrunerLegend
    from prunetui.tui.widgets.top1_chart import Top1Chart

    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        panel = app.query_one(RunPanel)
        configs = [digits(pruner=p, compression=c) for p in ("synflow", "rand")
                   for c in (1.0, 2.0)]
        panel.begin(configs)
        chart = panel.query_one(Top1Chart)
        legend = panel.query_one("#run-legend", PrunerLegend)
        assert not chart.has_data() and legend.pruners == ["rand", "synflow"]
        panel.cell_done(0, 4, configs[0], RunStatus.FINISHED, sweep_result(configs[0]))
        assert [(s.pruner, len(s.points)) for s in chart.series()] == [("synflow", 1)]
        panel.cell_done(1, 4, configs[1], RunStatus.FAILED, None, "boom")
        panel.cell_done(2, 4, configs[2], RunStatus.FINISHED, sweep_result(configs[2]))
        assert [(s.pruner, len(s.points)) for s in chart.series()] == [("rand", 1),
                                                                       ("synflow", 1)]
        panel.begin(configs[:1])  # a new sweep starts empty
        assert not chart.has_data() and legend.pruners == ["synflow"]
        await pilot.pause()


def test_legend_wraps_between_entries_never_inside_a_name() -> None:
    from prunetui.tui.widgets.legend import wrap_entries

    assert wrap_entries([4, 4, 4], 10) == [[0, 1], [2]]  # 4 + 2 + 4 = 10 fits
    assert wrap_entries([4, 4, 4], 9) == [[0], [1], [2]]
    assert wrap_entries([4, 4, 4], 9, gap=1) == [[0, 1], [2]]
    assert wrap_entries([12, 3], 10) == [[0], [1]]  # too wide: a line of its own
    assert wrap_entries([], 10) == []


async def test_layers_by_pruner_show_every_layer_and_pruner_at_the_picked_compression(
        tmp_path: Path) -> None:
    """Layers view, p: the picked run's compression, a column per pruner of the sweep (its
    name coloured), a row per layer (16, scrolling at 80x24), an emptied layer marked."""
    from prunetui.core.catalog import pruner_display
    from prunetui.tui.widgets.layer_compare import LayerCompare
    from prunetui.tui.widgets.legend import term_style

    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        panel = app.query_one(RunPanel)
        pruners = ("rand", "mag", "snip", "synflow", "erk")
        configs = feed_sweep(panel, pruners, layers=16)
        at2 = next(c for c in configs if c.pruner == "snip" and c.compression == 2.0)
        panel.select_run(at2.run_id)
        panel.show_view("tab-layers")
        await pilot.pause()
        compare = panel.query_one(LayerCompare)
        assert not compare.display
        assert "Pruners" in [d for _, _, d, _ in app.query_one(KeyBar).items()[0]]
        await pilot.press("p")
        await pilot.pause()
        assert compare.display and not panel.query_one("#layer-charts").display
        assert compare.compression == 2.0
        assert [c.pruner for c in compare.columns] == list(pruners)
        assert all(configs_at(configs, c.run_id) == 2.0 for c in compare.columns)
        names = [f"features.{j}.conv" for j in range(16)]
        assert compare.layer_names == names
        table = compare.query_one(Table)
        assert table.row_count == 16 and len(table.columns) == 2 + len(pruners)
        headers = [col.label for col in table.columns.values()][2:]
        assert [h.plain for h in headers] == ["Rand", "Mag ‡", "SNIP", "SynFlow", "ERK"]
        assert [h.style.color for h in headers] == [term_style(p).color for p in pruners]
        lines = compare.text().splitlines()
        assert lines[0].split()[2:] == [pruner_display(p) for p in pruners]
        # features.3 under SynFlow (index 4): 10^-2 * (1 + (4 + 3) / 10)
        row3 = lines[1 + 3].split()
        assert row3[0] == "f3.conv" and float(row3[2 + 3]) == pytest.approx(0.017)
        assert lines[1 + 1].split()[2 + 1:2 + 3] == ["0", "✕"]  # Mag emptied features.1
        assert app.focused is table and table.max_scroll_y > 0  # 16 rows scroll at 80x24
        # Another run picked: its compression.
        at1 = next(c for c in configs if c.pruner == "rand" and c.compression == 1.0)
        panel.query_one("#pick-run", Select).value = at1.run_id
        await pilot.pause()
        assert compare.compression == 1.0
        assert [configs_at(configs, c.run_id) for c in compare.columns] == [1.0] * 5
        await pilot.press("p")
        await pilot.pause()
        assert not compare.display and panel.query_one("#layer-charts").display


def configs_at(configs: list[RunConfig], run_id: str) -> float:
    return next(c.compression for c in configs if c.run_id == run_id)


async def test_results_chart_of_the_filtered_runs_by_model_and_dataset(tmp_path: Path) -> None:
    """Results, g: top-1 vs compression of the runs the filter shows, one model/dataset at a
    time (named, ← → for the others), pooled as the report pools them; escape goes back."""
    from prunetui.tui.widgets.legend import PrunerLegend
    from prunetui.tui.widgets.study_chart import StudyChart
    from prunetui.tui.widgets.top1_chart import Top1Chart

    store = prepared_store(tmp_path / "results")
    put(store, "mag", 1.0, 93.0, seed=2)  # a second seed: the point is the mean
    put(store, "mag", 1.0, 50.0, seed=3, epochs=5)  # other settings: left out, as the report
    conv = RunConfig(model="conv", dataset="digits", pruner="snip", compression=1.0,
                     post_epochs=3)
    store.start_run(conv.to_dict(), conv.run_id, "ref")
    store.finish_run(conv.run_id, fakes.result(conv, 77.0))
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        view = app.query_one(ResultsView)
        chart = view.query_one(StudyChart)
        assert not chart.display
        await pilot.press("g")
        await pilot.pause()
        assert chart.display and not view.query_one(RunsTable).display
        assert app.focused is chart
        heading = str(chart.query_one(".study-chart--heading", Static).render())
        assert heading.startswith("conv·digits · 1/2")
        await pilot.press("right")
        await pilot.pause()
        heading = str(chart.query_one(".study-chart--heading", Static).render())
        assert heading == ("fc·digits · 2/2 (← → the others) · 5 runs · 1 with other settings "
                           "left out (as in the report) · 1 unfinished")
        plot = chart.query_one(Top1Chart)
        means = {(s.pruner, p.compression): p.mean for s in plot.series() for p in s.points}
        assert means == {("rand", 1.0): 80.0, ("mag", 1.0): 92.0, ("mag", 2.0): 70.0,
                         ("synflow", 1.0): 92.5}
        assert chart.query_one(PrunerLegend).pruners == ["rand", "mag", "synflow"]
        # The filter narrows the chart; the Results hint says what the keys do here.
        app.query_one("#filter", Input).value = "pruner=mag"
        await pilot.pause()
        assert [s.pruner for s in plot.series()] == ["mag"]
        assert "← →" in str(view.query_one("#results-hint", Static).render())
        await pilot.press("enter")  # the filter's enter hands the focus back to the chart
        await pilot.pause()
        app.query_one("#filter", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.focused is chart
        # del acts on the table's marks: not from the chart.
        assert "Delete" not in [d for _, _, d, _ in app.query_one(KeyBar).items()[0]]
        await pilot.press("delete")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not chart.display and app.focused is view.query_one(RunsTable)


def test_results_chart_leaves_out_runs_an_older_prunetui_computed(tmp_path: Path) -> None:
    """A stored run whose config now hashes to another id is not pooled (as in the
    report) and is counted; the others are grouped by model/dataset."""
    import dataclasses

    from prunetui.tui.widgets.study_chart import top1_groups

    rows = prepared_store(tmp_path / "results").query()
    stale = dataclasses.replace(next(r for r in rows if r.pruner == "rand"),
                                run_id="0123456789")
    groups, left_out = top1_groups([*rows, stale])
    assert left_out == 1
    assert [(g.model, g.dataset) for g in groups] == [("fc", "digits")]
    assert sorted((r.pruner, r.compression, r.top1) for r in groups[0].runs) == [
        ("mag", 1.0, 91.0), ("mag", 2.0, 70.0), ("rand", 1.0, 80.0), ("synflow", 1.0, 92.5)]
    assert groups[0].unfinished == 1 and groups[0].left_out == 0

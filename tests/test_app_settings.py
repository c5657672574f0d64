"""The app reaches every setting the CLI has: the generated Options form at 80×24, errors that
focus their field, sweep files opened and saved (the same files `prunetui sweep` reads, the
same run ids), the configuration remembered per results dir, the data dir check, and the
small things (list cursors that stop, a stale preview, the export folder confirmed).

No run trains here: starting a sweep is stopped at ``start_sweep``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from test_app import RecordingApp, make_app, wait_for
from textual.color import Color
from textual.widgets import Collapsible, Input, SelectionList, Static
from typer.testing import CliRunner

from prunetui.core import catalog
from prunetui.core.config import AXES, SETTINGS, RunConfig
from prunetui.core.sweep import load_toml
from prunetui.tui.app import REMEMBERED, PruneApp
from prunetui.tui.cli import app as cli_app
from prunetui.tui.screens.path_prompt import PathScreen
from prunetui.tui.widgets.config_form import ConfigForm
from prunetui.tui.widgets.preview import PreviewPanel

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "vgg16-cifar10.toml"
SMALL = (80, 24)


async def built(pilot: Any, app: PruneApp) -> ConfigForm:
    """The form, with Options opened and its fields mounted (they are on first show)."""
    form = app.query_one(ConfigForm)
    app.query_one("#options", Collapsible).collapsed = False
    await wait_for(pilot, lambda: form._built, what="Options")
    return form


def dry_run_ids(*args: str) -> list[str]:
    """The run ids `prunetui sweep ARGS --dry-run` lists."""
    r = CliRunner().invoke(cli_app, ["sweep", *args, "--dry-run"])
    assert r.exit_code == 0, r.output
    return re.findall(r"^│ ([0-9a-f]{10}) ", r.stdout, flags=re.M)


class NoRunApp(RecordingApp):
    """The app, with the sweeps it would start recorded instead of run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started: list[list[RunConfig]] = []

    def start_sweep(self, configs: list[RunConfig]) -> None:
        self.started.append(configs)


async def save_as(pilot: Any, app: PruneApp, path: Path) -> None:
    await pilot.press("ctrl+s")
    await pilot.pause()
    assert isinstance(app.screen, PathScreen)
    app.screen.query_one("#path-input", Input).value = str(path)
    await pilot.press("enter")
    await pilot.pause()


async def test_the_reference_recipe_set_up_in_the_app_saves_as_the_example(
        tmp_path: Path) -> None:
    """The README's VGG16 recipe, typed into the form at 80×24 and saved with ctrl+s, is the
    example file in effect: `sweep --dry-run` lists the same 30 run ids for both."""
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        form = app.query_one(ConfigForm)
        form.set_values(model="vgg16", dataset="cifar10", pruners=list(catalog.DEFAULT_PRUNERS),
                        compressions=[0.5, 1.0, 2.0], extra="0.05 0.1 0.2",
                        post_epochs="100", optimizer="momentum", lr="0.1", lr_drops="60,120",
                        weight_decay="5e-4", batch_size="128", device="cuda", amp=True,
                        timing_repeats="5", **{"over-grasp": "post_epochs=300",
                                               "over-mag": "pre_epochs=200 keep_optimizer=true",
                                               "sweep-name": "vgg16-cifar10"})
        await pilot.pause()
        saved = tmp_path / "vgg.toml"
        await save_as(pilot, app, saved)
        assert saved.is_file(), app.notes
        assert ("information", f"Saved: {saved} (30 runs; `prunetui sweep {saved}` runs "
                "them)") in app.notes
    assert load_toml(saved) == load_toml(EXAMPLE)
    ids = dry_run_ids(str(saved))
    assert len(ids) == 30 and ids == dry_run_ids(str(EXAMPLE))


async def test_ctrl_o_shows_a_sweep_file_and_saving_it_back_changes_nothing(
        tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert isinstance(app.screen, PathScreen)
        field = app.screen.query_one("#path-input", Input)
        assert field.selection.end - field.selection.start == len(field.value)  # selected
        field.value = str(EXAMPLE)
        await pilot.press("enter")
        await pilot.pause()
        form = app.query_one(ConfigForm)
        assert form.spec() == load_toml(EXAMPLE)
        await built(pilot, app)  # the fields show it too
        assert form.spec() == load_toml(EXAMPLE)
        assert form.query_one("#extra", Input).value == "0.05 0.1 0.2"
        assert form.query_one("#over-mag", Input).value == "pre_epochs=200 keep_optimizer=true"
        # Saving to the file it came from writes without asking; the text is the same spec.
        copy = tmp_path / "copy.toml"
        copy.write_text(EXAMPLE.read_text())
        app.sweep_file = copy
        await save_as(pilot, app, copy)
        assert load_toml(copy) == load_toml(EXAMPLE)
        # A file that does not read is one notification; the form keeps what it had.
        bad = tmp_path / "bad.toml"
        bad.write_text("[grid]\nmodels = ['vgg99']\ndatasets=['cifar10']\ncompressions=[1]")
        await pilot.press("ctrl+o")
        await pilot.pause()
        app.screen.query_one("#path-input", Input).value = str(bad)
        await pilot.press("enter")
        await pilot.pause()
        assert app.notes[-1][0] == "error" and "unknown model 'vgg99'" in app.notes[-1][1]
        assert form.spec() == load_toml(EXAMPLE)


async def test_the_file_buttons_open_and_save(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        await built(pilot, app)
        app.query_one("#options", Collapsible).collapsed = False
        for button, action in (("#open-file", "Open"), ("#save-file", "Save")):
            app.query_one(button).focus()
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, PathScreen) and app.screen.action == action
            await pilot.press("escape")
            await pilot.pause()


async def test_saving_over_another_file_asks_first(tmp_path: Path) -> None:
    target = tmp_path / "exists.toml"
    target.write_text("# keep me\n")
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        await save_as(pilot, app, target)
        await pilot.press("n")  # keep it
        await pilot.pause()
        assert target.read_text() == "# keep me\n"
        await save_as(pilot, app, target)
        await pilot.press("y")
        await pilot.pause()
        assert load_toml(target).grid["models"] == ["fc"]


async def test_a_sweep_started_in_the_app_is_remembered_and_is_the_clis_sweep(
        tmp_path: Path) -> None:
    """Starting writes the configuration to the results dir; the next app there starts
    with it; and `prunetui sweep` on that file gives the run ids the app started."""
    results = tmp_path / "results"
    app = NoRunApp(results_dir=results, preview=False)
    async with app.run_test(size=SMALL) as pilot:
        app.query_one(ConfigForm).set_values(
            dataset="digits", pruners=["rand", "snip"], compressions=[0.5, 1.0],
            seeds="1 2", post_epochs="2", device="cpu", **{"over-snip": "post_epochs=3",
                                                          "data-dir": str(tmp_path / "d")})
        await pilot.pause()
        app.query_one("#pruners").focus()
        await pilot.press("r")
        await pilot.pause()
        started = [c.run_id for c in app.started[0]]
        spec = app.query_one(ConfigForm).spec()
    assert len(started) == 8
    remembered = load_toml(results / REMEMBERED)
    assert remembered.grid == spec.grid and remembered.overrides == {"snip": {"post_epochs": 3}}
    assert remembered.data_dir == str(tmp_path / "d")
    assert dry_run_ids(str(results / REMEMBERED)) == started
    again = NoRunApp(results_dir=results, preview=False)
    async with again.run_test(size=SMALL):
        form = again.query_one(ConfigForm)
        assert form.spec() == spec and form.data_dir() == tmp_path / "d"
        assert [c.run_id for c in form.state().configs] == started


async def test_a_remembered_file_that_no_longer_reads_is_said_and_skipped(
        tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / REMEMBERED).write_text("[grid]\nmodels = 3\n")
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        assert app.query_one(ConfigForm).spec().grid["models"] == ["fc"]
        assert app.notes[0][0] == "warning"
        assert "the last configuration was not restored" in app.notes[0][1]


async def test_every_setting_is_reached_with_tab_at_80x24(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tab from the model select through the whole form: every setting, axis, per-pruner
    row, the data dir and the file buttons get the focus, each scrolled into view."""
    # No data dir check: its lines, arriving while tabbing, would move the fields under them.
    monkeypatch.setattr(PruneApp, "_check_data_soon", lambda self: None)
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        form = await built(pilot, app)
        app.query_one("#model").focus()
        seen: list[str] = ["model"]
        for _ in range(90):
            await pilot.press("tab")
            await pilot.pause()
            focused = app.focused
            assert focused is not None
            if form not in focused.ancestors_with_self:
                break
            if isinstance(focused.parent, Collapsible):  # Options' title: enter opens it
                if app.query_one("#options", Collapsible).collapsed:
                    await pilot.press("enter")
                continue
            seen.append(focused.id or "")
            shown = app.screen.find_widget(focused).region
            view = app.screen.find_widget(form).region
            assert view.contains_region(shown), (focused.id, shown, view)
        wanted = {n for n, s in SETTINGS.items() if not s.axis}
        wanted |= {"model", "dataset", "pruners", "compressions", "extra", "more-models",
                   "more-datasets", "data-dir", "download", "sweep-name", "open-file",
                   "save-file", "run"}
        wanted |= {a for a in AXES if a not in ("models", "datasets", "pruners",
                                                "compressions")}
        wanted |= {f"over-{p}" for p in catalog.PRUNERS}
        assert wanted <= set(seen), wanted - set(seen)


def _focused_id(app: PruneApp) -> str | None:
    return app.focused.id if app.focused is not None else None


ERRORS: list[tuple[dict[str, Any], str, str]] = [
    ({"weight_decay": "-1"}, "weight_decay",
     "invalid Weight decay -1.0; it must be a number >= 0"),
    ({"lr_drops": "5,3"}, "lr_drops", "invalid LR drops [5, 3]; give increasing epochs"),
    ({"prune_iterations": "0"}, "prune_iterations",
     "invalid Iterations 0; it must be an integer from 1 to 10000"),
    ({"seeds": "1 x"}, "seeds", "invalid Seeds 'x'; give numbers separated by spaces"),
    ({"more-models": "vgg99"}, "more-models", "unknown Model 'vgg99'; choose one of: fc, "),
    ({"over-mag": "lr=-1"}, "over-mag",  # checked though mag is not ticked
     "settings for mag (not in the grid): invalid LR -1.0; it must be a number > 0"),
    ({"pruners": ["synflow"], "over-synflow": "post_epochs=x"}, "over-synflow",
     "settings for synflow: invalid Epochs 'x'; it must be an integer from 0 to 1000000"),
    ({"over-grasp": "epochs=3"}, "over-grasp", "settings for grasp: unknown setting 'epochs'"),
    ({"checkpoint_every": "0"}, "checkpoint_every", "invalid Checkpoint 0"),
]


async def test_an_error_names_its_field_by_label_and_r_focuses_it(tmp_path: Path) -> None:
    """Each error is worded with the field's label; r puts the focus on that field, opening
    Options (and building its fields, the first time) when it is inside."""
    from prunetui.core.sweep import SweepSpec

    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        form = app.query_one(ConfigForm)
        for values, field, message in ERRORS:
            form.load(SweepSpec(["fc"], ["mnist"], ["synflow"], [1.0]))
            form.set_values(**values)  # the first time, Options is closed and not built
            await pilot.pause()
            shown = str(app.query_one("#validation", Static).render())
            assert shown.startswith(f"✗ {message}"), shown
            app.query_one("#model").focus()
            app.query_one("#options", Collapsible).collapsed = True
            await pilot.press("r")
            target = field
            await wait_for(pilot, lambda: _focused_id(app) == target,  # noqa: B023 (awaited)
                           what=f"the focus on {field}")
            assert not app.query_one("#options", Collapsible).collapsed
            assert app.query_one(f"#{field}").has_class("-rejected"), field
            assert not app.sweep_active


async def test_the_data_dir_check_says_what_it_holds(tmp_path: Path) -> None:
    from datafiles import write_mnist

    root = write_mnist(tmp_path / "data")
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        form = await built(pilot, app)
        status = form.query_one("#data-status", Static)
        form.set_values(dataset="mnist", **{"more-datasets": "digits cifar10",
                                            "data-dir": str(root)})
        await wait_for(pilot, lambda: "cifar10" in str(status.render()), what="the check")
        lines = str(status.render()).splitlines()
        assert lines[0] == (f"mnist: found in {root / 'MNIST/raw'} · 60 train / 20 test images")
        assert lines[1] == "digits: bundled with scikit-learn · 1,437 train / 360 test images"
        assert lines[2].startswith(f"cifar10: missing: {root / 'cifar-10-batches-py'}")
        assert not status.has_class("-error")
        form.set_values(download=False)
        await wait_for(pilot, lambda: status.has_class("-error"), what="the download line")
        assert str(status.render()).splitlines()[2] == (
            f"cifar10: not (all) in {root}, and Download is off")


async def test_list_cursors_stop_at_the_ends(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        comps = app.query_one("#compressions", SelectionList)
        comps.focus()
        await pilot.press("home", "up")
        assert comps.highlighted == 0
        await pilot.press("end", "down")
        assert comps.highlighted == comps.option_count - 1
        await pilot.press("up")
        assert comps.highlighted == comps.option_count - 2


async def test_the_preview_marks_its_table_stale_at_once(tmp_path: Path) -> None:
    from test_app_snapshots import fake_info

    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        panel = app.query_one(PreviewPanel)
        table = panel.query_one("#preview-layers")
        fc = RunConfig(dataset="digits")
        panel.show_info(fc, fake_info(fc))
        await pilot.pause()
        assert table.row_count == 6 and not table.has_class("-stale")
        panel.show_pending(fc.with_(compression=2.0))  # same layers, other numbers soon
        assert table.row_count == 6 and table.has_class("-stale")
        panel.show_pending(RunConfig(model="vgg16", dataset="cifar10"))  # other layers
        assert table.row_count == 0


async def test_the_focused_field_stands_out(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        await built(pilot, app)
        lr = app.query_one("#lr", Input)
        rest = lr.styles.background
        lr.focus()
        await pilot.pause()
        focused = lr.styles.background
        assert isinstance(rest, Color) and isinstance(focused, Color)
        # A shade apart was 234 against 235 on a 256-colour terminal: far more now.
        assert sum(abs(a - b) for a, b in zip(focused.rgb, rest.rgb, strict=True)) >= 60


async def test_ctrl_e_confirms_the_export_folder(tmp_path: Path) -> None:
    from test_app import prepared_store

    prepared_store(tmp_path / "results")
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("3")
        field = app.query_one("#export-path", Input)
        assert Path(field.value).is_absolute() and field.value.endswith("report")
        await pilot.press("ctrl+e")
        await pilot.pause()
        assert isinstance(app.screen, PathScreen)
        await pilot.press("escape")  # nothing is written
        await pilot.pause()
        assert not isinstance(app.screen, PathScreen) and not Path(field.value).exists()
        await pilot.press("ctrl+e")
        await pilot.pause()
        prompt = app.screen.query_one("#path-input", Input)
        prompt.value = str(tmp_path / "out")
        await pilot.press("enter")
        await wait_for(pilot, lambda: (tmp_path / "out" / "report.md").exists(),
                       what="the export")
        assert field.value == str(tmp_path / "out")


async def test_the_lists_show_the_registry(tmp_path: Path) -> None:
    """The pruner list is the catalog's registry, in its order, by display name."""
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL):
        shown = app.query_one("#pruners", SelectionList)
        assert [str(shown.get_option_at_index(i).prompt) for i in range(shown.option_count)] \
            == [p.display for p in catalog.PRUNERS.values()]


async def test_cells_uniform_plus_cannot_prune_are_skipped_as_the_cli_skips_them(
        tmp_path: Path) -> None:
    """fc on MNIST keeps too few weights at c=1 and 2 (its first layer holds 66% of them) for a
    dense first layer: the app's sweep
    leaves those cells out and says how many, as `prunetui sweep` does, and runs the rest;
    with nothing left, the reason is the error and Run is disabled."""
    import torch  # noqa: F401 (the form checks with the engine once torch is loaded)

    app = NoRunApp(results_dir=tmp_path / "results", preview=False)
    async with app.run_test(size=SMALL) as pilot:
        form = app.query_one(ConfigForm)
        form.set_values(model="fc", dataset="mnist", pruners=["snip", "uniform-plus"],
                        compressions=[0.0, 1.0, 2.0], device="cpu")
        await pilot.pause()
        state = form.state()
        cells = {(c.pruner, c.compression) for c in state.configs}
        assert cells == {("snip", 0.0), ("snip", 1.0), ("snip", 2.0), ("uniform-plus", 0.0)}
        assert state.skipped == 2 and state.error is None
        assert "2 skipped" in str(app.query_one("#sweep-size").render())
        form.set_values(pruners=["uniform-plus"], compressions=[1.0, 2.0])
        await pilot.pause()
        state = form.state()
        assert state.configs == [] and state.error is not None
        assert "no cell of the sweep can run" in state.error
        assert app.query_one("#run").disabled

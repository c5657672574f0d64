"""The Textual app: Configure | Run | Results tabs over the engine.

The engine runs in thread workers (``tui/worker.py``) and talks back with messages, so the UI
never blocks; torch is imported only inside those workers, so the first frame paints fast.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Collapsible, Input, TabbedContent, TabPane
from textual.worker import Worker, WorkerState, get_current_worker

from prunetui.core.config import RunConfig
from prunetui.core.errors import ConfigError, PrunetuiError
from prunetui.core.events import CancelToken, RunWarning
from prunetui.core.status import RunStatus
from prunetui.core.store import Store, default_results_dir
from prunetui.core.sweep import CellOutcome
from prunetui.core.sweep.spec import SweepSpec, load_toml, save_toml
from prunetui.tui import worker as glue
from prunetui.tui.screens.confirm import ConfirmScreen
from prunetui.tui.screens.path_prompt import PathScreen
from prunetui.tui.screens.results import ResultsView
from prunetui.tui.screens.run_detail import RunDetailScreen
from prunetui.tui.widgets.config_form import ConfigForm, FormState, app_name
from prunetui.tui.widgets.fmt import run_label
from prunetui.tui.widgets.key_bar import KeyBar
from prunetui.tui.widgets.preview import PreviewPanel
from prunetui.tui.widgets.run_panel import RunPanel
from prunetui.tui.widgets.runs_table import RunsTable

W = TypeVar("W", bound=Widget)
TABS = {"configure": "tab-configure", "run": "tab-run", "results": "tab-results"}
FOCUS = {"configure": "#model", "results": "#runs"}  # on showing a tab (Run: its view's)
PREVIEW_DELAY = 0.25  # seconds of calm before a preview is computed
# The configuration of the last sweep started from the app, in each results dir: a sweep file
# (``prunetui sweep results/.prunetui-app.toml`` runs it again), read when the app starts.
REMEMBERED = ".prunetui-app.toml"


class PruneApp(App[None]):
    """prunetui's interactive face."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    TITLE = "prunetui"
    SUB_TITLE = "pruning at initialization"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("r", "run", "Run"),
        Binding("c", "cancel", "Cancel"),
        Binding("t", "toggle_dark", "Theme", show=False),  # room for "? Help" at 80 columns
        Binding("question_mark", "help", "Help", key_display="?"),
        # Shown only in a text field, where the letter keys above are typed instead.
        Binding("escape", "leave_field", "Leave field"),
        Binding("ctrl+o", "open_file", "Open sweep file", show=False),
        Binding("ctrl+s", "save_file", "Save sweep file", show=False),
        Binding("1", "tab('configure')", "Configure", show=False),
        Binding("2", "tab('run')", "Run tab", show=False),
        Binding("3", "tab('results')", "Results", show=False),
    ]

    def __init__(self, results_dir: Path | None = None, data_dir: Path | None = None, *,
                 preview: bool = True, download: bool = True,
                 settings: dict[str, Any] | None = None,
                 torch_threads: int | str | None = "auto",
                 sweep_file: Path | None = None) -> None:
        """``results_dir``: the store (default ``$PRUNETUI_RESULTS`` or ./results);
        ``data_dir``: datasets (default: the engine's); ``preview=False`` turns off the
        automatic pruning preview (tests that want a still screen); ``settings``: RunConfig
        fields set in the form at start (over the sweep file or remembered ones);
        ``torch_threads``: torch's threads while the app runs ("auto": all cores but one, kept
        for the UI, unless OMP_NUM_THREADS is set; None: leave torch alone); ``sweep_file``:
        a sweep file to start with (raises ``ConfigError`` when it cannot be read), else the
        results dir's remembered configuration, if any."""
        super().__init__()
        if "TEXTUAL_ANIMATIONS" not in os.environ:
            # The tab underline's slide re-renders the screen ~14 times per tab switch: CPU a
            # 2-core training box and an SSH link are better without (bench/NOTES.md §5).
            self.animation_level = "none"
        self.torch_threads = (glue.default_torch_threads() if torch_threads == "auto"
                              else torch_threads)
        self.settings = dict(settings or {})
        self.results_dir = Path(results_dir) if results_dir else default_results_dir()
        self.data_dir = Path(data_dir) if data_dir else None
        self.download = download
        self.preview_enabled = preview
        self._store: Store | None = None
        self.cancel_token: CancelToken | None = None
        self.sweep_active = False
        self.form_state: FormState | None = None
        self._preview_serial = 0
        self._previewed: tuple[RunConfig, Path | None] | None = None
        self._preview_timer: Timer | None = None
        self.outcomes: list[CellOutcome] = []
        self._quit_question: ConfirmScreen | None = None  # shown while a run is active
        self.sweep_file = Path(sweep_file) if sweep_file else None
        self._start_note = ""
        self._initial = self._initial_spec()
        if self.data_dir is None and self._initial is not None and self._initial.data_dir:
            self.data_dir = Path(self._initial.data_dir)
        self._data_checked: tuple[Any, ...] | None = None
        self._data_timer: Timer | None = None

    def _initial_spec(self) -> SweepSpec | None:
        """The sweep file given, else the configuration remembered in the results dir (one
        that no longer reads, e.g. after a setting was renamed, is noted and skipped)."""
        if self.sweep_file is not None:
            spec = load_toml(self.sweep_file)
            spec.configs()  # names the form can show, values it can hold
            return spec
        remembered = self.results_dir / REMEMBERED
        if not remembered.is_file():
            return None
        try:
            spec = load_toml(remembered)
            spec.configs()
            return spec
        except ConfigError as e:
            self._start_note = f"the last configuration was not restored: {e}"
            return None

    # -- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with TabbedContent(id="main-tabs"):
            with TabPane("Configure", id=TABS["configure"]), Horizontal(id="configure"):
                yield ConfigForm(spec=self._initial, extra=self.settings,
                                 data_dir=self.data_dir, download=self.download, id="form")
                yield PreviewPanel(id="preview")
            with TabPane("Run", id=TABS["run"]):
                yield RunPanel(id="run-panel")
            with TabPane("Results", id=TABS["results"]):
                yield ResultsView(self.store, id="results")
        yield KeyBar()

    def on_mount(self) -> None:
        self.main(RunPanel).store = self._safe_store()
        self.main("#model").focus()
        if not self.preview_enabled:
            self.main(PreviewPanel).show_error(None, "preview off")
        if self._start_note:
            self.notify(self._start_note, severity="warning", title="Configure", timeout=10)

    def on_ready(self) -> None:
        glue.freeze_gc()

    def main(self, selector: str | type[W], expect_type: type[W] | None = None) -> W:
        """A widget of the main screen, whichever screen is on top (a run's detail, help…)."""
        screen = self.screen_stack[0] if self.screen_stack else self.screen
        if expect_type is None:
            return screen.query_one(selector)  # type: ignore[return-value]
        return screen.query_one(selector, expect_type)  # type: ignore[arg-type]

    # -- the store -------------------------------------------------------------------------

    def store(self) -> Store:
        """The results store (opened on first use; raises StoreError when unusable)."""
        if self._store is None:
            self._store = Store(self.results_dir)
        return self._store

    def _safe_store(self) -> Store | None:
        try:
            return self.store()
        except PrunetuiError as e:
            self.notify(str(e), severity="error", title="Results store", timeout=10)
            return None

    # -- actions ---------------------------------------------------------------------------

    def action_tab(self, name: str) -> None:
        """Show a tab and put the focus in it (keys then act on what is shown)."""
        while len(self.screen_stack) > 1:
            self.pop_screen()
        tabs = self.main("#main-tabs", TabbedContent)
        if name == "results" and tabs.active == TABS[name]:
            self.main(ResultsView).reload()  # shown already: the key asks for a fresh read
        tabs.active = TABS[name]
        self._focus_tab(name)

    def action_leave_field(self) -> None:
        """Leave a text field for the tab's main widget, so keys are commands again."""
        active = self.main("#main-tabs", TabbedContent).active
        name = next(n for n, tab in TABS.items() if tab == active)
        self._focus_tab(name)

    def _focus_tab(self, name: str) -> None:
        if name == "run":  # the view the Run tab shows, which need not be Live's table
            self.main(RunPanel).focus_view()
        else:
            self.main(FOCUS[name]).focus()

    def action_help(self) -> None:
        # Imported on first use: Markdown costs ~60 ms of the first paint otherwise.
        from prunetui.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel":
            return True if self.sweep_active else None
        if action == "run":
            if isinstance(self.screen, RunDetailScreen):
                return False  # r there is the run's own resume; a finished run has none
            return None if self.sweep_active else True
        if action == "leave_field":
            return isinstance(self.focused, Input)
        return True

    def action_run(self) -> None:
        """Start the configured sweep (one run per pruner × compression) in a worker."""
        if self.sweep_active:
            self.notify("a run is already active; cancel it first (c)", severity="warning")
            return
        form = self.main(ConfigForm)
        state = form.state()
        if state.error or not state.configs:
            self._show_form_error(state)
            return
        store = self._safe_store()
        if store is None:
            return
        self.data_dir, self.download = form.data_dir(), form.download()
        if state.spec is not None:
            self._remember(state.spec, store.root / REMEMBERED)
        self.start_sweep(state.configs)

    def _show_form_error(self, state: FormState) -> None:
        """Show the Configure tab with the focus on the field the error is about."""
        if (len(self.screen_stack) > 1
                or self.main("#main-tabs", TabbedContent).active != TABS["configure"]):
            self.action_tab("configure")
        self.main(ConfigForm).focus_error(state)
        self.notify(state.error or "nothing to run", severity="error",
                    title="Invalid configuration")

    def _remember(self, spec: SweepSpec, path: Path) -> None:
        """Keep the configuration of a sweep started here, for the next start in this
        results dir (a failure to write it is said, and the sweep runs anyway)."""
        spec.data_dir = str(self.data_dir.resolve()) if self.data_dir else ""
        try:
            save_toml(spec, path)
        except ConfigError as e:
            self.notify(f"the configuration is not remembered: {e}", severity="warning",
                        title="Configure")

    # -- sweep files -------------------------------------------------------------------------

    def action_open_file(self) -> None:
        """Ask for a sweep file and show it in the Configure tab."""
        start = self.sweep_file or Path.cwd() / "sweep.toml"

        def opened(path: Path | None) -> None:
            if path is None:
                return
            try:
                spec = load_toml(path)
                spec.configs()  # a file the form can show: known names, valid values
            except ConfigError as e:
                self.notify(str(e), severity="error", title="Open", timeout=10)
                return
            self.sweep_file = path
            self.action_tab("configure")
            self.main(ConfigForm).load(spec, Path(spec.data_dir) if spec.data_dir else None)
            self.notify(f"{path}: {spec.label()}", title="Opened")

        self.push_screen(PathScreen("Open a sweep file (the TOML `prunetui sweep FILE` reads)",
                                    str(start), "Open"), opened)

    def action_save_file(self) -> None:
        """Ask where, then write the Configure tab as a sweep file (asking before
        overwriting one)."""
        form = self.main(ConfigForm)
        state = form.state()
        spec = state.spec
        if spec is None:  # only what the engine checks on this machine may fail: still saved
            self._show_form_error(state)
            return
        data_dir = form.data_dir()
        spec.data_dir = str(data_dir.resolve()) if data_dir else ""
        start = self.sweep_file or Path.cwd() / f"{spec.label()}.toml"

        def write(path: Path) -> None:
            try:
                save_toml(spec, path)
            except ConfigError as e:
                self.notify(str(e), severity="error", title="Save", timeout=10)
                return
            self.sweep_file = path
            n = len(spec.configs())
            self.notify(f"{path} ({n} run{'s' * (n != 1)}; `prunetui sweep {path}` runs "
                        f"{'them' if n != 1 else 'it'})", title="Saved")

        def chosen(path: Path | None) -> None:
            if path is None:
                return
            if path.is_dir():
                self.notify(f"{path} is a folder; give a file name", severity="error",
                            title="Save")
            elif path.exists() and path != self.sweep_file:
                self.push_screen(ConfirmScreen(f"{path} exists. Overwrite it?",
                                               yes="Overwrite"),
                                 lambda yes: write(path) if yes else None)
            else:
                write(path)

        self.push_screen(PathScreen("Save as a sweep file (TOML)", str(start), "Save"), chosen)

    def start_sweep(self, configs: list[RunConfig]) -> None:
        self.cancel_token = CancelToken()
        self.sweep_active = True
        self.outcomes = []
        panel = self.main(RunPanel)
        panel.store = self._store
        panel.begin(configs)
        self.action_tab("run")
        self.refresh_bindings()
        self._sweep(configs, self.cancel_token)

    @work(thread=True, group="sweep", exit_on_error=False, name="sweep")
    def _sweep(self, configs: list[RunConfig], token: CancelToken) -> None:
        worker = get_current_worker()
        glue.run_sweep(self.post_message, configs, self.store(), self.data_dir, token,
                       download=self.download, threads=self.torch_threads,
                       is_cancelled=lambda: worker.is_cancelled)

    def action_cancel(self) -> None:
        if not self.sweep_active or self.cancel_token is None:
            self.notify("no run is active", severity="warning")
            return
        if not self.cancel_token.cancelled:
            self.cancel_token.cancel()
            self.notify("cancelling: the run stops after the current batch", title="Cancel")

    async def action_quit(self) -> None:
        if isinstance(self.screen, ConfirmScreen):
            return
        if not self.sweep_active:
            self.exit()
            return

        def answer(yes: bool | None) -> None:
            if yes:
                if self.cancel_token is not None:
                    self.cancel_token.cancel()
                self.exit()

        self._quit_question = ConfirmScreen(
            "A run is active. Cancel it and quit?\nIt is stored as cancelled; run the same "
            "config again to resume it.", yes="Quit")
        self.push_screen(self._quit_question, answer)

    def on_unmount(self) -> None:
        # Never leave the engine running in a thread the interpreter would wait for.
        if self.cancel_token is not None:
            self.cancel_token.cancel()
        glue.restore_torch_threads()
        glue.unfreeze_gc()

    def action_refresh_results(self) -> None:
        self.main(ResultsView).reload()

    def action_export(self) -> None:
        self.action_tab("results")
        self.main(ResultsView).action_export()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Run", "Run the configured sweep (r)", self.action_run)
        yield SystemCommand("Cancel run", "Cancel the active run; it can be resumed (c)",
                            self.action_cancel)
        yield SystemCommand("Configure", "Show the Configure tab (1)",
                            lambda: self.action_tab("configure"))
        yield SystemCommand("Open sweep file", "Show a sweep TOML in Configure (ctrl+o)",
                            self.action_open_file)
        yield SystemCommand("Save sweep file", "Write Configure as a sweep TOML (ctrl+s)",
                            self.action_save_file)
        yield SystemCommand("Run progress", "Show the Run tab (2)",
                            lambda: self.action_tab("run"))
        yield SystemCommand("Results", "Show the stored runs (3)",
                            lambda: self.action_tab("results"))
        yield SystemCommand("Next view", "Run tab: live, charts, layers (v)",
                            self._palette_next_view)
        yield SystemCommand("Filter results", "Results: type a filter (/)",
                            self._palette_results(lambda v: v.action_focus_filter()))
        yield SystemCommand("Compare runs", "Results: the marked runs' curves (v)",
                            self._palette_results(
                                lambda v: v.query_one(RunsTable).action_compare()))
        yield SystemCommand("Delete runs", "Results: the marked runs, after asking (del)",
                            self._palette_results(lambda v: v.action_delete()))
        yield SystemCommand("Export report", "Write report.md of the marked or shown runs",
                            self.action_export)
        yield SystemCommand("Refresh results", "Read the results store again",
                            self.action_refresh_results)
        yield SystemCommand("Toggle light/dark", "Switch the theme (t)", self.action_toggle_dark)
        yield SystemCommand("Help", "Keys and what each tab does (?)", self.action_help)

    def _palette_next_view(self) -> None:
        # The view first, then the tab, which puts the focus in the view it shows (a focus
        # left in the view before would pull the views back to it).
        panel = self.main(RunPanel)
        panel.query_one("#run-tabs", TabbedContent).active = panel.following_view()
        self.action_tab("run")

    def _palette_results(self, act: Callable[[ResultsView], None]) -> Callable[[], None]:
        """A palette command acting on the Results tab (shown first)."""
        def run() -> None:
            self.action_tab("results")
            act(self.main(ResultsView))
        return run

    # -- configure and preview -------------------------------------------------------------

    @on(ConfigForm.Changed)
    def _form_changed(self, event: ConfigForm.Changed) -> None:
        self.form_state = event.state
        self.data_dir = self.main(ConfigForm).data_dir()
        self._check_data_soon()
        if not self.preview_enabled:
            return
        panel = self.main(PreviewPanel)
        config = event.state.preview
        if config is None:
            self._previewed = None
            panel.border_subtitle = ""
            panel.show_error(None, event.state.error or "invalid configuration")
            return
        # The preview follows the lists' cursors, to look before ticking: say when what it
        # shows is not part of the run.
        ticked = self.main(ConfigForm).is_ticked(config.pruner, config.compression)
        panel.border_subtitle = "" if ticked else "under the cursor · not ticked"
        if (config, self.data_dir) == self._previewed:
            return
        self._previewed = (config, self.data_dir)
        panel.show_pending(config)
        if self._preview_timer is not None:
            self._preview_timer.stop()
        self._preview_timer = self.set_timer(PREVIEW_DELAY, self._start_preview)

    def _start_preview(self) -> None:
        if self._previewed is None:
            return
        config, data_dir = self._previewed
        self._preview_serial += 1
        serial = self._preview_serial

        def job() -> None:
            worker = get_current_worker()
            glue.run_preview(self.post_message, serial, config, data_dir,
                             is_cancelled=lambda: worker.is_cancelled,
                             threads=self.torch_threads)

        self.run_worker(job, thread=True, exclusive=True, group="preview",
                        exit_on_error=False, name="preview")

    @on(Collapsible.Expanded, "#options")
    def _options_opened(self, event: Collapsible.Expanded) -> None:
        event.stop()
        self._check_data_soon()

    def _check_data_soon(self) -> None:
        """Check the data dir for the form's datasets (shown in Options, so only while
        Options is open: the check loads the engine's data module, and with it torch)."""
        if not self.screen_stack:  # the app is closing
            return
        form = self.main(ConfigForm)
        if form.query_one("#options", Collapsible).collapsed:
            return
        try:
            datasets = form.grid()["datasets"]
        except ConfigError:
            return  # the form says what is wrong
        key = (tuple(datasets), form.data_dir(), form.download())
        if key == self._data_checked:
            return
        self._data_checked = key
        if self._data_timer is not None:
            self._data_timer.stop()
        self._data_timer = self.set_timer(PREVIEW_DELAY, lambda: self._check_data(*key))

    def _check_data(self, datasets: tuple[str, ...], data_dir: Path | None,
                    download: bool) -> None:
        if not self.screen_stack:
            return
        form = self.main(ConfigForm)
        form.show_data_status([("checking the data dir…", False)])

        def job() -> None:
            from prunetui.tui.data_check import data_status

            lines = data_status(list(datasets), data_dir, download, app_name)
            if (datasets, data_dir, download) == self._data_checked and self.is_running:
                self.call_from_thread(form.show_data_status, lines)

        self.run_worker(job, thread=True, exclusive=True, group="data-check",
                        exit_on_error=False, name="data check")

    def on_preview_ready(self, message: glue.PreviewReady) -> None:
        if message.serial != self._preview_serial or not self.screen_stack:
            return  # a newer preview is on its way, or the app is closing
        panel = self.main(PreviewPanel)
        if message.info is None:
            panel.show_error(message.config, message.error)
        else:
            panel.show_info(message.config, message.info)

    @on(ConfigForm.RunRequested)
    def _run_requested(self, event: ConfigForm.RunRequested) -> None:
        event.stop()
        self.action_run()

    @on(ConfigForm.FileRequested)
    def _file_requested(self, event: ConfigForm.FileRequested) -> None:
        event.stop()
        if event.action == "open":
            self.action_open_file()
        else:
            self.action_save_file()

    # -- the sweep worker's messages -------------------------------------------------------

    def on_cell_started(self, message: glue.CellStarted) -> None:
        self.main(RunPanel).cell_started(message.index, message.total, message.config)

    def on_engine_event(self, message: glue.EngineEvent) -> None:
        event = message.event
        self.main(RunPanel).engine_event(event)
        current = self.main(RunPanel).current
        if isinstance(event, RunWarning):
            who = run_label(current) if current is not None else event.run_id
            self.notify(f"{who}: {event.message}", severity="warning", title="Warning",
                        timeout=8)

    def on_cell_done(self, message: glue.CellDone) -> None:
        o = message.outcome
        self.outcomes.append(o)
        self.main(RunPanel).cell_done(message.index, message.total, o.config, o.status,
                                      o.result, o.error)
        label = f"{run_label(o.config)} ({o.config.run_id})"
        if o.status == RunStatus.CANCELLED:
            self.notify(f"{label} stored as cancelled; run it again to resume",
                        severity="warning", title="Run cancelled")
        elif not o.status.ok:
            self.notify(f"{label}: {o.error}", severity="error",
                        title=f"Run {o.status.label}", timeout=12)
        elif message.total == 1 and o.result is not None:
            stored = o.config.run_id in self.main(RunPanel).cached
            self.notify(f"{label}: top-1 {o.result.top1:.2f}"
                        + (" (the stored result; nothing was retrained)" if stored else ""),
                        title="Already stored" if stored else "Run finished")
        self.main(ResultsView).reload()

    def on_sweep_done(self, message: glue.SweepDone) -> None:
        self.sweep_active = False
        self.main(RunPanel).sweep_done([o.status for o in message.outcomes],
                                            message.cancelled)
        if len(message.outcomes) > 1 or (message.cancelled and len(self.outcomes) > 1):
            done = sum(o.status.ok for o in message.outcomes)
            self.notify(f"{done}/{len(self.main(RunPanel).configs)} runs finished",
                        title="Sweep cancelled" if message.cancelled else "Sweep done")
        self.refresh_bindings()
        self.main(ResultsView).reload()
        question = self._quit_question
        if question is not None and question.is_current:
            question.ask("The run has ended: nothing is left to cancel. Quit?")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that died anyway (a bug): say so and keep the app alive."""
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        self.notify(f"{type(error).__name__}: {error}", severity="error",
                    title=f"{event.worker.name or 'worker'} failed", timeout=15)
        if event.worker.group == "sweep":
            self.sweep_active = False
            self.main(RunPanel).sweep_done([RunStatus.FAILED], False)
            self.refresh_bindings()

    @on(TabbedContent.TabActivated, "#main-tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == TABS["results"]:
            self.main(ResultsView).reload()

"""The Run tab: progress bars, status line, live epoch table, sweep grid and charts.

It is fed by the app: ``begin`` when a sweep starts, then the worker's messages (cell started,
engine events, cell done, sweep done). Tests feed it synthetic events the same way.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Select, Static, TabbedContent, TabPane, Tabs

from prunetui.core import events as ev
from prunetui.core.config import RunConfig
from prunetui.core.errors import StoreError
from prunetui.core.run.result import Layer, RunResult
from prunetui.core.status import RunStatus
from prunetui.core.store import Store
from prunetui.tui.widgets.accuracy_chart import AccuracyChart
from prunetui.tui.widgets.density_chart import DensityChart
from prunetui.tui.widgets.epoch_table import EpochTable
from prunetui.tui.widgets.flops_chart import FlopRatioChart
from prunetui.tui.widgets.fmt import cell_label, run_label
from prunetui.tui.widgets.histogram_chart import HistogramChart
from prunetui.tui.widgets.layer_compare import LayerCompare, PrunerLayers
from prunetui.tui.widgets.legend import PrunerLegend, catalog_order, term_colour
from prunetui.tui.widgets.run_progress import RunProgress
from prunetui.tui.widgets.sweep_grid import MARKS, SweepGrid
from prunetui.tui.widgets.top1_chart import Top1Chart, Top1Run

IDLE = "No run yet: pick a config on Configure (1) and press r."


class RunPanel(Vertical):
    """Everything about the sweep being run (or the last one)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("v", "next_view", "Next view"),
        # Shown in the view each acts on only (check_action).
        Binding("f", "toggle_flops", "Top-1/FLOPs"),
        Binding("p", "toggle_compare", "Pruners"),
    ]
    VIEWS = ("tab-live", "tab-charts", "tab-layers")
    COMPARE_EMPTY = "pick a run: the sweep's pruners at its compression"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.store: Store | None = None
        self.configs: list[RunConfig] = []
        self.results: dict[str, RunResult] = {}
        # Per-layer rows of runs that are pruned but not finished (stored when pruning ends):
        # the Layers view shows them while the run trains.
        self.pruned: dict[str, list[Layer]] = {}
        # The Layers view follows the sweep (each run as pruned, then finished) until the
        # user picks a run there; a new sweep follows again.
        self._user_picked = False
        self.current: RunConfig | None = None
        self.warnings: list[str] = []
        self._phase = ""
        self._epochs: dict[str, int] = {}
        self.cached: set[str] = set()  # runs of this sweep reported from the store

    def compose(self) -> ComposeResult:
        yield RunProgress(id="progress")
        with Horizontal(id="status-row"):
            yield Static(IDLE, id="run-status")
            yield Button("Cancel (c)", id="cancel", variant="error", compact=True,
                         disabled=True)
        yield Static("", id="run-warnings")
        with TabbedContent(id="run-tabs"):
            with TabPane("Live", id="tab-live"), Horizontal(id="live"):
                yield EpochTable(id="epoch-table")
                yield SweepGrid(id="grid")
            with TabPane("Charts", id="tab-charts"), Vertical():
                # The sweep's result by compression (top-1, or the FLOP ratio on f) beside
                # the runs' epochs; every line in its pruner's colour, named in one legend.
                with Horizontal(classes="charts"):
                    yield Top1Chart(id="top1-chart")
                    yield FlopRatioChart(id="flop-chart")
                    yield AccuracyChart(id="acc-chart")
                yield PrunerLegend(id="run-legend")
            with TabPane("Layers", id="tab-layers"), Vertical():
                with Horizontal(id="layer-pickers"):
                    yield Select[str]([], prompt="run", compact=True, id="pick-run")
                    yield Select[str]([], prompt="layer", compact=True, id="pick-layer")
                with Horizontal(classes="charts", id="layer-charts"):
                    yield DensityChart(id="density-chart")
                    yield HistogramChart(id="hist-chart")
                # p: the picked run's compression, every pruner of the sweep side by side.
                yield LayerCompare(empty=self.COMPARE_EMPTY, id="layer-compare")

    def action_next_view(self) -> None:
        """Live → Charts → Layers → Live."""
        self.show_view(self.following_view())

    def following_view(self) -> str:
        """The view after the one shown."""
        active = self.query_one("#run-tabs", TabbedContent).active
        i = self.VIEWS.index(active) if active in self.VIEWS else -1
        return self.VIEWS[(i + 1) % len(self.VIEWS)]

    def show_view(self, view: str) -> None:
        """Show one of ``VIEWS`` with the focus in it."""
        self.query_one("#run-tabs", TabbedContent).active = view
        self.focus_view()

    def focus_view(self) -> None:
        """Put the focus in the view shown. It must follow the view: a focused widget left
        in a hidden pane hands the focus to its neighbour there, and the tabs then switch
        back to the pane that holds it."""
        tabs = self.query_one("#run-tabs", TabbedContent)
        pane = tabs.get_pane(tabs.active)
        target = next((w for w in pane.query("*") if w.can_focus), None)
        (target or tabs.query_one(Tabs)).focus()

    def on_resize(self) -> None:
        # Side by side when there is room, stacked on an 80-column terminal.
        self.set_class(self.size.width >= 110, "-wide")

    def on_mount(self) -> None:
        self.query_one(RunProgress).reset()
        self.query_one("#run-warnings", Static).display = False
        self.query_one(FlopRatioChart).display = False
        self.query_one(LayerCompare).display = False

    # -- the Charts view's chart and the Layers view's comparison ---------------------------

    @property
    def showing_flops(self) -> bool:
        """Whether the Charts view shows the FLOP ratio (else top-1) against compression."""
        return bool(self.query_one(FlopRatioChart).display)

    @property
    def comparing(self) -> bool:
        """Whether the Layers view compares the pruners (else shows the picked run)."""
        return bool(self.query_one(LayerCompare).display)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        views = {"toggle_flops": "tab-charts", "toggle_compare": "tab-layers"}
        if action in views:
            return self.query_one("#run-tabs", TabbedContent).active == views[action]
        return True

    @on(TabbedContent.TabActivated, "#run-tabs")
    def _view_shown(self) -> None:
        self.refresh_bindings()  # f and p belong to one view each

    def action_toggle_flops(self) -> None:
        """Charts view: top-1 ↔ FLOP ratio against compression, in the same place."""
        flops = not self.showing_flops
        self.query_one(FlopRatioChart).display = flops
        self.query_one(Top1Chart).display = not flops
        self._update_legend()

    def action_toggle_compare(self) -> None:
        """Layers view: the picked run's layers ↔ every pruner's at its compression."""
        compare = not self.comparing
        self.query_one(LayerCompare).display = compare
        self.query_one("#layer-charts").display = not compare
        self.query_one("#pick-layer").display = not compare
        if compare:
            self._show_compare()
            self.query_one(LayerCompare).query_one(DataTable).focus()
        else:
            self.query_one("#pick-run", Select).focus()

    def _update_legend(self) -> None:
        """The sweep's pruners (named before their first cell is done, so the legend does
        not reflow as they finish), and the top-1 chart's marks when it is shown."""
        top1 = self.query_one(Top1Chart)
        self.query_one(PrunerLegend).set_entries(
            [c.pruner for c in self.configs],
            [] if self.showing_flops else top1.notes())

    def _show_compare(self) -> None:
        """Each pruner of the sweep at the picked run's compression: its finished run, or
        its training one as pruned; the picked run's seed where there is a choice."""
        compare = self.query_one(LayerCompare)
        picked = self.configs_by_id.get(str(self.query_one("#pick-run", Select).value))
        if picked is None:
            compare.show(None, [])
            return
        columns = []
        for pruner in catalog_order(c.pruner for c in self.configs):
            runs = sorted((c for c in self.configs if c.pruner == pruner
                           and c.compression == picked.compression
                           and (c.run_id in self.results or c.run_id in self.pruned)),
                          key=lambda c: (c.seed != picked.seed, c.seed))
            if not runs:
                continue
            rid = runs[0].run_id
            result = self.results.get(rid)
            columns.append(PrunerLayers(
                pruner, result.layers if result else self.pruned[rid],
                result.collapse.collapsed if result else False, rid))
        compare.show(picked.compression, columns, f"{picked.model}·{picked.dataset}")

    # -- the sweep's life ------------------------------------------------------------------

    def begin(self, configs: list[RunConfig]) -> None:
        """A new sweep: every cell pending, tables and charts cleared."""
        self.configs = list(configs)
        self.current = None
        self.cached = set()
        self.warnings = []
        self._user_picked = False
        self.query_one(RunProgress).reset()
        self.query_one(RunProgress).set("sweep", 0, len(configs))
        self.query_one(SweepGrid).setup(configs)
        self.query_one(EpochTable).clear()
        self.query_one(AccuracyChart).clear_runs()
        self.query_one(FlopRatioChart).clear_points()
        self.query_one(Top1Chart).clear_runs()
        self._update_legend()
        self.query_one(LayerCompare).show(None, [])
        self._show_warnings()
        self._status(f"starting {len(configs)} run{'s' * (len(configs) != 1)}…")
        self.query_one("#cancel", Button).disabled = False

    def cell_started(self, index: int, total: int, config: RunConfig) -> None:
        self.current = config
        self._phase = "load"
        self._epochs = {}
        progress = self.query_one(RunProgress)
        progress.set("sweep", index, total)
        progress.reset("prune", "epoch", "batch")
        progress.set("epoch", 0, config.post_epochs)
        progress.set("prune", 0, config.iterations)
        self.query_one(EpochTable).clear()
        self.query_one(SweepGrid).set_cell(config, "▶", RunStatus.RUNNING)
        self._status_for("loading data")

    def engine_event(self, event: ev.Event) -> None:
        """One engine event of the current run."""
        progress = self.query_one(RunProgress)
        config = self.current
        if isinstance(event, ev.RunStarted):
            if event.resumed_after:
                self._show_epochs(event.run_id, pruned=event.resumed_phase == "train")
            self._status_for(f"resumed after {event.resumed_after}" if event.resumed_after
                             else "started")
        elif isinstance(event, ev.PhaseStarted):
            self._phase = event.phase
            if event.phase == "train":
                self._pruned_layers(event.run_id)
            if event.phase in ("pretrain", "train") or event.phase.startswith("round"):
                self._epochs[event.phase] = event.total
                done = sum(1 for k in self.query_one(EpochTable).rows
                           if str(k.value).startswith(f"{event.phase}:"))
                progress.set("epoch", done, event.total)
                progress.set("batch", 0, 0)
            elif event.phase == "prune":
                progress.set("prune", 0, event.total)
            self._status_for(_phase_text(event.phase))
        elif isinstance(event, ev.PruneStep):
            progress.set("prune", event.iteration, event.iterations)
            self._status_for(f"pruning {event.iteration}/{event.iterations} · density "
                             f"{event.density:.4g}")
        elif isinstance(event, ev.BatchProgress):
            progress.set("batch", event.batch, event.batches)
        elif isinstance(event, ev.EpochEnd):
            self._epochs[event.phase] = event.epochs
            progress.set("epoch", event.epoch, event.epochs)
            self.query_one(EpochTable).add_epoch(event.phase, event.epoch, event.epochs,
                                                 event.train_loss, event.test_loss,
                                                 event.top1, event.top5, event.lr)
            if event.phase == "train" and config is not None:
                self.query_one(AccuracyChart).add_point(event.run_id, cell_label(config),
                                                        event.epoch, event.top1,
                                                        term_colour(config.pruner))
                self.query_one(SweepGrid).set_cell(
                    config, f"▶ {event.epoch}/{event.epochs}", RunStatus.RUNNING)
            phase = _phase_text(event.phase) if event.phase.startswith("round") else event.phase
            self._status_for(f"{phase} epoch {event.epoch}/{event.epochs} · top-1 "
                             f"{event.top1:.2f}")
        elif isinstance(event, ev.RunFinished) and event.cached:
            self._show_stored(event.run_id)
        elif isinstance(event, ev.RunWarning):
            who = cell_label(config) if config is not None else event.run_id
            self.warnings.append(f"{who}: {event.message}")
            self._show_warnings()

    def cell_done(self, index: int, total: int, config: RunConfig, status: RunStatus,
                  result: RunResult | None, error: str = "") -> None:
        progress = self.query_one(RunProgress)
        # A cancelled cell is not done: it resumes when the sweep is run again.
        progress.set("sweep", index + (status != RunStatus.CANCELLED), total)
        grid = self.query_one(SweepGrid)
        if status.ok and result is not None:
            self.results[config.run_id] = result
            collapsed = result.collapse.collapsed
            grid.set_cell(config, f"{result.top1:.2f}" + (" ‡" if collapsed else ""),
                          RunStatus.FINISHED)
            self.query_one(FlopRatioChart).add_point(config.pruner, config.compression,
                                                     result.flops.ratio)
            self.query_one(Top1Chart).set_run(Top1Run(config.run_id, config.pruner,
                                                      config.compression, result.top1,
                                                      collapsed))
            self._update_legend()
            epochs = {r.epoch: r.top1 for r in result.epochs
                      if r.phase == "train" and r.top1 is not None}
            if epochs:
                self.query_one(AccuracyChart).set_run(config.run_id, cell_label(config),
                                                      epochs, term_colour(config.pruner))
            self._add_run_choice(config, result)
        else:
            grid.set_cell(config, MARKS.get(status, status), status)

    def sweep_done(self, statuses: list[RunStatus], cancelled: bool) -> None:
        self.current = None
        self.query_one("#cancel", Button).disabled = True
        done = sum(s.ok for s in statuses)
        parts = [f"{done}/{len(self.configs)} finished"]
        if self.cached:
            parts.append(f"{len(self.cached)} of them already stored")
        # Each other way a run ended, by name ("1 diverged", "2 refused"), in the order met.
        ended = Counter(s for s in statuses if not s.ok and s != RunStatus.CANCELLED)
        parts += [f"{n} {status.label}" for status, n in ended.items()]
        if cancelled:
            parts.append("cancelled: run it again to resume")
        self._status("■ " + " · ".join(parts))

    # -- helpers ---------------------------------------------------------------------------

    def _show_epochs(self, run_id: str, *, pruned: bool) -> None:
        """Show a run's stored epochs again: a resumed run's (the engine has dropped those
        past its checkpoint before it says it started), a stored one's. ``pruned``: it is
        past pruning."""
        if self.store is None or self.current is None:
            return
        try:
            rows = self.store.epochs(run_id)
        except Exception:
            return
        self.query_one(EpochTable).add_stored(rows, {"train": self.current.post_epochs,
                                                     "pretrain": self.current.pre_epochs})
        chart = self.query_one(AccuracyChart)
        chart.set_run(run_id, cell_label(self.current),
                      {r.epoch: r.top1 for r in rows
                       if r.phase == "train" and r.top1 is not None},
                      term_colour(self.current.pruner))
        progress = self.query_one(RunProgress)
        progress.set("prune", self.current.iterations if pruned else 0, self.current.iterations)
        phase = "train" if pruned else "pretrain"
        total = self.current.post_epochs if pruned else self.current.pre_epochs
        progress.set("epoch", sum(r.phase == phase for r in rows), total)

    def _show_stored(self, run_id: str) -> None:
        """A config that was already stored: nothing is retrained, its stored epochs are
        shown as if it had just run, and the status says so."""
        self.cached.add(run_id)
        if self.current is not None:
            self._show_epochs(run_id, pruned=True)
            progress = self.query_one(RunProgress)
            progress.set("epoch", self.current.post_epochs, self.current.post_epochs)
            progress.reset("batch")
        self._status_for("already stored: showing its result (nothing was retrained)")

    def _status(self, text: str) -> None:
        self.query_one("#run-status", Static).update(text)

    def _status_for(self, what: str) -> None:
        if self.current is None:
            return
        n = len(self.configs)
        index = next((i for i, c in enumerate(self.configs)
                      if c.run_id == self.current.run_id), 0)
        prefix = f"▶ {index + 1}/{n} " if n > 1 else "▶ "
        # The run id last: it is what an 80-column terminal cuts, and the least needed.
        self._status(f"{prefix}{run_label(self.current)} · {what} · {self.current.run_id}")

    def _show_warnings(self) -> None:
        w = self.query_one("#run-warnings", Static)
        w.update("\n".join(f"⚠ {m}" for m in self.warnings[-2:]))
        w.display = bool(self.warnings)

    def _add_run_choice(self, config: RunConfig, result: RunResult) -> None:
        self.pruned.pop(config.run_id, None)
        self._set_run_choices(config.run_id, updated=config.run_id)

    def _pruned_layers(self, run_id: str) -> None:
        """Offer the training run's layers as pruning left them (the store has them once
        pruning ends)."""
        if self.store is None or run_id in self.results:
            return
        try:
            layers = self.store.layers(run_id)
        except Exception:  # a store another process is rewriting: the finished run will do
            return
        if layers:
            self.pruned[run_id] = layers
            self._set_run_choices(run_id)

    def _set_run_choices(self, value: str, updated: str = "") -> None:
        """Offer the finished runs and those trained as pruned; show ``value``, unless the
        user picked a run that is still offered. ``updated``: a run whose layers changed."""
        pick = self.query_one("#pick-run", Select)
        by_id = self.configs_by_id
        options = [(run_label(by_id[r]), r) for r in self.results if r in by_id]
        options += [(f"{run_label(by_id[r])} (as pruned)", r) for r in self.pruned
                    if r in by_id and r not in self.results]
        offered = {r for _, r in options}
        shown = pick.value
        if self._user_picked and shown in offered:
            value = str(shown)
        # Quietly: a Changed from here would read as the user's pick (_run_picked).
        with pick.prevent(Select.Changed):
            pick.set_options(options)
            if value in offered:
                pick.value = value
        if pick.value != shown or pick.value == updated:
            # Redrawn when another run is shown, or the shown one finished; otherwise it
            # keeps the layer chosen in it.
            self._show_run(pick.value)
        elif self.comparing:
            self._show_compare()  # another pruner's run at the compression compared

    @property
    def configs_by_id(self) -> dict[str, RunConfig]:
        return {c.run_id: c for c in self.configs}

    def select_run(self, run_id: str) -> None:
        """Show the layers of finished run ``run_id`` in the Layers tab (and keep them)."""
        if run_id in self.results:
            self._user_picked = True  # no Changed when it is the run shown already
            self.query_one("#pick-run", Select).value = run_id

    @on(Select.Changed, "#pick-run")
    def _run_picked(self, event: Select.Changed) -> None:
        event.stop()
        self._user_picked = True
        self._show_run(event.value)

    def _show_run(self, run_id: object) -> None:
        """The Layers view of ``run_id`` (a Select value: maybe blank)."""
        if self.comparing:
            self._show_compare()
        result = self.results.get(str(run_id))
        density = self.query_one(DensityChart)
        layer_pick = self.query_one("#pick-layer", Select)
        if result is None:
            # A run still training: its density as pruned; weights are histogrammed at its end.
            density.set_layers(self.pruned.get(str(run_id), []))
            layer_pick.set_options([])
            self.query_one(HistogramChart).set_histogram(None)
            return
        density.set_layers(result.layers)
        names = [h["layer"] for h in self._histograms(str(run_id))]
        layer_pick.set_options([(n, n) for n in names])
        if names:
            layer_pick.value = names[0]

    @on(Select.Changed, "#pick-layer")
    def _layer_picked(self, event: Select.Changed) -> None:
        event.stop()
        run_id = self.query_one("#pick-run", Select).value
        hists = self._histograms(str(run_id)) if isinstance(run_id, str) else []
        chosen = next((h for h in hists if h["layer"] == event.value), None)
        self.query_one(HistogramChart).set_histogram(chosen)

    def _histograms(self, run_id: str) -> list[dict[str, Any]]:
        if self.store is None:
            return []
        try:
            return self.store.histograms(run_id)
        except StoreError:  # missing or damaged: the layer view shows densities only
            return []

    @on(Button.Pressed, "#cancel")
    async def _cancel_pressed(self) -> None:
        await self.app.run_action("cancel")  # the same as the c key

    @on(DataTable.CellSelected, "#grid")
    def _grid_selected(self, event: DataTable.CellSelected) -> None:
        event.stop()
        run_id = self.query_one(SweepGrid).run_at_cursor()
        if run_id and run_id in self.results:
            self.select_run(run_id)
            self.show_view("tab-layers")


_PHASES = {"load": "loading data", "pretrain": "pre-training", "prune": "pruning",
           "train": "training", "measure": "measuring FLOPs and inference time"}


def _phase_text(phase: str) -> str:
    """A phase in the status line: IMP's rounds before the last ("round2") as "IMP round 2";
    its last round trains as "train" does."""
    if phase.startswith("round"):
        return f"IMP round {phase[5:]}"
    return _PHASES.get(phase, phase)

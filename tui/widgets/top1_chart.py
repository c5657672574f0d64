"""Top-1 against compression, one line per pruner in its fixed colour: the SynFlow paper's
Figure 6 axes, as the exported figure (``core.figures.accuracy_figure``) draws them.

x is the compression ratio 10^c on a log axis (c on a linear one), y the top-1 (%) averaged
over the seeds of each cell. A cell where a run collapsed is marked ‡ instead of ●. The chart
draws no legend of its own: a ``PrunerLegend`` under it names the pruners (``pruners()``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from textual_plotext.plot import Plot

from prunetui.core.figures import COLLAPSE_MARK, Point, Series, pruner_name
from prunetui.tui.widgets.chart import Chart, compression_axis
from prunetui.tui.widgets.legend import catalog_order, term_colour

POINT_MARK = "●"


@dataclass(frozen=True)
class Top1Run:
    """One run's cell of the chart: which pruner and compression, its top-1 and collapse."""

    run_id: str
    pruner: str
    compression: float
    top1: float
    collapsed: bool = False


class Top1Chart(Chart):
    """Mean top-1 per (pruner, compression) over the runs given, a line per pruner."""

    TITLE = "Top-1 (%) vs compression"
    EMPTY = "no finished run yet"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._runs: dict[str, Top1Run] = {}

    def has_data(self) -> bool:
        return bool(self._runs)

    def clear_runs(self) -> None:
        self._runs.clear()
        self.refresh()

    def set_run(self, run: Top1Run) -> None:
        """Add a finished run, or replace it (a run is counted once however often told)."""
        self._runs[run.run_id] = run
        self.refresh()

    def set_runs(self, runs: Iterable[Top1Run]) -> None:
        """Show exactly ``runs``."""
        self._runs = {r.run_id: r for r in runs}
        self.refresh()

    def series(self) -> list[Series]:
        """What the chart draws: per pruner (catalog order), the mean over the runs of each
        compression, collapsed when any run of the cell collapsed."""
        cells: dict[str, dict[float, list[Top1Run]]] = {}
        for r in self._runs.values():
            cells.setdefault(r.pruner, {}).setdefault(r.compression, []).append(r)
        return [Series(p, pruner_name(p),
                       [Point(c, [r.top1 for r in runs], any(r.collapsed for r in runs))
                        for c, runs in cells[p].items()])
                for p in catalog_order(cells)]

    def pruners(self) -> list[str]:
        """The pruners with a line, in the order drawn."""
        return catalog_order(r.pruner for r in self._runs.values())

    def notes(self) -> list[str]:
        """What a legend should say besides the pruners: the collapse mark when one is
        drawn, and that points are means when a cell has several runs."""
        series = self.series()
        points = [p for s in series for p in s.points]
        out = []
        if any(p.collapsed for p in points):
            out.append(f"{COLLAPSE_MARK} collapsed")
        most = max((len(p.values) for p in points), default=1)
        if most > 1:
            out.append(f"mean of ≤{most} seeds" if any(len(p.values) != most for p in points)
                       else f"mean of {most} seeds")
        return out

    def draw(self, plt: Plot) -> None:
        series = self.series()
        values = [p.mean for s in series for p in s.points]
        self.y_range(plt, min(values), max(values))
        for s in series:
            if len(s.points) > 1:
                plt.plot([p.compression for p in s.points], [p.mean for p in s.points],
                         color=term_colour(s.pruner), marker="braille")
        # Points after every line, collapse marks last: each cell stays visible where lines
        # cross, and a collapsed cell at chance level where another pruner's point is too.
        for mark, collapsed in ((POINT_MARK, False), (COLLAPSE_MARK, True)):
            for s in series:
                at = [p for p in s.points if p.collapsed == collapsed]
                if at:
                    plt.scatter([p.compression for p in at], [p.mean for p in at],
                                color=term_colour(s.pruner), marker=mark)
        compression_axis(plt, [p.compression for s in series for p in s.points],
                         self.size.width)

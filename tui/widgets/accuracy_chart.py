"""Test accuracy (top-1) per epoch, one line per run."""

from __future__ import annotations

from textual_plotext.plot import Plot

from prunetui.tui.widgets.chart import Chart, integer_ticks


class AccuracyChart(Chart):
    """Lines of (epoch, top-1), keyed by run id, labelled e.g. 'SynFlow c=1', each in the
    colour given (a plotext colour name, e.g. its pruner's) or else plotext's next one."""

    TITLE = "Test top-1 (%) per epoch"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._series: dict[str, tuple[str, dict[int, float]]] = {}
        self._colours: dict[str, str] = {}

    def has_data(self) -> bool:
        return any(points for _, points in self._series.values())

    def clear_runs(self) -> None:
        self._series.clear()
        self._colours.clear()
        self.refresh()

    def set_run(self, run_id: str, label: str, points: dict[int, float],
                colour: str | None = None) -> None:
        """Replace a run's line (e.g. from stored epochs)."""
        self._series[run_id] = (label, dict(points))
        self._colour(run_id, colour)
        self.refresh()

    def add_point(self, run_id: str, label: str, epoch: int, top1: float,
                  colour: str | None = None) -> None:
        self._colour(run_id, colour)
        _, points = self._series.setdefault(run_id, (label, {}))
        points[epoch] = top1
        self.refresh()

    def _colour(self, run_id: str, colour: str | None) -> None:
        if colour is not None:
            self._colours[run_id] = colour

    def drop_after(self, run_id: str, epoch: int) -> None:
        """Forget a resumed run's epochs past its checkpoint (they are recomputed)."""
        if run_id in self._series:
            label, points = self._series[run_id]
            self._series[run_id] = (label, {e: v for e, v in points.items() if e <= epoch})
            self.refresh()

    def draw(self, plt: Plot) -> None:
        series = [(label, points, self._colours.get(run_id))
                  for run_id, (label, points) in self._series.items() if points]
        values = [v for _, points, _ in series for v in points.values()]
        labelled = self.legend_room(plt, len(series), min(values), max(values))
        if not labelled:
            plt.title(f"{self.TITLE} · {len(series)} runs")
        epochs: set[int] = set()
        for label, points, colour in series:
            xs = sorted(points)
            epochs.update(xs)
            plt.plot(xs, [points[x] for x in xs], label=label if labelled else None,
                     marker="braille", **({"color": colour} if colour else {}))
        ticks = integer_ticks(sorted(epochs))
        plt.xticks([float(t) for t in ticks], [str(t) for t in ticks])
        plt.xlabel("epoch")

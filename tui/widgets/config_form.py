"""The Configure panel: the grid (model, dataset, pruners × compressions, seeds) and every
setting, generated from ``core.config.SETTINGS`` and grouped as they are there.

Several pruners, compressions, seeds (or models and datasets) make a sweep (one run per cell).
The form turns its values into a ``SweepSpec`` (the same object ``prunetui sweep`` builds from
its options or a TOML file, so the same values give the same run ids) and its ``RunConfig``s,
so every value is checked by ``RunConfig.validate``. An error names its field (``ConfigError``
``field``): the form shows it with the field's label and marks that field.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from textual import events, on
from textual._widget_navigation import find_next_enabled_no_wrap
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import (
    Button,
    Checkbox,
    Collapsible,
    Input,
    Label,
    Select,
    SelectionList,
    Static,
)
from textual.widgets.selection_list import Selection

from prunetui.core import catalog
from prunetui.core.config import (
    AXES,
    DEFAULTS,
    GROUPS,
    ORDERED,
    SETTINGS,
    RunConfig,
    Setting,
)
from prunetui.core.errors import ConfigError, PrunetuiError
from prunetui.core.sweep.spec import SweepSpec, axis_default, coerce, convert

COMPRESSIONS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
# Axes with a widget of their own at the top of the form; any other axis (seeds, and those
# declared later) is a list typed in its own row of Options.
_OWN_WIDGETS = {"models": "model", "datasets": "dataset", "pruners": "pruners",
                "compressions": "compressions"}
# More values of an axis shown in a select or list above: typed in these rows.
_MORE = {"models": "more-models", "datasets": "more-datasets", "compressions": "extra"}
# The fields above Options, built with the form (the others only after its first frame).
_TOP = frozenset({"model", "dataset", "pruners", "compressions"})
_APP_NAMES = {"models": "Model", "model": "Model", "datasets": "Dataset", "dataset": "Dataset",
              "pruners": "Pruners", "pruner": "Pruners", "compressions": "Compression",
              "compression": "Compression", "data_dir": "Data dir"}

T = TypeVar("T")


def _options_open_height() -> int:
    """Terminal rows from which Options starts open: where the whole form fits (the tabs,
    model and dataset, the lists, every Options row, the Run button and the key bar)."""
    rows = 2 + 2 + 13 + 1 + 1 + 1  # the lists: 12 rows and their margin (app.tcss)
    for group in GROUPS:
        fields = [s for s in SETTINGS.values() if s.group == group
                  and (not s.axis or s.axis not in _OWN_WIDGETS or s.axis in _MORE)]
        rows += 2 + len(fields) + (3 if group == GROUPS[0] else 0)  # data dir rows
    return rows + 2 + len(catalog.PRUNERS) + 2 + 2


OPTIONS_OPEN_HEIGHT = _options_open_height()


def compression_label(c: float) -> str:
    """``1 · 10%``: the compression and the share of weights it keeps."""
    kept = 100 * 10.0 ** (-c)
    share = f"{kept:.0f}%" if kept >= 1 else f"{kept:.2g}%"
    return f"{c:g}".ljust(4) + f"{share:>5}"


def app_name(field_name: str) -> str:
    """How the app names a field in a message: its label in the form (``Epochs``)."""
    if field_name in _APP_NAMES:
        return _APP_NAMES[field_name]
    if field_name in SETTINGS:
        return SETTINGS[field_name].label
    if field_name in AXES:
        return AXES[field_name].label + "s"
    return field_name.replace("_", " ").capitalize()


def text_of(setting: Setting, value: Any) -> str:
    """A setting's value as the form (and ``--set``) writes it: 60,120; 0.0005; true."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return repr(value)  # exact: a rounded value would be another run
    return str(value)


class NoWrapSelectionList(SelectionList[T], Generic[T]):
    """A selection list whose cursor stops at the first and last entries instead of jumping
    to the other end (an up-arrow too many on the first compression ticked the last one)."""

    def action_cursor_up(self) -> None:
        self._step(-1)

    def action_cursor_down(self) -> None:
        self._step(1)

    def _step(self, direction: int) -> None:
        if self.highlighted is None:
            super().action_cursor_down() if direction > 0 else super().action_cursor_up()
            return
        moved = find_next_enabled_no_wrap(self._options, anchor=self.highlighted,
                                          direction=direction)  # type: ignore[arg-type]
        if moved is not None:
            self.highlighted = moved


@dataclass(frozen=True)
class FormState:
    """The form's configs (empty when invalid), its error, and the config to preview.

    ``error`` is the message in the app's words; ``problem`` the error itself (its ``field``
    and ``pruner`` say which input holds the bad value)."""

    configs: list[RunConfig]
    error: str | None
    preview: RunConfig | None
    spec: SweepSpec | None = None
    problem: PrunetuiError | None = field(default=None, compare=False)
    skipped: int = 0  # cells a layerwise pruner cannot prune at their compression, left out


class ConfigForm(Vertical):
    """Model/dataset selects, pruner/compression lists, and Options: every other setting by
    group, the other axes, per-pruner overrides, the data dir and the sweep's name."""

    class Changed(Message):
        """Any value changed; ``state`` holds the validated configs or the error."""

        def __init__(self, state: FormState) -> None:
            super().__init__()
            self.state = state

    class RunRequested(Message):
        """The Run button was pressed."""

    class FileRequested(Message):
        """The Open… or Save… button was pressed (``action``: "open" or "save")."""

        def __init__(self, action: str) -> None:
            super().__init__()
            self.action = action

    def __init__(self, *, spec: SweepSpec | None = None, extra: dict[str, Any] | None = None,
                 data_dir: Path | None = None, download: bool = True,
                 id: str | None = None) -> None:
        """``spec``: the values to start with (a sweep file, or the last configuration);
        ``extra``: settings applied over them (the app's ``settings``)."""
        super().__init__(id=id)
        start = spec or SweepSpec(models=[DEFAULTS.model], datasets=[DEFAULTS.dataset],
                                  pruners=[DEFAULTS.pruner], compressions=[DEFAULTS.compression])
        self._start = SweepSpec(settings={**start.settings, **(extra or {})},
                                overrides=start.overrides, name=start.name, **start.grid)
        self._start_data_dir = data_dir
        self._start_download = download
        self._preview_pruner = DEFAULTS.pruner
        self._preview_compression = DEFAULTS.compression
        self._ready = False
        self._update_pending = False
        self._tall: bool | None = None  # whether the terminal had room for the options
        # Each widget's value by id: what it is built with, and what it holds until Options
        # is built (``_read``).
        self._values: dict[str, Any] = {}
        self._built = False  # Options' fields are mounted
        self._building = False
        self._focus_when_built: str | None = None
        self._late: set[str] = set()  # fields set before they were mounted
        self._data_lines: list[tuple[str, bool]] | None = None  # checked before they were

    # -- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # Built with their values (not set after mounting, which would restyle and validate
        # the form once per field): the first frame comes sooner (bench/NOTES.md §5).
        v = self._values = _values_of(self._start, self._start_data_dir)
        v["download"] = self._start_download
        with Grid(classes="form-grid"):
            yield from self._row("Model", Select([(m, m) for m in catalog.MODELS],
                                                 compact=True, value=v["model"],
                                                 allow_blank=False, id="model"))
            yield from self._row("Dataset", Select([(d, d) for d in catalog.DATASETS],
                                                   value=v["dataset"], allow_blank=False,
                                                   compact=True, id="dataset"))
        with Horizontal(id="lists"):
            pruners = NoWrapSelectionList[str](
                *[Selection(p.display, key, key in v["pruners"])
                  for key, p in catalog.PRUNERS.items()], id="pruners")
            pruners.border_title = "Pruners"
            yield pruners
            comps = NoWrapSelectionList[float](
                *[Selection(compression_label(c), c, c in v["compressions"])
                  for c in COMPRESSIONS], id="compressions")
            comps.border_title = "Compression"
            yield comps
        self._tall = self.app.size.height >= OPTIONS_OPEN_HEIGHT
        with Collapsible(title="Options", collapsed=not self._tall, id="options"):
            # Filled when first opened, after the first frame (``_build_options``): until
            # then the values are read from ``_values``.
            yield Vertical(id="options-body")
        # Docked at the bottom: with Options open on a short terminal the form scrolls, and
        # why the Run button is disabled must stay in view with the button.
        with Vertical(id="form-foot"):
            yield Static("", id="validation")
            with Horizontal(id="run-row"):
                yield Button("Run ▶", id="run", variant="success", compact=True)
                yield Static("", id="sweep-size")

    def _options_sections(self) -> list[tuple[str, list[Widget]]]:
        """Options' content: a heading and the cells (label, field, …) of its grid for each
        group (a row container per field would double the widgets to style and lay out),
        then each pruner's own settings and the sweep's name and file."""
        sections = [(group, list(self._group(group))) for group in GROUPS]
        sections.append(("Per pruner (key=value …)", [
            w for key, p in catalog.PRUNERS.items()
            for w in self._row(p.display, self._input_for(f"over-{key}",
                                                          "e.g. post_epochs=300"))]))
        sections.append(("Sweep", [
            *self._row("Name", self._input_for("sweep-name", "default: models-datasets")),
            Label("File", classes="form-label"),
            Horizontal(Button("Open… ^o", id="open-file", compact=True),
                       Button("Save… ^s", id="save-file", compact=True), id="file-row")]))
        return sections

    async def _build_options(self) -> None:
        """Mount Options' fields (when first shown), each grid's cells awaited, so that
        reading them (``_read``) finds every one once ``_built`` is set."""
        if self._built or self._building:
            return
        self._building = True
        body = self.query_one("#options-body")
        for heading, cells in self._options_sections():
            grid = Grid(classes="form-grid")
            await body.mount_all([Static(heading, classes="form-group"), grid])
            await grid.mount_all(cells)
        self._built = True
        if self._focus_when_built is not None:
            self.query_one(f"#{self._focus_when_built}").focus()
            self._focus_when_built = None
        # Values set while the widgets were being built (they were built with the old ones).
        self.set_values(**{key: self._values[key] for key in self._late})
        self._late.clear()
        if self._data_lines is not None:
            self.show_data_status(self._data_lines)
        self._changed()

    def _input_for(self, id: str, placeholder: str = "", tooltip: str | None = None) -> Input:
        return Input(str(self._values.get(id, "")), placeholder=placeholder, compact=True,
                     id=id, tooltip=tooltip)

    def _group(self, group: str) -> Iterator[Widget]:
        """The rows of one Options group: its axes' extra values, then its settings."""
        for axis, s in AXES.items():
            if s.group != group:
                continue
            if axis in _MORE:
                more = {"compressions": "More c", "datasets": "More data"}.get(
                    axis, f"More {axis}")
                yield from self._row(more, self._input_for(
                    _MORE[axis], "e.g. 0.25 1.75" if axis == "compressions"
                    else "space-separated"))
            elif axis not in _OWN_WIDGETS:
                yield from self._row(s.label + "s", self._input_for(axis, "space-separated"))
        if group == GROUPS[0]:
            yield from self._row("Data dir", self._input_for("data-dir", "default (see below)"))
            yield from self._row("Download", Checkbox("", self._values["download"],
                                                      compact=True, id="download"))
            yield Static("", id="data-status")
        for s in ORDERED:
            if s.group == group and not s.axis:
                yield from self._row(s.label, self._widget(s))

    def _widget(self, s: Setting) -> Widget:
        value = self._values[s.name]
        if s.kind == "switch":
            return Checkbox("", value, compact=True, id=s.name, tooltip=s.help)
        if s.kind == "select":
            return Select([(c, c) for c in s.choice_list()], value=value, allow_blank=False,
                          compact=True, id=s.name, tooltip=s.help)
        placeholder = ("default: " + s.default_help if s.optional
                       else "none: e.g. 60,120" if s.kind == "list" else "")
        return self._input_for(s.name, placeholder, s.help)

    def _row(self, label: str, widget: Widget) -> Iterator[Widget]:
        """A field and its label: two cells of a ``form-grid``."""
        yield Label(label, classes="form-label")
        yield widget

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        """The focused field's label stands out with it (a grid has no row to style), and
        the field is scrolled into view above the form's foot."""
        for label in self.query(".form-label.-focused"):
            label.remove_class("-focused")
        widget = event.widget
        while widget.parent is not None and not widget.parent.has_class("form-grid"):
            if widget.parent is self:
                return
            widget = widget.parent  # type: ignore[assignment]
        parent = widget.parent
        if parent is None:
            return
        cells = list(parent.children)
        at = cells.index(widget)
        if at > 0 and isinstance(cells[at - 1], Label):
            cells[at - 1].add_class("-focused")
        # After the label's restyle has been laid out: scrolling before it is undone.
        self.call_after_refresh(self.call_after_refresh, self._show_focused)

    def on_mount(self) -> None:
        self._cursor_on_ticked()
        self._ready = True
        self._changed()
        if self._tall:
            self.call_after_refresh(self._build_options)

    @on(Collapsible.Expanded, "#options")
    def _options_opened(self, event: Collapsible.Expanded) -> None:
        if not self._built and not self._building:
            self.call_after_refresh(self._build_options)

    def on_resize(self) -> None:
        self._fit_options()

    def _fit_options(self) -> None:
        """Room for every option on a tall terminal, one line for them on a small one: set
        at start and whenever the terminal crosses between the two (a toggle by hand stays
        until then)."""
        tall = self.app.size.height >= OPTIONS_OPEN_HEIGHT
        if tall != self._tall:
            self._tall = tall
            self.query_one("#options", Collapsible).collapsed = not tall

    # -- writing values --------------------------------------------------------------------

    def load(self, spec: SweepSpec, data_dir: Path | None = None) -> None:
        """Show ``spec`` (a sweep file, the remembered configuration): every widget is set,
        settings the spec does not give to their defaults; the data dir when given."""
        values = _values_of(spec, data_dir)
        if data_dir is None:
            del values["data-dir"]
        self.set_values(**values)
        self._cursor_on_ticked()

    def _cursor_on_ticked(self) -> None:
        """Each list's cursor on its first ticked entry, so the preview shows a ticked one."""
        for id in ("pruners", "compressions"):
            widget = self.query_one(f"#{id}", SelectionList)
            values = [widget.get_option_at_index(i).value for i in range(widget.option_count)]
            ticked = [i for i, v in enumerate(values) if v in widget.selected]
            widget.highlighted = ticked[0] if ticked else 0

    def set_values(self, **values: Any) -> None:
        """Set form values by widget id (``load``, tests): text for inputs, a choice for
        selects, a bool for switches, the ticked values for the lists."""
        for key, value in values.items():
            if not self._built and key not in _TOP:
                self._values[key] = value
                self._late.add(key)
                continue
            widget = self.query_one(f"#{key}")
            if isinstance(widget, Select | Input | Checkbox):
                widget.value = value
            elif isinstance(widget, SelectionList):
                widget.deselect_all()
                for v in value:
                    widget.select(v)
        if not self._built:
            self._changed()

    def _read(self, id: str) -> Any:
        """A field's value: its widget's, or the one it will be built with."""
        widget = next(iter(self.query(f"#{id}")), None) if self._built or id in _TOP else None
        # None also while the app closes: its fields go first, a validation may still run.
        return self._values[id] if widget is None else widget.value  # type: ignore[attr-defined]

    # -- reading values --------------------------------------------------------------------

    def _text(self, id: str) -> str:
        return str(self._read(id)).strip()

    def selected_pruners(self) -> list[str]:
        chosen = set(self.query_one("#pruners", SelectionList).selected)
        return [p for p in catalog.PRUNERS if p in chosen]

    def is_ticked(self, pruner: str, compression: float) -> bool:
        """Whether the lists tick ``pruner`` and ``compression`` (the preview's choice)."""
        return (pruner in self.query_one("#pruners", SelectionList).selected
                and compression in self.query_one("#compressions", SelectionList).selected)

    def selected_compressions(self) -> list[float]:
        """The ticked compressions and those typed in More c, in increasing order."""
        chosen = set(self.query_one("#compressions", SelectionList).selected)
        return sorted(chosen | set(self._typed("compressions", "extra")))

    def _typed(self, axis: str, id: str) -> list[Any]:
        """The values typed in an axis's text field, converted to the axis field's type."""
        s = AXES[axis]
        out = []
        for tok in re.split(r"[,\s]+", self._text(id)):
            if not tok:
                continue
            try:
                out.append(convert(s, tok))
            except ValueError:
                raise ConfigError(field=axis, value=tok, hint="give numbers separated by "
                                  "spaces" if s.number else "") from None
        return out

    def grid(self) -> dict[str, list[Any]]:
        """The sweep's axes as the form lists them."""
        grid: dict[str, list[Any]] = {}
        for axis, s in AXES.items():
            if axis in ("models", "datasets"):
                first = self._read(_OWN_WIDGETS[axis])
                grid[axis] = list(dict.fromkeys([first, *self._typed(axis, _MORE[axis])]))
            elif axis in ("pruners", "compressions"):
                grid[axis] = (self.selected_pruners() if axis == "pruners"
                              else self.selected_compressions())
                if not grid[axis]:
                    raise ConfigError(f"choose at least one {s.name} (space toggles)",
                                      field=axis, value=[])
            else:
                grid[axis] = self._typed(axis, axis) or list(axis_default(axis) or [])
            for value in grid[axis]:
                if s.choices is not None and value not in s.choices:
                    raise ConfigError(field=axis, value=value, choices=s.choice_list())
        return grid

    def settings(self) -> dict[str, Any]:
        """The shared settings that differ from their defaults (what a sweep file lists)."""
        out: dict[str, Any] = {}
        for s in SETTINGS.values():
            if s.axis:
                continue
            value = self._read(s.name)
            if s.kind not in ("switch", "select"):
                text = str(value).strip()
                value = (None if s.optional and not text else () if s.kind == "list" and
                         not text else coerce(s.name, text))
            if value != getattr(DEFAULTS, s.name):
                out[s.name] = value
        return out

    def overrides(self) -> dict[str, dict[str, Any]]:
        """Each pruner's own settings, typed as ``key=value`` pairs in its row."""
        out: dict[str, dict[str, Any]] = {}
        for key in catalog.PRUNERS:
            text = self._text(f"over-{key}")
            if not text:
                continue
            try:
                pairs = {}
                for token in text.split():
                    name, eq, value = token.partition("=")
                    if not eq:
                        raise ConfigError(f"invalid {token!r}; write key=value, e.g. "
                                          "post_epochs=300", field="overrides", value=token)
                    name = name.replace("-", "_")
                    pairs[name] = coerce(name, value)
            except ConfigError as e:
                raise e.within(f"settings for {key}", key) from None
            out[key] = pairs
        return out

    def data_dir(self) -> Path | None:
        """The data dir typed in Options (None: the engine's default)."""
        text = self._text("data-dir")
        return Path(text).expanduser() if text else None

    def download(self) -> bool:
        """Whether runs may download missing datasets."""
        return bool(self._read("download"))

    def spec(self) -> SweepSpec:
        """The sweep the form declares; raises ``ConfigError`` naming a field."""
        return SweepSpec(settings=self.settings(), overrides=self.overrides(),
                         name=self._text("sweep-name"), **self.grid())

    def state(self) -> FormState:
        """Validate everything; never raises."""
        preview = self._preview()
        try:
            spec = self.spec()
            configs = spec.configs()
        except PrunetuiError as e:
            return FormState([], e.render(app_name), preview, None, e)
        try:  # a valid sweep, which this machine may still refuse (it can be saved)
            runnable = _check_with_engine(configs)
        except PrunetuiError as e:
            return FormState([], e.render(app_name), preview, spec, e)
        skipped = len(configs) - len(runnable)
        if len(runnable) == 1:
            runnable = [runnable[0].with_(sweep="")]
        return FormState(runnable, None, preview, spec, skipped=skipped)

    def _preview(self) -> RunConfig | None:
        """The run under the lists' cursors (with the selected model and dataset, the first
        seed, the pruner's own settings), whether or not it is ticked; None when it is
        invalid itself (the form says why)."""
        pruner = self._preview_pruner
        try:
            seeds = self._typed("seeds", "seeds") if "seeds" in AXES else []
            return RunConfig(**{
                **self.settings(), **self.overrides().get(pruner, {}),
                "model": self._read("model"), "dataset": self._read("dataset"),
                "pruner": pruner, "compression": self._preview_compression,
                **({"seed": seeds[0]} if seeds else {})}).validate()
        except PrunetuiError:
            return None

    def show_data_status(self, lines: list[tuple[str, bool]]) -> None:
        """The data dir check's lines (``tui.data_check``); problems in the error colour."""
        if not self._built:  # shown once Options is built
            self._data_lines = lines
            return
        status = self.query_one("#data-status", Static)
        status.update("\n".join(line for line, _ in lines))
        status.set_class(any(bad for _, bad in lines), "-error")
        self.call_after_refresh(self._show_focused)  # the lines above it may have moved it

    # -- reacting --------------------------------------------------------------------------

    def _changed(self) -> None:
        """Validate and show the result, once for a burst of changes (loading a sweep file
        sets every field: one validation after them, not one per field)."""
        if not self._ready or self._update_pending:
            return
        self._update_pending = True
        self.call_later(self._update)

    def _update(self) -> None:
        self._update_pending = False
        state = self.state()
        validation = self.query_one("#validation", Static)
        validation.update(f"✗ {state.error}" if state.error else "")
        validation.set_class(bool(state.error), "-error")
        # Our own class: Textual's Input sets and clears "-invalid" itself when it loses the
        # focus, which would drop the mark as soon as the user leaves the field.
        for widget in self.query(".-rejected"):
            widget.remove_class("-rejected")
        target = self._widget_of(state)
        if target is not None:
            target.add_class("-rejected")
        n = len(state.configs)
        size = "" if not n else ("1 run" if n == 1 else
                                 f"{n} runs: {len(self.selected_pruners())} × "
                                 f"{len(self.selected_compressions())} (pruners × c)")
        if state.skipped:  # as `prunetui sweep` warns: the pruner's rule cannot hold there
            size += f"; {state.skipped} skipped (the pruner cannot keep its rule there)"
        self.query_one("#sweep-size", Static).update(size)
        self.query_one("#run", Button).disabled = bool(state.error)
        # The message in the footer takes rows from the scrolling form: keep the field being
        # typed in above it.
        self.call_after_refresh(self._show_focused)
        self.post_message(self.Changed(state))

    def _widget_of(self, state: FormState) -> Widget | None:
        """The widget holding the value ``state``'s error is about, if it names one."""
        id = self._id_of(state.problem)
        return next(iter(self.query(f"#{id}")), None) if id else None

    def _id_of(self, e: PrunetuiError | None) -> str | None:
        """The id of the widget holding the value ``e`` is about, if it names one."""
        if e is not None and e.pruner is not None:
            return f"over-{e.pruner}"
        if e is None or e.field is None:
            return None
        name = e.field
        axis = next((a for a, s in AXES.items() if name in (a, s.name)), None)
        if axis in ("models", "datasets", "compressions"):
            # A value typed in More …, or else the select or list above it.
            typed = self._text(_MORE[axis]).replace(",", " ").split()
            if any(tok == str(e.value) or _same_number(tok, e.value) for tok in typed):
                return _MORE[axis]
            return _OWN_WIDGETS[axis]
        if axis is not None:
            return _OWN_WIDGETS.get(axis, axis)
        if name == "data_dir":
            return "data-dir"
        return name if name in SETTINGS else None

    def _show_focused(self) -> None:
        """Scroll the focused field into view, above the foot docked over the form's bottom
        rows (the screen's own focus scrolling stops at the field's grid)."""
        focused = self.screen.focused
        if focused is None or self not in focused.ancestors:
            return
        self.scroll_to_widget(focused, animate=False, immediate=True)
        foot = self.query_one("#form-foot").region
        below = focused.region.bottom - foot.y
        if foot.height and below > 0 and focused.region.y >= self.region.y:
            self.scroll_relative(y=below, animate=False, immediate=True)

    def focus_error(self, state: FormState) -> None:
        """Put the focus on the field ``state``'s error is about (opening Options for one of
        its fields); else leave it where it is."""
        target = self._widget_of(state)
        id = self._id_of(state.problem)
        if target is None and id is not None and not self._built:
            self._focus_when_built = id  # built, then focused, once Options opens
            self.query_one("#options", Collapsible).collapsed = False
            return
        if target is None:
            return
        if self.query_one("#options", Collapsible) in target.ancestors:
            self.query_one("#options", Collapsible).collapsed = False
        target.focus()
        self.call_after_refresh(target.scroll_visible, animate=False)

    @on(Select.Changed)
    @on(Input.Changed)
    @on(Checkbox.Changed)
    @on(SelectionList.SelectedChanged)
    def _on_value(self, event: Message) -> None:
        event.stop()
        self._changed()

    @on(SelectionList.SelectionHighlighted, "#pruners")
    def _pruner_highlighted(self, event: SelectionList.SelectionHighlighted[str]) -> None:
        event.stop()
        if event.selection.value != self._preview_pruner:
            self._preview_pruner = event.selection.value
            self._changed()

    @on(SelectionList.SelectionHighlighted, "#compressions")
    def _compression_highlighted(self, event: SelectionList.SelectionHighlighted[float]) -> None:
        event.stop()
        if event.selection.value != self._preview_compression:
            self._preview_compression = event.selection.value
            self._changed()

    @on(Button.Pressed, "#run")
    def _run(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(self.RunRequested())

    @on(Button.Pressed, "#open-file, #save-file")
    def _file(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(self.FileRequested("open" if event.button.id == "open-file"
                                             else "save"))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.RunRequested())


def _values_of(spec: SweepSpec, data_dir: Path | None) -> dict[str, Any]:
    """Each widget's value (by id) that shows ``spec``: the first model and dataset in the
    selects, the rest in More …; the listed compressions ticked, others in More c; every
    setting (its default where ``spec`` has none); each pruner's ``key=value`` pairs."""
    grid = spec.grid
    values: dict[str, Any] = {
        "model": grid["models"][0] if grid["models"] else DEFAULTS.model,
        "dataset": grid["datasets"][0] if grid["datasets"] else DEFAULTS.dataset,
        "more-models": " ".join(grid["models"][1:]),
        "more-datasets": " ".join(grid["datasets"][1:]),
        "pruners": list(grid["pruners"]),
        "compressions": [c for c in grid["compressions"] if c in COMPRESSIONS],
        "extra": " ".join(text_of(AXES["compressions"], c).removesuffix(".0")
                          for c in grid["compressions"] if c not in COMPRESSIONS),
        "sweep-name": spec.name,
        "data-dir": str(data_dir) if data_dir is not None else "",
    }
    for axis, s in AXES.items():
        if axis not in _OWN_WIDGETS:
            values[axis] = " ".join(text_of(s, v) for v in grid[axis])
    for s in SETTINGS.values():
        if not s.axis:
            value = spec.settings.get(s.name, getattr(DEFAULTS, s.name))
            values[s.name] = value if s.kind in ("switch", "select") else text_of(s, value)
    for key in catalog.PRUNERS:
        own = spec.overrides.get(key, {})
        values[f"over-{key}"] = " ".join(f"{k}={text_of(SETTINGS[k], own[k])}"
                                         for k in SETTINGS if k in own)
    return values


def _same_number(token: str, value: object) -> bool:
    """Whether ``token`` is ``value`` typed (nan included: the form marks where it was)."""
    try:
        number = float(token)
    except ValueError:
        return False
    return number == value or (number != number and value != value)


def _check_with_engine(configs: list[RunConfig]) -> list[RunConfig]:
    """The cells to run: refuse what the run would refuse on this machine (a cuda device
    without a GPU, a compression that keeps no weight) and leave out the cells a layerwise
    pruner cannot prune at their compression (as `prunetui sweep` skips them; all of them
    such is the error of the first), but only once torch is loaded (the previews load it at
    start): importing it here would freeze the form for seconds. Until then the run itself
    says so."""
    if "torch" not in sys.modules:
        return configs
    from prunetui.core.run.build import runnable_cells
    from prunetui.core.train import resolve_device

    for device in {c.device for c in configs}:
        resolve_device(device)
    return runnable_cells(configs)[0]

"""The Configure panel: model, dataset, pruners × compressions, and the other run options.

Several pruners or compressions make a sweep (one run per cell). The form turns its values into
``RunConfig``s through ``SweepSpec`` so every value is checked by ``RunConfig.validate`` and the
message the user sees is the engine's own one-line message.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Collapsible, Input, Label, Select, SelectionList, Static
from textual.widgets.selection_list import Selection

from prunetui.core import catalog
from prunetui.core.config import MAX_SEED, RunConfig
from prunetui.core.errors import ConfigError
from prunetui.core.sweep import SweepSpec
from prunetui.tui.widgets.fmt import for_app

DEFAULTS = RunConfig()
COMPRESSIONS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
OPTIONS_OPEN_HEIGHT = 36  # terminal rows from which Options shows open


def compression_label(c: float) -> str:
    """``1 · 10%``: the compression and the share of weights it keeps."""
    kept = 100 * 10.0 ** (-c)
    share = f"{kept:.0f}%" if kept >= 1 else f"{kept:.2g}%"
    return f"{c:g}".ljust(4) + f"{share:>5}"


# Which input shows a validation message (matched on the message's text).
_FIELD_OF_MESSAGE = (
    # (in the app's wording: ``for_app``)
    ("invalid Epochs", "epochs"), ("invalid lr ", "lr"), ("invalid Batch size", "batch"),
    ("invalid seed", "seed"), ("device '", "device"), ("invalid Prune iters", "iters"),
    ("extra compression", "extra"), ("keeps no weight", "extra"),
    # The listed compressions are all valid: an invalid one was typed in "More c".
    ("invalid compression", "extra"),
)


@dataclass(frozen=True)
class FormState:
    """The form's configs (empty when invalid), its error, and the config to preview."""

    configs: list[RunConfig]
    error: str | None
    preview: RunConfig | None


class ConfigForm(Vertical):
    """Model/dataset selects, pruner/compression multi-selects, a collapsible options panel."""

    class Changed(Message):
        """Any value changed; ``state`` holds the validated configs or the error."""

        def __init__(self, state: FormState) -> None:
            super().__init__()
            self.state = state

    class RunRequested(Message):
        """The Run button was pressed."""

    def __init__(self, *, extra: dict[str, Any] | None = None, id: str | None = None) -> None:
        """``extra``: RunConfig fields the form has no control for, applied to every run."""
        super().__init__(id=id)
        self.extra = dict(extra or {})
        self._preview_pruner = DEFAULTS.pruner
        self._preview_compression = DEFAULTS.compression
        self._ready = False
        self._tall: bool | None = None  # whether the terminal had room for the options

    def compose(self) -> ComposeResult:
        with Horizontal(classes="form-row"):
            yield Label("Model", classes="form-label")
            yield Select([(m, m) for m in catalog.MODELS], value=DEFAULTS.model,
                         allow_blank=False, compact=True, id="model")
        with Horizontal(classes="form-row"):
            yield Label("Dataset", classes="form-label")
            yield Select([(d, d) for d in catalog.DATASETS], value=DEFAULTS.dataset,
                         allow_blank=False, compact=True, id="dataset")
        with Horizontal(id="lists"):
            pruners = SelectionList[str](
                *[Selection(p.display, key, key == DEFAULTS.pruner)
                  for key, p in catalog.PRUNERS.items()], id="pruners")
            pruners.border_title = "Pruners"
            yield pruners
            comps = SelectionList[float](
                *[Selection(compression_label(c), c, c == DEFAULTS.compression)
                  for c in COMPRESSIONS], id="compressions")
            comps.border_title = "Compression"
            yield comps
        with Collapsible(title="Options", collapsed=True, id="options"):
            yield from self._row("Epochs", Input(str(DEFAULTS.post_epochs), id="epochs",
                                                 compact=True))
            yield from self._row("Optimizer", Select([(o, o) for o in catalog.OPTIMIZERS],
                                                     value=DEFAULTS.optimizer, compact=True,
                                                     allow_blank=False, id="optimizer"))
            yield from self._row("LR", Input(f"{DEFAULTS.lr:g}", id="lr", compact=True))
            yield from self._row("Batch size", Input(str(DEFAULTS.batch_size), id="batch",
                                                     compact=True))
            yield from self._row("Seed", Input(str(DEFAULTS.seed), id="seed", compact=True))
            yield from self._row("Device", Input(DEFAULTS.device, id="device", compact=True))
            yield from self._row("Prune iters", Input("", placeholder="default", id="iters",
                                                      compact=True))
            yield from self._row("Scope", Select([(s, s) for s in catalog.SCOPES],
                                                 value=DEFAULTS.scope, compact=True,
                                                 allow_blank=False, id="scope"))
            yield from self._row("Schedule", Select([(s, s) for s in catalog.SCHEDULES],
                                                    value=DEFAULTS.schedule, compact=True,
                                                    allow_blank=False, id="schedule"))
            yield from self._row("More c", Input("", placeholder="e.g. 0.25 1.75", id="extra",
                                                 compact=True))
        # Docked at the bottom: with Options open on a short terminal the form scrolls, and
        # why the Run button is disabled must stay in view with the button.
        with Vertical(id="form-foot"):
            yield Static("", id="validation")
            with Horizontal(id="run-row"):
                yield Button("Run ▶", id="run", variant="success", compact=True)
                yield Static("", id="sweep-size")

    def _row(self, label: str, widget: Any) -> ComposeResult:
        with Horizontal(classes="form-row"):
            yield Label(label, classes="form-label")
            yield widget

    def on_mount(self) -> None:
        # Start each list's cursor on its default, so the preview shows what is selected.
        self.query_one("#pruners", SelectionList).highlighted = list(catalog.PRUNERS).index(
            DEFAULTS.pruner)
        self.query_one("#compressions", SelectionList).highlighted = COMPRESSIONS.index(
            DEFAULTS.compression)
        self._fit_options()
        self._ready = True
        self._changed()

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

    # -- reading values --------------------------------------------------------------------

    def _value(self, id: str) -> Any:
        return self.query_one(f"#{id}", Select).value

    def _text(self, id: str) -> str:
        return self.query_one(f"#{id}", Input).value.strip()

    def selected_pruners(self) -> list[str]:
        chosen = set(self.query_one("#pruners", SelectionList).selected)
        return [p for p in catalog.PRUNERS if p in chosen]

    def is_ticked(self, pruner: str, compression: float) -> bool:
        """Whether the lists tick ``pruner`` and ``compression`` (the preview's choice)."""
        return (pruner in self.query_one("#pruners", SelectionList).selected
                and compression in self.query_one("#compressions", SelectionList).selected)

    def selected_compressions(self) -> list[float]:
        chosen = set(self.query_one("#compressions", SelectionList).selected)
        return sorted(chosen | set(self._extra_compressions()))

    def _extra_compressions(self) -> list[float]:
        out = []
        for tok in re.split(r"[,\s]+", self._text("extra")):
            if not tok:
                continue
            try:
                out.append(float(tok))
            except ValueError:
                raise ConfigError(f"invalid extra compression {tok!r}; give numbers >= 0, "
                                  "separated by spaces") from None
        return out

    def settings(self) -> dict[str, Any]:
        """The shared settings of every cell. Text that isn't a number is passed on as it is,
        so ``RunConfig.validate`` words the error."""
        lr_text = self._text("lr")
        try:
            lr = float(lr_text)
        except ValueError:
            raise ConfigError(f"invalid lr {lr_text!r}; it must be a positive number") from None
        iters = self._text("iters")
        return {
            **self.extra,
            "post_epochs": _int(self._text("epochs")),
            "optimizer": self._value("optimizer"),
            "lr": lr,
            "batch_size": _int(self._text("batch")),
            "seed": _seed(self._text("seed")),
            "device": self._text("device") or "auto",
            "prune_iterations": _int(iters) if iters else None,
            "scope": self._value("scope"),
            "schedule": self._value("schedule"),
        }

    def state(self) -> FormState:
        """Validate everything; never raises."""
        model, dataset = self._value("model"), self._value("dataset")
        preview: RunConfig | None = None
        try:
            settings = self.settings()
            seed = settings.pop("seed")
            preview = RunConfig(model=model, dataset=dataset, pruner=self._preview_pruner,
                                compression=self._preview_compression, seed=seed,
                                **settings).validate()
            pruners = self.selected_pruners()
            comps = self.selected_compressions()
            if not pruners:
                raise ConfigError("choose at least one pruner (space toggles)")
            if not comps:
                raise ConfigError("choose at least one compression (space toggles)")
            for c in comps:
                if c < 0:
                    raise ConfigError(f"invalid extra compression {c:g}; it must be >= 0")
            configs = SweepSpec([model], [dataset], pruners, comps, [seed],
                                settings=settings).configs()
            _check_with_engine(configs)
            if len(configs) == 1:
                configs = [configs[0].with_(sweep="")]
        except ConfigError as e:
            return FormState([], for_app(str(e)), preview)
        except (TypeError, ValueError) as e:
            return FormState([], f"invalid value: {e}", preview)
        return FormState(configs, None, preview)

    def set_values(self, **values: Any) -> None:
        """Set form values by input id (for tests and the command palette)."""
        for key, value in values.items():
            widget = self.query_one(f"#{key}")
            if isinstance(widget, Select | Input):
                widget.value = value
            elif isinstance(widget, SelectionList):
                widget.deselect_all()
                for v in value:
                    widget.select(v)

    # -- reacting --------------------------------------------------------------------------

    def _changed(self) -> None:
        if not self._ready:
            return
        state = self.state()
        validation = self.query_one("#validation", Static)
        validation.update(f"✗ {state.error}" if state.error else "")
        validation.set_class(bool(state.error), "-error")
        # Our own class: Textual's Input sets and clears "-invalid" itself when it loses the
        # focus, which would drop the mark as soon as the user leaves the field.
        for _, field in _FIELD_OF_MESSAGE:
            self.query_one(f"#{field}", Input).remove_class("-rejected")
        if state.error:
            for needle, field in _FIELD_OF_MESSAGE:
                if needle in state.error:
                    self.query_one(f"#{field}", Input).add_class("-rejected")
                    break
        n = len(state.configs)
        self.query_one("#sweep-size", Static).update(
            "" if not n else ("1 run" if n == 1 else
                              f"{n} runs: {len(self.selected_pruners())} × "
                              f"{len(self.selected_compressions())} (pruners × c)"))
        self.query_one("#run", Button).disabled = bool(state.error)
        # The message in the footer takes rows from the scrolling form: keep the field being
        # typed in above it.
        self.call_after_refresh(self._show_focused)
        self.post_message(self.Changed(state))

    def _show_focused(self) -> None:
        focused = self.screen.focused
        if focused is not None and self in focused.ancestors:
            focused.scroll_visible(animate=False)

    def focus_error(self, error: str) -> None:
        """Put the focus on what ``error`` (from ``state``) is about, when it names a field
        (opening Options for one of its fields); else leave it where it is."""
        if "at least one pruner" in error or "at least one compression" in error:
            self.query_one("#pruners" if "pruner" in error else "#compressions").focus()
            return
        for needle, field in _FIELD_OF_MESSAGE:
            if needle in error:
                self.query_one("#options", Collapsible).collapsed = False
                self.query_one(f"#{field}", Input).focus()
                return

    @on(Select.Changed)
    @on(Input.Changed)
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

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.RunRequested())


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"invalid seed {text!r}; it must be an integer from 0 to "
                          f"{MAX_SEED}") from None


def _int(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


def _check_with_engine(configs: list[RunConfig]) -> None:
    """Refuse what the run would refuse on this machine (a cuda device without a GPU, a
    compression that keeps no weight), but only once torch is loaded (the previews load it
    at start): importing it here would freeze the form for seconds. Until then the run
    itself says so."""
    if "torch" not in sys.modules:
        return
    from prunetui.core.experiment import check_keeps_weights
    from prunetui.core.train import resolve_device

    for device in {c.device for c in configs}:
        resolve_device(device)
    check_keeps_weights(configs)

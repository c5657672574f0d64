"""The help screen (``?``): what the app does and its keys."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from prunetui.core import catalog
from prunetui.tui.widgets.key_bar import KeyBar

HELP = """\
# prunetui

Prune a fresh network at initialization ({pruners}) keeping 10^-c of its weights, train it,
and compare accuracy, FLOPs and per-layer density.

## Tabs
- **Configure**: model, dataset, pruners and compressions (several of either make a
  sweep: one run per cell, run in turn), *Options* for every other setting, grouped as
  `prunetui run --help` lists them: more models, datasets and compressions, seeds (a
  list), the data dir (with what it holds of the datasets), each pruner's own settings
  (`key=value`, e.g. `post_epochs=300`, as `--set mag.post_epochs=300`), the sweep's name.
  The preview shows what the pruner under the cursor keeps of each layer at init.
  `ctrl+o` / `ctrl+s` open and save the form as a sweep file: the TOML that
  `prunetui sweep FILE` runs (`prunetui FILE.toml` opens one here). Starting a sweep
  remembers its configuration for the next start in the same results dir.
- **Run**: progress of the sweep, the current run's epochs, the sweep grid (top-1),
  charts, and per-layer density / weight histograms of finished runs. *Charts*: top-1
  against compression (the mean over seeds; `f`: the FLOP ratio instead) beside each run's
  top-1 per epoch. *Layers*: one run's density and weights; `p`: every pruner of the sweep
  side by side, a row per layer, at the picked run's compression.
- **Results**: every stored run. Filter with words or `key=value`
  (`pruner=snip c=1 status=finished`), sort, open, compare, export a markdown report;
  `g` charts top-1 against compression of the runs the filter shows, one model/dataset
  at a time, pooled as the report pools them.

Each pruner has one colour in every chart (as in the exported figures), named in the
legend under the chart.

Pruners: {pruner_lines}

`‡` after a top-1 marks a run whose network collapsed (no path is left from input to
output; an empty layer that a residual shortcut bypasses is only warned about).

## Keys
| key | action |
|---|---|
| `r` | run the configured sweep; in an unfinished run's detail, resume that run |
| `c` | cancel the running run (it is stored; run it again to resume) |
| `1` `2` `3` | Configure / Run / Results tab |
| `tab` / `shift+tab` | move between controls (Options scrolls with the focus) |
| `space` | toggle a pruner / compression / switch; mark a run in Results |
| `enter` | open a run in Results; in a text field, start the run |
| `ctrl+o` / `ctrl+s` | open / save a sweep file (TOML) |
| `left` `right` | switch the tabs of an opened run (Curve, Layers, Config) |
| `v` | Run tab: next view (Live, Charts, Layers); Results: compare the marked runs |
| `f` | Run tab, Charts: top-1 or FLOP ratio against compression |
| `p` | Run tab, Layers: the picked run, or every pruner at its compression |
| `g` | Results: the runs' table, or top-1 against compression (`escape` back) |
| `←` `→` | Results chart: the other models/datasets |
| `/` | filter the runs |
| `ctrl+e` | export the marked (or shown) runs, after confirming the folder |
| `del` | delete the marked runs (or the one under the cursor), after asking |
| `t` | light / dark theme |
| `ctrl+p` | command palette |
| `?` | this help |
| `q` | quit (asks first while a run is active) |
| `escape` | back / close; leave a text field (its keys are text, not commands) |
"""


def help_text() -> str:
    """The help, with the registered pruners (the catalog's registry)."""
    pruners = catalog.PRUNERS.values()
    return HELP.format(
        pruners=", ".join(p.display for p in pruners),
        pruner_lines="; ".join(f"**{p.display}** (`{p.name}`): {p.description}"
                               + (", needs data" if p.needs_data else "") for p in pruners))


class HelpScreen(ModalScreen[None]):
    """A modal with the help text; escape, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("q", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False)]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Markdown(help_text())
        yield KeyBar()  # this screen's keys, over the main screen's

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)

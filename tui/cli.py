"""The ``prunetui`` command: Typer subcommands over the engine; no subcommand opens the app.

Torch and Textual are imported inside the commands that need them, so ``--help``, ``runs``
and input validation stay fast. Every deliberate error (``PrunetuiError``) and every usage
error is printed as one line on stderr with its exit code (2 for bad input); nothing is
written before input is validated.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from prunetui.core import catalog
from prunetui.core.config import LEGACY_ABLATIONS, SETTINGS, RunConfig
from prunetui.core.errors import ConfigError, Namer, PrunetuiError, StoreError
from prunetui.core.run.result import Epoch, Structure
from prunetui.core.status import RunStatus
from prunetui.core.store import RunRow, RunState, Store, wrote_row
from prunetui.tui.options import (
    axis_parameters,
    axis_values,
    flag_name,
    key_name,
    setting_parameters,
    settings_from_options,
    with_parameters,
)

# Piped output (a file, less, grep) gets room for whole tables instead of rich's 80 columns.
out = Console() if sys.stdout.isatty() else Console(width=160)
err = Console(stderr=True)
D = RunConfig()


class _OneLineErrors(TyperGroup):
    """Turns usage errors and PrunetuiErrors into one line on stderr and an exit code.

    An error about a setting names it as the running command takes it: ``naming`` is the
    option's flag (``--post-epochs``) unless the command says otherwise (``sweep``: the key
    of ``--set`` and of sweep files)."""

    naming: Namer = staticmethod(flag_name)

    def main(self, args: Any = None, prog_name: Any = None,  # type: ignore[override]
             complete_var: Any = None, standalone_mode: bool = True, **extra: Any) -> Any:
        _OneLineErrors.naming = staticmethod(flag_name)
        args = self._open_file_args(list(sys.argv[1:] if args is None else args))
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as e:  # usage errors: bad option, wrong type, no command
            message = e.format_message()
            if message.startswith("No such command"):
                message = f"{message} Commands: {', '.join(self.commands)}."
            for key, new in LEGACY_ABLATIONS.items():  # an old script: what the switch is now
                if message == f"No such option: {flag_name(key)}":
                    message += (f" (an old switch, no longer run; stored runs that used it stay "
                                f"readable): use --ablation {new}")
            _fail(message + _given(e, args, message), e.exit_code)
        except PrunetuiError as e:
            _fail(e.render(_OneLineErrors.naming), e.exit_code)
        except (typer.Abort, KeyboardInterrupt):
            rv = 130
        if rv == 130:  # typer turns Ctrl-C into exit code 130
            _fail("interrupted: any run it had started is stored as interrupted, and the same "
                  "command resumes it", 130)
        sys.exit(rv if isinstance(rv, int) else 0)


    def _open_file_args(self, args: list[str]) -> list[str]:
        """``prunetui FILE.toml`` is ``prunetui --open FILE.toml``: the app, showing a sweep
        file (a first word that is not a command and names a TOML file)."""
        i = 0
        while i < len(args):
            tok = args[i]
            if tok in _ROOT_VALUE_OPTIONS:
                i += 2
                continue
            if tok.startswith("-"):
                i += 1
                continue
            if tok not in self.commands and tok.endswith(".toml"):
                return [*args[:i], "--open", tok, *args[i + 1:]]
            break
        return args


# The app's options that take a value (the word after them is not a command).
_ROOT_VALUE_OPTIONS = ("--results-dir", "--data-dir", "--open")


def _given(e: Exception, args: Any, message: str) -> str:
    """' (got VALUE)' for a badly typed option whose message does not show the value."""
    param = getattr(e, "param", None)
    argv = list(sys.argv[1:] if args is None else args)
    for i, tok in enumerate(argv):
        for opt in getattr(param, "opts", []):
            value = (argv[i + 1] if tok == opt and i + 1 < len(argv)
                     else tok.split("=", 1)[1] if tok.startswith(opt + "=") else None)
            if value is not None:
                return "" if repr(value) in message else f" (got {value!r})"
    return ""


class _Interrupted(PrunetuiError):
    """Ctrl-C or SIGTERM, with what the store kept."""

    exit_code = 130


def _fail(message: str, code: int) -> None:
    # An interruption is the user's own doing, not an error: its line says what was kept.
    sys.stderr.write(message + "\n" if code == 130 else f"error: {message}\n")
    sys.exit(code)


app = typer.Typer(
    cls=_OneLineErrors, no_args_is_help=False, invoke_without_command=True,
    add_completion=False, rich_markup_mode=None,
    help="Pruning-at-initialization experiments: run, sweep, inspect, browse and export.",
)

# -- shared options ----------------------------------------------------------------------------

ResultsDir = Annotated[Path | None, typer.Option(
    "--results-dir", envvar="PRUNETUI_RESULTS",
    help="Result store directory [default: ./results].")]
DataDir = Annotated[Path | None, typer.Option(
    "--data-dir", envvar="PRUNETUI_DATA",
    help="Dataset directory in torchvision's layout [default: ~/.cache/prunetui/data].")]
Download = Annotated[bool, typer.Option(
    "--download/--no-download", help="Download missing datasets when a network exists.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead.")]

Force = Annotated[bool, typer.Option("--force", help="Rerun even if a finished run exists.")]


def _count(n: int, noun: str) -> str:
    """'1 run', '2 runs'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _store(results_dir: Path | None, create: bool = True) -> Store:
    return Store(results_dir, create=create)


def _emit_json(obj: Any) -> None:
    # Plain print, not rich: --json output must be exactly one parseable object.
    sys.stdout.write(json.dumps(obj, indent=None, default=str) + "\n")


def _warn(message: str) -> None:
    """One warning line on stderr, never wrapped, the message taken as plain text."""
    from rich.markup import escape

    err.print(f"[bold yellow]warning:[/] {escape(message)}", soft_wrap=True)


def _warn_unreadable(store: Store) -> None:
    """One line naming the runs the store's last query skipped: their JSON is corrupt."""
    ids = sorted(store.unreadable)
    if ids:
        shown = ", ".join(ids[:10]) + (", …" if len(ids) > 10 else "")
        _warn(f"skipped {_count(len(ids), 'unreadable run')} (corrupt JSON in the store): "
              f"{shown}; `prunetui show ID` says what is wrong, `prunetui rm ID` removes it")


def _show_warnings(structure: Structure) -> None:
    from prunetui.core.report import collapse_message

    msg = collapse_message(structure.collapse.to_dict())
    if msg:
        err.print(f"[bold yellow]warning:[/] {msg}")


# -- commands ----------------------------------------------------------------------------------


@app.callback()
def _root(ctx: typer.Context, results_dir: ResultsDir = None, data_dir: DataDir = None,
          open_file: Annotated[Path | None, typer.Option(
              "--open", help="A sweep file (TOML) to show in the app's Configure tab; "
                             "`prunetui FILE.toml` does the same.")] = None) -> None:
    """With no subcommand, open the Textual app (on --results-dir and --data-dir; `prunetui
    FILE.toml` opens a sweep file in it)."""
    # Given before a subcommand, they apply to it: its own options read these variables.
    if results_dir is not None:
        os.environ["PRUNETUI_RESULTS"] = str(results_dir)
    if data_dir is not None:
        os.environ["PRUNETUI_DATA"] = str(data_dir)
    if ctx.invoked_subcommand is None:
        _store(results_dir)  # an unusable results dir is one line here, not a screen later
        if open_file is not None:  # so is a sweep file that cannot be shown
            from prunetui.core.sweep import load_toml

            _OneLineErrors.naming = staticmethod(key_name)
            load_toml(open_file).configs()
        from prunetui.tui.app import PruneApp

        PruneApp(results_dir=results_dir, data_dir=data_dir, sweep_file=open_file).run()


@app.command("models")
def models_cmd(as_json: AsJson = False) -> None:
    """List the models with their parameter counts (on each one's default dataset) and the
    weight init each is drawn with."""
    from prunetui.core.models import parameter_count

    rows = []
    for m in catalog.MODELS.values():
        data = m.default_dataset
        info = catalog.DATASETS[data]
        total, prunable = parameter_count(m.name, info.shape, info.num_classes)
        rows.append({"model": m.name, "family": m.family, "dataset": data, "params": total,
                     "prunable": prunable, "init": m.init_text(), "description": m.description})
    if as_json:
        _emit_json(rows)
        return
    from rich.table import Table

    used = {key for m in catalog.MODELS.values() for key in (m.init, *dict(m.init_at).values())}
    t = Table("model", "params", "prunable", "on", "init", "description",
              caption="\n".join(f"{k}: {v}" for k, v in catalog.INITS.items() if k in used),
              caption_justify="left")
    for r in rows:
        t.add_row(r["model"], f"{r['params']:,}", f"{r['prunable']:,}", r["dataset"], r["init"],
                  r["description"])
    out.print(t)


@app.command("pruners")
def pruners_cmd(as_json: AsJson = False) -> None:
    """List the pruners: what each scores, whether it needs data, its default iterations."""
    kinds = {"scorer": "scores weights", "layerwise": "layer densities, random positions",
             "training": "prunes while training"}
    rows = [{"pruner": p.name, "name": p.display, "kind": p.kind, "needs_data": p.needs_data,
             "iterations": p.default_iterations, "description": p.description}
            for p in catalog.PRUNERS.values()]
    if as_json:
        _emit_json(rows)
        return
    from rich.table import Table

    t = Table("pruner", "name", "kind", "data", "iters", "description",
              caption="A sweep without --pruners runs "
                      f"{', '.join(catalog.DEFAULT_PRUNERS)}. Random pruning at a method's "
                      "per-layer densities is that method with --ablation shuffle.",
              caption_justify="left")
    for r in rows:
        t.add_row(r["pruner"], r["name"], kinds.get(r["kind"], r["kind"]),
                  "yes" if r["needs_data"] else "no", str(r["iterations"]), r["description"])
    out.print(t)


@app.command("datasets")
def datasets_cmd(data_dir: DataDir = None) -> None:
    """List the datasets, their shapes, and whether their files are in the data dir."""
    from rich.table import Table

    from prunetui.core.data import current_fingerprint, default_data_dir, find_files
    from prunetui.core.errors import DataError

    root = data_dir or default_data_dir()
    t = Table("dataset", "shape", "classes", "train", "test", "files", "fingerprint",
              title=f"data dir: {root}", title_justify="left",
              caption="train/test: the images found (the standard sizes where the files are "
                      "missing); the fingerprint is what `show` prints for a run's data.",
              caption_justify="left")
    for d in catalog.DATASETS.values():
        sizes, where, digest = (d.train_size, d.test_size), find_files(d.name, root), "—"
        try:
            fp = current_fingerprint(d.name, root)  # reads the files: counts are the truth
        except DataError as e:
            where = f"[red]{e}[/]"
        else:
            if fp is not None:
                sizes, digest = (fp["train"], fp["test"]), fp["digest"]
        t.add_row(d.name, "×".join(map(str, d.shape)), str(d.num_classes), f"{sizes[0]:,}",
                  f"{sizes[1]:,}", where, digest)
    out.print(t)


def _config(**kw: Any) -> RunConfig:
    return RunConfig(**settings_from_options(kw)).validate()


@app.command("run")
@with_parameters(setting_parameters(SETTINGS))
def run_cmd(
    data_dir: DataDir = None, download: Download = True, results_dir: ResultsDir = None,
    force: Force = False, as_json: AsJson = False, **settings: Any,
) -> None:
    """Prune a model at initialization, train it, measure it and store the result."""
    config = _config(**settings)
    store = _store(results_dir)
    from prunetui.core.events import Checkpointed, Event, RunFinished, RunStarted
    from prunetui.core.run import engine
    from prunetui.tui.console import ConsoleSink, layer_table, rounds_table, summary_table

    _catch_sigterm()
    stored = store.get(config.run_id)
    # Where the run would resume from if it stopped now: the checkpoint it resumed from or
    # the last one it wrote ("" for none); and whether the engine reported a stored result
    # (stored before, or by another process while this one waited for it).
    checkpoint = ""
    cached = False

    def emit(event: Event) -> None:
        nonlocal checkpoint, cached
        if isinstance(event, Checkpointed):
            checkpoint = event.point
        elif isinstance(event, RunFinished):
            cached = event.cached
        elif isinstance(event, RunStarted):
            checkpoint = event.resumed_after
            # Said when the engine starts the run, not before: it may still refuse it (a
            # checkpoint from other data), and only then is it known whether one exists.
            if stored is not None and not stored.status.kept:
                err.print(f"run {config.run_id} stopped ({stored.status}); "
                          + (f"resuming after {event.resumed_after}" if event.resumed_after
                             else "no checkpoint to resume from, starting it again"))
        sink(event)

    try:
        with ConsoleSink(err) as sink:
            result = engine.run(config, store=store, data_dir=data_dir, download=download,
                                    emit=emit, force=force)
    except (PrunetuiError, KeyboardInterrupt) as e:
        row = store.get(config.run_id)
        # This attempt wrote the row (it started), or the engine refused it before writing.
        wrote = wrote_row(stored, row)
        interrupted = isinstance(e, KeyboardInterrupt)
        if as_json and row is not None:
            # A script reading stdout still gets the run's status, why, and its epochs (the
            # error line goes to stderr as always); for an attempt refused on a stored run,
            # the refusal, not the earlier attempt's status. Other bad input: stderr only.
            if wrote or row.status == RunStatus.DIVERGED:  # a divergence is kept, not rerun
                _emit_json({**{k: v for k, v in row.__dict__.items() if k != "result"},
                            "epochs": [e.to_dict() for e in store.epochs(row.run_id)]})
            else:
                _emit_json({"run_id": config.run_id,
                            "status": "interrupted" if interrupted else "error",
                            "error": str(e) or "interrupted"})
        if interrupted:
            raise _Interrupted(_interrupted_line(config.run_id, row if wrote else None,
                                                 checkpoint)) from None
        raise
    if cached:  # said once the engine has accepted it (its data may not match)
        err.print(f"run {config.run_id} is already stored; showing it (--force reruns it)")
    if as_json:
        _emit_json(result.to_dict())
        return
    out.print(summary_table(result))
    if rounds := rounds_table(result):
        out.print(rounds)
    out.print(layer_table(result.layers))
    _show_warnings(result.structure)


def _interrupted_line(run_id: str, row: RunRow | None, checkpoint: str) -> str:
    """What Ctrl-C left of a run: ``row`` as this attempt stored it (None: it wrote nothing),
    ``checkpoint`` where it resumes ("" for none)."""
    if row is None:
        return f"interrupted before run {run_id} started; nothing was stored"
    if row.status == RunStatus.FINISHED:
        return f"interrupted as run {run_id} finished; its result is stored"
    if checkpoint:
        return (f"interrupted: run {run_id} is stored as interrupted; the same command "
                f"resumes it after {checkpoint}")
    return (f"interrupted: run {run_id} is stored as interrupted, before its first "
            "checkpoint; the same command starts it again")


# What `inspect` takes: the settings of pruning (model and dataset have their own parameters).
_INSPECTED = [n for n, s in SETTINGS.items() if s.inspect and n not in ("model", "dataset")]


@app.command("inspect")
@with_parameters(setting_parameters(_INSPECTED, device="cpu"))
def inspect_cmd(
    model: Annotated[str, typer.Argument(help="Model name; see `prunetui models`.")],
    dataset: Annotated[str | None, typer.Option(
        help="Dataset (sets input shape and classes) [default: the model's, as `prunetui "
             "models` lists it].", show_default=False)] = None,
    data_dir: DataDir = None, download: Download = True, as_json: AsJson = False,
    compressions: Annotated[str | None, typer.Option(
        help="Prune at each of these compressions instead (start:stop:step, e.g. 0:4:0.25, "
             "or a comma list): per compression the kept fraction, FLOP ratio, emptied "
             "layers and whether a path remains, and the critical compression (the largest "
             "before collapse).", show_default=False)] = None,
    pruners: Annotated[str | None, typer.Option(
        help="With --compressions: these pruners (a comma list, or all: the SynFlow paper's "
             "five) instead of --pruner, and a table of their critical compressions.",
        show_default=False)] = None,
    **settings: Any,
) -> None:
    """Build a model and prune it at initialization (no training): per-layer table, FLOPs,
    collapse warnings. Data is loaded only for snip and grasp."""
    if dataset is None:
        info = catalog.MODELS.get(model)
        dataset = info.default_dataset if info is not None else D.dataset
    _OneLineErrors.naming = staticmethod(lambda f: f if f == "model" else flag_name(f))
    config = _config(model=model, dataset=dataset, **settings)
    if pruners is not None and compressions is None:
        raise ConfigError("--pruners goes with --compressions (one compression: --pruner)")
    if compressions is not None:
        _collapse_analysis(config, compressions, pruners, data_dir, download, as_json)
        return
    from prunetui.core.run.build import inspect
    from prunetui.tui.console import ConsoleSink, layer_table, summary_table

    with ConsoleSink(err) as sink:
        seen = inspect(config, data_dir=data_dir, download=download, emit=sink)
    if as_json:
        _emit_json(seen.to_dict())
        return
    out.print(summary_table(seen))
    out.print(layer_table(seen.structure.layers))
    _show_warnings(seen.structure)


def _collapse_analysis(config: RunConfig, compressions: str, pruners: str | None,
                       data_dir: Path | None, download: bool, as_json: bool) -> None:
    """``inspect --compressions``: each pruner's network pruned at each compression, and
    where it collapses (the SynFlow paper's Figure 1, for the pruners given)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from prunetui.core.analysis import CollapseCurve, collapse_curve, parse_compressions

    cs = parse_compressions(compressions)
    names = (list(catalog.DEFAULT_PRUNERS) if pruners == "all"
             else _csv(pruners, str, "pruners") if pruners else [config.pruner])
    configs = [config.with_(pruner=p, prune_iterations=None if pruners else
                            config.prune_iterations).validate() for p in names]
    curves: list[CollapseCurve] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), console=err, transient=True) as bar:
        for cfg in configs:
            task = bar.add_task(f"{catalog.pruner_display(cfg.pruner)}", total=len(cs),
                                info="")
            curves.append(collapse_curve(
                cfg, cs, data_dir=data_dir, download=download,
                on_progress=lambda p, t=task: bar.update(
                    t, completed=p.done, info=f"c={p.compression:g} step {p.step}/{p.steps}")))
    if as_json:
        _emit_json([c.to_dict() for c in curves])
        return
    for curve in curves:
        t = Table("c", "kept", "FLOP ratio", "path", "emptied layers",
                  title=f"{catalog.pruner_display(curve.pruner)} on {curve.model} / "
                        f"{curve.dataset}: critical compression {curve.critical.text()}",
                  title_justify="left")
        for p in curve.points:
            t.add_row(f"{p.compression:g}", f"{p.density:.3g}", f"{p.flop_ratio:.4f}",
                      "no (collapse)" if p.disconnected else "yes",
                      ", ".join(p.empty_layers) or "—")
        out.print(t)
        if len(curves) == 1:  # the kept fraction of every layer at every compression
            d = Table("layer", *(f"{p.compression:g}" for p in curve.points),
                      title="kept fraction per layer", title_justify="left")
            for i, name in enumerate(curve.layers):
                d.add_row(name, *(f"{p.layer_density[i]:.2g}" for p in curve.points))
            out.print(d)
    if len(curves) > 1:
        t = Table("pruner", "critical compression", "first collapse",
                  "critical by an emptied layer",
                  title=f"Critical compressions of {config.model} on {config.dataset} at init "
                        "(the largest compression tested before the network collapses)",
                  title_justify="left")
        for curve in curves:
            first = curve.critical.first
            t.add_row(catalog.pruner_display(curve.pruner), curve.critical.text(),
                      "—" if first is None else f"{first:g}",
                      curve.critical_by_empty_layer.text())
        out.print(t)


def _csv(value: str | None, kind: type, what: str) -> list[Any]:
    if value is None:
        return []
    items = [v.strip() for v in value.split(",") if v.strip()]
    try:
        return [kind(v) for v in items]
    except ValueError:
        raise ConfigError(f"invalid {what} {value!r}; give a comma-separated list of "
                          f"{kind.__name__} values") from None


def _catch_sigterm() -> None:
    """Treat SIGTERM like Ctrl-C: the current run is stored as interrupted, then we exit."""
    import signal

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@app.command("sweep")
@with_parameters(axis_parameters())
def sweep_cmd(
    file: Annotated[Path | None, typer.Argument(help="A sweep TOML file (optional).")] = None,
    preset: Annotated[str | None, typer.Option(
        help="A named sweep instead of a file: synflow-fig6/DATASET-MODEL, an experiment of "
             "the SynFlow paper's Figure 6 with its published recipe and 3 seeds (e.g. "
             "synflow-fig6/cifar10-vgg16-bn; `--preset list` names them). Options given "
             "narrow or change it.", show_default=False)] = None,
    sets: Annotated[list[str] | None, typer.Option(
        "--set", help="KEY=VALUE shared setting or PRUNER.KEY=VALUE override (repeat), "
                      "e.g. --set post_epochs=100 --set grasp.post_epochs=400; a KEY is any "
                      "option of `run` but the axes, without its dashes (post_epochs or "
                      "post-epochs).")] = None,
    name: Annotated[str | None, typer.Option(help="Sweep name [default: models-datasets].")] = (
        None),
    jobs: Annotated[int, typer.Option(help="Runs in parallel (worker processes).")] = 1,
    devices: Annotated[str | None, typer.Option(
        help="Comma list of devices, one per worker in turn, e.g. cuda:0,cuda:1.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the runs only.")] = False,
    executor: Annotated[str, typer.Option(
        help="local: worker processes on this machine; ray: tasks on a Ray cluster "
             "(pip install 'prunetui[ray]').")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        help="Ray cluster: auto or HOST:PORT [default: the one `ray start` made here, else a "
             "new local one].")] = None,
    gpus_per_run: Annotated[float, typer.Option(
        help="GPUs per run with --executor ray (0.5 packs two runs per GPU).")] = 0.0,
    cpus_per_run: Annotated[float, typer.Option(
        help="CPUs per run with --executor ray (also its torch threads).")] = 1.0,
    checkpoint_dir: Annotated[Path | None, typer.Option(
        help="With --executor ray: where runs keep their checkpoints, a path every node can "
             "read and write [default: the results dir].")] = None,
    data_dir: DataDir = None, download: Download = True, results_dir: ResultsDir = None,
    **axes: str | None,
) -> None:
    """Run a grid of runs (resumable: re-running skips finished runs, resumes the rest)."""
    from prunetui.core.sweep import SweepSpec, load_toml

    _OneLineErrors.naming = staticmethod(key_name)
    if preset is not None:
        from prunetui.core.sweep.presets import preset as named
        from prunetui.core.sweep.presets import presets

        if preset == "list":
            _list_presets(presets())
            return
        if file is not None:
            raise ConfigError("give a sweep file or --preset, not both")
    spec = named(preset) if preset is not None else load_toml(file) if file else SweepSpec()
    for axis, value in axes.items():
        if value is not None:
            spec.grid[axis] = axis_values(axis, value)
    spec.with_sets(sets or [])
    if name:
        spec.name = name
    for axis, values in spec.grid.items():
        if not values:
            raise ConfigError(f"a sweep needs --{axis} (or a sweep file with grid.{axis})")
    if data_dir is None and spec.data_dir:  # --data-dir and PRUNETUI_DATA come first
        data_dir = Path(spec.data_dir)
    if jobs < 1:
        raise ConfigError(f"invalid --jobs {jobs}; it must be >= 1")
    device_list = _csv(devices, str, "devices")
    for d in device_list:
        RunConfig(device=d).validate()
    configs = _feasible(spec.configs())
    store = _store(results_dir)  # creates nothing until the first write
    # States, not rows: nothing decoded but the data fingerprint, any number of ids.
    stored = store.states([c.run_id for c in configs])
    _warn_unreadable(store)
    # Diverged runs are results too: seeded, they would diverge again (`rm` them to retry).
    final = {rid for rid, r in stored.items() if r.status.kept}
    pending = [c for c in configs if c.run_id not in final]
    done = sum(stored[c.run_id].status == RunStatus.FINISHED for c in configs
               if c.run_id in final)
    diverged = len(configs) - len(pending) - done
    if dry_run:
        _dry_run(spec.label(), configs, stored, done)
        return
    if executor == "local":  # Ray's nodes have their own devices and data
        from prunetui.core.run.engine import check_stored_data

        check_stored_data([r for r in stored.values() if r.status == RunStatus.FINISHED],
                          data_dir)
        if pending:
            _preflight(pending, device_list, data_dir, download, store)
    from prunetui.core.sweep import CellOutcome, SweepRunner, make_executor
    from prunetui.tui.console import ConsoleSink, busy_summary

    _catch_sigterm()
    outcomes: list[CellOutcome] = []
    sink = ConsoleSink(err, sweep=True)
    overall = sink.progress.add_task("sweep", total=len(configs), info="")

    def on_cell(o: CellOutcome) -> None:
        outcomes.append(o)
        sink.progress.update(overall, advance=1, info=f"{o.config.run_id} {o.status}")
        if not o.status.ok:
            err.print(f"[red]{o.status}[/] {o.config.run_id} {o.config.pruner} "
                      f"c={o.config.compression:g}: {o.error}")

    # Built before the live display starts, so its input errors print on their own.
    runner = SweepRunner(store.root, data_dir, download,
                         make_executor(executor, jobs, device_list, ray_address=ray_address,
                                       gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run,
                                       checkpoint_dir=checkpoint_dir),
                         emit=sink, on_cell=on_cell)
    err.print(f"sweep {spec.label()}: {_count(len(configs), 'run')}, {done} already finished"
              + (f", {diverged} diverged (kept; `prunetui rm` them to retry)" if diverged
                 else "")
              + _resuming([stored[c.run_id] for c in pending if c.run_id in stored]))
    try:
        with sink:
            sink.start()
            runner.run(configs)
    except KeyboardInterrupt:
        # Told from the store, not from where the interrupt landed: one that lands as the
        # last run finishes leaves nothing to resume.
        states = store.states([c.run_id for c in configs])
        finished = sum(r.status == RunStatus.FINISHED for r in states.values())
        raise _Interrupted(
            f"interrupted: {finished} of {_count(len(configs), 'run')} finished; "
            + ("the same command resumes the rest" if finished < len(configs)
               else "nothing is left to run")) from None
    bad = [o for o in outcomes if not o.status.ok]
    kept = sum(o.status == RunStatus.DIVERGED and o.config.run_id in stored
               and stored[o.config.run_id].status == RunStatus.DIVERGED for o in outcomes)
    out.print(f"sweep {spec.label()}: {len(outcomes) - len(bad)} of "
              f"{_count(len(configs), 'run')} finished "
              f"({sum(o.status == RunStatus.CACHED for o in outcomes)} already stored"
              + (f", {kept} stored as diverged and kept" if kept else "") + ")")
    if summary := busy_summary(sink.busy):
        _warn(summary)
    if bad:
        for o in bad:
            out.print(f"  {o.status}: {o.config.run_id} {o.config.model}/{o.config.dataset}/"
                      f"{o.config.pruner} c={o.config.compression:g} seed {o.config.seed}: "
                      f"{o.error}")
        raise typer.Exit(1)


def _feasible(configs: list[RunConfig]) -> list[RunConfig]:
    """The cells a sweep can run: those whose layerwise pruner cannot keep its rule at their
    compression (uniform-plus on fc/MNIST at c=1) are skipped with one warning line per
    model, dataset, pruner and compression (all its seeds and ablations); every cell
    infeasible is the error of the first. Then what would fail any cell fails the sweep."""
    from prunetui.core.run.build import runnable_cells

    feasible, skipped = runnable_cells(configs)
    said: dict[tuple[object, ...], int] = {}
    for c in configs:
        if c.run_id in skipped:
            key = (c.model, c.dataset, c.pruner, c.compression)
            said[key] = said.get(key, 0) + 1
    for (model, dataset, pruner, compression), n in said.items():
        first = next(c for c in configs if (c.model, c.dataset, c.pruner, c.compression)
                     == (model, dataset, pruner, compression))
        _warn(f"skipping {_count(n, 'cell')} {model}/{dataset} {pruner}: "
              f"{skipped[first.run_id]}")
    return feasible


# A dry run lists this many cells; a bigger grid is summed up by status after them.
DRY_RUN_ROWS = 100


def _dry_run(label: str, configs: list[RunConfig], stored: dict[str, RunState],
             done: int) -> None:
    """``sweep --dry-run``: the first ``DRY_RUN_ROWS`` cells, then (for a bigger grid) how
    many there are of each stored status: bounded output for a grid of any size."""
    from collections import Counter

    from rich.table import Table

    t = Table("run", "model", "dataset", "pruner", "c", "seed", "stored",
              title=f"sweep {label}: {_count(len(configs), 'run')}, {done} already finished",
              title_justify="left")
    for c in configs[:DRY_RUN_ROWS]:
        row = stored.get(c.run_id)
        t.add_row(c.run_id, c.model, c.dataset, c.pruner, f"{c.compression:g}", str(c.seed),
                  f"{row.status} (epoch {row.epoch})" if row else "—")
    out.print(t)
    if len(configs) > DRY_RUN_ROWS:
        by = Counter(str(stored[c.run_id].status) if c.run_id in stored else "not stored"
                     for c in configs)
        out.print(f"… and {len(configs) - DRY_RUN_ROWS:,} more; all {len(configs):,}: "
                  + ", ".join(f"{n:,} {what}" for what, n in by.most_common()))


def _list_presets(known: dict[str, Any]) -> None:
    from rich.table import Table

    t = Table("preset", "runs", "recipe", "runnable here",
              caption="Each runs 5 pruners × 13 compressions × 3 seeds, as the paper did; "
                      "narrow it with --pruners, --compressions, --seeds, --set.",
              caption_justify="left")
    for name, e in known.items():
        r = e.recipe
        why = e.unsupported()
        t.add_row(name, str(len(e.pruners) * len(e.compressions) * 3),
                  f"{r.post_epochs} epochs, {r.optimizer} lr {r.lr:g}, batch {r.batch_size}",
                  f"no: {why}" if why else "yes")
    out.print(t)


def _resuming(rows: list[RunState]) -> str:
    """', 2 to resume (3fa9c2e1b0 at epoch 12, …)' for stored runs that did not finish."""
    if not rows:
        return ""
    shown = ", ".join(f"{r.run_id} at epoch {r.epoch}" for r in rows[:3])
    return f", {len(rows)} to resume ({shown}{', …' if len(rows) > 3 else ''})"


def _preflight(configs: list[RunConfig], devices: list[str], data_dir: Path | None,
               download: bool, store: Store) -> None:
    """Fail once, before the first run, on what would fail every run of a sweep: a device
    that is not there, a results dir that cannot be written, missing data (downloaded here,
    once, when allowed, instead of by every worker at the same time)."""
    from prunetui.core.data import ensure_files
    from prunetui.core.train import resolve_device

    for d in devices or sorted({c.device for c in configs}):
        try:
            resolve_device(d)
        except ConfigError as e:
            if not devices:
                raise
            # A device of --devices: named as that option, with that option's fix.
            raise ConfigError(f"device {d!r} of --devices {e.problem or 'is not usable'}; "
                              "use --devices cpu, or leave it out", field="devices",
                              value=d) from None
    store.check_writable()
    for name in sorted({c.dataset for c in configs}):
        ensure_files(name, data_dir, download)


@app.command("runs")
def runs_cmd(
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Only this dataset.")] = None,
    pruner: Annotated[str | None, typer.Option(help="Only this pruner.")] = None,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    sweep: Annotated[str | None, typer.Option(help="Only runs of this sweep.")] = None,
    results_dir: ResultsDir = None, as_json: AsJson = False,
) -> None:
    """List stored runs."""
    from prunetui.core.store import STATUSES

    _check_filters(model, dataset, pruner)
    if status is not None and status not in STATUSES:
        from prunetui.core.errors import choices_message

        raise ConfigError(choices_message("status", status, list(STATUSES)))
    store = _store(results_dir)
    _check_sweep(store, sweep)
    rows = store.query(model=model, dataset=dataset, pruner=pruner, status=status, sweep=sweep)
    _warn_unreadable(store)
    if as_json:
        _emit_json([{k: v for k, v in r.__dict__.items() if k != "result"} for r in rows])
        return
    if not rows:
        asked = [f"--{k} {v}" for k, v in (("model", model), ("dataset", dataset),
                                           ("pruner", pruner), ("status", status),
                                           ("sweep", sweep)) if v is not None]
        out.print(f"no run in {store.root} matches {' '.join(asked)}" if asked else
                  f"0 runs in {store.root}" + ("" if store.db_path.exists() else
                                                " (nothing stored there yet)"))
        return
    from rich.table import Table

    from prunetui.tui.widgets.fmt import epochs, seconds

    cells = [{"id": r.run_id, "model": r.model, "dataset": r.dataset, "pruner": r.pruner,
              "c": f"{r.compression:g}", "seed": str(r.seed), "epochs": epochs(r.config),
              "status": r.status + (" ‡" if r.collapsed else ""),
              "top-1": f"{r.top1:.2f}" if r.top1 is not None else "—",
              "density": f"{r.density:.4g}" if r.density is not None else "—",
              "FLOP ratio": f"{r.flop_ratio:.4f}" if r.flop_ratio is not None else "—",
              "time": seconds(r.seconds)} for r in rows]
    columns = _fitting_columns(cells, out.width)
    t = Table(title=_count(len(rows), "run") + ("" if len(columns) == len(_RUNS_COLUMNS) else
                                                 "; wider terminal or --json for " + ", ".join(
                                                     c for c in _RUNS_COLUMNS
                                                     if c not in columns)),
              title_justify="left")
    for c in columns:
        # The id whole, always: show and rm take it.
        t.add_column(c, no_wrap=c == "id", min_width=10 if c == "id" else None)
    for cell in cells:
        t.add_row(*(cell[c] for c in columns))
    out.print(t)


# `runs` columns: those always shown, then the rest in the order they are dropped last.
_RUNS_COLUMNS = ("id", "model", "dataset", "pruner", "c", "seed", "epochs", "status", "top-1",
                 "density", "FLOP ratio", "time")
_RUNS_KEEP = ("id", "model", "dataset", "pruner", "c", "seed", "status", "top-1")


def _fitting_columns(cells: list[dict[str, str]], width: int) -> list[str]:
    """The columns of ``runs`` that fit ``width`` at their natural widths: the key ones
    always, then epochs, density, FLOP ratio and time while they fit (rich would otherwise
    squeeze every column, cutting the ids)."""
    def need(c: str) -> int:  # the column's text, its padding and its border
        return max(len(c), *(len(cell[c]) for cell in cells)) + 3

    chosen = list(_RUNS_KEEP)
    used = 1 + sum(need(c) for c in chosen)
    for c in ("epochs", "density", "FLOP ratio", "time"):
        if used + need(c) <= width:
            chosen.append(c)
            used += need(c)
    return [c for c in _RUNS_COLUMNS if c in chosen]


def _check_filters(model: str | None, dataset: str | None, pruner: str | None) -> None:
    from prunetui.core.errors import choices_message

    for what, value, names in (("model", model, catalog.MODELS), ("dataset", dataset,
                               catalog.DATASETS), ("pruner", pruner, catalog.PRUNERS)):
        if value is not None and value not in names:
            raise ConfigError(choices_message(what, value, list(names)))


@app.command("show")
def show_cmd(
    run: Annotated[str, typer.Argument(help="Run id (a unique prefix is enough).")],
    results_dir: ResultsDir = None, as_json: AsJson = False,
) -> None:
    """Show one stored run: config, training curve, per-layer table, histograms, warnings."""
    store = _store(results_dir, create=False)
    row = store.resolve(run)
    epochs = store.epochs(row.run_id)
    if as_json:
        _emit_json(row.result.to_dict() if row.result else {
            "run_id": row.run_id, "config": row.config, "status": row.status,
            "error": row.error, "epochs": [e.to_dict() for e in epochs]})
        return
    from rich.table import Table

    from prunetui.tui.console import layer_table, rounds_table, summary_table

    reached = f" at epoch {row.epoch}" if row.status != RunStatus.FINISHED else ""
    cfg = Table(show_header=False, box=None, title=f"run {row.run_id}: {row.status}{reached}",
                title_justify="left")
    for k, v in row.config.items():
        cfg.add_row(k, str(v))
    out.print(cfg)
    if row.error:
        out.print(f"[red]{row.error}[/]")
    if epochs:
        out.print(_curve(epochs))
    if row.result:
        out.print(summary_table(row.result))
        if rounds := rounds_table(row.result):
            out.print(rounds)
        out.print(layer_table(row.result.layers))
        try:
            out.print(_histogram_rows(store.histograms(row.run_id)))
        except StoreError as e:  # the rest of the run is still worth showing
            _warn(str(e))
        _show_warnings(row.result.structure)
    elif layers := store.layers(row.run_id):  # pruned, then stopped (or still training)
        out.print(layer_table(layers, title="Per-layer, as pruned (the run has no result yet)"))


def _check_sweep(store: Store, sweep: str | None) -> None:
    """Refuse a --sweep the store does not hold: 0 rows would read as an empty sweep."""
    if sweep is None:
        return
    names = [name for name, _ in store.sweeps()]
    if sweep not in names:
        from prunetui.core.errors import choices_message

        raise ConfigError(choices_message("sweep", sweep, names) if names
                          else f"unknown sweep {sweep!r}; the store holds no sweep")


def _curve(epochs: list[Epoch]) -> Any:
    import plotext as plt
    from rich.text import Text

    from prunetui.tui.widgets.fmt import flat_range

    plt.clear_figure()
    plt.plotsize(min(out.width, 100), 15)
    plt.theme("clear")
    # The phase is when the epoch ran (before or after pruning); top-1 is on the test set.
    names = {"pretrain": "test top-1 % (pre-training, before pruning)",
             "train": "test top-1 % (after pruning)"}
    for phase in ("pretrain", "train"):
        rows = [e for e in epochs if e.phase == phase]
        if rows:
            plt.plot([e.epoch for e in rows], [e.top1 for e in rows],
                     label=names[phase], marker="braille")
    top1 = [float(e.top1 or 0.0) for e in epochs]
    if top1 and max(top1) == min(top1):
        # Room above for the legend, which plotext draws over the top rows.
        lo, hi = flat_range(top1[0])
        plt.ylim(lo, hi + (hi - lo) / 2)
        plt.yticks([lo, (lo + hi) / 2, hi], [f"{t:.3g}" for t in (lo, (lo + hi) / 2, hi)])
    plt.xlabel("epoch")
    # plotext colours with ANSI codes even in its "clear" theme; let rich interpret them.
    return Text.from_ansi(plt.build())


def _histogram_rows(hists: list[dict[str, Any]]) -> Any:
    """Each layer's weight histogram (``Store.histograms``) as a row of block characters."""
    from rich.table import Table

    blocks = " ▁▂▃▄▅▆▇█"
    t = Table("layer", "kept-weight histogram", title=(
        f"weight histograms, {hists[0]['edges'][0]:.3g} … {hists[0]['edges'][-1]:.3g}"
        if hists else "weight histograms"), title_justify="left", box=None)
    for h in hists:
        top = max(h["fractions"]) or 1.0
        t.add_row(h["layer"], "".join(blocks[round(f / top * 8)] for f in h["fractions"]))
    return t


@app.command("rm")
def rm_cmd(
    runs: Annotated[list[str], typer.Argument(help="Run ids or unique prefixes.")],
    results_dir: ResultsDir = None,
) -> None:
    """Delete stored runs and their artifacts."""
    store = _store(results_dir, create=False)
    ids = list(dict.fromkeys(store.resolve_id(r) for r in runs))  # each once
    store.remove(ids)
    out.print(f"removed {_count(len(ids), 'run')}: {', '.join(ids)}")


@app.command("gc")
def gc_cmd(results_dir: ResultsDir = None) -> None:
    """Delete artifact folders of runs that are no longer in the store, and temporary files
    left by runs that were killed (never under a run that is running)."""
    store = _store(results_dir, create=False)
    removed = store.collect_garbage()
    names = "".join(f"\n  {p}" for p in removed.folders)
    out.print(f"removed {_count(len(removed.folders), 'orphaned artifact folder')}"
              + (f":{names}" if removed.folders else ""))
    if removed.temp_files:
        out.print(f"removed {_count(len(removed.temp_files), 'temporary file')} left by "
                  "killed runs:" + "".join(f"\n  {p}" for p in removed.temp_files))


@app.command("export")
def export_cmd(
    sweep: Annotated[str | None, typer.Option(help="Runs of this sweep.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Only this dataset.")] = None,
    pruner: Annotated[str | None, typer.Option(help="Only this pruner.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="md | csv | json.")] = "md",
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Write report.<fmt> and figures into this folder (else stdout).")] = None,
    at: Annotated[float, typer.Option(help="Compression of the by-architecture table.")] = 1.0,
    layers_at: Annotated[float, typer.Option(
        help="Compression of the per-layer tables and histograms.")] = 0.5,
    title: Annotated[str, typer.Option(help="Report title.")] = "Pruning report",
    force: Annotated[bool, typer.Option(
        "--force", help="Replace the report and figures of the same names in --out (other "
                        "files there are kept).")] = False,
    reference: Annotated[str | None, typer.Option(
        help="Compare with published results (synflow-fig6: the SynFlow paper's Figure 6): "
             "their min-max band behind your curves and a table flagging cells outside it, "
             "with the recipe differences.", show_default=False)] = None,
    critical: Annotated[str | None, typer.Option(
        help="Also prune each model/dataset and pruner at these compressions at "
             "initialization (start:stop:step, e.g. 0:4:0.25, or a comma list) for the "
             "critical-compression table and the per-layer profile figure; costs a pruning "
             "pass per point (no training).", show_default=False)] = None,
    device: Annotated[str, typer.Option(
        help="Device of the --critical pruning passes.")] = "auto",
    data_dir: DataDir = None,
    results_dir: ResultsDir = None,
) -> None:
    """Write the report: tables, the accuracy-vs-compression, per-layer density and weight
    histogram figures, from stored runs."""
    from prunetui.core.analysis import parse_compressions
    from prunetui.core.errors import choices_message
    from prunetui.core.report import REFERENCES

    if fmt not in ("md", "csv", "json"):
        raise ConfigError(choices_message("format", fmt, ["md", "csv", "json"]))
    if reference is not None and reference not in REFERENCES:
        raise ConfigError(choices_message("--reference", reference, list(REFERENCES)))
    critical_at = parse_compressions(critical) if critical is not None else None
    if critical_at is not None:
        RunConfig(device=device).validate()  # a bad device: one line, before anything
    _check_filters(model, dataset, pruner)
    for flag, value in (("--at", at), ("--layers-at", layers_at)):
        if not value >= 0:  # NaN too
            raise ConfigError(f"invalid {flag} {value:g}; it must be a compression >= 0")
    store = _store(results_dir, create=False)
    _check_sweep(store, sweep)
    rows = store.query(sweep=sweep, model=model, dataset=dataset, pruner=pruner)
    _warn_unreadable(store)
    if not rows:
        raise ConfigError("no stored runs match the selection; see `prunetui runs`")
    comps = sorted({r.compression for r in rows})
    for flag, value in (("--at", at), ("--layers-at", layers_at)):
        if value not in comps:
            err.print(f"[bold yellow]warning:[/] no selected run has compression {value:g} "
                      f"({flag}); they have {', '.join(f'{c:g}' for c in comps)}")
    written = _export_with_progress(store, rows, fmt, out_dir, at=at, layers_at=layers_at,
                                    title=title, force=force, reference=reference,
                                    critical=critical_at, device=device, data_dir=data_dir)
    if written is None:
        return
    err.print(f"wrote {len(written)} file(s) to {out_dir}: " + ", ".join(p.name for p in written))


def _export_with_progress(store: Store, rows: list[RunRow], fmt: str, out_dir: Path | None,
                          **options: Any) -> list[Path] | None:
    """``export_report``, with a status line while --critical prunes (minutes for SynFlow's
    100 iterations on a VGG on a CPU)."""
    from prunetui.tui.export import CriticalProgress, export_report

    if options.get("critical") is None:
        return export_report(store, rows, fmt, out_dir, **options)
    with err.status("critical compression: starting") as status:
        def show(p: CriticalProgress) -> None:
            status.update(p.text())

        return export_report(store, rows, fmt, out_dir, on_progress=show, **options)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()

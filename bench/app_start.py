"""Benchmark 5: start-up and responsiveness of the command and the app.

- ``prunetui --help`` and ``prunetui runs`` (empty store): wall time of the subprocess, target
  <= 0.4 s, and torch must not be imported on those paths (checked in a separate run that
  reports ``'torch' in sys.modules`` at exit). Baseline: ``python -c "import torch"``, what any
  command pays that imports the engine eagerly.
- First paint: a subprocess starts ``PruneApp`` under ``run_test()`` (headless) and prints a
  line from its ``on_ready`` handler (Textual sends ``Ready`` once the first frame is
  displayed); the figure is the wall time from spawning it to reading that line, target
  <= 1.5 s. Baseline: the same with ``import torch`` first (an app importing the engine
  eagerly).
- Key-press latency: the app (headless) with a real run (fc on 60,000 MNIST-shaped images,
  the app's own worker thread and torch-thread policy) training; keys ``3`` / ``2`` (Results /
  Run tabs) sent through the driver as a terminal would, 40 times, 150-300 ms apart; latency =
  from the key to its action running, and to the repaint after it (``call_after_refresh``),
  two rows, target p95 <= 100 ms each. Baseline: the same presses with no run active.

When ``prunetui.tui.app`` cannot be imported, the app figures are "not measured" rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.timing import ROOT, Context, Row, Stat, alternate, not_measured, rotate

CLI_TARGET = 0.4
PAINT_TARGET = 1.5
LATENCY_TARGET = 0.100
PRESSES = 40
GAP = (0.15, 0.3)  # seconds between presses: a fast typist
SIZE = (120, 40)


def _env(results: Path) -> dict[str, str]:
    env = os.environ.copy()
    env["PRUNETUI_RESULTS"] = str(results)
    env["COLUMNS"] = "120"
    # The app picks its torch threads itself unless the user set OMP_NUM_THREADS.
    env.pop("OMP_NUM_THREADS", None)
    return env


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
    return elapsed


_TORCH_CHECK = (
    "import atexit, sys\n"
    "atexit.register(lambda: sys.stderr.write('TORCH_LOADED=%s\\n' % ('torch' in sys.modules)))\n"
    "sys.argv = ['prunetui'] + sys.argv[1:]\n"
    "from prunetui.tui.cli import main\n"
    "main()\n"
)


def _torch_loaded(args: list[str], env: dict[str, str]) -> bool:
    proc = subprocess.run([sys.executable, "-c", _TORCH_CHECK, *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    for line in proc.stderr.splitlines():
        if line.startswith("TORCH_LOADED="):
            return line.endswith("True")
    raise RuntimeError(f"prunetui {' '.join(args)}: no torch report ({proc.stderr.strip()})")


def _cli_rows(ctx: Context, results: Path) -> list[Row]:
    env = _env(results)
    exe = str(Path(sys.executable).with_name("prunetui"))
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-c", _TORCH_CHECK]
    commands = (["--help"], ["runs"])
    # One baseline shared by both rows, all three alternated.
    base_s, *new_s = rotate(
        [lambda: _wall([sys.executable, "-c", "import torch"], env)]
        + [lambda a=a: _wall([*cmd, *a], env) for a in commands],  # type: ignore[misc]
        ctx.repeats, warmup=1)
    b = Stat.of(base_s)
    rows = []
    for args, samples in zip(commands, new_s, strict=True):
        torch_loaded = _torch_loaded(args, env)
        p = Stat.of(samples)
        rows.append(Row(
            f"prunetui {' '.join(args)} wall (s)", b.fmt("s"), p.fmt("s"), b.median / p.median,
            f"<= {CLI_TARGET:g} s, no torch", p.median <= CLI_TARGET and not torch_loaded,
            note=f"baseline: python -c 'import torch'; torch imported: {torch_loaded}",
            data={"baseline_s": b.__dict__, "prunetui_s": p.__dict__,
                  "torch_imported": torch_loaded}))
    return rows


def _child(mode: str, extra: list[str], env: dict[str, str], timeout: float) -> tuple[float,
                                                                                      str]:
    """Spawn ``python -m bench.app_start --child mode``; (seconds to its READY line, output)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bench.app_start", "--child", mode, *extra],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    ready = None
    lines = []
    for line in proc.stdout:
        if line.startswith("READY") and ready is None:
            ready = time.perf_counter() - start
        lines.append(line)
    _, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0 or ready is None:
        tail = err.strip().splitlines()[-3:]
        raise RuntimeError(f"app child {mode} exited {proc.returncode}: {' | '.join(tail)}")
    return ready, "".join(lines)


def _app_rows(ctx: Context, results: Path) -> list[Row]:
    env = _env(results)
    try:
        _child("import", [], env, 120)
    except RuntimeError as e:
        return [not_measured("app first paint", f"app not importable ({e})",
                             f"<= {PAINT_TARGET:g} s"),
                not_measured("key-press latency while training", "app not importable",
                             f"<= {LATENCY_TARGET * 1000:g} ms")]
    base_s, new_s = alternate(lambda: _child("paint", ["--import-torch"], env, 120)[0],
                              lambda: _child("paint", [], env, 120)[0], ctx.repeats, warmup=1)
    b, p = Stat.of(base_s), Stat.of(new_s)
    rows = [Row("app first paint, spawn to Ready (s)", b.fmt("s"), p.fmt("s"),
                b.median / p.median, f"<= {PAINT_TARGET:g} s", p.median <= PAINT_TARGET,
                note="headless run_test(); baseline: the same app with torch imported first",
                data={"baseline_s": b.__dict__, "prunetui_s": p.__dict__})]
    ctx.log("key-press latency (a run trains in the app's worker) ...")
    try:
        _, out = _child("keys", [], env, 300)
        got = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
    except (RuntimeError, IndexError, json.JSONDecodeError) as e:
        rows.append(not_measured("key-press latency while training", f"error: {e}",
                                 f"<= {LATENCY_TARGET * 1000:g} ms"))
        return rows
    all_busy = got["pressed_while_training"] == len(got["painted"])
    common = (f"tab keys 3/2, {len(got['painted'])} presses {GAP[0] * 1000:.0f}-"
              f"{GAP[1] * 1000:.0f} ms apart, all while training: {all_busy}; torch threads in "
              f"the app: {got['torch_threads']}")
    for what, key in (("action", "acted"), ("repaint", "painted")):
        busy, idle = got[key], got[f"idle_{key}"]
        p95_idle, p95_busy = _p95(idle), _p95(busy)
        rows.append(Row(
            f"key-press to {what} p95 while training (ms)",
            f"{p95_idle * 1000:.1f} ms (idle app)", f"{p95_busy * 1000:.1f} ms", None,
            f"<= {LATENCY_TARGET * 1000:g} ms", p95_busy <= LATENCY_TARGET and all_busy,
            note=f"median {statistics.median(busy) * 1000:.1f} ms (idle "
                 f"{statistics.median(idle) * 1000:.1f} ms), max {max(busy) * 1000:.0f} ms; "
                 + common,
            data={"idle_s": idle, "training_s": busy} if what == "action" else got))
    return rows


def _p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(0.95 * (len(s) - 1))))]


def run(ctx: Context) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="prunetui-bench-") as tmp:
        results = Path(tmp) / "results"
        rows = _cli_rows(ctx, results)
        rows += _app_rows(ctx, results)
    return rows


# ---------------------------------------------------------------------------------------------
# The child processes


def _child_import() -> None:
    from prunetui.tui.app import PruneApp  # noqa: F401

    print("READY", flush=True)


def _child_paint(import_torch: bool) -> None:
    if import_torch:
        import torch  # noqa: F401
    from prunetui.tui.app import PruneApp

    class Timed(PruneApp):
        def on_ready(self) -> None:
            print("READY", flush=True)
            self.exit()

    async def main() -> None:
        results = Path(os.environ["PRUNETUI_RESULTS"])
        app = Timed(results_dir=results)
        async with app.run_test(size=SIZE) as pilot:
            while app.is_running:
                await pilot.pause(0.01)

    asyncio.run(main())


def _child_keys() -> None:
    from bench.train_fc import synth_mnist
    from prunetui.core.config import RunConfig
    from prunetui.core.events import BatchProgress
    from prunetui.tui import worker as glue
    from prunetui.tui.app import PruneApp

    class Timed(PruneApp):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.acted: list[float] = []
            self.painted: list[float] = []
            self.training = False

        def action_tab(self, name: str) -> None:
            self.acted.append(time.perf_counter())
            super().action_tab(name)
            # Runs once the messages this caused are handled and the screen is refreshed.
            self.call_after_refresh(lambda: self.painted.append(time.perf_counter()))

        def on_engine_event(self, message: glue.EngineEvent) -> None:
            event = message.event
            if isinstance(event, BatchProgress) and event.phase == "train":
                self.training = True
            super().on_engine_event(message)

    async def presses(app: Timed, n: int, rng: random.Random
                      ) -> tuple[list[float], list[float], int]:
        """Send keys the way a terminal does (through the driver), at a human pace, and wait
        for each key's action and the repaint after it. Not ``pilot.press``: it also waits
        for the process to go idle, which a training process never does."""
        from textual import events

        driver = app._driver
        assert driver is not None
        acted, painted, active = [], [], 0
        for i in range(n):
            await asyncio.sleep(rng.uniform(*GAP))
            before = len(app.painted)
            key = "3" if i % 2 == 0 else "2"
            event = events.Key(key, key)
            event.set_sender(app)
            t0 = time.perf_counter()
            driver.send_message(event)
            while len(app.painted) == before and time.perf_counter() - t0 < 10:
                await asyncio.sleep(0.001)
            if len(app.painted) > before:
                acted.append(app.acted[before] - t0)
                painted.append(app.painted[before] - t0)
            active += app.sweep_active
        return acted, painted, active

    async def main(tmp: Path) -> dict[str, Any]:
        data = synth_mnist(tmp / "data")
        app = Timed(results_dir=tmp / "results", data_dir=data, preview=False,
                    settings={"timing_repeats": 1})
        rng = random.Random(0)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(0.2)
            app.set_focus(None)
            idle_acted, idle_painted, _ = await presses(app, PRESSES, rng)
            config = RunConfig(model="fc", dataset="mnist", pruner="rand", compression=1.0,
                               post_epochs=20, device="cpu", timing_repeats=1)
            app.start_sweep([config])
            deadline = time.perf_counter() + 120
            while not app.training and time.perf_counter() < deadline:
                await pilot.pause(0.05)
            if not app.training:
                raise RuntimeError("the run never started training")
            acted, painted, active = await presses(app, PRESSES, rng)
            if app.cancel_token is not None:
                app.cancel_token.cancel()
            deadline = time.perf_counter() + 30
            while app.sweep_active and time.perf_counter() < deadline:
                await pilot.pause(0.05)
        return {"idle_acted": idle_acted, "idle_painted": idle_painted, "acted": acted,
                "painted": painted, "pressed_while_training": active,
                "torch_threads": app.torch_threads}

    print("READY", flush=True)
    with tempfile.TemporaryDirectory(prefix="prunetui-bench-app-") as tmp:
        print(json.dumps(asyncio.run(main(Path(tmp)))), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.app_start")
    ap.add_argument("--child", choices=["import", "paint", "keys"], required=True)
    ap.add_argument("--import-torch", action="store_true")
    args = ap.parse_args(argv)
    if args.child == "import":
        _child_import()
    elif args.child == "paint":
        _child_paint(args.import_torch)
    else:
        _child_keys()
    return 0


if __name__ == "__main__":
    sys.exit(main())

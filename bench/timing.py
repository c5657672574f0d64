"""What every benchmark shares: alternating timed repeats, statistics, table rows, peak memory.

Every figure is a baseline (the plain PyTorch way, written in bench/) and prunetui measured side
by side in one process: a warm-up call of each, then ``repeats`` rounds in ABBA order (baseline
first in even rounds, prunetui first in odd ones) so that a drift in machine load hits both
equally. Each timed callable measures itself and returns seconds, so per-repeat setup (fresh
model copies) stays out of the figure.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Stat:
    """Median, min and max of some samples (seconds, images/s, bytes...)."""

    median: float
    min: float
    max: float
    samples: list[float]

    @classmethod
    def of(cls, samples: list[float]) -> Stat:
        if not samples:
            raise ValueError("no samples")
        return cls(statistics.median(samples), min(samples), max(samples), list(samples))

    def fmt(self, unit: str = "", scale: float = 1.0, digits: int = 3) -> str:
        """``median [min-max] unit``, each value multiplied by ``scale``."""

        def g(v: float) -> str:
            v *= scale
            return f"{v:,.0f}" if abs(v) >= 10 ** digits else f"{v:.{digits}g}"

        if len(self.samples) == 1:
            return f"{g(self.median)} {unit}".strip()
        return f"{g(self.median)} [{g(self.min)}-{g(self.max)}] {unit}".strip()


@dataclass
class Row:
    """One line of the table. ``ratio`` is always "higher is better" for prunetui (a speedup,
    or baseline/prunetui for memory); ``passed`` None means not measured."""

    benchmark: str
    baseline: str  # formatted figure (or a reference value / "-")
    prunetui: str
    ratio: float | None
    target: str
    passed: bool | None
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)  # raw numbers for results.json
    # "figure": a target of the issue; "what-if": prunetui with engine changes NOTES.md
    # proposes (not the engine as is); "reference": the same prunetui against another baseline.
    kind: str = "figure"

    @property
    def result(self) -> str:
        if self.kind != "figure":
            return self.kind
        if self.passed is None:
            return "not measured"
        return "pass" if self.passed else "FAIL"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["result"] = self.result
        return d


def not_measured(benchmark: str, why: str, target: str = "") -> Row:
    """A row for a figure this run could not take (no GPU, app not importable, error)."""
    return Row(benchmark, "-", "-", None, target, None, note=f"not measured: {why}")


@dataclass
class Context:
    """Options every benchmark sees."""

    quick: bool = True
    repeats: int = 5
    threads: int = 2
    gpu_device: str | None = None  # override the GPU benchmark's device (smoke test on cpu)
    verbose: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def log(self, msg: str) -> None:
        if self.verbose:
            print(f"  [{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(
    baseline: Callable[[], float],
    prunetui: Callable[[], float],
    repeats: int,
    warmup: int = 1,
    log: Callable[[str], None] | None = None,
) -> tuple[list[float], list[float]]:
    """Warm-up calls of each, then ``repeats`` rounds in ABBA order; returns the samples (what
    each call returned, usually its own seconds) of (baseline, prunetui)."""
    b, p = rotate([baseline, prunetui], repeats, warmup, log, ["baseline", "prunetui"])
    return b, p


def rotate(
    fns: list[Callable[[], float]],
    repeats: int,
    warmup: int = 1,
    log: Callable[[str], None] | None = None,
    names: list[str] | None = None,
) -> list[list[float]]:
    """``alternate`` for any number of callables: round r runs them in order when r is even
    and in reverse order when r is odd (ABBA for two), after ``warmup`` untimed calls each."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    order = list(range(len(fns)))
    for r in range(repeats):
        for i in order if r % 2 == 0 else order[::-1]:
            samples[i].append(fns[i]())
        if log is not None:
            labels = names or [f"#{i}" for i in order]
            log(f"repeat {r + 1}/{repeats}: " + ", ".join(
                f"{n} {s[-1]:.4g}" for n, s in zip(labels, samples, strict=True)))
    return samples


def speedup_row(
    benchmark: str,
    base_s: list[float],
    new_s: list[float],
    target: float | None,
    note: str = "",
    data: dict[str, Any] | None = None,
    at_least: bool = True,
) -> Row:
    """A row from per-repeat seconds: ratio = median baseline time / median prunetui time."""
    b, p = Stat.of(base_s), Stat.of(new_s)
    ratio = b.median / p.median
    passed = None if target is None else (ratio >= target if at_least else ratio <= target)
    tgt = "-" if target is None else (f">= {target:g}x" if at_least else f"<= {target:g}x")
    return Row(benchmark, b.fmt("s"), p.fmt("s"), ratio, tgt, passed, note,
               {"baseline_s": asdict(b), "prunetui_s": asdict(p), **(data or {})})


# ---------------------------------------------------------------------------------------------
# Peak memory (resident set) of the current process, Linux only.


def status_bytes(key: str) -> int:
    """``VmRSS`` / ``VmHWM`` ... of this process from /proc/self/status, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def reset_peak() -> bool:
    """Reset the peak resident size (VmHWM) to the current one; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run_child(args: list[str], timeout: float = 600.0) -> dict[str, Any]:
    """Run ``python -m <args>`` in a fresh interpreter (same environment, same venv) and parse
    the JSON object on the last line of its stdout."""
    proc = subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout,
        cwd=ROOT, env=os.environ.copy(),
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {' | '.join(tail)}")
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"{' '.join(args)} printed no result")
    out: dict[str, Any] = json.loads(lines[-1])
    return out


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None

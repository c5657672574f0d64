"""Deterministic fault injection for the reliability tests: stop this process at a chosen point.

``PRUNETUI_KILL_AT=KIND:N`` makes the process SIGKILL itself at the N-th (1-based) point of that
kind it reaches, so a test kills a run at every boundary exactly once, whatever the machine's
speed, instead of sleeping a random time. ``PRUNETUI_PAUSE_AT=KIND:N`` with
``PRUNETUI_PAUSE_FILE=PATH`` holds the process there instead: it creates ``PATH.reached`` and
waits until ``PATH.go`` exists, so a test can act while another process sits at a known point.
Kinds:

* ``event``  — an engine event other than progress (batches, pruning steps), after every
  listener has had it;
* ``commit`` — a store write transaction, right after its COMMIT;
* ``write``  — an artifact (checkpoint, weights, histograms) written to its temporary file,
  before it is renamed into place.

Unset (every normal use), each point costs one comparison.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

KILL, PAUSE, PAUSE_FILE = "PRUNETUI_KILL_AT", "PRUNETUI_PAUSE_AT", "PRUNETUI_PAUSE_FILE"
KINDS = ("event", "commit", "write")
PAUSE_LIMIT_SECONDS = 300.0  # a test that never says go must not leave a process behind

_kill: tuple[str, int] | None = None
_pause: tuple[str, int] | None = None
_counts: dict[str, int] = {}


def _parse(spec: str) -> tuple[str, int] | None:
    kind, _, n = spec.partition(":")
    if kind not in KINDS or not n.isdigit() or int(n) < 1:
        return None
    return kind, int(n)


def reload() -> None:
    """Read the variables again and restart the counts (tests in one process)."""
    global _kill, _pause
    _kill = _parse(os.environ.get(KILL, ""))
    _pause = _parse(os.environ.get(PAUSE, "")) if os.environ.get(PAUSE_FILE) else None
    _counts.clear()


def point(kind: str) -> None:
    """Pass one point of ``kind``: SIGKILL this process, or hold it, if it is the chosen one."""
    if _kill is None and _pause is None:
        return
    n = _counts[kind] = _counts.get(kind, 0) + 1
    if _kill == (kind, n):
        os.kill(os.getpid(), signal.SIGKILL)
    if _pause == (kind, n):
        base = os.environ[PAUSE_FILE]
        Path(base + ".reached").touch()
        end = time.monotonic() + PAUSE_LIMIT_SECONDS
        while not Path(base + ".go").exists() and time.monotonic() < end:
            time.sleep(0.02)


reload()

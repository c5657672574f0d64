"""One cell of a sweep: run it, and say how it ended (``CellOutcome``), whatever executes it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prunetui.core.config import RunConfig
from prunetui.core.errors import PrunetuiError, RunCancelled, RunHeldElsewhere, StoreError
from prunetui.core.events import CancelToken, Emit, Event, RunFinished
from prunetui.core.status import RunStatus

if TYPE_CHECKING:
    from prunetui.core.run.result import RunResult
    from prunetui.core.store import Store


@dataclass(frozen=True)
class CellOutcome:
    """How one cell of a sweep ended: its status, why (for any but finished/cached), and the
    result when there is one."""

    config: RunConfig
    status: RunStatus
    error: str = ""
    result: RunResult | None = None


def run_cell(config: RunConfig, store: Store, data_dir: Path | None, download: bool,
             emit: Emit, cancel: CancelToken | None, *, wait: bool = True) -> CellOutcome:
    """Run one cell, turning its failure into an outcome (the sweep goes on); Ctrl-C and
    cancellation propagate. Held by another process: ``ELSEWHERE`` at once, or with ``wait``
    wait for it and report what it stored."""
    from prunetui.core.run.engine import run
    from prunetui.core.store import failed_attempt_status

    try:
        already = store.get(config.run_id)
    except StoreError as e:  # e.g. its stored row is unreadable: this cell fails, not the sweep
        return CellOutcome(config, RunStatus.FAILED, str(e))
    cached = False

    def watch(event: Event) -> None:
        nonlocal cached  # the stored result was reported: stored earlier or meanwhile
        cached = cached or (isinstance(event, RunFinished) and event.cached)
        emit(event)

    try:
        result = run(config, store=store, data_dir=data_dir, download=download, emit=watch,
                     cancel=cancel, wait=wait)
    except RunCancelled:
        raise
    except RunHeldElsewhere as e:
        return CellOutcome(config, RunStatus.ELSEWHERE, str(e))
    except PrunetuiError as e:
        status = failed_attempt_status(already, store.get(config.run_id), RunStatus.REFUSED)
        return CellOutcome(config, status, str(e))
    except Exception as e:
        status = failed_attempt_status(already, store.get(config.run_id), RunStatus.FAILED)
        return CellOutcome(config, status, f"{type(e).__name__}: {e}")
    return CellOutcome(config, RunStatus.CACHED if cached else RunStatus.FINISHED,
                       result=result)

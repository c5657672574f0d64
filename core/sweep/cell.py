"""One cell of a sweep: run it, and say how it ended (``CellOutcome``), whatever executes it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunetui.core.config import RunConfig
from prunetui.core.errors import PrunetuiError
from prunetui.core.events import CancelToken, Emit


@dataclass
class CellOutcome:
    """How one cell of a sweep ended."""

    config: RunConfig
    status: str  # finished | cached | failed | cancelled | diverged | oom | interrupted
    error: str = ""


def run_cell(config: RunConfig, store: Any, data_dir: Path | None, download: bool,
             emit: Emit, cancel: CancelToken | None) -> CellOutcome:
    """Run one cell, turning its failure into an outcome (the sweep goes on); Ctrl-C and
    cancellation propagate."""
    from prunetui.core import experiment
    from prunetui.core.errors import RunCancelled
    from prunetui.core.store import failed_attempt_status

    already = store.get(config.run_id)
    try:
        experiment.run(config, store=store, data_dir=data_dir, download=download, emit=emit,
                       cancel=cancel)
    except RunCancelled:
        raise
    except PrunetuiError as e:
        status = failed_attempt_status(already, store.get(config.run_id), "failed")
        return CellOutcome(config, status, str(e))
    except Exception as e:
        return CellOutcome(config, "failed", f"{type(e).__name__}: {e}")
    cached = already is not None and already.status == "finished"
    return CellOutcome(config, "cached" if cached else "finished")

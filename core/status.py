"""How a run stands, and how one attempt at it ended: one enum for the store, the sweep and
every face. No torch.

A ``StrEnum`` so that the stored text, JSON and comparisons with old strings stay as they were:
``RunStatus.FINISHED == "finished"``.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """A run's status in the store, or the outcome of one request for it."""

    # Stored in the runs table.
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    DIVERGED = "diverged"
    OOM = "oom"
    # Outcomes of one request that the store never holds.
    CACHED = "cached"  # already finished: its stored result was reported
    REFUSED = "refused"  # refused before anything was written (bad data, a bad checkpoint)
    ELSEWHERE = "elsewhere"  # another process holds the run right now

    @property
    def stored(self) -> bool:
        """Whether the store can hold this status."""
        return self in STORED

    @property
    def kept(self) -> bool:
        """A stored result that a new request reports instead of running again: finished, or
        diverged (training is seeded: it would diverge the same way)."""
        return self in (RunStatus.FINISHED, RunStatus.DIVERGED)

    @property
    def ok(self) -> bool:
        """An outcome that left a finished result: run now, or earlier."""
        return self in (RunStatus.FINISHED, RunStatus.CACHED)

    @property
    def label(self) -> str:
        """How a person reads it in a list."""
        return _LABELS.get(self, self.value)


STORED = frozenset({RunStatus.RUNNING, RunStatus.FINISHED, RunStatus.FAILED,
                    RunStatus.CANCELLED, RunStatus.INTERRUPTED, RunStatus.DIVERGED,
                    RunStatus.OOM})
# Stored statuses, in the order lists and filters name them.
STORED_ORDER = tuple(s for s in RunStatus if s in STORED)

_LABELS = {RunStatus.CACHED: "already stored", RunStatus.ELSEWHERE: "running elsewhere",
           RunStatus.OOM: "out of memory"}

"""The small family of errors prunetui raises on purpose.

Each face shows them as one line (CLI) or one notification (TUI); anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class PrunetuiError(Exception):
    """Base of every error prunetui raises deliberately; ``exit_code`` is what the CLI returns."""

    exit_code = 1


class ConfigError(PrunetuiError):
    """Bad input: an unknown name, a value out of range, an impossible combination."""

    exit_code = 2


class DataError(ConfigError):
    """A dataset that cannot be loaded: missing or corrupt files, no network to download."""


class StoreError(PrunetuiError):
    """A results store that cannot be used: not SQLite, a future schema, unwritable."""

    exit_code = 2


class CheckpointError(PrunetuiError):
    """A checkpoint that is corrupt, unsafe to load, or does not match its config."""

    exit_code = 2


class RunCancelled(PrunetuiError):
    """Raised inside the engine when the cancel token is set; the run is stored as cancelled."""

    exit_code = 130


class StoredDivergence(PrunetuiError):
    """The run is stored as diverged: training is seeded, so running it again would only
    diverge again (``force`` does it anyway)."""


class RunDiverged(PrunetuiError):
    """A NaN or infinite loss: the run stops and is stored as diverged."""

    def __init__(self, epoch: int, loss: float) -> None:
        super().__init__(f"loss became {loss} in epoch {epoch}; stopped the run as diverged")
        self.epoch = epoch
        self.loss = loss


def choices_message(what: str, value: object, choices: list[str] | tuple[str, ...]) -> str:
    """One line naming a bad value and the valid choices, the format every face uses."""
    return f"unknown {what} {value!r}; choose one of: {', '.join(choices)}"


class RunHeldElsewhere(PrunetuiError):
    """Another process holds the run's lock right now (running it, or about to)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} is being run by another process right now; wait for "
                         "it or run something else")
        self.run_id = run_id

"""The small family of errors prunetui raises on purpose.

Each face shows them as one line (CLI) or one notification (TUI); anything else is a bug and
keeps its traceback.

An error about one setting names it structurally (``field``, ``value``, ``hint``) instead of
in words, so each face names the setting its own way (the CLI by its flag, the app by its
form label, a sweep file by its key) and the app can put the focus on it. ``str(error)``
names it by its key (``post_epochs``), the spelling of sweep files and ``--set``.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Callable, Sequence

# How a face names a field: ``post_epochs`` → ``--post-epochs`` (CLI) or ``Epochs`` (app).
Namer = Callable[[str], str]


class _Missing(enum.Enum):
    """No value given (an enum member: the same object again after pickling, which errors
    from sweep worker processes and Ray tasks go through)."""

    NO_VALUE = enum.auto()


_NO_VALUE = _Missing.NO_VALUE


def _key(field: str) -> str:
    return field


class PrunetuiError(Exception):
    """Base of every error prunetui raises deliberately; ``exit_code`` is what the CLI returns.

    ``PrunetuiError("one line")`` is a plain message. With ``field`` (a setting's key, a grid
    axis such as ``pruners``, or ``data_dir``) the message is made from its parts:

    - ``choices``: "unknown FIELD 'value'; choose one of: a, b"
    - ``problem``: "FIELD 'value' PROBLEM"
    - neither: "invalid FIELD 'value'"

    then "; HINT" when a hint is given. ``message``, when given with a field, replaces the
    first part. ``{field}`` in ``message`` or ``hint`` stands for the field's name in the face
    that shows it (``render``). ``where`` is a prefix naming the part of a sweep the setting
    belongs to (``settings for mag``); ``pruner`` the pruner whose override it is, if any.
    """

    exit_code = 1

    def __init__(self, message: str = "", *, field: str | None = None,
                 value: object = _NO_VALUE, problem: str = "", hint: str = "",
                 choices: Sequence[str] | None = None, where: str = "",
                 pruner: str | None = None) -> None:
        self.message = message
        self.field = field
        self.value = value
        self.problem = problem
        self.hint = hint
        self.choices = tuple(choices) if choices is not None else None
        self.where = where
        self.pruner = pruner
        super().__init__(self.render())

    def render(self, name: Namer = _key) -> str:
        """The one-line message, naming ``field`` as ``name(field)``."""
        label = name(self.field) if self.field is not None else ""
        shown = "" if self.value is _NO_VALUE else f" {shown_value(self.value)}"
        if self.message:
            text = self.message
        elif self.field is None:
            text = ""
        elif self.choices is not None:
            text = f"unknown {label}{shown}; choose one of: {', '.join(self.choices)}"
        elif self.problem:
            text = f"{label}{shown} {self.problem}"
        else:
            text = f"invalid {label}{shown}"
        if self.hint:
            text += f"; {self.hint}"
        if self.field is not None:
            text = text.replace("{field}", label)
        return f"{self.where}: {text}" if self.where else text

    def within(self, where: str, pruner: str | None = None) -> PrunetuiError:
        """A copy said about a part of a sweep: ``where`` prefixes the line (``settings for
        mag``), ``pruner`` names the pruner whose override holds the bad value."""
        new = copy.copy(self)
        new.where, new.pruner = where, pruner
        new.args = (new.render(),)
        return new


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
    """A NaN or infinite loss, or a value that overflowed (an lr no float holds): the run
    stops and is stored as diverged. ``problem`` says what happened when it is not the loss."""

    def __init__(self, epoch: int, loss: float, problem: str = "") -> None:
        super().__init__(f"{problem or f'loss became {loss}'} in epoch {epoch}; stopped the "
                         "run as diverged")
        self.epoch = epoch
        self.loss = loss


def shown_value(value: object, limit: int = 200) -> str:
    """``repr(value)``, cut short past ``limit`` characters: a 100,000-character argument or
    a 400-digit number is named, not echoed."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = (f"{len(value)} characters" if isinstance(value, str)
            else f"{len(text.lstrip('-'))} digits" if isinstance(value, int)
            else f"{len(text)} characters")
    return f"{text[:30]}… ({size})"


def choices_message(what: str, value: object, choices: list[str] | tuple[str, ...]) -> str:
    """One line naming a bad value and the valid choices, the format every face uses."""
    return f"unknown {what} {value!r}; choose one of: {', '.join(choices)}"


class RunHeldElsewhere(PrunetuiError):
    """Another process holds the run's lock right now (running it, or about to)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} is being run by another process right now; wait for "
                         "it or run something else")
        self.run_id = run_id

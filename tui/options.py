"""The CLI's setting options, generated from ``core.config.SETTINGS``: the Typer parameters of
``run``, ``inspect`` and ``sweep``'s grid axes, the flag a field is named by in error lines,
and the README's option table.

Typer reads a command's parameters from ``inspect.signature``; ``with_settings`` gives a
command function a ``__signature__`` whose ``**settings`` is replaced by one keyword parameter
per setting, so the options are declared once, on the ``RunConfig`` fields. Nothing here
imports more than typer itself (the light commands' start-up budget, bench/NOTES.md §5).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Annotated, Any

import typer

from prunetui.core.config import AXES, DEFAULTS, ORDERED, SETTINGS, Setting
from prunetui.core.errors import ConfigError

_CHOICES_IN_HELP = 8  # longer lists (models) are named by their listing command instead


def flag_name(field: str) -> str:
    """How the CLI names a field in an error line: its option (``--post-epochs``)."""
    if field in SETTINGS:
        return SETTINGS[field].cli_flag
    if field in AXES:
        return f"--{field}"
    return "--" + field.replace("_", "-")


def key_name(field: str) -> str:
    """How a sweep names a field: its key in ``--set`` and in the sweep file."""
    return field


def option_help(s: Setting) -> str:
    """A setting's ``--help`` line: its help, its choices when few, its default in words."""
    text = s.help
    if s.choices is not None and len(s.choices) <= _CHOICES_IN_HELP:
        text += " " + " | ".join(s.choice_list()) + "."
    if s.default_help:
        text += f" [default: {s.default_help}]."
    return text


def _parameter(s: Setting, default: Any) -> inspect.Parameter:
    help_text = option_help(s)
    if s.kind == "switch":
        decls = [s.cli_flag if not default else f"{s.cli_flag}/--no-{s.cli_flag[2:]}"]
        hint: Any = Annotated[bool, typer.Option(*decls, help=help_text)]
    elif s.kind == "list":
        # Strings, split here: the option may be repeated (--lr-drops 60 --lr-drops 120) or
        # hold a comma list (--lr-drops 60,120), as --set does.
        hint = Annotated[list[str] | None, typer.Option(
            s.cli_flag, help=help_text, metavar="<int>[,<int>…]", show_default=False)]
        default = None
    else:
        base: Any = {int: int, float: float}.get(s.number, str)
        hint = Annotated[base | None if s.optional else base, typer.Option(
            s.cli_flag, help=help_text, show_default=not s.default_help)]
    return inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=hint)


def _axis_parameter(axis: str, s: Setting) -> inspect.Parameter:
    fill = {"required": "required, or from FILE", "all": "all",
            "default": f"{getattr(DEFAULTS, s.name)}"}[s.axis_default]
    example = (f", e.g. {','.join(s.choice_list()[:2])}" if s.choices is not None
               else "")
    help_text = f"Comma list of {s.cli_flag} values{example} [default: {fill}]."
    hint = Annotated[str | None, typer.Option(f"--{axis}", help=help_text, show_default=False)]
    return inspect.Parameter(axis, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=hint)


def with_parameters(params: Iterable[inspect.Parameter]) -> Callable[[Any], Any]:
    """Decorator: the function's ``**kwargs`` replaced by ``params`` (put first) in the
    signature Typer reads."""
    def attach(func: Any) -> Any:
        # Keyword-only, all of them: Typer passes every parameter by name, and the generated
        # ones may not precede positional-or-keyword ones in a signature.
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
               for p in inspect.signature(func, eval_str=True).parameters.values()
               if p.kind != inspect.Parameter.VAR_KEYWORD]
        func.__signature__ = inspect.Signature([*params, *own])
        return func
    return attach


def setting_parameters(names: Iterable[str], **defaults: Any) -> list[inspect.Parameter]:
    """One option per setting in ``names`` (its default from ``RunConfig`` unless given)."""
    wanted = set(names)
    return [_parameter(s, defaults.get(s.name, getattr(DEFAULTS, s.name)))
            for s in ORDERED if s.name in wanted]


def axis_parameters() -> list[inspect.Parameter]:
    """``--models``, ``--datasets``, …: one comma-list option per grid axis."""
    return [_axis_parameter(axis, s) for axis, s in AXES.items()]


def settings_from_options(values: dict[str, Any]) -> dict[str, Any]:
    """The RunConfig keywords from parsed setting options (list options joined and split)."""
    out = dict(values)
    for name, value in values.items():
        if SETTINGS[name].kind == "list":
            out[name] = _int_list(name, value or [])
    return out


def _int_list(name: str, items: list[str]) -> tuple[int, ...]:
    tokens = [t for item in items for t in item.replace(",", " ").split()]
    try:
        return tuple(int(t) for t in tokens)
    except ValueError:
        raise ConfigError(field=name, value=",".join(items),
                          hint="give integers, repeated or comma-separated") from None


def axis_values(axis: str, text: str) -> list[Any]:
    """``--models fc,vgg16`` as a list of the axis field's values."""
    s = AXES[axis]
    items = [v.strip() for v in text.split(",") if v.strip()]
    kind: type = {int: int, float: float}.get(s.number, str)
    try:
        return [kind(v) for v in items]
    except ValueError:
        raise ConfigError(f"invalid {axis} {text!r}; give a comma-separated list of "
                          f"{kind.__name__} values", field=axis, value=text) from None


# -- README ------------------------------------------------------------------------------------


def options_markdown() -> str:
    """The README's table of run options, one row per setting, grouped as the app groups
    them (``tests/test_readme.py`` checks that the README holds exactly this)."""
    rows = ["| option | default | meaning |", "|---|---|---|"]
    group = ""
    for s in ORDERED:
        if s.group != group:
            group = s.group
            rows.append(f"| **{group}** | | |")
        default = getattr(DEFAULTS, s.name)
        shown = s.default_help or ("off" if s.kind == "switch" else
                                   "none" if s.kind == "list" and not default
                                   else f"`{default}`")
        meaning = s.help
        if s.choices is not None and len(s.choices) <= _CHOICES_IN_HELP:
            meaning += " " + ", ".join(f"`{c}`" for c in s.choice_list()) + "."
        rows.append(f"| `{s.cli_flag}` | {shown} | {meaning} |")
    return "\n".join(rows)

"""The README's reproduce-a-report commands: the CLI sweep and the TOML file are the same runs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from prunetui.core.sweep import SweepSpec, load_toml, parse_sets

ROOT = Path(__file__).resolve().parents[1]


def _readme_sweep_args() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("## Reproduce a report", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    first = re.split(r"\n(?=prunetui )", block.replace("\\\n", " ").strip())[0]
    return shlex.split(first)[2:]  # drop "prunetui sweep"


def test_readme_cli_sweep_equals_example_toml() -> None:
    args = _readme_sweep_args()
    opts: dict[str, str] = {}
    sets: list[str] = []
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag == "--set":
            sets.append(value)
        else:
            opts[flag.lstrip("-")] = value
    shared, per = parse_sets(sets)
    spec = SweepSpec(opts["models"].split(","), opts["datasets"].split(","),
                     opts["pruners"].split(","), [float(c) for c in
                                                  opts["compressions"].split(",")],
                     [1], settings=shared, overrides=per, name=opts["name"])
    toml = load_toml(ROOT / "examples" / "vgg16-cifar10.toml")
    assert [c.run_id for c in spec.configs()] == [c.run_id for c in toml.configs()]
    assert len(toml.configs()) == 30


def test_fc_mnist_example_loads() -> None:
    configs = load_toml(ROOT / "examples" / "fc-mnist.toml").configs()
    assert {c.pruner: c.post_epochs for c in configs}["synflow"] == 150


def test_readme_option_table_is_the_settings_metadata() -> None:
    """The README's option table says what `run --help` and the app say: one row per
    setting, from core/config.py. Regenerate it with
    `python -c 'from prunetui.tui.options import options_markdown as m; print(m())'`."""
    from prunetui.tui.options import options_markdown

    text = (ROOT / "README.md").read_text()
    table = text.split("<!-- options:start", 1)[1].split("-->", 1)[1]
    table = table.split("<!-- options:end -->", 1)[0].strip()
    assert table == options_markdown()

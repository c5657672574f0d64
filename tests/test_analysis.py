"""Collapse analytics: the compression range parser, pruning at init over a grid (fc and the
small conv net, real behaviour), the critical compression, progress and cancellation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from datafiles import write_mnist

from prunetui.core.analysis import (
    CollapseCurve,
    CollapsePoint,
    Progress,
    collapse_curve,
    parse_compressions,
)
from prunetui.core.config import RunConfig
from prunetui.core.errors import ConfigError, RunCancelled
from prunetui.core.events import CancelToken
from prunetui.core.figures import LayerProfile

FC = RunConfig(model="fc", dataset="mnist", device="cpu")


# -- the range parser ------------------------------------------------------------------------


def test_a_range_includes_its_stop_with_clean_values() -> None:
    cs = parse_compressions("0:4:0.25")
    assert cs == [i / 4 for i in range(17)]
    tenths = parse_compressions("0:1:0.1")
    assert tenths[3] == 0.3 and tenths[-1] == 1.0 and len(tenths) == 11  # not 0.30000000000000004
    assert parse_compressions("0:1:0.3") == [0.0, 0.3, 0.6, 0.9]  # 1.2 would pass the stop
    assert parse_compressions("2") == [2.0]
    assert parse_compressions("1, 0.5, 1:2:0.5") == [0.5, 1.0, 1.5, 2.0]


@pytest.mark.parametrize(("text", "says"), [
    ("0:4", "invalid compression range '0:4'; give start:stop:step"),
    ("a:b:c", "invalid compression range 'a:b:c': not a number"),
    ("0:4:0", "the step must be > 0"),
    ("0:4:-1", "the step must be > 0"),
    ("4:0:1", "stop 0 is below start 4"),
    ("-1", "invalid compression -1 in '-1'; it must be >= 0"),
    ("1,,2", "an empty item"),
    ("", "an empty item"),
    ("nan", "not a finite number"),
    ("0:inf:1", "not a finite number"),
    ("0:100:0.01", "more than 1000 values"),
])
def test_bad_ranges_are_one_line_naming_the_bad_part(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=r"^[^\n]*$") as e:
        parse_compressions(text)
    assert says in str(e.value)


# -- pruning over a grid ---------------------------------------------------------------------


def test_rand_on_fc_disconnects_before_any_layer_empties() -> None:
    # Real behaviour (seed 1): at c = 2.5 random pruning has cut every path through the
    # 100-wide layers with weights left in each; the first layer empties by 3.25.
    curve = collapse_curve(FC.with_(pruner="rand"), [3.25, 0, 2, 2.5, 2])
    assert curve.layers == ("layers.0", "layers.2", "layers.4", "layers.6", "layers.8",
                            "layers.10")
    assert [p.compression for p in curve.points] == [0.0, 2.0, 2.5, 3.25]
    dense, c2, c25, c325 = curve.points
    assert dense.density == 1.0 and dense.flop_ratio == 1.0 and not dense.collapsed
    assert dense.layer_density == (1.0,) * 6
    assert c2.density == pytest.approx(0.01, rel=1e-3) and not c2.collapsed
    assert c25.disconnected and c25.collapsed and c25.empty_layers == ()
    assert c325.empty_layers and c325.collapsed
    assert all(0 < p.flop_ratio < 1 for p in (c2, c25, c325))
    crit = curve.critical
    assert (crit.value, crit.first, crit.recovered) == (2.0, 2.5, ())
    assert crit.text() == "2"
    by_empty = curve.critical_by_empty_layer
    assert (by_empty.value, by_empty.first) == (2.5, 3.25)
    assert curve.profiles()[2] == LayerProfile(2.5, c25.layer_density, True)
    assert json.loads(json.dumps(curve.to_dict()))["critical"]["value"] == 2.0


def test_progress_counts_steps_and_compressions() -> None:
    seen: list[Progress] = []
    curve = collapse_curve(FC.with_(pruner="synflow", prune_iterations=3), [0, 1, 4],
                           on_progress=seen.append)
    # Three SynFlow iterations are too few (the paper's point): each layer's scores sum to
    # the same total flow, so the last step keeps the smallest layer's weights and empties
    # the rest; with its 100 iterations fc survives c = 4. (With the reference's fc init,
    # PyTorch's uniform one, three steps already empty layers at c = 1.)
    assert (curve.critical.value, curve.critical.first) == (0.0, 1.0)
    assert len(curve.points[2].empty_layers) == 5
    assert seen[0] == Progress(0, 3, 0.0, 0, 0)  # the dense point prunes nothing
    assert seen[1] == Progress(1, 3, 0.0, 0, 0)
    at_one = [(p.done, p.step) for p in seen if p.compression == 1.0]
    assert at_one == [(1, 0), (1, 1), (1, 2), (1, 3), (2, 3)]
    assert seen[-1] == Progress(3, 3, 4.0, 3, 3)


def test_cancel_stops_inside_the_pruning_of_a_compression() -> None:
    token = CancelToken()
    seen: list[Progress] = []

    def on_progress(p: Progress) -> None:
        seen.append(p)
        if p.compression == 2.0 and p.step == 2:
            token.cancel()

    with pytest.raises(RunCancelled):
        collapse_curve(FC.with_(pruner="synflow", prune_iterations=5), [1, 2, 3],
                       on_progress=on_progress, cancel=token)
    assert seen[-1] == Progress(1, 3, 2.0, 2, 5)  # stopped at the next step, not later


def test_a_compression_keeping_no_weight_is_refused_before_pruning() -> None:
    seen: list[Progress] = []
    with pytest.raises(ConfigError, match="compression 7 keeps no weight"):
        collapse_curve(FC.with_(pruner="rand"), [1, 7], on_progress=seen.append)
    assert seen == []
    with pytest.raises(ConfigError, match="no compressions"):
        collapse_curve(FC, [])
    with pytest.raises(ConfigError, match="unknown pruner 'nope'"):
        collapse_curve(FC.with_(pruner="nope"), [1])


def test_small_conv_net_mag_empties_its_classifier_first(tmp_path: Path) -> None:
    # Mag at init keeps the large-magnitude weights: the classifier's fan-in is large, its
    # weights small, and it is the first layer to empty (c = 2); SNIP (with data) holds on.
    root = write_mnist(tmp_path / "data", train=100, test=20)
    conv = RunConfig(model="conv", dataset="mnist", device="cpu")
    mag = collapse_curve(conv.with_(pruner="mag"), [0, 1, 2], data_dir=root, download=False)
    assert mag.layers == ("conv1", "conv2", "fc")
    assert mag.points[2].empty_layers == ("fc",) and mag.points[2].collapsed
    assert mag.critical.value == 1.0 and mag.critical_by_empty_layer.value == 1.0
    snip = collapse_curve(conv.with_(pruner="snip"), [1, 2], data_dir=root, download=False)
    assert not any(p.collapsed for p in snip.points)
    assert snip.critical.text() == "≥ 2 (no collapse up to 2)"


# -- the critical compression on hand-made grids ---------------------------------------------


def curve_of(broken: list[bool], start: float = 0.25) -> CollapseCurve:
    pts = tuple(CollapsePoint(start + 0.25 * i, 0.1, 0.1, (0.1,), (), b, b, 0.0)
                for i, b in enumerate(broken))
    return CollapseCurve("fc", "mnist", "rand", ("l",), pts)


def test_non_monotone_collapse_is_judged_by_the_first() -> None:
    crit = curve_of([False, False, True, False, True]).critical
    assert (crit.value, crit.first, crit.recovered) == (0.5, 0.75, (1.0,))
    assert crit.text() == "0.5"


def test_collapse_at_the_first_point_and_never() -> None:
    first = curve_of([True, True]).critical
    assert first.value is None and first.first == 0.25
    assert first.text() == "< 0.25 (collapsed at the smallest compression tested)"
    never = curve_of([False, False, False]).critical
    assert never.value is None and never.first is None
    assert never.text() == "≥ 0.75 (no collapse up to 0.75)"


def test_importing_the_study_modules_loads_neither_torch_nor_matplotlib() -> None:
    # The CLI imports them to parse options and list presets: that must stay instant.
    code = ("import sys, prunetui.core.analysis, prunetui.core.published, "
            "prunetui.core.figures; print('torch' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]

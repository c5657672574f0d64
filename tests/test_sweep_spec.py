"""Sweep grids: expansion, per-pruner overrides, TOML and --set agree, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from prunetui.core import catalog
from prunetui.core.errors import ConfigError
from prunetui.core.sweep import SweepSpec, coerce, load_toml, parse_sets, save_toml, to_toml

TOML = """
name = "ref"
[grid]
models = ["fc"]
datasets = ["digits"]
pruners = ["rand", "mag", "grasp"]
compressions = [0.5, 1, 2]
seeds = [1, 2]
[settings]
post_epochs = 3
optimizer = "momentum"
lr = 0.1
lr_drops = [2]
[pruner.grasp]
post_epochs = 5
[pruner.mag]
pre_epochs = 2
"""


def test_grid_expansion_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text(TOML)
    spec = load_toml(f)
    configs = spec.configs()
    assert len(configs) == 1 * 1 * 3 * 3 * 2
    grasp = [c for c in configs if c.pruner == "grasp"]
    mag = [c for c in configs if c.pruner == "mag"]
    rand = [c for c in configs if c.pruner == "rand"]
    assert {c.post_epochs for c in grasp} == {5}
    assert {c.pre_epochs for c in mag} == {2} and {c.post_epochs for c in mag} == {3}
    assert {c.pre_epochs for c in rand} == {0}
    assert all(c.optimizer == "momentum" and c.lr_drops == (2,) for c in configs)
    assert all(c.sweep == "ref" for c in configs)
    assert len({c.run_id for c in configs}) == len(configs)


def test_toml_and_set_agree(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text(TOML)
    from_toml = load_toml(f).configs()
    shared, per = parse_sets(["post_epochs=3", "optimizer=momentum", "lr=0.1", "lr-drops=2",
                              "grasp.post_epochs=5", "mag.pre_epochs=2"])
    spec = SweepSpec(["fc"], ["digits"], ["rand", "mag", "grasp"], [0.5, 1.0, 2.0], [1, 2],
                     settings=shared, overrides=per, name="ref")
    assert [c.run_id for c in spec.configs()] == [c.run_id for c in from_toml]


@pytest.mark.parametrize(
    ("items", "needle"),
    [
        (["epochs=3"], "unknown setting 'epochs'"),
        (["foo.post_epochs=3"], "unknown pruner in --set 'foo'"),
        (["post_epochs=three"],
         "invalid post_epochs 'three'; it must be an integer from 0 to 1000000"),
        (["post_epochs"], "write KEY=VALUE"),
        (["amp=maybe"], "invalid amp 'maybe'; it must be true or false"),
        (["model=fc"], "'model' is an axis of the grid, not a setting: use --models"),
    ],
)
def test_bad_sets(items: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_sets(items)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[grid\nmodels=", "is not valid TOML"),
        ("[grid]\nmodels=['fc']\ndatasets=['digits']\npruners=['rand']\ncompressions=['1']",
         "grid.compressions .* has '1'; expected"),
        ("[grid]\nmodels=['fc']\ndatasets=['digits']\npruners=['rand']",
         "has no grid.compressions; a sweep needs models, datasets, compressions"),
        ("[grid]\nmodels=['fc']\ndatasets=['digits']\npruners=['rand']\ncompressions=[1]\n"
         "[settings]\npost_epochs='ten'", "invalid post_epochs 'ten'"),
        ("[grid]\nmodels=['fc']\ndatasets=['digits']\npruners=['rand']\ncompressions=[1]\n"
         "[settings]\nepochs=3", "unknown setting 'epochs'"),
        ("[grid]\nmodels=['fc']\ndatasets=['digits']\npruners=['rand']\ncompressions=[1]\n"
         "[pruner.bogus]\npost_epochs=3", "unknown pruner in override 'bogus'"),
        ("[grids]\nx=1", "unknown table in s.toml 'grids'"),
        ("[grid]\nmodels=['vgg99']\ndatasets=['digits']\npruners=['rand']\ncompressions=[1]",
         "unknown model 'vgg99'"),
    ],
)
def test_bad_toml(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "s.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_toml(f).configs()


def test_minus_zero_and_zero_are_one_cell(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text("[grid]\nmodels=['fc']\ndatasets=['digits']\npruners=['rand']\n"
                 "compressions=[-0.0, 0, 1]")
    configs = load_toml(f).configs()
    assert [c.compression for c in configs] == [0.0, 1.0]
    assert str(configs[0].compression) == "0.0"
    listed = SweepSpec(["fc"], ["digits"], ["rand"], [-0.0, 0.0]).configs()
    assert [c.run_id for c in listed] == [configs[0].run_id]


def test_missing_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "none.toml")


def test_coerce_types() -> None:
    assert coerce("prune_iterations", "5") == 5
    assert coerce("lr_drops", "60,120") == (60, 120)
    assert coerce("amp", "true") is True
    assert coerce("lr", 1) == 1.0
    with pytest.raises(ConfigError):
        coerce("batch_size", True)


def test_a_saved_sweep_file_reads_back_as_the_same_runs(tmp_path: Path) -> None:
    """What the app saves is what `prunetui sweep FILE` reads: the same spec, the same ids,
    whatever the types (floats, booleans, integer lists, a name with quotes)."""
    f = tmp_path / "s.toml"
    f.write_text(TOML)
    spec = load_toml(f)
    spec.name = 'ref "quoted" \\ name'
    spec.settings.update(weight_decay=5e-4, amp=True, prune_iterations=None, device="cpu")
    spec.settings.pop("prune_iterations")
    out = tmp_path / "sub" / "saved.toml"
    save_toml(spec, out)
    again = load_toml(out)
    assert again == spec
    assert [c.run_id for c in again.configs()] == [c.run_id for c in spec.configs()]
    assert to_toml(again) == out.read_text()
    assert not [p for p in out.parent.iterdir() if p.name != "saved.toml"]  # no temp file


def test_saving_where_a_file_blocks_the_folder_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"cannot write .*file/s\.toml"):
        save_toml(SweepSpec(["fc"], ["digits"], compressions=[1.0]),
                  tmp_path / "file" / "s.toml")


def test_axes_left_out_take_their_defaults() -> None:
    spec = SweepSpec(models=["fc"], datasets=["digits"], compressions=[1.0])
    assert spec.grid["pruners"] == list(catalog.DEFAULT_PRUNERS) and spec.grid["seeds"] == [1]
    assert spec.grid["ablations"] == ["none"]
    assert len(spec.configs()) == len(catalog.DEFAULT_PRUNERS)
    with pytest.raises(ConfigError, match="a sweep needs models"):
        SweepSpec(datasets=["digits"], compressions=[1.0]).configs()
    with pytest.raises(TypeError, match="unknown axis 'widths'"):
        SweepSpec(widths=["none"])


def test_a_bad_override_names_its_pruner_and_field() -> None:
    spec = SweepSpec(["fc"], ["digits"], ["rand", "mag"], [1.0],
                     overrides={"mag": {"lr": -1.0}})
    with pytest.raises(ConfigError) as e:
        spec.configs()
    assert str(e.value) == "settings for mag: invalid lr -1.0; it must be a number > 0"
    assert (e.value.field, e.value.pruner) == ("lr", "mag")
    spec.grid["pruners"] = ["rand"]  # not in the grid: checked all the same
    with pytest.raises(ConfigError, match="settings for mag \\(not in the grid\\): invalid lr"):
        spec.configs()


def test_coerce_reads_each_settings_type_from_its_metadata() -> None:
    assert coerce("prune_iterations", "default") is None
    assert coerce("lr_drops", "60 120") == (60, 120) == coerce("lr_drops", [60, 120])
    assert coerce("keep_optimizer", "on") is True and coerce("amp", "No") is False
    assert coerce("optimizer", " sgd ") == "sgd"
    with pytest.raises(ConfigError, match="it must be an integer >= 1") as e:
        coerce("batch_size", "x")
    assert e.value.field == "batch_size"
    with pytest.raises(ConfigError, match="it must be a number in \\(0, 1\\]"):
        coerce("lr_drop_rate", "fast")

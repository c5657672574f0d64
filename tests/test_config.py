"""RunConfig: validation messages, identity hashing, defaults."""

from __future__ import annotations

import pytest

from prunetui.core import catalog
from prunetui.core.config import (
    AXES,
    EXECUTION_FIELDS,
    GROUPS,
    LEGACY_FIELDS,
    SETTINGS,
    RunConfig,
    check_leaves_weights,
    kept_count,
)
from prunetui.core.errors import ConfigError


def test_defaults_validate() -> None:
    assert RunConfig().validate().iterations == 100  # synflow's default


def test_iterations_default_per_pruner() -> None:
    assert RunConfig(pruner="snip").iterations == 1
    assert RunConfig(pruner="synflow", prune_iterations=7).iterations == 7


def test_run_id_same_config_same_id() -> None:
    a = RunConfig(model="fc", lr_drops=(3, 5), compression=1)
    b = RunConfig(model="fc", lr_drops=[3, 5], compression=1.0)  # type: ignore[arg-type]
    assert a.run_id == b.run_id and len(a.run_id) == 10


def test_minus_zero_compression_is_the_dense_run() -> None:
    dense = RunConfig(compression=0)
    for c in (-0.0, float("-0"), -0):
        config = RunConfig(compression=c)
        assert config.run_id == dense.run_id and str(config.compression) == "0.0"
    assert dense.run_id == "85af94376b"  # compression 0's id is unchanged


def test_run_id_ignores_where_it_runs() -> None:
    a = RunConfig()
    assert a.run_id == a.with_(device="cpu", checkpoint_every=5, timing_repeats=9,
                               sweep="x").run_id


def test_run_id_explicit_default_iterations_equal() -> None:
    assert RunConfig(pruner="synflow", prune_iterations=100).run_id == RunConfig().run_id


@pytest.mark.parametrize("field", ["compression", "seed", "pruner", "post_epochs", "lr", "amp"])
def test_run_id_changes_with_results_fields(field: str) -> None:
    base = RunConfig()
    value = {"compression": 2.0, "seed": 2, "pruner": "snip", "post_epochs": 3, "lr": 0.1,
             "amp": True}[field]
    assert base.with_(**{field: value}).run_id != base.run_id


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"model": "vgg99"}, "unknown model 'vgg99'; choose one of: fc, conv"),
        ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
        ({"pruner": "magnitude"}, "unknown pruner 'magnitude'; choose one of: rand, mag"),
        ({"optimizer": "lbfgs"}, "unknown optimizer 'lbfgs'"),
        ({"scope": "layer"}, "unknown scope 'layer'; choose one of: global, local"),
        ({"schedule": "cubic"}, "unknown schedule 'cubic'"),
        ({"device": "tpu"}, "invalid device 'tpu'"),
        ({"compression": -1.0}, "invalid compression -1.0"),
        ({"compression": float("nan")}, "invalid compression nan"),
        ({"post_epochs": -1}, "invalid post_epochs -1; it must be an integer from 0 to 1000000"),
        ({"batch_size": 0}, "invalid batch_size 0; it must be an integer >= 1"),
        ({"test_batch_size": -5}, "invalid test_batch_size -5"),
        ({"prune_iterations": 0}, "invalid prune_iterations 0"),
        ({"lr": 0.0}, "invalid lr 0.0"),
        ({"lr_drop_rate": 2.0}, "invalid lr_drop_rate 2.0; it must be a number in (0, 1]"),
        ({"lr_drops": (5, 3)}, "invalid lr_drops [5, 3]; give increasing epochs"),
        ({"lr_drops": (3,), "post_epochs": 0}, "lr_drops [3] given, but there are no epochs"),
        ({"seed": -1}, "invalid seed -1; it must be an integer from 0 to 4294967295"),
        ({"seed": 2**70}, "invalid seed 1180591620717411303424"),
        ({"amp": "yes"}, "invalid amp 'yes'; it must be true or false"),
        ({"lr": True}, "invalid lr True; it must be a number > 0"),
        ({"batch_size": 2.5}, "invalid batch_size 2.5; it must be an integer >= 1"),
        ({"weight_decay": -0.1}, "invalid weight_decay -0.1"),
        ({"model": "vgg16", "dataset": "mnist"}, "model 'vgg16' needs 32x32 or 64x64 inputs"),
        ({"model": "resnet20", "dataset": "digits"}, "use it with: cifar10, cifar100"),
    ],
)
def test_validation_messages(changes: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        RunConfig(**changes).validate()  # type: ignore[arg-type]
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_from_dict_rejects_unknown_key() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'epochs'"):
        RunConfig.from_dict({"epochs": 3})


def test_roundtrip_dict() -> None:
    c = RunConfig(model="conv", dataset="digits", lr_drops=(2,))
    assert RunConfig.from_dict(c.to_dict()) == c


def test_kept_count_and_leaves_weights() -> None:
    assert kept_count(1000, 1) == 100
    assert kept_count(266_200, 2) == 2662
    check_leaves_weights(100, 2)  # keeps 1
    with pytest.raises(ConfigError, match="keeps no weight of 100 prunable ones"):
        check_leaves_weights(100, 2.5)


def test_catalog_models_need_32x32() -> None:
    assert catalog.MODELS["vgg16"].check_dataset(catalog.DATASETS["cifar10"]) is None
    assert catalog.MODELS["fc"].check_dataset(catalog.DATASETS["digits"]) is None


# fc's ids moved once, on purpose: its model revision 2 (the reference's init) enters the
# identity, so runs of the old init are never taken for new ones (old ids: 44136fa355,
# 3ee9cf50f3, ba36853f8e). vgg16's never moved.
@pytest.mark.parametrize(("changes", "run_id"), [
    ({}, "264cbdfe95"),
    ({"model": "vgg16", "dataset": "cifar10", "pruner": "mag", "compression": 1,
      "pre_epochs": 200, "keep_optimizer": True, "post_epochs": 100, "optimizer": "momentum",
      "lr": 0.1, "lr_drops": (60, 120), "weight_decay": 5e-4, "batch_size": 128,
      "device": "cuda", "amp": True}, "da792d86dd"),
    ({"model": "fc", "dataset": "digits", "pruner": "snip", "compression": 0.5, "seed": 3,
      "prune_iterations": 1}, "258a0947bc"),
    ({"prune_iterations": 100, "scope": "local", "schedule": "linear", "prune_bias": True,
      "shuffle_masks": True, "reinit": True, "sparse_inference": True, "timing_repeats": 9,
      "checkpoint_every": 3}, "0164569578"),
])
def test_known_run_ids_do_not_change(changes: dict[str, object], run_id: str) -> None:
    """Stored runs are found by these ids: a change to the fields, their defaults or the hash
    would orphan every store (ids computed before the settings metadata existed)."""
    assert RunConfig(**changes).run_id == run_id  # type: ignore[arg-type]


def test_every_field_but_the_sweep_label_is_a_described_setting() -> None:
    from dataclasses import fields

    assert [f.name for f in fields(RunConfig)
            if f.name not in ("sweep", *LEGACY_FIELDS)] == list(SETTINGS)
    labels = [s.label for s in SETTINGS.values()]
    assert len(set(labels)) == len(labels)  # the app names fields by their labels
    for s in SETTINGS.values():
        assert s.group in GROUPS and s.help.endswith(".") and len(s.label) <= 12, s
        assert s.cli_flag.startswith("--") and s.kind in ("switch", "select", "list", "input")
    assert sorted(EXECUTION_FIELDS) == ["checkpoint_every", "device", "timing_repeats"]
    assert {a: s.name for a, s in AXES.items()} == {
        "models": "model", "datasets": "dataset", "pruners": "pruner",
        "compressions": "compression", "ablations": "ablation", "seeds": "seed"}


def test_choices_come_from_the_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pruner added to the registry is valid everywhere the registry is read, with its
    own default iterations."""
    monkeypatch.setitem(catalog.PRUNERS, "new", catalog.PrunerInfo(
        "new", "New", needs_data=False, default_iterations=7, description="test"))
    config = RunConfig(pruner="new").validate()
    assert config.iterations == 7 and SETTINGS["pruner"].choice_list()[-1] == "new"
    assert RunConfig(pruner="new", prune_iterations=7).run_id == config.run_id


def test_an_error_names_its_field_for_each_face() -> None:
    with pytest.raises(ConfigError) as e:
        RunConfig(post_epochs=-1).validate()
    err = e.value
    assert (err.field, err.value) == ("post_epochs", -1)
    assert err.render(lambda f: SETTINGS[f].cli_flag) == (
        "invalid --post-epochs -1; it must be an integer from 0 to 1000000")
    assert err.render(lambda f: SETTINGS[f].label) == (
        "invalid Epochs -1; it must be an integer from 0 to 1000000")
    with pytest.raises(ConfigError) as e:
        RunConfig(model="vgg16", dataset="mnist").validate()
    assert e.value.field == "dataset"  # the app focuses the dataset for a model it cannot take
    plain = ConfigError("no field here")
    assert (str(plain), plain.field, plain.render(str.upper)) == ("no field here", None,
                                                                  "no field here")


def test_errors_keep_their_field_through_pickling() -> None:
    """Sweep workers and Ray tasks send errors back pickled: the app still focuses the
    field and words it its own way."""
    import pickle

    err = ConfigError(field="device", value="cuda", problem="is not available",
                      hint="set {field} to cpu").within("settings for mag", "mag")
    back = pickle.loads(pickle.dumps(err))
    assert (back.field, back.value, back.pruner) == ("device", "cuda", "mag")
    assert back.render(str.upper) == ("settings for mag: DEVICE 'cuda' is not available; set "
                                      "DEVICE to cpu")
    assert str(back) == "settings for mag: device 'cuda' is not available; set device to cpu"

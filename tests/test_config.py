"""RunConfig: validation messages, identity hashing, defaults."""

from __future__ import annotations

import pytest

from prunetui.core import catalog
from prunetui.core.config import RunConfig, check_leaves_weights, kept_count
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
        ({"post_epochs": -1}, "invalid post-epochs -1"),
        ({"batch_size": 0}, "invalid batch-size 0"),
        ({"test_batch_size": -5}, "invalid test-batch-size -5"),
        ({"prune_iterations": 0}, "invalid prune-iterations 0"),
        ({"lr": 0.0}, "invalid lr 0.0"),
        ({"lr_drop_rate": 2.0}, "invalid lr-drop-rate 2.0"),
        ({"lr_drops": (5, 3)}, "invalid lr-drops [5, 3]"),
        ({"weight_decay": -0.1}, "invalid weight-decay -0.1"),
        ({"model": "vgg16", "dataset": "mnist"}, "model 'vgg16' needs 32x32 or 64x64"),
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

"""The ``label_smoothing`` setting: declared once (core/config.py), applied in the training
loss (core/train.py); every face shows it from its declaration."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunetui.core.config import SETTINGS, RunConfig
from prunetui.core.errors import ConfigError
from prunetui.core.masks import attach_masks
from prunetui.core.train import train_epoch


def _epoch_loss(smoothing: float) -> float:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.randn(8, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    expected = nn.functional.cross_entropy(model(x), y, label_smoothing=smoothing).item()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # the loss of the weights as they are
    stats = train_epoch(model, [(x, y)], opt, attach_masks(model, False, False),
                        device=torch.device("cpu"), label_smoothing=smoothing)
    assert stats.loss == pytest.approx(expected, rel=1e-6)
    return stats.loss


def test_training_loss_is_smoothed_and_off_by_default() -> None:
    assert _epoch_loss(0.1) != pytest.approx(_epoch_loss(0.0))


def test_the_setting_is_checked_and_new_runs_keep_old_ids() -> None:
    assert SETTINGS["label_smoothing"].cli_flag == "--label-smoothing"
    assert RunConfig(label_smoothing=0.0).run_id == RunConfig().run_id
    assert RunConfig(label_smoothing=0.1).validate().run_id != RunConfig().run_id
    with pytest.raises(ConfigError, match=r"invalid label_smoothing 1\.0; it must be a number "
                                          r"in \[0, 1\)"):
        RunConfig(label_smoothing=1.0).validate()


def test_a_run_trains_with_it(tmp_path: object) -> None:
    from pathlib import Path

    from prunetui.core.run import engine
    from prunetui.core.store import Store

    base = RunConfig(model="fc", dataset="digits", pruner="rand", post_epochs=1, device="cpu",
                     timing_repeats=1)
    plain = engine.run(base, store=Store(Path(str(tmp_path)) / "a"))
    smooth = engine.run(base.with_(label_smoothing=0.2), store=Store(Path(str(tmp_path)) / "b"))
    assert plain.epochs[0].train_loss != smooth.epochs[0].train_loss

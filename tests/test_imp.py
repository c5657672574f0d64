"""Iterative magnitude pruning (lottery tickets): the rounds' counts, rewinding, stored rounds,
and a kill at every round boundary resuming to the uninterrupted result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from prunetui.core.config import RunConfig, kept_count
from prunetui.core.errors import ConfigError
from prunetui.core.masks import apply_masks
from prunetui.core.run import engine, imp, steps
from prunetui.core.run.build import seeded_build
from prunetui.core.store import Store

IMP = RunConfig(model="fc", dataset="digits", pruner="imp", compression=0.2, post_epochs=1,
                device="cpu", timing_repeats=1)


def test_each_round_prunes_a_fifth_of_the_rest_and_the_last_hits_the_count() -> None:
    assert imp.imp_counts(1000, 1.0, 0.2) == [1000, 800, 640, 512, 410, 328, 262, 210, 168,
                                              134, 107, 100]
    assert imp.imp_counts(1000, 0.0, 0.2) == [1000]  # dense: one round, the final one
    assert imp.phases([1000, 800, 700]) == ["round0", "round1", "train"]
    assert imp.imp_counts(47_400, 0.2, 0.5)[-1] == kept_count(47_400, 0.2)


@pytest.mark.parametrize(("rewind", "epochs", "added"), [(0, 1, 1.0), (0, 2, 2.0), (1, 2, 3.0)])
def test_kept_weights_are_rewound_then_trained_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rewind: int, epochs: int,
        added: float) -> None:
    """A stand-in epoch adds 1 to every weight. Rewound to the init (rewind 0), the final
    round ends at init + its epochs; rewound after epoch 1 (late rewinding), at init + 1 +
    its epochs."""
    real = steps.train_epoch

    def plus_one(model: torch.nn.Module, batches: Any, opt: Any, prunables: Any,
                 **kw: Any) -> Any:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        apply_masks(prunables)  # as a real step does: pruned weights stay 0
        return real(model, [], opt, prunables, **kw)  # no batches: only its bookkeeping

    monkeypatch.setattr(steps, "train_epoch", plus_one)
    config = IMP.with_(post_epochs=epochs, rewind_epoch=rewind)
    result = engine.run(config, store=Store(tmp_path))
    _, _, prunables = seeded_build(config, torch.device("cpu"))
    final = torch.load(tmp_path / config.run_id / "final.pt", weights_only=True)
    for p in prunables:
        mask = final[f"{p.layer}.weight_mask"]
        kept = final[f"{p.layer}.weight"][mask]
        assert torch.allclose(kept, p.param.detach()[mask] + added), p.layer
        assert bool((final[f"{p.layer}.weight"][~mask] == 0).all())
    total = sum(p.param.numel() for p in prunables)
    assert [r.kept for r in result.rounds] == imp.imp_counts(total, 0.2, 0.2)
    assert not (tmp_path / config.run_id / imp.REWIND).exists()


def test_rounds_are_stored_nested_and_shown(tmp_path: Path) -> None:
    store = Store(tmp_path)
    result = engine.run(IMP, store=store)
    total = 47_400
    assert [r.kept for r in result.rounds] == [47_400, 37_920, 30_336, kept_count(total, 0.2)]
    assert result.rounds[0].density == 1.0 and result.params.remaining == result.rounds[-1].kept
    phases = [(e.phase, e.epoch) for e in store.epochs(IMP.run_id)]
    assert phases == [("round0", 1), ("round1", 1), ("round2", 1), ("train", 1)]
    assert [r.top1 for r in result.rounds] == [e.top1 for e in store.epochs(IMP.run_id)]
    row = store.get(IMP.run_id)
    assert row is not None and row.result is not None and row.result.rounds == result.rounds


@pytest.mark.parametrize(("change", "needle"), [
    ({"pre_epochs": 1}, "pre_epochs 1 does not apply to imp"),
    ({"post_epochs": 0}, "invalid post_epochs 0"),
    ({"rewind_epoch": 2}, "invalid rewind_epoch 2; rewind to an epoch of the dense round: 0 to 1"),
    ({"ablation": "shuffle"}, "applies to pruning at initialization, not to imp"),
    ({"scope": "local"}, "scope 'local' does not apply: imp prunes globally"),
    ({"imp_rate": 1.0}, "invalid imp_rate 1.0"),
])
def test_settings_imp_cannot_honour_are_refused(change: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        IMP.with_(**change).validate()


def test_imp_settings_do_not_split_other_pruners_runs() -> None:
    """A sweep's shared --set imp_rate=0.5 changes IMP's cells only: the others keep their
    ids (one config, one run)."""
    assert RunConfig(pruner="snip", imp_rate=0.5, rewind_epoch=3).run_id == RunConfig(
        pruner="snip").run_id
    assert IMP.with_(imp_rate=0.5).run_id != IMP.run_id

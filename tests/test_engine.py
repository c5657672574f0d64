"""The experiment runner end to end on tiny real data: training keeps masks, determinism,
collapse, resume, divergence, stored results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from datafiles import write_mnist

from prunetui.core.config import RunConfig
from prunetui.core.errors import RunCancelled, RunDiverged
from prunetui.core.events import (
    CancelToken,
    EpochEnd,
    Event,
    PhaseStarted,
    RunFinished,
    RunWarning,
)
from prunetui.core.masks import attach_masks
from prunetui.core.models import build_model
from prunetui.core.run import build as run_build
from prunetui.core.run import engine, steps
from prunetui.core.store import Store
from prunetui.core.train import make_optimizer, train_epoch

FAST = {"model": "fc", "dataset": "digits", "device": "cpu", "timing_repeats": 1}


def cfg(**kw: Any) -> RunConfig:
    return RunConfig(**{**FAST, **kw})


@pytest.mark.parametrize("optimizer", ["momentum", "sgd", "adam", "rmsprop"])
def test_masked_weights_stay_zero_with_momentum_and_weight_decay(optimizer: str) -> None:
    torch.manual_seed(0)
    model = build_model("fc", (1, 8, 8), 10)
    prunables = attach_masks(model)
    for p in prunables:
        p.set_mask(torch.rand_like(p.param) < 0.3)
    from prunetui.core.masks import apply_masks

    apply_masks(prunables)
    opt = make_optimizer(optimizer, model.parameters(), 0.1, weight_decay=5e-4)
    x, y = torch.randn(256, 1, 8, 8), torch.randint(0, 10, (256,))
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)]
    for _ in range(3):
        train_epoch(model, batches, opt, prunables, device=torch.device("cpu"))
    for p in prunables:
        assert torch.all(p.param[~p.mask] == 0)
        assert torch.any(p.param[p.mask] != 0)


def test_run_stores_result(tmp_path: Path) -> None:
    store = Store(tmp_path)
    seen: list[Event] = []
    result = engine.run(cfg(pruner="snip", compression=0.5, post_epochs=3), store=store,
                            emit=seen.append)
    assert result.status == "finished"
    total, remaining = result.params.prunable, result.params.remaining
    assert remaining == round(total * 10**-0.5)
    assert 0 < result.flops.ratio < 1
    assert [e.epoch for e in result.epochs] == [1, 2, 3]
    assert result.top1 > 60  # digits is easy: far above chance (10%) after 3 epochs
    assert sum(isinstance(e, EpochEnd) for e in seen) == 3
    row = store.get(result.run_id)
    assert row is not None and row.status == "finished" and row.top1 == result.top1
    run_dir = store.run_dir(result.run_id)
    assert (run_dir / "final.pt").exists() and (run_dir / "histograms.json").exists()
    assert not (run_dir / "resume.pt").exists()
    state = torch.load(run_dir / "final.pt", weights_only=True)
    kept = sum(int(v.sum()) for k, v in state.items() if k.endswith("weight_mask"))
    assert kept == remaining


def test_second_request_reports_stored_run(tmp_path: Path) -> None:
    store = Store(tmp_path)
    c = cfg(pruner="rand", post_epochs=1)
    first = engine.run(c, store=store)
    seen: list[Event] = []
    again = engine.run(c, store=store, emit=seen.append)
    assert again == first
    assert isinstance(seen[-1], RunFinished) and seen[-1].cached


def test_same_seed_same_masks_and_metrics(tmp_path: Path) -> None:
    c = cfg(pruner="rand", compression=1, post_epochs=2)
    a = engine.run(c, store=Store(tmp_path / "a"))
    b = engine.run(c, store=Store(tmp_path / "b"))
    assert [e.top1 for e in a.epochs] == [e.top1 for e in b.epochs]
    assert [e.train_loss for e in a.epochs] == [e.train_loss for e in b.epochs]
    ma = torch.load(tmp_path / "a" / a.run_id / "final.pt", weights_only=True)
    mb = torch.load(tmp_path / "b" / b.run_id / "final.pt", weights_only=True)
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    c2 = engine.run(c.with_(seed=2), store=Store(tmp_path / "c"))
    mc = torch.load(tmp_path / "c" / c2.run_id / "final.pt", weights_only=True)
    assert not torch.equal(ma["0.weight_mask"] if "0.weight_mask" in ma else
                           next(v for k, v in ma.items() if k.endswith("_mask")),
                           next(v for k, v in mc.items() if k.endswith("_mask")))


def test_collapse_single_shot_synflow_but_not_iterative() -> None:
    """The SynFlow paper's point: one-shot scoring collapses a layer at high compression,
    100 iterations avoid it (fc on MNIST-shaped input, c = 2)."""
    one = run_build.inspect(RunConfig(model="fc", dataset="mnist", pruner="synflow",
                                       compression=2, prune_iterations=1, device="cpu"))
    many = run_build.inspect(RunConfig(model="fc", dataset="mnist", pruner="synflow",
                                        compression=2, device="cpu"))
    assert one.structure.collapse.collapsed
    assert not many.structure.collapse.collapsed
    assert (one.structure.params.remaining == many.structure.params.remaining
            == round(119_400 / 100))


def test_inspect_dense_and_data_free() -> None:
    r = run_build.inspect(RunConfig(model="vgg16", dataset="cifar10", compression=0,
                                     device="cpu"))
    assert r.structure.flops.dense == 313_478_154 and r.structure.flops.ratio == 1.0
    assert r.structure.params.remaining == r.structure.params.prunable


class _CancelAfter:
    def __init__(self, token: CancelToken, epoch: int) -> None:
        self.token, self.epoch = token, epoch

    def __call__(self, e: Event) -> None:
        if isinstance(e, EpochEnd) and e.phase == "train" and e.epoch == self.epoch:
            self.token.cancel()


def test_cancel_then_resume_from_checkpoint(tmp_path: Path) -> None:
    store = Store(tmp_path)
    c = cfg(pruner="mag", pre_epochs=1, post_epochs=4)
    token = CancelToken()
    with pytest.raises(RunCancelled):
        engine.run(c, store=store, cancel=token, emit=_CancelAfter(token, 2))
    row = store.get(c.run_id)
    assert row is not None and row.status == "cancelled" and row.epoch == 2
    # What pruning left is stored before training: a stopped run still shows it.
    assert row.density == pytest.approx(0.1, abs=1e-3) and row.flop_ratio is not None
    assert store.layers(c.run_id)[0].name == "layers.0"
    assert (store.run_dir(c.run_id) / "resume.pt").exists()
    seen: list[Event] = []
    resumed = engine.run(c, store=store, emit=seen.append)
    trained = [e.epoch for e in seen if isinstance(e, EpochEnd)]
    assert trained == [3, 4]  # pre-training and pruning are not redone
    assert [(e.phase, e.epoch) for e in resumed.epochs] == [
        ("pretrain", 1), ("train", 1), ("train", 2), ("train", 3), ("train", 4)]
    straight = engine.run(c, store=Store(tmp_path / "other"))
    assert [e.top1 for e in resumed.epochs] == [e.top1 for e in straight.epochs]
    assert [e.train_loss for e in resumed.epochs] == pytest.approx(
        [e.train_loss for e in straight.epochs], rel=0, abs=0)
    # Its time covers both sessions: at least its pruning and every epoch it kept.
    assert resumed.seconds >= resumed.prune_seconds + sum(
        e.seconds or 0.0 for e in resumed.epochs)


def test_keep_optimizer_carries_pre_trainings_state_into_post_training(
        tmp_path: Path) -> None:
    """As the SynFlow code's singleshot experiment: one optimizer and lr schedule for both
    phases. By default post-training starts them afresh. Resumed from the checkpoint written
    right after pruning, the carried state comes back too."""
    base = {"pruner": "mag", "optimizer": "momentum", "lr": 0.1, "lr_drops": (1,),
            "pre_epochs": 2, "post_epochs": 2}

    def lrs(result: dict[str, Any]) -> list[tuple[str, float]]:
        return [(e.phase, e.lr) for e in result.epochs]

    fresh = engine.run(cfg(**base), store=Store(tmp_path / "fresh"))
    assert lrs(fresh) == [("pretrain", 0.1), ("pretrain", pytest.approx(0.01)),
                          ("train", 0.1), ("train", pytest.approx(0.01))]
    c = cfg(**base, keep_optimizer=True)
    assert c.run_id != cfg(**base).run_id
    assert cfg(**{**base, "pre_epochs": 0}, keep_optimizer=True).run_id == cfg(
        **{**base, "pre_epochs": 0}).run_id  # nothing to keep: the same run
    straight = engine.run(c, store=Store(tmp_path / "straight"))
    assert lrs(straight)[2:] == [("train", pytest.approx(0.01))] * 2
    # Stopped in post-training's first epoch: resumed from the checkpoint after pruning.
    store = Store(tmp_path / "resumed")
    token = CancelToken()

    def cancel_at_train(e: Event) -> None:
        if isinstance(e, PhaseStarted) and e.phase == "train":
            token.cancel()

    with pytest.raises(RunCancelled):
        engine.run(c, store=store, cancel=token, emit=cancel_at_train)
    assert store.get(c.run_id).epoch == 0  # type: ignore[union-attr]
    resumed = engine.run(c, store=store)
    assert lrs(resumed) == lrs(straight)
    assert [e.train_loss for e in resumed.epochs] == [
        e.train_loss for e in straight.epochs]


def test_a_busy_machines_timing_is_warned_about(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from prunetui.core import metrics

    def busy(*args: Any, **kwargs: Any) -> metrics.Timing:
        return metrics.Timing(median=0.01, min=0.004, max=0.02, repeats=5, batch_size=256,
                              images=360)

    monkeypatch.setattr(metrics, "time_inference", busy)
    seen: list[Event] = []
    engine.run(cfg(pruner="rand", post_epochs=1), store=Store(tmp_path), emit=seen.append)
    assert [e.message for e in seen if isinstance(e, RunWarning)] == [
        "inference passes took 0.004 to 0.02 s: the machine was busy, so the median time may "
        "be off; time on a quiet machine to compare pruners"]
    # --sparse-inference: the compacted model's passes are looked at too.
    calls: list[int] = []

    def busy_second(*args: Any, **kwargs: Any) -> metrics.Timing:
        calls.append(1)
        lo, hi = (0.004, 0.02) if len(calls) == 2 else (0.01, 0.011)
        return metrics.Timing(median=0.01, min=lo, max=hi, repeats=5, batch_size=256,
                              images=360)

    monkeypatch.setattr(metrics, "time_inference", busy_second)
    seen.clear()
    engine.run(cfg(pruner="mag", post_epochs=1, sparse_inference=True),
                   store=Store(tmp_path), emit=seen.append)
    assert [e.message for e in seen if isinstance(e, RunWarning)] == [
        "compacted inference passes took 0.004 to 0.02 s: the machine was busy, so the median "
        "time may be off; time on a quiet machine to compare pruners"]


def test_divergence_is_stored(tmp_path: Path) -> None:
    store = Store(tmp_path)
    c = cfg(pruner="rand", compression=0, optimizer="sgd", lr=1e6, post_epochs=3)
    with pytest.raises(RunDiverged):
        engine.run(c, store=store)
    row = store.get(c.run_id)
    assert row is not None and row.status == "diverged" and "epoch 1" in (row.error or "")


@pytest.mark.parametrize("optimizer", ["momentum", "sgd"])
def test_an_lr_that_overflows_is_stored_as_diverged(tmp_path: Path, optimizer: str) -> None:
    store = Store(tmp_path)
    c = cfg(pruner="rand", optimizer=optimizer, lr=1e300, post_epochs=2)
    with pytest.raises(RunDiverged, match=r"a value overflowed .* in epoch 1; stopped"):
        engine.run(c, store=store)
    row = store.get(c.run_id)
    assert row is not None and row.status == "diverged" and "overflow" in (row.error or "")


@pytest.mark.parametrize(("evaluation", "needle"), [
    (RuntimeError("value cannot be converted to type double without overflow"),
     r"a value overflowed \(value cannot .*\)"),
    ((float("nan"), 10.0, 50.0), "the test loss became nan"),
])
def test_a_diverging_evaluation_is_stored_as_diverged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, evaluation: Any, needle: str) -> None:
    def evaluate(*a: Any, **k: Any) -> Any:
        if isinstance(evaluation, Exception):
            raise evaluation
        return evaluation

    monkeypatch.setattr(steps, "evaluate", evaluate)
    store = Store(tmp_path)
    c = cfg(pruner="rand", post_epochs=1)
    with pytest.raises(RunDiverged, match=f"{needle} in epoch 1"):
        engine.run(c, store=store)
    row = store.get(c.run_id)
    assert row is not None and row.status == "diverged" and store.epochs(c.run_id) == []


def test_failure_is_stored_and_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path)
    c = cfg(pruner="rand", post_epochs=1)

    def boom(*a: Any, **k: Any) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(steps, "evaluate", boom)
    with pytest.raises(RuntimeError, match="kaboom"):
        engine.run(c, store=store)
    row = store.get(c.run_id)
    assert row is not None and row.status == "failed" and "kaboom" in (row.error or "")


def test_shuffle_masks_really_permutes() -> None:
    from prunetui.core.masks import shuffle_masks, snapshot

    model = build_model("fc", (1, 8, 8), 10)
    prunables = attach_masks(model)
    for p in prunables:
        p.set_mask(torch.arange(p.mask.numel()).reshape(p.mask.shape) % 3 == 0)
    before = [p.mask.clone() for p in prunables]
    shuffle_masks(prunables, torch.Generator().manual_seed(0), snapshot(prunables))
    for b, p in zip(before, prunables, strict=True):
        assert int(b.sum()) == int(p.mask.sum())  # same density per layer
        assert not torch.equal(b, p.mask)  # new positions


def test_reinit_keeps_masks_and_draws_new_weights() -> None:
    from prunetui.core.masks import apply_masks, reinit_kept

    model = build_model("fc", (1, 8, 8), 10)
    prunables = attach_masks(model)
    for p in prunables:
        p.set_mask(torch.rand_like(p.param) < 0.5)
    apply_masks(prunables)
    before = [p.param.detach().clone() for p in prunables]
    reinit_kept(model, prunables, dict(build_model("fc", (1, 8, 8), 10).named_parameters()))
    for b, p in zip(before, prunables, strict=True):
        assert torch.all(p.param[~p.mask] == 0)
        assert not torch.equal(b[p.mask], p.param[p.mask])


def test_a_stored_run_is_not_reused_for_other_data(tmp_path: Path) -> None:
    """Run ids hash the config, not the data: a run stored from a subset (or fake files)
    must not stand for the real data later, and a checkpoint must not be resumed on it."""
    from prunetui.core.errors import CheckpointError, DataError

    small, other, same_gz = tmp_path / "small", tmp_path / "other", tmp_path / "gz"
    write_mnist(small, train=40, test=20)
    write_mnist(other, train=50, test=20)
    write_mnist(same_gz, train=40, test=20, gz=True)  # the same images, still gzipped
    store = Store(tmp_path / "r")
    c = cfg(dataset="mnist", pruner="rand", post_epochs=1, batch_size=16)
    first = engine.run(c, store=store, data_dir=small, download=False)
    assert first.data is not None and (first.data["train"], first.data["test"]) == (40, 20)
    assert engine.run(c, store=store, data_dir=same_gz, download=False) == first
    with pytest.raises(DataError, match=(
            f"1 run was stored from other data than the data dir holds now: {c.run_id} "
            r"\(40 train / 20 test images; the data dir: 50 train / 20 test images\)")):
        engine.run(c, store=store, data_dir=other, download=False)
    assert store.get(c.run_id).result == first  # type: ignore[union-attr]
    shuffled = tmp_path / "shuffled"
    write_mnist(shuffled, train=40, test=20, seed=7)  # as many images, other ones
    with pytest.raises(DataError, match="as many images, other ones: fingerprint"):
        engine.run(c, store=store, data_dir=shuffled, download=False)
    rerun = engine.run(c, store=store, data_dir=other, download=False, force=True)
    assert rerun.data is not None and rerun.data["train"] == 50
    # An interrupted run's checkpoint is not resumed on other data.
    c2 = cfg(dataset="mnist", pruner="mag", post_epochs=3, batch_size=16)
    token = CancelToken()
    with pytest.raises(RunCancelled):
        engine.run(c2, store=store, data_dir=small, download=False, cancel=token,
                       emit=_CancelAfter(token, 1))
    with pytest.raises(CheckpointError, match="checkpoint was trained on other mnist data"):
        engine.run(c2, store=store, data_dir=other, download=False)
    # Refused before anything is written: the run stays as it was, resumable.
    assert store.get(c2.run_id).status == "cancelled"  # type: ignore[union-attr]


def test_progress_is_thinned_but_the_last_of_an_epoch_and_other_events_pass(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from prunetui.core import events

    clock = [100.0]
    monkeypatch.setattr(events.time, "monotonic", lambda: clock[0])
    throttle = events.ProgressThrottle(1.0)
    batches = [events.BatchProgress("r", "train", 1, b, 5) for b in range(1, 6)]
    assert [throttle.passes(e) for e in batches] == [True, False, False, False, True]
    clock[0] += 1.0
    assert throttle.passes(events.BatchProgress("r", "train", 2, 1, 5))
    # Each kind has its own interval; other events always pass.
    assert throttle.passes(events.PruneStep("r", 1, 100, 0.9))
    assert not throttle.passes(events.PruneStep("r", 2, 100, 0.8))
    assert throttle.passes(events.PruneStep("r", 100, 100, 0.1))
    assert throttle.passes(events.RunWarning("r", "x"))


def test_amp_on_a_cpu_says_it_trains_in_float32(tmp_path: Path) -> None:
    seen: list[Event] = []
    engine.run(cfg(pruner="rand", post_epochs=1, amp=True, device="cpu"),
                   store=Store(tmp_path), emit=seen.append)
    assert "--amp has no effect on cpu; training in float32" in [
        e.message for e in seen if isinstance(e, RunWarning)]

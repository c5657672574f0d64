"""Sweeps on Ray (`--executor ray`): a local 2-CPU cluster stands in for a lab's GPU boxes.

The ray executor must give the local executor's numbers, survive a worker killed mid-run (Ray
retries the task, which resumes from its checkpoint), keep the driver the store's only writer
(each run and epoch stored once), store application errors without retrying them, and fail
with one line saying how to install Ray when it is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prunetui.core.config import RunConfig
from prunetui.core.errors import ConfigError, RunDiverged
from prunetui.core.events import EpochEnd, Event, RunFailed, RunFinished, RunStarted
from prunetui.core.store import Store
from prunetui.core.sweep import InProcess, RayCluster, SweepRunner, SweepSpec, make_executor

SETTINGS = {"post_epochs": 3, "device": "cpu", "timing_repeats": 1}
EPOCH_KEYS = ("phase", "epoch", "train_loss", "test_loss", "top1", "top5", "lr")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a throwaway local cluster: no token in ~/.ray
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=100 * 2**20, logging_level="ERROR")
    # The fault-injection hooks below run on the workers, which cannot import this file.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()
    if saved is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = saved


def _configs(seeds: list[int], compressions: tuple[float, ...] = (1.0,),
             pruners: tuple[str, ...] = ("rand", "mag")) -> list[RunConfig]:
    return SweepSpec(["fc"], ["digits"], list(pruners), list(compressions), seeds,
                     settings=dict(SETTINGS), name="ray-test").configs()


class KillOnce:
    """On the workers: log every epoch each try sees; kill the worker right after the first
    (checkpointed) epoch of ``run_id``, on the first try only."""

    def __init__(self, run_id: str, marker: Path, log: Path) -> None:
        self.run_id, self.marker, self.log = run_id, marker, log

    def __call__(self, event: Event) -> None:
        if not isinstance(event, EpochEnd):
            return
        with self.log.open("a") as f:
            f.write(f"{event.run_id} {os.getpid()} {event.epoch}\n")
        if event.run_id == self.run_id and event.epoch == 1 and not self.marker.exists():
            self.marker.touch()
            os._exit(1)  # as abrupt as a lost node: no cleanup, no reply


class Faults:
    """On the workers: ``kill`` dies after every first epoch, ``diverge`` diverges."""

    def __init__(self, kill: str, diverge: str, log: Path) -> None:
        self.kill, self.diverge, self.log = kill, diverge, log

    def __call__(self, event: Event) -> None:
        if not isinstance(event, EpochEnd):
            return
        with self.log.open("a") as f:
            f.write(f"{event.run_id} {os.getpid()} {event.epoch}\n")
        if event.run_id == self.kill:
            os._exit(1)
        if event.run_id == self.diverge:
            raise RunDiverged(event.epoch, float("nan"))


def _log(path: Path, run_id: str) -> list[tuple[int, int]]:
    """(pid, epoch) lines the hook wrote for ``run_id``."""
    if not path.exists():
        return []
    return [(int(p), int(e)) for r, p, e in (line.split() for line in path.read_text().splitlines())
            if r == run_id]


def _epochs(store: Store, run_id: str) -> list[tuple[Any, ...]]:
    return [tuple(getattr(row, k) for k in EPOCH_KEYS) for row in store.epochs(run_id)]


def test_ray_matches_local_resumes_a_killed_task_and_stores_each_run_once(
        ray_cluster: Any, tmp_path: Path) -> None:
    import torch

    configs = _configs([1, 2])
    assert len(configs) == 4
    # Local reference, single-threaded like a 1-CPU Ray task, so CPU numbers match bit for bit.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = SweepRunner(tmp_path / "local").run(configs)
    finally:
        torch.set_num_threads(threads)
    assert [o.status for o in local] == ["finished"] * 4

    target = configs[1].run_id
    marker, log = tmp_path / "killed-once", tmp_path / "epochs.log"
    events: list[Event] = []
    ckpt = tmp_path / "shared-ckpt"
    runner = SweepRunner(tmp_path / "ray", executor=RayCluster(
        checkpoint_dir=ckpt, task_hook=KillOnce(target, marker, log)), emit=events.append)
    outcomes = runner.run(configs)
    assert sorted(o.config.run_id for o in outcomes) == sorted(c.run_id for c in configs)
    assert {o.status for o in outcomes} == {"finished"}, [(o.status, o.error) for o in outcomes]

    # The kill happened, and the retry resumed after epoch 1 instead of redoing it.
    assert marker.exists()
    seen = _log(log, target)
    assert [e for _, e in seen] == [1, 2, 3]
    assert seen[0][0] != seen[1][0] == seen[2][0]  # epoch 1 in the killed worker, 2-3 in another
    assert any(isinstance(e, RunStarted) and e.run_id == target and e.resumed_from_epoch == 1
               for e in events)

    # Same numbers as the local executor, the resumed run included.
    ray_store, local_store = Store(tmp_path / "ray"), Store(tmp_path / "local")
    for cfg in configs:
        rid = cfg.run_id
        assert _epochs(ray_store, rid) == _epochs(local_store, rid), rid
        assert [r[1] for r in _epochs(ray_store, rid)] == [1, 2, 3]
        assert ray_store.layers(rid) == local_store.layers(rid)
        got, want = ray_store.get(rid), local_store.get(rid)
        assert got is not None and want is not None and got.status == "finished"
        assert got.result is not None and want.result is not None
        assert (got.top1, got.density, got.epoch) == (want.top1, want.density, want.epoch)
        assert [r.top1 for r in got.result.epochs] == [r.top1 for r in want.result.epochs]
        ray_dir, local_dir = ray_store.run_dir(rid), local_store.run_dir(rid)
        assert (json.loads((ray_dir / "histograms.json").read_text())
                == json.loads((local_dir / "histograms.json").read_text()))
        a = torch.load(ray_dir / "final.pt", weights_only=True)
        b = torch.load(local_dir / "final.pt", weights_only=True)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert not (ray_dir / "resume.pt").exists()
        assert not (ckpt / rid).exists()  # checkpoints go once the driver has stored the run

    # One row per run, one per epoch, all in the sweep; one end event per run.
    assert len(ray_store.query()) == 4
    assert len(ray_store.query(sweep="ray-test")) == 4
    assert sorted(e.run_id for e in events if isinstance(e, RunFinished | RunFailed)) == sorted(
        c.run_id for c in configs)
    assert all(isinstance(e, RunFinished) for e in events if isinstance(e, RunFinished | RunFailed))

    # Re-running the sweep submits nothing: every run is already stored.
    again = SweepRunner(tmp_path / "ray", executor=RayCluster(checkpoint_dir=ckpt)).run(configs)
    assert [o.status for o in again] == ["cached"] * 4
    assert len(ray_store.query()) == 4


def test_failures_are_stored_and_the_sweep_goes_on(ray_cluster: Any, tmp_path: Path) -> None:
    dies, diverges = _configs([3, 4], pruners=("rand",))
    (empty,) = _configs([1], compressions=(6.0,), pruners=("rand",))  # keeps no weight
    log = tmp_path / "epochs.log"
    events: list[Event] = []
    runner = SweepRunner(tmp_path / "ray", executor=RayCluster(
        max_retries=1, task_hook=Faults(dies.run_id, diverges.run_id, log)), emit=events.append)
    outcomes = {o.config.run_id: o for o in runner.run([dies, diverges, empty])}
    store = Store(tmp_path / "ray")

    # A task whose worker keeps dying: retried once (resuming after epoch 1), then failed.
    o = outcomes[dies.run_id]
    assert o.status == "failed" and "task failed 2 times" in o.error
    assert [e for _, e in _log(log, dies.run_id)] == [1, 2]
    row = store.get(dies.run_id)
    assert row is not None and row.status == "failed" and row.error == o.error
    assert [r[1] for r in _epochs(store, dies.run_id)] == [1, 2]

    # An application error is stored as such and never retried.
    o = outcomes[diverges.run_id]
    assert o.status == "diverged" and "diverged" in o.error
    assert len(_log(log, diverges.run_id)) == 1
    row = store.get(diverges.run_id)
    assert row is not None and row.status == "diverged"

    # Bad input fails before anything is stored, as with the local executor.
    o = outcomes[empty.run_id]
    assert o.status == "refused" and "keeps no weight" in o.error
    assert store.get(empty.run_id) is None

    ends = {e.run_id: e for e in events if isinstance(e, RunFinished | RunFailed)}
    assert {rid: e.status for rid, e in ends.items() if isinstance(e, RunFailed)} == {
        dies.run_id: "failed", diverges.run_id: "diverged", empty.run_id: "refused"}


def test_without_ray_the_ray_executor_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigError) as info:
        make_executor("ray")
    message = str(info.value)
    assert "pip install 'prunetui[ray]'" in message and "\n" not in message
    assert isinstance(SweepRunner(tmp_path).executor, InProcess)  # the default needs no Ray


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"name": "dask"}, "unknown executor 'dask'"),
        ({"name": "ray", "jobs": 2}, "--jobs and --devices are for --executor local"),
        ({"name": "ray", "devices": ["cuda:0"]}, "--jobs and --devices"),
        ({"name": "ray", "gpus_per_run": -1.0}, "invalid --gpus-per-run"),
        ({"name": "ray", "cpus_per_run": 0.0}, "invalid --cpus-per-run"),
        ({"name": "local", "jobs": 0}, "invalid --jobs 0"),
    ],
)
def test_bad_executor_settings(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        make_executor(**kwargs)


def test_sweep_module_does_not_import_ray() -> None:
    code = ("import sys; from pathlib import Path; from prunetui.core.sweep import SweepRunner; "
            "SweepRunner(Path('r')); sys.exit('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


@pytest.mark.parametrize("address", ["127.0.0.1:{port}", "ray://127.0.0.1:{port}"])
def test_an_address_nobody_answers_at_is_refused_in_seconds(address: str) -> None:
    """ray.init would retry for minutes with warnings; the address is tried first."""
    import socket

    from prunetui.core.sweep.ray import _check_reachable

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = address.format(port=port)
    with pytest.raises(ConfigError, match=(
            f"cannot reach a Ray cluster at {address}: Connection refused; start one")):
        _check_reachable(address)
    _check_reachable("auto")  # left to Ray


def test_an_ipv6_address_someone_answers_at_passes_the_check() -> None:
    import socket

    from prunetui.core.sweep.ray import _check_reachable

    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    with socket.socket(socket.AF_INET6) as s:
        try:
            s.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback here")
        s.listen()
        _check_reachable(f"[::1]:{s.getsockname()[1]}")

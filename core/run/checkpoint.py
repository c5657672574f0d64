"""The resume checkpoint: everything an interrupted run needs to go on bit-identically.

Written atomically after pre-training epochs, after pruning and after training epochs
(``resume.pt`` in the run's folder). Loading is ``weights_only`` (a checkpoint is data, never
code) and every field is checked against the run's config before anything of it is used: a
file that loads but lacks a field, has one of the wrong type, or claims an epoch the run does
not have is refused in one line, so a damaged checkpoint can never end as a finished result.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunetui.core.config import RunConfig
from prunetui.core.errors import CheckpointError
from prunetui.core.store import atomic_write_bytes

# 1: no "schema" key (elapsed and data optional). 2: "schema" added.
CHECKPOINT_SCHEMA = 2


@dataclass
class Checkpoint:
    """A run's state at an epoch boundary of ``phase`` (train epoch 0: just pruned)."""

    run_id: str
    phase: str
    epoch: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None
    scheduler: dict[str, Any] | None
    torch_rng: torch.Tensor
    data_rng: torch.Tensor
    prune_rng: torch.Tensor
    prune_seconds: float
    # Wall time of every session up to here; None in checkpoints from before it was kept.
    elapsed: float | None
    # The data's fingerprint; None in checkpoints from before fingerprints were kept.
    data: dict[str, Any] | None
    schema: int = CHECKPOINT_SCHEMA

    def save(self, path: Path) -> None:
        """Write atomically: a kill leaves the previous checkpoint or this one."""
        buf = io.BytesIO()
        torch.save(asdict(self), buf)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path, config: RunConfig, model: nn.Module,
             phases: dict[str, tuple[int, int]]) -> Checkpoint | None:
        """The run's checkpoint at ``path``, checked and loaded into ``model``; None when there
        is none. ``phases``: the run's phases and the epochs a checkpoint of each may be at.
        Raises ``CheckpointError`` (one line naming the file) for any other file."""
        if not path.exists():
            return None
        try:
            # Torch's warnings about a file it may not read are dropped: the refusal below
            # is the one line the user needs.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(
                f"checkpoint {path} cannot be loaded safely ({type(e).__name__}); delete it to "
                "restart the run from scratch") from None
        ckpt = _checked(state, path, config, phases)
        try:
            model.load_state_dict(ckpt.model)
        except (RuntimeError, KeyError, TypeError) as e:
            first = str(e).strip().splitlines()[0]
            raise CheckpointError(f"checkpoint {path} does not match the run's model ({first}); "
                                  "delete it") from None
        return ckpt


def _checked(state: Any, path: Path, config: RunConfig,
             phases: dict[str, tuple[int, int]]) -> Checkpoint:
    """``state`` as a Checkpoint of ``config``'s run, or a CheckpointError saying what is wrong."""

    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path} is not a usable checkpoint of run "
                               f"{config.run_id} ({why}); delete it to restart the run")

    if not isinstance(state, dict):
        raise bad("not a checkpoint record")
    if state.get("run_id") != config.run_id:
        raise CheckpointError(f"checkpoint {path} belongs to another run; delete it")
    schema = state.get("schema", 1)
    if not isinstance(schema, int) or schema > CHECKPOINT_SCHEMA:
        raise bad(f"schema {schema!r}, newer than this prunetui reads")
    required = ("phase", "epoch", "model", "optimizer", "scheduler", "torch_rng", "data_rng",
                "prune_rng", "prune_seconds")
    missing = [k for k in required if k not in state]
    if missing:
        raise bad(f"no {', '.join(missing)}")
    phase, epoch = state["phase"], state["epoch"]
    if phase not in phases:
        raise bad(f"phase {phase!r}")
    first, last = phases[phase]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not first <= epoch <= last:
        raise bad(f"{_phase_name(phase)} epoch {epoch!r}, but the run has "
                  f"{last} {_phase_name(phase)} epochs")
    if not isinstance(state["model"], dict) or not all(
            isinstance(v, torch.Tensor) for v in state["model"].values()):
        raise bad("its weights are not tensors")
    for key in ("optimizer", "scheduler"):
        if state[key] is not None and not isinstance(state[key], dict):
            raise bad(f"its {key} state is not a record")
    for key in ("torch_rng", "data_rng", "prune_rng"):
        rng = state[key]
        if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8 or rng.dim() != 1:
            raise bad(f"its {key} is not a generator state")
    numbers = {"prune_seconds": state["prune_seconds"], "elapsed": state.get("elapsed", 0.0)}
    for key, value in numbers.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not math.isfinite(value) or value < 0):
            raise bad(f"{key} {value!r}")
    data = state.get("data")
    if data is not None and not (isinstance(data, dict) and isinstance(data.get("digest"), str)):
        raise bad("its data fingerprint is not a record")
    return Checkpoint(
        run_id=config.run_id, phase=phase, epoch=epoch, model=state["model"],
        optimizer=state["optimizer"], scheduler=state["scheduler"],
        torch_rng=state["torch_rng"], data_rng=state["data_rng"], prune_rng=state["prune_rng"],
        prune_seconds=float(state["prune_seconds"]),
        elapsed=float(state["elapsed"]) if state.get("elapsed") is not None else None,
        data=data, schema=schema)


def _phase_name(phase: str) -> str:
    if phase.startswith("round"):
        return f"IMP {phase[:5]} {phase[5:]}"
    return "pre-training" if phase == "pretrain" else "training"

"""Benchmark 1: a training epoch of ``fc`` on MNIST-shaped data, batch 64, Adam (images/s).

Baseline, the research-script way: ``torchvision.datasets.MNIST`` read from idx files in a temp
dir, ``ToTensor()`` + ``Normalize``, a ``DataLoader(batch_size=64, shuffle=True)`` (default
``num_workers=0``, as the SynFlow code uses on a CPU), per-batch ``.to(device)``,
``torch.optim.Adam(lr=1e-3)``, a dense ``fc`` (it does not even re-apply masks, which only
favours it).

prunetui: the same files read by ``core.data.load_dataset``, ``make_loaders`` (a
``DeviceLoader``), ``make_optimizer('adam')`` and ``core.train.train_epoch`` with masks attached
at density 0.1 (random), re-applied after every step.

Both models start from the same weights. ``--quick`` times the first 150 batches (9,600 images)
of an epoch over the full 60,000-image dataset; ``--full`` whole epochs (938 batches).

"""

from __future__ import annotations

import itertools
import struct
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.timing import Context, Row, Stat, rotate

N_TRAIN = 60_000
N_TEST = 10_000
BATCH = 64
QUICK_BATCHES = 150
DENSITY = 0.1
TARGET = 5.0


def write_idx(path: Path, array: np.ndarray) -> None:
    """A uint8 array in MNIST's idx format (magic 0 0 8 ndim, big-endian sizes, bytes)."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes([0, 0, 8, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
                     + a.tobytes())


def synth_mnist(root: Path, seed: int = 0) -> Path:
    """Random uint8 MNIST-shaped train (60,000) and test (10,000) sets in torchvision's layout
    (``root/MNIST/raw``); returns ``root``."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    return root


def run(ctx: Context) -> list[Row]:
    import torchvision
    from torch.utils.data import DataLoader
    from torchvision import transforms

    from prunetui.core import catalog
    from prunetui.core.data import load_dataset, make_loaders
    from prunetui.core.masks import attach_masks
    from prunetui.core.models import build_model
    from prunetui.core.pruners.schedule import prune
    from prunetui.core.train import make_optimizer, train_epoch

    device = torch.device("cpu")
    n_batches = QUICK_BATCHES if ctx.quick else -(-N_TRAIN // BATCH)
    info = catalog.DATASETS["mnist"]
    with tempfile.TemporaryDirectory(prefix="prunetui-bench-") as tmp:
        root = synth_mnist(Path(tmp))

        # prunetui
        splits = load_dataset("mnist", root, download=False)
        torch.manual_seed(0)
        model_p = build_model("fc", info.shape, info.num_classes)
        init = {k: v.clone() for k, v in model_p.state_dict().items()}
        prunables = attach_masks(model_p)
        prune(model_p, prunables, "rand", 1.0, iterations=1, batch=None,
              generator=torch.Generator().manual_seed(0))
        opt_p = make_optimizer("adam", model_p.parameters(), 1e-3, 0.0)
        train_p, _ = make_loaders(splits, BATCH, 256, device, torch.Generator().manual_seed(1))

        def prunetui(batches: int = n_batches) -> float:
            start = time.perf_counter()
            train_epoch(model_p, itertools.islice(train_p, batches), opt_p, prunables,
                        device=device)
            return time.perf_counter() - start

        # baseline
        dataset = torchvision.datasets.MNIST(
            str(root), train=True, download=False,
            transform=transforms.Compose([transforms.ToTensor(),
                                          transforms.Normalize(info.mean, info.std)]))
        loader = DataLoader(dataset, batch_size=BATCH, shuffle=True)
        model_b = build_model("fc", info.shape, info.num_classes)
        model_b.load_state_dict(init)
        opt_b = torch.optim.Adam(model_b.parameters(), lr=1e-3)

        def baseline(batches: int = n_batches) -> float:
            start = time.perf_counter()
            model_b.train()
            for i, (x, y) in enumerate(loader):
                if i == batches:
                    break
                x, y = x.to(device), y.to(device)
                opt_b.zero_grad()
                loss = F.cross_entropy(model_b(x), y)
                loss.backward()
                opt_b.step()
            return time.perf_counter() - start

        for fn in (baseline, prunetui):  # warm-up: a few batches each
            fn(20)
        base_s, new_s = rotate([baseline, prunetui], ctx.repeats, warmup=0, log=ctx.log,
                               names=["baseline", "prunetui"])
    images = min(n_batches * BATCH, N_TRAIN)
    b = Stat.of([images / s for s in base_s])
    p = Stat.of([images / s for s in new_s])
    ratio = p.median / b.median
    scope = f"{images:,} images/repeat" + (" (quick: 1/6 epoch)" if ctx.quick else "")
    name = "train epoch fc/MNIST-shape b64 Adam (img/s)"
    return [
        Row(name, b.fmt("img/s"), p.fmt("img/s"), ratio, f">= {TARGET:g}x", ratio >= TARGET,
            note=f"{scope}; baseline DataLoader+ToTensor+Normalize, prunetui "
                 f"DeviceLoader+train_epoch at density {DENSITY}; epoch "
                 f"{N_TRAIN / p.median:.1f} s vs {N_TRAIN / b.median:.1f} s",
            data={"images_per_repeat": images, "baseline_img_s": b.__dict__,
                  "prunetui_img_s": p.__dict__, "baseline_s": base_s, "prunetui_s": new_s}),
    ]

"""Benchmark 6 (GPU): one training epoch of vgg16 on CIFAR-10-shaped data (50,000 images),
batch 128, SGD with Nesterov momentum 0.9 (lr 0.1, weight decay 5e-4), images/s.

Baseline, the research-script way: torchvision's ``CIFAR10`` dataset (its integrity checks
skipped: the files are synthesized) with PIL transforms ``RandomCrop(32, padding=4)``,
``RandomHorizontalFlip()``, ``ToTensor()``, ``Normalize``; ``DataLoader(batch_size=128,
shuffle=True, num_workers=4, pin_memory=True)``; per-batch ``.to(device)``; fp32; a dense vgg16.

prunetui: ``load_dataset`` + ``make_loaders(channels_last=True)`` (the whole split on the GPU,
crop/flip/normalize batched there), the model in channels_last with masks attached (random, 10%
density), ``make_optimizer('momentum')``, ``train_epoch(amp=True)`` (bf16 autocast).

Both are full epochs (worker start-up is part of a real script's epoch). The figure also gives
s/epoch and the projected hours of the report's full VGG16 grid: 30 runs x 100 epochs, each
epoch a training pass plus one test-set evaluation.

Without CUDA this prints a "not measured: no GPU" row. ``--gpu-device cpu`` runs the same code
on the CPU with a few hundred images and vgg11: a smoke test of the benchmark, not a figure.
Run it on a GPU box with ``python -m bench --only gpu``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bench.timing import ROOT, Context, Row, Stat, alternate, not_measured

N_TRAIN = 50_000
N_TEST = 10_000
BATCH = 128
WORKERS = 4
LR = 0.1
WEIGHT_DECAY = 5e-4
DENSITY = 0.1
TARGET = 5.0
GRID_EPOCHS = 30 * 100


def _write_cifar(root: Path, train: int, test: int) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from datafiles import write_cifar  # tests/datafiles.py: torchvision's on-disk format
    finally:
        sys.path.remove(str(ROOT / "tests"))
    return Path(write_cifar(root, "cifar10", train=train, test=test))


def _torchvision_cifar(root: Path, transform: Any) -> Any:
    import torchvision

    class SyntheticCIFAR10(torchvision.datasets.CIFAR10):
        """torchvision's CIFAR10, minus the md5 checks synthesized files cannot pass."""

        def _check_integrity(self) -> bool:
            return True

        def _load_meta(self) -> None:
            self.classes = [f"class{i}" for i in range(10)]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    return SyntheticCIFAR10(str(root), train=True, download=False, transform=transform)


def run(ctx: Context) -> list[Row]:
    name = "GPU epoch vgg16 CIFAR-shape b128 SGD (img/s)"
    target = f">= {TARGET:g}x"
    if ctx.gpu_device is None and not torch.cuda.is_available():
        return [not_measured(name, "no GPU (run python -m bench --only gpu on a CUDA box)",
                             target)]
    device = torch.device(ctx.gpu_device or "cuda")
    smoke = device.type != "cuda"
    n_train, n_test = (256, 128) if smoke else (N_TRAIN, N_TEST)
    model_name = "vgg11" if smoke else "vgg16"
    workers = 2 if smoke else WORKERS

    from torch.utils.data import DataLoader
    from torchvision import transforms

    from prunetui.core import catalog
    from prunetui.core.data import load_dataset, make_loaders
    from prunetui.core.masks import attach_masks
    from prunetui.core.models import build_model
    from prunetui.core.pruners.schedule import prune
    from prunetui.core.train import evaluate, make_optimizer, train_epoch

    info = catalog.DATASETS["cifar10"]
    with tempfile.TemporaryDirectory(prefix="prunetui-bench-gpu-") as tmp:
        ctx.log(f"writing {n_train:,} CIFAR-shaped images ...")
        root = _write_cifar(Path(tmp), n_train, n_test)

        # prunetui
        splits = load_dataset("cifar10", root, download=False)
        torch.manual_seed(0)
        model_p = build_model(model_name, info.shape, info.num_classes)
        init = {k: v.clone() for k, v in model_p.state_dict().items()}
        model_p = model_p.to(device, memory_format=torch.channels_last)
        prunables = attach_masks(model_p)
        prune(model_p, prunables, "rand", 1.0, iterations=1, batch=None,
              generator=torch.Generator().manual_seed(0))
        opt_p = make_optimizer("momentum", model_p.parameters(), LR, WEIGHT_DECAY)
        train_p, test_p = make_loaders(splits, BATCH, 256, device,
                                       torch.Generator().manual_seed(1), channels_last=True)

        def prunetui() -> float:
            _sync(device)
            start = time.perf_counter()
            train_epoch(model_p, train_p, opt_p, prunables, device=device, amp=True)
            _sync(device)
            return time.perf_counter() - start

        # baseline
        transform = transforms.Compose([
            transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
            transforms.ToTensor(), transforms.Normalize(info.mean, info.std)])
        dataset = _torchvision_cifar(root, transform)
        loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers,
                            pin_memory=device.type == "cuda")
        model_b = build_model(model_name, info.shape, info.num_classes)
        model_b.load_state_dict(init)
        model_b = model_b.to(device)
        opt_b = torch.optim.SGD(model_b.parameters(), lr=LR, momentum=0.9, nesterov=True,
                                weight_decay=WEIGHT_DECAY)

        def baseline() -> float:
            _sync(device)
            start = time.perf_counter()
            model_b.train()
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                opt_b.zero_grad()
                loss = F.cross_entropy(model_b(x), y)
                loss.backward()
                opt_b.step()
            _sync(device)
            return time.perf_counter() - start

        ctx.log("timing epochs ...")
        base_s, new_s = alternate(baseline, prunetui, ctx.repeats, warmup=1, log=ctx.log)
        _sync(device)
        start = time.perf_counter()
        evaluate(model_p, test_p, device=device, amp=True)
        _sync(device)
        eval_s = time.perf_counter() - start

    b = Stat.of([n_train / s for s in base_s])
    p = Stat.of([n_train / s for s in new_s])
    ratio = p.median / b.median
    epoch_p, epoch_b = n_train / p.median, n_train / b.median
    hours = GRID_EPOCHS * (epoch_p + eval_s) / 3600
    hours_b = GRID_EPOCHS * (epoch_b + eval_s) / 3600
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    row = Row(
        name, b.fmt("img/s"), p.fmt("img/s"), ratio, target, None if smoke else ratio >= TARGET,
        note=(f"{'SMOKE TEST (not a figure): ' if smoke else ''}{device_name}; "
              f"{epoch_p:.1f} s/epoch vs {epoch_b:.1f} s/epoch (+{eval_s:.1f} s test eval); "
              f"VGG16 grid 30 runs x 100 epochs: {hours:.1f} h vs {hours_b:.1f} h"),
        data={"device": device_name, "baseline_img_s": b.__dict__, "prunetui_img_s": p.__dict__,
              "seconds_per_epoch": epoch_p, "baseline_seconds_per_epoch": epoch_b,
              "eval_seconds": eval_s, "grid_hours": hours, "baseline_grid_hours": hours_b,
              "smoke": smoke})
    return [row]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)

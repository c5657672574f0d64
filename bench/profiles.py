"""``python -m bench.profiles [train|synflow|prune-data|compact] ...``: the profiles behind
bench/NOTES.md (where the time goes inside prunetui), printed as small tables.

- ``train``: one fc training step at batch 64 split into loader / forward / backward /
  optimizer / apply_masks (median us over 250 steps), plus the optimizer and mask variants
  NOTES.md proposes.
- ``synflow``: cProfile of ``prune(vgg16, 'synflow', c=1)`` over 8 iterations, top functions
  by own time, per iteration.
- ``prune-data``: the same for SNIP and GraSP on 10 images.
- ``compact``: per-batch us of the dense masked fc (SynFlow c=2) and of its compact model.

Uses 2 torch threads (``--threads``) like the benchmarks; set OMP_WAIT_POLICY yourself.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import pstats
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F


def _median_us(fn: Callable[[], object], n: int = 200, warmup: int = 20) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def profile_train() -> None:
    from prunetui.core.data import DeviceLoader
    from prunetui.core.masks import apply_masks, attach_masks
    from prunetui.core.models import build_model
    from prunetui.core.train import make_optimizer

    n = 60_000
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    model = build_model("fc", (1, 28, 28), 10)
    prunables = attach_masks(model)
    for p in prunables:
        p.set_mask(torch.rand(p.mask.shape, generator=gen) < 0.1)
    apply_masks(prunables)
    loader = DeviceLoader(x, y, 64, (0.1307,), (0.3081,), "cpu", shuffle=True, augment=False,
                          generator=gen)
    variants = {
        "Adam (make_optimizer: for-loop)": make_optimizer("adam", model.parameters(), 1e-3, 0.0),
        "Adam foreach=True": torch.optim.Adam(model.parameters(), 1e-3, foreach=True),
        "Adam fused=True": torch.optim.Adam(model.parameters(), 1e-3, fused=True),
    }
    phases: dict[str, list[float]] = {}
    clock = time.perf_counter
    for name, opt in variants.items():
        it = iter(loader)
        for i in range(300):
            t0 = clock()
            xb, yb = next(it)
            t1 = clock()
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            t2 = clock()
            loss.backward()
            t3 = clock()
            opt.step()
            t4 = clock()
            apply_masks(prunables)
            t5 = clock()
            if i >= 50:
                for key, a, b in (("loader batch", t0, t1), ("forward + loss", t1, t2),
                                  ("backward", t2, t3), (f"step: {name}", t3, t4),
                                  ("apply_masks (bool masks)", t4, t5)):
                    phases.setdefault(key, []).append((b - a) * 1e6)
    params = [p.param.data for p in prunables]
    floats = [p.mask.to(p.param.dtype) for p in prunables]
    phases["apply: _foreach_mul_ float masks"] = [
        _median_us(lambda: torch._foreach_mul_(params, floats))]
    print("fc training step, batch 64 (median us)")
    for key, values in phases.items():
        print(f"  {key:<40} {statistics.median(values):8.0f}")


def _cprofile(fn: Callable[[], object], per: int, top: int = 16) -> None:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"  total {total:.3f} s, {total / per:.3f} s per iteration; top by own time:")
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    for (file, line, func), (_cc, nc, tt, _ct, _callers) in rows[:top]:
        where = func if file == "~" else f"{file.rsplit('/', 2)[-1]}:{line}({func})"
        print(f"  {tt / per * 1000:8.1f} ms/it  {nc // per:5d} calls/it  {where}")


def profile_synflow(iterations: int = 8) -> None:
    from prunetui.core.masks import attach_masks
    from prunetui.core.models import build_model
    from prunetui.core.pruners.schedule import prune

    torch.manual_seed(0)
    template = build_model("vgg16", (3, 32, 32), 10)
    batch = (torch.ones(1, 3, 32, 32), torch.zeros(1, dtype=torch.long))

    def go(n: int) -> None:
        model = copy.deepcopy(template)
        prune(model, attach_masks(model), "synflow", 1.0, iterations=n, batch=batch,
              generator=torch.Generator().manual_seed(0))

    go(1)
    print(f"prune(vgg16, 'synflow', c=1, iterations={iterations})")
    _cprofile(lambda: go(iterations), iterations)


def profile_prune_data(images: int = 10) -> None:
    from prunetui.core.masks import attach_masks
    from prunetui.core.models import build_model
    from prunetui.core.pruners.schedule import prune

    torch.manual_seed(0)
    template = build_model("vgg16", (3, 32, 32), 10)
    x = torch.randn(images, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.arange(images) % 10
    for scorer in ("snip", "grasp"):
        def go(s: str = scorer) -> None:
            model = copy.deepcopy(template)
            prune(model, attach_masks(model), s, 1.0, iterations=1, batch=(x, y),
                  generator=torch.Generator().manual_seed(0))

        go()
        print(f"prune(vgg16, {scorer!r}, c=1) on {images} images")
        _cprofile(go, 1, top=10)


def profile_compact() -> None:
    from prunetui.core.compact import compact
    from prunetui.core.masks import attach_masks
    from prunetui.core.models import build_model
    from prunetui.core.pruners.schedule import prune

    torch.manual_seed(0)
    model = build_model("fc", (1, 28, 28), 10)
    prune(model, attach_masks(model), "synflow", 2.0, iterations=100,
          batch=(torch.ones(1, 1, 28, 28), torch.zeros(1, dtype=torch.long)),
          generator=torch.Generator().manual_seed(0))
    model.eval()
    small = compact(model, (1, 28, 28))
    x = torch.randn(256, 1, 28, 28)
    print("fc SynFlow c=2, one batch of 256 (median us)")
    with torch.inference_mode():
        print(f"  dense masked model       {_median_us(lambda: model(x)):8.0f}")
        print(f"  compact model            {_median_us(lambda: small(x)):8.0f}")
        h = x
        for module in small.body:
            inp = h

            def call(m: torch.nn.Module = module, i: torch.Tensor = inp) -> object:
                return m(i)

            print(f"    {module!s:<70.70} {_median_us(call):6.0f}")
            h = module(inp)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profiles")
    ap.add_argument("what", nargs="*", default=["train", "synflow", "prune-data", "compact"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    table = {"train": profile_train, "synflow": profile_synflow,
             "prune-data": profile_prune_data, "compact": profile_compact}
    for what in args.what:
        table[what]()
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

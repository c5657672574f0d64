"""Benchmark 4: real sparse inference. ``fc`` pruned by SynFlow at c=2 (1% of the weights,
100 iterations, global), test-set inference over 10,000 MNIST-shaped images (batches of 256,
the default test batch size) on the CPU.

Baseline: the dense masked model, the way a run measures inference (``metrics.time_inference``
on the model with its masks multiplied in). prunetui: ``core.compact.compact(model, shape)``
timed the same way. Outputs must agree within 1e-5 over the whole test set. Inputs are
normalized once beforehand, so the figure is the model's cost, not the loader's.
"""

from __future__ import annotations

import time

import torch

from bench.timing import Context, Row, alternate, speedup_row

SHAPE = (1, 28, 28)
N_TEST = 10_000
BATCH = 256
COMPRESSION = 2.0
TARGET = 3.0
TOLERANCE = 1e-5


def run(ctx: Context) -> list[Row]:
    from prunetui.core import catalog
    from prunetui.core.compact import compact
    from prunetui.core.data import normalize
    from prunetui.core.masks import attach_masks
    from prunetui.core.metrics import time_inference
    from prunetui.core.models import build_model
    from prunetui.core.pruners.schedule import prune

    device = torch.device("cpu")
    info = catalog.DATASETS["mnist"]
    torch.manual_seed(0)
    model = build_model("fc", SHAPE, 10)
    prunables = attach_masks(model)
    ctx.log("pruning fc with SynFlow at c=2 ...")
    prune(model, prunables, "synflow", COMPRESSION, iterations=100,
          batch=(torch.ones(1, *SHAPE), torch.zeros(1, dtype=torch.long)),
          generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(2)
    raw = torch.randint(0, 256, (N_TEST, *SHAPE), dtype=torch.uint8, generator=gen)
    batches = [normalize(raw[i:i + BATCH], info.mean, info.std) for i in range(0, N_TEST, BATCH)]

    start = time.perf_counter()
    compacted = compact(model, SHAPE)
    compact_s = time.perf_counter() - start
    model.eval()
    with torch.inference_mode():
        err = max(float((model(x) - compacted(x)).abs().max()) for x in batches)

    def timing(m: torch.nn.Module) -> float:
        return time_inference(m, lambda: batches, device, repeats=1, warmup=0).median

    # More repeats than elsewhere: one pass takes a few ms to a tenth of a second.
    repeats = max(ctx.repeats, 15)
    base_s, new_s = alternate(lambda: timing(model), lambda: timing(compacted), repeats,
                              warmup=2, log=None)
    info_c = compacted.info
    widths = "-".join(str(layer.out_after) for layer in info_c.layers)
    kernels = ",".join(layer.kernel for layer in info_c.layers)
    row = speedup_row(
        f"sparse inference fc c=2, {N_TEST:,} images (s)", base_s, new_s, TARGET,
        note=f"max |output diff| {err:.1e} (<= {TOLERANCE:g}: {err <= TOLERANCE}); compact widths "
             f"{widths} ({kernels}), {info_c.params_after:,} of {info_c.params_before:,} "
             f"params; compact() took {compact_s:.2f} s",
        data={"max_abs_diff": err, "compact_seconds": compact_s, "info": info_c.to_dict()})
    if err > TOLERANCE:
        row.passed = False
    return [row]

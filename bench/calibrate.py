"""``python -m bench.calibrate``: a 2-second probe of how this machine runs 2-thread torch
right now, for ``python -m bench --omp-wait-policy auto``.

It times small steps (an fc forward/backward at batch 64, a tiny linear layer) and prints the
median microseconds as JSON. ``bench/__main__`` runs it once with libgomp's default wait policy
and once with PASSIVE and keeps the faster: on an idle machine the default spin is faster
(tiny ops 3-10x), on a machine whose cores other jobs are using PASSIVE avoids 5-50x stalls.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def probe(threads: int, seconds: float = 1.5) -> float:
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 100),
                          nn.ReLU(), nn.Linear(100, 10))
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    small, w = torch.randn(256, 16), torch.randn(16, 16)
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 20:
        start = time.perf_counter()
        F.cross_entropy(model(x), y).backward()
        for _ in range(5):
            F.linear(small, w)
        times.append(time.perf_counter() - start)
    return statistics.median(times[5:]) * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.calibrate")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    print(json.dumps({"median_us": probe(args.threads)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

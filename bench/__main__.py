"""``python -m bench [--quick | --full] [--only NAME,...]``: run the benchmarks, print one table,
write bench/results.json.

``--quick`` (the default, what ``make bench`` runs) scales the long figures down so that all of
them take a few minutes on 2 CPU cores; every scaled figure is still a ratio of the same work
done both ways (see bench/NOTES.md). ``--full`` runs the sizes of the issue (full epochs,
100 SynFlow iterations, 100-image SNIP/GraSP batches).

The OpenMP wait policy must be chosen before torch loads, so ``--omp-wait-policy`` is applied
here, first. It matters on a 2-core machine shared with other jobs: there libgomp's default
spinning made 2-thread steps 5-50x slower with huge tails, while PASSIVE fixed that but made
tiny ops 3-10x slower on an idle machine (NOTES.md). ``auto`` (the default) runs
``bench.calibrate`` under both and keeps the faster for this run; ``inherit`` leaves the
environment alone. Baseline and prunetui always share the process, hence the policy; the
choice, the probe's numbers and the load average before and after go into results.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

BENCHES = {
    "train": "bench.train_fc",
    "synflow": "bench.synflow",
    "snip-grasp": "bench.data_pruners",
    "sparse": "bench.sparse_inference",
    "app": "bench.app_start",
    "gpu": "bench.gpu",
}
RESULTS = Path(__file__).resolve().parent / "results.json"


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="scaled-down sizes (default)")
    size.add_argument("--full", action="store_true", help="the issue's full sizes (slow on CPU)")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(BENCHES)}")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per figure (>= 5)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for both sides")
    ap.add_argument("--omp-wait-policy", default="auto",
                    choices=["auto", "passive", "active", "inherit"],
                    help="OMP_WAIT_POLICY for this process and its children")
    ap.add_argument("--gpu-device", default=None,
                    help="run the gpu benchmark on this device (e.g. cpu: a tiny smoke test)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON results")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a measured target fails")
    ap.add_argument("-q", "--silent", action="store_true", help="no progress lines on stderr")
    return ap.parse_args(argv)


def _rounded(values: tuple[float, ...] | None) -> list[float] | None:
    return None if values is None else [round(v, 2) for v in values]


def _table(rows: list[dict[str, object]]) -> str:
    head = ["benchmark", "baseline", "prunetui", "ratio", "target", "result"]
    body = []
    for r in rows:
        ratio = r["ratio"]
        body.append([
            str(r["benchmark"]), str(r["baseline"]), str(r["prunetui"]),
            "-" if ratio is None else f"{float(ratio):.2f}x",  # type: ignore[arg-type]
            str(r["target"]), str(r["result"]),
        ])
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    for b, r in zip(body, rows, strict=True):
        lines.append("  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)).rstrip())
        if r.get("note"):
            lines.append(f"    {r['note']}")
    return "\n".join(lines)


def _calibrate(threads: int) -> dict[str, float]:
    """Median step time (us) of ``bench.calibrate`` under the default and PASSIVE policies."""
    import subprocess

    out: dict[str, float] = {}
    for policy in ("default", "PASSIVE"):
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        if policy != "default":
            env["OMP_WAIT_POLICY"] = policy
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "bench.calibrate", "--threads", str(threads)],
                env=env, capture_output=True, text=True, timeout=120,
                cwd=Path(__file__).resolve().parent.parent)
            out[policy] = float(json.loads(proc.stdout.strip().splitlines()[-1])["median_us"])
        except (subprocess.SubprocessError, ValueError, IndexError, KeyError, OSError):
            return {}
    print(f"OpenMP wait policy probe (us/step): default {out['default']:.0f}, PASSIVE "
          f"{out['PASSIVE']:.0f}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    # Bad arguments first: the probe below takes seconds.
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"error: unknown benchmark(s) {', '.join(unknown)}; choose from "
              f"{', '.join(BENCHES)}", file=sys.stderr)
        return 2
    if args.repeats < 1:
        print("error: --repeats must be >= 1", file=sys.stderr)
        return 2
    probe: dict[str, float] = {}
    if args.omp_wait_policy == "auto":
        probe = _calibrate(args.threads)
        if probe and probe["PASSIVE"] < probe["default"]:
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    elif args.omp_wait_policy != "inherit":
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()

    import torch  # after the environment above

    from bench.timing import Context, Row, load_average, not_measured

    torch.set_num_threads(args.threads)
    ctx = Context(quick=not args.full, repeats=args.repeats, threads=args.threads,
                  gpu_device=args.gpu_device, verbose=not args.silent)
    meta: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "mode": "quick" if ctx.quick else "full",
        "repeats": ctx.repeats,
        "threads": ctx.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "omp_probe_us": probe,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_before": _rounded(load_average()),
    }
    rows: list[Row] = []
    start = time.perf_counter()
    for name in names:
        ctx.log(f"{name} ...")
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(BENCHES[name])
            got = module.run(ctx)
        except Exception as e:  # one broken benchmark must not hide the others
            traceback.print_exc(file=sys.stderr)
            got = [not_measured(name, f"error: {type(e).__name__}: {e}")]
        ctx.log(f"{name} done in {time.perf_counter() - t0:.1f} s")
        rows.extend(got)
    meta["seconds"] = round(time.perf_counter() - start, 1)
    meta["load_average_after"] = _rounded(load_average())
    dicts = [r.to_dict() for r in rows]
    print(_table(dicts))
    print(f"\n{len(rows)} figures in {meta['seconds']} s ({meta['mode']}, "
          f"{ctx.threads} threads, OMP_WAIT_POLICY={meta['omp_wait_policy']}, "
          f"load average {meta['load_average_before']} -> {meta['load_average_after']})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": dicts}, indent=2) + "\n")
    print(f"wrote {args.out}")
    failed = [r for r in rows if r.passed is False]
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())

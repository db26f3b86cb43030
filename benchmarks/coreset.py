"""Micro-benchmark of :func:`aalearn.functional.k_center_greedy` on random features.

Times one call (the chunked distances to the labeled centers, then ``budget``
greedy steps) and, separately, the first stage alone (``budget=1``), for each
chunk size; prints the median over ``--repeats`` runs in seconds.

    python benchmarks/coreset.py                      # 50,000 x 512, 5,000 labeled, budget 2,500
    python benchmarks/coreset.py --chunk-sizes 2048 --repeats 1
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from typing import Callable

import torch

from aalearn.functional.coreset import k_center_greedy


def _time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="number of points (default 50000)")
    parser.add_argument("--dim", type=int, default=512, help="feature dimension (default 512)")
    parser.add_argument("--labeled", type=int, default=5_000, help="initial centers (default 5000)")
    parser.add_argument("--budget", type=int, default=2_500, help="points to pick (default 2500)")
    parser.add_argument(
        "--chunk-sizes", type=int, nargs="+", default=[1024, 4096, 8192], help="chunk sizes"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting (median shown)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.n, args.dim, generator=gen, dtype=getattr(torch, args.dtype)).to(device)
    mask = torch.zeros(args.n, dtype=torch.bool)
    mask[torch.randperm(args.n, generator=gen)[: args.labeled]] = True
    mask = mask.to(device)
    print(
        f"k_center_greedy: N={args.n} D={args.dim} labeled={args.labeled} budget={args.budget} "
        f"device={device} dtype={args.dtype} threads={torch.get_num_threads()} "
        f"repeats={args.repeats} (median seconds)"
    )
    k_center_greedy(x[:100], mask[:100], 1)  # warm-up
    print(f"{'chunk_size':>10} {'first stage':>12} {'total':>10} {'per step (ms)':>14}")
    for chunk in args.chunk_sizes:
        run = functools.partial(k_center_greedy, x, mask, chunk_size=chunk)
        first = _time(functools.partial(run, 1), device, args.repeats)
        total = _time(functools.partial(run, args.budget), device, args.repeats)
        step_ms = 1e3 * (total - first) / max(args.budget - 1, 1)
        print(f"{chunk:>10} {first:>12.3f} {total:>10.3f} {step_ms:>14.2f}")


if __name__ == "__main__":
    main()

"""Scaling of sharded selection: 1 process against 2 gloo processes on this machine.

Two ranks are spawned (gloo on 127.0.0.1, one thread each). Within every repeat,
interleaved, the script times on the same data and model (a small MLP on random
inputs):

1. an entropy selection (:class:`aalearn.UncertaintySampler`) sharded over the two
   ranks with :class:`aalearn.distributed.ShardedSampler`, and the same selection by
   rank 0 alone (1 thread, then 2 threads) while rank 1 waits;
2. the inference pass of a feature-based sampler (Core-Set, AALU): features of
   every item, sharded and all-gathered, against one process.

It reports throughput (items/s), the scaling efficiency
``throughput_2 / (2 * throughput_1)`` and the bytes each rank receives per round.

    python benchmarks/distributed.py            # writes its section of docs/benchmarks.md
    python benchmarks/distributed.py --quick    # a smoke run, writes nothing
"""

from __future__ import annotations

import argparse
import datetime
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import TensorDataset

import aalearn
from aalearn.distributed import ShardedSampler

try:  # run as a script or as a module
    from benchmarks._report import command, machine, write_section
except ImportError:  # pragma: no cover
    from _report import command, machine, write_section  # type: ignore

WORLD = 2


class FeaturePass(aalearn.BaseSampler):
    """The inference pass of a feature-based sampler, without its selection algorithm."""

    def _select(self, model: Any, pool: Any, budget: int, rng: Any) -> np.ndarray:
        self._collect(model, pool, pool.unlabeled_indices, probs=False, features=True)
        return pool.unlabeled_indices[:budget].copy()


def make_data(n_items: int, n_inputs: int, hidden: int) -> tuple[nn.Module, aalearn.ActivePool]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_items, n_inputs, generator=g)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 10),
        )  # fmt: skip
    return model, aalearn.ActivePool(TensorDataset(x, torch.zeros(n_items, dtype=torch.long)))


def _timed(fn: Callable[[], Any]) -> float:
    dist.barrier()
    start = time.perf_counter()
    fn()
    dist.barrier()
    return time.perf_counter() - start


def _worker(rank: int, port: int, args: argparse.Namespace, out: str) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(minutes=10),
    )
    try:
        model, pool = make_data(args.n_items, args.inputs, args.hidden)
        kw = {"batch_size": args.batch_size, "device": "cpu"}
        entropy = aalearn.UncertaintySampler("entropy", inference=kw)
        features = FeaturePass(inference=kw)
        sharded = {"entropy": ShardedSampler(entropy), "features": ShardedSampler(features)}
        single = {"entropy": entropy, "features": features}

        def alone(name: str, threads: int) -> Callable[[], Any]:
            def run() -> None:
                if rank == 0:
                    torch.set_num_threads(threads)
                    single[name].select(model, pool, args.budget)
                    torch.set_num_threads(1)

            return run

        times: dict[str, list[float]] = {}
        for repeat in range(args.repeats + 1):  # the first is a warm-up
            for name in ("entropy", "features"):
                runs = {
                    f"{name} 2 processes": lambda n=name: sharded[n].select(
                        model, pool, args.budget
                    ),
                    f"{name} 1 process": alone(name, 1),
                    f"{name} 1 process, 2 threads": alone(name, 2),
                }
                for key, fn in runs.items():
                    seconds = _timed(fn)
                    if repeat:
                        times.setdefault(key, []).append(seconds)
        picked = sharded["entropy"].select(model, pool, args.budget)  # on every rank
        if rank == 0:
            np.testing.assert_array_equal(picked, entropy.select(model, pool, args.budget))
            result = {
                "median": {k: statistics.median(v) for k, v in times.items()},
                "bytes": {k: s.bytes_communicated_ for k, s in sharded.items()},
            }
            torch.save(result, Path(out) / "result.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def report(args: argparse.Namespace, result: dict) -> str:
    med, nbytes, n = result["median"], result["bytes"], args.n_items
    lines = [
        f"Command: `{command()}`",
        "",
        f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the start."
        + (
            f" **This machine has only {os.cpu_count()} CPU cores**: two ranks of one thread "
            "each use all of them, and any other job on it takes from them, so the numbers "
            "show the overhead of sharding, not what separate machines or GPUs give."
            if (os.cpu_count() or 1) <= 2
            else ""
        ),
        "",
        f"{n:,} items, an MLP {args.inputs}-{args.hidden}-{args.hidden}-10, batch size "
        f"{args.batch_size}, budget {args.budget}; gloo on 127.0.0.1; medians of "
        f"{args.repeats} interleaved repeats.",
        "",
        "| pass | 1 process, 1 thread | 1 process, 2 threads | 2 processes, 1 thread each "
        "| scaling efficiency | bytes per rank per round |",
        "|---|---|---|---|---|---|",
    ]
    for name, what in (("entropy", "entropy selection (top-k merge)"),
                       ("features", "features of every item (all-gather)")):  # fmt: skip
        one, two_threads = med[f"{name} 1 process"], med[f"{name} 1 process, 2 threads"]
        two = med[f"{name} 2 processes"]
        eff = (n / two) / (2 * n / one)
        lines.append(
            f"| {what} | {n / one:,.0f} items/s | {n / two_threads:,.0f} items/s "
            f"| {n / two:,.0f} items/s | {eff:.2f} | {nbytes[name]:,} |"
        )
    k, d = args.budget, args.hidden
    rows = -(-n // WORLD)
    lines += [
        "",
        "Scaling efficiency is `throughput_2 / (2 * throughput_1)` against one process of "
        "one thread. Bytes are what the collectives return to each rank: for the top-k "
        f"merge `world * k * (4 + 8)` = {WORLD * k * 12:,} (k = {k}), for the features "
        f"`world * ceil(N / world) * D * 4` = {WORLD * rows * d * 4:,} (D = {d}), plus "
        f"`4 * world` per failure-flag exchange and `16 * k` for the check that the ranks "
        "agree.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-items", type=int, default=200_000, help="pool size (200000)")
    parser.add_argument("--inputs", type=int, default=64, help="input features (64)")
    parser.add_argument("--hidden", type=int, default=256, help="hidden width, = D (256)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--budget", type=int, default=1000, help="items selected (1000)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, no docs update")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_items, args.repeats, args.budget = 20_000, 2, 100
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(
            _worker, args=(_free_port(), args, out), nprocs=WORLD, start_method="spawn"
        )
        result = torch.load(Path(out) / "result.pt")
    text = report(args, result)
    print(text)
    if not args.quick:
        write_section("distributed", text)


if __name__ == "__main__":
    main()

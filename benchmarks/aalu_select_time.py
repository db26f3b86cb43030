"""Time one default ``AALUSampler().select`` on the quickstart's digits pool.

The setup of ``examples/quickstart.py``: scikit-learn's digits, an 80/20 stratified
split (1,437 items in the pool), 10 % labeled at random (seed 0), the quickstart's
MLP trained 60 epochs on them, budget 5 % of the pool. Each repeat runs a fresh
``AALUSampler(random_state=0, **overrides).select`` in this process; the script prints
each time, the median, the 1-min load average before and after, and checks that every
repeat picked the same items.

    python benchmarks/aalu_select_time.py --repeats 5
    python benchmarks/aalu_select_time.py --repeats 5 --threads 2
    python benchmarks/aalu_select_time.py --repeats 1 --profile prof.out
    python benchmarks/aalu_select_time.py --repeats 5 --set 'hidden=(256,128)' min_iterations=1800

Run it with the checkout to measure on ``PYTHONPATH`` (the numbers in
``docs/benchmarks.md``, *AALU select time*, compare two checkouts that way).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

# The quickstart's model and training loop (aalearn itself comes from the environment).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import aalearn


def quickstart_pool(seed: int = 0) -> tuple[aalearn.ActivePool, torch.nn.Module, int]:
    """The quickstart's pool after its first training (cycle 0), and its budget."""
    import quickstart  # examples/quickstart.py
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from torch.utils.data import TensorDataset

    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    train_idx, _ = train_test_split(
        np.arange(len(y)), test_size=0.2, stratify=digits.target, random_state=0
    )
    pool = aalearn.ActivePool(TensorDataset(x[train_idx], y[train_idx]))
    n = len(pool)
    pool.label(pool.random_unlabeled(int(0.10 * n), random_state=seed))
    torch.manual_seed(seed)
    model = quickstart.train(quickstart.make_model(), pool.labeled_dataset(), 60, seed)
    return pool, model, int(0.05 * n)


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["hidden=(256,128)", "min_iterations=1800", "batch=topk"]`` -> keyword arguments."""
    out: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value  # a bare word: a string
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads before (default: as is)"
    )
    parser.add_argument(
        "--train-threads",
        type=int,
        default=None,
        help="the selector training's thread limit (aalearn's _TRAIN_THREADS; default: as is)",
    )
    parser.add_argument("--profile", default=None, help="write a cProfile of the first repeat")
    parser.add_argument("--set", nargs="*", default=[], help="AALUSampler overrides, key=value")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.train_threads is not None:
        from aalearn.samplers import _training

        _training._TRAIN_THREADS = args.train_threads
    kwargs = {"random_state": 0, **_parse_overrides(args.set)}
    pool, model, budget = quickstart_pool()
    load0 = os.getloadavg()[0]
    print(
        f"pool {len(pool):,} items, {pool.n_labeled} labeled, budget {budget}; torch "
        f"{torch.__version__}, {torch.get_num_threads()} thread(s) at the call; "
        f"AALUSampler({kwargs}); load {load0:.1f}",
        flush=True,
    )
    times, picks = [], []
    for r in range(args.repeats):
        sampler = aalearn.AALUSampler(**kwargs)
        start = time.perf_counter()
        if args.profile and r == 0:
            import cProfile

            prof = cProfile.Profile()
            picked = prof.runcall(sampler.select, model, pool, budget)
            prof.dump_stats(args.profile)
        else:
            picked = sampler.select(model, pool, budget)
        times.append(time.perf_counter() - start)
        picks.append(picked.tolist())
        print(f"repeat {r + 1}: {times[-1]:.2f} s", flush=True)
    same = all(p == picks[0] for p in picks)
    print(
        f"median {statistics.median(times):.2f} s over {len(times)} (min {min(times):.2f}, "
        f"max {max(times):.2f}); load {load0:.1f} -> {os.getloadavg()[0]:.1f}; "
        f"same picks every repeat: {same}; picks {picks[0][:6]}... (sha1 "
        f"{hashlib.sha1(str(picks[0]).encode()).hexdigest()[:12]})",
        flush=True,
    )


if __name__ == "__main__":
    main()

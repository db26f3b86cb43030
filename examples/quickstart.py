"""Quickstart: active learning on scikit-learn's handwritten digits, random vs entropy.

Real data that ships with scikit-learn (1,797 8x8 images), a small PyTorch model and
your own training loop; aalearn picks what to label and tracks the pools.

    python examples/quickstart.py            # about a minute on 2 CPU cores
    python examples/quickstart.py --fast     # a few seconds (used by the tests)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import aalearn


def make_model() -> nn.Module:
    # The input of the last nn.Linear is what feature-based samplers use.
    return nn.Sequential(
        nn.Linear(64, 128),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(128, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def train(model: nn.Module, dataset, epochs: int, seed: int) -> nn.Module:
    """An ordinary PyTorch training loop: aalearn is not involved."""
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=32, shuffle=True, generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return model


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())


def run(sampler: aalearn.Sampler, args: argparse.Namespace, data) -> list[tuple[int, float]]:
    train_set, x_test, y_test = data
    pool = aalearn.ActivePool(train_set)
    n = len(pool)
    pool.label(pool.random_unlabeled(int(0.10 * n), random_state=args.seed))  # 10 % at random
    budget = int(0.05 * n)  # 5 % per cycle
    curve = []
    for cycle in range(args.cycles + 1):
        torch.manual_seed(args.seed + cycle)
        model = train(make_model(), pool.labeled_dataset(), args.epochs, args.seed + cycle)
        curve.append((pool.n_labeled, accuracy(model, x_test, y_test)))
        if cycle < args.cycles:
            picked = sampler.select(model, pool, budget)  # dataset indices, best first
            pool.label(picked)  # labels come from the dataset here
    return curve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=6, help="acquisition cycles (default 6)")
    parser.add_argument("--epochs", type=int, default=60, help="training epochs per cycle")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="2 cycles, 5 epochs: a smoke run")
    args = parser.parse_args(argv)
    if args.fast:
        args.cycles, args.epochs = 2, 5
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=0.2, stratify=digits.target, random_state=0
    )
    data = (TensorDataset(x[train_idx], y[train_idx]), x[test_idx], y[test_idx])

    samplers = {
        "random": aalearn.RandomSampler(random_state=args.seed),
        "entropy": aalearn.UncertaintySampler("entropy", inference={"device": "cpu"}),
    }
    results = {}
    for name, sampler in samplers.items():
        start = time.perf_counter()
        results[name] = run(sampler, args, data)
        print(f"{name:>8}: {time.perf_counter() - start:.1f} s")
    print(f"\n{'labeled':>8} " + " ".join(f"{k:>8}" for k in results))
    for i, (n_lab, _) in enumerate(results["random"]):
        print(f"{n_lab:>8} " + " ".join(f"{results[k][i][1]:>8.3f}" for k in results))


if __name__ == "__main__":
    main()

"""The learning-curve picture of docs/history.md: a short real loop, recorded by aalearn.History.

scikit-learn's digits (1,797 real 8x8 images; 1,400 for the pool, 397 held out for the
accuracy), a 64-32-10 MLP retrained from the same seed each cycle (100 full-batch Adam
steps), 20 random labels to start and 20 more per cycle, once with
``RandomSampler`` and once with ``UncertaintySampler("margin")``. Each run records a
:class:`aalearn.History` (accuracy, selection time, picked-score summary), saves it
with its pool in one file, loads both back into a fresh pool and history, checks they
are equal, and plots the *loaded* histories on one Axes.

    python -m benchmarks.history_demo                 # writes docs/_static/history.png
    python -m benchmarks.history_demo --quick --out /tmp/history.png   # a smoke run

About 20 s on one CPU core (imports included).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

import aalearn

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "_static" / "history.png"
N_POOL = 1400  # the rest of the 1,797 digits is the held-out test set


def load_data() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return torch.tensor(digits.data / 16.0, dtype=torch.float32), torch.tensor(digits.target)


def train(x: torch.Tensor, y: torch.Tensor, labeled: np.ndarray, steps: int) -> nn.Module:
    torch.manual_seed(0)  # the same initial weights every cycle and method
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    idx = torch.from_numpy(labeled)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        optimizer.step()
    return model.eval()


def run(
    sampler: aalearn.BaseSampler, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace
) -> tuple[aalearn.ActivePool, aalearn.History]:
    """One active learning run; the last cycle is evaluated, not selected."""
    pool = aalearn.ActivePool(TensorDataset(x[:N_POOL], y[:N_POOL]))
    pool.label(pool.random_unlabeled(args.initial, random_state=args.seed))
    history = aalearn.History()
    for cycle in range(args.cycles + 1):
        model = train(x, y, pool.labeled_indices, args.steps)
        with torch.no_grad():
            accuracy = (model(x[N_POOL:]).argmax(1) == y[N_POOL:]).double().mean().item()
        if cycle == args.cycles:
            history.record(pool, method=sampler, metrics={"accuracy": accuracy})
            break
        picked = history.select(sampler, model, pool, args.budget, metrics={"accuracy": accuracy})
        pool.label(picked)
    return pool, history


def round_trip(pool: aalearn.ActivePool, history: aalearn.History, path: Path) -> aalearn.History:
    """Save the pool with its history, load both into fresh objects, check they are equal."""
    pool.save(path, history=history)
    loaded_pool, loaded = aalearn.ActivePool(pool.dataset), aalearn.History()
    loaded_pool.load(path, history=loaded)
    assert loaded == history, "the loaded history differs"
    assert np.array_equal(loaded_pool.labeled_round, pool.labeled_round)
    return loaded


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the PNG to write")
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--initial", type=int, default=20)
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="3 cycles of 20 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.cycles, args.steps = 3, 20
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    torch.set_num_threads(1)
    start = time.perf_counter()
    x, y = load_data()
    samplers = [
        aalearn.RandomSampler(random_state=args.seed),
        aalearn.UncertaintySampler("margin"),
    ]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    with tempfile.TemporaryDirectory() as tmp:
        for i, sampler in enumerate(samplers):
            pool, history = run(sampler, x, y, args)
            loaded = round_trip(pool, history, Path(tmp) / f"run{i}.npz")
            loaded.plot("accuracy", ax=ax)
            cols = loaded.columns()
            print(f"{history!r}")
            print("  labeled  accuracy  select s  mean score")
            for row in zip(
                cols["n_labeled"], cols["accuracy"], cols["seconds"], cols["score_mean"]
            ):
                print("  {:7d}  {:8.3f}  {:8.4f}  {:10.4f}".format(*row))
    print("round trip: ok")
    ax.set_title(f"digits, 64-32-10 MLP, seed {args.seed}: test accuracy by labels")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    plt.close(fig)
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()

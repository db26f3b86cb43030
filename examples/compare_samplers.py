"""Learning curves of several samplers on scikit-learn's digits, saved as a PNG.

Every sampler starts from the same random 10 % of the training set and buys 5 % per
cycle; after each cycle a fresh model is trained on the labeled set and scored on a
held-out test set. The curves (test accuracy against the number of labeled images,
averaged over ``--seeds``) go to ``--out``; the same numbers are printed as a table.
Needs matplotlib (``pip install matplotlib``, or the ``docs``/``bench`` extra).

    python examples/compare_samplers.py                       # a few minutes on 2 CPU cores
    python examples/compare_samplers.py --fast --out curves.png
    python examples/compare_samplers.py --samplers random,entropy,coreset,aalu,lossLearn

Sampler names: random; entropy, margin, least_confidence, bald (uncertainty); coreset;
aalu, advVAE, advVAE+prediction, lossLearn, advVAE+lossLearn (the rows of the AALU
paper's Table 1); vaal (the adversarial VAE on raw inputs, narrowed to run on a CPU).
"""

from __future__ import annotations

import argparse
import time
from typing import Optional

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import aalearn

UNCERTAINTY = ("entropy", "margin", "least_confidence", "bald")
AALU_VARIANTS = ("aalu", "advVAE", "advVAE+prediction", "lossLearn", "advVAE+lossLearn")
NAMES = ("random", *UNCERTAINTY, "coreset", *AALU_VARIANTS, "vaal")


def make_sampler(name: str, seed: int, selector_epochs: float) -> aalearn.Sampler:
    """The sampler called ``name``, on the CPU, seeded with ``seed``."""
    if name == "random":
        return aalearn.RandomSampler(random_state=seed)
    if name in UNCERTAINTY:
        return aalearn.UncertaintySampler(name, inference={"device": "cpu"}, random_state=seed)
    if name == "coreset":
        return aalearn.CoreSetSampler(inference={"device": "cpu"})
    if name in AALU_VARIANTS:
        floor = {"min_iterations": 0} if selector_epochs < 2 else {}  # --fast: no floor
        return aalearn.AALUSampler(
            variant=name,
            epochs=selector_epochs,
            inference={"device": "cpu"},
            random_state=seed,
            **floor,
        )
    if name == "vaal":
        # vae_channels=16: VAAL's convolutional VAE at 1/8 of its reference width (128),
        # so that it trains in seconds on a CPU; the shape of the network is the same.
        return aalearn.AdversarialSampler(
            representation="raw",
            vae_channels=16,
            epochs=selector_epochs,
            inference={"device": "cpu"},
            random_state=seed,
        )
    raise ValueError(f"Unknown sampler {name!r}; expected one of {list(NAMES)}.")


def make_model() -> nn.Module:
    # Images in, logits out; the input of the last nn.Linear is the feature vector.
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 128),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(128, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def train(model: nn.Module, dataset, epochs: int, seed: int) -> nn.Module:
    loader = DataLoader(
        dataset, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
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


def learning_curve(
    name: str, seed: int, args: argparse.Namespace, data
) -> tuple[list[int], list[float]]:
    train_set, x_test, y_test = data
    sampler = make_sampler(name, seed, args.selector_epochs)
    pool = aalearn.ActivePool(train_set)
    pool.label(pool.random_unlabeled(round(0.10 * len(pool)), random_state=seed))
    budget = round(0.05 * len(pool))
    sizes, accs = [], []
    for cycle in range(args.cycles + 1):
        torch.manual_seed(seed * 1000 + cycle)
        model = train(make_model(), pool.labeled_dataset(), args.epochs, seed * 1000 + cycle)
        sizes.append(pool.n_labeled)
        accs.append(accuracy(model, x_test, y_test))
        if cycle < args.cycles:
            pool.label(sampler.select(model, pool, budget))
    return sizes, accs


def plot(curves: dict[str, tuple[list[int], np.ndarray]], path: str, n_seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, (sizes, accs) in curves.items():
        ax.plot(sizes, accs.mean(axis=0), marker="o", label=name)
    ax.set_xlabel("labeled training images")
    ax.set_ylabel("test accuracy" + (f" (mean of {n_seeds} seeds)" if n_seeds > 1 else ""))
    ax.set_title("Active learning on scikit-learn's digits")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--samplers",
        default="random,entropy,coreset,aalu",
        help=f"comma-separated names, from: {', '.join(NAMES)}",
    )
    parser.add_argument("--out", default="compare_samplers.png", help="PNG file to write")
    parser.add_argument("--cycles", type=int, default=6, help="acquisition cycles")
    parser.add_argument("--epochs", type=int, default=60, help="task-model epochs per cycle")
    parser.add_argument(
        "--selector-epochs",
        type=float,
        default=20,
        help="training epochs of the AALU/VAAL selector networks (the paper: 100)",
    )
    parser.add_argument("--seeds", type=int, default=1, help="repeats, averaged")
    parser.add_argument("--fast", action="store_true", help="2 cycles, few epochs: a smoke run")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.samplers.split(",") if n.strip()]
    unknown = [n for n in names if n not in NAMES]
    if unknown or not names:
        parser.error(f"unknown sampler(s) {unknown}; choose from {', '.join(NAMES)}")
    if args.fast:
        args.cycles, args.epochs, args.selector_epochs = 2, 5, 1
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        parser.exit(1, f"{parser.prog}: error: matplotlib is needed: pip install matplotlib\n")
    torch.set_num_threads(1)  # a model this small runs fastest on one thread

    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(digits.target)
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=0.2, stratify=digits.target, random_state=0
    )
    data = (TensorDataset(x[train_idx], y[train_idx]), x[test_idx], y[test_idx])

    curves: dict[str, tuple[list[int], np.ndarray]] = {}
    for name in names:
        start = time.perf_counter()
        runs = [learning_curve(name, seed, args, data) for seed in range(args.seeds)]
        curves[name] = (runs[0][0], np.array([accs for _, accs in runs]))
        print(f"{name:>18}: {time.perf_counter() - start:6.1f} s")

    width = max(10, *(len(n) for n in names))
    print(f"\n{'labeled':>8} " + " ".join(f"{n:>{width}}" for n in names))
    sizes = curves[names[0]][0]
    for i, n_labeled in enumerate(sizes):
        row = " ".join(f"{curves[n][1][:, i].mean():>{width}.3f}" for n in names)
        print(f"{n_labeled:>8} {row}")
    plot(curves, args.out, args.seeds)
    print(f"\nlearning curves saved to {args.out}")


if __name__ == "__main__":
    main()

"""Your own model and training loop, with labels from an oracle and a resumable pool.

The pool's dataset holds images only, no targets, as in a real labeling project: labels
come from an "oracle" (here the hidden digit labels of scikit-learn's digits), through
``pool.label(picked, labels=...)``. The sampler is Core-Set on features captured from a
*named* layer of the model (``feature_layer="neck"``: the input of the module called
``neck``). The pool is saved after every cycle and loaded back at the end.

    python examples/custom_training_loop.py                 # about 20 s on 2 CPU cores
    python examples/custom_training_loop.py --fast          # a few seconds
    python examples/custom_training_loop.py --feature-layer classifier
"""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Optional

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import aalearn


class DigitNet(nn.Module):
    """A small CNN for 1x8x8 digits, with named parts.

    ``conv`` ends in a 128-d vector (the input of ``neck``), ``neck`` maps it to 64-d
    (the input of ``classifier``), ``classifier`` gives the 10 logits.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )
        self.neck = nn.Sequential(nn.Linear(128, 64), nn.ReLU())
        self.classifier = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.neck(self.conv(x)))


class Oracle:
    """Answers label requests; counts how many it answered."""

    def __init__(self, hidden_labels: np.ndarray) -> None:
        self._labels = hidden_labels
        self.asked = 0

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        self.asked += len(indices)
        return self._labels[indices]


def train(model: nn.Module, dataset, epochs: int, seed: int) -> nn.Module:
    """The user's own loop: plain PyTorch, nothing from aalearn."""
    loader = DataLoader(
        dataset, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(epochs):
        for x, y in loader:  # (image, oracle label): the pool's labeled view adds the label
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return model


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--cycles", type=int, default=5, help="acquisition cycles")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs per cycle")
    parser.add_argument("--initial", type=int, default=100, help="initial random labels")
    parser.add_argument("--budget", type=int, default=50, help="labels bought per cycle")
    parser.add_argument(
        "--feature-layer",
        default="neck",
        help="module whose input is the feature vector (a name from model.named_modules())",
    )
    parser.add_argument(
        "--work-dir", default=None, help="where pool.npz goes (default: a temp dir)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="2 cycles, 10 epochs: a smoke run")
    args = parser.parse_args(argv)
    if args.fast:
        args.cycles, args.epochs = 2, 10
    torch.set_num_threads(1)  # a model this small runs fastest on one thread

    digits = load_digits()
    images = torch.tensor(digits.data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    train_idx, test_idx = train_test_split(
        np.arange(len(images)), test_size=0.2, stratify=digits.target, random_state=0
    )
    # The pool sees images only; the labels stay with the oracle.
    unlabeled_images = TensorDataset(images[train_idx])
    oracle = Oracle(digits.target[train_idx].astype(np.int64))
    x_test, y_test = images[test_idx], torch.tensor(digits.target[test_idx])

    pool = aalearn.ActivePool(unlabeled_images)
    first = pool.random_unlabeled(args.initial, random_state=args.seed)
    pool.label(first, labels=oracle(first))

    # Show what the named layer gives: the inference pass captures the *input* of it.
    probe = DigitNet()
    for name in (args.feature_layer, "classifier"):
        out = aalearn.collect(
            probe,
            unlabeled_images,
            pool.labeled_indices[:4],
            features=True,
            feature_layer=name,
            device="cpu",
        )
        print(f"features from layer {name!r}: {tuple(out.features.shape)}")

    sampler = aalearn.CoreSetSampler(
        inference={"feature_layer": args.feature_layer, "device": "cpu"}
    )
    print(f"sampler: {sampler!r}\n")

    work_dir = args.work_dir or tempfile.mkdtemp(prefix="aalearn-example-")
    path = os.path.join(work_dir, "pool.npz")
    print(f"{'cycle':>5} {'labeled':>8} {'accuracy':>9}")
    for cycle in range(args.cycles + 1):
        torch.manual_seed(args.seed + cycle)
        model = train(DigitNet(), pool.labeled_dataset(), args.epochs, args.seed + cycle)
        print(f"{cycle:>5} {pool.n_labeled:>8} {accuracy(model, x_test, y_test):>9.3f}")
        if cycle == args.cycles:
            break
        picked = sampler.select(model, pool, args.budget)  # dataset indices, best first
        pool.label(picked, labels=oracle(picked))  # the oracle's answers
        pool.save(path)  # resume from here after a crash

    # A new session: the same dataset, the saved state.
    resumed = aalearn.ActivePool(unlabeled_images)
    resumed.load(path)
    assert np.array_equal(resumed.labeled_indices, pool.labeled_indices)
    assert np.array_equal(resumed.labels(), pool.labels())
    print(
        f"\npool saved to {path} and loaded back: {resumed.n_labeled} labeled in "
        f"{resumed.round} rounds, {oracle.asked} labels asked of the oracle"
    )


if __name__ == "__main__":
    main()

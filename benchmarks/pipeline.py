"""Overhead of aalearn's plumbing: the inference pass and the pool's dataset views.

1. ``aalearn.collect`` (probabilities, optionally features) against a bare
   ``for x, _ in loader: model(x)`` loop over the same data, batch size and model
   (both in eval mode under ``torch.inference_mode``). Target: within 1.10x.
2. Iterating a ``DataLoader`` over ``pool.labeled_dataset()`` against one over a plain
   ``torch.utils.data.Subset`` with the same indices. Target: within 1.05x (baal's
   users measured 17x there, baal issue #264).

    python benchmarks/pipeline.py            # writes its section of docs/benchmarks.md
    python benchmarks/pipeline.py --quick    # a smoke run, writes nothing
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

import aalearn

try:  # run as a script or as a module
    from benchmarks._report import command, interleaved_medians, machine, write_section
except ImportError:  # pragma: no cover
    from _report import command, interleaved_medians, machine, write_section  # type: ignore


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    ).eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-items", type=int, default=20_000, help="inference pool size")
    parser.add_argument("--n-subset", type=int, default=200_000, help="dataset size for views")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, no docs update")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_items, args.n_subset, args.repeats = 512, 2_000, 2
    dev = torch.device(args.device)
    torch.manual_seed(0)

    # ---- 1. inference pass
    data = TensorDataset(
        torch.randn(args.n_items, 1, 28, 28), torch.randint(0, 10, (args.n_items,))
    )
    idx = np.arange(args.n_items)
    model = small_cnn().to(dev)
    pin = dev.type == "cuda"

    def bare() -> None:
        loader = DataLoader(Subset(data, idx.tolist()), batch_size=args.batch_size, pin_memory=pin)
        with torch.inference_mode():
            for x, _ in loader:
                model(x.to(dev, non_blocking=pin))

    def ours_probs() -> None:
        aalearn.collect(model, data, idx, batch_size=args.batch_size, device=dev)

    def ours_features() -> None:
        aalearn.collect(model, data, idx, features=True, batch_size=args.batch_size, device=dev)

    inf = interleaved_medians(
        {
            "bare loop": bare,
            "collect (probs)": ours_probs,
            "collect (probs + features)": ours_features,
        },
        args.repeats,
    )

    # ---- 2. dataset views
    big = TensorDataset(torch.randn(args.n_subset, 16), torch.randint(0, 10, (args.n_subset,)))
    pool = aalearn.ActivePool(big)
    half = pool.random_unlabeled(args.n_subset // 2, random_state=0)
    pool.label(half[: len(half) // 2])
    pool.label(half[len(half) // 2 :], labels=np.zeros(len(half) - len(half) // 2, dtype=np.int64))
    plain = Subset(big, pool.labeled_indices.tolist())

    def iterate(ds) -> None:
        for _ in DataLoader(ds, batch_size=64, shuffle=False):
            pass

    pool_plain = aalearn.ActivePool(big)
    pool_plain.label(pool.labeled_indices)  # same indices, no oracle labels
    views = interleaved_medians(
        {
            "Subset": lambda: iterate(plain),
            "pool.labeled_dataset()": lambda: iterate(pool_plain.labeled_dataset()),
            "pool.labeled_dataset() with oracle labels": lambda: iterate(pool.labeled_dataset()),
        },
        args.repeats,
    )

    lines = [
        f"Machine: {machine()}. Command: `{command()}`. Medians of {args.repeats} interleaved "
        "repeats.",
        "",
        f"Inference pass over {args.n_items:,} items of 1x28x28 (small CNN, batch "
        f"{args.batch_size}, device {dev}):",
        "",
        "| contender | median s | ratio to bare loop |",
        "|---|---|---|",
    ]
    for k, v in inf.items():
        lines.append(f"| {k} | {v:.3f} | {v / inf['bare loop']:.3f} |")
    lines += [
        "",
        f"DataLoader (batch 64) over {len(plain):,} labeled items of a {args.n_subset:,}-item "
        "TensorDataset:",
        "",
        "| contender | median s | ratio to Subset |",
        "|---|---|---|",
    ]
    for k, v in views.items():
        lines.append(f"| {k} | {v:.3f} | {v / views['Subset']:.3f} |")
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        write_section("pipeline", text)


if __name__ == "__main__":
    main()

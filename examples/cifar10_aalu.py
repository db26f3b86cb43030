"""The AALU paper's CIFAR-10 experiment: ResNet18, 10 % labeled at random, +5 % per loop to 40 %.

Needs the ``vision`` extra (``pip install -e ".[vision]"``), CIFAR-10 on disk (the
``cifar-10-batches-py`` folder that ``torchvision.datasets.CIFAR10(root,
download=True)`` creates under ``root``; this script never downloads) and, for the full
protocol, a GPU: every loop retrains ResNet18 from scratch.

    python examples/cifar10_aalu.py --data-dir data --variant aalu --seeds 5
    python examples/cifar10_aalu.py --data-dir data --variant advVAE+lossLearn
    python examples/cifar10_aalu.py --data-dir data --fast      # a smoke run on 2,000 images

Variants: the rows of the paper's Table 1 (random, advVAE, advVAE+prediction,
lossLearn, advVAE+lossLearn, aalu) and the baselines of its comparison (entropy,
coreset, vaal). Prints the test accuracy after every loop, then the mean over seeds by
percentage labeled, the layout of Table 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, NoReturn, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

import aalearn

PROG = "cifar10_aalu.py"
AALU_VARIANTS = ("aalu", "advVAE", "advVAE+prediction", "lossLearn", "advVAE+lossLearn")
VARIANTS = ("random", *AALU_VARIANTS, "entropy", "coreset", "vaal")
# CIFAR-10's per-channel mean and standard deviation over the training set.
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def fail(message: str) -> NoReturn:
    """Stop with one line on stderr and exit status 1 (no traceback)."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(1)


def import_torchvision() -> Any:
    """torchvision, or a clean exit when it is missing or does not load with this torch."""
    try:
        import torchvision
        from torchvision import datasets, models, transforms  # noqa: F401
    except Exception as err:  # ImportError, or e.g. RuntimeError from a mismatched build
        first_line = (str(err).strip().splitlines() or [""])[0]
        fail(
            f"torchvision is needed and could not be imported ({type(err).__name__}: "
            f"{first_line}); install the build that matches torch {torch.__version__}: "
            'pip install -e ".[vision]"'
        )
    return torchvision


def load_cifar10(tv: Any, data_dir: str) -> tuple[Any, Any, Any]:
    """(train with flips, train without augmentation, test), or a clean exit."""
    T = tv.transforms
    normalize = [T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)]
    flips = T.Compose([T.RandomHorizontalFlip(), *normalize])  # the paper's augmentation
    plain = T.Compose(normalize)
    try:
        train_aug = tv.datasets.CIFAR10(data_dir, train=True, transform=flips, download=False)
        train_plain = tv.datasets.CIFAR10(data_dir, train=True, transform=plain, download=False)
        test = tv.datasets.CIFAR10(data_dir, train=False, transform=plain, download=False)
    except Exception as err:  # torchvision raises RuntimeError on a missing or corrupt copy
        fail(f"CIFAR-10 in {data_dir!r} could not be loaded: {err}")
    return train_aug, train_plain, test


def resnet18(tv: Any, imagenet_stem: bool) -> nn.Module:
    """torchvision's ResNet18 for 10 classes; by default with the 32x32 (CIFAR) stem."""
    net = tv.models.resnet18(num_classes=10)
    if not imagenet_stem:
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    return net


def make_sampler(args: argparse.Namespace, seed: int, device: torch.device) -> aalearn.Sampler:
    inference = aalearn.InferenceConfig(
        device=device,
        num_workers=args.workers,
        batch_size=args.inference_batch_size,
        autocast=args.amp,
    )
    common = dict(inference=inference)
    if args.variant == "random":
        return aalearn.RandomSampler(random_state=seed)
    if args.variant == "entropy":
        return aalearn.UncertaintySampler("entropy", **common)
    if args.variant == "coreset":
        return aalearn.CoreSetSampler(**common)
    if args.variant == "vaal":
        return aalearn.AdversarialSampler(
            representation="raw", epochs=args.selector_epochs, random_state=seed, **common
        )
    # --paper: the paper's exact configuration (plain top-k, no iteration floor).
    make = aalearn.AALUSampler.paper if args.paper else aalearn.AALUSampler
    floor = {"min_iterations": 0} if args.fast else {}
    return make(
        variant=args.variant, epochs=args.selector_epochs, random_state=seed, **floor, **common
    )


def train(model: nn.Module, dataset: Any, args: argparse.Namespace, device: torch.device) -> None:
    """SGD 0.1, momentum 0.9, weight decay 5e-4, learning rate / 10 at 80 % of the epochs."""
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        drop_last=len(dataset) > args.batch_size,
    )
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[int(0.8 * args.epochs)])
    model.train()
    for _ in range(args.epochs):
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=args.amp):
                loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()


@torch.no_grad()
def evaluate(
    model: nn.Module, dataset: Any, args: argparse.Namespace, device: torch.device
) -> float:
    model.eval()
    loader = DataLoader(dataset, batch_size=512, num_workers=args.workers)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for x, y in loader:
        with torch.autocast(device.type, enabled=args.amp):
            logits = model(x.to(device, non_blocking=True))
        correct += (logits.argmax(1) == y.to(device)).sum()
    return int(correct) / len(dataset)


def run_seed(
    seed: int, args: argparse.Namespace, data: tuple[Any, Any, Any], tv: Any, device: torch.device
) -> dict[int, float]:
    train_aug, train_plain, test = data
    n = len(train_plain)
    pool = aalearn.ActivePool(train_plain)  # selection sees the images without flips
    pool.label(pool.random_unlabeled(round(args.initial * n), random_state=seed))
    budget = round(args.step * n)
    sampler = make_sampler(args, seed, device)
    results: dict[int, float] = {}
    while True:
        torch.manual_seed(seed * 1000 + pool.round)
        model = resnet18(tv, args.imagenet_stem).to(device)
        start = time.perf_counter()
        train(model, Subset(train_aug, pool.labeled_indices.tolist()), args, device)
        train_s = time.perf_counter() - start
        acc = evaluate(model, test, args, device)
        pct = round(100 * pool.n_labeled / n)
        results[pct] = acc
        line = f"seed {seed}  labeled {pool.n_labeled:>6} ({pct:>2d} %)  accuracy {100 * acc:6.2f}"
        if pool.n_labeled + budget > round(args.final * n) + 1 or budget == 0:
            print(f"{line}  (train {train_s:.0f} s)", flush=True)
            return results
        start = time.perf_counter()
        picked = sampler.select(model, pool, budget)
        select_s = time.perf_counter() - start
        pool.label(picked)
        print(f"{line}  (train {train_s:.0f} s, select {select_s:.1f} s)", flush=True)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data-dir", default="data", help="folder holding cifar-10-batches-py")
    parser.add_argument("--variant", default="aalu", choices=VARIANTS, help="sampler")
    parser.add_argument("--seeds", type=int, default=5, help="repeats (the paper: 5)")
    parser.add_argument("--initial", type=float, default=0.10, help="initial labeled fraction")
    parser.add_argument("--step", type=float, default=0.05, help="fraction labeled per loop")
    parser.add_argument("--final", type=float, default=0.40, help="last labeled fraction")
    parser.add_argument("--epochs", type=int, default=200, help="ResNet18 epochs per loop")
    parser.add_argument("--batch-size", type=int, default=128, help="ResNet18 batch size")
    parser.add_argument("--lr", type=float, default=0.1, help="ResNet18 SGD learning rate")
    parser.add_argument(
        "--selector-epochs", type=float, default=100, help="AALU/VAAL selector epochs"
    )
    parser.add_argument(
        "--paper",
        action="store_true",
        help="AALU variants with the paper's configuration (AALUSampler.paper()), not the "
        "library's defaults",
    )
    parser.add_argument("--inference-batch-size", type=int, default=512)
    parser.add_argument("--imagenet-stem", action="store_true", help="keep the 7x7/maxpool stem")
    parser.add_argument("--device", default=None, help="default: cuda when available")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers")
    parser.add_argument("--amp", action="store_true", help="mixed precision (CUDA)")
    parser.add_argument("--out", default=None, help="write the accuracies to this JSON file")
    parser.add_argument(
        "--fast",
        action="store_true",
        help="smoke run: 2,000 training and 1,000 test images, 1 seed, 1 epoch",
    )
    args = parser.parse_args(argv)
    if args.fast:
        args.seeds, args.epochs, args.selector_epochs, args.final = 1, 1, 1, 0.20

    # Check the data first (cheap), then torchvision: each fails with one clear line.
    folder = os.path.join(args.data_dir, "cifar-10-batches-py")
    if not os.path.isdir(folder):
        fail(
            f"CIFAR-10 not found: expected the folder {folder!r}. Download it once with "
            f'python -c "import torchvision; torchvision.datasets.CIFAR10({args.data_dir!r}, '
            'download=True)", or pass --data-dir'
        )
    tv = import_torchvision()
    data = load_cifar10(tv, args.data_dir)
    if args.fast:
        train_aug, train_plain, test = data
        data = (
            Subset(train_aug, range(2000)),
            Subset(train_plain, range(2000)),
            Subset(test, range(1000)),
        )
    try:
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as err:
        fail(f"bad --device: {err}")
    if device.type == "cpu" and not args.fast:
        print(f"{PROG}: warning: no GPU; the full protocol takes days on a CPU", file=sys.stderr)
    print(f"variant {args.variant}, device {device}, {len(data[1])} training images", flush=True)

    per_seed = [run_seed(seed, args, data, tv, device) for seed in range(args.seeds)]
    print(f"\n{'labeled %':>9} {'mean acc %':>10} {'std':>6}  ({args.variant}, {args.seeds} seeds)")
    for pct in per_seed[0]:
        accs = 100 * np.array([r[pct] for r in per_seed])
        print(f"{pct:>9d} {accs.mean():>10.2f} {accs.std():>6.2f}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"variant": args.variant, "accuracy_by_percent": per_seed}, fh, indent=1)


if __name__ == "__main__":
    main()

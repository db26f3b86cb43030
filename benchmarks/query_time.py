"""Active query time per 100 selected samples: AALU, VAAL and Core-Set (AALU paper, Table 2).

The paper's setting at CIFAR-10 scale: a pool of ``--n-items`` (50,000) items of shape
3x32x32, 10 classes, 10 % labeled, a budget of 5 % (2,500), 512-d features. The
items are random (this measures time, not accuracy). The selector's training is
included, as in the paper; the task model's training is not (it is the user's, and
the same for every method). Each method runs ``select`` once, in one process:

* AALU: ``AALUSampler()`` (VAE + assistant over the 512-d features);
* VAAL: ``AdversarialSampler(representation="raw")`` (VAAL's ConvVAE on the images);
* Core-Set: ``CoreSetSampler()`` (k-center greedy on the features), if installed.

With fewer epochs than the paper's 100 (``--epochs`` for AALU, ``--vaal-epochs`` for
VAAL, reduced by default on CPU), the full-100-epoch time is **extrapolated**:
``fixed + 100 * per_epoch``, where ``per_epoch`` is timed from the samplers'
``progress`` callbacks (the time between epoch ends, or, for a partial epoch, the
training time divided by the fraction run) and ``fixed`` is the rest of the call
(inference pass, network construction, scoring).

    python benchmarks/query_time.py                  # CPU defaults; writes docs/benchmarks.md
    python benchmarks/query_time.py --device cuda --task-model resnet18
    python benchmarks/query_time.py --quick          # a smoke run, writes nothing
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn
from torch.utils.data import TensorDataset

import aalearn
from aalearn.inference import collect
from aalearn.samplers.aalu import AALUSampler
from aalearn.samplers.adversarial import AdversarialSampler

try:  # run as a script or as a module
    from benchmarks._report import DOCS, command, machine, write_section
except ImportError:  # pragma: no cover
    from _report import DOCS, command, machine, write_section  # type: ignore

#: AALU paper, Table 2: seconds per 100 selected samples on CIFAR-10, one TITAN V.
PAPER = {"AALU": 14.07, "VAAL": 75.70, "Core-Set": 29.01}
PAPER_EPOCHS = 100
SECTION = "query_time"
INTRO = (
    "Written by `benchmarks/query_time.py` (its docstring gives the method): seconds of "
    "`select` per 100 selected samples, selector training included, one block per device "
    "kind. A GPU block is made on a GPU machine with `--block-out` and inserted here with "
    "`--import-block`."
)
TASK_MODELS = {
    "small": "`SmallNet` (conv stem, pooling, a 512-wide MLP layer; cheap inference)",
    "resnet18": "`ResNet18` (the CIFAR variant, as in the paper)",
}


# ----------------------------------------------------------------- task models


class SmallNet(nn.Module):
    """A cheap task model whose feature layer outputs 512-d: conv stem, pooling, MLP."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(32 * 16, 512),
            nn.ReLU(),
        )
        self.fc = nn.Linear(512, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.short(x))


class ResNet18(nn.Module):
    """ResNet18 for 32x32 inputs (the CIFAR variant the paper trains); 512-d features."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, 64, 3, 1, 1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
        ]
        cin = 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [_Block(cin, cout, stride), _Block(cout, cout, 1)]
            cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(512, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


# -------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_select(
    sampler: Any,
    model: nn.Module,
    pool: aalearn.ActivePool,
    budget: int,
    device: torch.device,
    epochs: Optional[float] = None,
    inference: Optional[Callable[[], None]] = None,
) -> dict[str, Any]:
    """Run ``sampler.select`` once; split its time into per-epoch and fixed parts."""
    stamps: list[float] = []
    per_epoch_losses: list[dict[str, float]] = []
    if epochs is not None:

        def progress(epoch: int, losses: dict[str, float]) -> None:
            stamps.append(time.perf_counter())  # the callback's read-back synchronises
            per_epoch_losses.append(losses)

        sampler.progress = progress
    _sync(device)
    start = time.perf_counter()
    picked = sampler.select(model, pool, budget)
    _sync(device)
    total = time.perf_counter() - start
    out: dict[str, Any] = {"total": total, "epochs": epochs, "n_picked": len(picked)}
    if epochs is None:
        out.update(per_epoch=None, fixed=total, full=total, extrapolated=False)
        return out
    if len(stamps) >= 2 and float(epochs).is_integer():
        per_epoch = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
        out["per_epoch_from"] = f"{len(stamps) - 1} epoch intervals"
    else:
        # A partial epoch: training time = first stamp - start - the inference pass.
        assert inference is not None
        _sync(device)
        t = time.perf_counter()
        inference()
        _sync(device)
        infer = time.perf_counter() - t
        per_epoch = (stamps[-1] - start - infer) / epochs
        out["per_epoch_from"] = f"{epochs:g} epoch (inference {infer:.1f} s timed apart)"
    fixed = total - per_epoch * epochs
    out.update(
        per_epoch=per_epoch,
        fixed=fixed,
        full=fixed + PAPER_EPOCHS * per_epoch,
        extrapolated=epochs < PAPER_EPOCHS,
        last_losses=per_epoch_losses[-1] if per_epoch_losses else {},
    )
    return out


def warm_up(model: nn.Module, device: torch.device, coreset: Optional[type]) -> None:
    """One small select of each method first: imports, CUDA context, allocator, kernels."""
    data = TensorDataset(torch.rand(64, 3, 32, 32), torch.randint(0, 10, (64,)))
    pool = aalearn.ActivePool(data)
    pool.label(pool.random_unlabeled(16, random_state=0))
    common = {"inference": {"device": device}, "random_state": 0, "epochs": 1}
    AALUSampler(min_iterations=0, **common).select(model, pool, 4)
    AdversarialSampler(representation="raw", vae_channels=8, **common).select(model, pool, 4)
    if coreset is not None:
        coreset(inference={"device": device}).select(model, pool, 4)
    _sync(device)


def _load() -> str:
    try:
        return ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "unknown"


def _coreset_class() -> Optional[type]:
    cls = getattr(aalearn, "CoreSetSampler", None)
    if cls is None:
        try:
            from aalearn.samplers.coreset import CoreSetSampler as cls  # type: ignore[no-redef]
        except ImportError:
            return None
    return cls


# ------------------------------------------------------------------- report


def render(results: dict[str, dict[str, Any]], args: argparse.Namespace, notes: list[str]) -> str:
    budget = args.budget
    per100 = {k: v["full"] / (budget / 100) for k, v in results.items()}
    kind = "CUDA" if args.device.startswith("cuda") else "CPU"
    lines = [
        f"### {kind}: {args.n_items:,} items 3x32x32, {args.labeled:,} labeled, budget {budget:,}",
        "",
        f"Machine: {machine()}; load average {_load()} when the run started.",
        f"Task model: {TASK_MODELS[args.task_model]}, 512-d features, 10 classes, random weights.",
        "",
        f"Command: `{command()}`",
        "",
        "| method | epochs run | time of the run (s) | per epoch (s) | fixed (s) | "
        f"{PAPER_EPOCHS} epochs (s) | s per 100 selected | paper, TITAN V |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        epochs = "-" if r["epochs"] is None else f"{r['epochs']:g}"
        if r["epochs"] is not None and r["epochs"] < 1:
            epochs += f" ({int(r['epochs'] * args.n_items // 128)} iteration(s))"
        per_epoch = "-" if r["per_epoch"] is None else f"{r['per_epoch']:.3f}"
        mark = " (extrapolated)" if r["extrapolated"] else ""
        lines.append(
            f"| {name} | {epochs} | {r['total']:.1f} | {per_epoch} | {r['fixed']:.1f} | "
            f"{r['full']:.1f}{mark} | {per100[name]:.2f}{mark} | {PAPER[name]:.2f} |"
        )
    lines += ["", "| ratio | measured | paper |", "|---|---|---|"]
    verdicts = []
    if "VAAL" in per100:
        r = per100["AALU"] / per100["VAAL"]
        lines.append(f"| AALU / VAAL | {r:.3f} | {PAPER['AALU'] / PAPER['VAAL']:.2f} |")
        verdicts.append(
            f"AALU >= 10x faster than VAAL: {'met' if r <= 0.1 else 'NOT met'} ({1 / r:.0f}x)"
        )
    if "Core-Set" in per100:
        r = per100["AALU"] / per100["Core-Set"]
        lines.append(f"| AALU / Core-Set | {r:.3f} | {PAPER['AALU'] / PAPER['Core-Set']:.2f} |")
        verdicts.append(
            "AALU faster than Core-Set: "
            + (f"met ({1 / r:.1f}x faster)" if r < 1 else f"NOT met (AALU {r:.1f}x slower)")
        )
    lines += [""] + [f"- Target {v}." for v in verdicts] + [f"- {n}" for n in notes]
    return "\n".join(lines)


def write_block(key: str, block: str, path: Path = DOCS) -> None:
    """Put ``block`` in the ``key`` sub-block of the section, keeping the other sub-blocks."""
    begin, end = f"<!-- {SECTION}:begin -->", f"<!-- {SECTION}:end -->"
    text = path.read_text() if path.exists() else ""
    body = text.split(begin, 1)[1].split(end, 1)[0] if begin in text and end in text else ""
    pattern = re.compile(rf"<!-- {SECTION}/(\w+):begin -->\n(.*?)\n<!-- {SECTION}/\1:end -->", re.S)
    blocks = {k: b for k, b in pattern.findall(body)}
    blocks[key] = block.strip()
    parts = [INTRO] + [
        f"<!-- {SECTION}/{k}:begin -->\n{blocks[k]}\n<!-- {SECTION}/{k}:end -->"
        for k in sorted(blocks, key=lambda k: (k != "cpu", k))
    ]
    write_section(SECTION, "\n\n".join(parts) + "\n", path)


# --------------------------------------------------------------------- main


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-items", type=int, default=50_000, help="pool size (50,000)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--epochs",
        type=float,
        default=None,
        help="AALU epochs (default: 100 on CUDA, 2 on CPU; fewer are extrapolated to 100)",
    )
    parser.add_argument(
        "--vaal-epochs",
        type=float,
        default=None,
        help="VAAL epochs (default: 1 on CUDA, 2 iterations' worth on CPU)",
    )
    parser.add_argument("--task-model", choices=["small", "resnet18"], default="small")
    parser.add_argument("--no-vaal", action="store_true", help="skip VAAL")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--block-out", type=Path, help="also save the markdown block here")
    parser.add_argument(
        "--import-block",
        type=Path,
        help="run nothing: put a block saved with --block-out (on a GPU machine, say) in the docs",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, no docs update")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    if args.import_block is not None:
        block = args.import_block.read_text()
        key = "cuda" if block.startswith("### CUDA") else "cpu"
        write_block(key, block)
        print(f"wrote the {key} block into {DOCS}")
        return

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    if args.quick:
        args.n_items = 2_000
    args.labeled = args.n_items // 10
    args.budget = args.n_items // 20
    batch = 128
    if args.epochs is None:
        args.epochs = 0.5 if args.quick else (100.0 if cuda else 2.0)
    if args.vaal_epochs is None:
        args.vaal_epochs = 1.0 if cuda and not args.quick else 2 * batch / args.n_items
    notes = []
    reduced = []
    if args.epochs < PAPER_EPOCHS:
        reduced.append(f"{args.epochs:g} (AALU)")
    if args.vaal_epochs < PAPER_EPOCHS:
        iters = int(args.vaal_epochs * args.n_items // batch)
        reduced.append(f"{args.vaal_epochs:g} (VAAL, {iters} iterations)")
    if reduced:
        notes.append(
            f"Epochs reduced from the paper's {PAPER_EPOCHS} to {' and '.join(reduced)} on this "
            f"{'GPU' if cuda else 'CPU'}; the {PAPER_EPOCHS}-epoch columns marked so are "
            "extrapolated from the per-epoch times, not measured."
        )
    notes.append(
        "Not included, for any method: training the task model (the paper's VAAL code also "
        "trains it inside its loop). Included: the inference pass, the selector's training, "
        "scoring the unlabeled pool."
    )
    if cuda:
        notes.append("AALU's training steps run as CUDA graphs (aalearn's default on CUDA).")

    torch.manual_seed(0)
    x = torch.rand(args.n_items, 3, 32, 32)
    y = torch.randint(0, 10, (args.n_items,))
    data = TensorDataset(x, y)
    pool = aalearn.ActivePool(data)
    pool.label(pool.random_unlabeled(args.labeled, random_state=0))
    model = (ResNet18() if args.task_model == "resnet18" else SmallNet()).to(dev).eval()
    common = {"inference": {"device": dev, "batch_size": 512}, "random_state": 0}
    results: dict[str, dict[str, Any]] = {}
    warm_up(model, dev, coreset=_coreset_class())

    def aalu_inference() -> None:  # what AALUSampler's select runs before training
        lab, unl = pool.labeled_indices, pool.unlabeled_indices
        collect(model, data, lab, features=True, losses=True, device=dev, batch_size=512)
        collect(model, data, unl, features=True, device=dev, batch_size=512)

    def vaal_inference() -> None:  # what AdversarialSampler("raw")'s select runs first
        for idx in (pool.labeled_indices, pool.unlabeled_indices):
            collect(model, data, idx, inputs=True, probs=False, device=dev, batch_size=512)

    print(f"AALU, {args.epochs:g} epochs ...", flush=True)
    # No floor on the iterations: the run times whole epochs and extrapolates to 100
    # (at 50,000 items, 100 epochs are far above the default's 1,800-iteration floor).
    aalu = AALUSampler(epochs=args.epochs, min_iterations=0, **common)
    results["AALU"] = time_select(
        aalu, model, pool, args.budget, dev, args.epochs, inference=aalu_inference
    )
    print(results["AALU"], flush=True)

    if not args.no_vaal:
        print(f"VAAL, {args.vaal_epochs:g} epochs ...", flush=True)
        vaal = AdversarialSampler(representation="raw", epochs=args.vaal_epochs, **common)
        results["VAAL"] = time_select(
            vaal, model, pool, args.budget, dev, args.vaal_epochs, inference=vaal_inference
        )
        print(results["VAAL"], flush=True)

    coreset = _coreset_class()
    if coreset is None:
        notes.append("Core-Set skipped: aalearn.CoreSetSampler is not available in this tree.")
    else:
        print("Core-Set ...", flush=True)
        results["Core-Set"] = time_select(
            coreset(inference={"device": dev, "batch_size": 512}), model, pool, args.budget, dev
        )
        print(results["Core-Set"], flush=True)

    block = render(results, args, notes)
    print()
    print(block)
    if args.block_out is not None:
        args.block_out.write_text(block + "\n")
    if not (args.quick or args.no_docs):
        write_block("cuda" if cuda else "cpu", block)
        print(f"\nwrote {DOCS}")


if __name__ == "__main__":
    main()

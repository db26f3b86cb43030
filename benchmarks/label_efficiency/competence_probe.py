"""Where would a rule that reads the model switch? DCoM's competence on the TypiClust path.

DCoM (Mishal and Weinshall, 2024; ``pycls/al/DCoM.py`` of avihu111/TypiClust) gives each
labeled item ``i`` a radius: the binary search in ``[0, MAX_DELTA]``, to ``RESOLUTION``,
of the ball whose pool items the model predicts as ``i``'s true label at a rate of at
least ``0.4 + 0.2 c`` (``c`` the coverage before the update; radii are set once, after
the model trained on ``i`` first). The coverage ``c`` of those balls gives the competence
``S(c) = P / (1 + exp(-k (c - a)))``, ``P = 1 + exp(-k (1 - a))``, with the authors'
constants ``k = 50``, ``a = 0.8``. ``S >= 0.5`` is where DCoM's score turns from density
to margin.

This probe follows the low-budget protocol's TypiClust run of each seed (the same picks,
the same CNN trained from scratch, on the benchmark's PCA embedding) to ``LB_MAX`` labels
and writes, per cycle, the coverage, the mean radius and ``S``::

    python -m benchmarks.label_efficiency.competence_probe --dataset digits --seeds 0,1,2,3,4

``--max-delta purity`` caps the search at ProbCover's purity-rule radius of the embedding
instead of DCoM's 1.1 (a scale set for SimCLR features).

Rows go to ``docs/_static/label_efficiency_low_budget_competence.csv`` (appended; one
run per dataset and seed).
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

import aalearn
from benchmarks.label_efficiency.low_budget import (
    LB_MAX,
    LB_STEM,
    cold_start_sampler,
    delta_of,
    embedding_of,
    schedule,
)
from benchmarks.label_efficiency.protocol import (
    DOCS,
    Settings,
    cached_dataset,
    logits_of,
    train_task_model,
)

#: DCoM's constants (``MAX_DELTA``, the search resolution, the logistic's ``k`` and ``a``).
MAX_DELTA, RESOLUTION, K, A = 1.1, 0.05, 50.0, 0.8
OUT = DOCS.parent / "_static" / f"{LB_STEM}_competence.csv"
COLUMNS = ("dataset", "seed", "max_delta", "labeled", "coverage", "mean_radius", "competence")


def dcom_radius(
    dist: torch.Tensor,
    pred: torch.Tensor,
    label: int,
    coverage: float,
    max_delta: float = MAX_DELTA,
) -> float:
    """DCoM's radius of one labeled item: ``dist`` its distances to the pool, ``pred`` the
    model's labels of the pool. The ball grows while its purity (the share of its items
    predicted as ``label``; an empty ball has 0) is at least ``0.4 + 0.2 * coverage``."""
    bar = 0.2 * coverage + 0.4
    lo, hi = 0.0, max_delta
    while hi - lo > RESOLUTION:
        mid = (lo + hi) / 2
        ball = dist < mid
        purity = float((pred[ball] == label).float().mean()) if bool(ball.any()) else 0.0
        lo, hi = (mid, hi) if purity >= bar else (lo, mid)
    return round(lo, 2)


def competence(c: float) -> float:
    """DCoM's logistic of the coverage, scaled so that ``competence(1) == 1``."""
    return (1 + math.exp(-K * (1 - A))) / (1 + math.exp(-K * (c - A)))


def ball_cover(dist: torch.Tensor, radii: dict[int, float]) -> float:
    """Share of the pool within its radius of some labeled item (``dist``: pool x pool)."""
    if not radii:
        return 0.0
    idx = torch.tensor(list(radii))
    r = torch.tensor(list(radii.values()))
    return float((dist[idx] < r[:, None]).any(0).float().mean())


def probe(dataset: str, seed: int, max_delta: float = MAX_DELTA) -> list[dict[str, Any]]:
    torch.set_num_threads(1)
    data = cached_dataset(dataset)
    emb = embedding_of(dataset)
    dist = torch.cdist(emb, emb)
    pool = aalearn.ActivePool(TensorDataset(data.x_train, data.y_train))
    radii: dict[int, float] = {}
    rows = []
    for cycle, target in enumerate(n for n in schedule(emb.shape[0]) if n <= LB_MAX):
        step = 1000 * seed + cycle  # the protocol's seeds of each cycle
        picked = cold_start_sampler("typiclust", dataset, step).select(
            None, pool, target - pool.n_labeled
        )
        pool.label(picked)
        lab = torch.from_numpy(pool.labeled_indices.copy())
        model = train_task_model(
            data.x_train[lab], data.y_train[lab], Settings(), data.image_size, step
        )
        pred = logits_of(model, data.x_train).argmax(1)
        before = ball_cover(dist, radii)
        for i in np.asarray(picked).tolist():
            radii[i] = dcom_radius(dist[i], pred, int(data.y_train[i]), before, max_delta)
        c = ball_cover(dist, radii)
        rows.append(
            {
                "dataset": dataset,
                "seed": seed,
                "max_delta": round(max_delta, 4),
                "labeled": pool.n_labeled,
                "coverage": round(c, 4),
                "mean_radius": round(float(np.mean(list(radii.values()))), 4),
                "competence": round(competence(c), 4),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dataset", choices=("digits", "mnist5k"), required=True)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument(
        "--max-delta",
        default=str(MAX_DELTA),
        help="the search's upper end: a number (DCoM's: 1.1, set for SimCLR features) or "
        "'purity' (ProbCover's purity-rule radius on the benchmark's embedding)",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    cap = delta_of(args.dataset) if args.max_delta == "purity" else float(args.max_delta)
    for seed in (int(s) for s in args.seeds.split(",")):
        rows = probe(args.dataset, seed, cap)
        new = not args.out.exists()
        with args.out.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            if new:
                writer.writeheader()
            writer.writerows(rows)
        first = next((r["labeled"] for r in rows if r["competence"] >= 0.5), "never")
        print(
            f"{args.dataset} seed {seed}, max_delta {cap:.3f}: S >= 0.5 after {first} labels; "
            + " ".join(f"{r['labeled']}:{r['coverage']:.2f}" for r in rows),
            flush=True,
        )


if __name__ == "__main__":
    main()

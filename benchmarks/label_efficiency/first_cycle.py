"""The picks of every method on the label-efficiency benchmark's first cycle.

A refactoring must not change what a sampler picks. This module replays cycle 0 of
:func:`benchmarks.label_efficiency.run.run_unit` (the seeded initial 10 %, the task
model trained on it, the method's picks) and writes or checks the picks of every
method against a JSON file:

* ``python -m benchmarks.label_efficiency.first_cycle --write docs/_static/first_cycle_picks.json``
  records them with the benchmark's real settings (the library's defaults, about
  10 minutes on 2 cores);
* ``python -m benchmarks.label_efficiency.first_cycle --check docs/_static/first_cycle_picks.json``
  compares, method by method, and exits 1 on any difference.

``tests/test_first_cycle_picks.py`` runs the same replay with short selector settings
(:data:`QUICK`) against ``tests/data/first_cycle_picks_quick.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import TensorDataset

import aalearn
from benchmarks.label_efficiency.methods import METHODS
from benchmarks.label_efficiency.protocol import (
    DATASETS,
    SMOKE,
    Settings,
    cached_dataset,
    train_task_model,
)
from benchmarks.label_efficiency.run import Unit, _pick

#: Short settings for the unit test: the benchmark's protocol and task model with fewer
#: task-model steps and selector iterations (the code paths are the same).
QUICK = SMOKE


def first_cycle_picks(dataset: str, method: str, settings: Settings, seed: int = 0) -> np.ndarray:
    """The picks of ``method`` on cycle 0 of seed ``seed`` (as ``run_unit`` makes them)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the benchmark's workers: reductions in one fixed order
    try:
        data = cached_dataset(dataset)
        pool = aalearn.ActivePool(TensorDataset(data.x_train, data.y_train))
        n_initial = round(settings.initial_fraction * len(pool))
        pool.label(pool.random_unlabeled(n_initial, random_state=seed))
        cycle_seed = 1000 * seed
        lab = torch.from_numpy(pool.labeled_indices.copy())
        model = train_task_model(
            data.x_train[lab], data.y_train[lab], settings, data.image_size, cycle_seed
        )
        return _pick(Unit(dataset, method, seed, settings), model, pool, cycle_seed)
    finally:
        torch.set_num_threads(threads)


def all_picks(
    settings: Settings, methods: tuple[str, ...] = METHODS, datasets: tuple[str, ...] = DATASETS
) -> dict[str, dict[str, list[int]]]:
    out: dict[str, dict[str, list[int]]] = {}
    for dataset in datasets:
        out[dataset] = {}
        for method in methods:
            start = time.perf_counter()
            out[dataset][method] = first_cycle_picks(dataset, method, settings).tolist()
            print(f"{dataset:8s} {method:20s} {time.perf_counter() - start:7.1f} s", flush=True)
    return out


def differences(
    expected: dict[str, dict[str, list[int]]], got: dict[str, dict[str, list[int]]]
) -> list[str]:
    """One line per (dataset, method) whose picks differ."""
    lines = []
    for dataset, methods in expected.items():
        for method, picks in methods.items():
            new = got.get(dataset, {}).get(method)
            if new != picks:
                lines.append(f"{dataset}/{method}: picks differ")
    return lines


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", type=Path, help="record the picks to this JSON file")
    mode.add_argument("--check", type=Path, help="compare the picks with this JSON file")
    parser.add_argument("--quick", action="store_true", help="the unit test's short settings")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else Settings()
    if args.write is not None:
        doc: dict[str, Any] = {
            "settings": "quick" if args.quick else "benchmark",
            "picks": all_picks(settings),
        }
        args.write.write_text(json.dumps(doc) + "\n")
        return
    expected = json.loads(args.check.read_text())["picks"]
    bad = differences(expected, all_picks(settings))
    print("\n".join(bad) if bad else "all picks identical")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

"""Running the units (dataset, method, seed) and storing their rows."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import multiprocessing
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

import aalearn
from benchmarks.label_efficiency.methods import (
    COST_ORDER,
    apply_pick_rule,
    make_sampler,
    parse_spec,
    pick_rule,
)
from benchmarks.label_efficiency.protocol import (
    ALL_DATASETS,
    COLUMNS,
    Settings,
    Split,
    auc,
    cached_dataset,
    logits_of,
    train_task_model,
)

Row = dict[str, Any]

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


def _row(unit: Unit, pool: aalearn.ActivePool, cycle: int, acc: float, train_s: float) -> Row:
    n_pool = len(pool)
    return {
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


def _pick(unit: Unit, model: nn.Module, pool: aalearn.ActivePool, seed: int) -> np.ndarray:
    """The method's picks: its own top ``budget``, or a pick rule over its full ranking."""
    s = unit.settings
    budget = round(s.step_fraction * len(pool))
    sampler = make_sampler(unit.method, s, len(pool), seed)
    rule = pick_rule(unit.method)
    if rule == "top":
        return sampler.select(model, pool, budget)
    ranking = sampler.select(model, pool, pool.n_unlabeled)
    return apply_pick_rule(rule, ranking, budget, model, cached_dataset(unit.dataset).x_train)


def _diagnostics(
    model: nn.Module, pool: aalearn.ActivePool, data: Split, picked: np.ndarray
) -> Row:
    """How hard the picks are for the model (with the labels the oracle is about to reveal)."""
    unl = torch.from_numpy(pool.unlabeled_indices.copy())
    losses = nn.functional.cross_entropy(
        logits_of(model, data.x_train[unl]), data.y_train[unl], reduction="none"
    )
    is_picked = torch.from_numpy(np.isin(pool.unlabeled_indices, picked))
    return {
        "picked_loss_ratio": round(float(losses[is_picked].mean() / losses.mean()), 4),
        "picked_class_entropy": round(_class_entropy(data.y_train[torch.from_numpy(picked)]), 4),
    }


def run_unit(unit: Unit) -> list[Row]:
    """One learning curve: ``cycles + 1`` rows (see ``COLUMNS``)."""
    torch.set_num_threads(1)
    data = cached_dataset(unit.dataset)
    s = unit.settings
    pool = aalearn.ActivePool(TensorDataset(data.x_train, data.y_train))
    pool.label(pool.random_unlabeled(round(s.initial_fraction * len(pool)), random_state=unit.seed))
    rows = []
    for cycle in range(s.cycles + 1):
        seed = 1000 * unit.seed + cycle
        lab = torch.from_numpy(pool.labeled_indices.copy())
        start = time.perf_counter()
        model = train_task_model(data.x_train[lab], data.y_train[lab], s, data.image_size, seed)
        train_s = time.perf_counter() - start
        acc = float((logits_of(model, data.x_test).argmax(1) == data.y_test).double().mean())
        row = _row(unit, pool, cycle, acc, train_s)
        if cycle < s.cycles:
            start = time.perf_counter()
            picked = _pick(unit, model, pool, seed)
            row["selection_seconds"] = round(time.perf_counter() - start, 3)
            row.update(_diagnostics(model, pool, data, picked))
            pool.label(picked)
        rows.append(row)
    return rows


def _init_worker() -> None:
    torch.set_num_threads(1)


# ---------------------------------------------------------------------- storage


def read_csv_rows(path: Path, floats: Iterable[str]) -> list[dict[str, Any]]:
    """The rows of a results CSV (none if it does not exist): seed, cycle and labeled as
    ints, the ``floats`` columns as floats (an empty or missing value is NaN)."""
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    floats = tuple(floats)
    for row in rows:
        for key in ("seed", "cycle", "labeled"):
            row[key] = int(row[key])
        for key in floats:
            row[key] = float(row[key]) if row.get(key) not in ("", None) else math.nan
    return rows


def read_rows(path: Path) -> list[dict[str, Any]]:
    # Every column after ``labeled`` is a float.
    return read_csv_rows(path, COLUMNS[COLUMNS.index("labeled") + 1 :])


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
    out["aalu_hidden"] = None if settings.aalu_hidden is None else list(settings.aalu_hidden)
    return out


def _settings_from(d: dict[str, Any]) -> Settings:
    d = dict(d)
    d["aalu_hidden"] = None if d.get("aalu_hidden") is None else tuple(d["aalu_hidden"])
    return Settings(**d)


# ------------------------------------------------------------------- running


def _load_meta(path: Path) -> Optional[dict[str, Any]]:
    return json.loads(path.read_text()) if path.exists() else None


def _save_meta(path: Path, meta: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, path)


def _sort_key(unit: Unit) -> tuple[int, int, int]:
    name = parse_spec(unit.method)[0]
    cost = COST_ORDER.index(name) if name in COST_ORDER else len(COST_ORDER)
    return (ALL_DATASETS.index(unit.dataset), cost, unit.seed)


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

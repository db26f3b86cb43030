"""When would each stopping criterion have stopped on the label-efficiency benchmark?

Reruns the label-efficiency benchmark's protocol (:mod:`benchmarks.label_efficiency`:
its datasets ``digits`` and ``mnist5k``, its fixed split, its task model trained from
scratch each cycle with its seeds, 10 % labeled at random then 6 cycles of +5 % up to
40 %, the methods built by its ``make_sampler``) and records, per cycle, the labeled
count, the test accuracy and the task model's class probabilities on a fixed **stop
set**. Then it replays (:func:`aalearn.stopping.replay`) each criterion of
:mod:`aalearn.stopping` over every recorded run, with the criterion's default
parameters, and reports where it first said stop, the accuracy there, the labels that
stop would have saved and the accuracy *left on the table* (the accuracy at 40 % minus
the one at the stop).

Stop set: per seed, ``STOP_SET_SIZE`` items drawn uniformly with the seed from the pool
items left unlabeled by the initial 10 % (the same items for every method). It needs
no labels and, as in Bloodgood and Vijay-Shanker (2009), whose stop set came from the
unlabeled pool, its items stay in the pool: a method may pick some for labeling. The
run is thus exactly the benchmark's (the same picks and accuracies); the fraction of the
stop set labeled at the stop is reported.

Each unit (dataset, method, seed) caches its per-cycle arrays as ``.npz`` in
``--cache-dir``; ``--report-only`` rebuilds the CSV and the table from those files
without training. Outputs: ``docs/_static/stopping_table.csv`` (one row per dataset,
method, seed and criterion) and the table of means ± sd over seeds in the section
``stopping_table`` of ``docs/stopping.md``.

    OMP_NUM_THREADS=1 nice -n 5 python -m benchmarks.stopping_table     # ~20 min, 2 workers
    python -m benchmarks.stopping_table --report-only                    # from the cache
    python -m benchmarks.stopping_table --smoke --datasets digits --seeds 1 --out-dir /tmp/st
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import multiprocessing
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import TensorDataset

import aalearn
from aalearn.stopping import (
    ClassificationChange,
    DeltaFScore,
    KappaAverage,
    OverallUncertainty,
    StoppingCriterion,
    replay,
)
from benchmarks._report import machine, write_section
from benchmarks.label_efficiency.methods import make_sampler
from benchmarks.label_efficiency.protocol import (
    SMOKE,
    STATIC,
    Settings,
    cached_dataset,
    logits_of,
    train_task_model,
)

#: The docs page whose section ``SECTION`` holds the table.
PAGE = STATIC.parent / "stopping.md"
SECTION = "stopping_table"
CSV_NAME = "stopping_table.csv"
DATASETS = ("digits", "mnist5k")
METHODS = ("random", "margin", "entropy")
SEEDS = 5
#: Items of the stop set (Bloodgood and Vijay-Shanker used a few thousand; small-text's
#: examples a few hundred): 500 of digits' 1,293 and mnist5k's 3,600 initially unlabeled.
STOP_SET_SIZE = 500
#: Mixed with the seed, so that the stop set is not the stream of the initial draw.
STOP_SET_SALT = 2009
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "aalearn_stopping_table"
COLUMNS = (
    "dataset",
    "method",
    "seed",
    "criterion",
    "stop_cycle",
    "stop_labeled",
    "stop_fraction",
    "stop_accuracy",
    "final_labeled",
    "final_accuracy",
    "best_accuracy",
    "left_on_table",
    "left_vs_best",
    "labels_saved",
    "stop_set_labeled",
)


def criteria() -> dict[str, StoppingCriterion]:
    """The criteria replayed, by name (their ``repr``): defaults, and the docs' 1 % variant.

    :class:`~aalearn.stopping.MaxIterations` and :class:`~aalearn.stopping.MaxLabeled`
    have no default: they stop exactly where they are told to.
    """
    crits: list[StoppingCriterion] = [
        KappaAverage(),  # window_size=3, kappa=0.99
        ClassificationChange(),  # threshold=0.0
        ClassificationChange(threshold=0.01),  # the setting docs/stopping.md suggests
        DeltaFScore(),  # window_size=3, threshold=0.05, positive_label=1 (digit 1 vs rest)
        OverallUncertainty(),  # threshold=0.05
    ]
    return {repr(c): c for c in crits}


# ------------------------------------------------------------------------ units


@dataclasses.dataclass(frozen=True)
class Unit:
    dataset: str
    method: str
    seed: int
    settings: Settings
    stop_size: int = STOP_SET_SIZE

    @property
    def name(self) -> str:
        return f"{self.dataset}_{self.method}_{self.seed}"


def draw_stop_set(pool: aalearn.ActivePool, size: int, seed: int) -> np.ndarray:
    """``size`` of the pool's unlabeled items, drawn with ``seed`` (sorted dataset indices)."""
    unlabeled = pool.unlabeled_indices
    rng = np.random.default_rng([STOP_SET_SALT, seed])
    return np.sort(rng.choice(unlabeled, size=min(size, unlabeled.size), replace=False))


def run_unit(unit: Unit) -> dict[str, np.ndarray]:
    """One learning curve of the benchmark, with the stop-set probabilities of each cycle.

    The same steps as ``benchmarks.label_efficiency.run.run_unit`` for a method that
    takes its sampler's own top ``budget``: initial draw with the unit's seed, a model
    trained from scratch with seed ``1000 * seed + cycle``, its test accuracy, then the
    picks of ``make_sampler(method, ...)`` with the same seed.
    """
    torch.set_num_threads(1)
    data = cached_dataset(unit.dataset)
    s = unit.settings
    pool = aalearn.ActivePool(TensorDataset(data.x_train, data.y_train))
    pool.label(pool.random_unlabeled(round(s.initial_fraction * len(pool)), random_state=unit.seed))
    stop_set = draw_stop_set(pool, unit.stop_size, unit.seed)
    x_stop = data.x_train[torch.from_numpy(stop_set)]
    budget = round(s.step_fraction * len(pool))
    labeled, accuracy, in_stop, proba = [], [], [], []
    train_seconds = 0.0
    for cycle in range(s.cycles + 1):
        seed = 1000 * unit.seed + cycle
        lab = torch.from_numpy(pool.labeled_indices)
        start = time.perf_counter()
        model = train_task_model(data.x_train[lab], data.y_train[lab], s, data.image_size, seed)
        train_seconds += time.perf_counter() - start
        acc = float((logits_of(model, data.x_test).argmax(1) == data.y_test).double().mean())
        labeled.append(pool.n_labeled)
        accuracy.append(acc)
        in_stop.append(int(pool.labeled_mask[stop_set].sum()))
        proba.append(logits_of(model, x_stop).softmax(dim=1).numpy())
        if cycle < s.cycles:
            sampler = make_sampler(unit.method, s, len(pool), seed)
            pool.label(sampler.select(model, pool, budget))
    return {
        "labeled": np.array(labeled, dtype=np.int64),
        "pool_size": np.array(len(pool), dtype=np.int64),
        "accuracy": np.array(accuracy, dtype=np.float64),
        "stop_set": stop_set,
        "stop_set_labeled": np.array(in_stop, dtype=np.int64),
        "probabilities": np.stack(proba).astype(np.float32),
        "train_seconds": np.array(train_seconds),
        "settings": np.array(json.dumps(dataclasses.asdict(unit.settings), sort_keys=True)),
    }


def _cache_path(cache: Path, unit: Unit) -> Path:
    return cache / f"{unit.name}.npz"


def save_record(path: Path, record: dict[str, np.ndarray]) -> None:
    """Write ``record`` as ``.npz`` atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
    with os.fdopen(fd, "wb") as fh:
        np.savez(fh, allow_pickle=False, **record)
    os.replace(tmp, path)


def load_record(path: Path, settings: Optional[Settings] = None) -> Optional[dict[str, np.ndarray]]:
    """The cached record, or ``None`` if absent or made with other ``settings``."""
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as npz:
        record = {k: npz[k] for k in npz.files}
    if settings is not None:
        wanted = json.dumps(dataclasses.asdict(settings), sort_keys=True)
        if str(record["settings"]) != wanted:
            return None
    return record


def _work(args: tuple[Unit, str]) -> tuple[Unit, float]:
    unit, cache = args
    torch.set_num_threads(1)
    start = time.perf_counter()
    save_record(_cache_path(Path(cache), unit), run_unit(unit))
    return unit, time.perf_counter() - start


def run_missing(units: list[Unit], cache: Path, workers: int) -> int:
    """Run the units not in ``cache`` (costliest dataset first), ``workers`` at a time.

    Returns how many units ran.
    """
    todo = [u for u in units if load_record(_cache_path(cache, u), u.settings) is None]
    todo.sort(key=lambda u: (u.dataset != "mnist5k", u.method, u.seed))
    start = time.perf_counter()
    jobs = [(u, str(cache)) for u in todo]

    def done(i: int, unit: Unit, seconds: float) -> None:
        print(
            f"[{i}/{len(todo)}] {unit.name}: {seconds:.0f} s "
            f"(elapsed {time.perf_counter() - start:.0f} s)",
            flush=True,
        )

    if workers <= 1 or len(todo) <= 1:
        for i, job in enumerate(jobs, 1):
            done(i, *_work(job))
        return len(jobs)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as mp:
        for i, (unit, seconds) in enumerate(mp.imap_unordered(_work, jobs, chunksize=1), 1):
            done(i, unit, seconds)
    return len(jobs)


# ---------------------------------------------------------------------- stop rows


def stop_rows(
    record: dict[str, np.ndarray], named: dict[str, StoppingCriterion]
) -> list[dict[str, Any]]:
    """One row per criterion: where it first said stop on ``record``, and what that cost.

    A criterion that never said stop runs to the last cycle: ``stop_cycle`` is
    ``"never"``, and it leaves nothing on the table and saves no labels.
    ``left_on_table`` is the last cycle's accuracy minus the accuracy at the stop,
    ``left_vs_best`` the best accuracy of any cycle minus it.
    """
    labeled = [int(n) for n in record["labeled"]]
    accuracy = [float(a) for a in record["accuracy"]]
    pool_size = int(record["pool_size"])
    n_stop = int(record["stop_set"].size)
    out = replay(
        named, probabilities=list(record["probabilities"]), n_labeled=labeled, metric=accuracy
    )
    rows = []
    for name, res in out.items():
        t = len(labeled) - 1 if res["cycle"] is None else int(res["cycle"])
        rows.append(
            {
                "criterion": name,
                "stop_cycle": "never" if res["cycle"] is None else t,
                "stop_labeled": labeled[t],
                "stop_fraction": round(labeled[t] / pool_size, 6),
                "stop_accuracy": round(accuracy[t], 6),
                "final_labeled": labeled[-1],
                "final_accuracy": round(accuracy[-1], 6),
                "best_accuracy": round(max(accuracy), 6),
                "left_on_table": round(accuracy[-1] - accuracy[t], 6),
                "left_vs_best": round(max(accuracy) - accuracy[t], 6),
                "labels_saved": labeled[-1] - labeled[t],
                "stop_set_labeled": round(int(record["stop_set_labeled"][t]) / n_stop, 4),
            }
        )
    return rows


def collect(units: list[Unit], cache: Path) -> list[dict[str, Any]]:
    """The rows (``COLUMNS``) of every unit in ``cache``; a missing unit is an error."""
    rows = []
    for unit in units:
        record = load_record(_cache_path(cache, unit))
        if record is None:
            raise FileNotFoundError(
                f"No cached run of {unit.name} in {cache}; run without --report-only first."
            )
        for row in stop_rows(record, criteria()):
            rows.append({"dataset": unit.dataset, "method": unit.method, "seed": unit.seed, **row})
    return rows


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".csv")
    with os.fdopen(fd, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: row[k] for k in COLUMNS} for row in rows)
    os.replace(tmp, path)


# ------------------------------------------------------------------------ report


def _mean_sd(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    arr = np.asarray(values, dtype=np.float64) * scale
    sd = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return f"{arr.mean():.{digits}f} ± {sd:.{digits}f}"


def render_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per criterion, dataset and method; means ± sd over the seeds.

    Accuracies and fractions in percent (points), labels as counts. A seed where the
    criterion never stopped counts with its last cycle (40 %, 0 left, 0 saved).
    """
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["criterion"], row["dataset"], row["method"]), []).append(row)
    order = {k: i for i, k in enumerate(dict.fromkeys(r["criterion"] for r in rows))}
    groups = dict(sorted(groups.items(), key=lambda kv: order[kv[0][0]]))  # criterion first
    lines = [
        "| Criterion | Dataset | Method | Stopped (seeds) | Stops at (% of pool) "
        "| Accuracy at stop (%) | Accuracy at 40 % (%) | Left on the table (points) "
        "| Left vs best cycle (points) | Labels saved | Stop set labeled at stop (%) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (crit, dataset, method), group in groups.items():

        def col(key: str, g: list[dict[str, Any]] = group) -> list[float]:
            return [float(r[key]) for r in g]

        stopped = sum(r["stop_cycle"] != "never" for r in group)
        lines.append(
            f"| `{crit}` | {dataset} | {method} | {stopped}/{len(group)} "
            f"| {_mean_sd(col('stop_fraction'), 100)} | {_mean_sd(col('stop_accuracy'), 100)} "
            f"| {_mean_sd(col('final_accuracy'), 100)} | {_mean_sd(col('left_on_table'), 100)} "
            f"| {_mean_sd(col('left_vs_best'), 100)} | {_mean_sd(col('labels_saved'), digits=0)} "
            f"| {_mean_sd(col('stop_set_labeled'), 100, 0)} |"
        )
    return "\n".join(lines)


def render(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The docs section: the table, then how it was made."""
    seeds = sorted({r["seed"] for r in rows})
    return (
        f"{render_table(rows)}\n\n"
        f"Means ± sd over seeds {seeds[0]}-{seeds[-1]} ({len(seeds)} runs per row); each "
        f"criterion with its default parameters (`ClassificationChange(threshold=0.01)` is the "
        f"setting suggested above), fed the probabilities of each cycle's model on a stop set "
        f"of {meta['stop_size']} items drawn per seed from the initially unlabeled pool "
        f"(items of it may be picked for labeling: last column). Per seed rows: "
        f"`docs/_static/{CSV_NAME}`.\n\n"
        f"Made with `{meta['command']}` in {meta['wall_seconds'] / 60:.1f} min "
        f"({meta['workers']} worker processes; 1-minute load average {meta['load']:.1f} at the "
        f"start, {meta.get('load_end', math.nan):.1f} at the end: a shared machine) "
        f"on {meta['machine']}.\n"
    )


# ---------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stopping_table",
        description=doc.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", type=int, default=SEEDS, help="seeds 0 .. SEEDS-1")
    parser.add_argument("--stop-size", type=int, default=STOP_SET_SIZE)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (at most 2)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument(
        "--out-dir", type=Path, default=None, help="write the CSV and table here, not to docs/"
    )
    parser.add_argument("--smoke", action="store_true", help="the benchmark's tiny settings")
    parser.add_argument("--report-only", action="store_true", help="no training: the cache only")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    settings = SMOKE if args.smoke else Settings()
    cache = args.cache_dir / ("smoke" if args.smoke else "full")
    units = [
        Unit(d, m, seed, settings, args.stop_size)
        for d in args.datasets.split(",")
        for m in args.methods.split(",")
        for seed in range(args.seeds)
    ]
    meta_path = cache / "meta.json"
    if not args.report_only:
        load = os.getloadavg()[0]
        start = time.perf_counter()
        workers = min(max(args.workers, 1), 2)
        if run_missing(units, cache, workers) or not meta_path.exists():
            # The run that trained: its command (without where the outputs went), time, load.
            shown = [a for a in (argv if argv is not None else sys.argv[1:])]
            if "--out-dir" in shown:
                i = shown.index("--out-dir")
                del shown[i : i + 2]
            meta = {
                "command": " ".join(
                    ["OMP_NUM_THREADS=1 nice -n 5 python -m benchmarks.stopping_table"]
                    + [shlex.quote(a) for a in shown]
                ),
                "wall_seconds": time.perf_counter() - start,
                "workers": workers,
                "load": load,
                "load_end": os.getloadavg()[0],
                "machine": machine(),
                "stop_size": args.stop_size,
            }
            cache.mkdir(parents=True, exist_ok=True)
            tmp = meta_path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(meta, indent=1) + "\n")
            os.replace(tmp, meta_path)
    meta = json.loads(meta_path.read_text())
    rows = collect(units, cache)
    body = render(rows, meta)
    if args.out_dir is None:
        write_csv(STATIC / CSV_NAME, rows)
        write_section(SECTION, body, path=PAGE)
        print(f"wrote {STATIC / CSV_NAME} and the {SECTION} section of {PAGE}")
    else:
        write_csv(args.out_dir / CSV_NAME, rows)
        (args.out_dir / f"{SECTION}.md").write_text(body)
        print(f"wrote {args.out_dir / CSV_NAME} and {args.out_dir / SECTION}.md")
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The low-budget protocol: from zero labels, one label per class per cycle, then the main budgets.

``python -m benchmarks.label_efficiency --protocol low-budget`` (see :func:`main`).

* **Schedule.** Per seed, the pool starts with **no** labeled item. Each cycle adds
  ``LB_STEP`` = 10 labels (one per class on average, 10 classes) up to ``LB_MAX`` = 100,
  then the pool fractions of the main protocol (10 %, 15 %, ..., 40 %), so that the two
  regimes form one curve: 17 evaluation points (digits: 10, ..., 100, 144, 216, ...,
  575; mnist5k: 10, ..., 100, 400, 600, ..., 1600).
* **Embedding** (the cold-start samplers' space, and the linear setting's features):
  PCA to ``EMBED_DIM`` = 32 dimensions of the flattened pool images (fitted on the
  pool, no label read), rows L2-normalised as the authors do. ProbCover's radius, and
  the regime sampler's with ``rule=coverage``, are ProbCover's purity rule (``alpha`` =
  0.95, k-means with 10 clusters), computed once per dataset (``delta_of``).
* **Two settings** of the model that is scored and that the model-based samplers read:
  ``cnn``, the main protocol's :class:`TaskCNN` trained from scratch every cycle;
  ``linear``, a multinomial logistic regression on the embedding (the papers'
  self-supervised-embedding linear probe): :class:`LinearProbe` maps an image to its
  embedding (the PCA as a fixed linear layer, then the L2 normalisation) and a linear
  classifier, fitted with L-BFGS on scikit-learn's objective (``C = 1``); its features
  (the input of its last linear layer) are the embedding.
* **Methods.** ``random``, the cold-start samplers (``typiclust``, ``probcover``), the
  model-based ones (``coreset``, ``entropy``, ``margin``, ``badge``, ``aalu``) and
  ``regime`` (:class:`aalearn.BudgetAwareSampler`, ``regime[low=typiclust;high=badge;
  rule=per_class;threshold=7]`` picks its parts; the spec's own defaults are
  ``REGIME_DEFAULTS``, and ``REGIME_RUN`` is the library's default sampler). A
  model-based method has no model at zero labels:
  its **first** 10 labels are drawn at random, the very items ``random`` draws on that
  seed (so the curves are paired); from then on it picks with the model trained on
  the labeled items. The cold-start samplers and ``regime`` pick from the first cycle.
* **Stop set.** For another study (stopping criteria): per seed a fixed uniform 500
  items of the pool (``numpy.random.default_rng(seed)``); at every cycle the scored
  model's softmax probabilities on them go, per unit, to
  ``<probs-dir>/<dataset>_<setting>_<method>_<seed>.npz`` with arrays ``labeled``
  ``(cycles,)``, ``stop_indices`` ``(500,)`` (pool positions), ``stop_labels``
  ``(500,)``, ``probs`` ``(cycles, 500, 10)`` float16 and ``test_accuracy``
  ``(cycles,)``. ``--probs-dir`` defaults to ``<out-dir>/label_efficiency_low_budget_probs``.

Rows go to ``label_efficiency_low_budget.csv`` (columns ``LB_COLUMNS``; ``decision`` is
the regime sampler's ``low``/``high`` at the cycle's select, ``measure`` the value of its
rule: the coverage, or the labels per class) when a unit
finishes; ``--resume`` skips complete units. The report is :mod:`.low_budget_report`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import multiprocessing
import os
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

import aalearn
from aalearn.functional import probcover, probcover_delta, typiclust
from benchmarks.label_efficiency.methods import make_sampler, parse_spec, split_methods
from benchmarks.label_efficiency.protocol import (
    FINAL_FRACTION,
    INITIAL_FRACTION,
    STEP_FRACTION,
    Settings,
    cached_dataset,
    logits_of,
    train_task_model,
)
from benchmarks.label_efficiency.run import read_csv_rows

LB_STEM = "label_efficiency_low_budget"
LB_STEP = 10
LB_MAX = 100
EMBED_DIM = 32
STOP_SET = 500
N_CLASSES = 10
SETTINGS_KINDS = ("cnn", "linear")
COLD_START = ("typiclust", "probcover")
MODEL_BASED = ("coreset", "entropy", "margin", "badge", "aalu")
REGIME = "regime"
#: The regime sampler of the report's targets: the library's defaults (rule and threshold
#: chosen on digits; see :class:`aalearn.BudgetAwareSampler`), spelled out.
REGIME_RUN = "regime[rule=per_class;threshold=7]"
LB_METHODS = ("random", *COLD_START, *MODEL_BASED[:-1], REGIME_RUN, "aalu")
#: The defaults of a ``regime[...]`` spec (see ``regime_parts``). They are the names'
#: meaning since the first runs (``rule=coverage``; ``threshold=None`` is the library's
#: default for the rule), so the rows of earlier runs keep their names. On 2026-12-05 the
#: library's default rule became ``per_class`` and its threshold 7 (it was 10): the
#: earlier ``regime[rule=per_class]`` rows are ``regime[rule=per_class;threshold=10]``
#: in the CSV, and ``REGIME_RUN`` names the rule and threshold it runs.
REGIME_DEFAULTS: dict[str, Any] = {
    "low": "typiclust",
    "high": "margin",
    "rule": "coverage",
    "threshold": None,
}
LB_COLUMNS = (
    "dataset",
    "setting",
    "method",
    "seed",
    "cycle",
    "labeled",
    "accuracy",
    "selection_seconds",
    "train_seconds",
    "decision",
    "measure",
)


def schedule(n_pool: int) -> list[int]:
    """Labeled counts of the evaluation points: 10, 20, ..., 100, then 10 %, ..., 40 %."""
    low = list(range(LB_STEP, LB_MAX + 1, LB_STEP))
    steps = round((FINAL_FRACTION - INITIAL_FRACTION) / STEP_FRACTION)
    high = [round((INITIAL_FRACTION + i * STEP_FRACTION) * n_pool) for i in range(steps + 1)]
    return low + [n for n in high if n > LB_MAX]


# -------------------------------------------------------------------- embedding


@lru_cache(maxsize=4)
def pca_of(dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, components)`` of the PCA of the flattened pool images (``EMBED_DIM`` rows)."""
    from sklearn.decomposition import PCA

    x = cached_dataset(dataset).x_train.flatten(1).double().numpy()
    pca = PCA(EMBED_DIM, svd_solver="full").fit(x)
    return (
        torch.tensor(pca.mean_, dtype=torch.float32),
        torch.tensor(pca.components_, dtype=torch.float32),
    )


class Embed(nn.Module):
    """Flatten, project on the PCA components, L2-normalise: image -> embedding."""

    def __init__(self, mean: torch.Tensor, components: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("components", components)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.flatten(1) - self.mean) @ self.components.T
        return nn.functional.normalize(z, dim=1)


@lru_cache(maxsize=4)
def embedding_of(dataset: str) -> torch.Tensor:
    """``(N_pool, EMBED_DIM)`` float32 embedding of the pool (row ``i`` = pool item ``i``)."""
    with torch.no_grad():
        return Embed(*pca_of(dataset))(cached_dataset(dataset).x_train)


@lru_cache(maxsize=4)
def delta_of(dataset: str) -> float:
    """ProbCover's purity-rule radius on the embedding (k-means with 10 clusters, seed 0)."""
    return probcover_delta(
        embedding_of(dataset), N_CLASSES, generator=torch.Generator().manual_seed(0)
    )


class LinearProbe(nn.Module):
    """:class:`Embed` then a linear classifier: the features are the embedding."""

    def __init__(self, mean: torch.Tensor, components: torch.Tensor) -> None:
        super().__init__()
        self.embed = Embed(mean, components)
        self.classifier = nn.Linear(components.shape[0], N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


def train_linear_probe(dataset: str, labeled: np.ndarray, c: float = 1.0) -> LinearProbe:
    """Multinomial logistic regression on the embedding of ``labeled``: scikit-learn's objective
    ``0.5 ||W||^2 + C sum_i CE_i`` (bias not penalised), minimised with L-BFGS from zero."""
    model = LinearProbe(*pca_of(dataset))
    z = embedding_of(dataset)[torch.from_numpy(labeled)]
    y = cached_dataset(dataset).y_train[torch.from_numpy(labeled)]
    w = torch.zeros(N_CLASSES, z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(N_CLASSES, dtype=torch.float64, requires_grad=True)
    zd = z.double()
    opt = torch.optim.LBFGS(
        [w, b], lr=1, max_iter=500, tolerance_grad=1e-7, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = 0.5 * (w * w).sum() + c * nn.functional.cross_entropy(
            zd @ w.T + b, y, reduction="sum"
        )
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        model.classifier.weight.copy_(w.float())
        model.classifier.bias.copy_(b.float())
    return model.eval()


# --------------------------------------------------------------------- samplers


class _Kernel(aalearn.BaseSampler):
    """TypiClust or ProbCover on the benchmark's embedding (the library's kernels)."""

    requires_model = False
    needs_labels = False

    def __init__(self, kind: str, dataset: str, *, random_state: Any = None) -> None:
        self.kind = kind
        self.dataset = dataset
        self.random_state = random_state

    def embed(self, pool: aalearn.ActivePool) -> torch.Tensor:
        return embedding_of(self.dataset)

    def _select(
        self, model: Any, pool: aalearn.ActivePool, budget: int, rng: np.random.Generator
    ) -> np.ndarray:
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        mask = torch.from_numpy(pool.labeled_mask.copy())
        emb = embedding_of(self.dataset)
        if self.kind == "typiclust":
            return typiclust(emb, mask, budget, generator=gen).numpy()
        return probcover(emb, mask, budget, delta=delta_of(self.dataset), generator=gen).numpy()


def cold_start_sampler(kind: str, dataset: str, seed: int) -> Any:
    """TypiClust or ProbCover: the library's kernels on the benchmark's embedding and radius."""
    return _Kernel(kind, dataset, random_state=seed)


def regime_parts(spec: str) -> dict[str, Any]:
    """``regime[low=typiclust;high=badge;threshold=0.7]`` -> its parts, defaults filled in."""
    _, overrides = parse_spec(spec.replace(REGIME, "random", 1))
    bad = set(overrides) - set(REGIME_DEFAULTS)
    if bad:
        raise ValueError(
            f"Unknown keys {sorted(bad)} in {spec!r}; expected {list(REGIME_DEFAULTS)}."
        )
    return {**REGIME_DEFAULTS, **overrides}


def lb_sampler(spec: str, dataset: str, settings: Settings, n_pool: int, seed: int) -> Any:
    """The sampler of one cycle (the model-based ones from the main :func:`make_sampler`)."""
    name = spec.split("[", 1)[0]
    if name in COLD_START:
        return cold_start_sampler(name, dataset, seed)
    if name == REGIME:
        parts = regime_parts(spec)
        return aalearn.BudgetAwareSampler(
            cold_start_sampler(parts["low"], dataset, seed),
            make_sampler(parts["high"], settings, n_pool, seed),
            embedding=embedding_of(dataset),
            delta=delta_of(dataset) if parts["rule"] == "coverage" else None,
            rule=parts["rule"],
            threshold=parts["threshold"],
            n_classes=N_CLASSES,
            random_state=seed,
        )
    return make_sampler(spec, settings, n_pool, seed)


def check_methods(text: str) -> list[str]:
    methods = split_methods(text)
    for m in methods:
        name = m.split("[", 1)[0]
        if name == REGIME:
            regime_parts(m)
        elif name not in COLD_START:
            parse_spec(m)
    return methods


# ------------------------------------------------------------------------ units


@dataclasses.dataclass(frozen=True)
class LBUnit:
    dataset: str
    setting: str
    method: str
    seed: int
    settings: Settings
    probs_dir: Optional[str] = None
    max_labeled: Optional[int] = None  # a smoke run stops early


def stop_indices(n_pool: int, seed: int) -> np.ndarray:
    """The fixed stop set of ``seed``: ``STOP_SET`` pool positions, sorted."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_pool, size=min(STOP_SET, n_pool), replace=False))


def run_lb_unit(unit: LBUnit) -> list[dict[str, Any]]:
    """One learning curve of the low-budget protocol: one row per evaluation point."""
    torch.set_num_threads(1)
    data = cached_dataset(unit.dataset)
    n_pool = data.x_train.shape[0]
    pool = aalearn.ActivePool(TensorDataset(data.x_train, data.y_train))
    counts = schedule(n_pool)
    if unit.max_labeled is not None:
        counts = [n for n in counts if n <= unit.max_labeled]
    stop = stop_indices(n_pool, unit.seed)
    name = unit.method.split("[", 1)[0]
    rows: list[dict[str, Any]] = []
    probs, accs = [], []
    model: Optional[nn.Module] = None
    for cycle, target in enumerate(counts):
        seed = 1000 * unit.seed + cycle
        budget = target - pool.n_labeled
        sampler: Any
        if model is None and name in MODEL_BASED:  # no model yet: the random draw
            sampler = aalearn.RandomSampler(random_state=seed)
        else:
            sampler = lb_sampler(unit.method, unit.dataset, unit.settings, n_pool, seed)
        start = time.perf_counter()
        picked = sampler.select(model, pool, budget)
        select_s = time.perf_counter() - start
        decision = getattr(sampler, "last_decision_", None)
        pool.label(picked)
        lab = pool.labeled_indices.copy()
        start = time.perf_counter()
        if unit.setting == "linear":
            model = train_linear_probe(unit.dataset, lab)
        else:
            lt = torch.from_numpy(lab)
            model = train_task_model(
                data.x_train[lt], data.y_train[lt], unit.settings, data.image_size, seed
            )
        train_s = time.perf_counter() - start
        acc = float((logits_of(model, data.x_test).argmax(1) == data.y_test).double().mean())
        probs.append(logits_of(model, data.x_train[torch.from_numpy(stop)]).softmax(1).numpy())
        accs.append(acc)
        rows.append(
            {
                "dataset": unit.dataset,
                "setting": unit.setting,
                "method": unit.method,
                "seed": unit.seed,
                "cycle": cycle,
                "labeled": pool.n_labeled,
                "accuracy": round(acc, 6),
                "selection_seconds": round(select_s, 3),
                "train_seconds": round(train_s, 3),
                "decision": "" if decision is None else decision.regime,
                "measure": "" if decision is None else round(decision.value, 4),
            }
        )
    if unit.probs_dir is not None:
        path = Path(unit.probs_dir) / f"{unit.dataset}_{unit.setting}_{unit.method}_{unit.seed}.npz"
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(
            tmp,
            labeled=np.array(counts),
            stop_indices=stop,
            stop_labels=data.y_train[torch.from_numpy(stop)].numpy(),
            probs=np.stack(probs).astype(np.float16),
            test_accuracy=np.array(accs),
        )
        os.replace(tmp, path)
    return rows


# ---------------------------------------------------------------------- storage


def read_lb_rows(path: Path) -> list[dict[str, Any]]:
    return read_csv_rows(path, ("accuracy", "selection_seconds", "train_seconds", "measure"))


def write_lb_rows(path: Path, rows: list[dict[str, Any]], *, append: bool) -> None:
    new = not append or not path.exists()
    with path.open("w" if new else "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LB_COLUMNS)
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in LB_COLUMNS})
        fh.flush()
        os.fsync(fh.fileno())


def complete_lb_units(
    rows: list[dict[str, Any]], n_points: dict[str, int]
) -> set[tuple[str, str, str, int]]:
    counts: dict[tuple[str, str, str, int], set[int]] = {}
    for r in rows:
        counts.setdefault((r["dataset"], r["setting"], r["method"], r["seed"]), set()).add(
            r["cycle"]
        )
    return {k for k, v in counts.items() if v == set(range(n_points[k[0]]))}


def _init_worker() -> None:
    torch.set_num_threads(1)


def run_lb(units: list[LBUnit], workers: int, csv_path: Path, n_points: dict[str, int]) -> None:
    """Run ``units`` (on ``workers`` processes); append each one's rows as it finishes."""
    start = time.perf_counter()
    done = 0

    def record(rows: list[dict[str, Any]]) -> None:
        nonlocal done
        write_lb_rows(csv_path, rows, append=True)
        done += 1
        r0 = rows[0]
        acc = " ".join(f"{100 * r['accuracy']:.0f}" for r in rows)
        print(
            f"[{done}/{len(units)}] {r0['dataset']} {r0['setting']} {r0['method']} seed "
            f"{r0['seed']}: {acc} (elapsed {time.perf_counter() - start:.0f} s)",
            flush=True,
        )

    if workers <= 1:
        for unit in units:
            record(run_lb_unit(unit))
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker) as mp:
        for rows in mp.imap_unordered(run_lb_unit, units, chunksize=1):
            record(rows)


def run_protocol(
    out_dir: Path,
    datasets: list[str],
    methods: list[str],
    settings_kinds: list[str],
    seeds: int,
    workers: int,
    settings: Settings,
    probs_dir: Optional[Path],
    command: str,
    max_labeled: Optional[int] = None,
) -> Path:
    """Run the missing units of the low-budget protocol; the CSV's path."""
    csv_path, meta_path = out_dir / f"{LB_STEM}.csv", out_dir / f"{LB_STEM}.json"
    probs_dir = probs_dir or out_dir / f"{LB_STEM}_probs"
    probs_dir.mkdir(parents=True, exist_ok=True)
    rows = read_lb_rows(csv_path)
    n_points = {}
    for d in {*datasets, *(r["dataset"] for r in rows)}:
        counts = schedule(cached_dataset(d).x_train.shape[0])
        n_points[d] = len([n for n in counts if max_labeled is None or n <= max_labeled])
    done = complete_lb_units(rows, n_points) if rows else set()
    keep = [r for r in rows if (r["dataset"], r["setting"], r["method"], r["seed"]) in done]
    write_lb_rows(csv_path, keep, append=False)
    todo = [
        LBUnit(d, k, m, s, settings, str(probs_dir), max_labeled)
        for d in datasets
        for m in methods
        for k in settings_kinds
        for s in range(seeds)
        if (d, k, m, s) not in done
    ]
    # The cheap linear probe first, then dataset by dataset, in the order of `methods`.
    todo.sort(key=lambda u: (u.setting != "linear", datasets.index(u.dataset)))
    meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    meta.setdefault("runs", []).append(
        {"command": command, "units": len(todo), "load": list(os.getloadavg())}
    )
    meta["deltas"] = {d: delta_of(d) for d in datasets} | meta.get("deltas", {})
    meta["cold_start_samplers"] = type(cold_start_sampler("typiclust", datasets[0], 0)).__name__
    tmp = meta_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, meta_path)
    print(f"{len(todo)} unit(s) to run, {len(done)} complete; rows go to {csv_path}", flush=True)
    start = time.perf_counter()
    try:
        run_lb(todo, workers, csv_path, n_points)
    finally:
        meta["runs"][-1]["wall_seconds"] = round(time.perf_counter() - start, 1)
        meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    return csv_path

"""Which default embedding should TypiClust and ProbCover use when the user gives none?

Candidates need no weights (``aalearn.embeddings``): the flattened inputs (``raw``),
the same standardised per pixel (``raw-std``), PCA of the standardised inputs with 16,
32 or 64 components (``pca16-std`` ...), and PCA-32 of the centred, not standardised,
inputs (``pca32``). Every row is L2-normalised, as the samplers do.

Protocol, per dataset (``digits``, ``mnist5k``: the fixed 80/20 split of
``benchmarks.label_efficiency``), seed (0 to 4) and method (TypiClust, ProbCover with
``n_classes=10``): start from zero labels, select 10, then 10 more, then 20 more (one
``select`` per cycle, as a user would), and after each cycle fit a logistic
regression on the *pixels* of the labeled items (the same learner for every
embedding, so only the picks differ) and score it on the test set. ``random`` picks
uniformly with the same seed (the baseline). The embedding is computed once on the
training pool (the samplers cache it).

Writes ``docs/_static/cold_start_embedding.csv`` (one row per run) and the table
``docs/_fragments/cold_start_embedding.md`` (mean accuracy over the seeds)::

    python benchmarks/cold_start_embedding.py
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from aalearn import ActivePool, ProbCoverSampler, RandomSampler, TypiClustSampler  # noqa: E402
from aalearn.embeddings import l2_normalise, pca_embedding  # noqa: E402
from benchmarks._report import command, machine  # noqa: E402
from benchmarks.label_efficiency.protocol import load_dataset  # noqa: E402

CSV = ROOT / "docs" / "_static" / "cold_start_embedding.csv"
FRAGMENT = ROOT / "docs" / "_fragments" / "cold_start_embedding.md"
CYCLES = (10, 10, 20)  # labels added per cycle: 10, 20, 40 in all
DATASETS = ("digits", "mnist5k")


def _standardised(x: torch.Tensor) -> torch.Tensor:
    x = x - x.mean(dim=0)
    std = x.std(dim=0)
    return x / torch.where(std > 0, std, torch.ones_like(std))


CANDIDATES: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "raw": lambda x: l2_normalise(x),
    "raw-std": lambda x: l2_normalise(_standardised(x)),
    "pca16-std": lambda x: pca_embedding(x, 16),
    "pca32-std": lambda x: pca_embedding(x, 32),
    "pca64-std": lambda x: pca_embedding(x, 64),
    "pca32": lambda x: pca_embedding(x, 32, standardise=False),
}


def _accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: Any) -> float:
    from sklearn.linear_model import LogisticRegression

    if np.unique(y_train).size < 2:
        return float(np.mean(y_test == y_train[0]))
    clf = LogisticRegression(max_iter=2000)
    clf.fit(x_train, y_train)
    return float(clf.score(x_test, y_test))


def _run(
    name: str, sampler: Any, x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray
) -> List[float]:
    pool = ActivePool(None, n_items=len(x))
    out = []
    for budget in CYCLES:
        pool.label(sampler.select(None, pool, budget))
        idx = pool.labeled_indices
        out.append(_accuracy(x[idx], y[idx], xt, yt))
    return out


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES))
    parser.add_argument("--methods", nargs="+", default=["typiclust", "probcover"])
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows: List[Dict[str, Any]] = []
    start = time.time()
    for dataset in args.datasets:
        split = load_dataset(dataset)
        x = split.x_train.flatten(1)
        xn, yn = x.numpy(), split.y_train.numpy()
        xt, yt = split.x_test.flatten(1).numpy(), split.y_test.numpy()
        embeddings = {c: CANDIDATES[c](x) for c in args.candidates}
        for seed in range(args.seeds):
            runs: Dict[tuple[str, str], Any] = {("random", "-"): RandomSampler(random_state=seed)}
            for c, emb in embeddings.items():
                if "typiclust" in args.methods:
                    runs[("typiclust", c)] = TypiClustSampler(emb, random_state=seed)
                if "probcover" in args.methods:
                    runs[("probcover", c)] = ProbCoverSampler(emb, n_classes=10, random_state=seed)
            for (method, emb_name), sampler in runs.items():
                accs = _run(method, sampler, xn, yn, xt, yt)
                for n, acc in zip(np.cumsum(CYCLES), accs):
                    rows.append(
                        dict(
                            dataset=dataset,
                            seed=seed,
                            method=method,
                            embedding=emb_name,
                            labels=int(n),
                            accuracy=round(acc, 4),
                        )
                    )
            print(f"{dataset} seed {seed} done ({time.time() - start:.0f} s)", flush=True)
    CSV.parent.mkdir(parents=True, exist_ok=True)
    with CSV.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    FRAGMENT.write_text(_table(rows, args, time.time() - start))
    print(FRAGMENT.read_text())


def _table(rows: List[Dict[str, Any]], args: Any, seconds: float) -> str:
    keys = sorted({(r["method"], r["embedding"]) for r in rows}, key=lambda k: (k[0], k[1]))
    keys = [k for k in keys if k[0] == "random"] + [k for k in keys if k[0] != "random"]
    budgets = sorted({r["labels"] for r in rows})
    head = ["method", "embedding"] + [f"{d} {b}" for d in args.datasets for b in budgets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, emb in keys:
        cells = []
        for d in args.datasets:
            for b in budgets:
                acc = [
                    r["accuracy"]
                    for r in rows
                    if (r["method"], r["embedding"], r["dataset"], r["labels"])
                    == (method, emb, d, b)
                ]
                cells.append(f"{100 * np.mean(acc):.1f} ± {100 * np.std(acc):.1f}")
        lines.append(f"| {method} | {emb} | " + " | ".join(cells) + " |")
    return (
        f"Test accuracy (%) of a logistic regression on the pixels of the picked items, mean ± "
        f"std over {args.seeds} seeds, at 10, 20 and 40 labels, from zero labels "
        f"(`{command()}`, {seconds:.0f} s on {machine()}).\n\n" + "\n".join(lines) + "\n"
    )


if __name__ == "__main__":
    main()

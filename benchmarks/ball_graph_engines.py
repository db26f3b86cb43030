"""ProbCover's ball graph: aalearn's two builds against faiss' exact range search.

On the mixture of ``benchmarks/cold_start_scale.py`` (``--n`` x 384 float32 rows, L2-
normalised), with delta set for a mean ball of ``--mean-ball`` rows, one run each, in
this order: :func:`aalearn.functional._ball_graph.ball_graph` (the k-means partition
from 65,536 rows on), the same graph comparing every pair, and faiss'
``IndexFlatL2.range_search`` (exact; needs faiss-cpu, not an aalearn dependency). It
prints the times, the edge counts, whether every 997th row's ball is the same, and the
partition's statistics (candidate cells per row, the share of pairs compared).

    python benchmarks/ball_graph_engines.py --n 100000
    python benchmarks/ball_graph_engines.py --n 1000000 --aalearn-only
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cold_start_scale import choose_delta, make_embedding

from aalearn.functional import _ball_graph


def partition_stats(x: torch.Tensor, delta: float) -> dict:
    """Candidate cells per row and the share of the N^2 / 2 pairs the partition compares."""
    found = _ball_graph.partition(x, delta)
    if found is None:
        return {"partition": "given up: every pair is compared"}
    _, sizes, rows, cells = found
    n = x.shape[0]
    work = float(sizes[cells].double().sum())
    return {
        "cells": int(sizes.shape[0]),
        "candidate_cells_per_row": rows.shape[0] / n,
        "share_compared": work / (n * n / 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--mean-ball", type=float, default=100.0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--aalearn-only", action="store_true", help="the partitioned build and its statistics"
    )
    args = parser.parse_args()
    if not args.aalearn_only:
        import faiss

        faiss.omp_set_num_threads(args.threads)

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "embedding.npy"
        make_embedding(path, args.n, 384, 100, 0)
        delta = choose_delta(path, 30, 0, args.mean_ball)["delta"]
        x = np.load(path)
    xt = torch.from_numpy(x)
    out: dict = {"n": args.n, "delta": delta, "threads": args.threads}
    t = time.perf_counter()
    offsets, targets = _ball_graph.ball_graph(xt, delta)
    out["aalearn_s"] = time.perf_counter() - t
    sizes = offsets.diff()
    out["ball"] = {"mean": float(sizes.double().mean()), "max": int(sizes.max())}
    out["ball"]["share_alone"] = float((sizes == 1).double().mean())
    out.update(partition_stats(xt, delta))
    if args.aalearn_only:
        out["edges"] = int(offsets[-1])
        print(json.dumps(out))
        return
    out["faiss"] = faiss.__version__
    t = time.perf_counter()
    off_all, _ = _ball_graph._csr(_ball_graph._all_pairs(xt, delta), args.n)
    out["aalearn_all_pairs_s"] = time.perf_counter() - t
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    t = time.perf_counter()
    lims, _, found = index.range_search(x, delta * delta)
    out["faiss_flat_range_search_s"] = time.perf_counter() - t
    out["edges"] = {"aalearn": int(offsets[-1]), "all_pairs": int(off_all[-1])}
    out["edges"]["faiss"] = int(lims[-1])
    out["same_balls_every_997th_row"] = all(
        set(targets[offsets[i] : offsets[i + 1]].tolist())
        == set(found[lims[i] : lims[i + 1]].tolist())
        for i in range(0, args.n, 997)
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""TypiClust and ProbCover at scale, side by side with the authors' reference code.

The embedding: ``--n`` x ``--dim`` float32 rows, L2-normalised as the authors' features
are, drawn from a mixture of ``--components`` Gaussians in a 32-d latent space mapped
linearly to ``--dim`` dimensions plus isotropic noise (clusters of unequal sizes, a
low intrinsic dimension, as learned embeddings have). It is written once to a ``.npy``
file in the temporary directory; every contender then runs in its own fresh Python
process that loads it, so that each one's peak memory is its own:

- **peak memory** is the process's resident-set high-water mark (``VmHWM`` of
  ``/proc/self/status``, kept by the kernel, so no sampling misses a peak; not
  ``ru_maxrss``, which Linux carries over ``fork`` and ``exec`` from the parent, so a
  worker started by a parent holding 0.5 GiB reported at least that) minus the resident
  set measured just before
  the embedding was loaded (the interpreter and the imported libraries); it therefore
  counts the embedding itself and everything the selection allocates;
- **time** is the wall time of the selection, the embedding already in memory.

Contenders (``--engines``): ``aalearn`` (:func:`aalearn.functional.typiclust`,
:func:`aalearn.functional.probcover`) and ``reference``, the code of
``avihu111/TypiClust`` (``deep-al/pycls/al/typiclust.py``: ``kmeans`` then
``TypiClust.select_samples``; ``deep-al/pycls/al/prob_cover.py``:
``ProbCover.construct_graph`` then ``select_samples``) imported from a checkout given
with ``--reference`` (not part of aalearn). It is run on the CPU unchanged except for
two substitutions of GPU calls: faiss' ``index_cpu_to_all_gpus`` returns the CPU index
itself, and ``Tensor.cuda`` returns the tensor itself. It needs faiss-cpu and pandas.

ProbCover's delta: the purity rule costs ``O(N^2 D)`` on its own, so the benchmark
instead sets delta to the median distance from 256 random rows to their
``--ball``-th nearest row (a median ball of ``--ball`` items), the same for both; or,
with ``--mean-ball B``, to the delta at which 1,024 random rows' balls hold ``B`` rows
on average, so that the graph has about ``B N`` edges whatever ``N`` (on this mixture
a median ball of 30 at 1,000,000 rows means a mean ball of about 1,500: 1.5 billion
edges, more than this machine's memory for any engine that stores the graph).

    python benchmarks/cold_start_scale.py --reference /path/to/TypiClust --n 100000
    python benchmarks/cold_start_scale.py --reference PATH --n 1000000 --methods typiclust
    python benchmarks/cold_start_scale.py --reference PATH --n 1000000 --methods probcover \
        --mean-ball 100 --timeout 900
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "_static" / "cold_start_scale"
_CHUNK = 65_536


def _peak_rss() -> int:
    """This process image's resident-set high-water mark, in bytes (Linux: ``VmHWM``)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def make_embedding(path: Path, n: int, dim: int, components: int, seed: int) -> None:
    """The mixture described in the module docstring, written chunk by chunk."""
    g = torch.Generator().manual_seed(seed)
    latent = 32
    proj = torch.randn(latent, dim, generator=g) / latent**0.5
    centres = torch.randn(components, latent, generator=g) * 1.5
    weights = torch.rand(components, generator=g) + 0.2  # unequal cluster sizes
    scales = 0.4 + 0.6 * torch.rand(components, generator=g)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    for start in range(0, n, _CHUNK):
        m = min(_CHUNK, n - start)
        comp = torch.multinomial(weights, m, replacement=True, generator=g)
        z = centres[comp] + scales[comp, None] * torch.randn(m, latent, generator=g)
        x = z @ proj + 0.05 * torch.randn(m, dim, generator=g)
        out[start : start + m] = torch.nn.functional.normalize(x, dim=1).numpy()
    out.flush()
    del out


def choose_delta(path: Path, ball: int, seed: int, mean_ball: Optional[float] = None) -> Dict:
    """Median distance of 256 random rows to their ``ball``-th nearest row (self included).

    With ``mean_ball``, instead the delta at which 1,024 random rows' balls hold
    ``mean_ball`` rows on average (the graph then has about ``mean_ball * N`` edges).
    """
    x = torch.from_numpy(np.load(path))
    g = torch.Generator().manual_seed(seed + 1)
    q = x[torch.randperm(x.shape[0], generator=g)[: 256 if mean_ball is None else 1024]]
    d = torch.cat([torch.cdist(q, x[s : s + _CHUNK]) for s in range(0, x.shape[0], _CHUNK)], 1)
    if mean_ball is None:
        delta = float(d.kthvalue(ball, dim=1).values.median())
    else:  # the mean ball grows with delta: bisection
        lo, hi = 0.0, float(d.max())
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if float((d < mid).sum()) / q.shape[0] < mean_ball else (lo, mid)
        delta = hi
    return {"delta": delta, "mean_ball_estimate": float((d < delta).sum(1).double().mean())}


def _labeled(n: int, n_labeled: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 2)
    return np.sort(rng.choice(n, n_labeled, replace=False)).astype(np.int64)


def _reference_modules(reference: str) -> Any:
    sys.path.insert(0, str(Path(reference) / "deep-al"))
    import faiss  # the reference imports it; its GPU copy is replaced below

    faiss.index_cpu_to_all_gpus = lambda index, *a, **k: index
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    from pycls.al import prob_cover, typiclust

    return typiclust, prob_cover


def _select(args: argparse.Namespace, mods: Any, features: np.ndarray, l_set: np.ndarray) -> Any:
    """The contender's selection on ``features``: (picks, stage times)."""
    n = features.shape[0]
    u_set = np.setdiff1d(np.arange(n), l_set)
    stages: Dict[str, float] = {}
    quiet = contextlib.redirect_stdout(io.StringIO())
    start = time.perf_counter()
    if args.engine == "aalearn":
        x = torch.from_numpy(features)
        mask = torch.zeros(n, dtype=torch.bool)
        mask[torch.from_numpy(l_set)] = True
        if args.method == "typiclust":
            gen = torch.Generator().manual_seed(args.seed)
            picks = mods.typiclust(x, mask, args.budget, generator=gen).numpy()
        else:
            picks = mods.probcover(x, mask, args.budget, delta=args.delta).numpy()
    elif args.method == "typiclust":
        ref_tc = mods[0]
        k = min(len(l_set) + args.budget, ref_tc.TypiClust.MAX_NUM_CLUSTERS)
        obj = ref_tc.TypiClust.__new__(ref_tc.TypiClust)
        obj.features, obj.lSet, obj.uSet, obj.budgetSize = features, l_set, u_set, args.budget
        obj.clusters = ref_tc.kmeans(features, num_clusters=k)
        stages["kmeans_s"] = time.perf_counter() - start
        with quiet:
            picks = obj.select_samples()[0]
    else:
        ref_pc = mods[1]
        obj = ref_pc.ProbCover.__new__(ref_pc.ProbCover)
        obj.lSet, obj.uSet, obj.budgetSize, obj.delta = l_set, u_set, args.budget, args.delta
        obj.relevant_indices = np.concatenate([l_set, u_set]).astype(int)
        obj.rel_features = features[obj.relevant_indices]
        with quiet:
            obj.graph_df = obj.construct_graph()
            stages["graph_s"] = time.perf_counter() - start
            stages["edges"] = float(len(obj.graph_df))
            picks = obj.select_samples()[0]
    stages["seconds"] = time.perf_counter() - start
    return picks, stages


def worker(args: argparse.Namespace) -> None:
    """One contender in this process; writes its figures as JSON to ``args.result``.

    A warm-up selection on 2,000 random rows first loads every library's code paths
    (BLAS, OpenMP pools, faiss), so that the baseline resident set includes them.
    """
    torch.set_num_threads(args.threads)
    if args.engine == "reference":
        mods: Any = _reference_modules(args.reference)
    else:
        import aalearn.functional as mods
    warm = np.random.default_rng(0).standard_normal((2000, args.dim_of_embedding), np.float32)
    warm /= np.linalg.norm(warm, axis=1, keepdims=True)
    _select(args, mods, warm, _labeled(2000, args.labeled, args.seed))
    del warm
    base = _rss()
    features = np.load(args.embedding)
    l_set = _labeled(features.shape[0], args.labeled, args.seed)
    picks, stages = _select(args, mods, features, l_set)
    peak = _peak_rss()
    result = {
        "peak_bytes": peak - base,
        "process_peak_bytes": peak,
        "libraries_bytes": base,
        "embedding_bytes": features.nbytes,
        "picks": [int(p) for p in picks],
        **stages,
    }
    Path(args.result).write_text(json.dumps(result))


def _run(args: argparse.Namespace, method: str, engine: str, npy: Path, delta: float) -> Dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        result = Path(fh.name)
    cmd = [sys.executable, __file__, "--worker", "--method", method, "--engine", engine]
    cmd += ["--embedding", str(npy), "--result", str(result), "--delta", repr(delta)]
    cmd += ["--budget", str(args.budget), "--labeled", str(args.labeled)]
    cmd += ["--seed", str(args.seed), "--threads", str(args.threads)]
    cmd += ["--reference", args.reference or "", "--dim-of-embedding", str(args.dim)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    try:
        subprocess.run(cmd, check=True, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        result.unlink(missing_ok=True)
        return {"timeout": args.timeout}
    out = json.loads(result.read_text())
    result.unlink()
    return out


def _upsert(rows: List[Dict[str, Any]], path: Path) -> List[Dict[str, Any]]:
    old = (
        json.loads(path.with_suffix(".json").read_text())
        if path.with_suffix(".json").exists()
        else []
    )
    key = ("method", "engine", "n")
    kept = [r for r in old if all(any(r[k] != s[k] for k in key) for s in rows)]
    merged = kept + rows
    path.with_suffix(".json").write_text(json.dumps(merged, indent=1) + "\n")
    fields = list(dict.fromkeys(k for r in merged for k in r if k != "picks"))
    with path.with_suffix(".csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(merged)
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--components", type=int, default=100, help="mixture components")
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--labeled", type=int, default=0)
    parser.add_argument("--ball", type=int, default=30, help="median ball size for delta")
    parser.add_argument(
        "--mean-ball", type=float, default=None, help="mean ball size for delta (instead)"
    )
    parser.add_argument("--methods", nargs="+", default=["typiclust", "probcover"])
    parser.add_argument("--engines", nargs="+", default=["aalearn", "reference"])
    parser.add_argument("--reference", default=None, help="checkout of avihu111/TypiClust")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per contender")
    parser.add_argument("--out", type=Path, default=OUT, help="CSV/JSON path without suffix")
    # worker-only arguments
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--embedding", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--delta", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dim-of-embedding", type=int, default=384, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if "reference" in args.engines and not args.reference:
        parser.error("--reference PATH is required for the reference engine")
    from _report import command, machine

    npy = Path(tempfile.gettempdir()) / f"cold_start_scale_{os.getpid()}.npy"
    rows = []
    try:
        t = time.perf_counter()
        make_embedding(npy, args.n, args.dim, args.components, args.seed)
        print(f"embedding {args.n} x {args.dim}: {time.perf_counter() - t:.1f} s", flush=True)
        info = {"delta": float("nan"), "mean_ball_estimate": float("nan")}
        if "probcover" in args.methods:
            info = choose_delta(npy, args.ball, args.seed, args.mean_ball)
            print(f"delta {info['delta']:.4f}, mean ball ~{info['mean_ball_estimate']:.0f}")
        for method in args.methods:
            for engine in args.engines:
                res = _run(args, method, engine, npy, info["delta"])
                if "timeout" in res:
                    print(f"{method}/{engine}: not done in {args.timeout} s", flush=True)
                    rows.append(
                        {
                            "method": method,
                            "engine": engine,
                            "n": args.n,
                            "dim": args.dim,
                            "budget": args.budget,
                            "labeled": args.labeled,
                            "delta": info["delta"] if method == "probcover" else "",
                            "seconds": f">{args.timeout}",
                            "machine": machine(),
                            "command": command(),
                            "picks": [],
                        }
                    )
                    continue
                row = {
                    "method": method,
                    "engine": engine,
                    "n": args.n,
                    "dim": args.dim,
                    "budget": args.budget,
                    "labeled": args.labeled,
                    "delta": info["delta"] if method == "probcover" else "",
                    "seconds": round(res["seconds"], 2),
                    "peak_gib": round(res["peak_bytes"] / 2**30, 3),
                    "peak_over_embedding": round(res["peak_bytes"] / res["embedding_bytes"], 2),
                    "process_peak_gib": round(res["process_peak_bytes"] / 2**30, 3),
                    "stages": {
                        k: round(v) for k, v in res.items() if k.endswith("_s") or k == "edges"
                    },
                    "machine": machine(),
                    "command": command(),
                    "picks": res["picks"],
                }
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "picks"}), flush=True)
    finally:
        npy.unlink(missing_ok=True)
    if len(rows) >= 2:
        by = {(r["method"], r["engine"]): r for r in rows}
        for method in args.methods:
            a, b = by.get((method, "aalearn")), by.get((method, "reference"))
            if a and b and a["picks"] and b["picks"]:
                same = sum(p == q for p, q in zip(a["picks"], b["picks"]))
                print(f"{method}: speed-up {b['seconds'] / a['seconds']:.2f}x, picks equal {same}")
    _upsert(rows, args.out)


if __name__ == "__main__":
    main()

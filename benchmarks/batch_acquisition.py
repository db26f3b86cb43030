"""Batch-aware acquisition: BADGE and BatchBALD against the implementations users compare with.

BADGE: :func:`aalearn.functional.badge` (factorised distances) against k-means++ on
the explicit ``(N, C * D)`` gradient embedding, the way DeepAL+ and DISTIL do it
(here vectorised in torch, distances by one matrix-vector product per step, the
same ``D^2`` draws from the same generator: a faster and leaner explicit version
than theirs, whose loops run in NumPy/scikit-learn).

BatchBALD: :func:`aalearn.functional.batchbald` against ``batchbald_redux``'s
``get_batchbald_batch`` and baal's ``BatchBALD`` heuristic on the same
probabilities.

Peak memory is the peak resident set size of this process above its size just
before the call (``VmHWM - VmRSS`` from ``/proc/self/status``, the peak reset with
``/proc/self/clear_refs``), so it counts every allocation, torch's included; on
CUDA it is ``torch.cuda.max_memory_allocated`` above the allocated memory before.

    python benchmarks/batch_acquisition.py                 # everything, written to docs
    python benchmarks/batch_acquisition.py --part badge --repeats 1
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from aalearn.functional import badge, batchbald
from aalearn.functional.badge_seeding import _d2_draw
from benchmarks._report import command, interleaved_medians, machine, write_section


# ------------------------------------------------------------------ measuring
def _status(key: str) -> int:
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"{key}:\s+(\d+) kB", text)
    return int(match.group(1)) * 1024 if match else 0


def peak_memory(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Peak bytes allocated by ``fn`` above what was allocated before, and its result."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        out = fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before, out
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status("VmRSS")
    out = fn()
    return _status("VmHWM") - before, out


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB" if n < 2**30 else f"{n / 2**30:,.2f} GiB"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.0f}x" if b >= 2**20 else "n/a (under 1 MiB)"


# ---------------------------------------------------------------------- BADGE
def explicit_badge(features: torch.Tensor, probs: torch.Tensor, k: int, gen: torch.Generator):
    """k-means++ seeding on the explicit gradient embedding (DeepAL+/DISTIL's approach)."""
    q = -probs.clone()
    q[torch.arange(len(q)), probs.argmax(1)] += 1.0
    emb = (q[:, :, None] * features[:, None, :]).reshape(len(q), -1)  # (N, C * D)
    sq = emb.square().sum(1)
    chosen = torch.zeros(len(q), dtype=torch.bool, device=q.device)
    picks = torch.empty(k, dtype=torch.long, device=q.device)
    pick = sq.argmax().view(1)
    min_d2 = torch.full_like(sq, float("inf"))
    for step in range(k):
        if step:
            pick = _d2_draw(min_d2, chosen, gen)
        picks[step : step + 1] = pick
        chosen[pick] = True
        d2 = sq + sq[pick] - 2.0 * (emb @ emb[pick].T).squeeze(1)
        torch.minimum(min_d2, d2.clamp_(min=0.0), out=min_d2)
        min_d2.masked_fill_(chosen, 0.0)
    return picks


def _badge_inputs(n: int, c: int, d: int, device: torch.device, seed: int):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n, d, generator=gen).relu_()  # penultimate features: post-ReLU
    probs = torch.randn(n, c, generator=gen).mul_(3).softmax(1)
    return features.to(device), probs.to(device)


def bench_badge(args: argparse.Namespace, device: torch.device) -> str:
    rows = []
    explicit_n = {10: args.n, 100: args.explicit_n_c100}
    settings = [(args.n, c, explicit_n.get(c, args.n)) for c in args.classes]
    for n, c, n_explicit in settings:
        for size in sorted({n, n_explicit}, reverse=True):
            features, probs = _badge_inputs(size, c, args.dim, device, args.seed)

            def ours(f=features, p=probs) -> Any:
                return badge(f, p, args.k, generator=torch.Generator(device).manual_seed(1))

            def explicit(f=features, p=probs) -> Any:
                g = torch.Generator(device).manual_seed(1)
                return explicit_badge(f, p, args.k, g)

            contenders: dict[str, Callable[[], Any]] = {"aalearn": ours}
            if size == n_explicit:
                contenders["explicit"] = explicit
            mem, picks = {}, {}
            for name, fn in contenders.items():
                mem[name], picks[name] = peak_memory(fn, device)
            times = interleaved_medians(contenders, repeats=args.repeats, warmup=0)
            row = {"n": size, "c": c, "ours_s": times["aalearn"], "ours_mem": mem["aalearn"]}
            if "explicit" in contenders:
                row.update(
                    explicit_s=times["explicit"],
                    explicit_mem=mem["explicit"],
                    same=bool(torch.equal(picks["aalearn"], picks["explicit"])),
                )
            rows.append(row)
            print(row, flush=True)
            del features, probs
    lines = [
        f"N x D = N x {args.dim} float32 post-ReLU features, probabilities softmax(3 z), "
        f"k = {args.k}; median of {args.repeats} interleaved repeat(s). *peak memory*: peak "
        "bytes above those held before the call (the inputs excluded).",
        "",
        "| N | C | aalearn | aalearn peak memory | explicit embedding | explicit peak memory "
        "| speed-up | memory ratio | same picks |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "explicit_s" in r:
            lines.append(
                f"| {r['n']:,} | {r['c']} | {r['ours_s']:.2f} s | {_mib(r['ours_mem'])} | "
                f"{r['explicit_s']:.2f} s | {_mib(r['explicit_mem'])} | "
                f"{r['explicit_s'] / r['ours_s']:.1f}x | "
                f"{_ratio(r['explicit_mem'], r['ours_mem'])} | "
                f"{'yes' if r['same'] else 'NO'} |"
            )
        else:
            lines.append(
                f"| {r['n']:,} | {r['c']} | {r['ours_s']:.2f} s | {_mib(r['ours_mem'])} | "
                f"not run (the embedding alone is "
                f"{_mib(r['n'] * r['c'] * args.dim * 4)}) | | | | |"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------ BatchBALD
def _mc_inputs(n: int, k: int, c: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 1, c, generator=gen, dtype=torch.float64) * 2
    noise = torch.randn(n, k, c, generator=gen, dtype=torch.float64) * 1.5
    return (base + noise).softmax(-1)


def bench_batchbald(args: argparse.Namespace, device: torch.device) -> str:
    probs = _mc_inputs(args.bb_n, args.bb_K, args.bb_C, args.seed).to(device)
    log_probs = probs.log()
    contenders: dict[str, Callable[[], Any]] = {
        "aalearn": lambda: batchbald(
            probs,
            args.bb_k,
            num_samples=args.num_samples,
            generator=torch.Generator(device).manual_seed(0),
        ).tolist()
    }
    versions = []
    try:
        import batchbald_redux
        from batchbald_redux.batchbald import get_batchbald_batch

        versions.append(f"batchbald_redux {getattr(batchbald_redux, '__version__', '?')}")
        contenders["batchbald_redux"] = lambda: (
            get_batchbald_batch(
                log_probs, args.bb_k, args.num_samples, dtype=torch.float64, device=device
            ).indices
        )
    except ImportError:
        pass
    try:
        from importlib.metadata import version

        from baal.active.heuristics import BatchBALD

        versions.append(f"baal {version('baal')}")
        preds = probs.permute(0, 2, 1).cpu().numpy()  # baal's [N, C, K]
        heuristic = BatchBALD(args.bb_k, num_draw=max(1, args.num_samples // args.bb_K))

        def run_baal() -> Any:
            torch.manual_seed(0)  # baal draws from the global RNG
            scores = heuristic.compute_score(preds)
            return np.flatnonzero(scores).tolist()  # the picked set (baal keeps no order)

        contenders["baal"] = run_baal
    except ImportError:
        pass
    mem, picks = {}, {}
    for name, fn in contenders.items():
        mem[name], picks[name] = peak_memory(fn, device)
        print(name, _mib(mem[name]), flush=True)
    times = interleaved_medians(contenders, repeats=args.repeats, warmup=0)
    print(times, flush=True)
    exact_steps = 0
    while args.bb_C**exact_steps <= args.num_samples:
        exact_steps += 1
    ours = picks["aalearn"]
    lines = [
        f"N = {args.bb_n:,}, K = {args.bb_K}, C = {args.bb_C}, k = {args.bb_k}, "
        f"num_samples = {args.num_samples:,} (baal: num_draw = num_samples // K, the same "
        f"{args.num_samples // args.bb_K * args.bb_K:,} configurations); float64 "
        f"probabilities softmax(2 z_item + 1.5 z_sample); {', '.join(versions)}. Median of "
        f"{args.repeats} interleaved repeat(s). The joint is exact for the first "
        f"{exact_steps} picks (C^(n-1) <= num_samples); beyond it every implementation "
        "samples configurations from its own random stream.",
        "",
        "| implementation | time | vs aalearn | peak memory | picks |",
        "|---|---|---|---|---|",
    ]
    for name in contenders:
        other = picks[name]
        if name == "aalearn":
            agree = "-"
        elif name == "baal":
            agree = (
                f"{len(set(other) & set(ours))} of {len(ours)} in common (sets; first pick "
                f"{'same' if ours[0] in other else 'differs'})"
            )
        else:
            same_prefix = 0
            while same_prefix < len(ours) and ours[same_prefix] == other[same_prefix]:
                same_prefix += 1
            agree = (
                f"first {same_prefix} identical "
                f"({'all' if same_prefix >= exact_steps else 'NOT all'} of the exact ones), "
                f"{len(set(other) & set(ours))} of {len(ours)} in common"
            )
        lines.append(
            f"| {name} | {times[name]:.1f} s | {times[name] / times['aalearn']:.1f}x | "
            f"{_mib(mem[name])} | {agree} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["badge", "batchbald", "all"], default="all")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=50_000, help="BADGE pool size")
    parser.add_argument("--dim", type=int, default=512, help="BADGE feature dimension")
    parser.add_argument("--k", type=int, default=1_000, help="BADGE picks")
    parser.add_argument(
        "--explicit-n-c100", type=int, default=5_000,
        help="pool size of the explicit run at C = 100 (its embedding is N * 100 * D * 4 bytes)",
    )  # fmt: skip
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100], help="BADGE C values")
    parser.add_argument("--bb-n", type=int, default=10_000)
    parser.add_argument("--bb-K", type=int, default=20)
    parser.add_argument("--bb-C", type=int, default=10)
    parser.add_argument("--bb-k", type=int, default=100)
    parser.add_argument("--num-samples", type=int, default=200)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:
        # A fixed threshold: every block >= 64 KiB is mapped fresh and returned on free,
        # so RSS follows what each call allocates (glibc otherwise raises the threshold
        # after big frees and serves later blocks from memory already resident).
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    head = (
        f"Machine: {machine()}; device {device}; 1-min load average {load} at start (shared "
        f"machine: the ratios, measured side by side, are the result).\n"
        f"Command: `{command()}`. Peak memory: peak RSS above the RSS before the call "
        "(`/proc/self/status` VmHWM after a reset through `/proc/self/clear_refs`; on CUDA "
        "`torch.cuda.max_memory_allocated`).\n"
    )
    start = time.perf_counter()
    for part, fn in (("badge", bench_badge), ("batchbald", bench_batchbald)):
        if args.part in (part, "all"):
            body = head + "\n" + fn(args, device)
            print(body)
            if not args.no_write:
                write_section(f"batch-{part}-{device.type}", body)
    print(f"{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()

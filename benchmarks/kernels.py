"""Speed of the uncertainty kernels of ``aalearn.functional`` against a floor and baal.

For each shape, the contenders run in turn within every repeat (interleaved) and the
median is reported, with its ratio to the floor measured side by side:

(a) the floor, a row-wise ``probs.sum(-1)`` (one read of the data);
(b) ``aalearn.functional.entropy``, ``least_confidence``, ``margin`` (and ``bald``),
    one plain torch expression each;
(c) the naive ``-(p * p.log()).sum(-1)``, for orientation;
(d) baal 2.x's heuristics, their ``compute_score`` called directly on the same data
    (NumPy arrays, baal's ``[N, C]`` / ``[N, C, K]`` layout made before timing).

Shapes: 1,000,000 x 10 and 1,000,000 x 100 float32, and (200,000, 20, 10) for BALD.
There is no speed target: a selection's inference pass costs about 115 s per million
items on this machine, so even the slowest kernel is a few percent of a ``select``.

    python benchmarks/kernels.py                  # writes its section of docs/benchmarks.md
    python benchmarks/kernels.py --quick          # tiny smoke run, writes nothing
    python benchmarks/kernels.py --device cuda    # baal (NumPy) is skipped off CPU
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from aalearn.functional import bald, entropy, least_confidence, margin

try:  # run as a script or as a module
    from benchmarks._report import command, interleaved_medians, machine, write_section
except ImportError:  # pragma: no cover
    from _report import command, interleaved_medians, machine, write_section  # type: ignore

SECTION = "kernels"
FULL_2D = ((1_000_000, 10), (1_000_000, 100))
FULL_3D = (200_000, 20, 10)
QUICK_2D = ((10_000, 10), (10_000, 100))
QUICK_3D = (2_000, 20, 10)


def _baal() -> Tuple[Optional[Dict[str, Any]], str]:
    """baal's heuristics (instances), or None and the reason."""
    try:
        from importlib.metadata import version

        from baal.active.heuristics import BALD, Certainty, Entropy, Margin
    except Exception as err:  # ImportError, or a broken optional dependency of baal
        return None, f"baal not importable ({type(err).__name__}: {err}); its column is skipped"
    heur = {"entropy": Entropy(), "margin": Margin(), "least_confidence": Certainty()}
    heur["bald"] = BALD()
    return heur, f"baal {version('baal')}"


def _probs(shape: Tuple[int, ...], gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """Dirichlet(1) rows: normalised i.i.d. exponentials, float32."""
    x = torch.empty(shape).exponential_(generator=gen)
    x /= x.sum(-1, keepdim=True)
    return x.to(device)


def _naive_entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.log()).sum(-1)


def _naive_bald(mc: torch.Tensor) -> torch.Tensor:
    return _naive_entropy(mc.mean(1)) - _naive_entropy(mc).mean(1)


def _fmt(ms: float, floor: float) -> str:
    return f"{ms:.1f} ms ({ms / floor:.1f}x)"


def _bench_shape(
    shape: Tuple[int, ...],
    gen: torch.Generator,
    device: torch.device,
    heur: Optional[Dict[str, Any]],
    repeats: int,
) -> Tuple[List[str], List[str]]:
    """Time every contender on one shape: table rows and agreement notes."""
    p = _probs(shape, gen, device)
    ours: Dict[str, Callable[[torch.Tensor], torch.Tensor]]
    if p.ndim == 2:
        ours = {"entropy": entropy, "least_confidence": least_confidence, "margin": margin}
        naive = {"entropy": _naive_entropy}
        # baal: scores of shape [N, C]; margin returns p1 - p2, Certainty max p (ascending).
        to_ours = {"entropy": lambda s: s, "margin": lambda s: -s}
        to_ours["least_confidence"] = lambda s: 1 - s
        baal_input = p.numpy() if heur is not None and device.type == "cpu" else None
    else:
        ours = {"bald": bald}
        naive = {"bald": _naive_bald}
        to_ours = {"bald": lambda s: s}
        # baal's layout is [N, C, K]: reduce over the last (MC) axis.
        use = heur is not None and device.type == "cpu"
        baal_input = p.permute(0, 2, 1).contiguous().numpy() if use else None

    contenders: Dict[str, Callable[[], object]] = {"floor": lambda: p.sum(-1)}
    for name, fn in ours.items():
        contenders[f"aalearn {name}"] = lambda fn=fn: fn(p)
    for name, fn in naive.items():
        contenders[f"naive {name}"] = lambda fn=fn: fn(p)
    notes: List[str] = []
    if baal_input is not None and heur is not None:
        for name in ours:
            h = heur[name]
            contenders[f"baal {name}"] = lambda h=h: h.compute_score(baal_input)
            # Same numbers? (checked once, outside the timing)
            theirs = torch.as_tensor(
                to_ours[name](h.compute_score(baal_input)), dtype=torch.float64
            )
            diff = (ours[name](p).double().cpu() - theirs).abs().max().item()
            notes.append(f"{name} {tuple(shape)}: max |aalearn - baal| = {diff:.1e}")
    med = {k: 1e3 * v for k, v in interleaved_medians(contenders, repeats).items()}
    floor = med["floor"]
    shape_text = " x ".join(f"{s:,}" for s in shape)
    rows = [f"| {shape_text} | floor `sum(-1)` | {floor:.1f} ms (1.0x) | | | |"]
    for name in ours:
        mine = med[f"aalearn {name}"]
        nv = _fmt(med[f"naive {name}"], floor) if f"naive {name}" in med else ""
        bl = med.get(f"baal {name}")
        bl_text = _fmt(bl, floor) if bl is not None else "skipped"
        speedup = f"{bl / mine:.1f}x" if bl is not None else ""
        rows.append(
            f"| {shape_text} | {name} | {_fmt(mine, floor)} | {nv} | {bl_text} | {speedup} |"
        )
    return rows, notes


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog="The section between <!-- kernels:begin --> and <!-- kernels:end --> of "
        "docs/benchmarks.md is replaced (atomically) unless --quick or --no-write.",
    )
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repeats (median)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random probabilities")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 repeats, no write")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shapes_2d, shape_3d = (QUICK_2D, QUICK_3D) if args.quick else (FULL_2D, FULL_3D)
    repeats = 2 if args.quick else args.repeats
    heur, baal_note = _baal()
    if heur is not None and device.type != "cpu":
        baal_note += " (NumPy, CPU only: skipped on this device)"
    gen = torch.Generator().manual_seed(args.seed)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    rows: List[str] = []
    notes: List[str] = []
    with torch.inference_mode():
        for shape in (*shapes_2d, shape_3d):
            r, n = _bench_shape(shape, gen, device, heur, repeats)
            rows += r
            notes += n

    lines = [
        f"Machine: {machine()}; device {device}; 1-min load average {load:.1f} at start "
        "(the machine is shared: treat the ratios, measured side by side, as the result).",
        f"Command: `{command()}`. Median of {repeats} interleaved repeats; ratio to the "
        f"floor in parentheses. {baal_note}.",
        "",
        "| shape | kernel | aalearn | naive torch | baal | aalearn vs baal |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "What baal computes (`baal/active/heuristics/heuristics.py`, called on NumPy arrays): "
        "`Entropy` first checks that the input is a distribution (`to_prob`: min, max and a "
        "sum over classes, softmax otherwise), then `scipy.stats.entropy` on the swapped "
        "axes, which renormalises each row; `Margin` runs the same check, then sorts every "
        "row fully (`np.sort`) and returns `p1 - p2`, ranked ascending; `Certainty` returns "
        "`max p` (no check), ranked ascending; `BALD` runs the check, then `xlogy` twice "
        "over `[N, C, K]`. aalearn's margin is minus baal's and its least confidence `1 -` "
        "baal's, so that higher = more informative.",
    ]
    if notes:
        lines += ["", "Agreement on the benchmark data: " + "; ".join(notes) + "."]
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cores = os.cpu_count() or 1
    if max(load, load_end) > cores:
        lines += [
            "",
            f"Warning: the 1-min load average was {load:.1f} at the start and {load_end:.1f} at "
            f"the end, above the {cores} cores: other processes competed for them; compare with "
            "`--threads 1` there.",
        ]
    text = "\n".join(lines)
    print(text)
    if not (args.quick or args.no_write):
        write_section(SECTION, text)


if __name__ == "__main__":
    main()

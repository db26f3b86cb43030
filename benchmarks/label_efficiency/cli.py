"""The command line: parse, run the missing units, write the report."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch

from benchmarks._report import machine, write_section
from benchmarks.label_efficiency.methods import (
    KNOWN,
    METHOD_KEYS,
    METHODS,
    base_name,
    parse_spec,
    pick_rule,
    split_methods,
)
from benchmarks.label_efficiency.protocol import (
    ALL_DATASETS,
    DATASETS,
    DOCS,
    FINDINGS,
    PAPER_SEEDS,
    PROBE_STEM,
    PROTOCOL_KEYS,
    SECTION,
    SMOKE,
    STATIC,
    STEM,
    Settings,
    cached_dataset,
)
from benchmarks.label_efficiency.report import curves_of, plot, render
from benchmarks.label_efficiency.run import (
    Unit,
    _load_meta,
    _save_meta,
    _settings_dict,
    _settings_from,
    _sort_key,
    complete_units,
    read_rows,
    run_units,
    write_rows,
)


def command(argv: Optional[list[str]] = None) -> str:
    """The command line that reproduces this run."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python -m benchmarks.label_efficiency", *map(shlex.quote, args)])


def build_parser() -> argparse.ArgumentParser:
    from benchmarks import label_efficiency

    doc = label_efficiency.__doc__ or ""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.label_efficiency",
        description=doc.splitlines()[0],
        epilog="\n".join(doc.splitlines()[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--datasets",
        default=",".join(DATASETS),
        help=f"comma-separated, from {ALL_DATASETS} (default: {','.join(DATASETS)})",
    )
    parser.add_argument(
        "--protocol",
        choices=("main", "low-budget"),
        default="main",
        help="main: from 10 %% labeled at random; low-budget: from zero labels, 10 per cycle "
        "up to 100, then the main budgets (see benchmarks/label_efficiency/low_budget.py)",
    )
    parser.add_argument(
        "--settings",
        default="cnn,linear",
        help="low-budget protocol: the scored models, from cnn,linear (default: both)",
    )
    parser.add_argument(
        "--probs-dir",
        type=Path,
        default=None,
        help="low-budget protocol: where the stop-set probabilities go "
        "(default: <out-dir>/label_efficiency_low_budget_probs)",
    )
    parser.add_argument(
        "--max-labeled",
        type=int,
        default=None,
        help="low-budget protocol: stop each curve at this many labels (smoke runs)",
    )
    parser.add_argument(
        "--methods",
        default=None,
        help="comma-separated, from: " + ", ".join(KNOWN) + "; name[key=value;...] passes "
        "keyword arguments to the sampler (default: " + ",".join(METHODS) + ")",
    )
    parser.add_argument("--seeds", type=int, default=PAPER_SEEDS, help="seeds 0..N-1 (5)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--out-dir", type=Path, default=STATIC, help="where files go")
    parser.add_argument("--resume", action="store_true", help="skip units already in the CSV")
    parser.add_argument("--overwrite", action="store_true", help="discard an existing CSV")
    parser.add_argument("--report-only", action="store_true", help="run nothing, redo the report")
    parser.add_argument(
        "--probe",
        action="store_true",
        help="targeted experiments: rows go to label_efficiency_probes.csv and are reported "
        "against the main run's random and aalu",
    )
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="1 seed, 2 cycles, tiny training; needs --out-dir outside docs/",
    )
    group = parser.add_argument_group("settings (defaults: the benchmark's)")
    d = Settings()
    group.add_argument("--task-epochs", type=int, default=d.task_epochs)
    group.add_argument("--task-min-steps", type=int, default=d.task_min_steps)
    group.add_argument(
        "--selector-iterations",
        type=int,
        default=None,
        help="AALU family: exactly this many iterations (default: the library's schedule)",
    )
    group.add_argument(
        "--aalu-hidden", default=None, help="AALU family: MLP widths, e.g. 256,128 (library's)"
    )
    group.add_argument("--vaal-iterations", type=int, default=d.vaal_iterations)
    group.add_argument("--vaal-channels", type=int, default=d.vaal_channels)
    group.add_argument("--mc-samples", type=int, default=d.mc_samples)
    return parser


def settings_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Settings:
    if args.smoke:
        return SMOKE
    hidden = None
    try:
        if args.aalu_hidden is not None:
            hidden = tuple(int(h) for h in args.aalu_hidden.split(","))
    except ValueError:
        parser.error(f"--aalu-hidden expects comma-separated ints, got {args.aalu_hidden!r}")
    return dataclasses.replace(
        Settings(),
        task_epochs=args.task_epochs,
        task_min_steps=args.task_min_steps,
        selector_iterations=args.selector_iterations,
        aalu_hidden=hidden,
        vaal_iterations=args.vaal_iterations,
        vaal_channels=args.vaal_channels,
        mc_samples=args.mc_samples,
    )


def _check_args(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> tuple[list[str], list[str]]:
    """Validate the arguments; the datasets and the method specs to run."""
    if args.smoke:
        if args.out_dir == STATIC.resolve() or DOCS.parent.resolve() in args.out_dir.parents:
            parser.error("--smoke writes to --out-dir, which must be outside docs/")
        args.seeds, args.workers = 1, min(args.workers, 1)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    bad = [d for d in datasets if d not in ALL_DATASETS]
    if bad or not datasets:
        parser.error(f"unknown dataset(s) {bad}; choose from {', '.join(ALL_DATASETS)}")
    if args.methods is None:
        args.methods = ",".join(METHODS)
    methods = split_methods(args.methods)
    try:
        for m in methods:
            parse_spec(m)
            pick_rule(m)
    except ValueError as exc:
        parser.error(str(exc))
    if not methods:
        parser.error("--methods is empty")
    return datasets, methods


def _new_meta(settings: Settings, workers: int) -> dict[str, Any]:
    return {
        "settings": _settings_dict(settings),
        "machine": machine(),
        "load": ", ".join(f"{v:.1f}" for v in os.getloadavg()),
        "workers": workers,
        "runs": [],
        "pool_sizes": {},
    }


def _stale_methods(
    args: argparse.Namespace, parser: argparse.ArgumentParser, meta: dict[str, Any], now: Settings
) -> set[str]:
    """The methods whose units must run again because a setting they read changed."""
    old, new = meta["settings"], _settings_dict(now)
    changed = sorted(k for k in new if old.get(k) != new[k])
    if any(k in PROTOCOL_KEYS for k in changed) or (changed and args.probe):
        parser.error(f"the settings {changed} differ from those of the run being resumed")
    for run in meta["runs"]:
        run.setdefault("settings", old)
    meta["settings"] = new
    return {m for m, keys in METHOD_KEYS.items() if set(keys) & set(changed)}


def _check_probe(
    args: argparse.Namespace, parser: argparse.ArgumentParser, settings: Settings
) -> None:
    """Probes are compared with the main run: same protocol."""
    main_meta = _load_meta(args.out_dir / f"{STEM}.json")
    if main_meta is None:
        parser.error(f"--probe needs a main run in {args.out_dir} to compare with")
    ref = _settings_dict(_settings_from(main_meta["settings"]))
    now = _settings_dict(settings)
    if any(ref[k] != now[k] for k in PROTOCOL_KEYS):
        parser.error("--probe must use the main run's task-model settings")


def _run(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    datasets: list[str],
    methods: list[str],
    settings: Settings,
) -> None:
    """Run the units the CSV does not hold yet, appending their rows as they finish."""
    stem = PROBE_STEM if args.probe else STEM
    csv_path, meta_path = args.out_dir / f"{stem}.csv", args.out_dir / f"{stem}.json"
    meta, rows = _load_meta(meta_path), read_rows(csv_path)
    if args.probe:
        _check_probe(args, parser, settings)
    if rows and not (args.resume or args.overwrite or args.probe):
        parser.error(f"{csv_path} exists: pass --resume to continue or --overwrite")
    stale: set[str] = set()
    if rows and (args.resume or args.probe) and meta is not None:
        stale = _stale_methods(args, parser, meta, settings)
    if args.overwrite or meta is None or not rows:
        rows, meta = [], _new_meta(settings, args.workers)
    done = {u for u in complete_units(rows, settings.cycles) if base_name(u[1]) not in stale}
    # Keep complete units only: a unit interrupted while writing is run again.
    write_rows(
        csv_path, [r for r in rows if (r["dataset"], r["method"], r["seed"]) in done], append=False
    )
    for d in datasets:
        meta["pool_sizes"][d] = int(cached_dataset(d).x_train.shape[0])
    todo = [
        Unit(d, m, s, settings)
        for d in datasets
        for m in methods
        for s in range(args.seeds)
        if (d, m, s) not in done
    ]
    units = sorted(todo, key=_sort_key)
    print(
        f"{len(units)} unit(s) to run, {len(done)} already complete; {args.workers} "
        f"worker(s); rows go to {csv_path}",
        flush=True,
    )
    run = {
        "command": command(),
        "wall_seconds": 0.0,
        "units": len(units),
        "settings": _settings_dict(settings),
        "reran": sorted(stale),
    }
    meta["runs"].append(run)
    _save_meta(meta_path, meta)
    start = time.perf_counter()
    try:
        run_units(units, args.workers, csv_path)
    finally:
        run["wall_seconds"] = round(time.perf_counter() - start, 1)
        _save_meta(meta_path, meta)


def _report(args: argparse.Namespace) -> None:
    """Write the plot, the markdown report and (in docs/) the benchmarks page section."""
    out_dir: Path = args.out_dir
    write_docs = not (args.smoke or args.no_docs) and out_dir == STATIC.resolve()
    image = f"_static/{STEM}.png" if write_docs else f"{STEM}.png"
    body, shown = render(out_dir, image, FINDINGS if write_docs else None)
    main_settings = _settings_from(json.loads((out_dir / f"{STEM}.json").read_text())["settings"])
    curves = curves_of(read_rows(out_dir / f"{STEM}.csv"), main_settings.cycles)
    plot(curves, shown, out_dir / f"{STEM}.png")
    (out_dir / f"{STEM}.md").write_text(body)
    print(body)
    if write_docs:
        write_section(SECTION, body)
        print(f"wrote the '{SECTION}' section of {DOCS}", file=sys.stderr)


def main(argv: Optional[list[str]] = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the workers' setting, also for the report's machine line
    args.out_dir = args.out_dir.resolve()
    if args.protocol == "low-budget":
        from benchmarks.label_efficiency.low_budget_cli import low_budget_main

        low_budget_main(args, parser, command(argv))
        return
    datasets, methods = _check_args(args, parser)
    settings = settings_from_args(args, parser)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        _run(args, parser, datasets, methods, settings)
    if not (args.out_dir / f"{STEM}.json").exists():
        parser.error(f"no run in {args.out_dir} to report on")
    _report(args)

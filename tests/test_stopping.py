"""Stopping criteria: against small-text 1.4.1 on the same inputs, and against hand computations."""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import math
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from aalearn import stopping
from aalearn.stopping import (
    ClassificationChange,
    DeltaFScore,
    KappaAverage,
    MaxIterations,
    MaxLabeled,
    OverallUncertainty,
    StoppingCriterion,
    cohen_kappa,
    delta_f,
    normalized_entropy,
    replay,
)

SMALL_TEXT_INSTALL = "pip install --no-deps small-text==1.4.1"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def st() -> types.ModuleType:
    """small-text's ``stopping_criteria`` package, without running ``small_text/__init__``.

    Its package ``__init__`` imports torch, transformers and more; the stopping modules
    need only numpy, scipy and scikit-learn. A stand-in parent package is put in
    ``sys.modules`` while they import, then removed again.
    """
    if "small_text" in sys.modules:  # already imported for real
        return importlib.import_module("small_text.stopping_criteria")
    spec = importlib.util.find_spec("small_text")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"small-text is not installed ({SMALL_TEXT_INSTALL})")
    stub = types.ModuleType("small_text")
    stub.__path__ = list(spec.submodule_search_locations)
    sys.modules["small_text"] = stub
    try:
        return importlib.import_module("small_text.stopping_criteria")
    finally:
        for name in [m for m in sys.modules if m == "small_text" or m.startswith("small_text.")]:
            del sys.modules[name]


def stabilizing(seed: int, *, n: int = 300, classes: int = 3, steps: int = 12, rate: float = 0.3,
                decay: float = 0.5) -> list[np.ndarray]:  # fmt: skip
    """Predictions of a model that settles: the fraction re-drawn shrinks by ``decay``."""
    rng = np.random.default_rng(seed)
    preds = [rng.integers(0, classes, n)]
    for t in range(steps - 1):
        p = preds[-1].copy()
        flip = rng.random(n) < rate * decay**t
        p[flip] = rng.integers(0, classes, int(flip.sum()))
        preds.append(p)
    return preds


def run(crit: StoppingCriterion, seq: list[Any], key: str = "predictions") -> list[bool]:
    return [crit.update(**{key: x}) for x in seq]


def both_answers(answers: list[list[bool]]) -> None:
    """The sequences of a comparison must contain stops and non-stops (else it proves little)."""
    flat = [a for seq in answers for a in seq]
    assert any(flat) and not all(flat)


# ------------------------------------------------------------------ small-text
@pytest.mark.parametrize(("window_size", "kappa"), [(3, 0.99), (2, 0.9), (1, 0.95), (4, 0.8)])
def test_kappa_average_matches_small_text(st: Any, window_size: int, kappa: float) -> None:
    answers = []
    for seed in range(6):
        seq = stabilizing(seed, decay=[0.3, 0.5, 0.8][seed % 3])
        ours = KappaAverage(window_size=window_size, kappa=kappa)
        theirs = st.KappaAverage(3, window_size=window_size, kappa=kappa)
        got = run(ours, seq)
        assert got == [theirs.stop(predictions=p) for p in seq]
        assert np.allclose(ours.history[-window_size:], theirs.kappa_history, atol=1e-12)
        answers.append(got)
    both_answers(answers)


@pytest.mark.parametrize("threshold", [0.0, 0.01, 0.05, 0.1])
def test_classification_change_matches_small_text(st: Any, threshold: float) -> None:
    answers = []
    for seed in range(6):
        seq = stabilizing(seed, n=100, rate=0.2, decay=[0.3, 0.5, 0.8][seed % 3], steps=10)
        got = run(ClassificationChange(threshold=threshold), seq)
        theirs = st.ClassificationChange(3, threshold=threshold)
        assert got == [theirs.stop(predictions=p) for p in seq]
        answers.append(got)
    both_answers(answers)


@pytest.mark.parametrize(("window_size", "threshold"), [(3, 0.05), (2, 0.1), (1, 0.02)])
def test_delta_f_score_matches_small_text(st: Any, window_size: int, threshold: float) -> None:
    answers = []
    for seed in range(6):
        seq = stabilizing(seed, classes=2, rate=0.4, decay=[0.3, 0.5, 0.8][seed % 3])
        ours = DeltaFScore(window_size=window_size, threshold=threshold)
        theirs = st.DeltaFScore(2, window_size=window_size, threshold=threshold)
        got = run(ours, seq)
        assert got == [theirs.stop(predictions=p) for p in seq]
        assert np.allclose(ours.history[-window_size:], theirs.delta_history, atol=1e-12)
        answers.append(got)
    both_answers(answers)


def sharpening(seed: int, *, n: int = 200, classes: int = 4, steps: int = 10) -> list[np.ndarray]:
    """Softmax probabilities whose temperature falls each step: uncertainty shrinks."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, classes)) * 3
    out = []
    for t in range(steps):
        z = logits * (1.0 + t) ** 1.5
        e = np.exp(z - z.max(axis=1, keepdims=True))
        out.append(e / e.sum(axis=1, keepdims=True))
    return out


@pytest.mark.parametrize("threshold", [0.05, 0.1, 0.3])
def test_overall_uncertainty_matches_small_text(st: Any, threshold: float) -> None:
    answers = []
    for seed, classes in zip(range(4), (2, 3, 4, 10)):
        seq = sharpening(seed, classes=classes)
        got = run(OverallUncertainty(threshold=threshold), seq, "probabilities")
        theirs = st.OverallUncertainty(classes, threshold=threshold)
        idx = np.arange(len(seq[0]))
        assert got == [theirs.stop(proba=p, indices_stopping=idx) for p in seq]
        answers.append(got)
    both_answers(answers)


@pytest.mark.parametrize("max_iterations", [1, 2, 5])
def test_max_iterations_matches_small_text(st: Any, max_iterations: int) -> None:
    ours, theirs = MaxIterations(max_iterations=max_iterations), st.MaxIterations(max_iterations)
    got = [ours.update() for _ in range(7)]
    assert got == [theirs.stop() for _ in range(7)]
    assert got == [i + 1 >= max_iterations for i in range(7)]


def test_delta_f_score_without_positives_differs_from_small_text_on_purpose(st: Any) -> None:
    zeros = [np.zeros(5, dtype=np.int64)] * 3
    ours = DeltaFScore(window_size=1)
    theirs = st.DeltaFScore(2, window_size=1)
    with np.errstate(invalid="ignore"):
        assert [theirs.stop(predictions=p) for p in zeros] == [False, False, False]
    assert math.isnan(theirs.delta_history[-1])
    assert run(ours, zeros) == [False, True, True] and ours.history == [0.0, 0.0]


# -------------------------------------------------------------- by hand
def test_cohen_kappa_by_hand() -> None:
    a, b = [0, 0, 1, 1, 2], [0, 1, 1, 1, 2]
    # p_o = 4/5; marginals a (2, 2, 1), b (1, 3, 1): p_e = (2 + 6 + 1) / 25
    assert cohen_kappa(a, b) == pytest.approx((0.8 - 9 / 25) / (1 - 9 / 25), abs=1e-15)
    assert cohen_kappa([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)
    assert cohen_kappa([5, 5], [5, 5]) == 1.0  # p_e = 1: defined as perfect agreement
    assert cohen_kappa([3, 7, 7], [3, 7, 7]) == 1.0


@pytest.mark.parametrize("seed", range(8))
def test_cohen_kappa_matches_sklearn(seed: int) -> None:
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(2, 60)), int(rng.integers(2, 7))
    a = rng.integers(0, k, n) * 3 + 1  # labels need not be 0..k-1
    b = np.where(rng.random(n) < 0.6, a, rng.integers(0, k, n) * 3 + 1)
    if np.array_equal(a, b):
        b[0] = a[0] + 3
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    assert cohen_kappa(torch.from_numpy(a), torch.from_numpy(b)) == cohen_kappa(a, b)


def test_delta_f_by_hand() -> None:
    a, b = [1, 1, 1, 0, 0, 1], [1, 0, 1, 1, 0, 0]  # n11 = 2, n10 = 2, n01 = 1
    assert delta_f(a, b) == pytest.approx(1 - 4 / 7)
    assert delta_f(b, a) == delta_f(a, b)
    # positive_label = 0: n11 = 1, n10 = 1, n01 = 2
    assert delta_f(a, b, positive_label=0) == pytest.approx(1 - 2 / 5)
    assert delta_f([2, 0, 2], [2, 2, 2], positive_label=2) == pytest.approx(1 - 4 / 5)


def test_normalized_entropy_by_hand() -> None:
    p = np.array([[0.5, 0.25, 0.25], [1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    expected = [1.5 * math.log(2) / math.log(3), 0.0, 1.0]
    assert normalized_entropy(p) == pytest.approx(expected, abs=1e-12)
    assert normalized_entropy(torch.tensor(p, dtype=torch.float16)) == pytest.approx(
        expected, abs=2e-3
    )


def test_kappa_average_by_hand() -> None:
    seq = [[0, 0, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 0], [0, 1, 1, 0]]
    crit = KappaAverage(window_size=3, kappa=0.7)  # means 2/3, then 5/6
    assert run(crit, seq) == [False, False, False, False, True]
    k1 = (0.75 - 0.5) / 0.5  # 2 + 2 vs 1 + 3: p_e = (2 * 1 + 2 * 3) / 16
    k3 = (0.75 - 0.5) / 0.5  # 1 + 3 vs 2 + 2
    assert crit.history == pytest.approx([k1, 1.0, k3, 1.0])
    ev = crit.evidence
    assert ev["window"] == pytest.approx([1.0, k3, 1.0])
    assert ev["mean_kappa"] == pytest.approx((2 + k3) / 3) and ev["should_stop"]
    assert (ev["window_size"], ev["kappa"], ev["n_updates"]) == (3, 0.7, 5)


def test_kappa_average_turns_back_when_the_model_moves() -> None:
    crit = KappaAverage(window_size=1, kappa=0.99)
    assert run(crit, [[0, 1], [0, 1], [1, 0]]) == [False, True, False]
    exact = KappaAverage(window_size=1, kappa=1.0)  # "at least": a mean of exactly 1 stops
    assert run(exact, [[0, 1], [0, 1]]) == [False, True]


def test_classification_change_boundary() -> None:
    base = np.zeros(10, dtype=np.int64)
    one, two = base.copy(), base.copy()
    one[0], two[:2] = 1, 1
    assert run(ClassificationChange(threshold=0.1), [base, one]) == [False, True]
    crit = ClassificationChange(threshold=0.1)
    assert run(crit, [base, two]) == [False, False]
    assert crit.evidence["n_changed"] == 2 and crit.evidence["changed_fraction"] == 0.2
    assert run(ClassificationChange(), [base, base.copy()]) == [False, True]


def test_delta_f_score_window_needs_all_values_below() -> None:
    seq = [[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]
    crit = DeltaFScore(window_size=2, threshold=0.2)
    assert run(crit, seq) == [False, False, False, True]
    assert crit.history == pytest.approx([1 - 4 / 7, 0.0, 0.0])  # n11 = 2, n01 = 3
    seq = [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]  # 1 - 8/9, then 0
    assert run(DeltaFScore(window_size=2, threshold=0.12), seq) == [False, False, True]
    assert run(DeltaFScore(window_size=2, threshold=0.1), seq) == [False, False, False]


def test_overall_uncertainty_and_max_labeled_by_hand() -> None:
    crit = OverallUncertainty(threshold=0.5)
    p = np.array([[0.5, 0.5], [1.0, 0.0]])  # normalized entropies 1 and 0: mean 0.5
    assert crit.update(probabilities=p) is False  # strictly below
    assert crit.evidence["mean_uncertainty"] == pytest.approx(0.5)
    budget = MaxLabeled(max_labeled=100)
    assert [budget.update(n_labeled=n) for n in (50, 99, 100, 120)] == [False, False, True, True]
    assert budget.evidence["n_labeled"] == 120 and budget.history == [50, 99, 100, 120]


# ---------------------------------------------------------------- inputs
def test_tensor_and_probability_inputs_give_the_same_answers() -> None:
    seq = sharpening(3, classes=3)
    preds = [p.argmax(axis=1) for p in seq]
    makers: list[Callable[[], StoppingCriterion]] = [
        lambda: KappaAverage(window_size=2, kappa=0.9),
        lambda: ClassificationChange(threshold=0.05),
        lambda: DeltaFScore(window_size=2, threshold=0.05),
    ]
    for make in makers:
        a, b, c = make(), make(), make()
        assert run(a, preds) == run(b, [torch.from_numpy(p) for p in preds])
        assert run(c, [torch.from_numpy(p).float() for p in seq], "probabilities") == run(
            make(), preds
        )
        assert a.history == b.history == c.history
    half = run(OverallUncertainty(threshold=0.1), [torch.tensor(p).half() for p in seq],
               "probabilities")  # fmt: skip
    assert half == run(OverallUncertainty(threshold=0.1), seq, "probabilities")


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_tensors_on_any_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    proba = [torch.tensor(p) for p in sharpening(5, classes=3, steps=6)]
    expected = run(KappaAverage(window_size=2, kappa=0.9), proba, "probabilities")
    got = run(KappaAverage(window_size=2, kappa=0.9), [p.to(device) for p in proba],
              "probabilities")  # fmt: skip
    assert got == expected


def test_one_call_feeds_every_criterion() -> None:
    criteria = [
        KappaAverage(),
        ClassificationChange(),
        DeltaFScore(),
        OverallUncertainty(),
        MaxIterations(max_iterations=2),
        MaxLabeled(max_labeled=40),
    ]
    proba = sharpening(0, n=20, classes=2, steps=1)[0]
    for n in (20, 40):
        out = [c.update(probabilities=torch.tensor(proba), n_labeled=n) for c in criteria]
    assert out == [False, True, False, False, True, True]


# ------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: KappaAverage(window_size=2.0), TypeError, "`window_size` to be an integer"),
        (lambda: KappaAverage(window_size=True), TypeError, "`window_size` to be an integer"),
        (lambda: KappaAverage(window_size=0), ValueError, "`window_size` to be >= 1"),
        (lambda: KappaAverage(kappa="high"), TypeError, "`kappa` to be a real number"),
        (lambda: KappaAverage(kappa=1.5), ValueError, "`kappa` to be <= 1.0"),
        (lambda: ClassificationChange(threshold=-0.1), ValueError, "`threshold` to be >= 0.0"),
        (lambda: DeltaFScore(threshold=float("nan")), ValueError, "`threshold` to be finite"),
        (lambda: DeltaFScore(positive_label=-1), ValueError, "`positive_label` to be >= 0"),
        (lambda: OverallUncertainty(threshold=1.0), ValueError, "`threshold` to be < 1.0"),
        (lambda: MaxIterations(max_iterations=0), ValueError, "`max_iterations` to be >= 1"),
        (lambda: MaxLabeled(max_labeled=-5), ValueError, "`max_labeled` to be >= 0"),
        (lambda: KappaAverage(3), TypeError, "positional"),
    ],
)
def test_bad_configuration(make: Callable[[], Any], error: type, message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        make()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({}, TypeError, "needs `predictions` or `probabilities`"),
        ({"predictions": [0.0, 1.0]}, TypeError, "`predictions` to hold integer class indices"),
        ({"predictions": np.array([True, False])}, TypeError, "`predictions` to hold integer"),
        ({"predictions": [[0, 1]]}, ValueError, "`predictions` to be 1-D"),
        ({"predictions": []}, ValueError, "`predictions` to hold at least one item"),
        ({"predictions": [0, -1]}, ValueError, "`predictions` to hold class indices >= 0"),
        ({"predictions": "01"}, TypeError, "`predictions` to be a numpy.ndarray"),
        ({"predictions": [0, 1, 1]}, ValueError, "the 2 items of the stop set"),
        ({"probabilities": [[1, 0], [0, 1]]}, TypeError, "`probabilities` to be a floating"),
        ({"probabilities": [0.5, 0.5]}, ValueError, "`probabilities` to have shape (N, C)"),
        ({"probabilities": [[1.0], [1.0]]}, ValueError, "`probabilities` to have shape (N, C)"),
        ({"probabilities": [[2.0, -1.0], [0.5, 0.5]]}, ValueError, "apply a softmax"),
        ({"probabilities": [[0.6, 0.6], [0.5, 0.5]]}, ValueError, "to sum to 1, but a row sums"),
        ({"probabilities": [[np.nan, 1.0], [0.5, 0.5]]}, ValueError, "to be finite"),
        ({"predictions": [0, 1], "probabilities": [[1.0, 0.0]]}, ValueError, "same items"),
        ({"predictions": [0, 1], "n_labeled": -1}, ValueError, "`n_labeled` to be >= 0"),
        ({"predictions": [0, 1], "n_labeled": 2.0}, TypeError, "`n_labeled` to be an integer"),
    ],
)
def test_bad_update_changes_nothing(kwargs: dict[str, Any], error: type, message: str) -> None:
    crit = KappaAverage(window_size=1)
    crit.update(predictions=np.array([0, 1]))
    before = crit.state_dict()
    with pytest.raises(error, match=re.escape(message)):
        crit.update(**kwargs)
    assert crit.state_dict() == before


def test_missing_inputs_name_the_criterion() -> None:
    with pytest.raises(TypeError, match=r"OverallUncertainty\.update\(\) needs `probabilities`"):
        OverallUncertainty().update(predictions=[0, 1])
    with pytest.raises(TypeError, match=r"MaxLabeled\.update\(\) needs `n_labeled`"):
        MaxLabeled(max_labeled=3).update(predictions=[0, 1])


def test_overall_uncertainty_accepts_a_shrinking_set() -> None:
    crit = OverallUncertainty()
    crit.update(probabilities=np.full((4, 2), 0.5))
    assert crit.update(probabilities=np.array([[1.0, 0.0]])) is True


# ------------------------------------------------------- configuration, state
def test_params_stored_unchanged_and_repr() -> None:
    w = np.int64(5)
    crit = KappaAverage(window_size=w)
    assert crit.window_size is w and crit.get_params() == {"window_size": 5, "kappa": 0.99}
    assert repr(KappaAverage()) == "KappaAverage()"
    assert repr(DeltaFScore(threshold=0.1)) == "DeltaFScore(threshold=0.1)"
    assert repr(MaxIterations(max_iterations=4)) == "MaxIterations(max_iterations=4)"
    assert not KappaAverage().should_stop and KappaAverage().evidence["mean_kappa"] is None


def full_run(make: Callable[[], StoppingCriterion], seq: list[Any], key: str,
             roundtrip: Callable[[dict[str, Any]], dict[str, Any]]) -> None:  # fmt: skip
    """Stopping half way, saving, restoring into a fresh object and going on changes nothing."""
    straight = make()
    expected = run(straight, seq, key)
    first = make()
    got = run(first, seq[:5], key)
    resumed = make()
    resumed.load_state_dict(roundtrip(first.state_dict()))
    assert resumed.evidence == first.evidence and resumed.should_stop == first.should_stop
    got += run(resumed, seq[5:], key)
    assert got == expected and resumed.evidence == straight.evidence


def _json(state: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(state))


def _torch(state: dict[str, Any]) -> dict[str, Any]:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("roundtrip", [_json, _torch], ids=["json", "torch"])
def test_state_round_trip_resumes_exactly(roundtrip: Callable[[dict], dict]) -> None:
    preds = stabilizing(1, classes=2, rate=0.3, decay=0.4)
    proba = sharpening(1)
    full_run(lambda: KappaAverage(window_size=2, kappa=0.9), preds, "predictions", roundtrip)
    full_run(lambda: ClassificationChange(threshold=0.02), preds, "predictions", roundtrip)
    full_run(lambda: DeltaFScore(window_size=2), preds, "predictions", roundtrip)
    full_run(lambda: OverallUncertainty(threshold=0.2), proba, "probabilities", roundtrip)
    full_run(lambda: MaxLabeled(max_labeled=7), list(range(10)), "n_labeled", roundtrip)
    it = MaxIterations(max_iterations=3)
    it.update()
    it.update()
    again = MaxIterations(max_iterations=3)
    again.load_state_dict(roundtrip(it.state_dict()))
    assert again.update() is True


def _edit(state: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**state, **changes}


def test_load_state_dict_checks_before_changing_anything() -> None:
    src = KappaAverage(window_size=2)
    run(src, [[0, 1, 1], [0, 1, 0], [0, 1, 0]])
    good = src.state_dict()
    target = KappaAverage(window_size=2)
    target.update(predictions=[1, 1, 1, 1])
    before = target.state_dict()
    bad = [
        ([1, 2], TypeError, "`state` to be a dict"),
        ({k: v for k, v in good.items() if k != "history"}, ValueError, "['history'] are missing"),
        (_edit(good, extra=1), ValueError, "['extra'] unexpected"),
        (_edit(good, version=2), ValueError, "Unsupported state version 2"),
        (_edit(good, criterion="DeltaFScore"), ValueError, "The state is for DeltaFScore"),
        (_edit(good, params={"window_size": 3, "kappa": 0.99}), ValueError, "this criterion is"),
        (_edit(good, n_updates=-1), ValueError, "`state['n_updates']` to be >= 0"),
        (_edit(good, history=[1.0]), ValueError, "to hold 2 values after 3 updates"),
        (_edit(good, history=[1.0, 2.0]), ValueError, "finite values in [-1.0, 1.0]"),
        (_edit(good, history=["a", "b"]), TypeError, "to hold numbers"),
        (_edit(good, last_predictions=None), ValueError, "`state['last_predictions']` after"),
        (_edit(good, last_predictions=[0.5]), TypeError, "integer class indices"),
    ]
    for state, error, message in bad:
        with pytest.raises(error, match=re.escape(message)):
            target.load_state_dict(state)  # type: ignore[arg-type]
        assert target.state_dict() == before
    with pytest.raises(ValueError, match=re.escape("`state['last_predictions']` to be None")):
        MaxIterations(max_iterations=2).load_state_dict(
            _edit(MaxIterations(max_iterations=2).state_dict(), last_predictions=[0])
        )
    target.load_state_dict(good)
    assert target.state_dict() == good
    target.reset()
    assert target.n_updates == 0 and target.history == [] and not target.should_stop


def test_numpy_parameters_still_give_a_json_state() -> None:
    crit = KappaAverage(window_size=np.int64(2), kappa=np.float32(0.5))
    run(crit, [[0, 1], [0, 1]])
    state = _json(crit.state_dict())
    assert state["params"] == {"window_size": 2, "kappa": 0.5}
    again = KappaAverage(window_size=np.int64(2), kappa=np.float32(0.5))
    again.load_state_dict(state)
    assert again.evidence == crit.evidence


def test_evidence_is_json_able() -> None:
    criteria = [KappaAverage(), ClassificationChange(), DeltaFScore(), OverallUncertainty()]
    for proba in sharpening(2, classes=2, steps=5):
        for crit in criteria:
            crit.update(probabilities=proba)
    for crit in criteria:
        ev = json.loads(json.dumps(crit.evidence))
        assert ev["n_updates"] == 5 and isinstance(ev["should_stop"], bool)


def test_import_aalearn_does_not_import_stopping() -> None:
    code = "import sys, aalearn; print('aalearn.stopping' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr


# ---------------------------------------------------------------- replay
def test_replay_matches_a_live_loop_and_leaves_the_criteria_alone() -> None:
    proba = sharpening(4, classes=3, steps=12)
    counts = [20 * (t + 1) for t in range(12)]
    acc = [0.5 + 0.04 * t for t in range(12)]
    given = {
        "kappa": KappaAverage(window_size=2, kappa=0.95),
        "budget": MaxLabeled(max_labeled=100),
        "never": MaxIterations(max_iterations=50),
    }
    out = replay(given, probabilities=proba, n_labeled=counts, metric=np.array(acc))
    assert all(c.n_updates == 0 for c in given.values())
    live = KappaAverage(window_size=2, kappa=0.95)
    t = next(i for i, p in enumerate(proba) if live.update(probabilities=p))
    assert out["kappa"]["cycle"] == t and out["kappa"]["evidence"] == live.evidence
    assert out["kappa"]["n_labeled"] == counts[t] and out["kappa"]["metric"] == acc[t]
    assert out["kappa"]["left_on_table"] == pytest.approx(acc[-1] - acc[t])
    assert out["kappa"]["labels_saved"] == counts[-1] - counts[t]
    assert out["budget"]["cycle"] == 4 and out["budget"]["labels_saved"] == 140
    assert out["never"] == {"cycle": None, "n_labeled": None, "metric": None,
                            "left_on_table": None, "labels_saved": None,
                            "evidence": out["never"]["evidence"]}  # fmt: skip
    assert out["never"]["evidence"]["n_updates"] == 12


def test_replay_bad_input() -> None:
    with pytest.raises(TypeError, match="`criteria` to be a mapping"):
        replay([KappaAverage()], predictions=[[0]])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`metric` to be a sequence"):
        replay({"k": KappaAverage()}, predictions=[[0]], metric=0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one entry per cycle"):
        replay({"k": KappaAverage()}, predictions=[[0], [1]], metric=[0.5])


# ------------------------------------------------------------------ docs
@pytest.mark.parametrize("name", sorted(set(stopping.__all__)))
def test_public_name_documented_with_examples(name: str) -> None:
    api = (ROOT / "docs" / "api.rst").read_text()
    assert re.search(rf"^\.\. auto(class|function):: {name}$", api, re.MULTILINE)
    doc = getattr(stopping, name).__doc__ or ""
    assert re.search(r"^\s*Examples\n\s*-{3,}\n", doc, re.MULTILINE) and ">>>" in doc


@pytest.mark.slow
def test_docs_page_runs(capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "docs" / "stopping.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert blocks
    exec(compile("\n\n".join(blocks), "docs/stopping.md", "exec"), {"__name__": "docs_page"})
    capsys.readouterr()

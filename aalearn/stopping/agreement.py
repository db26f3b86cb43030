"""Criteria that compare the predictions of consecutive models on a fixed stop set.

When the model of one cycle predicts the stop set (almost) as the model of the cycle
before did, more labels are unlikely to change it much: *stabilizing predictions*.
The three criteria differ in how they measure agreement: Cohen's kappa
(:class:`KappaAverage`), the number of changed predictions
(:class:`ClassificationChange`) and the change of the F-score of the positive class
(:class:`DeltaFScore`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from aalearn._validation import check_int, check_number
from aalearn.stopping._base import ArrayLike, StoppingCriterion, check_predictions

__all__ = ["ClassificationChange", "DeltaFScore", "KappaAverage", "cohen_kappa", "delta_f"]


def _pair(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x, y = check_predictions(a, "a"), check_predictions(b, "b")
    if len(x) != len(y):
        raise ValueError(
            f"Expected arguments `a` and `b` to have the same length, but got {len(x)} "
            f"and {len(y)}."
        )
    return x, y


def cohen_kappa(a: ArrayLike, b: ArrayLike) -> float:
    r"""Cohen's kappa between two label vectors of the same items.

    .. math:: \kappa = \frac{p_o - p_e}{1 - p_e}, \quad
        p_o = \frac{1}{N}\sum_i [a_i = b_i], \quad
        p_e = \frac{1}{N^2}\sum_c n^a_c\, n^b_c,

    where :math:`n^a_c` counts the items ``a`` puts in class :math:`c`. Identical
    vectors give exactly 1, also when both are one constant class (:math:`p_e = 1`,
    where the formula divides zero by zero), as in small-text.

    Parameters
    ----------
    a, b : array or tensor of int, shape (N,)
        Class indices (>= 0).

    Returns
    -------
    float
        In :math:`[-1, 1]`; 1 for identical vectors.

    Examples
    --------
    >>> from aalearn.stopping import cohen_kappa
    >>> round(cohen_kappa([0, 0, 1, 1], [0, 1, 1, 1]), 6)  # p_o = 3/4, p_e = 1/2
    0.5
    >>> cohen_kappa([2, 2, 2], [2, 2, 2])
    1.0
    """
    x, y = _pair(a, b)
    n = len(x)
    classes, codes = np.unique(np.concatenate([x, y]), return_inverse=True)
    k = len(classes)
    counts = np.bincount(codes[:n] * k + codes[n:], minlength=k * k).reshape(k, k)
    observed = np.trace(counts) / n
    expected = float(counts.sum(axis=1) @ counts.sum(axis=0)) / (float(n) * n)
    if observed == 1.0:
        return 1.0
    return float((observed - expected) / (1.0 - expected))


def delta_f(a: ArrayLike, b: ArrayLike, *, positive_label: int = 1) -> float:
    r"""Predicted change of F-measure between two prediction vectors (Altschuler and Bloodgood).

    With :math:`n_{11}` items both vectors put in the positive class and
    :math:`n_{10}`, :math:`n_{01}` the items only one of them does:

    .. math:: \Delta F = 1 - \frac{2 n_{11}}{2 n_{11} + n_{10} + n_{01}},

    one minus the F-score of one vector measured against the other. When neither
    vector predicts the positive class the vectors agree and :math:`\Delta F = 0` (the
    formula divides zero by zero; small-text returns NaN there, which never stops).

    Examples
    --------
    >>> from aalearn.stopping import delta_f
    >>> delta_f([1, 1, 0, 0], [1, 0, 1, 0])  # n11 = 1, n10 = n01 = 1: 1 - 2/4
    0.5
    >>> delta_f([0, 0], [0, 0])
    0.0
    """
    x, y = _pair(a, b)
    positive = check_int(positive_label, "positive_label", minimum=0)
    px, py = x == positive, y == positive
    both = int(np.count_nonzero(px & py))
    either = int(np.count_nonzero(px ^ py))
    denominator = 2 * both + either
    return 0.0 if denominator == 0 else 1.0 - 2.0 * both / denominator


class _ConsecutivePredictions(StoppingCriterion):
    requires: ClassVar[str] = "predictions"
    compares_predictions: ClassVar[bool] = True


class KappaAverage(_ConsecutivePredictions):
    """Stop when predictions have stabilized: mean kappa of consecutive models over a window.

    Stabilizing predictions (Bloodgood and Vijay-Shanker, CoNLL 2009): at each update
    the stop-set predictions are compared with the previous update's by Cohen's kappa
    (:func:`cohen_kappa`); the criterion says stop when the mean of the last
    ``window_size`` kappas is at least ``kappa``. It needs ``window_size + 1`` updates
    before it can stop, and its answer can turn back to ``False`` if the model moves
    again. The defaults are the paper's (3 and 0.99) and small-text's.

    ``history`` holds every kappa (one per update after the first).

    Parameters
    ----------
    window_size : int, default 3
        How many consecutive kappas are averaged (>= 1).
    kappa : float, default 0.99
        The mean kappa at or above which it stops, in [-1, 1].

    Examples
    --------
    >>> from aalearn.stopping import KappaAverage
    >>> crit = KappaAverage(window_size=2, kappa=0.9)
    >>> [crit.update(predictions=p) for p in ([0, 1, 1, 0], [0, 1, 1, 1], [0, 1, 1, 1],
    ...                                        [0, 1, 1, 1])]
    [False, False, False, True]
    >>> crit.evidence["window"], crit.evidence["mean_kappa"]
    ([1.0, 1.0], 1.0)
    """

    history_bounds: ClassVar[tuple[float, float]] = (-1.0, 1.0)

    def __init__(self, *, window_size: int = 3, kappa: float = 0.99) -> None:
        check_int(window_size, "window_size", minimum=1)
        check_number(kappa, "kappa", minimum=-1.0, maximum=1.0)
        self.window_size = window_size
        self.kappa = kappa
        super().__init__()

    def _compare(self, previous: np.ndarray, current: np.ndarray) -> float:
        return cohen_kappa(current, previous)

    @property
    def should_stop(self) -> bool:
        window = self._history[-int(self.window_size) :]
        return len(window) >= self.window_size and float(np.mean(window)) >= self.kappa

    def _evidence(self) -> dict[str, Any]:
        window = self._history[-int(self.window_size) :]
        return {
            "window": window,
            "mean_kappa": float(np.mean(window)) if window else None,
            "window_size": int(self.window_size),
            "kappa": float(self.kappa),
        }


class ClassificationChange(_ConsecutivePredictions):
    """Stop when (almost) no stop-set prediction changed since the previous update.

    Classification change (Zhu, Wang and Hovy, COLING 2008): stop when no prediction
    on the unlabeled set changes between two consecutive models. ``threshold`` (from
    small-text) allows a fraction of the items to change: it stops when at least
    ``N * (1 - threshold)`` of the ``N`` predictions are unchanged; ``threshold=0`` is
    the paper's rule.

    ``history`` holds the number of changed predictions at each update after the first.

    Parameters
    ----------
    threshold : float, default 0.0
        The fraction of the stop set allowed to change, in [0, 1].

    Examples
    --------
    >>> from aalearn.stopping import ClassificationChange
    >>> crit = ClassificationChange(threshold=0.25)
    >>> [crit.update(predictions=p) for p in ([0, 1, 2, 2], [0, 1, 1, 1], [0, 1, 1, 2])]
    [False, False, True]
    >>> crit.evidence["n_changed"], crit.evidence["n_items"]
    (1, 4)
    """

    history_bounds: ClassVar[tuple[float, float]] = (0.0, np.inf)

    def __init__(self, *, threshold: float = 0.0) -> None:
        check_number(threshold, "threshold", minimum=0.0, maximum=1.0)
        self.threshold = threshold
        super().__init__()

    def _compare(self, previous: np.ndarray, current: np.ndarray) -> float:
        return float(np.count_nonzero(previous != current))

    @property
    def should_stop(self) -> bool:
        if not self._history or self._last is None:
            return False
        n = len(self._last)
        return n - self._history[-1] >= n * (1.0 - self.threshold)

    def _evidence(self) -> dict[str, Any]:
        n = None if self._last is None else len(self._last)
        changed = int(self._history[-1]) if self._history else None
        return {
            "n_changed": changed,
            "n_items": n,
            "changed_fraction": None if changed is None or n is None else changed / n,
            "threshold": float(self.threshold),
        }


class DeltaFScore(_ConsecutivePredictions):
    """Stop when the predicted change of F-measure stays below a threshold over a window.

    Predicted change of F (Altschuler and Bloodgood, ICSC 2019): at each update the
    F-score of the previous model's stop-set predictions measured against the current
    model's (:func:`delta_f`, positive class ``positive_label``) gives
    :math:`\\Delta F`; the criterion says stop when each of the last ``window_size``
    values is below ``threshold``. Made for binary tasks; with more classes it follows
    the one class ``positive_label`` against the rest. The defaults are small-text's.

    Differs from small-text (1.4.1) where neither model predicts the positive class:
    :math:`\\Delta F` is 0 here (the predictions agree) and NaN there.

    ``history`` holds every :math:`\\Delta F` (one per update after the first).

    Parameters
    ----------
    window_size : int, default 3
        How many consecutive values must all be below ``threshold`` (>= 1).
    threshold : float, default 0.05
        In [0, 1].
    positive_label : int, default 1
        The class whose F-score is followed.

    Examples
    --------
    >>> from aalearn.stopping import DeltaFScore
    >>> crit = DeltaFScore(window_size=1, threshold=0.2)
    >>> [crit.update(predictions=p) for p in ([1, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0])]
    [False, False, True]
    >>> [round(v, 4) for v in crit.history]
    [0.3333, 0.0]
    """

    history_bounds: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(
        self, *, window_size: int = 3, threshold: float = 0.05, positive_label: int = 1
    ) -> None:
        check_int(window_size, "window_size", minimum=1)
        check_number(threshold, "threshold", minimum=0.0, maximum=1.0)
        check_int(positive_label, "positive_label", minimum=0)
        self.window_size = window_size
        self.threshold = threshold
        self.positive_label = positive_label
        super().__init__()

    def _compare(self, previous: np.ndarray, current: np.ndarray) -> float:
        return delta_f(previous, current, positive_label=self.positive_label)

    @property
    def should_stop(self) -> bool:
        window = self._history[-int(self.window_size) :]
        return len(window) >= self.window_size and all(v < self.threshold for v in window)

    def _evidence(self) -> dict[str, Any]:
        return {
            "window": self._history[-int(self.window_size) :],
            "window_size": int(self.window_size),
            "threshold": float(self.threshold),
        }

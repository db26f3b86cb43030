"""A criterion on the model's uncertainty about the stop set (or the unlabeled pool)."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Optional

import numpy as np
import torch

from aalearn._validation import check_number
from aalearn.functional import entropy
from aalearn.stopping._base import ArrayLike, StoppingCriterion, check_probabilities

__all__ = ["OverallUncertainty", "normalized_entropy"]


def normalized_entropy(probabilities: ArrayLike) -> np.ndarray:
    r"""Entropy of each row of class probabilities divided by its maximum, :math:`\log C`.

    Rows are rescaled to sum to exactly 1 first (as :func:`scipy.stats.entropy` does).

    Returns
    -------
    numpy.ndarray
        Shape ``(N,)``, ``float64``, in [0, 1]: 0 for a one-hot row, 1 for a uniform one.

    Examples
    --------
    >>> from aalearn.stopping import normalized_entropy
    >>> normalized_entropy([[0.5, 0.5], [1.0, 0.0]]).tolist()
    [1.0, 0.0]
    >>> normalized_entropy([[0.25, 0.25, 0.25, 0.25]]).tolist()
    [1.0]
    """
    proba = check_probabilities(probabilities)
    proba /= proba.sum(axis=1, keepdims=True)
    return entropy(torch.from_numpy(proba)).numpy() / math.log(proba.shape[1])


class OverallUncertainty(StoppingCriterion):
    """Stop when the mean normalized entropy of the predictions falls below a threshold.

    Overall uncertainty (Zhu, Wang and Hovy, COLING 2008): stop when the model's
    average uncertainty over the unlabeled examples is low. The uncertainty of an item
    is its predictive entropy divided by :math:`\\log C` (:func:`normalized_entropy`);
    the criterion says stop when the mean over the given items is strictly below
    ``threshold``. As in small-text, the mean (not the maximum) and the default 0.05.

    Feed it ``probabilities`` on the remaining unlabeled pool for the paper's rule, or
    on a fixed stop set; unlike the other criteria it accepts a set whose size changes.

    ``history`` holds the mean normalized entropy of every update.

    Parameters
    ----------
    threshold : float, default 0.05
        In [0, 1).

    Examples
    --------
    >>> import numpy as np
    >>> from aalearn.stopping import OverallUncertainty
    >>> crit = OverallUncertainty(threshold=0.1)
    >>> crit.update(probabilities=np.array([[0.5, 0.5], [0.9, 0.1]]))
    False
    >>> crit.update(probabilities=np.array([[0.99, 0.01], [1.0, 0.0]]))
    True
    >>> round(crit.evidence["mean_uncertainty"], 4)
    0.0404
    """

    requires: ClassVar[str] = "probabilities"
    history_bounds: ClassVar[tuple[float, float]] = (0.0, 1.0 + 1e-9)

    def __init__(self, *, threshold: float = 0.05) -> None:
        check_number(threshold, "threshold", minimum=0.0, maximum=1.0)
        if threshold == 1.0:
            raise ValueError(f"Expected argument `threshold` to be < 1.0, but got {threshold}.")
        self.threshold = threshold
        super().__init__()

    def _update(
        self, preds: Optional[np.ndarray], proba: Optional[np.ndarray], n_labeled: Optional[int]
    ) -> None:
        assert proba is not None  # guaranteed by update()
        self._history.append(float(normalized_entropy(proba).mean()))

    @property
    def should_stop(self) -> bool:
        return bool(self._history) and self._history[-1] < self.threshold

    def _evidence(self) -> dict[str, Any]:
        return {
            "mean_uncertainty": self._history[-1] if self._history else None,
            "threshold": float(self.threshold),
        }

"""Criteria on the loop's own counts: cycles run and labels bought."""

from __future__ import annotations

from typing import Any, ClassVar, Optional

import numpy as np

from aalearn._validation import check_int
from aalearn.stopping._base import StoppingCriterion

__all__ = ["MaxIterations", "MaxLabeled"]


class MaxIterations(StoppingCriterion):
    """Stop after a fixed number of updates (cycles).

    The ``max_iterations``-th update and every later one answer ``True``, as
    small-text's ``MaxIterations``. It reads none of the inputs.

    Parameters
    ----------
    max_iterations : int
        >= 1.

    Examples
    --------
    >>> from aalearn.stopping import MaxIterations
    >>> crit = MaxIterations(max_iterations=3)
    >>> [crit.update() for _ in range(4)]
    [False, False, True, True]
    """

    def __init__(self, *, max_iterations: int) -> None:
        check_int(max_iterations, "max_iterations", minimum=1)
        self.max_iterations = max_iterations
        super().__init__()

    @property
    def should_stop(self) -> bool:
        return self._n_updates >= self.max_iterations

    def _evidence(self) -> dict[str, Any]:
        return {"max_iterations": int(self.max_iterations)}


class MaxLabeled(StoppingCriterion):
    """Stop once the pool holds at least ``max_labeled`` labels: the labeling budget.

    Like baal's ``LabellingBudgetStoppingCriterion``, but on the total count
    (``pool.n_labeled``) rather than the labels bought since the criterion was built.

    ``history`` holds ``n_labeled`` of every update.

    Parameters
    ----------
    max_labeled : int
        >= 0.

    Examples
    --------
    >>> from aalearn.stopping import MaxLabeled
    >>> crit = MaxLabeled(max_labeled=300)
    >>> crit.update(n_labeled=200), crit.update(n_labeled=300)
    (False, True)
    """

    requires: ClassVar[str] = "n_labeled"
    history_bounds: ClassVar[tuple[float, float]] = (0.0, np.inf)

    def __init__(self, *, max_labeled: int) -> None:
        check_int(max_labeled, "max_labeled", minimum=0)
        self.max_labeled = max_labeled
        super().__init__()

    def _update(
        self, preds: Optional[np.ndarray], proba: Optional[np.ndarray], n_labeled: Optional[int]
    ) -> None:
        assert n_labeled is not None  # guaranteed by update()
        self._history.append(float(n_labeled))

    @property
    def should_stop(self) -> bool:
        return bool(self._history) and self._history[-1] >= self.max_labeled

    def _evidence(self) -> dict[str, Any]:
        return {
            "n_labeled": int(self._history[-1]) if self._history else None,
            "max_labeled": int(self.max_labeled),
        }

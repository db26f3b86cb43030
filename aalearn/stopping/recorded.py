"""Replay stopping criteria over a recorded learning curve: when would each have stopped?"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np
from torch import Tensor

from aalearn.stopping._base import ArrayLike, StoppingCriterion

__all__ = ["replay"]


def _length(value: Optional[Sequence[Any]], name: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray, Tensor)):
        raise TypeError(
            f"Expected argument `{name}` to be a sequence with one entry per cycle, but got "
            f"{type(value).__name__}."
        )
    return len(value)


def replay(
    criteria: Mapping[str, StoppingCriterion],
    *,
    predictions: Optional[Sequence[ArrayLike]] = None,
    probabilities: Optional[Sequence[ArrayLike]] = None,
    n_labeled: Optional[Sequence[int]] = None,
    metric: Optional[Sequence[float]] = None,
) -> dict[str, dict[str, Any]]:
    """Feed a recorded run, cycle by cycle, to fresh copies of ``criteria``.

    Each criterion is rebuilt from its parameters (the objects given are not
    changed) and updated once per recorded cycle; the result says at which cycle it
    first said stop, and, when ``metric`` (for instance the test accuracy of each
    cycle's model) is given, what the metric was there and how much was *left on the
    table*: the metric of the last recorded cycle minus the metric at the stop.

    Parameters
    ----------
    criteria : mapping of str to StoppingCriterion
        Named criteria (their configuration is used, not their state).
    predictions, probabilities : sequence of arrays, optional
        One entry per cycle, on the same stop set, as :meth:`StoppingCriterion.update`
        takes them.
    n_labeled : sequence of int, optional
        The labeled count of each cycle.
    metric : sequence of float, optional
        A quality measure of each cycle's model (higher is better).

    Returns
    -------
    dict
        Per name: ``cycle`` (0-based index of the first cycle that said stop, or
        ``None``), ``n_labeled`` and ``metric`` at that cycle (``None`` if unknown or
        never stopped), ``left_on_table`` (last recorded metric minus the metric at
        the stop), ``labels_saved`` (last recorded ``n_labeled`` minus the one at the
        stop) and ``evidence`` (the criterion's evidence at the stop, or at the end).

    Examples
    --------
    >>> from aalearn.stopping import ClassificationChange, MaxIterations, replay
    >>> preds = [[0, 1, 1, 0], [0, 1, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]]
    >>> out = replay({"change": ClassificationChange(), "three": MaxIterations(max_iterations=3)},
    ...              predictions=preds, n_labeled=[10, 20, 30, 40], metric=[0.5, 0.7, 0.8, 0.85])
    >>> out["change"]["cycle"], out["change"]["n_labeled"], round(out["change"]["left_on_table"], 4)
    (2, 30, 0.05)
    >>> out["three"]["labels_saved"]
    10
    """
    if not isinstance(criteria, Mapping) or not all(
        isinstance(c, StoppingCriterion) for c in criteria.values()
    ):
        raise TypeError(
            "Expected argument `criteria` to be a mapping of names to StoppingCriterion objects."
        )
    lengths = {
        name: n
        for name, n in (
            ("predictions", _length(predictions, "predictions")),
            ("probabilities", _length(probabilities, "probabilities")),
            ("n_labeled", _length(n_labeled, "n_labeled")),
            ("metric", _length(metric, "metric")),
        )
        if n is not None
    }
    if len(set(lengths.values())) > 1:
        raise ValueError(f"Expected one entry per cycle in every argument, but got {lengths}.")
    n_cycles = next(iter(lengths.values()), 0)
    fresh = {name: type(c)(**c.get_params()) for name, c in criteria.items()}
    first: dict[str, Optional[int]] = dict.fromkeys(fresh)
    for t in range(n_cycles):
        preds = None if predictions is None else predictions[t]
        proba = None if probabilities is None else probabilities[t]
        count = None if n_labeled is None else n_labeled[t]
        for name, crit in fresh.items():
            if first[name] is None and crit.update(
                predictions=preds, probabilities=proba, n_labeled=count
            ):
                first[name] = t  # not updated any more: its evidence stays that of the stop
    values = None if metric is None else [float(m) for m in metric]
    counts = None if n_labeled is None else [int(n) for n in n_labeled]
    out: dict[str, dict[str, Any]] = {}
    for name, crit in fresh.items():
        t_stop = first[name]
        row: dict[str, Any] = dict.fromkeys(
            ("n_labeled", "metric", "left_on_table", "labels_saved")
        )
        if t_stop is not None and values is not None:
            row["metric"], row["left_on_table"] = values[t_stop], values[-1] - values[t_stop]
        if t_stop is not None and counts is not None:
            row["n_labeled"], row["labels_saved"] = counts[t_stop], counts[-1] - counts[t_stop]
        out[name] = {"cycle": t_stop, **row, "evidence": crit.evidence}
    return out

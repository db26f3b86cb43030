"""The learning curve of a :class:`~aalearn.History` (matplotlib, imported only here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import numpy as np

if TYPE_CHECKING:
    from aalearn.history import History

__all__ = ["plot_history"]


def plot_history(
    history: History, metric: str, *, ax: Any = None, label: Optional[str] = None, **kwargs: Any
) -> Any:
    """``metric`` against the labeled count, one line labeled with the method(s)."""
    if not isinstance(metric, str):
        raise TypeError(f"Expected argument `metric` to be a str, but got {type(metric).__name__}.")
    if label is not None and not isinstance(label, str):
        raise TypeError(f"Expected argument `label` to be a str, but got {type(label).__name__}.")
    if metric not in history.metric_names:
        raise ValueError(
            f"Expected argument `metric` to be a recorded metric {history.metric_names}, but "
            f"got {metric!r}."
        )
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            'History.plot needs matplotlib: pip install "aalearn[plot]" (or matplotlib).'
        ) from err
    cols = history.columns()
    keep = ~np.isnan(cols[metric])
    methods = list(dict.fromkeys(cols["method"][keep].tolist()))
    new_figure = ax is None
    if new_figure:
        _, ax = plt.subplots(figsize=(6, 4))
    kwargs.setdefault("marker", "o")
    ax.plot(
        cols["n_labeled"][keep],
        cols[metric][keep],
        label=label if label is not None else ", ".join(methods),
        **kwargs,
    )
    ax.set_xlabel("labeled items")
    ax.set_ylabel(metric)
    if new_figure:
        ax.set_title(f"{metric} by labeled items")
    ax.legend()
    return ax

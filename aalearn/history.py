"""What happened so far: :class:`History`, one record per active learning cycle.

A cycle's record (:class:`Cycle`) holds the pool's labeled count and round when the
model was evaluated and the selection made, the method that selected, the selection's
wall time, a summary of the picked items' scores (:class:`ScoreSummary`) and the
user's metrics. :meth:`History.select` runs a sampler's ``select`` and records all of
it in one call; :meth:`History.record` records what a loop measured itself.

A history is saved *in the pool's file*, with ``pool.save(path, history=history)``,
and restored with ``pool.load(path, history=history)``: one archive, written
atomically in one step, so the pool and its history can never disagree after a crash
(two files could: the pool renamed into place, the history not yet). The history is a
member of the archive holding its :meth:`History.state_dict` as UTF-8 JSON text (no
pickle; :func:`json.loads` executes no code), checked all of it before anything is
taken. A pool file saved without a history loads as before; a file saved with one
needs an aalearn that knows histories.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from aalearn._history_state import (
    COLUMNS,
    STATE_VERSION,
    Cycle,
    ScoreSummary,
    check_metrics,
    count_indices,
    cycles_from_state,
)
from aalearn._validation import check_number

if TYPE_CHECKING:
    from aalearn.pool import ActivePool

__all__ = ["COLUMNS", "Cycle", "History", "ScoreSummary", "check_history"]


class History:
    """Records each active learning cycle: labeled count, method, time, scores, metrics.

    Record a cycle after evaluating the model and before labeling the picks, either
    with :meth:`select` (runs ``sampler.select``, times it, scores the picks when the
    sampler has scores) or with :meth:`record` (what you measured yourself). Read the
    cycles back as :class:`Cycle` records (``history.cycles``, ``history[i]``) or as
    NumPy columns (:meth:`columns`); :meth:`plot` draws the learning curve. Save it
    with the pool: ``pool.save(path, history=history)`` (see :mod:`aalearn.history`).

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from aalearn import ActivePool, History, RandomSampler
    >>> pool = ActivePool(TensorDataset(torch.randn(20, 2), torch.zeros(20, dtype=torch.long)))
    >>> pool.label(pool.random_unlabeled(4, random_state=0))
    >>> history = History()
    >>> picked = history.select(RandomSampler(), None, pool, budget=3, metrics={"accuracy": 0.5})
    >>> pool.label(picked)
    >>> history.record(pool, method="final evaluation", metrics={"accuracy": 0.75})
    >>> history
    History(2 cycles, methods=['RandomSampler()', 'final evaluation'], metrics=['accuracy'])
    >>> history[0].n_labeled, history[0].n_picked, history[0].round
    (4, 3, 1)
    >>> history.columns()["accuracy"].tolist(), history.columns()["n_labeled"].tolist()
    ([0.5, 0.75], [4, 7])
    """

    def __init__(self) -> None:
        self._cycles: list[Cycle] = []

    # ------------------------------------------------------------------ reading
    @property
    def cycles(self) -> list[Cycle]:
        """The records, oldest first (a new list; the records are frozen)."""
        return list(self._cycles)

    def __len__(self) -> int:
        return len(self._cycles)

    def __iter__(self) -> Iterator[Cycle]:
        return iter(list(self._cycles))

    def __getitem__(self, index: int) -> Cycle:
        return self._cycles[index]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, History) and self._cycles == other._cycles

    __hash__ = None  # type: ignore[assignment]  # mutable

    @property
    def metric_names(self) -> list[str]:
        """Every metric name recorded, in the order first seen."""
        return list(dict.fromkeys(name for c in self._cycles for name in c.metrics))

    def columns(self) -> dict[str, np.ndarray]:
        """The records as columns: the names of :data:`COLUMNS`, then one per metric.

        ``round``, ``n_labeled``, ``n_picked``, ``score_count`` and ``score_nonfinite``
        are ``int64`` (the score counts are 0 where no scores were recorded),
        ``method`` is a str array, the rest ``float64`` with NaN where a value is
        missing (not timed, no scores, a metric not recorded that cycle).
        ``pandas.DataFrame(history.columns())`` is a table of the history.
        """
        cs = self._cycles

        def floats(values: list[Optional[float]]) -> np.ndarray:
            return np.array([math.nan if v is None else v for v in values], dtype=np.float64)

        out = {
            "round": np.array([c.round for c in cs], dtype=np.int64),
            "n_labeled": np.array([c.n_labeled for c in cs], dtype=np.int64),
            "n_picked": np.array([c.n_picked for c in cs], dtype=np.int64),
            "method": np.array([c.method for c in cs], dtype=str),
            "seconds": floats([c.seconds for c in cs]),
            "score_count": np.array([c.scores.count if c.scores else 0 for c in cs], np.int64),
            "score_nonfinite": np.array(
                [c.scores.nonfinite if c.scores else 0 for c in cs], dtype=np.int64
            ),
        }
        for stat in ("min", "mean", "max"):
            out[f"score_{stat}"] = floats([getattr(c.scores, stat, None) for c in cs])
        for name in self.metric_names:
            out[name] = floats([c.metrics.get(name) for c in cs])
        return out

    def __repr__(self) -> str:
        methods = list(dict.fromkeys(c.method for c in self._cycles))
        return (
            f"History({len(self._cycles)} cycles, methods={methods}, metrics={self.metric_names})"
        )

    # ---------------------------------------------------------------- recording
    def record(
        self,
        pool: ActivePool,
        *,
        method: Any,
        picked: Any = None,
        seconds: Optional[float] = None,
        scores: Any = None,
        metrics: Optional[Mapping[str, float]] = None,
    ) -> None:
        """Record one cycle; everything is checked before the history changes.

        Parameters
        ----------
        pool : aalearn.ActivePool
            Gives the labeled count and the round, as they are now: record before
            ``pool.label(picked)``.
        method : str or sampler
            What selected: a str, or a sampler (recorded as its ``repr``).
        picked : array-like of int, optional
            The picked dataset indices (only their number is kept); ``None``: nothing
            was picked (e.g. a final evaluation).
        seconds : float, optional
            The selection's wall time, ``>= 0``.
        scores : array-like or tensor of float, optional
            The picked items' scores, one per picked item, summarised as a
            :class:`ScoreSummary`.
        metrics : mapping of str to float, optional
            Finite real numbers, e.g. ``{"accuracy": 0.91}``.
        """
        from aalearn.pool import ActivePool  # here: aalearn.pool imports this module

        if not isinstance(pool, ActivePool):
            raise TypeError(
                f"Expected argument `pool` to be an aalearn.ActivePool, but got "
                f"{type(pool).__name__}."
            )
        n_picked = 0 if picked is None else count_indices(picked)
        summary = None if scores is None else ScoreSummary.of(scores)
        if summary is not None and summary.count + summary.nonfinite != n_picked:
            raise ValueError(
                f"Expected argument `scores` to hold one score per picked item ({n_picked}), "
                f"but got {summary.count + summary.nonfinite}."
            )
        self._cycles.append(
            Cycle(
                round=pool.round,
                n_labeled=pool.n_labeled,
                n_picked=n_picked,
                method=method if isinstance(method, str) else repr(method),
                seconds=None if seconds is None else check_number(seconds, "seconds", minimum=0),
                scores=summary,
                metrics=MappingProxyType(check_metrics(metrics)),
            )
        )

    def select(
        self,
        sampler: Any,
        model: Any,
        pool: ActivePool,
        budget: int,
        *,
        metrics: Optional[Mapping[str, float]] = None,
    ) -> np.ndarray:
        """``sampler.select(model, pool, budget)``, timed and recorded; returns the picks.

        ``seconds`` is the wall time of ``select`` alone. When the sampler has scores
        (``sampler.has_score``), the picked items are then scored with
        ``sampler.score(model, pool, picked)`` (one more pass over ``budget`` items, not
        timed) and summarised. ``metrics`` is checked before ``select`` runs; if
        ``select`` raises, nothing is recorded.
        """
        check_metrics(metrics)
        if not callable(getattr(sampler, "select", None)):
            raise TypeError(
                f"Expected argument `sampler` to have a select method, but got "
                f"{type(sampler).__name__}."
            )
        start = time.perf_counter()
        picked = sampler.select(model, pool, budget)
        seconds = time.perf_counter() - start
        scores = None
        if getattr(sampler, "has_score", False) is True:
            scores = sampler.score(model, pool, picked)
        self.record(
            pool, method=sampler, picked=picked, seconds=seconds, scores=scores, metrics=metrics
        )
        return picked

    def clear(self) -> None:
        """Forget every record."""
        self._cycles = []

    # -------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """The records as JSON-able values (``json.dumps`` and ``torch.save`` take it).

        Floats are kept exactly (JSON writes the shortest text that reads back the same
        float).

        Examples
        --------
        >>> import json
        >>> from aalearn import ActivePool, History
        >>> history = History()
        >>> history.record(ActivePool(None, n_items=5), method="random",
        ...                metrics={"accuracy": 0.1 + 0.2})
        >>> restored = History()
        >>> restored.load_state_dict(json.loads(json.dumps(history.state_dict())))
        >>> restored == history, restored[0].metrics["accuracy"]
        (True, 0.30000000000000004)
        """
        cycles = []
        for c in self._cycles:
            row = {f.name: getattr(c, f.name) for f in dataclasses.fields(c)}
            row["scores"] = None if c.scores is None else dataclasses.asdict(c.scores)
            row["metrics"] = dict(c.metrics)
            cycles.append(row)
        return {"version": STATE_VERSION, "cycles": cycles}

    def load_state_dict(self, state: Any) -> None:
        """Restore a state from :meth:`state_dict`; checks all of it before changing anything."""
        self._cycles = cycles_from_state(state)

    def plot(
        self, metric: str, *, ax: Any = None, label: Optional[str] = None, **kwargs: Any
    ) -> Any:
        """Draw the learning curve: ``metric`` against the labeled count; returns the Axes.

        One line through the cycles that recorded ``metric``, labeled with the method
        (the methods, in order, if the loop changed method) or ``label``. ``ax``: the
        matplotlib Axes to draw on (default: a new figure, with a title); call it once
        per history on the same ``ax`` to compare methods. ``kwargs`` go to
        ``ax.plot``. Needs matplotlib (``pip install "aalearn[plot]"``), imported only
        here; without it, an ``ImportError`` that says so.
        """
        from aalearn._history_plot import plot_history

        return plot_history(self, metric, ax=ax, label=label, **kwargs)


def check_history(history: Any) -> Optional[History]:
    """``history`` if it is a :class:`History` or ``None``; else ``TypeError``."""
    if history is not None and not isinstance(history, History):
        raise TypeError(
            f"Expected argument `history` to be an aalearn.History or None, but got "
            f"{type(history).__name__}."
        )
    return history

"""The base class of the stopping criteria: inputs, state, evidence, repr.

A criterion is a small configuration object (keyword arguments stored unchanged and
checked when it is built) plus a small state that :meth:`StoppingCriterion.update`
advances once per cycle. Every criterion keeps the same state layout, so one
``state_dict``/``load_state_dict`` pair serves them all: the number of updates, the
history of the criterion's per-update statistic and, for the criteria that compare
consecutive predictions, the last predictions.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar, Optional, Union

import numpy as np
import torch

from aalearn._validation import check_int

__all__ = ["ArrayLike", "StoppingCriterion"]

ArrayLike = Union[np.ndarray, torch.Tensor]
_STATE_VERSION = 1
_STATE_KEYS = ("version", "criterion", "params", "n_updates", "history", "last_predictions")
#: How far a row of ``probabilities`` may sum away from 1 (float16 softmax outputs pass).
PROBABILITY_SUM_ATOL = 1e-3


def _as_numpy(value: Any, name: str) -> np.ndarray:
    """A NumPy view or copy of an array, a tensor (any device) or a nested sequence."""
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.is_floating_point():
            value = value.to(torch.float64)
        return value.cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple)):
        return np.asarray(value)
    raise TypeError(
        f"Expected argument `{name}` to be a numpy.ndarray or a torch.Tensor, but got "
        f"{type(value).__name__}."
    )


def check_predictions(value: Any, name: str = "predictions") -> np.ndarray:
    """``value`` as a 1-D ``int64`` array of class indices (>= 0, at least one item)."""
    arr = _as_numpy(value, name)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        if arr.size == 0 and arr.dtype == np.float64:  # np.asarray([]) is float
            arr = arr.astype(np.int64)
        else:
            raise TypeError(
                f"Expected argument `{name}` to hold integer class indices, but got dtype "
                f"{arr.dtype}."
            )
    if arr.ndim != 1:
        raise ValueError(
            f"Expected argument `{name}` to be 1-D (one class index per stop-set item), but "
            f"got shape {tuple(arr.shape)}."
        )
    if arr.size == 0:
        raise ValueError(f"Expected argument `{name}` to hold at least one item, but got 0.")
    if arr.min() < 0:
        raise ValueError(
            f"Expected argument `{name}` to hold class indices >= 0, but got {int(arr.min())}."
        )
    return arr.astype(np.int64, copy=True)


def check_probabilities(value: Any, name: str = "probabilities") -> np.ndarray:
    """``value`` as a ``float64`` array of shape ``(N, C)``, rows on the simplex, ``C >= 2``."""
    arr = _as_numpy(value, name)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(
            f"Expected argument `{name}` to be a floating point array of class probabilities, "
            f"but got dtype {arr.dtype}."
        )
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 2:
        raise ValueError(
            f"Expected argument `{name}` to have shape (N, C) with N >= 1 and C >= 2, but got "
            f"shape {tuple(arr.shape)}."
        )
    arr = arr.astype(np.float64, copy=True)
    if not np.isfinite(arr).all():
        raise ValueError(f"Expected argument `{name}` to be finite, but it holds NaN or inf.")
    if arr.min() < 0:
        raise ValueError(
            f"Expected argument `{name}` to be probabilities >= 0, but got {arr.min()} "
            "(logits? apply a softmax first)."
        )
    sums = arr.sum(axis=1)
    worst = float(np.abs(sums - 1.0).max())
    if worst > PROBABILITY_SUM_ATOL:
        raise ValueError(
            f"Expected each row of argument `{name}` to sum to 1, but a row sums to "
            f"{sums[np.argmax(np.abs(sums - 1.0))]}."
        )
    return arr


def _plain(value: Any) -> Any:
    """A NumPy or torch scalar as the Python number it holds (JSON takes only those)."""
    if isinstance(value, (np.generic, torch.Tensor)):
        return value.item()
    return value


class StoppingCriterion:
    """Base class of the stopping criteria of :mod:`aalearn.stopping`.

    A subclass stores its keyword arguments unchanged (after checking them) and says
    what it reads with ``requires`` (``"predictions"``, ``"probabilities"``,
    ``"n_labeled"`` or ``"nothing"``). :meth:`update` checks every input it is given
    before any state changes, then calls the subclass's ``_update``; the answer
    (:attr:`should_stop`) and :attr:`evidence` are computed from the state alone, so a
    criterion restored with :meth:`load_state_dict` answers as the one it was saved
    from.

    Examples
    --------
    >>> from aalearn.stopping import MaxIterations
    >>> crit = MaxIterations(max_iterations=2)
    >>> crit.update(), crit.update()
    (False, True)
    >>> crit.evidence["n_updates"], crit.should_stop
    (2, True)
    """

    #: What :meth:`update` needs: "predictions", "probabilities", "n_labeled" or "nothing".
    requires: ClassVar[str] = "nothing"
    #: Whether the criterion compares each update's predictions with the previous ones.
    compares_predictions: ClassVar[bool] = False
    #: The range of the per-update statistic kept in ``history`` (checked on load).
    history_bounds: ClassVar[tuple[float, float]] = (-math.inf, math.inf)

    def __init__(self) -> None:
        self.reset()

    # ------------------------------------------------------------ configuration
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self"]

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, as stored."""
        return {name: getattr(self, name) for name in self._param_names()}

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        shown = []
        for name, value in self.get_params().items():
            default = sig.parameters[name].default
            if not (type(value) is type(default) and value == default):
                shown.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    # -------------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget every update (the configuration stays)."""
        self._n_updates = 0
        self._history: list[float] = []
        self._last: Optional[np.ndarray] = None

    @property
    def n_updates(self) -> int:
        """How many times :meth:`update` has run since the criterion was built or reset."""
        return self._n_updates

    @property
    def history(self) -> list[float]:
        """The per-update statistic, oldest first (a copy); what it is depends on the class."""
        return list(self._history)

    def update(
        self,
        *,
        predictions: Optional[ArrayLike] = None,
        probabilities: Optional[ArrayLike] = None,
        n_labeled: Optional[int] = None,
    ) -> bool:
        """Record one cycle and return :attr:`should_stop`.

        Every criterion takes the same keywords, so one call can feed a list of them;
        each reads what it needs and ignores the rest (everything given is checked).

        Parameters
        ----------
        predictions : array or tensor of int, shape (N,), optional
            The model's predicted class of each item of a fixed stop set.
        probabilities : array or tensor of float, shape (N, C), optional
            The model's class probabilities on the stop set (rows sum to 1). A criterion
            that needs predictions and gets only probabilities takes their argmax.
        n_labeled : int, optional
            The number of labeled items now (``pool.n_labeled``).

        Raises
        ------
        TypeError
            If an input has the wrong type, or the criterion's input is missing.
        ValueError
            If an input has a wrong shape or value; the state is then unchanged.
        """
        preds = None if predictions is None else check_predictions(predictions)
        proba = None if probabilities is None else check_probabilities(probabilities)
        count = None if n_labeled is None else check_int(n_labeled, "n_labeled", minimum=0)
        if preds is not None and proba is not None and len(preds) != len(proba):
            raise ValueError(
                f"Expected arguments `predictions` and `probabilities` to cover the same items, "
                f"but got {len(preds)} predictions and {len(proba)} rows of probabilities."
            )
        name = type(self).__name__
        if self.requires == "predictions" and preds is None:
            if proba is None:
                raise TypeError(f"{name}.update() needs `predictions` or `probabilities`.")
            preds = proba.argmax(axis=1).astype(np.int64)
        if self.requires == "probabilities" and proba is None:
            raise TypeError(f"{name}.update() needs `probabilities`.")
        if self.requires == "n_labeled" and count is None:
            raise TypeError(f"{name}.update() needs `n_labeled`.")
        if self.compares_predictions and self._last is not None and preds is not None:
            if len(preds) != len(self._last):
                raise ValueError(
                    f"Expected argument `predictions` to cover the {len(self._last)} items of "
                    f"the stop set of the earlier updates, but got {len(preds)}."
                )
        self._update(preds, proba, count)
        self._n_updates += 1
        return self.should_stop

    def _update(
        self, preds: Optional[np.ndarray], proba: Optional[np.ndarray], n_labeled: Optional[int]
    ) -> None:
        """Advance the state with checked inputs (must not raise)."""
        if self.compares_predictions:
            assert preds is not None  # guaranteed by update()
            if self._last is not None:
                self._history.append(float(self._compare(self._last, preds)))
            self._last = preds

    def _compare(self, previous: np.ndarray, current: np.ndarray) -> float:
        raise NotImplementedError

    @property
    def should_stop(self) -> bool:
        """Whether the criterion says to stop, after the latest update (``False`` before any)."""
        raise NotImplementedError

    @property
    def evidence(self) -> dict[str, Any]:
        """What :attr:`should_stop` rests on, as JSON-able values.

        Always ``should_stop``, ``n_updates`` and ``history`` (the per-update statistic,
        oldest first), plus the thresholds and the values compared with them.
        """
        out: dict[str, Any] = {
            "should_stop": self.should_stop,
            "n_updates": self._n_updates,
            "history": self.history,
        }
        out.update(self._evidence())
        return out

    def _evidence(self) -> dict[str, Any]:
        return {}

    def _expected_history_length(self, n_updates: int) -> int:
        if self.compares_predictions:
            return max(n_updates - 1, 0)
        return n_updates if self.requires in ("probabilities", "n_labeled") else 0

    def state_dict(self) -> dict[str, Any]:
        """The state as JSON-able values (``json.dumps`` and ``torch.save`` both take it).

        Examples
        --------
        >>> import json
        >>> from aalearn.stopping import ClassificationChange
        >>> crit = ClassificationChange()
        >>> _ = crit.update(predictions=[0, 1, 1])
        >>> restored = ClassificationChange()
        >>> restored.load_state_dict(json.loads(json.dumps(crit.state_dict())))
        >>> restored.update(predictions=[0, 1, 1])
        True
        """
        return {
            "version": _STATE_VERSION,
            "criterion": type(self).__name__,
            "params": {k: _plain(v) for k, v in self.get_params().items()},
            "n_updates": self._n_updates,
            "history": list(self._history),
            "last_predictions": None if self._last is None else self._last.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`; checks everything before changing anything.

        The state must come from a criterion of the same class and parameters. Arrays
        may be lists, NumPy arrays or tensors.
        """
        if not isinstance(state, dict):
            raise TypeError(
                f"Expected argument `state` to be a dict, but got {type(state).__name__}."
            )
        missing = [k for k in _STATE_KEYS if k not in state]
        extra = sorted(set(state) - set(_STATE_KEYS))
        if missing or extra:
            raise ValueError(
                f"Expected argument `state` to have keys {list(_STATE_KEYS)}, but "
                f"{missing} are missing and {extra} unexpected."
            )
        version = check_int(state["version"], "state['version']")
        if version != _STATE_VERSION:
            raise ValueError(f"Unsupported state version {version}; expected {_STATE_VERSION}.")
        name = type(self).__name__
        if state["criterion"] != name or state["params"] != self.get_params():
            raise ValueError(
                f"The state is for {state['criterion']} with parameters {state['params']}, but "
                f"this criterion is {self!r} with parameters {self.get_params()}."
            )
        n_updates = check_int(state["n_updates"], "state['n_updates']", minimum=0)
        history = self._load_history(state["history"], n_updates)
        last = state["last_predictions"]
        if self.compares_predictions and n_updates > 0:
            if last is None:
                raise ValueError("Expected `state['last_predictions']` after an update.")
            last = check_predictions(last, "state['last_predictions']")
        elif last is not None:
            raise ValueError(f"Expected `state['last_predictions']` to be None, but got {last!r}.")
        self._n_updates, self._history, self._last = n_updates, history, last

    def _load_history(self, value: Any, n_updates: int) -> list[float]:
        arr = _as_numpy(value, "state['history']")
        if arr.size == 0:
            arr = arr.reshape(0).astype(np.float64)
        expected = self._expected_history_length(n_updates)
        if arr.ndim != 1 or len(arr) != expected:
            raise ValueError(
                f"Expected `state['history']` to hold {expected} values after {n_updates} "
                f"updates, but got shape {tuple(arr.shape)}."
            )
        if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"Expected `state['history']` to hold numbers, but got {arr.dtype}.")
        lo, hi = self.history_bounds
        values = [float(v) for v in arr]
        if not all(math.isfinite(v) and lo <= v <= hi for v in values):
            raise ValueError(
                f"Expected `state['history']` to hold finite values in [{lo}, {hi}], but got "
                f"{values}."
            )
        return values

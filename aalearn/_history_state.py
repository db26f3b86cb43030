"""What a valid :class:`~aalearn.History` record and state are, and how a pool file holds one.

The records (:class:`Cycle`, :class:`ScoreSummary`), the checks of what
:meth:`History.record <aalearn.History.record>` takes in and of a state loaded from a
checkpoint or a pool file (all of it, before anything is taken), and the archive member
that holds a history: its state as UTF-8 JSON text in a ``uint8`` array (no pickle;
:func:`json.loads` executes no code).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Optional

import numpy as np
import torch

from aalearn._persistence import HISTORY_MAX_BYTES
from aalearn._validation import check_int, check_number

__all__ = [
    "COLUMNS",
    "STATE_VERSION",
    "Cycle",
    "ScoreSummary",
    "check_metrics",
    "count_indices",
    "cycles_from_state",
    "decode",
    "encode",
]

STATE_VERSION = 1
#: The fixed columns of :meth:`History.columns`; a metric may not take one of these names.
COLUMNS = (
    "round", "n_labeled", "n_picked", "method", "seconds",
    "score_count", "score_nonfinite", "score_min", "score_mean", "score_max",
)  # fmt: skip
_INT64_MAX = int(np.iinfo(np.int64).max)
_STATS = ("min", "mean", "max")


@dataclasses.dataclass(frozen=True)
class ScoreSummary:
    """The picked items' scores in four numbers (plus how many were not finite).

    ``min``, ``mean`` and ``max`` are over the ``count`` finite scores (``None`` when
    there are none); ``nonfinite`` counts the NaN and infinite ones, left out.
    """

    count: int
    nonfinite: int
    min: Optional[float]
    mean: Optional[float]
    max: Optional[float]

    @classmethod
    def of(cls, scores: Any) -> ScoreSummary:
        """The summary of ``scores`` (1-D array-like or tensor of real numbers)."""
        if isinstance(scores, torch.Tensor):
            scores = scores.detach().to("cpu", torch.float64).numpy()
        arr = np.asarray(scores)
        if arr.dtype == bool or not (arr.size == 0 or np.issubdtype(arr.dtype, np.number)):
            raise TypeError(
                f"Expected argument `scores` to hold real numbers, but got dtype {arr.dtype}."
            )
        if arr.ndim != 1:
            raise ValueError(
                f"Expected argument `scores` to be 1-D (one score per picked item), but got "
                f"shape {arr.shape}."
            )
        arr = arr.astype(np.float64)
        finite = arr[np.isfinite(arr)]
        if finite.size == 0:
            return cls(0, int(arr.size), None, None, None)
        low, high = float(finite.min()), float(finite.max())
        with np.errstate(over="ignore"):  # a sum beyond float64: the clip below bounds it
            mean = float(np.clip(finite.mean(), low, high))  # rounding may leave [min, max]
        return cls(int(finite.size), int(arr.size - finite.size), low, mean, high)


@dataclasses.dataclass(frozen=True)
class Cycle:
    """One cycle of the loop, as :class:`History` records it.

    ``round`` and ``n_labeled`` are the pool's when the record was taken (the model
    was trained on those ``n_labeled`` items; the picks get labeled in round
    ``round``); ``seconds`` is the selection's wall time, ``None`` when not timed;
    ``scores`` is ``None`` when the method gives no scores; ``metrics`` is a read-only
    mapping.
    """

    round: int
    n_labeled: int
    n_picked: int
    method: str
    seconds: Optional[float]
    scores: Optional[ScoreSummary]
    metrics: Mapping[str, float]


def count_indices(picked: Any) -> int:
    if isinstance(picked, torch.Tensor):
        picked = picked.detach().cpu().numpy()
    arr = np.asarray(picked)
    if arr.ndim != 1:
        raise ValueError(
            f"Expected argument `picked` to be a 1-D sequence of dataset indices, but got "
            f"shape {arr.shape}."
        )
    if arr.size and (arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(
            f"Expected argument `picked` to hold integer dataset indices, but got dtype "
            f"{arr.dtype}."
        )
    return int(arr.size)


def check_metrics(metrics: Any, name: str = "metrics") -> dict[str, float]:
    """``metrics`` as a new dict of str to finite float (``None``: empty)."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise TypeError(
            f"Expected argument `{name}` to be a mapping of str to float, but got "
            f"{type(metrics).__name__}."
        )
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or not key:
            raise TypeError(
                f"Expected argument `{name}` to have non-empty str keys, but got {key!r}."
            )
        if key in COLUMNS:
            raise ValueError(
                f"Expected argument `{name}` not to use the column name {key!r}; the names "
                f"{list(COLUMNS)} are taken by the record itself."
            )
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        elif isinstance(value, np.ndarray) and value.ndim == 0:
            value = value[()]
        out[key] = check_number(value, f"{name}[{key!r}]")
    return out


# ------------------------------------------------------------- loading a state
def _field(row: Any, key: str, where: str) -> Any:
    if not isinstance(row, dict):
        raise TypeError(f"Expected {where} to be a dict, but got {type(row).__name__}.")
    if key not in row:
        raise ValueError(f"Expected {where} to have the key {key!r}, but it is missing.")
    return row[key]


def _keys(row: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    if set(row) != set(keys):
        raise ValueError(
            f"Expected {where} to have the keys {list(keys)}, but got {sorted(map(str, row))}."
        )


def _optional_number(value: Any, name: str) -> Optional[float]:
    return None if value is None else check_number(value, name)


def cycles_from_state(state: Any) -> list[Cycle]:
    """The cycles of a :meth:`History.state_dict`, all checked; ``TypeError``/``ValueError``."""
    version = _field(state, "version", "argument `state`")
    _keys(state, ("version", "cycles"), "argument `state`")
    if check_int(version, "state['version']") != STATE_VERSION:
        raise ValueError(f"Unsupported history version {version}; expected {STATE_VERSION}.")
    rows = state["cycles"]
    if not isinstance(rows, list):
        raise TypeError(f"Expected state['cycles'] to be a list, but got {type(rows).__name__}.")
    names = tuple(f.name for f in dataclasses.fields(Cycle))
    out = []
    for i, row in enumerate(rows):
        where = f"state['cycles'][{i}]"
        _field(row, "round", where)
        _keys(row, names, where)
        ints = {
            k: check_int(row[k], f"{where}['{k}']", minimum=0, maximum=_INT64_MAX)
            for k in ("round", "n_labeled", "n_picked")
        }
        if not isinstance(row["method"], str):
            raise TypeError(f"Expected {where}['method'] to be a str.")
        seconds = row["seconds"]
        seconds = (
            None if seconds is None else check_number(seconds, f"{where}['seconds']", minimum=0)
        )
        summary = row["scores"]
        if summary is not None:
            s = f"{where}['scores']"
            _field(summary, "count", s)
            _keys(summary, ("count", "nonfinite", "min", "mean", "max"), s)
            count, nonfinite = (
                check_int(summary[k], f"{s}['{k}']", minimum=0, maximum=ints["n_picked"])
                for k in ("count", "nonfinite")
            )
            low, mean, high = (_optional_number(summary[k], f"{s}['{k}']") for k in _STATS)
            if count + nonfinite != ints["n_picked"]:
                raise ValueError(
                    f"Expected {s} to count {ints['n_picked']} scores (one per picked item), "
                    f"but got {count} finite and {nonfinite} others."
                )
            if low is None or mean is None or high is None:
                if count or (low, mean, high) != (None, None, None):
                    raise ValueError(
                        f"Expected {s} to have min, mean and max exactly when count > 0, but "
                        f"got {summary}."
                    )
            elif not low <= mean <= high:
                raise ValueError(f"Expected {s} to have min <= mean <= max, but got {summary}.")
            summary = ScoreSummary(count, nonfinite, low, mean, high)
        metrics = MappingProxyType(check_metrics(row["metrics"], f"{where}['metrics']"))
        out.append(
            Cycle(**ints, method=row["method"], seconds=seconds, scores=summary, metrics=metrics)
        )
    return out


def encode(state: dict[str, Any]) -> np.ndarray:
    """A history's ``state_dict`` as UTF-8 JSON bytes in a ``uint8`` array (an archive member)."""
    text = json.dumps(state, allow_nan=False, separators=(",", ":"))
    data = text.encode("utf-8")
    if len(data) > HISTORY_MAX_BYTES:
        raise ValueError(
            f"The history takes {len(data)} bytes as JSON, more than a pool file holds "
            f"({HISTORY_MAX_BYTES}); save fewer cycles or metrics."
        )
    return np.frombuffer(data, dtype=np.uint8)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"the history holds {name}, which is not a finite number.")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("the history's JSON repeats a key in an object.")
    return out


def decode(member: Optional[np.ndarray]) -> list[Cycle]:
    """The cycles stored by :func:`encode` (``None``, a file without a history: none)."""
    if member is None:
        return []
    if member.dtype != np.uint8 or member.ndim != 1:
        raise ValueError(
            f"member 'history.npy' has dtype {member.dtype} and shape {member.shape}; a "
            "history is 1-D uint8 (JSON text)."
        )
    try:
        state = json.loads(
            member.tobytes().decode("utf-8"),
            parse_constant=_refuse_constant,
            object_pairs_hook=_no_duplicate_keys,
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"member 'history.npy' is not JSON text: {err}") from None
    return cycles_from_state(state)

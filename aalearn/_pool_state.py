"""What a valid :class:`~aalearn.ActivePool` state is, and the checks of what a pool takes in.

A state is what :meth:`ActivePool.state_dict <aalearn.ActivePool.state_dict>` returns:
six keys (:data:`STATE_KEYS`), three arrays of length ``N`` and three ints. A state from a
checkpoint or a file is checked here, all of it, before the pool takes any of it; so are
the dataset indices and oracle labels given to :meth:`~aalearn.ActivePool.label`.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

__all__ = [
    "MAX_ROUND",
    "STATE_KEYS",
    "STATE_VERSION",
    "UNLABELED",
    "check_indices",
    "check_labels",
    "check_state",
    "check_unlabeled_indices",
]

STATE_VERSION = 1
STATE_KEYS = ("version", "n_items", "labeled_round", "labels", "has_label", "round")
#: ``labeled_round`` of an item not labeled yet.
UNLABELED = -1
#: The largest round: rounds are stored as int64, and a pool at this round labels no more
#: (the next round would not fit, and its file would not load).
MAX_ROUND = int(np.iinfo(np.int64).max)


def check_state(state: Any, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The arrays and round of ``state`` for a pool of ``n`` items, after checking all of it.

    Returns fresh ``int64`` ``labeled_round`` and ``labels``, a bool ``has_label`` and
    the round; raises ``TypeError`` / ``ValueError`` naming the key otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> state = {"version": 1, "n_items": 3, "labeled_round": np.array([-1, 0, -1]),
    ...          "labels": np.array([-1, 5, -1]), "has_label": np.array([False, True, False]),
    ...          "round": 1}
    >>> rounds, labels, has, rnd = check_state(state, 3)
    >>> rounds.tolist(), labels.tolist(), rnd
    ([-1, 0, -1], [-1, 5, -1], 1)
    """
    if not isinstance(state, dict):
        raise TypeError(f"Expected argument `state` to be a dict, but got {type(state).__name__}.")
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise ValueError(f"Expected argument `state` to have keys {missing}, but they are missing.")
    extra = sorted(set(state) - set(STATE_KEYS))
    if extra:
        raise ValueError(f"Unexpected keys in argument `state`: {extra}.")
    version = _state_int(state, "version")
    if version != STATE_VERSION:
        raise ValueError(f"Unsupported pool state version {version}; expected {STATE_VERSION}.")
    n_items = _state_int(state, "n_items")
    if n_items != n:
        raise ValueError(f"The state is for a pool of {n_items} items, but this pool has {n}.")
    rounds = _state_array(state, "labeled_round", n, integer=True)
    labels = _state_array(state, "labels", n, integer=True)
    has = _state_array(state, "has_label", n, integer=False)
    rnd = _state_int(state, "round")
    _check_state_contents(rounds, labels, has, rnd)
    return rounds, labels, has, rnd


def _state_int(state: dict[str, Any], key: str) -> int:
    """``state[key]`` as an int: a Python/NumPy int or a 0-d integer array or tensor."""
    value = state[key]
    if isinstance(value, torch.Tensor):
        if value.dim() != 0:  # checked before anything is copied off the device
            raise TypeError(
                f"Expected state['{key}'] to be an integer, but got a tensor of shape "
                f"{tuple(value.shape)}."
            )
        value = _tensor_to_numpy(value, key)
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"Expected state['{key}'] to be an integer, but got {type(value).__name__} ({value!r})."
        )
    return int(value)


def _tensor_to_numpy(value: torch.Tensor, key: str) -> np.ndarray:
    """``value`` as a NumPy array on the CPU, or ``TypeError`` naming ``key``."""
    if value.layout != torch.strided:
        raise TypeError(
            f"Expected state['{key}'] to be a dense tensor, but got layout {value.layout}; "
            "call .to_dense() first."
        )
    if value.is_meta:
        raise TypeError(
            f"Expected state['{key}'] to be a tensor with data, but got a meta tensor "
            "(shape and dtype only)."
        )
    try:
        return value.detach().cpu().numpy()
    except (TypeError, RuntimeError) as err:  # bfloat16, float8, quantized, conj bit, ...
        raise TypeError(
            f"Expected state['{key}'] to have an integer or bool dtype, but got a tensor of "
            f"dtype {value.dtype} ({err})."
        ) from err


def _state_array(state: dict[str, Any], key: str, n: int, *, integer: bool) -> np.ndarray:
    """``state[key]`` as a fresh int64 (``integer``) or bool array of shape ``(n,)``."""
    value = state[key]
    if isinstance(value, torch.Tensor):
        if tuple(value.shape) != (n,):  # checked before anything is copied off the device
            raise ValueError(
                f"Expected state['{key}'] to have shape ({n},), but got {tuple(value.shape)}."
            )
        value = _tensor_to_numpy(value, key)
    if not isinstance(value, np.ndarray):
        raise TypeError(
            f"Expected state['{key}'] to be a NumPy array or a torch tensor, but got "
            f"{type(value).__name__}."
        )
    ok = (
        value.dtype != bool and np.issubdtype(value.dtype, np.integer)
        if integer
        else value.dtype == bool
    )
    if not ok:
        wanted = "an integer" if integer else "a bool"
        raise TypeError(
            f"Expected state['{key}'] to have {wanted} dtype, but got dtype {value.dtype}."
        )
    if value.shape != (n,):
        raise ValueError(f"Expected state['{key}'] to have shape ({n},), but got {value.shape}.")
    if integer and value.size and int(value.max()) > MAX_ROUND:
        # Checked in the stored dtype: a uint64 2**64-1 would wrap to -1 ("unlabeled").
        i = int(np.argmax(value))
        raise ValueError(
            f"Expected state['{key}'] to hold int64 values (at most {MAX_ROUND}), but item "
            f"{i} has {value[i]}."
        )
    return value.astype(np.int64 if integer else bool, copy=True)


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _check_state_contents(
    rounds: np.ndarray, labels: np.ndarray, has: np.ndarray, rnd: int
) -> None:
    """Raise ``ValueError`` unless the arrays form a state :meth:`ActivePool.label` can reach."""
    if rnd < 0:
        raise ValueError(f"Expected state['round'] to be >= 0, but got {rnd}.")
    if rnd > MAX_ROUND:
        raise ValueError(f"Expected state['round'] to be at most {MAX_ROUND}, but got {rnd}.")
    below = rounds < UNLABELED
    if below.any():
        i = _first(below)
        raise ValueError(
            f"Expected state['labeled_round'] to be >= -1, but item {i} has {rounds[i]}."
        )
    late = rounds >= rnd
    if late.any():
        i = _first(late)
        raise ValueError(
            f"Inconsistent state: state['round'] ({rnd}) must be greater than every labeled "
            f"round, but item {i} was labeled in round {rounds[i]}."
        )
    orphan = has & (rounds < 0)
    if orphan.any():
        raise ValueError(
            f"Expected state['has_label'] to be set on labeled items only, but it is set on "
            f"unlabeled item {_first(orphan)}."
        )
    bad = (has & (labels < 0)) | (~has & (labels != UNLABELED))
    if bad.any():
        i = _first(bad)
        expected = "a label >= 0 (has_label is set)" if has[i] else "-1 (has_label is unset)"
        raise ValueError(
            f"Expected state['labels'] to hold {expected} for item {i}, but got {labels[i]}."
        )


def check_indices(indices: Any, n: int, name: str) -> np.ndarray:
    """``indices`` (array-like or tensor) as ``int64`` dataset indices in ``[0, n)``."""
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    arr = np.asarray(indices)
    if arr.ndim == 0:
        raise ValueError(
            f"Expected argument `{name}` to be a 1-D sequence of dataset indices, but got "
            f"a scalar {arr!r}; wrap it in a list."
        )
    if arr.ndim != 1:
        raise ValueError(
            f"Expected argument `{name}` to be a 1-D sequence of dataset indices, but got "
            f"shape {arr.shape}."
        )
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(
            f"Expected argument `{name}` to hold integer dataset indices, but got dtype "
            f"{arr.dtype}."
        )
    # Range first, in the input's own dtype: a uint64 above 2**63 would wrap to a
    # negative int64 and be reported as such.
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= n:
        bad = lo if lo < 0 else hi
        raise ValueError(f"Expected argument `{name}` to hold indices in [0, {n}), but got {bad}.")
    return arr.astype(np.int64, copy=False)


def check_labels(labels: Any, count: int) -> np.ndarray:
    """``labels`` (array-like or tensor) as ``count`` non-negative ``int64`` class labels."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != count:
        raise ValueError(
            "Expected argument `labels` to be 1-D with one label per index "
            f"({count}), but got shape {lab.shape}."
        )
    if lab.size and (lab.dtype == bool or not np.issubdtype(lab.dtype, np.integer)):
        raise TypeError(
            f"Expected argument `labels` to hold integer class labels, but got dtype {lab.dtype}."
        )
    # Range first, in the input's own dtype (a uint64 2**64-1 would wrap to -1).
    lo, hi = (int(lab.min()), int(lab.max())) if lab.size else (0, 0)
    if lo < 0:
        raise ValueError(f"Expected argument `labels` to be non-negative, but got {lo}.")
    if hi > MAX_ROUND:
        raise ValueError(
            f"Expected argument `labels` to hold int64 class labels (at most {MAX_ROUND}), "
            f"but got {hi}."
        )
    return lab.astype(np.int64, copy=False)


def check_unlabeled_indices(indices: Any, pool: Any, name: str = "indices") -> np.ndarray:
    """``indices`` as ``int64`` dataset indices of ``pool`` that are all unlabeled.

    ``None`` gives every unlabeled index (ascending). The rules of :func:`check_indices`
    (integers, 1-D, in ``[0, len(pool))``: nothing truncated, wrapped or read from the
    end), then a ``ValueError`` naming the labeled ones.
    """
    if indices is None:
        return np.asarray(pool.unlabeled_indices)
    out = check_indices(indices, len(pool), name)
    labeled = pool.labeled_mask[out]
    if labeled.any():
        raise ValueError(
            f"Expected argument `{name}` to hold unlabeled dataset indices, but got "
            f"{out[labeled][:5].tolist()}."
        )
    return out

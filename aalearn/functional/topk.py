"""Deterministic top-k selection, in one shot or streamed over a pool with O(k) memory.

The order is total, so the result never depends on how the pool was cut into
batches nor on the order in which the batches arrive:

1. a higher score ranks first; ``+inf`` ranks above every finite score;
2. ``-inf`` ranks below every finite score, and NaN below ``-inf`` (a NaN score is
   the least informative there is); ``-0.0`` and ``0.0`` are the same score;
3. equal scores (NaN included) rank by the smaller index first.

**Merge rule.** :class:`StreamingTopK` keeps the best ``k`` (score, index) pairs
seen so far. :meth:`StreamingTopK.update` concatenates them with the batch's pairs
and keeps the best ``k`` of the union under the order above. Since the top-``k``
of a union equals the top-``k`` of (the top-``k`` of one part) and the other part,
the state after any sequence of batches is the top-``k`` of everything seen.
An update costs O(k + B) (two ``torch.topk`` over int64 keys that encode the order,
no sort); :meth:`StreamingTopK.compute` sorts the ``k`` kept pairs best first.

Everything stays on the state's device: no ``.item()`` and no host sync per update.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import torch
from torch import Tensor

from aalearn._validation import check_int

__all__ = ["StreamingTopK", "topk_indices"]

_INT64_MIN = torch.iinfo(torch.int64).min
_INT64_MAX = torch.iinfo(torch.int64).max
_INT_VIEW = {
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}


def _arg_validation(k: Any) -> int:
    k = check_int(k, "k")  # Python and NumPy integers; bool refused
    if k < 1:
        raise ValueError(f"Expected argument `k` to be a positive integer, but got {k}.")
    return k


def _tensor_validation(scores: Any, indices: Any) -> None:
    if not isinstance(scores, Tensor):
        raise TypeError(
            f"Expected argument `scores` to be a torch.Tensor, but got {type(scores).__name__}."
        )
    if not isinstance(indices, Tensor):
        raise TypeError(
            f"Expected argument `indices` to be a torch.Tensor, but got {type(indices).__name__}."
        )
    if scores.dtype not in _INT_VIEW:
        raise TypeError(
            f"Expected argument `scores` to be a floating point tensor, but got dtype "
            f"{scores.dtype}."
        )
    if indices.dtype.is_floating_point or indices.dtype.is_complex or indices.dtype == torch.bool:
        raise TypeError(
            f"Expected argument `indices` to be an integer tensor, but got dtype {indices.dtype}."
        )
    if scores.ndim != 1:
        raise ValueError(
            f"Expected argument `scores` to be a 1-D tensor of shape (B,), but got shape "
            f"{tuple(scores.shape)}."
        )
    if indices.shape != scores.shape:
        raise ValueError(
            f"Expected argument `indices` to have the same shape as `scores`, but got "
            f"{tuple(indices.shape)} and {tuple(scores.shape)}."
        )


def _order_key(scores: Tensor) -> Tensor:
    """int64 keys whose integer order is the ranking order of ``scores`` (NaN lowest).

    The IEEE bit pattern of a non-negative float grows with its value; flipping all
    but the sign bit of a negative one makes the signed integers grow with the value
    too. ``-0.0`` is mapped to ``0.0`` first, NaN to the smallest int64.
    """
    width = scores.element_size() * 8
    bits = (scores + 0.0).view(_INT_VIEW[scores.dtype]).to(torch.int64)
    key = bits ^ ((bits >> (width - 1)) & ((1 << (width - 1)) - 1))
    return key.masked_fill_(torch.isnan(scores), _INT64_MIN)


def _best_k(scores: Tensor, indices: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    """The best ``k`` pairs as a set (in no particular order), in O(n) with two ``topk``.

    ``thr`` is the ``k``-th largest key: every pair above it is kept (there are fewer
    than ``k``), none below it, and the rest of the places go to the pairs at ``thr``
    with the smallest indices. One int64 per pair encodes exactly that, so the second
    ``topk`` has no ties left to break arbitrarily (indices being unique).
    """
    if scores.shape[0] <= k:
        return scores, indices
    key = _order_key(scores)
    thr = torch.topk(key, k, sorted=False).values.min()
    rank = torch.where(key == thr, -indices, _INT64_MIN)
    rank = torch.where(key > thr, _INT64_MAX, rank)
    keep = torch.topk(rank, k, sorted=False).indices
    return scores[keep], indices[keep]


def _best_first(scores: Tensor, indices: Tensor) -> Tuple[Tensor, Tensor]:
    """Sort pairs best first: two stable sorts, by index ascending, then by key descending."""
    by_index = torch.sort(indices, stable=True).indices
    key = _order_key(scores)[by_index]
    order = by_index[torch.sort(key, descending=True, stable=True).indices]
    return scores[order], indices[order]


class StreamingTopK:
    """Running top-``k`` of (score, index) pairs streamed over a pool, in O(k) memory.

    Deterministic: higher score first, ties by the smaller index, NaN last (below
    ``-inf``), whatever the batch sizes and their order (see the module docstring for
    the order and the merge rule). Indices are expected to be unique.

    Parameters
    ----------
    k : int
        How many pairs to keep (positive).
    device : str or torch.device, optional
        Where the state lives; batches are moved there. ``None``: the device of the
        first batch.

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional import StreamingTopK
    >>> topk = StreamingTopK(3)
    >>> topk.update(torch.tensor([0.2, 0.9, float("nan")]), torch.tensor([10, 11, 12]))
    >>> topk.update(torch.tensor([0.9, 0.1, 0.5]), torch.tensor([3, 4, 5]))
    >>> scores, indices = topk.compute()
    >>> scores
    tensor([0.9000, 0.9000, 0.5000])
    >>> indices
    tensor([ 3, 11,  5])
    >>> topk.reset()
    >>> topk.compute()[1]
    tensor([], dtype=torch.int64)
    """

    def __init__(self, k: int, *, device: Optional[Union[str, torch.device]] = None) -> None:
        self.k = _arg_validation(k)
        self.device = None if device is None else torch.device(device)
        self._scores: Optional[Tensor] = None
        self._indices: Optional[Tensor] = None

    def __repr__(self) -> str:
        device = "None" if self.device is None else repr(str(self.device))
        return f"{type(self).__name__}(k={self.k}, device={device})"

    def reset(self) -> None:
        """Forget every pair seen so far (``k`` and ``device`` stay)."""
        self._scores = None
        self._indices = None

    def update(self, scores: Tensor, indices: Tensor, *, validate_args: bool = True) -> None:
        """Merge one batch of candidates into the running top-``k``.

        Parameters
        ----------
        scores : Tensor
            Floating tensor of shape ``(B,)``, higher = better.
        indices : Tensor
            Integer tensor of shape ``(B,)`` (stored as int64): the items' indices.
        validate_args : bool
            Check types and shapes (default). ``False`` skips the checks.
        """
        if validate_args:
            _tensor_validation(scores, indices)
        device = self.device if self.device is not None else scores.device
        self.device = device
        scores = scores.detach().to(device)
        indices = indices.detach().to(device=device, dtype=torch.int64)
        if self._scores is not None and self._indices is not None:
            dtype = torch.promote_types(self._scores.dtype, scores.dtype)
            scores = torch.cat([self._scores.to(dtype), scores.to(dtype)])
            indices = torch.cat([self._indices, indices])
        # The state is kept as an unordered set; compute() sorts its k pairs.
        self._scores, self._indices = _best_k(scores, indices, self.k)

    def compute(self) -> Tuple[Tensor, Tensor]:
        """The kept ``(scores, indices)``, best first; fewer than ``k`` if fewer were seen.

        Returns
        -------
        tuple of Tensor
            Scores (the input's dtype) and int64 indices, both of shape ``(min(k, seen),)``.
        """
        if self._scores is None or self._indices is None:
            device = self.device if self.device is not None else torch.device("cpu")
            return (
                torch.empty(0, device=device),
                torch.empty(0, dtype=torch.int64, device=device),
            )
        return _best_first(self._scores, self._indices)


def topk_indices(
    scores: Tensor, indices: Tensor, k: int, *, validate_args: bool = True
) -> Tuple[Tensor, Tensor]:
    """One-shot deterministic top-``k``: the same result as one :class:`StreamingTopK` update.

    Parameters
    ----------
    scores : Tensor
        Floating tensor of shape ``(N,)``, higher = better; NaN ranks last.
    indices : Tensor
        Integer tensor of shape ``(N,)``: the items' indices (ties: smaller first).
    k : int
        How many to keep (positive); all ``N`` are returned when ``N < k``.
    validate_args : bool
        Check types and shapes (default). ``False`` skips the checks.

    Returns
    -------
    tuple of Tensor
        ``(scores, indices)`` of the best ``min(k, N)`` items, best first, on the
        input's device (indices as int64).

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional import topk_indices
    >>> scores = torch.tensor([0.3, float("nan"), 0.7, 0.3, float("inf")])
    >>> topk_indices(scores, torch.tensor([40, 41, 42, 43, 44]), 4)
    (tensor([   inf, 0.7000, 0.3000, 0.3000]), tensor([44, 42, 40, 43]))
    """
    k = _arg_validation(k)
    if validate_args:
        _tensor_validation(scores, indices)
    return _best_first(*_best_k(scores.detach(), indices.detach().to(torch.int64), k))

"""k-center greedy selection, the kernel of the Core-Set sampler (Sener and Savarese, 2018)."""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from aalearn._validation import check_generator, check_int, check_options

__all__ = ["k_center_greedy"]

#: Metrics :func:`k_center_greedy` accepts.
_METRICS = ("euclidean", "cosine")
#: Default ``chunk_size`` by device type, from ``benchmarks/coreset.py`` (50,000 x 512
#: float32, 5,000 labeled): on CPU (2 threads) a step's difference block must stay in
#: cache, 512 to 1024 rows took 4.7 to 4.9 ms per step against 7.4 ms at 4096; on CUDA
#: (H200) steps are bound by kernel launches, 1.3 ms per step at 1024 rows, 0.21 ms at 8192.
_DEFAULT_CHUNK = {"cpu": 1024}
_DEFAULT_CHUNK_OTHER = 8192


def _k_center_greedy_arg_validation(chunk_size: Any, metric: Any) -> None:
    if chunk_size is not None:
        check_int(chunk_size, "chunk_size", minimum=1)
    check_options(metric, "metric", _METRICS)


def _k_center_greedy_tensor_validation(features: Any, centers_mask: Any, generator: Any) -> None:
    if not isinstance(features, Tensor):
        raise TypeError(
            f"Expected argument `features` to be a torch.Tensor, but got {type(features).__name__}."
        )
    if features.ndim != 2 or features.dtype == torch.bool or features.is_complex():
        raise ValueError(
            "Expected argument `features` to be a real 2-D tensor (N, D), but got shape "
            f"{tuple(features.shape)} and dtype {features.dtype}."
        )
    if not isinstance(centers_mask, Tensor) or centers_mask.dtype != torch.bool:
        kind = centers_mask.dtype if isinstance(centers_mask, Tensor) else type(centers_mask)
        raise TypeError(
            f"Expected argument `centers_mask` to be a bool torch.Tensor, but got {kind}."
        )
    if centers_mask.shape != features.shape[:1]:
        raise ValueError(
            f"Expected argument `centers_mask` to have shape ({features.shape[0]},) like the "
            f"rows of `features`, but got {tuple(centers_mask.shape)}."
        )
    check_generator(generator)
    if features.is_floating_point() and not bool(features.isfinite().all()):
        raise ValueError("Expected argument `features` to be finite, but it has NaN or inf.")


def _k_center_greedy_budget(features: Tensor, centers_mask: Tensor, budget: Any) -> int:
    n_free = features.shape[0] - int(centers_mask.sum())
    budget = check_int(budget, "budget", minimum=0)
    if budget > n_free:
        raise ValueError(
            f"Expected argument `budget` to be at most the number of points that are not "
            f"centers ({n_free}), but got {budget}."
        )
    return budget


def _update_min_distances(x: Tensor, point: Tensor, min_dist: Tensor, chunk_size: int) -> None:
    """``min_dist = min(min_dist, ||x - point||)`` row-wise, ``chunk_size`` rows at a time.

    ``||x_i - c||`` is computed from the difference (no cancellation: a duplicate
    of ``c`` is exactly 0 away) with the same rounding for a row wherever it sits.
    Both this and the ``||x||^2 - 2 x.c`` matrix-vector form read ``x`` once; on
    CPU (50,000 x 512 float32, one thread) they measured 20 ms and 25 ms per call,
    while ``torch.cdist`` without matrix products took 47 ms.
    """
    for start in range(0, x.shape[0], chunk_size):
        part = min_dist[start : start + chunk_size]
        dist = torch.linalg.vector_norm(x[start : start + chunk_size] - point, dim=1)
        torch.minimum(part, dist, out=part)


def _nearest_center_distances(
    x: Tensor, centers: Tensor, others: Tensor, chunk_size: int
) -> Tensor:
    """Distance of each row ``others[i]`` of ``x`` to its nearest row among ``centers``.

    A matrix product finds the nearest center of every point, one
    ``chunk_size x chunk_size`` block at a time (``argmin_c ||c||^2 - 2 c.p``, the
    point's own norm being the same for every center); the distance to that center
    is then recomputed exactly, pair by pair, so that it agrees bit for bit with the
    greedy steps (a duplicate of a center is exactly 0 away from it).
    """
    out = torch.empty(others.shape[0], dtype=x.dtype, device=x.device)
    for start in range(0, others.shape[0], chunk_size):
        points = x.index_select(0, others[start : start + chunk_size])
        best_val: Optional[Tensor] = None
        best_arg = torch.zeros(points.shape[0], dtype=torch.long, device=x.device)
        for c_start in range(0, centers.shape[0], chunk_size):
            block = x.index_select(0, centers[c_start : c_start + chunk_size])
            # (points, centers): the min runs along the contiguous axis.
            scores = torch.addmm(block.square().sum(1), points, block.T, alpha=-2)
            val, arg = scores.min(dim=1)
            if best_val is None:
                best_val, best_arg = val, arg
            else:
                better = val < best_val
                best_val = torch.where(better, val, best_val)
                best_arg = torch.where(better, arg + c_start, best_arg)
        nearest = x.index_select(0, centers[best_arg])
        out[start : start + points.shape[0]] = torch.linalg.vector_norm(points - nearest, dim=1)
    return out


def k_center_greedy(
    features: Tensor,
    centers_mask: Tensor,
    budget: int,
    *,
    chunk_size: Optional[int] = None,
    metric: str = "euclidean",
    generator: Optional[torch.Generator] = None,
    validate_args: bool = True,
) -> Tensor:
    r"""Greedy k-center selection (Sener and Savarese, ICLR 2018).

    Each step picks the point whose distance to its nearest center is largest,
    then makes it a center:

    .. math::

        u = \arg\max_{i \notin S} \min_{j \in S} \lVert x_i - x_j \rVert_2,
        \qquad S \leftarrow S \cup \{u\},

    where ``S`` starts as the points of ``centers_mask`` (the labeled set).

    Memory is ``O(N)`` (the running nearest-center distances) plus a workspace of
    about ``chunk_size ** 2 + 3 * chunk_size * D`` numbers: no ``N x N`` or
    ``N x L`` matrix is ever formed. Compute is ``O(N * (L + budget) * D)`` for
    ``L`` centers: the nearest initial center of every point comes from matrix
    products over ``chunk_size`` blocks of both axes; each greedy step measures
    one new center against every point, ``chunk_size`` rows at a time, and keeps
    its tensors on the device (no host sync in the loop).

    Parameters
    ----------
    features : torch.Tensor
        ``(N, D)`` real features. ``float32`` and ``float64`` are used as they are;
        other dtypes are converted to ``float32``.
    centers_mask : torch.Tensor
        ``(N,)`` bool, ``True`` for the existing centers (the labeled points).
    budget : int
        Number of points to pick, ``0 <= budget <= (~centers_mask).sum()``.
    chunk_size : int, optional
        Rows per block of the distance computations. ``None`` is 1024 on CPU
        (a step's ``chunk_size x D`` difference stays in cache) and 8192 on other
        devices (fewer kernel launches per step), as measured by
        ``benchmarks/coreset.py``.
    metric : {"euclidean", "cosine"}
        ``"cosine"`` runs the Euclidean rule on L2-normalised rows (a monotone
        function of the cosine distance); it makes one normalised copy of
        ``features``.
    generator : torch.Generator, optional
        Only used when there is no center: draws the first pick uniformly at
        random. Without it the first pick is the point farthest from the mean of
        ``features``.
    validate_args : bool
        Check the tensors: types, shapes, and that ``features`` is finite (one pass
        and one host sync), as in every kernel of :mod:`aalearn.functional`; ``False``
        skips those checks. ``budget``, ``chunk_size`` and ``metric`` are always checked.

    Returns
    -------
    torch.Tensor
        ``(budget,)`` ``int64`` positions into ``features``, on its device, in the
        order picked. Ties go to the smallest position (:func:`torch.argmax`
        returns the first maximum). Every distance that is compared is computed
        from the difference ``x_i - x_j`` (never from the cancelling
        ``||x_i||^2 - 2 x_i.x_j + ||x_j||^2``), so a duplicate of a center is
        exactly 0 away and exact ties stay ties. Only the *choice* of the
        nearest initial center uses that expansion, so of two initial centers
        equally far from a point up to rounding, either may be used.

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional import k_center_greedy
    >>> x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [0.0, 3.0], [5.0, 1.0]])
    >>> labeled = torch.tensor([True, False, False, False, False])
    >>> k_center_greedy(x, labeled, 3)  # the third step is a tie (1.0): position 1 wins
    tensor([4, 3, 1])
    >>> k_center_greedy(x, torch.zeros(5, dtype=torch.bool), 2)  # first: farthest from mean
    tensor([3, 2])
    """
    _k_center_greedy_arg_validation(chunk_size, metric)
    if validate_args:
        _k_center_greedy_tensor_validation(features, centers_mask, generator)
    budget = _k_center_greedy_budget(features, centers_mask, budget)
    device = features.device
    picks = torch.empty(budget, dtype=torch.long, device=device)
    if budget == 0:
        return picks
    if chunk_size is None:
        chunk_size = _DEFAULT_CHUNK.get(device.type, _DEFAULT_CHUNK_OTHER)
    chunk_size = int(chunk_size)
    with torch.no_grad():
        x = features.detach()
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        if metric == "cosine":
            x = F.normalize(x, dim=1)
        mask = centers_mask.to(device)
        min_dist = torch.full((x.shape[0],), float("-inf"), dtype=x.dtype, device=device)
        centers = mask.nonzero().squeeze(1)
        others = (~mask).nonzero().squeeze(1)
        first: Optional[Tensor] = None
        if centers.numel():
            dist = _nearest_center_distances(x, centers, others, chunk_size)
            min_dist.index_copy_(0, others, dist)
        else:
            min_dist.fill_(float("inf"))
            if generator is None:
                to_mean = torch.full_like(min_dist, float("inf"))
                _update_min_distances(x, x.mean(dim=0, keepdim=True), to_mean, chunk_size)
                first = to_mean.argmax().view(1)
            else:
                draw = torch.randint(x.shape[0], (1,), generator=generator, device=generator.device)
                first = draw.to(device)
        for step in range(budget):
            pick = first if step == 0 and first is not None else min_dist.argmax().view(1)
            picks[step : step + 1] = pick
            _update_min_distances(x, x.index_select(0, pick), min_dist, chunk_size)
            min_dist.index_fill_(0, pick, float("-inf"))
    return picks

"""ProbCover: greedy maximum coverage of delta-balls, and the purity rule for delta.

Yehuda, Dekel, Hacohen and Weinshall, "Active Learning Through a Covering Lens",
NeurIPS 2022. Restated from the authors' code (``avihu111/TypiClust``,
``deep-al/pycls/al/prob_cover.py``) without its two faults: the last ``N mod 500``
rows of its graph get no edges, and once everything is covered it re-picks row 0.

**The ball graph.** Item ``i`` covers ``j`` iff ``||x_i - x_j||_2 < delta`` (strict,
self included). The relation is symmetric, so one compressed sparse row (CSR) list
serves as both the out- and in-edges: ``N + 1`` int64 offsets and one target per
edge (int32 below ``2**31`` rows). The number of edges is the sum of the ball sizes,
``E = N + 2 P`` for ``P`` pairs closer than ``delta``; it grows with the ball volume,
about as ``delta ** d`` for an intrinsic dimension ``d``, from ``N`` (tiny delta) to
``N ** 2`` (delta above the diameter), so the right delta is small. Kept memory is
``8 (N + 1) + 4 E`` bytes; building it holds about 13 bytes per edge at its peak
(the pairs, the targets, one block's sort; measured at 50,000 rows,
``benchmarks/cold_start_scale.py``). The graph is built on the embedding's device
(:mod:`aalearn.functional._ball_graph`) in tiles of at most ``2**22`` distances, never an
``N x N`` matrix: every pair once below 65,536 rows (``O(N^2 D / 2)``), and from there
on only the pairs that a k-means partition and the triangle inequality cannot rule out
(the same graph, exact; 2 % of the pairs on the benchmark's 1,000,000-row mixture).
"""

from __future__ import annotations

import math
from typing import Any, Optional, Union

import torch
from torch import Tensor

from aalearn._validation import check_int, check_number
from aalearn.functional._ball_graph import ball_graph, sq_dist, tiles
from aalearn.functional._kmeans import (
    as_float,
    check_budget,
    check_embedding,
    kmeans,
    resolve_generator,
    sq_norms,
)

__all__ = ["ball_coverage", "ball_purity", "probcover", "probcover_delta"]

#: Purity the delta rule asks of the balls (the paper's alpha = 0.95).
PURITY = 0.95


def _neighbours(offsets: Tensor, targets: Tensor, nodes: Tensor) -> Tensor:
    """Concatenated CSR rows of ``nodes`` (int64)."""
    starts = offsets[nodes]
    lengths = offsets[nodes + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return torch.empty(0, dtype=torch.long, device=offsets.device)
    first = torch.cumsum(lengths, 0) - lengths
    pos = torch.repeat_interleave(starts - first, lengths) + torch.arange(
        total, device=offsets.device
    )
    return targets[pos].long()


def _cover(offsets: Tensor, targets: Tensor, new: Tensor, covered: Tensor, deg: Tensor) -> None:
    """Mark ``new`` (uncovered, distinct) covered; every ball holding one loses it."""
    covered[new] = True
    holders = _neighbours(offsets, targets, new)  # symmetric: in-edges = out-edges
    deg.sub_(torch.bincount(holders, minlength=deg.shape[0]))


def probcover(
    embedding: Tensor,
    labeled_mask: Tensor,
    budget: int,
    *,
    delta: Optional[float] = None,
    n_classes: Optional[int] = None,
    alpha: float = PURITY,
    generator: Optional[torch.Generator] = None,
    validate_args: bool = True,
) -> Tensor:
    r"""ProbCover selection (Yehuda et al., NeurIPS 2022): greedy max coverage of balls.

    The labeled items' balls are covered first; then each step picks the item whose
    ball holds the most uncovered items (ties: lowest index) and covers its ball.
    Once every item is covered, the remaining picks are drawn uniformly at random
    from the unlabeled items not yet picked (the authors' code re-picks row 0).
    The graph and its cost are described in :mod:`aalearn.functional.coverage`:
    ``8 (N + 1) + 4 E`` bytes for ``E`` = the sum of the ball sizes, and all the
    greedy steps together touch each edge at most twice.

    Parameters
    ----------
    embedding : torch.Tensor
        ``(N, D)`` floating point rows (the authors L2-normalise them; their deltas,
        0.75 on CIFAR-10 and 0.6 by default, assume it).
    labeled_mask : torch.Tensor
        ``(N,)`` bool, ``True`` for labeled items; may be all ``False``.
    budget : int
        Number of items to pick, ``0 <= budget <=`` the number of unlabeled items.
    delta : float, optional
        Ball radius, ``> 0``. ``None`` chooses it with :func:`probcover_delta`
        (then ``n_classes`` is required).
    n_classes : int, optional
        Number of k-means clusters of the purity rule (the number of classes).
    alpha : float
        Purity the rule asks for, in ``(0, 1]`` (the paper's 0.95).
    generator : torch.Generator, optional
        Source of the k-means draws of the purity rule and of the picks after full
        coverage; ``None`` draws a seed from the OS.
    validate_args : bool
        Check types, shapes and finiteness of the tensors (one pass).

    Returns
    -------
    torch.Tensor
        ``(budget,)`` ``int64`` row indices, on the embedding's device, in the order
        picked (best first).

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional import probcover
    >>> x = torch.tensor([[0.0], [0.1], [0.2], [0.3], [5.0], [5.1]])
    >>> probcover(x, torch.zeros(6, dtype=torch.bool), 2, delta=0.15)  # ball of 1: {0, 1, 2}
    tensor([1, 4])
    >>> probcover(x, torch.tensor([False, True, False, False, False, False]), 1, delta=0.15)
    tensor([4])
    """
    if validate_args:
        check_embedding(embedding, labeled_mask)
    n = embedding.shape[0]
    device = embedding.device
    labeled = labeled_mask.to(device)
    n_labeled = int(labeled.sum())
    budget = check_budget(budget, n - n_labeled)
    alpha = check_number(alpha, "alpha", minimum=0.0, maximum=1.0, exclusive_minimum=True)
    if delta is not None:
        delta = check_number(delta, "delta", minimum=0.0, exclusive_minimum=True)
    elif n_classes is None:
        raise ValueError(
            "Expected argument `n_classes` when `delta` is None (the purity rule clusters "
            "the embedding into n_classes), but got None."
        )
    generator = resolve_generator(generator)
    picks = torch.empty(budget, dtype=torch.long, device=device)
    if budget == 0:
        return picks
    with torch.no_grad():
        x = as_float(embedding)
        if delta is None:
            delta = probcover_delta(x, n_classes, alpha=alpha, generator=generator)
        offsets, targets = ball_graph(x, delta)
        deg = offsets.diff()
        covered = torch.zeros(n, dtype=torch.bool, device=device)
        in_labeled_balls = torch.zeros(n, dtype=torch.bool, device=device)
        in_labeled_balls[_neighbours(offsets, targets, labeled.nonzero().squeeze(1))] = True
        _cover(offsets, targets, in_labeled_balls.nonzero().squeeze(1), covered, deg)
        for step in range(budget):
            best = deg.argmax()
            if int(deg[best]) <= 0:
                free = (~labeled).nonzero().squeeze(1)
                free = free[~torch.isin(free, picks[:step])]
                draw = torch.randperm(free.numel(), generator=generator, device=generator.device)
                picks[step:] = free[draw[: budget - step].to(device)]
                break
            picks[step] = best
            ball = _neighbours(offsets, targets, best.view(1))
            _cover(offsets, targets, ball[~covered[ball]], covered, deg)
    return picks


def _other_label_distance(x: Tensor, labels: Tensor) -> Tensor:
    """Distance of every row to the nearest row with another label (``inf`` if none)."""
    sq = sq_norms(x)
    out = torch.full((x.shape[0],), float("inf"), dtype=x.dtype, device=x.device)
    for a in tiles(x.shape[0]):
        for b in tiles(x.shape[0]):
            d2 = sq_dist(x, sq, a, b)
            same = labels[a[0] : a[1], None] == labels[None, b[0] : b[1]]
            d2.masked_fill_(same, float("inf"))
            part = out[a[0] : a[1]]
            torch.minimum(part, d2.min(dim=1).values, out=part)
    return out.sqrt_()


def ball_purity(embedding: Tensor, pseudo_labels: Tensor, delta: Union[float, Tensor]) -> Tensor:
    r"""Fraction of pure delta-balls: :math:`\pi(\delta)` of ProbCover.

    The ball of ``i`` is pure iff every ``j`` with ``||x_i - x_j|| < delta`` has
    ``pseudo_labels[j] == pseudo_labels[i]``, that is iff the nearest item with
    another label is at least ``delta`` away. One ``O(N^2 D)`` pass, in tiles,
    answers every delta at once.

    Parameters
    ----------
    embedding : torch.Tensor
        ``(N, D)`` floating point rows.
    pseudo_labels : torch.Tensor
        ``(N,)`` integer labels (ProbCover uses k-means with ``n_classes`` clusters).
    delta : float or torch.Tensor
        One radius or a 1-D tensor of radii.

    Returns
    -------
    torch.Tensor
        float64 purity, of the shape of ``delta`` (0-D for a float).

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional import ball_purity
    >>> x = torch.tensor([[0.0], [1.0], [3.0]])
    >>> ball_purity(x, torch.tensor([0, 0, 1]), torch.tensor([1.5, 2.5]))
    tensor([1.0000, 0.3333], dtype=torch.float64)
    """
    check_embedding(embedding, None)
    if not isinstance(pseudo_labels, Tensor) or pseudo_labels.shape != embedding.shape[:1]:
        raise ValueError(
            f"Expected argument `pseudo_labels` to be a tensor of shape ({embedding.shape[0]},)."
        )
    with torch.no_grad():
        x = as_float(embedding)
        r = _other_label_distance(x, pseudo_labels.to(x.device))
        d = torch.as_tensor(delta, dtype=r.dtype, device=r.device)
        return (r[:, None] >= d.reshape(1, -1)).double().mean(0).reshape(d.shape)


def probcover_delta(
    embedding: Tensor,
    n_classes: Any,
    *,
    alpha: float = PURITY,
    generator: Optional[torch.Generator] = None,
) -> float:
    r"""The largest delta whose balls are at least ``alpha`` pure (ProbCover's rule).

    Pseudo-labels come from k-means with ``n_classes`` clusters; purity is
    :func:`ball_purity`, which decreases with delta. With ``r_i`` the distance from
    item ``i`` to the nearest item of another cluster, a ball is pure iff
    ``r_i >= delta``, so the answer is exact (no grid): the ``ceil(alpha N)``-th
    largest ``r_i``. Cost: one k-means and one ``O(N^2 D)`` pass in tiles.

    Parameters
    ----------
    embedding : torch.Tensor
        ``(N, D)`` floating point rows.
    n_classes : int
        Number of k-means clusters, ``2 <= n_classes <= N`` (the number of classes).
    alpha : float
        Purity asked of the balls, in ``(0, 1]`` (the paper's 0.95).
    generator : torch.Generator, optional
        Source of the k-means draws; ``None`` draws a seed from the OS.

    Returns
    -------
    float
        The radius, ``> 0``; ``ValueError`` when the rule finds none (duplicate rows in
        two clusters, or a single cluster).

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional import probcover_delta
    >>> x = torch.tensor([[0.0], [0.1], [0.2], [5.0], [5.1], [5.3]])
    >>> probcover_delta(x, 2, generator=torch.Generator().manual_seed(0))  # 5.0 - 0.2
    4.800000190734863
    """
    check_embedding(embedding, None)
    n_classes = check_int(n_classes, "n_classes", minimum=2)
    alpha = check_number(alpha, "alpha", minimum=0.0, maximum=1.0, exclusive_minimum=True)
    if n_classes > embedding.shape[0]:
        raise ValueError(
            f"Expected argument `n_classes` to be at most the number of rows "
            f"({embedding.shape[0]}), but got {n_classes}."
        )
    generator = resolve_generator(generator)
    with torch.no_grad():
        x = as_float(embedding)
        r = _other_label_distance(x, kmeans(x, n_classes, generator))
        m = math.ceil(alpha * x.shape[0])
        delta = float(r.topk(m).values[-1])
    if not math.isfinite(delta) or delta <= 0:
        raise ValueError(
            f"The purity rule found no usable delta (got {delta}): the k-means clusters "
            "overlap on duplicate rows, or all rows fell into one cluster. Pass `delta`."
        )
    return delta


#: Rows of the labeled side of one distance block of :func:`ball_coverage`.
_COVERAGE_BLOCK = 2**22


def ball_coverage(embedding: Tensor, labeled_mask: Tensor, delta: float) -> float:
    """Fraction of the rows within ``delta`` (strictly) of a labeled row.

    ProbCover's coverage ``P(union of the labeled items' delta-balls)`` on the pool,
    the first term of its bound on the 1-NN error,
    ``err <= (1 - coverage) + (1 - purity(delta))``. Computed in blocks of at most
    ``2**22`` distances: memory ``O(N)`` beyond the embedding, time ``O(N L D)``.

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional import ball_coverage
    >>> x = torch.tensor([[0.0], [0.5], [2.0], [10.0]])
    >>> ball_coverage(x, torch.tensor([True, False, False, False]), 1.0)  # rows 0 and 1
    0.5
    """
    x = embedding.float() if embedding.dtype not in (torch.float32, torch.float64) else embedding
    lab = x[labeled_mask.to(x.device)]
    n = x.shape[0]
    if lab.shape[0] == 0:
        return 0.0
    covered = torch.zeros(n, dtype=torch.bool, device=x.device)
    rows = max(1, _COVERAGE_BLOCK // lab.shape[0])
    for s in range(0, n, rows):
        # The direct difference, not the ||x||^2 - 2xy + ||y||^2 expansion: no cancellation
        # error near the radius.
        d = torch.cdist(x[s : s + rows], lab, compute_mode="donot_use_mm_for_euclid_dist")
        covered[s : s + rows] = (d < delta).any(dim=1)
    return float(covered.double().mean())

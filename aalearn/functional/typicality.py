"""TypiClust: the most typical item of the largest clusters without a label.

Hacohen, Dekel and Weinshall, "Active Learning on a Budget: Opposite Strategies Suit
High and Low Budgets", ICML 2022. Restated from the authors' code
(``avihu111/TypiClust``, ``deep-al/pycls/al/typiclust.py``); the k-means engine is
described in :mod:`aalearn.functional._kmeans`.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch
from torch import Tensor

from aalearn._validation import check_int, check_options
from aalearn.functional._kmeans import (
    as_float,
    check_budget,
    check_embedding,
    kmeans,
    resolve_generator,
    sq_norms,
)

__all__ = ["typiclust"]

#: The authors' constants (``TypiClust.MAX_NUM_CLUSTERS``, ``MIN_CLUSTER_SIZE``, ``K_NN``).
MAX_CLUSTERS = 500
MIN_CLUSTER_SIZE = 5
N_NEIGHBORS = 20
#: Numbers per block of the within-cluster distances (16 MiB in float32).
_BLOCK = 2**22
_DISTANCES = ("euclidean", "sqeuclidean")


def mean_knn_distance(x: Tensor, k: int, squared: bool) -> Tensor:
    """Mean distance of every row of ``x`` to its ``k`` nearest other rows.

    Exact, in row blocks of ``x``: memory ``O(n k)`` plus one block, never ``n x n``.
    """
    n = x.shape[0]
    sq = sq_norms(x)
    rows = max(1, _BLOCK // n)
    out = torch.empty(n, dtype=x.dtype, device=x.device)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        # ||y||^2 - 2 x.y ranks a row's neighbours: its own ||x||^2 is added to the k kept
        d2 = torch.addmm(sq, x[start:stop], x.T, alpha=-2)
        own = torch.arange(start, stop, device=x.device)
        d2[own - start, own] = float("inf")  # a row is not its own neighbour
        near = d2.topk(k, dim=1, largest=False, sorted=False).values
        near = near.add_(sq[start:stop, None]).clamp_(min=0)
        out[start:stop] = (near if squared else near.sqrt()).mean(dim=1)
    return out


def _cluster_order(
    labels: Tensor, labeled: Tensor, n_clusters: int, min_size: int
) -> List[List[int]]:
    """Clusters by (labeled count ascending, size descending, id ascending).

    Clusters larger than ``min_size`` come first (the authors keep only those); the
    smaller ones follow, used only once every larger cluster is exhausted.
    """
    sizes = torch.bincount(labels, minlength=n_clusters).cpu().numpy()
    counts = torch.bincount(labels[labeled], minlength=n_clusters).cpu().numpy()
    ids = np.arange(n_clusters)
    order = np.lexsort((ids, -sizes, counts))
    big = [int(c) for c in order if sizes[c] > min_size]
    small = [int(c) for c in order if 0 < sizes[c] <= min_size]
    return [big, small]


def typiclust(
    embedding: Tensor,
    labeled_mask: Tensor,
    budget: int,
    *,
    clusters: Optional[Tensor] = None,
    max_clusters: int = MAX_CLUSTERS,
    min_cluster_size: int = MIN_CLUSTER_SIZE,
    n_neighbors: int = N_NEIGHBORS,
    distance: str = "euclidean",
    generator: Optional[torch.Generator] = None,
    validate_args: bool = True,
) -> Tensor:
    r"""TypiClust selection (TPC-RP, Hacohen et al., ICML 2022).

    1. k-means with ``K = min(n_labeled + budget, max_clusters, N)`` clusters on all rows
       (or the given ``clusters``).
    2. Clusters ordered by their number of labeled items (fewest first), then by size
       (largest first), then by id; clusters of at most ``min_cluster_size`` items go
       last (the authors drop them; they are used here only when the others run out).
    3. Round robin over that order: from each cluster, the candidate (an item neither
       labeled nor picked) of highest typicality among the cluster's candidates,

       .. math::

           \mathrm{typicality}(x) = \Big(\frac{1}{k} \sum_{y \in \mathrm{kNN}(x)}
           d(x, y)\Big)^{-1}, \qquad k = \min(\texttt{n\_neighbors},
           \lfloor n_{\mathrm{cand}} / 2 \rfloor),

       as in the authors' code (labeled items take no part in the density; a
       cluster's typicality is recomputed when it is visited again). A cluster with
       a single candidate gives that candidate; an exhausted cluster is skipped
       (the authors' code divides by zero or crashes in those cases).

    Memory is ``O(N (D + 1))`` for the clustering plus, per visited cluster of
    ``n`` candidates, ``O(n (D + k))`` and a distance block of at most ``2**22``
    numbers: never ``N x N``. Time is ``O(N K D)`` per k-means pass plus
    ``O(n^2 D)`` per visited cluster.

    Parameters
    ----------
    embedding : torch.Tensor
        ``(N, D)`` floating point rows, one per pool item (the authors L2-normalise
        them first). ``float64`` is kept, other dtypes are computed in ``float32``.
    labeled_mask : torch.Tensor
        ``(N,)`` bool, ``True`` for labeled items; may be all ``False``.
    budget : int
        Number of items to pick, ``0 <= budget <=`` the number of unlabeled items.
    clusters : torch.Tensor, optional
        ``(N,)`` integer cluster ids in ``[0, N)`` to use instead of k-means (for
        example SCAN clusters, the authors' TPC-DC variant).
    max_clusters : int
        Cap on ``K`` (the authors' ``MAX_NUM_CLUSTERS`` = 500).
    min_cluster_size : int
        Clusters of at most this many items come last (the authors' 5).
    n_neighbors : int
        Neighbours of the typicality (the authors' ``K_NN`` = 20).
    distance : {"euclidean", "sqeuclidean"}
        ``"euclidean"`` is the paper's mean distance; ``"sqeuclidean"`` the authors'
        code (faiss ``IndexFlatL2`` returns squared distances). The two orders agree
        on most clusters, not on all.
    generator : torch.Generator, optional
        Source of the k-means draws; ``None`` draws a seed from the OS. The same
        seed gives the same picks.
    validate_args : bool
        Check types, shapes and finiteness of the tensors (one pass); ``budget`` and
        the options are always checked.

    Returns
    -------
    torch.Tensor
        ``(budget,)`` ``int64`` row indices of ``embedding``, on its device, in the
        order picked (best first). Ties go to the smallest index.

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional import typiclust
    >>> g = torch.Generator().manual_seed(0)
    >>> blobs = torch.cat([torch.randn(30, 2, generator=g) * 0.3 + c for c in (0.0, 5.0)])
    >>> labeled = torch.zeros(60, dtype=torch.bool)
    >>> picks = typiclust(blobs, labeled, 2, generator=torch.Generator().manual_seed(0))
    >>> sorted((blobs[picks].mean(1) > 2.5).tolist())  # one item from each blob
    [False, True]
    """
    if validate_args:
        check_embedding(embedding, labeled_mask)
    n = embedding.shape[0]
    max_clusters = check_int(max_clusters, "max_clusters", minimum=1)
    min_cluster_size = check_int(min_cluster_size, "min_cluster_size", minimum=0)
    n_neighbors = check_int(n_neighbors, "n_neighbors", minimum=1)
    check_options(distance, "distance", _DISTANCES)
    device = embedding.device
    labeled = labeled_mask.to(device)
    n_labeled = int(labeled.sum())
    budget = check_budget(budget, n - n_labeled)
    if clusters is not None:
        if not isinstance(clusters, Tensor) or clusters.dtype.is_floating_point:
            raise TypeError("Expected argument `clusters` to be an integer torch.Tensor.")
        if clusters.shape != (n,) or bool((clusters < 0).any() | (clusters >= n).any()):
            raise ValueError(
                f"Expected argument `clusters` to have shape ({n},) and values in [0, {n}), "
                f"but got shape {tuple(clusters.shape)}."
            )
    generator = resolve_generator(generator)
    picks = torch.empty(budget, dtype=torch.long, device=device)
    if budget == 0:
        return picks
    with torch.no_grad():
        x = as_float(embedding)
        if clusters is None:
            k = min(n_labeled + budget, max_clusters, n)
            labels = kmeans(x, k, generator)
        else:
            labels = clusters.to(device=device, dtype=torch.long)
            k = int(labels.max()) + 1
        members = torch.sort(labels, stable=True).indices  # by cluster, then by index
        bounds = torch.bincount(labels, minlength=k).cumsum(0).tolist()
        available = ~labeled
        done = 0
        for tier in _cluster_order(labels, labeled, k, min_cluster_size):
            while done < budget and tier:
                alive = []
                for c in tier:
                    if done == budget:
                        break
                    idx = members[(bounds[c - 1] if c else 0) : bounds[c]]
                    cand = idx[available[idx]]
                    if cand.numel() == 0:
                        continue  # exhausted: dropped from the round robin
                    alive.append(c)
                    if cand.numel() == 1:
                        best = cand[0]
                    else:
                        knn = min(n_neighbors, cand.numel() // 2)
                        scores = mean_knn_distance(x[cand], knn, distance == "sqeuclidean")
                        best = cand[scores.argmin()]
                    picks[done] = best
                    available[best] = False
                    done += 1
                tier = alive
    return picks

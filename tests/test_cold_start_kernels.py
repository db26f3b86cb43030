"""TypiClust and ProbCover kernels against direct computations and the authors' logic.

The authors' code (avihu111/TypiClust, deep-al/pycls/al/{typiclust,prob_cover}.py)
cannot be shipped; ``_reference_*`` below restate its selection logic independently,
in NumPy with dense distance matrices, keeping its conventions (pool order labeled
then unlabeled, faiss' squared L2 for the typicality, ``1 / (mean + 1e-5)``,
``k = min(20, n_candidates // 2)``, cluster filter ``size > 5``, ``order[i % len]``).
Where its code has a fault (a division by zero, a crash, the last ``N mod 500``
rows of the ProbCover graph without edges, re-picking row 0 at full coverage) the
restatement has the fix, and the inputs stay away from the other cases.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from aalearn.functional import (
    _ball_graph,
    _kmeans,
    ball_purity,
    probcover,
    probcover_delta,
    typicality,
    typiclust,
)
from aalearn.functional._kmeans import kmeans

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")),
]


def _blobs(n_per: int, centers: int, dim: int, seed: int, spread: float = 0.6) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(centers, dim, generator=g, dtype=torch.float64) * 3
    x = mu.repeat_interleave(n_per, 0) + spread * torch.randn(
        centers * n_per, dim, generator=g, dtype=torch.float64
    )
    return x[torch.randperm(x.shape[0], generator=g)]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sq_dists(x: np.ndarray) -> np.ndarray:
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)


# ----------------------------------------------------------------------------- TypiClust


def _reference_typiclust(
    features: np.ndarray, clusters: np.ndarray, l_set: np.ndarray, budget: int, squared: bool
) -> np.ndarray:
    """``TypiClust.select_samples`` on given clusters, dense kNN instead of faiss."""
    u_set = np.setdiff1d(np.arange(len(features)), l_set)
    relevant = np.concatenate([l_set, u_set]).astype(int)
    feats = features[relevant]
    labels = np.copy(clusters[relevant])
    existing = np.arange(len(l_set))
    ids, sizes = np.unique(labels, return_counts=True)
    counts = np.array([(labels[existing] == c).sum() for c in ids])
    keep = sizes > 5
    order = ids[keep][np.lexsort((ids[keep], -sizes[keep], counts[keep]))]
    labels[existing] = -1
    selected = []
    for i in range(budget):
        cluster = order[i % len(order)]
        indices = (labels == cluster).nonzero()[0]
        k = min(20, len(indices) // 2)
        d = _sq_dists(feats[indices])
        near = np.sort(d, axis=1)[:, 1 : k + 1]  # faiss: k + 1 neighbours, self dropped
        if not squared:
            near = np.sqrt(near)
        typicality = 1 / (near.mean(axis=1) + 1e-5)
        idx = indices[typicality.argmax()]
        selected.append(idx)
        labels[idx] = -1
    return relevant[np.array(selected)]


@pytest.mark.parametrize("distance", ["sqeuclidean", "euclidean"])
@pytest.mark.parametrize("n_labeled", [0, 7])
def test_typiclust_matches_reference_on_same_clusters(distance: str, n_labeled: int) -> None:
    x = _blobs(40, 6, 4, seed=1)
    labeled = torch.zeros(x.shape[0], dtype=torch.bool)
    labeled[torch.randperm(x.shape[0], generator=_gen(2))[:n_labeled]] = True
    budget = 9  # with max_clusters=5 the round robin wraps around
    picks = typiclust(x, labeled, budget, max_clusters=5, distance=distance, generator=_gen(3))
    k = min(n_labeled + budget, 5)
    clusters = kmeans(x, k, _gen(3))  # the same engine and seed
    ref = _reference_typiclust(
        x.numpy(),
        clusters.numpy(),
        labeled.nonzero().squeeze(1).numpy(),
        budget,
        squared=distance == "sqeuclidean",
    )
    assert picks.dtype == torch.int64
    assert picks.tolist() == ref.tolist()
    again = typiclust(x, labeled, budget, clusters=clusters, distance=distance)
    assert again.tolist() == ref.tolist()


def test_typiclust_cluster_cap_sizes_and_determinism() -> None:
    x = _blobs(30, 4, 3, seed=4)
    labeled = torch.zeros(120, dtype=torch.bool)
    labeled[:3] = True
    a = typiclust(x, labeled, 6, generator=_gen(5))
    b = typiclust(x, labeled, 6, generator=_gen(5))
    assert a.tolist() == b.tolist()
    assert len(set(a.tolist())) == 6 and not labeled[a].any()
    # the largest clusters without a label come first
    clusters = kmeans(x, 9, _gen(5))
    sizes = torch.bincount(clusters, minlength=9)
    free = [c for c in range(9) if not (clusters[labeled] == c).any()]
    first = clusters[a[0]].item()
    assert first in free and sizes[first] == max(sizes[c] for c in free)


def test_typiclust_small_and_exhausted_clusters() -> None:
    # cluster 0 holds 10 items, cluster 1 three, cluster 2 one: the authors' code
    # drops 1 and 2 and would loop over cluster 0 past its end.
    x = torch.arange(14, dtype=torch.float64).unsqueeze(1)
    clusters = torch.tensor([0] * 10 + [1] * 3 + [2])
    picks = typiclust(x, torch.zeros(14, dtype=torch.bool), 14, clusters=clusters)
    assert sorted(picks.tolist()) == list(range(14))
    assert clusters[picks].tolist() == [0] * 10 + [1, 2, 1, 1]
    # first pick of cluster 0 (k = 10 // 2 = 5): items 2 to 7 tie at a mean distance of
    # (1 + 1 + 2 + 2 + 3) / 5, items 0, 1, 8, 9 are farther: the lowest index wins
    assert picks[0].item() == 2


def test_mean_knn_distance_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _blobs(25, 3, 5, seed=6)
    monkeypatch.setattr(typicality, "_BLOCK", 200)  # 2 rows per block
    got = typicality.mean_knn_distance(x, 4, squared=False)
    d = torch.cdist(x, x).fill_diagonal_(float("inf"))
    want = d.topk(4, dim=1, largest=False).values.mean(1)
    torch.testing.assert_close(got, want)


def test_kmeans_on_a_sample_recovers_blobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_kmeans, "_SAMPLE_MIN", 50)
    monkeypatch.setattr(_kmeans, "_SAMPLE_PER_CLUSTER", 10)
    blob = torch.randint(0, 3, (300,), generator=_gen(7))
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = centres[blob] + 0.2 * torch.randn(300, 2, generator=_gen(9))
    a = kmeans(x, 3, _gen(8))
    assert torch.equal(a, kmeans(x, 3, _gen(8)))
    assert torch.equal(a[:, None] == a[None, :], blob[:, None] == blob[None, :])


@pytest.mark.parametrize("device", DEVICES)
def test_typiclust_device(device: str) -> None:
    x = _blobs(20, 5, 3, seed=9).float()
    labeled = torch.zeros(100, dtype=torch.bool)
    cpu = typiclust(x, labeled, 5, generator=_gen(1))
    got = typiclust(x.to(device), labeled.to(device), 5, generator=_gen(1))
    assert got.device.type == device and got.cpu().tolist() == cpu.tolist()


def test_typiclust_validation() -> None:
    x = torch.randn(10, 2, generator=_gen())
    none = torch.zeros(10, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"Expected argument `budget` to be >= 0, but got -1."):
        typiclust(x, none, -1)
    with pytest.raises(ValueError, match=r"number of unlabeled items \(9\), but got 10"):
        typiclust(x, torch.arange(10) == 0, 10)
    with pytest.raises(TypeError, match="`embedding` to be a torch.Tensor"):
        typiclust(x.numpy(), none, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`labeled_mask` to be a bool torch.Tensor"):
        typiclust(x, none.long(), 1)
    with pytest.raises(ValueError, match=r"`labeled_mask` to have shape \(10,\)"):
        typiclust(x, none[:5], 1)
    with pytest.raises(ValueError, match="`embedding` to be finite"):
        typiclust(x.index_fill(0, torch.tensor([3]), float("nan")), none, 1)
    with pytest.raises(ValueError, match="`distance` to be one of"):
        typiclust(x, none, 1, distance="cosine")
    with pytest.raises(ValueError, match="`max_clusters` to be >= 1"):
        typiclust(x, none, 1, max_clusters=0)
    with pytest.raises(ValueError, match="`clusters` to have shape"):
        typiclust(x, none, 1, clusters=torch.zeros(4, dtype=torch.long))
    assert typiclust(x, none, 0).shape == (0,)


# ----------------------------------------------------------------------------- ProbCover


def _reference_probcover(features: np.ndarray, l_set: np.ndarray, budget: int, delta: float):
    """``ProbCover.select_samples`` on a dense graph (every row gets its edges)."""
    u_set = np.setdiff1d(np.arange(len(features)), l_set)
    relevant = np.concatenate([l_set, u_set]).astype(int)
    feats = features[relevant]
    xs, ys = (np.sqrt(_sq_dists(feats)) < delta).nonzero()
    covered = np.unique(ys[np.isin(xs, np.arange(len(l_set)))])
    keep = ~np.isin(ys, covered)
    xs, ys = xs[keep], ys[keep]
    selected = []
    for _ in range(budget):
        cur = np.bincount(xs, minlength=len(relevant)).argmax()
        new = ys[xs == cur]
        keep = ~np.isin(ys, new)
        xs, ys = xs[keep], ys[keep]
        covered = np.concatenate([covered, new])
        selected.append(cur)
    return relevant[np.array(selected, dtype=int)], len(covered)


def _coverage(x: torch.Tensor, centres: torch.Tensor, delta: float) -> int:
    return int((torch.cdist(x, x[centres]) < delta).any(1).sum())


@pytest.mark.parametrize("n_labeled", [0, 5])
def test_probcover_matches_reference_and_brute_force(n_labeled: int) -> None:
    x = _blobs(30, 5, 3, seed=10)
    delta = 1.3
    d = torch.cdist(x, x)
    assert not ((d - delta).abs() < 1e-9).any()  # no pair on the boundary
    labeled = torch.zeros(150, dtype=torch.bool)
    labeled[torch.randperm(150, generator=_gen(11))[:n_labeled]] = True
    budget = 12
    picks = probcover(x, labeled, budget, delta=delta)
    ref, n_covered = _reference_probcover(x.numpy(), labeled.nonzero()[:, 0].numpy(), budget, delta)
    assert picks.tolist() == ref.tolist()
    assert _coverage(x, torch.cat([labeled.nonzero()[:, 0], picks]), delta) == n_covered
    # the greedy order is the brute force's: each pick adds the most uncovered items
    covered = (d[labeled] < delta).any(0)
    for p in picks.tolist():
        gain = ((d < delta) & ~covered).sum(1)
        assert gain[p] == gain.max() and p == int(gain.argmax())
        covered |= d[p] < delta


def test_probcover_greedy_within_bound_of_exhaustive() -> None:
    x = torch.rand(12, 2, generator=_gen(12), dtype=torch.float64)
    delta, budget = 0.3, 3
    picks = probcover(x, torch.zeros(12, dtype=torch.bool), budget, delta=delta)
    best = max(
        _coverage(x, torch.tensor(c), delta) for c in itertools.combinations(range(12), budget)
    )
    assert _coverage(x, picks, delta) >= (1 - 1 / math.e) * best


@pytest.mark.parametrize("block_edges", [1 << 20, 1, 40])
def test_ball_graph_tiles_cover_every_row(
    monkeypatch: pytest.MonkeyPatch, block_edges: int
) -> None:
    # the authors' loop builds N // 500 chunks: the last N mod 500 rows had no edges;
    # the targets are filled in blocks of rows (one, one row each, or a few rows each)
    monkeypatch.setattr(_ball_graph, "_TILE", 7)
    monkeypatch.setattr(_ball_graph, "_BLOCK_EDGES", block_edges)
    x = _blobs(10, 3, 2, seed=13)  # 30 rows: 4 full tiles and a remainder of 2
    offsets, targets = _ball_graph.ball_graph(x, 1.0)
    dense = torch.cdist(x, x) < 1.0
    for i in range(30):
        row = targets[offsets[i] : offsets[i + 1]].long()
        assert sorted(row.tolist()) == dense[i].nonzero()[:, 0].tolist()
        assert row[0] == i  # the self loop first
    assert offsets[-1] == dense.sum()  # edges = sum of ball sizes


def _dense_rows(x: torch.Tensor, delta: float) -> list:
    """Each row's ball, sorted, from float64 differences (no expansion, no rounding trick)."""
    d = (x.double()[:, None, :] - x.double()[None, :, :]).norm(dim=2)
    return [(d[i] < delta).nonzero()[:, 0].tolist() for i in range(x.shape[0])]


def _partitioned(monkeypatch: pytest.MonkeyPatch, cell: int, tile: int) -> None:
    monkeypatch.setattr(_ball_graph, "_PARTITION_MIN_ROWS", 1)
    monkeypatch.setattr(_ball_graph, "_CELL", cell)
    monkeypatch.setattr(_ball_graph, "_TILE", tile)


@pytest.mark.parametrize(
    "cell,tile,dtype",
    [(25, 2048, torch.float32), (10, 7, torch.float32), (400, 16, torch.float32),
     (10, 64, torch.float64)],
)  # fmt: skip
def test_ball_graph_partitioned_equals_brute_force(
    monkeypatch: pytest.MonkeyPatch, cell: int, tile: int, dtype: torch.dtype
) -> None:
    # 400 rows in 8 blobs: the k-means cells rule most pairs out, and every kept pair
    # must be the brute force's, each listed once (no duplicate, no self pair)
    x = _blobs(50, 8, 5, seed=31).to(dtype)
    d = (x.double()[:, None, :] - x.double()[None, :, :]).norm(dim=2)
    _partitioned(monkeypatch, cell, tile)
    for delta in (0.5, 1.1, 2.5, 40.0):
        assert not ((d - delta).abs() < 1e-4).any()  # no pair on the boundary
        pairs = _ball_graph._partitioned_pairs(x, delta)
        if delta < 2.5 and cell < 400:
            assert pairs is not None  # the cells separate the blobs (2 cells of 200 do not)
        if pairs is not None:
            found = torch.cat(pairs, dim=1).long()
            assert not (found[0] == found[1]).any()
            keys = torch.minimum(found[0], found[1]) * 400 + torch.maximum(found[0], found[1])
            assert keys.unique().numel() == keys.numel()
        offsets, targets = _ball_graph.ball_graph(x, delta)
        want = _dense_rows(x, delta)
        for i in range(400):
            row = targets[offsets[i] : offsets[i + 1]].long()
            assert row[0] == i and sorted(row.tolist()) == want[i]


def test_ball_graph_partition_gives_up_when_cells_do_not_separate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # delta above the diameter: every row is a candidate of every cell
    x = _blobs(30, 4, 3, seed=32).float()
    _partitioned(monkeypatch, 10, 2048)
    assert _ball_graph._partitioned_pairs(x, 100.0) is None
    monkeypatch.setattr(_ball_graph, "_MAX_CANDIDATES", 1)  # the memory cap
    assert _ball_graph._partitioned_pairs(x, 1.0) is None
    offsets, _ = _ball_graph.ball_graph(x, 100.0)
    assert offsets[-1] == 120 * 120


@pytest.mark.parametrize("device", DEVICES)
def test_probcover_partitioned_graph_same_picks(
    monkeypatch: pytest.MonkeyPatch, device: str
) -> None:
    x = torch.nn.functional.normalize(_blobs(60, 10, 16, seed=33), dim=1).float()
    labeled = torch.zeros(600, dtype=torch.bool)
    labeled[torch.randperm(600, generator=_gen(34))[:7]] = True
    want = probcover(x, labeled, 25, delta=0.3, generator=_gen(35))
    _partitioned(monkeypatch, 30, 64)
    x, labeled = x.to(device), labeled.to(device)
    assert _ball_graph._partitioned_pairs(x, 0.3) is not None
    got = probcover(x, labeled, 25, delta=0.3, generator=_gen(35))
    assert got.device.type == device and got.tolist() == want.tolist()


def test_probcover_full_coverage_draws_unlabeled() -> None:
    x = torch.rand(20, 2, generator=_gen(14), dtype=torch.float64)
    labeled = torch.zeros(20, dtype=torch.bool)
    labeled[[3, 7]] = True
    picks = probcover(x, labeled, 6, delta=10.0, generator=_gen(15))
    assert torch.equal(picks, probcover(x, labeled, 6, delta=10.0, generator=_gen(15)))
    assert len(set(picks.tolist())) == 6 and not labeled[picks].any()
    unlabeled = probcover(x, torch.zeros(20, dtype=torch.bool), 3, delta=10.0, generator=_gen())
    assert unlabeled[0] == 0  # one ball holds all: ties -> lowest index


@pytest.mark.parametrize("device", DEVICES)
def test_probcover_device(device: str) -> None:
    x = _blobs(30, 4, 3, seed=16).float()
    labeled = torch.zeros(120, dtype=torch.bool)
    labeled[:4] = True
    cpu = probcover(x, labeled, 8, delta=1.2)
    got = probcover(x.to(device), labeled.to(device), 8, delta=1.2)
    assert got.device.type == device and got.cpu().tolist() == cpu.tolist()


def test_ball_purity_direct() -> None:
    x = _blobs(20, 3, 2, seed=17, spread=1.0)
    labels = torch.randint(0, 3, (60,), generator=_gen(18))
    labels[:20] = 1
    d = torch.cdist(x, x)
    deltas = torch.tensor([0.05, 0.3, 0.8, 1.7, 4.0], dtype=torch.float64)
    want = [
        np.mean([bool((labels[d[i] < t] == labels[i]).all()) for i in range(60)]) for t in deltas
    ]
    got = ball_purity(x, labels, deltas)
    assert got.tolist() == pytest.approx(want, abs=1e-12)
    assert float(ball_purity(x, labels, 0.8)) == pytest.approx(want[2])


def test_probcover_delta_direct() -> None:
    x = _blobs(25, 4, 3, seed=19, spread=1.0)
    delta = probcover_delta(x, 4, generator=_gen(20))
    pseudo = kmeans(x, 4, _gen(20))
    d = torch.cdist(x, x)

    def purity(t: float) -> float:
        return float(np.mean([bool((pseudo[d[i] < t] == pseudo[i]).all()) for i in range(100)]))

    # the largest such delta; at delta itself a ball's edge is a tie up to rounding
    assert purity(delta * (1 - 1e-9)) >= 0.95 > purity(delta * (1 + 1e-9))
    # delta=None runs the same rule with the same draws (then the full-coverage draws)
    labeled = torch.zeros(100, dtype=torch.bool)
    auto = probcover(x, labeled, 6, n_classes=4, generator=_gen(20))
    g = _gen(20)
    kmeans(x, 4, g)
    assert auto.tolist() == probcover(x, labeled, 6, delta=delta, generator=g).tolist()


def test_probcover_validation() -> None:
    x = torch.randn(10, 2, generator=_gen())
    none = torch.zeros(10, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"Expected argument `budget` to be >= 0, but got -2."):
        probcover(x, none, -2, delta=1.0)
    with pytest.raises(ValueError, match=r"number of unlabeled items \(8\), but got 9"):
        probcover(x, torch.arange(10) < 2, 9, delta=1.0)
    with pytest.raises(ValueError, match=r"`delta` to be > 0.0, but got 0.0"):
        probcover(x, none, 1, delta=0.0)
    with pytest.raises(TypeError, match="`delta` to be a real number"):
        probcover(x, none, 1, delta="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`alpha` to be > 0.0, but got 0.0"):
        probcover(x, none, 1, delta=1.0, alpha=0.0)
    with pytest.raises(ValueError, match="Expected argument `n_classes` when `delta` is None"):
        probcover(x, none, 1)
    with pytest.raises(ValueError, match="`n_classes` to be >= 2, but got 1"):
        probcover_delta(x, 1)
    with pytest.raises(ValueError, match=r"`n_classes` to be at most the number of rows \(10\)"):
        probcover_delta(x, 11)
    with pytest.raises(ValueError, match=r"`alpha` to be <= 1.0, but got 1.5"):
        probcover_delta(x, 2, alpha=1.5)
    with pytest.raises(ValueError, match="no usable delta"):
        probcover_delta(torch.zeros(10, 2), 2, generator=_gen())
    with pytest.raises(ValueError, match=r"`pseudo_labels` to be a tensor of shape \(10,\)"):
        ball_purity(x, torch.zeros(3), 1.0)

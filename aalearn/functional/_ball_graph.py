"""The ProbCover ball graph: every pair closer than delta, as a CSR list, never N x N.

Item ``i`` covers ``j`` iff ``||x_i - x_j||_2 < delta`` (strict, self included). The
relation is symmetric, so one compressed sparse row (CSR) list serves as both the out-
and in-edges: ``N + 1`` int64 offsets and one target per edge (int32 below ``2**31``
rows). Its size is described in :mod:`aalearn.functional.coverage`.

**Which pairs are compared.** Below ``_PARTITION_MIN_ROWS`` rows, every pair, once, in
square tiles of the upper triangle: ``O(N^2 D / 2)``. From there on the rows are first
cut into cells of about ``_CELL`` rows by a few k-means iterations (seeded, so the
graph never depends on the caller's generator), and a row ``i`` is compared with the
rows of cell ``B`` only if ``||x_i - c_B|| <= delta + r_B`` (``c_B`` the cell's mean,
``r_B`` the largest distance of a member to it): by the triangle inequality no other
row can be closer than delta to a member. The test is made on squared distances with a
rounding allowance, so it only ever keeps more rows than needed: the graph is exact,
the k-means only decides how much is skipped. Each pair is compared in one cell only
(the larger cell id of its two rows). When the cells do not separate the rows (more
than ``_MAX_CANDIDATES`` candidate cells per row, or more than ``N^2 / 4`` comparisons
left, half the all-pairs build's), the all-pairs tiles are used instead. On the
1,000,000 x 384 mixture of ``benchmarks/cold_start_scale.py`` the cells leave 2 % of
the pairs.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from aalearn.functional._kmeans import kmeans, sq_norms

#: Side of a square distance tile: 2048 x 2048 = 2**22 numbers (16 MiB in float32).
_TILE = 2048
#: The least number of edges of a block of rows when the CSR targets are filled.
_BLOCK_EDGES = 1 << 16
#: Rows from which the pairs are compared within a k-means partition only.
_PARTITION_MIN_ROWS = 1 << 16
#: Mean rows per cell of that partition.
_CELL = 1024
#: Most candidate cells per row, on average, before the partition is given up.
_MAX_CANDIDATES = 32
#: Lloyd iterations of the partition (its quality only changes how much is skipped).
_PARTITION_ITER = 10


def tiles(n: int) -> List[Tuple[int, int]]:
    return [(s, min(n, s + _TILE)) for s in range(0, n, _TILE)]


def sq_dist(x: Tensor, sq: Tensor, a: Tuple[int, int], b: Tuple[int, int]) -> Tensor:
    d2 = torch.addmm(sq[b[0] : b[1]], x[a[0] : a[1]], x[b[0] : b[1]].T, alpha=-2)
    return d2.add_(sq[a[0] : a[1], None]).clamp_(min=0)


def ball_graph(x: Tensor, delta: float) -> Tuple[Tensor, Tensor]:
    """CSR ``(offsets, targets)`` of the symmetric graph ``||x_i - x_j|| < delta``."""
    n = x.shape[0]
    pairs = _partitioned_pairs(x, delta) if n >= _PARTITION_MIN_ROWS else None
    if pairs is None:
        pairs = _all_pairs(x, delta)
    if len(pairs) > 1:  # one list: the CSR fill below scans it once per block of rows
        pairs = [torch.cat(pairs, dim=1)]
    return _csr(pairs, n)


class _Tiles:
    """The two tile buffers, allocated once and reused (``out=``).

    Fresh 16 MiB temporaries interleaved with the growing edge lists fragmented the heap
    and tripled the resident memory in a measurement at 50,000 rows.
    """

    def __init__(self, x: Tensor, rows: int) -> None:
        self.scores = torch.empty(rows * min(_TILE, rows), dtype=x.dtype, device=x.device)
        self.close = torch.empty(self.scores.shape, dtype=torch.bool, device=x.device)

    def hits(self, xa: Tensor, xb: Tensor, sq_b: Tensor, limit: Tensor) -> Tensor:
        """Bool ``(len(xa), len(xb))``: ``||xb||^2 - 2 xa.xb < limit`` (one row each)."""
        shape = (xa.shape[0], xb.shape[0])
        part = self.scores[: shape[0] * shape[1]].view(shape)
        torch.addmm(sq_b, xa, xb.T, alpha=-2, out=part)
        hit = self.close[: shape[0] * shape[1]].view(shape)
        return torch.lt(part, limit, out=hit)


def _all_pairs(x: Tensor, delta: float) -> List[Tensor]:
    """``(2, P_t)`` index pairs ``i < j`` closer than delta, one tensor per row tile."""
    n = x.shape[0]
    sq = sq_norms(x)
    idx_dtype = torch.int32 if n < 2**31 else torch.long
    buf = _Tiles(x, min(_TILE, n))
    pairs: List[Tensor] = []
    for a in tiles(n):
        found: List[Tensor] = []
        # ||x_j||^2 - 2 x_i.x_j < delta^2 - ||x_i||^2: no pass to add the row's norm
        limit = (delta * delta - sq[a[0] : a[1]]).unsqueeze(1)
        for b in tiles(n):
            if b[0] < a[0]:
                continue
            hit = buf.hits(x[a[0] : a[1]], x[b[0] : b[1]], sq[b[0] : b[1]], limit)
            if a == b:
                hit.triu_(diagonal=1)  # each pair once, never the self pair
            ij = hit.nonzero().T.to(idx_dtype)
            ij[0] += a[0]
            ij[1] += b[0]
            found.append(ij)
        pairs.append(torch.cat(found, dim=1))
    return pairs


def partition(
    x: Tensor, delta: float, sq: Optional[Tensor] = None
) -> Optional[Tuple[Tensor, Tensor, Tensor, Tensor]]:
    """The cells and each row's candidate cells: ``(cell, sizes, rows, cells)``.

    ``cell[i]`` is row ``i``'s cell, ``sizes`` the cells' sizes; row ``rows[j]`` is to be
    compared with the members of cell ``cells[j]`` (a cell id at least its own). ``None``
    when the cells do not separate the rows (see the module docstring). ``sq``: the rows'
    squared norms, when the caller has them.
    """
    n, dim = x.shape
    k = max(2, n // _CELL)
    generator = torch.Generator(device=x.device).manual_seed(0)
    cell = kmeans(x, k, generator, max_iter=_PARTITION_ITER)
    sizes = torch.bincount(cell, minlength=k)
    centers = torch.zeros(k, dim, dtype=x.dtype, device=x.device).index_add_(0, cell, x)
    centers /= sizes.clamp(min=1).unsqueeze(1).to(x.dtype)
    radius = torch.zeros(k, dtype=x.dtype, device=x.device)
    block = max(1, (1 << 22) // max(dim, k))
    for s in range(0, n, block):
        dist = torch.linalg.vector_norm(x[s : s + block] - centers[cell[s : s + block]], dim=1)
        radius.scatter_reduce_(0, cell[s : s + block], dist, "amax")
    sq = sq_norms(x) if sq is None else sq
    c_sq = sq_norms(centers)
    # rounding of ||x||^2 - 2 x.c + ||c||^2: at most about D eps (||x||^2 + ||c||^2)
    slack = 8 * dim * torch.finfo(x.dtype).eps * float(sq.max() + c_sq.max())
    reach = (delta + radius).square_().add_(slack)
    rows: List[Tensor] = []
    cells: List[Tensor] = []
    count = 0
    for s in range(0, n, block):
        d2 = torch.addmm(c_sq, x[s : s + block], centers.T, alpha=-2)
        near = d2.add_(sq[s : s + block, None]) <= reach
        # a pair is compared in the larger cell id of its rows only
        near &= torch.arange(k, device=x.device) >= cell[s : s + block, None]
        i, b = near.nonzero().T
        rows.append(i.add_(s))
        cells.append(b)
        count += i.shape[0]
        if count > _MAX_CANDIDATES * n:
            return None
    cand_cell = torch.cat(cells)
    if int((sizes[cand_cell].double()).sum()) > n * n / 4:
        return None
    return cell, sizes, torch.cat(rows), cand_cell


def _partitioned_pairs(x: Tensor, delta: float) -> Optional[List[Tensor]]:
    """The pairs closer than delta, each once, one tensor per cell (``None``: no gain)."""
    sq = sq_norms(x)
    found_partition = partition(x, delta, sq)
    if found_partition is None:
        return None
    cell, sizes, cand_row, cand_cell = found_partition
    n, k = x.shape[0], sizes.shape[0]
    cand = cand_row[torch.sort(cand_cell, stable=True).indices]
    cand_ends = torch.cumsum(torch.bincount(cand_cell, minlength=k), 0).tolist()
    del cand_row, cand_cell
    members = torch.sort(cell, stable=True).indices
    member_ends = torch.cumsum(sizes, 0).tolist()
    idx_dtype = torch.int32 if n < 2**31 else torch.long
    buf = _Tiles(x, _TILE)
    pairs: List[Tensor] = []
    for b in range(k):
        mem = members[(member_ends[b - 1] if b else 0) : member_ends[b]]
        cnd = cand[(cand_ends[b - 1] if b else 0) : cand_ends[b]]
        found: List[Tensor] = []
        for ms in range(0, mem.shape[0], _TILE):
            m = mem[ms : ms + _TILE]
            xm, sq_m = x[m], sq[m]
            for cs in range(0, cnd.shape[0], _TILE):
                c = cnd[cs : cs + _TILE]
                hit = buf.hits(x[c], xm, sq_m, (delta * delta - sq[c]).unsqueeze(1))
                # within the cell each pair once (c < m), never the self pair
                hit &= (cell[c] < b).unsqueeze(1) | (c.unsqueeze(1) < m.unsqueeze(0))
                ci, mj = hit.nonzero().T
                found.append(torch.stack([c[ci], m[mj]]).to(idx_dtype))
        if found:
            pairs.append(torch.cat(found, dim=1))
    return pairs


def _csr(pairs: List[Tensor], n: int) -> Tuple[Tensor, Tensor]:
    """CSR of the symmetric graph with self loops from its pairs, each listed once.

    Row ``s`` lists ``s`` itself, then the ``j`` of the pairs ``(s, j)``, then the ``i`` of
    the pairs ``(i, s)``, each in list order. The targets are filled one block of rows at a
    time (about 1/64 of the edges each, at least ``_BLOCK_EDGES``) straight from the
    pairs, so the peak is the pairs and the targets (8 bytes per directed edge) plus one
    block's sort (about 36 bytes per edge of the block). Concatenating and sorting the
    whole edge list at once peaked at about 36 bytes per edge (see the cold-start section
    of ``docs/benchmarks.md``). ``pairs`` is emptied.
    """
    device = pairs[0].device if pairs else torch.device("cpu")
    dtype = pairs[0].dtype if pairs else torch.int32
    counts = torch.ones(n, dtype=torch.long, device=device)  # the self loops
    for p in pairs:
        counts += torch.bincount(p.reshape(-1), minlength=n)
    offsets = torch.zeros(n + 1, dtype=torch.long, device=device)
    torch.cumsum(counts, 0, out=offsets[1:])
    del counts
    n_edges = int(offsets[-1])
    targets = torch.empty(n_edges, dtype=dtype, device=device)
    block = max(_BLOCK_EDGES, -(-n_edges // 64))
    start = 0
    while start < n:
        # the rows whose edges fit in ``block`` (at least one row)
        stop = int(torch.searchsorted(offsets, offsets[start] + block, right=True)) - 1
        stop = min(n, max(stop, start + 1))
        sources = [torch.arange(start, stop, device=device, dtype=dtype)]
        ends = [sources[0]]
        for p in pairs:  # (s, j): j after s
            hit = (p[0] >= start) & (p[0] < stop)
            sources.append(p[0][hit])
            ends.append(p[1][hit])
        for p in pairs:  # (i, s): i after s
            hit = (p[1] >= start) & (p[1] < stop)
            sources.append(p[1][hit])
            ends.append(p[0][hit])
        order = torch.sort(torch.cat(sources), stable=True).indices
        targets[int(offsets[start]) : int(offsets[stop])] = torch.cat(ends)[order]
        start = stop
    pairs.clear()
    return offsets, targets

"""Which items each rank of a sharded pass processes: contiguous blocks, in rank order."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from aalearn._validation import check_int

__all__ = ["bounds", "shard_indices"]


def shard_indices(indices: Any, rank: int, world_size: int) -> np.ndarray:
    """The contiguous block of ``indices`` that rank ``rank`` of ``world_size`` processes.

    Blocks follow each other in rank order and their sizes differ by at most one
    (the first ``len(indices) % world_size`` ranks get one more item), like
    :func:`numpy.array_split`: concatenating the blocks of ranks ``0 .. world_size - 1``
    gives ``indices`` back, with no item padded in or repeated (unlike
    :class:`torch.utils.data.distributed.DistributedSampler`, which pads with
    duplicates). A rank may get an empty block when there are fewer items than ranks.

    Examples
    --------
    >>> import numpy as np
    >>> from aalearn.distributed import shard_indices
    >>> [shard_indices(np.arange(10, 17), r, 3).tolist() for r in range(3)]
    [[10, 11, 12], [13, 14], [15, 16]]
    """
    world_size = check_int(world_size, "world_size", minimum=1)
    rank = check_int(rank, "rank", minimum=0)
    if rank >= world_size:
        raise ValueError(f"Expected argument `rank` to be in [0, {world_size}), but got {rank}.")
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    arr = np.asarray(indices)
    if arr.ndim != 1:
        raise ValueError(f"Expected argument `indices` to be 1-D, but got shape {arr.shape}.")
    start, stop = bounds(arr.shape[0], world_size)[rank]
    return arr[start:stop]


def bounds(n: int, world_size: int) -> list[tuple[int, int]]:
    """The ``(start, stop)`` of each rank's block of ``n`` items (see :func:`shard_indices`)."""
    base, extra = divmod(n, world_size)
    out, start = [], 0
    for r in range(world_size):
        stop = start + base + (1 if r < extra else 0)
        out.append((start, stop))
        start = stop
    return out

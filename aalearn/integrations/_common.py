"""What the trainer integrations share: one selection, sharded when the job is distributed."""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch.distributed as dist

from aalearn._validation import check_bool, check_int
from aalearn.distributed import ShardedSampler, Timeout
from aalearn.pool import ActivePool

__all__ = ["Oracle", "check_loop_args", "label_picks", "select_sharded"]

#: Labels of the picked dataset indices, one per index (called on every rank).
Oracle = Callable[[np.ndarray], Any]


def check_loop_args(sampler: Any, pool: Any, budget: Any, oracle: Any, label: Any) -> int:
    """Check the arguments shared by the callbacks; return ``budget`` as an int."""
    if not callable(getattr(sampler, "select", None)):
        raise TypeError(
            "Expected argument `sampler` to have a select(model, pool, budget) method, but got "
            f"{type(sampler).__name__}."
        )
    if not isinstance(pool, ActivePool):
        raise TypeError(
            f"Expected argument `pool` to be an aalearn.ActivePool, but got {type(pool).__name__}."
        )
    if oracle is not None and not callable(oracle):
        raise TypeError(
            f"Expected argument `oracle` to be callable or None, but got {type(oracle).__name__}."
        )
    check_bool(label, "label")
    return check_int(budget, "budget", minimum=1)


def select_sharded(
    sampler: Any, model: Any, pool: ActivePool, budget: int, *, timeout: Timeout = None
) -> tuple[np.ndarray, int]:
    """``sampler.select``, through :class:`~aalearn.distributed.ShardedSampler` when distributed.

    Returns the picks and the number of processes that shared the selection (1 without an
    initialised process group of more than one rank).
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return ShardedSampler(sampler, timeout=timeout).select(model, pool, budget), int(
            dist.get_world_size()
        )
    return np.asarray(sampler.select(model, pool, budget)), 1


def label_picks(pool: ActivePool, picked: np.ndarray, oracle: Optional[Oracle]) -> None:
    """Label ``picked`` in ``pool``: the oracle's labels, or the dataset's own targets."""
    pool.label(picked, labels=None if oracle is None else oracle(picked.copy()))

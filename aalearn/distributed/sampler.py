"""Selection sharded across the ranks of a job: :class:`ShardedSampler`, :func:`save_on_rank0`.

:class:`ShardedSampler` makes a :class:`~aalearn.distributed.Shard` active for the
duration of the wrapped sampler's ``select``; samplers find it with
:func:`current_shard`.
"""

from __future__ import annotations

import contextvars
import datetime
import numbers
import os
from typing import Any, Optional, Union

import numpy as np
import torch.distributed as dist

from aalearn.distributed.shard import RankFailedError, Shard
from aalearn.pool import ActivePool

__all__ = ["ShardedSampler", "current_shard", "save_on_rank0"]

Timeout = Union[float, datetime.timedelta, None]


def _check_timeout(timeout: Any) -> Optional[datetime.timedelta]:
    if timeout is None or isinstance(timeout, datetime.timedelta):
        seconds = None if timeout is None else timeout.total_seconds()
    elif isinstance(timeout, numbers.Real) and not isinstance(timeout, bool):
        seconds = float(timeout)
    else:
        raise TypeError(
            f"Expected argument `timeout` to be a number of seconds, a datetime.timedelta or "
            f"None, but got {type(timeout).__name__}."
        )
    if seconds is None:
        return None
    if not seconds > 0:
        raise ValueError(f"Expected argument `timeout` to be > 0 seconds, but got {seconds}.")
    if seconds >= datetime.timedelta.max.total_seconds():  # float("inf") among them
        return None  # no limit of our own: the process group's timeout applies
    return datetime.timedelta(seconds=seconds)


_ACTIVE: contextvars.ContextVar[Optional[Shard]] = contextvars.ContextVar(
    "aalearn_shard", default=None
)


def current_shard() -> Optional[Shard]:
    """The :class:`Shard` of the sharded ``select`` running now, or ``None`` (one process).

    Examples
    --------
    >>> from aalearn.distributed import current_shard
    >>> print(current_shard())
    None
    """
    return _ACTIVE.get()


class ShardedSampler:
    """Run ``sampler`` over a pool split across the ranks of a ``torch.distributed`` job.

    Call :meth:`select` on **every** rank, with the same model weights, the same
    pool state and the same ``budget`` (the pool state, the budget and the sampler's
    configuration are checked first, with one small ``all_gather``: ranks that
    disagree raise ``ValueError`` on every rank); each rank scores only its block of the
    items (:func:`shard_indices`), the ranks exchange what the sampler needs, and
    every rank returns the same indices, those one process would select (see
    ``docs/scaling.md`` for the conditions and the bytes sent per sampler). Then
    call ``pool.label(picked)`` on every rank, and save on one
    (:func:`save_on_rank0`).

    Not to be confused with :class:`torch.utils.data.distributed.DistributedSampler`,
    which splits a ``DataLoader``'s indices for training.

    Parameters
    ----------
    sampler : aalearn.Sampler
        The sampler to run: :class:`~aalearn.UncertaintySampler` and the samplers
        whose inference goes through ``BaseSampler._collect`` are sharded; any
        other runs whole on every rank (correct, not faster).
    group : torch.distributed.ProcessGroup, optional
        The ranks that take part; default: the whole job.
    timeout : float (seconds), datetime.timedelta or None
        Longest wait for the other ranks at each collective; ``None`` (or
        ``float("inf")``) uses the process group's timeout
        (``init_process_group(timeout=...)``). Choose it longer than the slowest
        rank's inference pass.
    check : bool
        Check with one ``all_reduce`` (``16 * budget`` bytes) that every rank
        selected the same indices, and raise ``RuntimeError`` on every rank if not.

    Attributes
    ----------
    bytes_communicated_ : int
        Bytes the collectives of the last ``select`` returned to this rank (the
        gathered candidates or rows, the failure flags, the check).

    Examples
    --------
    >>> from aalearn import UncertaintySampler
    >>> from aalearn.distributed import ShardedSampler
    >>> ShardedSampler(UncertaintySampler("margin"), timeout=600)
    ShardedSampler(UncertaintySampler(method='margin'), timeout=600)
    """

    def __init__(
        self,
        sampler: Any,
        *,
        group: Any = None,
        timeout: Timeout = None,
        check: bool = True,
    ) -> None:
        self.sampler = sampler
        self.group = group
        self.timeout = timeout
        self.check = check

    def __repr__(self) -> str:
        extra = [f"{k}={getattr(self, k)!r}" for k in ("group", "timeout") if getattr(self, k)]
        if self.check is not True:
            extra.append(f"check={self.check!r}")
        return f"ShardedSampler({', '.join([repr(self.sampler), *extra])})"

    def _shard(self) -> Shard:
        if not callable(getattr(self.sampler, "select", None)):
            raise TypeError(
                f"Expected argument `sampler` to have a select(model, pool, budget) method, "
                f"but got {type(self.sampler).__name__}."
            )
        if not isinstance(self.check, bool):
            raise TypeError(
                f"Expected argument `check` to be a bool, but got {type(self.check).__name__}."
            )
        timeout = _check_timeout(self.timeout)
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "ShardedSampler needs torch.distributed: call "
                "torch.distributed.init_process_group() on every rank first (launch with "
                "torchrun, which sets RANK, WORLD_SIZE and MASTER_ADDR)."
            )
        return Shard(self.group, timeout)

    def select(self, model: Any, pool: ActivePool, budget: int) -> np.ndarray:
        """Pick ``budget`` unlabeled indices, best first; the same on every rank."""
        if current_shard() is not None:  # already inside a sharded call
            return self.sampler.select(model, pool, budget)
        shard = self._shard()
        shard.phase = f"{type(self.sampler).__name__}.select"
        shard.check_agreement(pool, budget, self.sampler)
        token = _ACTIVE.set(shard)
        try:
            picked = self.sampler.select(model, pool, budget)
        except RankFailedError:
            raise
        except Exception:
            # Tell the others, which are waiting at their next collective, then re-raise.
            try:
                shard.sync(failed=True)
            except RankFailedError:
                pass
            raise
        finally:
            _ACTIVE.reset(token)
        if self.check:
            shard.check_identical(picked)
        else:
            shard.sync()
        self.bytes_communicated_ = shard.bytes
        return np.asarray(picked)


def save_on_rank0(
    pool: ActivePool,
    path: Union[str, os.PathLike],
    *,
    group: Any = None,
    timeout: Timeout = None,
) -> None:
    """Save ``pool`` on rank 0 only, then wait until it is written (a barrier).

    Call it on every rank: rank 0 runs :meth:`ActivePool.save` (an atomic write),
    the others wait. If rank 0 fails to write, it raises its error and the others
    raise :class:`RankFailedError`. Without ``torch.distributed`` it just saves.

    Examples
    --------
    >>> import os, tempfile
    >>> from aalearn import ActivePool
    >>> from aalearn.distributed import save_on_rank0
    >>> pool = ActivePool(None, n_items=10)
    >>> pool.label([3, 4])
    >>> path = os.path.join(tempfile.mkdtemp(), "pool.npz")
    >>> save_on_rank0(pool, path)  # on every rank; rank 0 writes
    >>> restored = ActivePool(None, n_items=10)
    >>> restored.load(path)
    >>> restored.labeled_indices.tolist()
    [3, 4]
    """
    if not (dist.is_available() and dist.is_initialized()):
        pool.save(path)
        return
    shard = Shard(group, _check_timeout(timeout))
    shard.phase = "save_on_rank0"
    if shard.rank == 0:
        try:
            pool.save(path)
        except Exception:
            shard.sync(failed=True)
            raise
    shard.sync()

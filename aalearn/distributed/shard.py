"""Selection over a pool sharded across the ranks of a :mod:`torch.distributed` job.

Wrap any sampler in :class:`ShardedSampler` and call ``select`` on every rank of a
job launched with ``torchrun`` (gloo on CPUs, nccl on GPUs). Inside the call the
one inference pass of the sampler (:meth:`BaseSampler._collect
<aalearn.samplers.base.BaseSampler._collect>`, and the streaming pass of
:class:`~aalearn.UncertaintySampler`) runs on this rank's shard of the items only:

* **Top-k samplers** (uncertainty) keep the ``budget`` best candidates of their
  shard and all-gather them, ``world_size * budget`` scores and indices, then merge
  them with the same rule as one process (best first, ties by the smaller index,
  NaN last): the global top-``budget``, exactly.
* **Samplers that need every item at once** (Core-Set, AALU, adversarial) compute
  the outputs of their shard and all-gather them into the full matrices, rows in
  the single-process order; every rank then runs the same algorithm with the same
  seed on the same inputs.

Every rank returns the same indices, checked with one ``all_reduce`` before
``select`` returns, so ``pool.label(picked)`` keeps the pools identical on every
rank. See ``docs/scaling.md`` for the communication cost of each sampler and for
what happens when a rank fails.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime
import hashlib
import numbers
import os
from collections.abc import Mapping
from typing import Any, Optional, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from aalearn import functional as AF
from aalearn._validation import check_int
from aalearn.inference import InferenceOutputs, collect
from aalearn.pool import ActivePool

__all__ = [
    "RankFailedError",
    "Shard",
    "ShardedSampler",
    "current_shard",
    "save_on_rank0",
    "shard_indices",
]

#: The fields of :class:`~aalearn.inference.InferenceOutputs` gathered row-wise, in order.
_FIELDS = ("probs", "features", "losses", "mc_probs", "inputs")

Timeout = Union[float, datetime.timedelta, None]


class RankFailedError(RuntimeError):
    """Another rank raised, exited or did not answer in time during a sharded call.

    Raised on the ranks that did *not* fail, so that a job stops on every rank
    instead of hanging in a collective; the failing rank raises its own exception.
    The process group may be unusable afterwards (after a timeout it is): destroy it
    and exit.

    Examples
    --------
    >>> from aalearn.distributed import RankFailedError
    >>> issubclass(RankFailedError, RuntimeError)
    True
    """


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
    start, stop = _bounds(arr.shape[0], world_size)[rank]
    return arr[start:stop]


def _bounds(n: int, world_size: int) -> list[tuple[int, int]]:
    base, extra = divmod(n, world_size)
    out, start = [], 0
    for r in range(world_size):
        stop = start + base + (1 if r < extra else 0)
        out.append((start, stop))
        start = stop
    return out


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


def _digest(*parts: bytes) -> int:
    """A signed 64-bit digest of ``parts`` (BLAKE2b), the same in every process."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return int.from_bytes(h.digest(), "little", signed=True)


def _canonical(value: Any) -> str:
    """A text of a configuration value that is the same in every process of a job.

    ``repr`` is not: it holds memory addresses (functions, generators) and per-rank
    devices. Devices are left out (each rank may use its own GPU), callables are
    named by their qualified name, NumPy generators by their state.
    """
    if isinstance(value, (str, int, float, bool, type(None))):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__}({', '.join(_canonical(v) for v in value)})"
    if isinstance(value, Mapping):
        items = sorted((str(k), v) for k, v in value.items() if k != "device")
        return "{" + ", ".join(f"{k}: {_canonical(v)}" for k, v in items) + "}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return f"{type(value).__qualname__}{_canonical(fields)}"
    if isinstance(value, np.random.Generator):
        return f"Generator({value.bit_generator.state!r})"
    if isinstance(value, torch.device):
        return "device"
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', '')}"
    return type(value).__qualname__


def _config_text(sampler: Any) -> str:
    get_params = getattr(sampler, "get_params", None)
    params = get_params() if callable(get_params) else {}
    return f"{type(sampler).__qualname__}{_canonical(params)}"


def _fingerprint(pool: Any, budget: Any, sampler: Any) -> list[int]:
    """Digests of what every rank must agree on: the pool state, the budget, the sampler."""
    state = pool.state_dict()
    arrays = [np.ascontiguousarray(np.asarray(state[k])).tobytes() for k in sorted(state)]
    scalars = repr([(k, int(state[k])) for k in sorted(state) if np.ndim(state[k]) == 0])
    return [
        _digest(scalars.encode(), *arrays),
        _digest(repr(budget).encode()),
        _digest(_config_text(sampler).encode()),
    ]


_AGREE = ("the pool state (labeled items, labels, round)", "the budget", "the configuration")


class Shard:
    """This rank's part of a sharded ``select``: what samplers consult while it is active.

    Built by :class:`ShardedSampler` (samplers get it from :func:`current_shard`).
    A custom sampler that runs its inference through ``BaseSampler._collect`` is
    sharded without any change; one that streams its own pass can call
    :meth:`local` and :meth:`merge_topk` as :class:`~aalearn.UncertaintySampler` does.

    Every collective is preceded by an ``all_reduce`` of one failure flag per rank,
    and a rank whose sampler raises sends its flag set instead of its next
    collective, so the other ranks raise :class:`RankFailedError` at that point
    instead of waiting. Each wait is bounded by ``timeout`` (or the process group's).

    Examples
    --------
    In a sampler's ``_select``, as :class:`~aalearn.UncertaintySampler` does:

    >>> from aalearn.distributed import current_shard
    >>> shard = current_shard()  # this rank's Shard inside ShardedSampler.select
    >>> shard is None  # not in a sharded call here: score every item
    True
    """

    def __init__(self, group: Any = None, timeout: Optional[datetime.timedelta] = None) -> None:
        self.group = group
        self.timeout = timeout
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        backend = str(dist.get_backend(group))
        if backend == "nccl":
            self.device = torch.device("cuda", torch.cuda.current_device())
        else:
            self.device = torch.device("cpu")
        #: Bytes of the results of this rank's collectives since construction (what an
        #: ``all_gather`` returns, the reduced tensor of an ``all_reduce``).
        self.bytes = 0
        self.phase = "select"

    def __repr__(self) -> str:
        return f"Shard(rank={self.rank}, world_size={self.world_size})"

    # ---------------------------------------------------------------- protocol
    def _wait(self, work: Any, what: str) -> None:
        try:
            if self.timeout is None:
                work.wait()
            else:
                work.wait(timeout=self.timeout)
        except RuntimeError as err:
            limit = "the process group's timeout" if self.timeout is None else self.timeout
            raise RankFailedError(
                f"aalearn.distributed: rank {self.rank} of {self.world_size} gave up waiting "
                f"for the other ranks ({what}, during {self.phase}; limit: {limit}): {err}. "
                "Another rank probably failed outside the sharded select, exited, or is stuck."
            ) from err

    def sync(self, failed: bool = False) -> None:
        """Exchange one failure flag per rank; raise :class:`RankFailedError` if another failed.

        A rank that passes ``failed=True`` returns normally after telling the
        others (it re-raises its own exception).
        """
        flags = torch.zeros(self.world_size, dtype=torch.int32, device=self.device)
        if failed:
            flags[self.rank] = 1
        self._wait(dist.all_reduce(flags, group=self.group, async_op=True), "failure flags")
        self.bytes += flags.numel() * flags.element_size()
        bad = flags.nonzero().flatten().tolist()
        if not failed and bad:
            raise RankFailedError(
                f"aalearn.distributed: rank(s) {bad} of {self.world_size} raised during "
                f"{self.phase}; rank {self.rank} stops too. The cause is in the traceback of "
                f"rank {bad[0]}."
            )

    def _all_gather(self, tensor: torch.Tensor, what: str) -> list[torch.Tensor]:
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        self._wait(dist.all_gather(parts, tensor, group=self.group, async_op=True), what)
        self.bytes += self.world_size * tensor.numel() * tensor.element_size()
        return parts

    def check_agreement(self, pool: Any, budget: Any, sampler: Any) -> None:
        """Raise on every rank unless all ranks hold the same pool state, budget and sampler.

        One ``all_gather`` of four int64 per rank (a failure flag and three 64-bit
        digests: :meth:`ActivePool.state_dict`, ``budget``, the sampler's parameters
        less their device), before any other collective: ranks that disagree would
        otherwise exchange tensors of different shapes (gloo aborts the process) or
        shards of different pools (wrong picks, the same on every rank).
        """
        mine = torch.zeros(4, dtype=torch.int64)
        error: Optional[BaseException] = None
        try:
            mine[1:] = torch.tensor(_fingerprint(pool, budget, sampler), dtype=torch.int64)
        except Exception as err:  # tell the others instead of leaving them waiting
            mine[0], error = 1, err
        parts = self._all_gather(mine.to(self.device), "the agreement check")
        table = torch.stack(parts).cpu()
        if error is not None:
            raise error
        failed = table[:, 0].nonzero().flatten().tolist()
        if failed:
            raise RankFailedError(
                f"aalearn.distributed: rank(s) {failed} of {self.world_size} raised before "
                f"{self.phase}; rank {self.rank} stops too. The cause is in the traceback of "
                f"rank {failed[0]}."
            )
        for column, what in enumerate(_AGREE, start=1):
            values = table[:, column]
            if bool((values != values[0]).any()):
                groups: dict[int, list[int]] = {}
                for rank, v in enumerate(values.tolist()):
                    groups.setdefault(v, []).append(rank)
                raise ValueError(
                    f"aalearn.distributed: the ranks disagree on {what} before {self.phase}: "
                    f"ranks {sorted(groups.values())} hold different ones (this is rank "
                    f"{self.rank}, budget {budget!r}). Every rank must call select with the "
                    "same pool state, budget and sampler configuration: load the same pool "
                    "state on every rank and label the same picks on every rank."
                )

    # ------------------------------------------------------------------ helpers
    def local(self, indices: np.ndarray) -> np.ndarray:
        """This rank's block of ``indices`` (:func:`shard_indices`)."""
        return shard_indices(indices, self.rank, self.world_size)

    def collect(
        self,
        model: nn.Module,
        dataset: Dataset,
        indices: np.ndarray,
        *,
        labels: Optional[np.ndarray] = None,
        **kwargs: Any,
    ) -> InferenceOutputs:
        """:func:`aalearn.inference.collect` over ``indices``, split across the ranks.

        Each rank runs the pass over its block, then the blocks are all-gathered
        (padded to the largest block, trimmed after): every rank gets the outputs of
        all ``indices`` in their order, on its inference device. With fewer items
        than ranks, every rank runs the whole (tiny) pass itself.
        """
        indices = np.asarray(indices, dtype=np.int64)
        n = indices.shape[0]
        if n < self.world_size:
            return collect(model, dataset, indices, labels=labels, **kwargs)
        bounds = _bounds(n, self.world_size)
        start, stop = bounds[self.rank]
        lab = None if labels is None else np.asarray(labels)[start:stop]
        out = collect(model, dataset, indices[start:stop], labels=lab, **kwargs)
        rows = bounds[0][1] - bounds[0][0]  # the first block is the largest
        # Everything that can fail locally happens before the flags: after them, only
        # collectives run, the same ones on every rank.
        padded: dict[str, tuple[torch.Tensor, torch.device]] = {}
        for name in _FIELDS:
            t = getattr(out, name)
            if t is None:
                continue
            buf = torch.zeros((rows, *t.shape[1:]), dtype=t.dtype, device=self.device)
            buf[: t.shape[0]] = t
            padded[name] = (buf, t.device)
        self.sync()
        result = InferenceOutputs(indices=indices)
        for name, (buf, device) in padded.items():
            parts = self._all_gather(buf, name)
            full = torch.cat([p[: b - a] for p, (a, b) in zip(parts, bounds)])
            setattr(result, name, full.to(device))
        return result

    def merge_topk(self, scores: torch.Tensor, indices: torch.Tensor, k: int) -> torch.Tensor:
        """The global top-``k`` indices from each rank's local top-``k`` candidates.

        All-gathers ``k`` scores (``float32``) and ``k`` indices (``int64``) per rank,
        padding a shorter list with index ``-1``, and merges them with
        :func:`aalearn.functional.topk_indices`, the rule of
        :class:`~aalearn.functional.StreamingTopK`: the result (best first, on the
        device of ``indices``) is the one a single process gets over all the items.
        Scores are compared in ``float32``, the dtype of every built-in score.
        """
        m = int(indices.shape[0])
        s = torch.full((k,), float("nan"), dtype=torch.float32, device=self.device)
        i = torch.full((k,), -1, dtype=torch.int64, device=self.device)
        s[:m] = scores[:k].to(self.device, torch.float32)
        i[:m] = indices[:k].to(self.device, torch.int64)
        self.sync()
        all_s = torch.cat(self._all_gather(s, "top-k scores"))
        all_i = torch.cat(self._all_gather(i, "top-k indices"))
        keep = all_i >= 0
        _, top = AF.topk_indices(all_s[keep], all_i[keep], k, validate_args=False)
        return top.to(indices.device)

    def check_identical(self, picked: np.ndarray) -> None:
        """Raise on every rank unless every rank selected exactly ``picked``."""
        t = torch.from_numpy(np.ascontiguousarray(picked, dtype=np.int64)).to(self.device)
        both = torch.cat([t, -t])
        self.sync()
        work = dist.all_reduce(both, op=dist.ReduceOp.MAX, group=self.group, async_op=True)
        self._wait(work, "the check of the selection")
        self.bytes += both.numel() * both.element_size()
        high, low = both[: t.numel()], -both[t.numel() :]
        if not bool(torch.equal(high, low)):
            raise RuntimeError(
                "aalearn.distributed: the ranks selected different indices, so their pools "
                "would diverge. The sampler is not deterministic across ranks: same "
                "random_state on every rank? Non-deterministic kernels (GPU atomics) in its "
                "selector training? See torch.use_deterministic_algorithms."
            )


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

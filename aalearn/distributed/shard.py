"""This rank's part of a sharded ``select``: the :class:`Shard` and its collectives.

A :class:`Shard` is active (:func:`~aalearn.distributed.current_shard`) while
:class:`~aalearn.distributed.ShardedSampler` runs the wrapped sampler; the inference
plumbing of :class:`~aalearn.BaseSampler` consults it to run its pass over this
rank's block and gather the rows (:meth:`Shard.collect`) or merge the ranks' top-k
candidates (:meth:`Shard.merge_topk`).
"""

from __future__ import annotations

import datetime
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from aalearn import functional as AF
from aalearn.distributed.agreement import AGREE, fingerprint
from aalearn.distributed.partition import bounds, shard_indices
from aalearn.inference import OUTPUT_FIELDS, InferenceConfig, InferenceOutputs, PassRequest
from aalearn.inference.passes import collect_pass

__all__ = ["RankFailedError", "Shard"]


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
            mine[1:] = torch.tensor(fingerprint(pool, budget, sampler), dtype=torch.int64)
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
        for column, what in enumerate(AGREE, start=1):
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
        request: PassRequest,
        cfg: InferenceConfig,
        *,
        labels: Optional[np.ndarray] = None,
    ) -> InferenceOutputs:
        """:func:`aalearn.collect` of ``request`` with ``cfg`` over ``indices``, split across ranks.

        Each rank runs the pass over its block, then the blocks are all-gathered
        (padded to the largest block, trimmed after): every rank gets the outputs of
        all ``indices`` in their order, on its inference device. With fewer items
        than ranks, every rank runs the whole (tiny) pass itself.
        """
        indices = np.asarray(indices, dtype=np.int64)
        n = indices.shape[0]
        if n < self.world_size:
            return collect_pass(model, dataset, indices, request, cfg, labels)
        blocks = bounds(n, self.world_size)
        start, stop = blocks[self.rank]
        lab = None if labels is None else np.asarray(labels)[start:stop]
        out = collect_pass(model, dataset, indices[start:stop], request, cfg, lab)
        rows = blocks[0][1] - blocks[0][0]  # the first block is the largest
        # Everything that can fail locally happens before the flags: after them, only
        # collectives run, the same ones on every rank.
        padded: dict[str, tuple[torch.Tensor, torch.device]] = {}
        for name in OUTPUT_FIELDS:
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
            full = torch.cat([p[: b - a] for p, (a, b) in zip(parts, blocks)])
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

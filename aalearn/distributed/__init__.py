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

from aalearn.distributed.partition import shard_indices
from aalearn.distributed.sampler import ShardedSampler, Timeout, current_shard, save_on_rank0
from aalearn.distributed.shard import RankFailedError, Shard

__all__ = [
    "RankFailedError",
    "Shard",
    "ShardedSampler",
    "Timeout",
    "current_shard",
    "save_on_rank0",
    "shard_indices",
]

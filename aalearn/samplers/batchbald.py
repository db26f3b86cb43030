"""BatchBALD sampling: the batch of largest joint mutual information (Kirsch et al., 2019)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Optional, Union

import numpy as np
from torch import nn

from aalearn._validation import Constraint, Int, RandomState, torch_generator
from aalearn.functional.batchbald_greedy import batchbald
from aalearn.inference import InferenceConfig
from aalearn.mc_dropout import consistent_mc_dropout, dropout_modules
from aalearn.pool import ActivePool
from aalearn.samplers.base import BaseSampler

__all__ = ["BatchBALDSampler"]


class BatchBALDSampler(BaseSampler):
    """Pick the batch whose labels tell the most about the model, jointly.

    Kirsch, van Amersfoort and Gal (NeurIPS 2019). One inference pass over the
    unlabeled pool runs ``mc_samples`` MC-dropout passes per batch under
    :func:`aalearn.mc_dropout.consistent_mc_dropout`, so the ``k``-th pass uses
    the same dropout masks for every item (two copies of an image get the same
    ``mc_samples`` predictions, and BatchBALD sees that the second adds nothing new).
    :func:`aalearn.functional.batchbald` then picks greedily by joint mutual
    information. The model needs dropout layers (any ``nn.Dropout*``); they are
    patched during the pass and restored exactly.

    Memory: the ``(N, mc_samples, C)`` probabilities on the device plus the joint's
    ``(mc_samples, num_samples)`` configurations; compute grows with
    ``budget * N * num_samples``, so for large pools keep ``max_candidates``
    (the top BALD items) in the low thousands.

    Parameters
    ----------
    mc_samples : int
        ``K``, consistent MC-dropout passes per item.
    num_samples : int
        Label configurations of the joint (exact while ``C^n`` fits, sampled beyond).
    max_candidates : int, optional
        Pre-filter: only the top ``max_candidates`` items by BALD score are
        candidates; ``None`` keeps every unlabeled item.
    inference : aalearn.InferenceConfig, mapping or None
        The inference pass (see :class:`~aalearn.InferenceConfig`).
    random_state : int, numpy.random.Generator or None
        Seed of the dropout masks and of the sampled configurations.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> from aalearn import ActivePool, BatchBALDSampler
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    >>> pool = ActivePool(TensorDataset(torch.randn(50, 4), torch.arange(50) % 3))
    >>> pool.label([0, 1, 2])  # a model trained on these labels (see docs/zero-labels.md)
    >>> sampler = BatchBALDSampler(mc_samples=8, inference={"device": "cpu"}, random_state=0)
    >>> sampler
    BatchBALDSampler(mc_samples=8, inference={'device': 'cpu'}, random_state=0)
    >>> picked = sampler.select(model, pool, budget=4)
    >>> len(set(picked.tolist())), bool((picked == sampler.select(model, pool, 4)).all())
    (4, True)
    """

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "mc_samples": Int(1),
        "num_samples": Int(1),
        "max_candidates": Int(1, none=True),
    }
    _test_params = (
        {"mc_samples": 4, "num_samples": 100},
        {"mc_samples": 4, "num_samples": 100, "max_candidates": 30},
    )

    def __init__(
        self,
        *,
        mc_samples: int = 20,
        num_samples: int = 10_000,
        max_candidates: Optional[int] = None,
        inference: Union[InferenceConfig, Mapping[str, Any], None] = None,
        random_state: RandomState = None,
    ) -> None:
        super().__init__(inference=inference, random_state=random_state)
        self.mc_samples = mc_samples
        self.num_samples = num_samples
        self.max_candidates = max_candidates

    def _select(
        self, model: nn.Module, pool: ActivePool, budget: int, rng: np.random.Generator
    ) -> np.ndarray:
        if not dropout_modules(model):
            raise ValueError(
                "BatchBALDSampler needs MC dropout, but the model has no dropout layer."
            )
        unlabeled = pool.unlabeled_indices
        seed = int(rng.integers(0, 2**63 - 1))
        with consistent_mc_dropout(model, self.mc_samples, seed=seed):
            out = self._collect(
                model, pool, unlabeled, rng=rng, probs=False, mc_samples=self.mc_samples
            )
        assert out.mc_probs is not None
        max_candidates = self.max_candidates
        if max_candidates is not None:
            max_candidates = max(budget, max_candidates)
        picks = batchbald(
            out.mc_probs,
            budget,
            num_samples=self.num_samples,
            max_candidates=max_candidates,
            generator=torch_generator(rng, out.mc_probs.device),
        )
        return unlabeled[picks.cpu().numpy()]

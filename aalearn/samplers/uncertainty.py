"""Uncertainty sampling: entropy, margin, least confidence and BALD."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Union

import numpy as np
import torch
from torch import nn

from aalearn import functional as AF
from aalearn._validation import Constraint, Int, Options, RandomState
from aalearn.inference import InferenceConfig, InferenceOutputs
from aalearn.mc_dropout import dropout_modules
from aalearn.pool import ActivePool
from aalearn.samplers.base import BaseSampler

__all__ = ["UncertaintySampler"]


class UncertaintySampler(BaseSampler):
    """Pick the unlabeled items the model is least sure about.

    One streaming inference pass over the unlabeled pool; each batch is scored
    with a kernel of :mod:`aalearn.functional` and merged into a running top-k
    (:class:`aalearn.functional.StreamingTopK`), so memory is ``O(budget)`` plus
    one batch, whatever the pool size. Ties break by the smaller dataset index.

    Non-finite model outputs (NaN or inf probabilities, or MC-dropout samples for
    BALD) raise ``ValueError`` naming the items (see ``docs/reliability.md``).

    Parameters
    ----------
    method : {"entropy", "margin", "least_confidence", "bald"}
        The score (higher = more informative): predictive entropy, ``-(p1 - p2)``,
        ``1 - max p``, or BALD's mutual information from ``mc_samples`` MC-dropout
        passes (dropout layers on, batch norm in eval mode). BALD needs a model with
        dropout layers.
    mc_samples : int
        Stochastic passes for ``"bald"`` (ignored otherwise).
    inference : aalearn.InferenceConfig, mapping or None
        The inference pass (see :class:`~aalearn.InferenceConfig`); ``target_fn`` is
        not used.
    random_state : int, numpy.random.Generator or None
        Seeds the dropout masks of BALD.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> from aalearn import ActivePool, UncertaintySampler
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
    >>> pool = ActivePool(TensorDataset(torch.randn(50, 4), torch.arange(50) % 3))
    >>> pool.label([0, 1, 2])  # a model trained on these labels (see docs/zero-labels.md)
    >>> sampler = UncertaintySampler("entropy", inference={"batch_size": 16, "device": "cpu"})
    >>> sampler  # the repr shows the arguments that differ from the defaults
    UncertaintySampler(inference={'batch_size': 16, 'device': 'cpu'})
    >>> picked = sampler.select(model, pool, budget=5)
    >>> len(picked), len(set(picked.tolist()))
    (5, 5)
    """

    methods: ClassVar[tuple[str, ...]] = ("entropy", "margin", "least_confidence", "bald")
    ranking = True
    _test_params = (*({"method": m} for m in methods[:3]), {"method": "bald", "mc_samples": 4})

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "method": Options(methods),
        "mc_samples": Int(1),
    }

    def __init__(
        self,
        method: str = "entropy",
        *,
        mc_samples: int = 20,
        inference: Union[InferenceConfig, Mapping[str, Any], None] = None,
        random_state: RandomState = None,
    ) -> None:
        super().__init__(inference=inference, random_state=random_state)
        self.method = method
        self.mc_samples = mc_samples

    def _score_batch(self, out: InferenceOutputs) -> torch.Tensor:
        if self.method == "bald":
            assert out.mc_probs is not None
            return AF.bald(out.mc_probs, validate_args=False)
        assert out.probs is not None
        kernel = {
            "entropy": AF.entropy,
            "margin": AF.margin,
            "least_confidence": AF.least_confidence,
        }
        return kernel[self.method](out.probs, validate_args=False)

    def _what(self, model: nn.Module) -> dict[str, Any]:
        """What the pass must produce for ``method``: probabilities, or MC samples only."""
        if self.method != "bald":
            return {"probs": True}
        if not dropout_modules(model):
            raise ValueError("method='bald' needs MC dropout, but the model has no dropout layer.")
        return {"probs": False, "mc_samples": self.mc_samples}

    def _score(
        self, model: Any, pool: ActivePool, indices: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Scores of ``indices``, higher = more informative (see :meth:`score`)."""
        return self._score_stream(
            model, pool, indices, self._score_batch, rng=rng, **self._what(model)
        )

    def _select(
        self, model: Any, pool: ActivePool, budget: int, rng: np.random.Generator
    ) -> np.ndarray:
        return self._select_topk(
            model, pool, budget, self._score_batch, rng=rng, **self._what(model)
        )

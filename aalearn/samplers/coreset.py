"""Core-Set sampling: k-center greedy on the task model's features."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Optional, Union

import numpy as np
import torch
from torch import nn

from aalearn._validation import Constraint, Int, Options, RandomState
from aalearn.functional.coreset import _METRICS, k_center_greedy
from aalearn.inference import InferenceConfig
from aalearn.pool import ActivePool
from aalearn.samplers.base import BaseSampler

__all__ = ["CoreSetSampler"]


class CoreSetSampler(BaseSampler):
    """Pick a core set: the unlabeled items farthest from everything labeled or picked.

    Sener and Savarese (ICLR 2018): one inference pass collects the features of the
    labeled and unlabeled items together, then
    :func:`aalearn.functional.k_center_greedy` runs with the labeled items as the
    initial centers. The picks come back in the order chosen, so the first one is
    the farthest from the labeled set. Ties go to the smaller dataset index. A pool
    with nothing labeled is refused (see ``docs/zero-labels.md``).
    The selection is deterministic; ``random_state`` is not used.

    Non-finite features (NaN or inf model outputs) raise ``ValueError`` naming
    the items (see ``docs/reliability.md``).

    Memory is the ``(n_labeled + n_unlabeled, D)`` feature matrix on ``device``
    plus ``O(N)`` for the greedy search (see :func:`~aalearn.functional.k_center_greedy`).

    Parameters
    ----------
    chunk_size : int, optional
        Rows per block of the distance computations; ``None`` picks a size for the
        device (see :func:`~aalearn.functional.k_center_greedy`).
    metric : {"euclidean", "cosine"}
        Distance between feature vectors.
    inference : aalearn.InferenceConfig, mapping or None
        The inference pass (see :class:`~aalearn.InferenceConfig`); its
        ``feature_layer``, ``feature_source`` and ``feature_pooling`` say which features
        (default: the input of the last ``nn.Linear`` called, the classifier's input).
        ``target_fn`` is not used.
    random_state : int, numpy.random.Generator or None
        Not used (the selection is deterministic); accepted for a uniform interface.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> from aalearn import ActivePool
    >>> from aalearn.samplers.coreset import CoreSetSampler
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    >>> pool = ActivePool(TensorDataset(torch.randn(50, 4), torch.arange(50) % 3))
    >>> pool.label([0, 1, 2])
    >>> sampler = CoreSetSampler(inference={"batch_size": 16, "device": "cpu"})
    >>> sampler
    CoreSetSampler(inference={'batch_size': 16, 'device': 'cpu'})
    >>> picked = sampler.select(model, pool, budget=5)
    >>> len(picked), len(set(picked.tolist())), bool(pool.labeled_mask[picked].any())
    (5, 5, False)
    """

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "chunk_size": Int(1, none=True),
        "metric": Options(_METRICS),
    }
    ranking = True

    def __init__(
        self,
        *,
        chunk_size: Optional[int] = None,
        metric: str = "euclidean",
        inference: Union[InferenceConfig, Mapping[str, Any], None] = None,
        random_state: RandomState = None,
    ) -> None:
        super().__init__(inference=inference, random_state=random_state)
        self.chunk_size = chunk_size
        self.metric = metric

    def _select(
        self, model: nn.Module, pool: ActivePool, budget: int, rng: np.random.Generator
    ) -> np.ndarray:
        unlabeled = pool.unlabeled_indices
        # Unlabeled first, in increasing dataset order: position ties are index ties.
        indices = np.concatenate([unlabeled, pool.labeled_indices])
        out = self._collect(model, pool, indices, probs=False, features=True)
        assert out.features is not None
        centers = torch.zeros(indices.shape[0], dtype=torch.bool, device=out.features.device)
        centers[unlabeled.shape[0] :] = True
        picks = k_center_greedy(
            out.features, centers, budget, chunk_size=self.chunk_size, metric=self.metric
        )
        return indices[picks.cpu().numpy()]

"""BADGE sampling: diverse, uncertain gradient embeddings (Ash et al., ICLR 2020)."""

from __future__ import annotations

import numpy as np
from torch import nn

from aalearn._validation import torch_generator
from aalearn.functional.badge_seeding import badge
from aalearn.pool import ActivePool
from aalearn.samplers.base import BaseSampler

__all__ = ["BADGESampler"]


class BADGESampler(BaseSampler):
    """Pick a batch that is both uncertain and diverse: k-means++ on gradient embeddings.

    Ash et al. (ICLR 2020). One inference pass over the unlabeled pool collects the
    class probabilities and the features (``inference.feature_layer``) together;
    :func:`aalearn.functional.badge` then runs k-means++ seeding on the gradient
    embeddings ``(onehot(argmax p) - p) x h`` with factorised distances, so the
    ``(N, C * D)`` embedding is never built: memory is ``O(N (C + D))`` on the
    device. The first pick is the item with the largest gradient norm; the others are
    drawn with probability proportional to the squared distance to the nearest pick
    (``random_state`` seeds the draws), so copies of a picked item are not picked
    again while anything else is left.

    Parameters
    ----------
    inference : aalearn.InferenceConfig, mapping or None
        The inference pass (see :class:`~aalearn.InferenceConfig`). The features
        must be the input of the classifier layer, the layer whose weights the
        gradient embedding is of: the default (the input of the last ``nn.Linear``).
    random_state : int, numpy.random.Generator or None
        Seed of the ``D^2`` draws.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> from aalearn import ActivePool, BADGESampler
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    >>> pool = ActivePool(TensorDataset(torch.randn(50, 4), torch.arange(50) % 3))
    >>> pool.label([0, 1, 2])  # a model trained on these labels (see docs/zero-labels.md)
    >>> sampler = BADGESampler(inference={"device": "cpu"}, random_state=0)
    >>> sampler
    BADGESampler(inference={'device': 'cpu'}, random_state=0)
    >>> picked = sampler.select(model, pool, budget=5)
    >>> len(set(picked.tolist())), bool((picked == sampler.select(model, pool, 5)).all())
    (5, True)
    """

    def _select(
        self, model: nn.Module, pool: ActivePool, budget: int, rng: np.random.Generator
    ) -> np.ndarray:
        unlabeled = pool.unlabeled_indices
        out = self._collect(model, pool, unlabeled, probs=True, features=True)
        assert out.features is not None and out.probs is not None
        generator = torch_generator(rng, out.features.device)
        picks = badge(out.features, out.probs, budget, generator=generator)
        return unlabeled[picks.cpu().numpy()]

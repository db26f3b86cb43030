"""BADGE sampling: diverse, uncertain gradient embeddings (Ash et al., ICLR 2020)."""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from aalearn._validation import Device, RandomState, torch_generator
from aalearn.functional.badge import badge
from aalearn.pool import ActivePool
from aalearn.samplers.base import BaseSampler

__all__ = ["BADGESampler"]


class BADGESampler(BaseSampler):
    """Pick a batch that is both uncertain and diverse: k-means++ on gradient embeddings.

    Ash et al. (ICLR 2020). One inference pass over the unlabeled pool collects the
    class probabilities and the features (the input of ``feature_layer``) together;
    :func:`aalearn.functional.badge` then runs k-means++ seeding on the gradient
    embeddings ``(onehot(argmax p) - p) x h`` with factorised distances, so the
    ``(N, C * D)`` embedding is never built: memory is ``O(N (C + D))`` on the
    device. The first pick is the item with the largest gradient norm; the others are
    drawn with probability proportional to the squared distance to the nearest pick
    (``random_state`` seeds the draws), so copies of a picked item are not picked
    again while anything else is left.

    Parameters
    ----------
    feature_layer : str or "auto"
        Module whose *input* is the feature vector; ``"auto"`` is the last
        :class:`torch.nn.Linear` (the classifier, whose weights the gradient is of).
    batch_size, device, num_workers, random_state, input_fn, autocast
        See :class:`~aalearn.samplers.base.BaseSampler`.

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
    >>> sampler = BADGESampler(device="cpu", random_state=0)
    >>> sampler
    BADGESampler(device='cpu', random_state=0)
    >>> picked = sampler.select(model, pool, budget=5)
    >>> len(set(picked.tolist())), bool((picked == sampler.select(model, pool, 5)).all())
    (5, True)
    """

    def __init__(
        self,
        *,
        feature_layer: Optional[str] = "auto",
        batch_size: int = 256,
        device: Device = None,
        num_workers: int = 0,
        random_state: RandomState = None,
        input_fn: Optional[Callable[[Any], torch.Tensor]] = None,
        autocast: bool = False,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            device=device,
            num_workers=num_workers,
            random_state=random_state,
            input_fn=input_fn,
            autocast=autocast,
        )
        self.feature_layer = feature_layer

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.feature_layer is not None and not isinstance(self.feature_layer, str):
            raise TypeError(
                f"Expected argument `feature_layer` to be a module name or 'auto', but got "
                f"{type(self.feature_layer).__name__}."
            )

    def _select(
        self, model: nn.Module, pool: ActivePool, budget: int, rng: np.random.Generator
    ) -> np.ndarray:
        unlabeled = pool.unlabeled_indices
        out = self._collect(
            model, pool, unlabeled, probs=True, features=True, feature_layer=self.feature_layer
        )
        assert out.features is not None and out.probs is not None
        generator = torch_generator(rng, out.features.device)
        picks = badge(out.features, out.probs, budget, generator=generator)
        return unlabeled[picks.cpu().numpy()]

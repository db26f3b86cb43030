"""Uniform random sampling: the baseline every method is measured against."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

import numpy as np

from aalearn._validation import RandomState
from aalearn.inference import InferenceConfig
from aalearn.pool import ActivePool
from aalearn.samplers.base import BaseSampler

__all__ = ["RandomSampler"]


class RandomSampler(BaseSampler):
    """Pick ``budget`` unlabeled items uniformly at random, without replacement.

    Needs no model (``select(None, pool, budget)`` works) and runs no inference.

    Parameters
    ----------
    inference : aalearn.InferenceConfig, mapping or None
        Not used (no inference); accepted for a uniform interface.
    random_state : int, numpy.random.Generator or None
        Seed; the same seed gives the same picks for the same pool.

    Examples
    --------
    >>> from aalearn import ActivePool, RandomSampler
    >>> pool = ActivePool(None, n_items=100)
    >>> sampler = RandomSampler(random_state=0)
    >>> sampler
    RandomSampler(random_state=0)
    >>> picked = sampler.select(None, pool, budget=5)
    >>> picked.shape, picked.dtype
    ((5,), dtype('int64'))
    >>> bool((picked == sampler.select(None, pool, budget=5)).all())
    True
    """

    requires_model = False

    def __init__(
        self,
        *,
        inference: Union[InferenceConfig, Mapping[str, Any], None] = None,
        random_state: RandomState = None,
    ) -> None:
        super().__init__(inference=inference, random_state=random_state)

    def _select(
        self, model: Any, pool: ActivePool, budget: int, rng: np.random.Generator
    ) -> np.ndarray:
        return pool.random_unlabeled(budget, random_state=rng)

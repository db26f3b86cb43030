"""Uniform random sampling: the baseline every method is measured against."""

from __future__ import annotations

from typing import Any

import numpy as np

from aalearn.pool import ActivePool
from aalearn.samplers.base import BaseSampler

__all__ = ["RandomSampler"]


class RandomSampler(BaseSampler):
    """Pick ``budget`` unlabeled items uniformly at random, without replacement.

    Needs no model (``select(None, pool, budget)`` works) nor any label, and runs no
    inference.

    It reads no model output, so the non-finite policy does not apply to it.

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
    needs_labels = False

    def _select(
        self, model: Any, pool: ActivePool, budget: int, rng: np.random.Generator
    ) -> np.ndarray:
        return pool.random_unlabeled(budget, random_state=rng)

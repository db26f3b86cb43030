"""Stochastic batch acquisition: sample a batch from any sampler's scores (Kirsch et al., 2023)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from aalearn._finite import check_finite
from aalearn._validation import Constraint, Options, RandomState, Real, Rule
from aalearn.functional.topk import topk_indices
from aalearn.pool import ActivePool
from aalearn.samplers.base import BaseSampler
from aalearn.samplers.uncertainty import UncertaintySampler

__all__ = ["StochasticBatchSampler"]


def _check_scorer(value: Any, name: str) -> Any:
    """An object whose ``score(model, pool, indices=None)`` gives one score per item."""
    has = getattr(value, "has_score", None)
    if not (callable(getattr(value, "score", None)) and has is not False):
        raise TypeError(
            f"Expected argument `{name}` to have a score(model, pool, indices=None) method "
            f"giving one score per item, but got {type(value).__name__}."
        )
    return value


def _log_weights(scores: np.ndarray, mode: str, beta: float) -> np.ndarray:
    """Unnormalised log-probabilities of the draw for each score (float64)."""
    s = np.asarray(scores, dtype=np.float64)
    if mode == "power":
        if (s < 0).any():
            raise ValueError(
                "Expected the wrapped sampler's scores to be >= 0 for mode='power', but the "
                f"smallest is {s.min()}: use mode='softmax' or 'softrank' for signed scores."
            )
        with np.errstate(divide="ignore"):
            return np.asarray(beta * np.log(s))
    if mode == "softmax":
        return beta * s
    # softrank: rank 1 is the best item under the one ranking order (ties by position).
    _, order = topk_indices(torch.from_numpy(s), torch.arange(s.size), s.size, validate_args=False)
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order.numpy()] = np.arange(1, s.size + 1)
    return np.asarray(-beta * np.log(ranks))


class StochasticBatchSampler(BaseSampler):
    r"""Draw the batch at random, with probabilities from another sampler's scores.

    Kirsch, Farquhar, Atighehchian, Jesson, Branchaud-Charron and Gal, "Stochastic
    batch acquisition: a simple baseline for deep active learning" (TMLR 2023): top-k
    on per-item scores fills a batch with near-duplicates; sampling the batch with
    probabilities that grow with the score keeps most of the informativeness and adds
    diversity, at the cost of one scoring pass. With :math:`s_i` the scores of
    ``sampler.score(model, pool)`` (higher = more informative) and ``r_i`` the rank of
    item ``i`` (1 = highest score):

    - ``mode="softrank"`` (the default): :math:`p_i \propto r_i^{-\beta}`;
    - ``mode="power"``: :math:`p_i \propto s_i^\beta` (scores must be ``>= 0``);
    - ``mode="softmax"``: :math:`p_i \propto \exp(\beta s_i)`.

    Soft-rank is the default because it is the one law that works for every sampler
    that scores: it depends only on the order of the scores, so their sign and scale do
    not matter (margin's scores are ``<= 0``, which power cannot take; AALU's are sigmoid
    outputs crowded near 1, whose powers are almost uniform; softmax depends on the
    scores' units through ``beta``). Power is the law of Kirsch et al.'s PowerBALD and
    needs scores ``>= 0`` (entropy, BALD, least confidence); ask for it by name.

    ``budget`` items are drawn from these probabilities without replacement, with
    the Gumbel-top-k trick (Kool et al., 2019): ``topk(log p_i + G_i)`` with
    independent standard Gumbel noise ``G_i`` from ``random_state``, which is ``O(N)``
    and has the law of successive draws without replacement. Items of probability 0
    (``s_i = 0`` in power mode) come last, by dataset index. ``beta = 0`` is uniform
    sampling; ``beta -> inf`` tends to top-k.

    **PowerBALD** (baal's name) is ``StochasticBatchSampler(UncertaintySampler("bald"),
    mode="power")``; power entropy is the same with ``"entropy"``.

    Parameters
    ----------
    sampler : object
        Any object with ``score(model, pool, indices=None)`` returning one float per
        unlabeled item (see :meth:`aalearn.UncertaintySampler.score`). Its own
        ``random_state`` (e.g. BALD's dropout masks) stays its own.
    mode : {"softrank", "power", "softmax"}
        The law above; ``"softrank"`` by default (any scores), ``"power"`` for
        PowerBALD.
    beta : float
        Inverse temperature, ``>= 0``.
    random_state : int, numpy.random.Generator or None
        Seed of the Gumbel noise.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> from aalearn import ActivePool, StochasticBatchSampler, UncertaintySampler
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    >>> pool = ActivePool(TensorDataset(torch.randn(50, 4), torch.arange(50) % 3))
    >>> bald = UncertaintySampler("bald", random_state=0)
    >>> power_bald = StochasticBatchSampler(bald, mode="power", random_state=0)
    >>> power_bald.mode, power_bald.beta
    ('power', 1.0)
    >>> margin = StochasticBatchSampler(UncertaintySampler("margin"), random_state=0)
    >>> margin.mode, margin.select(model, pool, budget=3).shape  # margin's scores are <= 0
    ('softrank', (3,))
    >>> picked = power_bald.select(model, pool, budget=5)
    >>> len(set(picked.tolist())), bool((picked == power_bald.select(model, pool, 5)).all())
    (5, True)
    """

    modes: ClassVar[tuple[str, ...]] = ("power", "softmax", "softrank")
    _test_params = tuple(
        {"sampler": UncertaintySampler(u, mc_samples=4, random_state=0), "mode": m}
        for m, u in (("power", "bald"), ("softmax", "margin"), ("softrank", "entropy"))
    )

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "sampler": Rule(_check_scorer),
        "mode": Options(modes),
        "beta": Real(0.0),
    }

    def __init__(
        self,
        sampler: Any,
        mode: str = "softrank",
        beta: float = 1.0,
        *,
        random_state: RandomState = None,
    ) -> None:
        self.random_state = random_state  # no `inference`: the wrapped sampler has its own
        self.sampler = sampler
        self.mode = mode
        self.beta = beta

    @property
    def requires_model(self) -> bool:  # type: ignore[override]
        """Whatever the wrapped sampler needs."""
        return bool(getattr(self.sampler, "requires_model", True))

    @property
    def needs_labels(self) -> bool:  # type: ignore[override]
        """Whatever the wrapped sampler needs."""
        return bool(getattr(self.sampler, "needs_labels", True))

    def _select(
        self, model: Any, pool: ActivePool, budget: int, rng: np.random.Generator
    ) -> np.ndarray:
        unlabeled = pool.unlabeled_indices
        scores = np.asarray(self.sampler.score(model, pool, unlabeled), dtype=np.float64)
        if scores.shape != unlabeled.shape:
            raise ValueError(
                f"Expected the wrapped sampler's score to return {unlabeled.shape[0]} scores, "
                f"one per unlabeled item, but got shape {scores.shape}."
            )
        check_finite(torch.from_numpy(scores), unlabeled, "the wrapped sampler's scores")
        keys = _log_weights(scores, self.mode, float(self.beta)) + rng.gumbel(size=scores.shape)
        _, top = topk_indices(
            torch.from_numpy(keys), torch.from_numpy(unlabeled.copy()), budget, validate_args=False
        )
        return top.numpy()

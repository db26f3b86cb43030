"""A sampler that picks the method for the budget: cold-start first, uncertainty once competent."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, ClassVar, Optional

import numpy as np
import torch
from torch import Tensor, nn

from aalearn._validation import Constraint, Int, Options, RandomState, Real, Rule
from aalearn.functional.coverage import PURITY, ball_coverage, probcover_delta
from aalearn.pool import ActivePool
from aalearn.samplers.base import BaseSampler
from aalearn.samplers.random import RandomSampler
from aalearn.samplers.uncertainty import UncertaintySampler

__all__ = ["BudgetAwareSampler", "BudgetDecision"]

logger = logging.getLogger(__name__)

#: The coverage rule's default threshold (measured on digits: see the class docstring).
THRESHOLD = 0.3
#: The per-class rule's default threshold: labels per class (measured on digits: see
#: the class docstring).
PER_CLASS = 7.0
#: An embedding of the conformance suite's 150-item pool (aalearn.testing).
_TEST_EMBEDDING = torch.randn(150, 4, generator=torch.Generator().manual_seed(0))


@dataclasses.dataclass(frozen=True)
class BudgetDecision:
    """What :class:`BudgetAwareSampler` decided at its last ``select``, and why.

    ``regime`` is ``"low"`` or ``"high"``; ``method`` the class name of the sampler
    that ran; ``rule`` the measure (``"coverage"`` or ``"per_class"``), ``value`` its
    measured value and ``threshold`` the value at and above which ``high`` runs;
    ``n_labeled`` the labeled items at that time; ``delta`` the ball radius of the
    coverage rule (``None`` for ``"per_class"``).
    """

    regime: str
    method: str
    rule: str
    value: float
    threshold: float
    n_labeled: int
    delta: Optional[float] = None

    def __str__(self) -> str:
        sign = ">=" if self.regime == "high" else "<"
        if self.rule == "coverage":
            why = (
                f"the {self.n_labeled} labeled items' balls of radius {self.delta:.4g} cover "
                f"{self.value:.1%} of the pool, {sign} the threshold {self.threshold:.0%}"
            )
        else:
            why = (
                f"{self.n_labeled} labeled items are {self.value:.4g} per class, {sign} the "
                f"threshold {self.threshold:.4g}"
            )
        return f"{self.method} ran ({self.regime}-budget regime): {why}"


def _check_sampler(value: Any, name: str) -> Any:
    if value is not None and not callable(getattr(value, "select", None)):
        raise TypeError(
            f"Expected argument `{name}` to be a sampler with a select(model, pool, budget) "
            f"method, or None, but got {type(value).__name__}."
        )
    return value


def _check_embedding(value: Any, name: str) -> Any:
    if value is None or isinstance(value, nn.Module):  # the low-budget sampler embeds
        return value
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, Tensor):
        raise TypeError(
            f"Expected argument `{name}` to be an (N, D) array or tensor, an encoder "
            f"(torch.nn.Module) or None, but got "
            f"{type(value).__name__}."
        )
    if value.ndim != 2 or not (value.is_floating_point() or value.dtype == torch.int64):
        raise ValueError(
            f"Expected argument `{name}` to be a 2-D (N, D) array of numbers, but got shape "
            f"{tuple(value.shape)} and dtype {value.dtype}."
        )
    return value


class BudgetAwareSampler(BaseSampler):
    r"""Cold-start sampling while the labels are few, uncertainty once the model is competent.

    At low budgets the picks that help most are typical, covering items; at high budgets,
    items the model is unsure of. Each family falls below random in the other's regime
    (Hacohen et al., ICML 2022; DCoM, Mishal and Weinshall, 2024). This sampler
    measures which regime it is in at every ``select``, with no validation set, by one
    of two rules:

    - ``rule="per_class"`` (the default): the labeled items per class,
      ``n_labeled / n_classes``; ``low`` runs below ``threshold`` (default 7), then
      ``high``. The low-budget literature states its regimes in labels per class
      (TypiClust's and ProbCover's low budgets are a few labels per class), and a count
      of labels means the same on every embedding. The default, 7, was chosen among 6,
      7, 8 and 10 on scikit-learn's digits by whole-curve AUC (the low-budget protocol
      of ``benchmarks.label_efficiency``, a CNN trained from scratch). It had the best
      whole-curve AUC of every method on digits and on mnist5k, and stayed within 1
      point of the best fixed method at all 17 budgets on mnist5k, at 16 of 17 on
      digits (2.3 points behind margin at 100 labels; ``docs/benchmarks.md``). It is a
      measured default, not a law: a much stronger or weaker learner than a small CNN
      moves the transition.
    - ``rule="coverage"``: the fraction of the pool within ``delta`` of a labeled item
      in the embedding,

      .. math::

          c = \frac{1}{N} \big|\{ i : \min_{j \in L} \lVert x_i - x_j \rVert < \delta \}\big|,

      the coverage of ProbCover's bound on the 1-nearest-neighbour error,
      :math:`\mathrm{err} \le (1 - c) + (1 - \pi(\delta))` (Yehuda et al., NeurIPS
      2022), :math:`\pi(\delta)` being the purity of the balls. While ``c <
      threshold`` the uncovered mass dominates the bound and ``low`` (a cold-start
      sampler, which adds coverage) runs; then ``high`` runs. ``delta`` by default is
      ProbCover's purity rule (the largest radius whose balls are ``alpha`` pure with
      respect to k-means with ``n_classes`` clusters,
      :func:`aalearn.functional.probcover_delta`), computed once. Its default
      threshold, 0.3, was chosen on digits (reached there at about 7 labels per
      class), but the coverage of a fixed radius does not transfer between embeddings:
      on mnist5k a typical labeled set covers 0.16 of the pool at 100 labels and the
      rule switched only at 400, 4.4 points behind BADGE there. Use it with a radius
      and threshold measured on your own embedding.

    Both measures only grow with the labeled set, so the switch happens once. With
    zero labels ``low`` runs whatever the threshold, and ``model`` may be ``None``; ``high``
    needs a model (``ValueError`` when it is ``None`` after the switch).

    After each ``select``, :attr:`last_decision_` (a :class:`BudgetDecision`) says which
    method ran and the measure against the threshold; the same sentence goes to the
    ``aalearn.samplers.budget_aware`` logger at level INFO.

    Parameters
    ----------
    low : sampler, optional
        The low-budget sampler; ``None``: :class:`aalearn.TypiClustSampler` on
        ``embedding``: on a PCA embedding of the pixels it led Random by 8 to 19 points at
        10 and 20 labels on digits and mnist5k, where ProbCover, with the purity rule's
        radius, fell below Random (``docs/benchmarks.md``, the low-budget protocol).
    high : sampler, optional
        The high-budget sampler; ``None``: ``UncertaintySampler("margin")``.
    embedding : None, array or tensor of shape (N, D), or torch.nn.Module
        The default ``low``'s embedding (see :mod:`aalearn.embeddings`), and the space
        of the coverage rule: an array's row ``i`` embeds dataset index ``i``. ``None``
        or an encoder: the coverage is measured on ``low.embed(pool)``, the cold-start
        sampler's embedding.
    rule : {"per_class", "coverage"}
        The measure of the budget regime (above).
    threshold : float, optional
        The measure's value at and above which ``high`` runs: labels per class ``>= 0``
        for ``"per_class"`` (``None``: 7), a fraction in ``[0, 1]`` for ``"coverage"``
        (``None``: 0.3).
    delta : float, optional
        Ball radius of the coverage, ``> 0`` (``rule="coverage"`` only); ``None``: the
        purity rule.
    n_classes : int, optional
        Number of classes (the per-class rule's divisor, the purity rule's k-means
        clusters); ``None``: ``low.n_classes``, and a ``ValueError`` if ``low`` has none.
    alpha : float
        Purity the rule for ``delta`` asks for, in ``(0, 1]`` (``rule="coverage"`` only).
    random_state : int, numpy.random.Generator or None
        Seed of the default samplers and of the purity rule's k-means.

    Attributes
    ----------
    last_decision_ : BudgetDecision
        The decision of the last ``select``.
    delta_ : float or None
        The radius used (``None`` for ``"per_class"``).

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from aalearn import ActivePool, BudgetAwareSampler, RandomSampler, UncertaintySampler
    >>> x = torch.cat([torch.randn(30, 2, generator=torch.Generator().manual_seed(0)) + c
    ...                for c in (-5.0, 5.0)])
    >>> pool = ActivePool(TensorDataset(x, (x[:, 0] > 0).long()))
    >>> sampler = BudgetAwareSampler(RandomSampler(random_state=0), UncertaintySampler("margin"),
    ...                              threshold=7, n_classes=2, random_state=0)
    >>> picked = sampler.select(None, pool, budget=2)  # zero labels: the low-budget sampler
    >>> sampler.last_decision_.regime, sampler.last_decision_.method
    ('low', 'RandomSampler')
    >>> print(sampler.last_decision_)
    RandomSampler ran (low-budget regime): 0 labeled items are 0 per class, < the threshold 7
    >>> pool.label(pool.unlabeled_indices[::3])  # 20 labels, 10 per class
    >>> model = torch.nn.Linear(2, 2)
    >>> picked = sampler.select(model, pool, budget=2)
    >>> sampler.last_decision_.regime, sampler.last_decision_.method
    ('high', 'UncertaintySampler')
    """

    rules: ClassVar[tuple[str, ...]] = ("per_class", "coverage")
    #: It works from zero labels: the low-budget sampler runs then.
    needs_labels: ClassVar[bool] = False
    _test_params: ClassVar[tuple[dict[str, Any], ...]] = (
        {  # always the high-budget sampler (threshold 0), the model's outputs read
            "low": RandomSampler(random_state=0),
            "high": UncertaintySampler("margin"),
            "embedding": _TEST_EMBEDDING,
            "rule": "coverage",
            "threshold": 0.0,
            "delta": 1.0,
        },
        {  # both regimes model-free; delta by the purity rule
            "low": RandomSampler(random_state=0),
            "high": RandomSampler(random_state=1),
            "embedding": _TEST_EMBEDDING,
            "rule": "coverage",
            "threshold": 0.5,
            "n_classes": 3,
        },
        {  # 30 labeled, 10 classes: 3 per class, the high-budget default (margin) runs
            "low": RandomSampler(random_state=0),
            "threshold": 3,
            "n_classes": 10,
        },
    )

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "low": Rule(_check_sampler),
        "high": Rule(_check_sampler),
        "embedding": Rule(_check_embedding),
        "rule": Options(rules),
        "threshold": Real(0.0, none=True),
        "delta": Real(0.0, low_open=True, none=True),
        "n_classes": Int(2, none=True),
        "alpha": Real(0.0, 1.0, low_open=True),
    }

    def __init__(
        self,
        low: Any = None,
        high: Any = None,
        *,
        embedding: Any = None,
        rule: str = "per_class",
        threshold: Optional[float] = None,
        delta: Optional[float] = None,
        n_classes: Optional[int] = None,
        alpha: float = PURITY,
        random_state: RandomState = None,
    ) -> None:
        self.random_state = random_state  # no `inference`: the wrapped samplers have their own
        self.low = low
        self.high = high
        self.embedding = embedding
        self.rule = rule
        self.threshold = threshold
        self.delta = delta
        self.n_classes = n_classes
        self.alpha = alpha

    @property
    def requires_model(self) -> bool:  # type: ignore[override]
        """Whether ``high`` reads a model (``low`` runs without one while labels are few)."""
        return bool(getattr(self.high, "requires_model", True))

    def _check_model(self, model: Any) -> None:
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(
                f"Expected argument `model` to be a torch.nn.Module, but got "
                f"{type(model).__name__}."
            )

    def _check_params(self, params: dict[str, Any]) -> None:
        if params["rule"] == "per_class" and params["delta"] is not None:
            raise ValueError(
                f"Expected argument `delta` to be None with rule='per_class' (a radius is "
                f"used by rule='coverage' only), but got {self.delta}."
            )
        if params["rule"] == "coverage" and (params["threshold"] or 0.0) > 1:
            raise ValueError(
                f"Expected argument `threshold` to be <= 1 (a fraction of the pool) for "
                f"rule='coverage', but got {self.threshold}."
            )

    @property
    def threshold_(self) -> float:
        """``threshold``, or the rule's default when it is ``None``."""
        if self.threshold is None:
            return THRESHOLD if self.rule == "coverage" else PER_CLASS
        return float(self.threshold)

    def _samplers(self, rng: np.random.Generator) -> tuple[Any, Any]:
        """``low`` and ``high``, or the defaults: made once, so an embedding is computed once."""
        seed = int(rng.integers(2**31))
        key = (id(self.embedding), id(self.random_state))
        made = getattr(self, "_made_samplers", None)
        if made is None or made[0] != key:
            made = (key, None, None)
        low, high = made[1], made[2]
        if self.low is None and low is None:
            from aalearn.samplers.typiclust import TypiClustSampler

            low = TypiClustSampler(self.embedding, random_state=seed)
        if self.high is None and high is None:
            high = UncertaintySampler("margin", random_state=seed)
        self._made_samplers = (key, low, high)
        return (low if self.low is None else self.low), (high if self.high is None else self.high)

    def _embedding(self, low: Any, pool: ActivePool) -> Tensor:
        """The coverage's space: ``embedding`` if it is an array, else ``low.embed(pool)``."""
        emb = _check_embedding(self.embedding, "embedding")
        if not isinstance(emb, Tensor):
            if not callable(getattr(low, "embed", None)):
                raise ValueError(
                    "Expected argument `embedding` to be an (N, D) array (the space of the "
                    f"coverage) when `low` has no embed(pool) method, but got "
                    f"{type(self.embedding).__name__} and {type(low).__name__}."
                )
            emb = torch.as_tensor(low.embed(pool))
        if emb.shape[0] != len(pool):
            raise ValueError(
                f"Expected argument `embedding` to have one row per pool item ({len(pool)}), "
                f"but got {emb.shape[0]} rows."
            )
        return emb if emb.is_floating_point() else emb.float()

    def _n_classes(self, low: Any) -> int:
        n_classes = (
            self.n_classes if self.n_classes is not None else getattr(low, "n_classes", None)
        )
        if n_classes is None:
            raise ValueError(
                f"Expected argument `n_classes` (rule={self.rule!r}"
                + (" with delta=None" if self.rule == "coverage" else "")
                + ") when `low` has no n_classes, but got None."
            )
        return int(n_classes)

    def _delta(self, low: Any, emb: Tensor, rng: np.random.Generator) -> float:
        if self.delta is not None:
            return float(self.delta)
        key = (id(self.embedding) if self.embedding is not None else id(low), self.alpha)
        cached = getattr(self, "_delta_cache", None)
        if cached is not None and cached[0] == key:
            return float(cached[1])
        gen = torch.Generator(device=emb.device).manual_seed(int(rng.integers(2**31)))
        delta = probcover_delta(emb, self._n_classes(low), alpha=self.alpha, generator=gen)
        self._delta_cache = (key, delta)
        return delta

    def _select(
        self, model: Any, pool: ActivePool, budget: int, rng: np.random.Generator
    ) -> np.ndarray:
        threshold = self.threshold_
        low, high = self._samplers(rng)
        delta: Optional[float] = None
        if self.rule == "coverage":
            emb = self._embedding(low, pool)
            delta = self._delta(low, emb, rng)
            value = ball_coverage(emb, torch.from_numpy(pool.labeled_mask.copy()), delta)
        else:
            value = pool.n_labeled / self._n_classes(low)
        regime = "high" if pool.n_labeled > 0 and value >= threshold else "low"
        chosen = high if regime == "high" else low
        decision = BudgetDecision(
            regime, type(chosen).__name__, self.rule, value, threshold, pool.n_labeled, delta
        )
        if regime == "high" and model is None and getattr(high, "requires_model", True):
            raise ValueError(
                f"Expected argument `model` to be a trained model, but got None: {decision}, "
                "and it needs one."
            )
        self.delta_ = delta
        self.last_decision_ = decision
        logger.info("%s", decision)
        return np.asarray(chosen.select(model, pool, budget))

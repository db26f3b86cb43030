"""ProbCover sampling: greedy maximum coverage of delta-balls on an embedding."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Optional, Union

import numpy as np
import torch
from torch.utils.data import default_collate

from aalearn._validation import Constraint, Device, Int, RandomState, Real
from aalearn.embeddings import EmbeddingSource
from aalearn.functional.coverage import PURITY, probcover, probcover_delta
from aalearn.inference import InferenceConfig, default_target_fn
from aalearn.pool import ActivePool
from aalearn.samplers._embedded import _EmbeddingSampler

__all__ = ["ProbCoverSampler"]


class ProbCoverSampler(_EmbeddingSampler):
    """ProbCover (Yehuda, Dekel, Hacohen and Weinshall, NeurIPS 2022): cover the embedding.

    Each item covers the items closer than ``delta`` to it (its ball). The labeled
    items' balls are covered first; then each pick is the item whose ball holds the
    most uncovered items (:func:`aalearn.functional.probcover`, on :meth:`embed`'s
    embedding). Once everything is covered, the rest of the batch is drawn at random.
    Needs no model (``model`` is ignored and may be ``None``) and no label when
    ``delta`` or ``n_classes`` is given. A smaller budget picks a prefix of a larger
    one's picks (``ranking``). See ``docs/zero-labels.md``.

    **Choosing delta.** ``delta=None`` takes the paper's purity rule
    (:func:`aalearn.functional.probcover_delta`): the largest radius whose balls are at
    least ``alpha`` pure with respect to k-means with ``n_classes`` clusters. It is
    computed once per embedding and kept; the radius used is :attr:`delta_` after
    ``select``. The rows have unit norm, so ``delta`` lies in ``(0, 2]`` (the authors
    use 0.6 to 0.75 on SimCLR features). The ball graph has ``E = N + 2P`` edges for
    ``P`` pairs closer than ``delta`` and takes ``8 (N + 1) + 4 E`` bytes (about
    ``13 E`` while it is built): ``E`` grows about as ``delta ** d`` for an intrinsic
    dimension ``d``, from ``N`` to ``N ** 2``, so a too large ``delta`` costs memory
    and time quadratic in ``N`` (:mod:`aalearn.functional.coverage`).

    On the default embedding of digits and mnist5k the rule chose radii near 0.45,
    where most balls hold one item, and ProbCover fell below random sampling on
    mnist5k; with ``delta=0.75`` it beat TypiClust (``docs/zero-labels.md``). Check
    :attr:`delta_` on your embedding, or pass ``delta``.

    The picks are those of ``probcover(x, labeled, budget, delta=delta_,
    generator=g2)`` with ``delta_ = probcover_delta(x, n_classes, alpha=alpha,
    generator=g1)``, where ``g1`` and ``g2`` are CPU generators seeded by the first two
    draws of ``random_state``'s generator (:func:`aalearn._validation.torch_generator`).

    Parameters
    ----------
    embedding : None, numpy.ndarray, torch.Tensor or torch.nn.Module
        As in :class:`~aalearn.TypiClustSampler`: ``None`` (the default embedding), an
        ``(N, D)`` array or tensor, or an encoder run once over ``pool.dataset``.
    delta : float, optional
        Ball radius, ``> 0``; ``None`` chooses it by the purity rule.
    n_classes : int, optional
        Clusters of the purity rule (the number of classes), ``>= 2``. ``None``: the
        number of classes the labeled items name (largest label + 1); with no labeled
        item and no ``delta``, ``select`` raises ``ValueError``.
    alpha : float
        Purity the rule asks for, in ``(0, 1]`` (the paper's 0.95).
    layer, device, inference, random_state
        As in :class:`~aalearn.TypiClustSampler` (``random_state`` seeds the purity
        rule's k-means and the random picks after full coverage).

    Attributes
    ----------
    delta_ : float
        The radius of the last ``select``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from aalearn import ActivePool, ProbCoverSampler
    >>> x, y = load_digits(return_X_y=True)
    >>> pool = ActivePool(None, n_items=len(x))
    >>> sampler = ProbCoverSampler(x, n_classes=10, random_state=0)
    >>> picked = sampler.select(None, pool, budget=10)
    >>> picked.shape, 0 < sampler.delta_ < 2
    ((10,), True)
    >>> ProbCoverSampler(x).select(None, pool, 10)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ProbCoverSampler(delta=None) chooses delta with k-means on `n_classes` ...
    """

    ranking = True
    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "delta": Real(0.0, low_open=True, none=True),
        "n_classes": Int(2, none=True),
        "alpha": Real(0.0, 1.0, low_open=True),
    }
    _test_params: ClassVar[tuple[Mapping[str, Any], ...]] = (
        {"n_classes": 10},  # n_classes=None counts the labels: not a zero-label sampler
        {"n_classes": 10, "alpha": 0.9, "embedding": None},
        {"delta": 0.5},
    )

    def __init__(
        self,
        embedding: EmbeddingSource = None,
        *,
        delta: Optional[float] = None,
        n_classes: Optional[int] = None,
        alpha: float = PURITY,
        layer: Optional[str] = None,
        device: Device = None,
        inference: Union[InferenceConfig, Mapping[str, Any], None] = None,
        random_state: RandomState = None,
    ) -> None:
        super().__init__(inference=inference, random_state=random_state)
        self.embedding = embedding
        self.delta = delta
        self.n_classes = n_classes
        self.alpha = alpha
        self.layer = layer
        self.device = device

    def _classes(self, pool: ActivePool) -> int:
        """``n_classes``, or the number of classes the labeled items name."""
        if self.n_classes is not None:
            return int(self.n_classes)
        if pool.n_labeled == 0:
            raise ValueError(
                "ProbCoverSampler(delta=None) chooses delta with k-means on `n_classes` "
                "clusters (the purity rule), but got n_classes=None and the pool has no "
                "labeled item to count the classes: pass n_classes=<number of classes> "
                "or delta=<ball radius>."
            )
        labels = pool.labels()
        missing = pool.labeled_indices[labels < 0]  # labeled with the dataset's own targets
        if missing.size:
            dataset = self._dataset(pool)
            batch = default_collate([dataset[int(i)] for i in missing])
            cfg = self.inference_
            fn = cfg.target_fn
            raw = fn(batch) if fn is not None else default_target_fn(batch, cfg.label_key)
            labels[labels < 0] = torch.as_tensor(raw).reshape(-1).long().cpu().numpy()
        return max(2, int(labels.max()) + 1)

    def _select(
        self, model: Any, pool: ActivePool, budget: int, rng: np.random.Generator
    ) -> np.ndarray:
        x = self.embed(pool)
        g_delta, g_cover = self._generator(rng), self._generator(rng)
        delta = self.delta
        if delta is None:
            n_classes = self._classes(pool)
            # computed once per embedding (by identity), classes, alpha and seed
            key = (n_classes, self.alpha, self.random_state)
            kept = self.__dict__.get("_delta_cache")
            if kept is not None and kept[0] is x and kept[1] == key:
                delta = kept[2]
            else:
                delta = probcover_delta(x, n_classes, alpha=self.alpha, generator=g_delta)
                self.__dict__["_delta_cache"] = (x, key, delta)
        self.delta_ = float(delta)
        picks = probcover(
            x, self._mask(pool, x), budget, delta=delta, generator=g_cover, validate_args=False
        )
        return picks.cpu().numpy()

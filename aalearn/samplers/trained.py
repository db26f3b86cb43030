"""The base of the samplers that train a selector of their own at each ``select``.

AALU, its Table 1 variants, the feature-space adversarial sampler and VAAL all do the
same three things: gather what they train on from one inference pass, train their
networks on the shared loop (:mod:`aalearn.samplers._training`), and turn the
networks' scores of the unlabeled items into a batch. :class:`SelectorSampler` owns
that sequence and the training parameters every such sampler has; a sampler supplies
``_fit`` (the pass and the training, returning :class:`Fitted`) and, if its batch is
not the top-k of its scores, ``_batch``. :class:`FeatureSelectorSampler` is the
``_fit`` of the samplers that train on the task model's features (AALU's VAE and
assistant, :mod:`aalearn.samplers._selector`).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import numpy as np
import torch
from torch import nn

from aalearn._finite import check_finite
from aalearn._validation import Constraint, FlagOrCallable, Int, Real
from aalearn.pool import ActivePool

from ._batch import pick
from ._selector import _FeatureData, _FeatureSelector, _FeatureSelectorConfig, _standardize_
from ._training import _ranked, _TrainingConfig
from .base import BaseSampler

__all__ = ["FeatureSelectorSampler", "Fitted", "SelectorSampler"]


@dataclass
class Fitted:
    """A selector trained on one pool: the scores of the unlabeled items (ascending).

    ``probs_u``, ``f_l`` and ``f_u`` are what the feature samplers' batch rules read
    (the unlabeled items' predictions, the labeled and unlabeled features).
    """

    scores: torch.Tensor
    unlabeled: np.ndarray
    probs_u: Optional[torch.Tensor] = None
    f_l: Optional[torch.Tensor] = None
    f_u: Optional[torch.Tensor] = None

    def at(self, indices: np.ndarray) -> np.ndarray:
        """The scores of ``indices`` (unlabeled dataset indices, as ``score`` checked them)."""
        out = self.scores.detach().float().cpu().numpy()
        return out[np.searchsorted(self.unlabeled, indices)]


class SelectorSampler(BaseSampler, metaclass=abc.ABCMeta):
    """Base of the samplers that train networks of their own: fit, then form the batch.

    ``select`` is ``_batch(_fit(...))`` and ``score`` reads the fitted scores, so both
    train the same networks from the same ``random_state``. The training parameters
    shared by every such sampler are declared here: ``lr``, ``selector_batch_size``,
    ``epochs``, ``min_iterations`` and ``progress`` (see
    :class:`~aalearn.samplers.aalu.AALUSampler` for their meaning).
    """

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "lr": Real(0, low_open=True),
        "selector_batch_size": Int(1),
        "epochs": Real(0, low_open=True),
        "min_iterations": Int(0),
        "progress": FlagOrCallable(),
    }

    @staticmethod
    def _training(params: dict[str, Any]) -> _TrainingConfig:
        """The training schedule from the validated parameters."""
        return _TrainingConfig(
            lr=params["lr"],
            batch_size=params["selector_batch_size"],
            epochs=params["epochs"],
            min_iterations=params["min_iterations"],
            progress=params["progress"],
        )

    def _select(
        self, model: Any, pool: ActivePool, budget: int, rng: np.random.Generator
    ) -> np.ndarray:
        params = self._validate_params()
        return self._batch(self._fit(model, pool, params, rng), budget, params)

    def _score(
        self, model: Any, pool: ActivePool, indices: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        return self._fit(model, pool, self._validate_params(), rng).at(indices)

    @abc.abstractmethod
    def _fit(
        self, model: nn.Module, pool: ActivePool, params: dict[str, Any], rng: np.random.Generator
    ) -> Fitted:
        """One inference pass, the training, the scores of the unlabeled items."""

    def _batch(self, fitted: Fitted, budget: int, params: dict[str, Any]) -> np.ndarray:
        """The batch: by default the ``budget`` highest scores, best first."""
        return _ranked(fitted.scores, fitted.unlabeled, budget)

    def _need_labeled(self, pool: ActivePool, need: int, why: str) -> None:
        if pool.n_labeled < need:
            raise ValueError(
                f"{type(self).__name__} needs at least {need} labeled item(s) ({why}), but the "
                f"pool has {pool.n_labeled}."
            )


class FeatureSelectorSampler(SelectorSampler):
    """A selector over the task model's features: AALU's VAE and assistant.

    Subclasses give the selector's configuration (``_selector_config``); this class
    runs Algorithm 1 up to the scores (one inference pass over the labeled and the
    unlabeled items, co-training, the assistant's logits) and forms the batch with the
    configuration's rule (``topk``, ``per_class`` or ``kcenter``).
    """

    @abc.abstractmethod
    def _selector_config(self, params: dict[str, Any]) -> _FeatureSelectorConfig:
        """The VAE's and assistant's settings from the validated parameters."""

    def _fit(
        self, model: nn.Module, pool: ActivePool, params: dict[str, Any], rng: np.random.Generator
    ) -> Fitted:
        cfg = self._selector_config(params)
        lab, unl = pool.labeled_indices, pool.unlabeled_indices
        need = 2 if cfg.use_ranking else 1
        self._need_labeled(
            pool, need, "ranking loss" if cfg.use_ranking else "adversarial training"
        )
        # One pass over the pool, in its labeled part (with the task losses, from the
        # oracle's labels) and its unlabeled part (no label is read for those).
        probs = cfg.use_predictions or cfg.batch == "per_class"
        out_l = self._collect(
            model,
            pool,
            lab,
            features=True,
            probs=cfg.use_predictions,
            losses=cfg.use_ranking,
            labels=pool.labels(lab) if cfg.use_ranking else None,
        )
        out_u = self._collect(model, pool, unl, features=True, probs=probs)
        assert out_l.features is not None and out_u.features is not None
        f_l, f_u = out_l.features, out_u.features
        if cfg.standardize:
            _standardize_(f_l, f_u)
        p_u = out_u.probs if cfg.use_predictions else None
        n_classes = 0 if out_l.probs is None else out_l.probs.shape[1]
        data = _FeatureData(f_l, f_u, out_l.probs, p_u, out_l.losses)
        name = type(self).__name__
        selector = _FeatureSelector(cfg, f_l.shape[1], n_classes, f_l.device, rng, name)
        selector.fit(data)
        scores = selector.score(f_u, p_u)
        check_finite(scores, unl, "selector scores")  # the non-finite policy (aalearn._finite)
        return Fitted(scores, unl, out_u.probs, f_l, f_u)

    def _batch(self, fitted: Fitted, budget: int, params: dict[str, Any]) -> np.ndarray:
        cfg = self._selector_config(params)
        assert fitted.f_l is not None and fitted.f_u is not None
        return pick(
            cfg.batch,
            cfg.kcenter_candidates,
            fitted.scores,
            fitted.unlabeled,
            budget,
            fitted.probs_u,
            fitted.f_l,
            fitted.f_u,
        )

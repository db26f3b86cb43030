"""The base of the samplers that pick on an embedding of the pool (TypiClust, ProbCover)."""

from __future__ import annotations

from typing import Any, ClassVar, Optional

import numpy as np
import torch
from torch import nn

from aalearn._validation import Constraint, Rule, resolve_device, torch_generator
from aalearn.embeddings import EmbeddingCache, check_embedding_source
from aalearn.pool import ActivePool
from aalearn.samplers.base import BaseSampler

__all__: list[str] = []


def _check_layer(value: Any, name: str) -> Optional[str]:
    if value is not None and not isinstance(value, str):
        raise TypeError(
            f"Expected argument `{name}` to be a module name (str) or None, but got "
            f"{type(value).__name__}."
        )
    return value


def _check_device(value: Any, name: str) -> Optional[torch.device]:
    return None if value is None else resolve_device(value, name)


class _EmbeddingSampler(BaseSampler):
    """Shared by the samplers that pick on an embedding: the ``embedding`` argument and its cache.

    They need no model (``select(None, pool, budget)`` works) and no label, and
    compute the embedding once (:class:`aalearn.embeddings.EmbeddingCache`).
    Subclasses implement ``_select`` with :meth:`embed` and :meth:`_generator`.
    """

    requires_model = False
    needs_labels = False

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "embedding": Rule(check_embedding_source),
        "layer": Rule(_check_layer),
        "device": Rule(_check_device),
    }

    # Set by the subclasses' __init__ (declared for mypy).
    embedding: Any
    layer: Optional[str]
    device: Any

    @property
    def reads_inputs(self) -> bool:
        """Whether the embedding is computed from the pool's inputs (an encoder or the default).

        Non-finite inputs (or encoder outputs) then raise ``ValueError`` naming the
        items, the non-finite policy of model outputs (``aalearn._finite``).
        """
        return not isinstance(self.embedding, (np.ndarray, torch.Tensor))

    def _check_params(self, params: dict[str, Any]) -> None:
        if params["layer"] is not None and not isinstance(params["embedding"], nn.Module):
            raise ValueError(
                "Expected argument `layer` to be None unless `embedding` is an nn.Module "
                f"encoder (it names one of its modules), but got {params['layer']!r}."
            )

    def embed(self, pool: ActivePool) -> torch.Tensor:
        """The ``(len(pool), D)`` embedding of every pool item, computed once and cached.

        Row ``i`` is dataset index ``i``; rows have unit norm. Recomputed only when the
        pool's dataset (or its length), ``embedding``, ``layer`` or ``device`` changes
        (:class:`aalearn.embeddings.EmbeddingCache`).
        """
        self._check_pool(pool)
        self._validate_params()
        cache = self.__dict__.get("_embedding_cache")
        if cache is None:
            cache = self.__dict__["_embedding_cache"] = EmbeddingCache()
        from_data = self.reads_inputs
        return cache.get(
            self.embedding,
            self._dataset(pool) if from_data else pool.dataset,
            len(pool),
            layer=self.layer,
            device=self.device,
            inference=self.inference_,
        )

    @staticmethod
    def _generator(rng: np.random.Generator) -> torch.Generator:
        """A CPU :class:`torch.Generator` seeded from ``rng``: the same picks on every device."""
        return torch_generator(rng, torch.device("cpu"))

    @staticmethod
    def _mask(pool: ActivePool, embedding: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(pool.labeled_mask.copy()).to(embedding.device)

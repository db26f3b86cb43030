"""TypiClust sampling: the most typical item of the largest clusters without a label."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Optional, Union

import numpy as np

from aalearn._validation import Constraint, Device, Int, RandomState
from aalearn.embeddings import EmbeddingSource
from aalearn.functional.typicality import MAX_CLUSTERS, MIN_CLUSTER_SIZE, N_NEIGHBORS, typiclust
from aalearn.inference import InferenceConfig
from aalearn.pool import ActivePool
from aalearn.samplers._embedded import _EmbeddingSampler

__all__ = ["TypiClustSampler"]


class TypiClustSampler(_EmbeddingSampler):
    """TypiClust (Hacohen, Dekel and Weinshall, ICML 2022): typical items of uncovered clusters.

    For a small budget, from zero labels on: k-means on the embedding with
    ``min(n_labeled + budget, max_clusters)`` clusters, then, from the largest clusters
    holding no labeled item, the most typical item (the inverse of its mean distance to
    its ``n_neighbors`` nearest neighbours in the cluster). This is
    :func:`aalearn.functional.typiclust` on :meth:`embed`'s embedding with a
    :class:`torch.Generator` seeded by the first draw of ``random_state``'s generator
    (:func:`aalearn._validation.torch_generator` on the CPU), so the picks are those of
    the function on the same embedding and seed. Needs no model (``model`` is ignored
    and may be ``None``) and no label. The batch depends on the budget (the number of
    clusters does), so it is not a ranking. See ``docs/zero-labels.md``.

    Parameters
    ----------
    embedding : None, numpy.ndarray, torch.Tensor or torch.nn.Module
        What the items are compared on (:mod:`aalearn.embeddings`): ``None`` for the
        default (PCA of the standardised, flattened inputs; no weights needed), an
        ``(N, D)`` array or tensor whose row ``i`` is dataset index ``i``, or an encoder
        run once over ``pool.dataset``. Rows are L2-normalised, as the authors do.
        The embedding is computed once and cached (see :meth:`embed`).
    max_clusters : int
        Cap on the number of clusters (the authors' 500).
    min_cluster_size : int
        Clusters of at most this many items are used last (the authors drop them; 5).
    n_neighbors : int
        Neighbours of the typicality (the authors' 20).
    layer : str, optional
        With an encoder: the module (a name from ``encoder.named_modules()``) whose
        output is the embedding; ``None`` takes the encoder's output.
    device : str, torch.device or None
        Where the embedding and the selection live. ``None``: an encoder's device, a
        tensor's device, otherwise the CPU. An encoder is never moved.
    inference : aalearn.InferenceConfig, mapping or None
        How an encoder's pass reads the batches (``batch_size``, ``input_fn``,
        ``feature_pooling``...), and how the default embedding reads the inputs.
    random_state : int, numpy.random.Generator or None
        Seed of the k-means draws.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from aalearn import ActivePool, TypiClustSampler
    >>> x, y = load_digits(return_X_y=True)
    >>> pool = ActivePool(None, n_items=len(x))  # zero labels; the embedding is given
    >>> sampler = TypiClustSampler(x, random_state=0)
    >>> picked = sampler.select(None, pool, budget=10)
    >>> picked.shape, len(set(y[picked].tolist())) >= 8  # ten typical digits
    ((10,), True)
    >>> sampler.embed(pool).shape
    torch.Size([1797, 64])
    """

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "max_clusters": Int(1),
        "min_cluster_size": Int(0),
        "n_neighbors": Int(1),
    }
    _test_params: ClassVar[tuple[Mapping[str, Any], ...]] = (
        {},
        {"max_clusters": 4, "min_cluster_size": 0, "n_neighbors": 3},
    )

    def __init__(
        self,
        embedding: EmbeddingSource = None,
        *,
        max_clusters: int = MAX_CLUSTERS,
        min_cluster_size: int = MIN_CLUSTER_SIZE,
        n_neighbors: int = N_NEIGHBORS,
        layer: Optional[str] = None,
        device: Device = None,
        inference: Union[InferenceConfig, Mapping[str, Any], None] = None,
        random_state: RandomState = None,
    ) -> None:
        super().__init__(inference=inference, random_state=random_state)
        self.embedding = embedding
        self.max_clusters = max_clusters
        self.min_cluster_size = min_cluster_size
        self.n_neighbors = n_neighbors
        self.layer = layer
        self.device = device

    def _select(
        self, model: Any, pool: ActivePool, budget: int, rng: np.random.Generator
    ) -> np.ndarray:
        x = self.embed(pool)
        picks = typiclust(
            x,
            self._mask(pool, x),
            budget,
            max_clusters=self.max_clusters,
            min_cluster_size=self.min_cluster_size,
            n_neighbors=self.n_neighbors,
            generator=self._generator(rng),
            validate_args=False,  # checked when the embedding was made
        )
        return picks.cpu().numpy()

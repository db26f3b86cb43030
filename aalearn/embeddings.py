"""Embeddings of every pool item for the cold-start samplers (TypiClust, ProbCover).

An embedding is an ``(N, D)`` float tensor whose row ``i`` belongs to dataset index
``i``, with L2-normalised rows (as the TypiClust and ProbCover authors normalise
their SimCLR and DINO features: ``datasets/utils/features.py::load_features`` of
``avihu111/TypiClust``; a ProbCover radius ``delta`` then lies in ``(0, 2]``). It
comes from one of three sources, the ``embedding`` argument of the samplers:

* an **encoder**, any :class:`torch.nn.Module`, run once over ``pool.dataset`` by the
  library's inference pass (:func:`aalearn.collect`): its output, or the output of the
  module named ``layer`` in ``encoder.named_modules()`` (a pretrained torchvision,
  timm or HuggingFace backbone, or your own). Outputs of rank > 2, such as convolution
  maps ``(B, C, H, W)``, are averaged over the trailing dimensions (``feature_pooling``
  of :class:`~aalearn.InferenceConfig`). NaN or infinite outputs raise ``ValueError``
  naming the items;
* a **precomputed** ``(N, D)`` NumPy array or tensor, row ``i`` = dataset index ``i``;
* ``None``: the **default**, which needs no weights: :func:`pca_embedding` of the
  flattened inputs, standardised per feature, with :data:`DEFAULT_COMPONENTS`
  components. It won the measurements of ``benchmarks/cold_start_embedding.py``
  (``docs/zero-labels.md``): on digits and mnist5k, TypiClust picks on PCA-32 give a
  logistic regression as good as or better than the other candidates at 10, 20 and 40
  labels.

PCA is scikit-learn's :class:`~sklearn.decomposition.PCA` (imported when needed), not
:func:`torch.pca_lowrank`: the latter draws its random projection from torch's
*global* RNG, which aalearn never touches, and scikit-learn picks an exact solver for
small inputs and a seeded randomized one for large ones. The PCA runs on the CPU (its
cost, ``O(N P min(N, P))`` at most, is small next to the selection); the result is
moved to ``device``.

:class:`EmbeddingCache` computes an embedding once and returns it again while its key
is unchanged: the dataset object, its length, the ``embedding`` object itself (an
encoder is assumed frozen: after training it further, build a new sampler, e.g. with
:func:`sklearn.base.clone`), ``layer`` and the device.
"""

from __future__ import annotations

import difflib
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from aalearn._finite import check_finite
from aalearn._validation import Device, resolve_device
from aalearn.inference import InferenceConfig, PassRequest
from aalearn.inference.adapters import first_tensor
from aalearn.inference.passes import collect_pass, stream_pass

__all__ = [
    "DEFAULT_COMPONENTS",
    "EmbeddingCache",
    "EmbeddingSource",
    "check_embedding_source",
    "default_embedding",
    "encode",
    "l2_normalise",
    "pca_embedding",
    "precomputed_embedding",
]

#: Components of the default PCA embedding (chosen by ``benchmarks/cold_start_embedding.py``).
DEFAULT_COMPONENTS = 32
#: Seed of the randomized PCA solver (scikit-learn uses it only for large inputs): the
#: default embedding of a dataset is the same whatever the sampler's ``random_state``.
_PCA_SEED = 0

EmbeddingSource = Union[None, np.ndarray, Tensor, nn.Module]


def check_embedding_source(value: Any, name: str = "embedding") -> Any:
    """``value`` if it is ``None``, an ``nn.Module``, an array or a tensor, else ``TypeError``."""
    if value is None or isinstance(value, (nn.Module, np.ndarray, Tensor)):
        return value
    raise TypeError(
        f"Expected argument `{name}` to be None (the default embedding), an (N, D) NumPy "
        f"array or torch.Tensor, or a torch.nn.Module encoder, but got {type(value).__name__}."
    )


def l2_normalise(x: Tensor) -> Tensor:
    """Rows of ``x`` scaled to unit Euclidean norm (a zero row stays zero)."""
    return torch.nn.functional.normalize(x, dim=1)


def precomputed_embedding(
    values: Union[np.ndarray, Tensor],
    n_items: int,
    *,
    device: Device = None,
    name: str = "embedding",
) -> Tensor:
    """A user's ``(n_items, D)`` array or tensor, checked, as float rows of unit norm.

    ``float64`` is kept, other dtypes become ``float32``; ``device=None`` keeps a
    tensor's device (CPU for an array).

    Examples
    --------
    >>> import numpy as np
    >>> from aalearn.embeddings import precomputed_embedding
    >>> precomputed_embedding(np.array([[3.0, 4.0], [0.0, 2.0]]), 2)
    tensor([[0.6000, 0.8000],
            [0.0000, 1.0000]], dtype=torch.float64)
    >>> precomputed_embedding(np.zeros((3, 2)), 4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Expected argument `embedding` to have one row per pool item, shape (4, D) ...
    """
    try:
        x = torch.from_numpy(values) if isinstance(values, np.ndarray) else values
    except TypeError as err:
        raise TypeError(
            f"Expected argument `{name}` to hold real numbers, but got dtype {values.dtype}."
        ) from err
    if not isinstance(x, Tensor):
        raise TypeError(
            f"Expected argument `{name}` to be an (N, D) NumPy array or torch.Tensor, but got "
            f"{type(values).__name__}."
        )
    if x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"Expected argument `{name}` to hold real numbers, but got {x.dtype}.")
    if x.ndim != 2 or x.shape[0] != n_items or x.shape[1] == 0:
        raise ValueError(
            f"Expected argument `{name}` to have one row per pool item, shape ({n_items}, D) "
            f"with D >= 1, but got shape {tuple(x.shape)}."
        )
    x = x.detach()
    x = x if x.dtype in (torch.float32, torch.float64) else x.float()
    x = x.to(device=resolve_device(device) if device is not None else x.device)
    check_finite(x, np.arange(n_items), f"argument `{name}`")
    return l2_normalise(x)


def _no_scores(out: Any) -> Tensor:
    """``output_fn`` of an encoder pass: the pass reads features, not class scores."""
    t = first_tensor(out)
    if t is None or t.ndim == 0:
        raise TypeError(
            f"Expected the encoder to return a tensor (B, D), or a tuple, list or dict holding "
            f"one, but got {type(out).__name__}: pass `layer` naming a module that returns one."
        )
    return torch.zeros(t.shape[0], 2, device=t.device)


def encode(
    encoder: nn.Module,
    dataset: Any,
    n_items: int,
    *,
    layer: Optional[str] = None,
    device: Device = None,
    inference: Optional[InferenceConfig] = None,
) -> Tensor:
    """The encoder's output (or the output of its module ``layer``) for every item, normalised.

    One pass of :func:`aalearn.collect` over dataset indices ``0 .. n_items - 1`` with
    ``inference`` (batch size, ``input_fn``, ``feature_pooling``...); ``device=None``
    runs where the encoder is, an explicit device must be the encoder's (it is never
    moved). The encoder's training flags are restored afterwards.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> from aalearn.embeddings import encode
    >>> data = TensorDataset(torch.randn(10, 6), torch.zeros(10, dtype=torch.long))
    >>> encoder = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> encode(encoder, data, 10).shape, encode(encoder, data, 10, layer="1").shape
    (torch.Size([10, 3]), torch.Size([10, 8]))
    """
    if not isinstance(encoder, nn.Module):
        raise TypeError(
            f"Expected argument `embedding` to be a torch.nn.Module encoder, but got "
            f"{type(encoder).__name__}."
        )
    if layer is not None:
        names = [name for name, _ in encoder.named_modules() if name]
        if layer not in names:
            close = difflib.get_close_matches(str(layer), names, n=5, cutoff=0.5)
            hint = f"close matches: {close}" if close else f"modules include {names[:20]}"
            raise ValueError(
                f"Expected argument `layer` to name a module of the encoder (a name from "
                f"encoder.named_modules()), but got {layer!r}; {hint}."
            )
    cfg = (inference or InferenceConfig()).replace(
        feature_layer=layer or "",  # "" is the encoder itself in named_modules()
        feature_source="output",
        output_fn=_no_scores,
        device=device if device is not None else (inference.device if inference else None),
    )
    request = PassRequest(probs=False, features=True)
    out = collect_pass(encoder, dataset, np.arange(n_items), request, cfg)
    assert out.features is not None
    return l2_normalise(out.features.float())


def _inputs(dataset: Any, n_items: int, inference: Optional[InferenceConfig]) -> Tensor:
    """The flattened float inputs ``(n_items, P)`` of the dataset, on the CPU."""
    cfg = (inference or InferenceConfig()).replace(device="cpu")
    parts: list[Tensor] = []
    request = PassRequest(probs=False, inputs=True)

    def take(out: Any) -> None:
        parts.append(out.inputs.flatten(1).float())

    stream_pass(nn.Identity(), dataset, np.arange(n_items), take, request, cfg)
    x = torch.cat(parts)
    check_finite(x, np.arange(n_items), "the inputs of the default embedding")
    return x


def pca_embedding(
    x: Tensor,
    n_components: int = DEFAULT_COMPONENTS,
    *,
    standardise: bool = True,
    random_state: int = _PCA_SEED,
) -> Tensor:
    """PCA of the rows of ``x`` (flattened), optionally standardised per feature, normalised.

    Each feature is centred (and, with ``standardise``, divided by its standard
    deviation; constant features stay 0); the first ``min(n_components, N, P)``
    principal components are kept (no PCA when ``P <= n_components``); rows are then
    L2-normalised. Returns a float32 CPU tensor.

    Examples
    --------
    >>> import torch
    >>> from aalearn.embeddings import pca_embedding
    >>> x = torch.randn(50, 10, generator=torch.Generator().manual_seed(0))
    >>> e = pca_embedding(x, 4)
    >>> e.shape, bool(torch.allclose(e.norm(dim=1), torch.ones(50)))
    (torch.Size([50, 4]), True)
    """
    x = x.detach().cpu().flatten(1).double()
    x = x - x.mean(dim=0)
    if standardise:
        std = x.std(dim=0)
        x = x / torch.where(std > 0, std, torch.ones_like(std))
    k = min(n_components, x.shape[0], x.shape[1])
    if k < x.shape[1]:
        from sklearn.decomposition import PCA

        z = PCA(n_components=k, random_state=random_state).fit_transform(x.numpy())
        x = torch.from_numpy(np.ascontiguousarray(z))
    return l2_normalise(x.float())


def default_embedding(
    dataset: Any,
    n_items: int,
    *,
    device: Device = None,
    inference: Optional[InferenceConfig] = None,
) -> Tensor:
    """The default embedding: :func:`pca_embedding` of the flattened inputs (no weights).

    The inputs are read with the inference pass's batches (``input_fn`` of
    ``inference``; they must be tensors, e.g. images or feature vectors): memory
    ``O(N P)`` for ``P`` input numbers per item. Non-finite inputs raise
    ``ValueError`` naming the items. ``device=None`` leaves the result on the CPU.
    """
    x = _inputs(dataset, n_items, inference)
    emb = pca_embedding(x, DEFAULT_COMPONENTS)
    return emb if device is None else emb.to(resolve_device(device))


class EmbeddingCache:
    """One embedding, computed on first use and reused while its key is unchanged.

    The key is the dataset object (held, so its identity cannot be reused), its
    length, the ``source`` object (by identity), ``layer`` and ``device``: another
    pool's dataset, a grown dataset or another ``embedding`` recomputes; a pool
    whose labels changed does not (the embedding does not depend on labels).
    """

    def __init__(self) -> None:
        self.key: Optional[tuple[Any, ...]] = None
        self.value: Optional[Tensor] = None
        self.computed = 0  # how many times an embedding was computed (for tests and users)

    def get(
        self,
        source: EmbeddingSource,
        dataset: Any,
        n_items: int,
        *,
        layer: Optional[str] = None,
        device: Device = None,
        inference: Optional[InferenceConfig] = None,
    ) -> Tensor:
        """The embedding of ``dataset`` (``n_items`` rows) from ``source``; see the module."""
        key = (dataset, n_items, source, layer, None if device is None else str(device))
        if self.value is not None and self.key is not None and _same_key(self.key, key):
            return self.value
        check_embedding_source(source)
        if isinstance(source, nn.Module):
            value = encode(
                source, dataset, n_items, layer=layer, device=device, inference=inference
            )
        elif source is not None:
            value = precomputed_embedding(source, n_items, device=device)
        else:
            value = default_embedding(dataset, n_items, device=device, inference=inference)
        self.key, self.value = key, value
        self.computed += 1
        return value


def _same_key(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    # objects by identity (an array's == is elementwise), the rest by value
    return all(x is y or (isinstance(x, (int, str)) and x == y) for x, y in zip(a, b))

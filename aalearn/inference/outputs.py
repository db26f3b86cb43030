"""What a pass is asked for (:class:`PassRequest`) and what it returns (:class:`InferenceOutputs`).

The output fields are defined once, as the fields of :class:`InferenceOutputs`;
:data:`OUTPUT_FIELDS` (every field but ``indices``) and :data:`FINITE_FIELDS` (the
model outputs checked for NaN and infinities) derive from them, and so does everything
that lists outputs: :func:`aalearn.collect`'s buffers, the non-finite check of the
pass and the gathering of :meth:`aalearn.distributed.Shard.collect`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from aalearn._validation import check_int

__all__ = ["FINITE_FIELDS", "OUTPUT_FIELDS", "InferenceOutputs", "PassRequest"]

#: Field metadata: the pass raises ``ValueError`` on a NaN or infinite row of it (aalearn._finite).
_CHECKED = {"finite": True}


@dataclass
class InferenceOutputs:
    """What one pass produced for the items ``indices`` (row ``i`` is ``indices[i]``).

    Tensors stay on the inference device. Fields not asked for are ``None``.

    Attributes
    ----------
    indices : numpy.ndarray
        Dataset indices, ``int64``, in the order processed.
    probs : torch.Tensor or None
        Class probabilities ``(N, C)``, float32 (a binary one-logit model gives ``C = 2``).
    features : torch.Tensor or None
        The feature layer's input (or output), ``(N, D)`` (see :class:`InferenceConfig`).
    losses : torch.Tensor or None
        Per-sample cross-entropy ``(N,)``.
    mc_probs : torch.Tensor or None
        Monte-Carlo dropout probabilities ``(N, K, C)``.
    inputs : torch.Tensor or None
        The model inputs themselves ``(N, ...)`` (for raw-input selectors such as VAAL).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from aalearn import InferenceOutputs
    >>> probs = torch.tensor([[0.9, 0.1], [0.5, 0.5]])
    >>> out = InferenceOutputs(indices=np.array([4, 2]), probs=probs)
    >>> out.probs.argmax(1).tolist(), out.features is None
    ([0, 0], True)
    """

    indices: np.ndarray
    probs: Optional[torch.Tensor] = field(default=None, metadata=_CHECKED)
    features: Optional[torch.Tensor] = field(default=None, metadata=_CHECKED)
    losses: Optional[torch.Tensor] = None
    mc_probs: Optional[torch.Tensor] = field(default=None, metadata=_CHECKED)
    inputs: Optional[torch.Tensor] = None


#: The output fields of :class:`InferenceOutputs`, row-aligned with ``indices``, in order.
OUTPUT_FIELDS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(InferenceOutputs) if f.name != "indices"
)

#: The output fields whose non-finite rows make the pass raise (not the losses, which
#: may be infinite for a confident wrong prediction, nor the user's inputs).
FINITE_FIELDS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(InferenceOutputs) if f.metadata.get("finite")
)


@dataclass(frozen=True)
class PassRequest:
    """What one inference pass computes: the flags of :func:`aalearn.collect`, as one value.

    Built by :func:`~aalearn.collect` and :func:`~aalearn.stream` from their keyword
    arguments, and by a sampler's ``_collect`` from its. The labels of the losses are
    not part of it: they are data aligned with the pass's indices (each rank of a
    sharded pass takes its block of them), not a choice of outputs.

    Parameters
    ----------
    probs, features, losses, inputs : bool
        Which fields of :class:`InferenceOutputs` to fill.
    mc_samples : int
        ``K > 0`` fills ``mc_probs`` from ``K`` MC-dropout passes.

    Examples
    --------
    >>> from aalearn.inference import PassRequest
    >>> request = PassRequest(probs=False, mc_samples=8)
    >>> request.deterministic, request.mc_samples
    (False, 8)
    >>> PassRequest(mc_samples=-1)
    Traceback (most recent call last):
    ...
    ValueError: Expected argument `mc_samples` to be >= 0, but got -1.
    """

    probs: bool = True
    features: bool = False
    losses: bool = False
    inputs: bool = False
    mc_samples: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mc_samples", check_int(self.mc_samples, "mc_samples", minimum=0))

    @property
    def deterministic(self) -> bool:
        """The pass needs the deterministic forward pass (for probs, features or losses)."""
        return bool(self.probs or self.features or self.losses)

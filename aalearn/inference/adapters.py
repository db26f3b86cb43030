"""How the pass reads the user's batches and model outputs: the model adapters.

Every convention about what a batch or a model output looks like lives here, and
nowhere else (the configuration, :mod:`aalearn.inference.config`, validates its
``outputs`` field against :data:`OUTPUTS`, and the pool's relabelling view reads
:data:`DEFAULT_LABEL_KEYS`). To support a new kind of batch or model output, edit
this module only:

* a new **batch** layout: :func:`default_input_fn` (the model input) and
  :func:`default_target_fn` (the class targets); a new label name of dict items:
  :data:`DEFAULT_LABEL_KEYS`;
* a new **model output** holding the class scores (an object, a mapping, a
  tuple): :func:`scores_of`;
* a new **kind of class scores** (``outputs=``, e.g. logits or probabilities):
  :data:`OUTPUTS` and :func:`as_logits`.

:class:`ModelCall` applies them to one batch (with the user's ``input_fn``,
``target_fn`` and ``output_fn`` taking precedence), and :func:`call_model` calls the
model on a tensor, a tuple or list, or a mapping of inputs.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:  # the config validates against OUTPUTS: imported for types only
    from aalearn.inference.config import InferenceConfig

__all__ = [
    "DEFAULT_LABEL_KEYS",
    "OUTPUTS",
    "ModelCall",
    "as_logits",
    "call_model",
    "default_input_fn",
    "default_target_fn",
    "first_tensor",
    "scores_of",
    "to_device",
]

#: Label keys of dict items tried in order when none is configured (HuggingFace's names).
DEFAULT_LABEL_KEYS = ("label", "labels")

#: What a model's class scores may be (``InferenceConfig.outputs``), read by :func:`as_logits`.
OUTPUTS = ("logits", "probs", "log_probs")


def _label_keys(label_key: Optional[str]) -> tuple[str, ...]:
    return DEFAULT_LABEL_KEYS if label_key is None else (label_key,)


# ------------------------------------------------------------------ batches


def default_input_fn(batch: Any, label_key: Optional[str] = None) -> Any:
    """The model input of a collated batch.

    Element 0 of a tuple or list batch; for a mapping, every key except the label key
    (``label_key``, or ``"label"`` / ``"labels"``), for ``model(**inputs)``; any other
    batch as is.

    Examples
    --------
    >>> import torch
    >>> from aalearn.inference import default_input_fn
    >>> batch = {"input_ids": torch.ones(2, 3), "label": torch.tensor([0, 1])}
    >>> sorted(default_input_fn(batch))
    ['input_ids']
    >>> default_input_fn((torch.zeros(2, 4), torch.tensor([0, 1]))).shape
    torch.Size([2, 4])
    """
    if isinstance(batch, (tuple, list)):
        return batch[0]
    if isinstance(batch, Mapping):
        skip = _label_keys(label_key)
        return {k: v for k, v in batch.items() if k not in skip}
    return batch


def default_target_fn(batch: Any, label_key: Optional[str] = None) -> Any:
    """The class targets of a collated batch: element 1 of a tuple, the label key of a dict.

    Examples
    --------
    >>> import torch
    >>> from aalearn.inference import default_target_fn
    >>> default_target_fn({"x": torch.ones(2), "labels": torch.tensor([1, 0])}).tolist()
    [1, 0]
    """
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[1]
    if isinstance(batch, Mapping):
        for key in _label_keys(label_key):
            if key in batch:
                return batch[key]
        raise ValueError(
            f"Per-sample losses need targets, but the dict batch has none of the label keys "
            f"{list(_label_keys(label_key))} (its keys: {sorted(batch)}): pass "
            "inference={'label_key': ...} or `target_fn`, or label the pool with labels=..."
        )
    raise ValueError(
        "Per-sample losses need targets, but the batch has no second element: pass "
        "`target_fn`, or label the pool with labels=..."
    )


# ------------------------------------------------------------------- inputs


def to_device(obj: Any, dev: torch.device, non_blocking: bool) -> Any:
    """``obj`` with every tensor in it (nested tuples, lists, mappings) moved to ``dev``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(dev, non_blocking=non_blocking)
    if isinstance(obj, Mapping):
        return {k: to_device(v, dev, non_blocking) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(v, dev, non_blocking) for v in obj)
    return obj


def first_tensor(obj: Any) -> Optional[torch.Tensor]:
    """The first tensor in ``obj`` (depth first through tuples, lists and mappings)."""
    if isinstance(obj, torch.Tensor):
        return obj
    values = obj.values() if isinstance(obj, Mapping) else obj
    if isinstance(obj, (Mapping, tuple, list)):
        for v in values:
            t = first_tensor(v)
            if t is not None:
                return t
    return None


def call_model(model: nn.Module, x: Any) -> Any:
    """``model(**x)`` for a mapping, ``model(*x)`` for a tuple or list, else ``model(x)``."""
    if isinstance(x, Mapping):
        return model(**x)
    if isinstance(x, (tuple, list)):
        return model(*x)
    return model(x)


def _check_forward_keys(model: nn.Module, keys: list[str]) -> None:
    """A clear error when ``model.forward`` cannot take the keyword arguments ``keys``."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # a builtin or C forward: let the call speak
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    named = [
        n
        for n, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    bad = [k for k in keys if k not in named]
    if bad:
        raise TypeError(
            f"The model's forward does not take the batch key(s) {bad}: the dict batch's keys "
            f"{keys} go to model(**batch), and its forward's parameters are {named}. Pass "
            "inference={'input_fn': ...} to choose the model's inputs, or "
            "inference={'label_key': ...} if one of them is the label."
        )


# ------------------------------------------------------------------ outputs


def scores_of(out: Any) -> torch.Tensor:
    """The class scores in a model output: a tensor, ``logits`` entry/attribute, element 0."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping) and isinstance(out.get("logits"), torch.Tensor):
        return out["logits"]
    if isinstance(getattr(out, "logits", None), torch.Tensor):
        return out.logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(
        "Expected the model to return class scores: a tensor (B, C), a tuple or list whose "
        "first element is one, a dict with 'logits' or an object with a `.logits` tensor, "
        f"but got {type(out).__name__}. Pass inference={{'output_fn': ...}} to extract them."
    )


def as_logits(scores: torch.Tensor, n: int, outputs: str) -> torch.Tensor:
    """``(n, C)`` float32 logits whose softmax is the model's class probabilities.

    ``outputs`` (one of :data:`OUTPUTS`) says what ``scores`` are. A binary model with
    one logit ``l`` (shape ``(n,)`` or ``(n, 1)``) becomes the two logits ``[0, l]``:
    softmax gives ``[1 - sigmoid(l), sigmoid(l)]``.
    """
    shape = tuple(scores.shape)
    binary = scores.ndim == 1 or (scores.ndim == 2 and shape[1] == 1)
    if not (binary or (scores.ndim == 2 and shape[1] >= 2)) or shape[0] != n:
        raise ValueError(
            f"Expected the model's class scores for a batch of {n} items to have shape "
            f"({n}, C) with C >= 2, or ({n},) / ({n}, 1) for a binary model with one logit, "
            f"but got shape {shape}. For other outputs (e.g. per-token scores (B, T, C)) pass "
            "inference={'output_fn': ...} returning one (B, C) row per item."
        )
    s = scores.float()
    if not binary:
        return s if outputs != "probs" else s.log()
    s = s.reshape(n, 1)
    if outputs == "logits":
        return torch.cat([torch.zeros_like(s), s], dim=1)
    if outputs == "probs":
        return torch.cat([1 - s, s], dim=1).log()
    return torch.cat([torch.log1p(-s.exp()), s], dim=1)  # log-probability of class 1


# ------------------------------------------------------------- one batch


class ModelCall:
    """One batch through the adapters: its model input, the class logits and the targets.

    The user's ``input_fn``, ``output_fn`` and ``target_fn`` (of ``cfg``) take
    precedence over the defaults of this module.
    """

    def __init__(self, model: nn.Module, cfg: InferenceConfig, dev: torch.device) -> None:
        self.model, self.cfg, self.dev = model, cfg, dev
        self.non_blocking = dev.type == "cuda"
        self.checked_keys = False

    def inputs(self, batch: Any) -> tuple[Any, int]:
        """The model input of ``batch`` on the device, and the number of items in it."""
        cfg = self.cfg
        x = (
            cfg.input_fn(batch)
            if cfg.input_fn is not None
            else default_input_fn(batch, cfg.label_key)
        )
        x = to_device(x, self.dev, self.non_blocking)
        if isinstance(x, Mapping) and not self.checked_keys:
            _check_forward_keys(self.model, list(x))
            self.checked_keys = True
        first = first_tensor(x)
        if first is None or first.ndim == 0:
            raise TypeError(
                "Expected the model input to be a tensor, or a tuple, list or dict holding "
                f"batched tensors, but got {type(x).__name__} with none: pass "
                "inference={'input_fn': ...}."
            )
        return x, int(first.shape[0])

    def logits(self, x: Any, n: int) -> torch.Tensor:
        """One forward pass on ``x`` (``n`` items): ``(n, C)`` float32 logits."""
        cfg = self.cfg
        with torch.autocast(self.dev.type, enabled=cfg.autocast):
            out = call_model(self.model, x)
        if cfg.output_fn is not None:
            out = cfg.output_fn(out)
        return as_logits(scores_of(out), n, cfg.outputs)

    def targets(self, batch: Any, labels: Optional[np.ndarray], start: int, n: int) -> torch.Tensor:
        """The class targets of ``batch``: ``labels[start:start + n]``, ``-1`` from the batch."""
        cfg = self.cfg
        lab = None if labels is None else labels[start : start + n]
        if lab is not None and (lab >= 0).all():
            return torch.from_numpy(lab).to(self.dev, non_blocking=self.non_blocking)
        raw = (
            cfg.target_fn(batch)
            if cfg.target_fn is not None
            else default_target_fn(batch, cfg.label_key)
        )
        y = torch.as_tensor(raw).to(self.dev).long().reshape(-1)
        if y.shape[0] != n:
            raise ValueError(
                f"Expected the targets of a batch of {n} items to be {n} class labels, but got "
                f"shape {tuple(torch.as_tensor(raw).shape)}; pass inference={{'target_fn': ...}}."
            )
        if lab is None:
            return y
        return torch.where(
            torch.from_numpy(lab).to(self.dev) >= 0, torch.from_numpy(lab).to(self.dev), y
        )

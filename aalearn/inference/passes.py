"""The inference pass: :func:`stream` batch by batch, :func:`collect` into whole tensors.

A pass is a :class:`~aalearn.inference.PassRequest` (what to compute), a resolved
:class:`~aalearn.InferenceConfig` (how to read batches and call the model) and the
items. The public :func:`stream` and :func:`collect` take the request as keyword
arguments and the configuration as ``inference=`` plus ``**options`` overrides, resolve
both once, and call :func:`stream_pass` / :func:`collect_pass`, which samplers and
:class:`aalearn.distributed.Shard` call directly with their own request and config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from aalearn._finite import FiniteCheck
from aalearn.inference.adapters import ModelCall
from aalearn.inference.config import InferenceConfig, resolve_config
from aalearn.inference.features import FeatureTap
from aalearn.inference.loading import batches, inference_device, preserve_mode, set_mc_dropout
from aalearn.inference.outputs import FINITE_FIELDS, OUTPUT_FIELDS, InferenceOutputs, PassRequest

__all__ = ["collect", "collect_pass", "stream", "stream_pass"]


class _Run:
    """One pass in progress: the forward passes a :class:`PassRequest` asks for, per batch."""

    def __init__(
        self,
        model: nn.Module,
        request: PassRequest,
        cfg: InferenceConfig,
        dev: torch.device,
        labels: Optional[np.ndarray],
    ) -> None:
        self.model, self.request, self.labels = model, request, labels
        self.step = ModelCall(model, cfg, dev)
        self.tap = FeatureTap(model, cfg) if request.features else None
        self.bad_labels: list[torch.Tensor] = []
        self.n_classes = 0

    def outputs(self, batch: Any, indices: np.ndarray, start: int) -> tuple[InferenceOutputs, int]:
        """The outputs of ``batch`` (items ``indices[start:]``) and its number of items."""
        x, n = self.step.inputs(batch)
        out = InferenceOutputs(indices=indices[start : start + n])
        if self.request.deterministic:
            self._deterministic(out, batch, x, start, n)
        if self.request.inputs:
            if not isinstance(x, torch.Tensor):
                raise TypeError(
                    "This sampler needs the raw model inputs as one tensor, but the "
                    f"model input is a {type(x).__name__}: pass "
                    "inference={'input_fn': ...} returning a tensor."
                )
            out.inputs = x
        if self.request.mc_samples:
            out.mc_probs = self._mc_probs(x, n)
        return out, n

    def _deterministic(self, out: InferenceOutputs, batch: Any, x: Any, start: int, n: int) -> None:
        logits = self.step.logits(x, n)
        if self.request.probs:
            out.probs = logits.softmax(dim=-1)
        if self.tap is not None:
            out.features = self.tap.features()
        if self.request.losses:
            y = self.step.targets(batch, self.labels, start, n)
            self.n_classes = n_classes = logits.shape[1]
            bad = (y < 0) | (y >= n_classes)
            self.bad_labels.append(bad)
            # Clamped so that an out-of-range label cannot trip a device-side
            # assert; the pass raises after the last batch (one host sync).
            out.losses = F.cross_entropy(logits, y.clamp(0, n_classes - 1), reduction="none")

    def _mc_probs(self, x: Any, n: int) -> torch.Tensor:
        """``(n, K, C)`` probabilities of ``K`` forward passes with the dropout layers on."""
        if self.tap is not None:
            self.tap.enabled = False
        set_mc_dropout(self.model, True)
        draws = [self.step.logits(x, n).softmax(dim=-1) for _ in range(self.request.mc_samples)]
        set_mc_dropout(self.model, False)
        if self.tap is not None:
            self.tap.enabled = True
        return torch.stack(draws, dim=1)

    def close(self) -> None:
        """Remove the feature hooks."""
        if self.tap is not None:
            self.tap.remove()

    def check_labels(self, indices: np.ndarray) -> None:
        """Raise ``ValueError`` naming the items whose target was outside the classes."""
        if not self.bad_labels:
            return
        bad, n_classes = torch.cat(self.bad_labels), self.n_classes
        if bool(bad.any()):
            where = indices[bad.cpu().numpy()]
            raise ValueError(
                f"{where.size} item(s) have a label outside the model's {n_classes} classes "
                f"[0, {n_classes}), e.g. dataset indices {where[:5].tolist()}: check the labels "
                "given to pool.label(..., labels=...) or the dataset's targets (`target_fn`)."
            )


def _check_labels_arg(labels: Optional[np.ndarray], indices: np.ndarray) -> Optional[np.ndarray]:
    if labels is None:
        return None
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != indices.shape:
        raise ValueError(
            f"Expected argument `labels` to match `indices` in shape {indices.shape}, but "
            f"got {labels.shape}."
        )
    return labels


def stream_pass(
    model: nn.Module,
    dataset: Dataset,
    indices: np.ndarray,
    consume: Callable[[InferenceOutputs], None],
    request: PassRequest,
    cfg: InferenceConfig,
    labels: Optional[np.ndarray] = None,
) -> None:
    """:func:`stream` with its request and configuration resolved (see :func:`stream`)."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"Expected argument `model` to be a torch.nn.Module, but got {type(model).__name__}."
        )
    dev = inference_device(model, cfg.device)
    indices = np.asarray(indices, dtype=np.int64)
    run = _Run(model, request, cfg, dev, _check_labels_arg(labels, indices))
    start = 0
    finite = FiniteCheck()  # non-finite outputs raise at the end of the pass (aalearn._finite)
    try:
        with preserve_mode(model), torch.inference_mode():
            model.eval()
            for batch in batches(dataset, indices, cfg, dev):
                out, n = run.outputs(batch, indices, start)
                finite.update(**{name: getattr(out, name) for name in FINITE_FIELDS})
                consume(out)
                start += n
            finite.check(indices)
    finally:
        run.close()
    run.check_labels(indices)


def stream(
    model: nn.Module,
    dataset: Dataset,
    indices: np.ndarray,
    consume: Callable[[InferenceOutputs], None],
    *,
    probs: bool = True,
    features: bool = False,
    losses: bool = False,
    inputs: bool = False,
    mc_samples: int = 0,
    labels: Optional[np.ndarray] = None,
    inference: Union[InferenceConfig, Mapping[str, Any], None] = None,
    **options: Any,
) -> None:
    """Run ``model`` over ``dataset[indices]`` batch by batch and hand each batch to ``consume``.

    The model runs in ``eval()`` mode under :func:`torch.inference_mode`; every
    submodule's training flag is restored afterwards. With ``mc_samples=K > 0``
    the pass adds ``K`` stochastic forward passes per batch with the dropout
    layers on and batch norm still in eval mode (MC dropout); the deterministic
    forward pass runs only when ``probs``, ``features`` or ``losses`` need it. See
    :func:`collect` for the parameters. Use it to keep memory at one batch, e.g. with
    :class:`aalearn.functional.StreamingTopK`.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> from aalearn import stream
    >>> model = nn.Linear(3, 2)
    >>> data = TensorDataset(torch.randn(10, 3), torch.zeros(10, dtype=torch.long))
    >>> sizes = []
    >>> stream(model, data, np.arange(10), lambda out: sizes.append(len(out.indices)),
    ...        batch_size=4, device="cpu")
    >>> sizes
    [4, 4, 2]
    """
    cfg = resolve_config(inference, **options)
    request = PassRequest(
        probs=probs, features=features, losses=losses, inputs=inputs, mc_samples=mc_samples
    )
    stream_pass(model, dataset, indices, consume, request, cfg, labels)


def collect(
    model: nn.Module,
    dataset: Dataset,
    indices: np.ndarray,
    *,
    probs: bool = True,
    features: bool = False,
    losses: bool = False,
    inputs: bool = False,
    mc_samples: int = 0,
    labels: Optional[np.ndarray] = None,
    inference: Union[InferenceConfig, Mapping[str, Any], None] = None,
    **options: Any,
) -> InferenceOutputs:
    """One inference pass over ``dataset[indices]``; results stay on the inference device.

    Parameters
    ----------
    model : torch.nn.Module
        Called on each batch's input (see :class:`InferenceConfig` for the inputs and
        outputs it may take and return).
    dataset : torch.utils.data.Dataset
        Map-style dataset; ``indices`` are its indices.
    indices : numpy.ndarray
        Dataset indices to score, in output order.
    probs, features, losses, inputs : bool
        What to return (see :class:`InferenceOutputs`). ``features`` captures the
        input (or output) of the feature layer with a forward hook.
    mc_samples : int
        ``K > 0`` adds ``mc_probs`` from ``K`` MC-dropout passes.
    labels : numpy.ndarray, optional
        Targets for ``losses`` aligned with ``indices``; ``-1`` entries fall back
        to ``target_fn``. A target outside the model's classes is a ``ValueError``
        naming the items, raised after the pass.
    inference : InferenceConfig or mapping, optional
        How batches are read and the model called (default: ``InferenceConfig()``).
    **options
        Fields of :class:`InferenceConfig` that override ``inference``, e.g.
        ``batch_size=64, device="cpu"``: the one way to adjust a configuration per
        call. Both are resolved once, by :func:`~aalearn.inference.resolve_config`.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> from aalearn.inference import collect
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> data = TensorDataset(torch.randn(10, 4), torch.arange(10) % 3)
    >>> out = collect(model, data, np.arange(10), features=True, losses=True, device="cpu")
    >>> out.probs.shape, out.features.shape, out.losses.shape
    (torch.Size([10, 3]), torch.Size([10, 8]), torch.Size([10]))
    """
    indices = np.asarray(indices, dtype=np.int64)
    cfg = resolve_config(inference, **options)
    request = PassRequest(
        probs=probs, features=features, losses=losses, inputs=inputs, mc_samples=mc_samples
    )
    return collect_pass(model, dataset, indices, request, cfg, labels)


def collect_pass(
    model: nn.Module,
    dataset: Dataset,
    indices: np.ndarray,
    request: PassRequest,
    cfg: InferenceConfig,
    labels: Optional[np.ndarray] = None,
) -> InferenceOutputs:
    """:func:`collect` with its request and configuration resolved (see :func:`collect`)."""
    indices = np.asarray(indices, dtype=np.int64)
    n_total = indices.shape[0]
    buffers: dict[str, torch.Tensor] = {}
    pos = [0]

    def _consume(out: InferenceOutputs) -> None:
        b = out.indices.shape[0]
        for name in OUTPUT_FIELDS:
            t = getattr(out, name)
            if t is None:
                continue
            if name not in buffers:
                # Allocated outside inference mode: the results are ordinary tensors
                # that selector networks can train on.
                with torch.inference_mode(False):
                    buffers[name] = torch.empty(
                        (n_total, *t.shape[1:]), dtype=t.dtype, device=t.device
                    )
            buffers[name][pos[0] : pos[0] + b] = t
        pos[0] += b

    stream_pass(model, dataset, indices, _consume, request, cfg, labels)
    return InferenceOutputs(indices=indices, **{name: buffers.get(name) for name in OUTPUT_FIELDS})

"""One batched inference pass of a model over pool items.

Samplers never write their own loop over the pool: they ask :func:`collect` (or
the streaming :func:`stream`) for what they need, probabilities, features from a
named layer, per-sample losses, Monte-Carlo dropout samples or the raw inputs,
and get it from a single pass.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from aalearn._validation import Device, check_int, resolve_device
from aalearn.mc_dropout import dropout_modules
from aalearn.pool import PoolSubset

__all__ = [
    "InferenceOutputs",
    "collect",
    "default_input_fn",
    "default_target_fn",
    "find_feature_layer",
    "inference_device",
    "preserve_mode",
    "stream",
]


def default_input_fn(batch: Any) -> torch.Tensor:
    """The model input of a collated batch: its first element if it is a tuple or list."""
    if isinstance(batch, (tuple, list)):
        return batch[0]
    if isinstance(batch, dict):
        raise TypeError(
            "Cannot find the model input in a dict batch: pass `input_fn`, e.g. "
            "input_fn=lambda b: b['image']."
        )
    return batch


def default_target_fn(batch: Any) -> torch.Tensor:
    """The target of a collated batch: its second element."""
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[1]
    raise ValueError(
        "Per-sample losses need targets, but the batch has no second element: pass "
        "`target_fn`, or label the pool with labels=..."
    )


@dataclass
class InferenceOutputs:
    """What one pass produced for the items ``indices`` (row ``i`` is ``indices[i]``).

    Tensors stay on the inference device. Fields not asked for are ``None``.

    Attributes
    ----------
    indices : numpy.ndarray
        Dataset indices, ``int64``, in the order processed.
    probs : torch.Tensor or None
        Softmax probabilities ``(N, C)``, float32.
    features : torch.Tensor or None
        Input of the feature layer, flattened to ``(N, D)``.
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
    probs: Optional[torch.Tensor] = None
    features: Optional[torch.Tensor] = None
    losses: Optional[torch.Tensor] = None
    mc_probs: Optional[torch.Tensor] = None
    inputs: Optional[torch.Tensor] = None
    extras: dict[str, Any] = field(default_factory=dict)


def find_feature_layer(model: nn.Module, feature_layer: Optional[str] = "auto") -> nn.Module:
    """The module whose *input* is captured as the feature vector.

    ``"auto"`` picks the last :class:`torch.nn.Linear` registered in ``model``
    (the final classifier in the usual ``features -> fc`` layout); a string picks
    the module of that name in ``model.named_modules()``.
    """
    modules = dict(model.named_modules())
    if feature_layer is None or feature_layer == "auto":
        linears = [m for m in modules.values() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(
                "Cannot find a default feature layer: the model has no nn.Linear. Pass "
                "`feature_layer` with the name of the module whose input is the feature vector."
            )
        return linears[-1]
    if not isinstance(feature_layer, str):
        raise TypeError(
            f"Expected argument `feature_layer` to be a module name or 'auto', but got "
            f"{type(feature_layer).__name__}."
        )
    if feature_layer not in modules:
        names = [n for n in modules if n][:20]
        raise ValueError(
            f"Expected argument `feature_layer` to name a module of the model, but got "
            f"{feature_layer!r}; modules include {names}."
        )
    return modules[feature_layer]


@contextlib.contextmanager
def preserve_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Record every submodule's ``training`` flag and restore it exactly on exit."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def _set_mc_dropout(model: nn.Module, on: bool) -> None:
    for m in dropout_modules(model):
        m.train(on)


def _logits_of(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict) and isinstance(out.get("logits"), torch.Tensor):
        return out["logits"]
    raise TypeError(
        "Expected the model to return a logits tensor (N, C), a tuple whose first element "
        f"is one, or a dict with 'logits', but got {type(out).__name__}."
    )


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``a`` and ``b`` name the same device (``cuda`` without an index is the current one)."""
    if a.type != b.type:
        return False
    if a.index is None or b.index is None:
        if a.type != "cuda":
            return True
        current = torch.cuda.current_device()
        return (current if a.index is None else a.index) == (
            current if b.index is None else b.index
        )
    return a.index == b.index


def inference_device(model: nn.Module, device: Device = None) -> torch.device:
    """The device an inference pass of ``model`` runs on, checked against the model's own.

    ``None`` follows the model: the device of its first parameter (or buffer); a model
    with neither runs on CUDA when available, else on the CPU. An explicit ``device``
    must match the model's: the model is never moved (that would change the caller's
    object), so a mismatch is a :class:`ValueError` raised before any work.

    Examples
    --------
    >>> import torch
    >>> from aalearn.inference import inference_device
    >>> inference_device(torch.nn.Linear(2, 2))
    device(type='cpu')
    >>> inference_device(torch.nn.Linear(2, 2), "meta")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Expected the model to be on `device` (meta), but its parameters are on cpu: ...
    """
    own = next(itertools.chain(model.parameters(), model.buffers()), None)
    if device is None:
        return own.device if own is not None else resolve_device(None)
    dev = resolve_device(device)
    if own is not None and not _same_device(own.device, dev):
        raise ValueError(
            f"Expected the model to be on `device` ({dev}), but its parameters are on "
            f"{own.device}: move it first with model.to({str(dev)!r}), or leave "
            "device=None to run where the model is."
        )
    return dev


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
    feature_layer: Optional[str] = "auto",
    batch_size: int = 256,
    device: Device = None,
    num_workers: int = 0,
    input_fn: Optional[Callable[[Any], torch.Tensor]] = None,
    target_fn: Optional[Callable[[Any], torch.Tensor]] = None,
    autocast: bool = False,
) -> None:
    """Run ``model`` over ``dataset[indices]`` batch by batch and hand each batch to ``consume``.

    The model runs in ``eval()`` mode under :func:`torch.inference_mode`; every
    submodule's training flag is restored afterwards. With ``mc_samples=K > 0``
    the pass adds ``K`` stochastic forward passes per batch with the dropout
    layers on and batch norm still in eval mode (MC dropout). See :func:`collect`
    for the parameters. Use it to keep memory at one batch, e.g. with
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
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    num_workers = check_int(num_workers, "num_workers", minimum=0)
    mc_samples = check_int(mc_samples, "mc_samples", minimum=0)
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"Expected argument `model` to be a torch.nn.Module, but got {type(model).__name__}."
        )
    dev = inference_device(model, device)
    indices = np.asarray(indices, dtype=np.int64)
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != indices.shape:
            raise ValueError(
                f"Expected argument `labels` to match `indices` in shape {indices.shape}, but "
                f"got {labels.shape}."
            )
    get_input = input_fn or default_input_fn
    get_target = target_fn or default_target_fn
    subset = PoolSubset(dataset, indices)
    loader = DataLoader(
        subset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=dev.type == "cuda",
        # A private generator: iterating a DataLoader otherwise draws its base seed
        # from torch's global RNG, and samplers must leave that untouched.
        generator=torch.Generator().manual_seed(0),
    )
    captured: list[torch.Tensor] = []
    hook = None
    if features:
        layer = find_feature_layer(model, feature_layer)

        def _hook(_m: nn.Module, args: tuple[Any, ...]) -> None:
            captured.append(args[0])

        hook = layer.register_forward_pre_hook(_hook)
    non_blocking = dev.type == "cuda"
    start = 0
    try:
        with preserve_mode(model), torch.inference_mode():
            model.eval()
            for batch in loader:
                x = get_input(batch).to(dev, non_blocking=non_blocking)
                n = x.shape[0]
                captured.clear()
                with torch.autocast(dev.type, enabled=autocast):
                    logits = _logits_of(model(x)).float()
                out = InferenceOutputs(indices=indices[start : start + n])
                if probs:
                    out.probs = logits.softmax(dim=-1)
                if features:
                    if not captured:
                        raise RuntimeError("The feature layer was not called during forward.")
                    out.features = captured[-1].flatten(1).float()
                if losses:
                    y = _targets(batch, get_target, labels, start, n, dev, non_blocking)
                    out.losses = F.cross_entropy(logits, y, reduction="none")
                if inputs:
                    out.inputs = x
                if mc_samples:
                    if hook is not None:
                        hook.remove()
                        hook = None
                    _set_mc_dropout(model, True)
                    draws = []
                    for _ in range(mc_samples):
                        with torch.autocast(dev.type, enabled=autocast):
                            draws.append(_logits_of(model(x)).float().softmax(dim=-1))
                    _set_mc_dropout(model, False)
                    out.mc_probs = torch.stack(draws, dim=1)
                    if features:
                        hook = layer.register_forward_pre_hook(_hook)
                consume(out)
                start += n
    finally:
        if hook is not None:
            hook.remove()


def _targets(
    batch: Any,
    get_target: Callable[[Any], torch.Tensor],
    labels: Optional[np.ndarray],
    start: int,
    n: int,
    dev: torch.device,
    non_blocking: bool,
) -> torch.Tensor:
    if labels is not None:
        lab = labels[start : start + n]
        if (lab >= 0).all():
            return torch.from_numpy(lab).to(dev, non_blocking=non_blocking)
        y = torch.as_tensor(get_target(batch)).to(dev).long()
        known = torch.from_numpy(lab).to(dev)
        return torch.where(known >= 0, known, y)
    return torch.as_tensor(get_target(batch)).to(dev, non_blocking=non_blocking).long()


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
    feature_layer: Optional[str] = "auto",
    batch_size: int = 256,
    device: Device = None,
    num_workers: int = 0,
    input_fn: Optional[Callable[[Any], torch.Tensor]] = None,
    target_fn: Optional[Callable[[Any], torch.Tensor]] = None,
    autocast: bool = False,
) -> InferenceOutputs:
    """One inference pass over ``dataset[indices]``; results stay on ``device``.

    Parameters
    ----------
    model : torch.nn.Module
        Returns logits ``(B, C)`` (or a tuple/dict holding them) for an input batch.
    dataset : torch.utils.data.Dataset
        Map-style dataset; ``indices`` are its indices.
    indices : numpy.ndarray
        Dataset indices to score, in output order.
    probs, features, losses, inputs : bool
        What to return (see :class:`InferenceOutputs`). ``features`` captures the
        input of ``feature_layer`` with a forward pre-hook.
    mc_samples : int
        ``K > 0`` adds ``mc_probs`` from ``K`` MC-dropout passes.
    labels : numpy.ndarray, optional
        Targets for ``losses`` aligned with ``indices``; ``-1`` entries fall back
        to ``target_fn``.
    feature_layer : str or "auto"
        Module whose input is the feature vector; ``"auto"`` is the last ``nn.Linear``.
    batch_size, num_workers : int
        Passed to the :class:`~torch.utils.data.DataLoader`.
    device : str, torch.device or None
        Where the pass runs: ``None`` (default) follows the model's parameters; an
        explicit device must be the model's (see :func:`inference_device`; the model
        is never moved). On CUDA, batches use pinned memory and non-blocking copies.
    input_fn, target_fn : callable, optional
        Map a collated batch to the model input / the targets. Default: element 0 /
        element 1 of a tuple batch.
    autocast : bool
        Run the forward pass under :func:`torch.autocast` (mixed precision).

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
    n_total = indices.shape[0]
    buffers: dict[str, torch.Tensor] = {}
    pos = [0]

    def _consume(out: InferenceOutputs) -> None:
        b = out.indices.shape[0]
        for name in ("probs", "features", "losses", "mc_probs", "inputs"):
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

    stream(
        model,
        dataset,
        indices,
        _consume,
        probs=probs,
        features=features,
        losses=losses,
        inputs=inputs,
        mc_samples=mc_samples,
        labels=labels,
        feature_layer=feature_layer,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        input_fn=input_fn,
        target_fn=target_fn,
        autocast=autocast,
    )
    return InferenceOutputs(
        indices=indices,
        probs=buffers.get("probs"),
        features=buffers.get("features"),
        losses=buffers.get("losses"),
        mc_probs=buffers.get("mc_probs"),
        inputs=buffers.get("inputs"),
    )

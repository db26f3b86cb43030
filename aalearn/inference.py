"""One batched inference pass of a model over pool items.

Samplers never write their own loop over the pool: they ask :func:`collect` (or
the streaming :func:`stream`) for what they need, probabilities, features from a
named layer, per-sample losses, Monte-Carlo dropout samples or the raw inputs,
and get it from a single pass. How the pass reads the user's batches and model
outputs is one :class:`InferenceConfig`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import inspect
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from aalearn._validation import Device, check_int, resolve_device
from aalearn.pool import DEFAULT_LABEL_KEYS, PoolSubset

__all__ = [
    "InferenceConfig",
    "InferenceOutputs",
    "collect",
    "default_input_fn",
    "default_target_fn",
    "find_feature_layer",
    "inference_device",
    "preserve_mode",
    "stream",
]

_OUTPUTS = ("logits", "probs", "log_probs")
_FEATURE_SOURCES = ("input", "output")
_FEATURE_POOLING = ("avg", "flatten")


@dataclass(frozen=True, repr=False)
class InferenceConfig:
    """How the inference pass reads batches, calls the model and reads its outputs.

    One frozen value handed to every sampler (``inference=``) and to
    :func:`collect` / :func:`stream`. A plain mapping with the same keys is accepted
    wherever a config is (``inference={"device": "cpu"}``); unknown keys are an error.

    Parameters
    ----------
    batch_size : int
        Items per forward pass (also the ``DataLoader`` batch size).
    device : str, torch.device or None
        Where the pass runs. ``None`` follows the model's parameters; an explicit
        device must be the model's (the model is never moved).
    num_workers : int
        ``DataLoader`` workers. With ``0`` and a :class:`~torch.utils.data.TensorDataset`
        (or a ``Subset`` of one) the batches are gathered from the resident tensors with
        one index operation per batch, without a ``DataLoader``.
    input_fn : callable, optional
        Collated batch -> model input. The input may be a tensor (``model(x)``), a
        tuple or list (``model(*x)``) or a mapping (``model(**x)``); nested tensors
        move to the device. Default (:func:`default_input_fn`): element 0 of a tuple
        batch; for a dict batch, every key except the label key.
    target_fn : callable, optional
        Collated batch -> class targets, for the per-sample losses (only samplers that
        use losses read it, such as :class:`~aalearn.AALUSampler` with ranking; the others
        ignore it). Default (:func:`default_target_fn`): element 1 of a tuple batch, the
        label key of a dict batch. Labels an oracle gave through the pool take precedence.
    output_fn : callable, optional
        Model output -> class scores. Default: the output itself if it is a tensor, its
        ``"logits"`` entry or ``.logits`` attribute (HuggingFace), or the first element
        of a tuple or list. The scores must be ``(B, C)`` with ``C >= 2``, or ``(B,)`` /
        ``(B, 1)`` for a binary model with one logit (read as ``[1 - sigmoid, sigmoid]``).
    outputs : {"logits", "probs", "log_probs"}
        What the class scores are: logits (softmax applied here), or probabilities /
        log-probabilities from a model that ends in its own (log-)softmax or sigmoid.
    label_key : str, optional
        The label key of dict items. ``None``: ``"label"`` or ``"labels"`` (the
        HuggingFace names), whichever the batch has.
    feature_layer : str or "auto"
        The module whose input (or output) is the feature vector, by its name in
        ``model.named_modules()``. ``"auto"``: the input of the last
        :class:`torch.nn.Linear` *called* during the forward pass (the classifier's
        input), found on the first batch.
    feature_source : {"input", "output"}
        Capture the feature layer's input (default) or its output.
    feature_pooling : {"avg", "flatten"}
        Features of rank > 2, ``(B, C, *spatial)`` as after a conv layer, are averaged over
        the spatial dimensions (``"avg"``: ``(B, C)``) or flattened (``"flatten"``).
    autocast : bool
        Run the forward pass under :func:`torch.autocast` (mixed precision).

    Examples
    --------
    >>> from aalearn import InferenceConfig
    >>> cfg = InferenceConfig(batch_size=64, device="cpu")
    >>> cfg
    InferenceConfig(batch_size=64, device='cpu')
    >>> InferenceConfig.coerce({"batch_size": 64, "device": "cpu"}) == cfg
    True
    >>> cfg.replace(outputs="probs").outputs
    'probs'
    >>> InferenceConfig(batch_size=0)
    Traceback (most recent call last):
    ...
    ValueError: Expected argument `batch_size` to be >= 1, but got 0.
    """

    batch_size: int = 256
    device: Device = None
    num_workers: int = 0
    input_fn: Optional[Callable[[Any], Any]] = None
    target_fn: Optional[Callable[[Any], Any]] = None
    output_fn: Optional[Callable[[Any], Any]] = None
    outputs: str = "logits"
    label_key: Optional[str] = None
    feature_layer: Optional[str] = "auto"
    feature_source: str = "input"
    feature_pooling: str = "avg"
    autocast: bool = False

    def __post_init__(self) -> None:
        check_int(self.batch_size, "batch_size", minimum=1)
        check_int(self.num_workers, "num_workers", minimum=0)
        resolve_device(self.device)
        for name in ("input_fn", "target_fn", "output_fn"):
            fn = getattr(self, name)
            if fn is not None and not callable(fn):
                raise TypeError(
                    f"Expected argument `{name}` to be callable or None, but got "
                    f"{type(fn).__name__}."
                )
        for name, allowed in (
            ("outputs", _OUTPUTS),
            ("feature_source", _FEATURE_SOURCES),
            ("feature_pooling", _FEATURE_POOLING),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(
                    f"Expected argument `{name}` to be one of {list(allowed)}, but got {value!r}."
                )
        for name in ("label_key", "feature_layer"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(
                    f"Expected argument `{name}` to be a str or None, but got "
                    f"{type(value).__name__}."
                )
        if not isinstance(self.autocast, bool):
            raise TypeError(
                "Expected argument `autocast` to be a bool, but got "
                f"{type(self.autocast).__name__}."
            )

    @classmethod
    def coerce(cls, value: Union[InferenceConfig, Mapping[str, Any], None]) -> InferenceConfig:
        """``value`` as a config: ``None`` gives the defaults, a mapping its fields."""
        if value is None:
            return cls()
        if isinstance(value, InferenceConfig):
            return value
        if isinstance(value, Mapping):
            return cls().replace(**value)
        raise TypeError(
            "Expected argument `inference` to be an aalearn.InferenceConfig, a dict of its "
            f"fields or None, but got {type(value).__name__}."
        )

    def replace(self, **changes: Any) -> InferenceConfig:
        """A copy with ``changes`` applied (validated); unknown names are a ``TypeError``."""
        names = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise TypeError(
                f"Unexpected inference argument(s) {unknown}; the fields of "
                f"aalearn.InferenceConfig are {names}."
            )
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        shown = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not f.default and getattr(self, f.name) != f.default
        ]
        return f"InferenceConfig({', '.join(shown)})"


def _label_keys(label_key: Optional[str]) -> tuple[str, ...]:
    return DEFAULT_LABEL_KEYS if label_key is None else (label_key,)


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
    probs: Optional[torch.Tensor] = None
    features: Optional[torch.Tensor] = None
    losses: Optional[torch.Tensor] = None
    mc_probs: Optional[torch.Tensor] = None
    inputs: Optional[torch.Tensor] = None
    extras: dict[str, Any] = field(default_factory=dict)


def find_feature_layer(model: nn.Module, feature_layer: str) -> nn.Module:
    """The module named ``feature_layer`` in ``model.named_modules()``, or a clear error.

    The error lists the closest names (:mod:`difflib`). ``"auto"`` is not resolved
    here: the pass finds the last :class:`torch.nn.Linear` called on the first batch.

    Examples
    --------
    >>> from torch import nn
    >>> from aalearn.inference import find_feature_layer
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> find_feature_layer(model, "2")
    Linear(in_features=8, out_features=2, bias=True)
    >>> find_feature_layer(model, "3")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Expected argument `feature_layer` to name a module of the model, but got '3'; ...
    """
    if not isinstance(feature_layer, str):
        raise TypeError(
            f"Expected argument `feature_layer` to be a module name or 'auto', but got "
            f"{type(feature_layer).__name__}."
        )
    modules = dict(model.named_modules())
    if feature_layer not in modules:
        names = [n for n in modules if n]
        close = difflib.get_close_matches(feature_layer, names, n=5, cutoff=0.5)
        hint = f"close matches: {close}" if close else f"modules include {names[:20]}"
        raise ValueError(
            f"Expected argument `feature_layer` to name a module of the model, but got "
            f"{feature_layer!r}; {hint}. Pass inference={{'feature_layer': NAME}} with a "
            "name from model.named_modules(), or 'auto'."
        )
    return modules[feature_layer]


@contextlib.contextmanager
def preserve_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Record every submodule's ``training`` flag and restore it exactly on exit.

    Examples
    --------
    >>> from torch import nn
    >>> from aalearn.inference import preserve_mode
    >>> model = nn.Linear(2, 2)
    >>> with preserve_mode(model):
    ...     _ = model.eval()
    >>> model.training
    True
    """
    flags = [(m, m.training) for m in model.modules()]
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def _set_mc_dropout(model: nn.Module, on: bool) -> None:
    for m in model.modules():
        if isinstance(m, _DROPOUT):
            m.train(on)


# ------------------------------------------------------------------ inputs


def _to_device(obj: Any, dev: torch.device, non_blocking: bool) -> Any:
    """``obj`` with every tensor in it (nested tuples, lists, mappings) moved to ``dev``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(dev, non_blocking=non_blocking)
    if isinstance(obj, Mapping):
        return {k: _to_device(v, dev, non_blocking) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to_device(v, dev, non_blocking) for v in obj)
    return obj


def _first_tensor(obj: Any) -> Optional[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return obj
    values = obj.values() if isinstance(obj, Mapping) else obj
    if isinstance(obj, (Mapping, tuple, list)):
        for v in values:
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


def _call(model: nn.Module, x: Any) -> Any:
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


# ----------------------------------------------------------------- outputs


def _scores_of(out: Any) -> torch.Tensor:
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


def _as_logits(scores: torch.Tensor, n: int, outputs: str) -> torch.Tensor:
    """``(n, C)`` float32 logits whose softmax is the model's class probabilities.

    A binary model with one logit ``l`` (shape ``(n,)`` or ``(n, 1)``) becomes the
    two logits ``[0, l]``: softmax gives ``[1 - sigmoid(l), sigmoid(l)]``.
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


# ---------------------------------------------------------------- features


class _FeatureTap:
    """Forward hooks capturing the feature layer's input or output on each forward pass."""

    def __init__(self, model: nn.Module, cfg: InferenceConfig) -> None:
        self.cfg = cfg
        self.auto = cfg.feature_layer is None or cfg.feature_layer == "auto"
        self.value: Optional[torch.Tensor] = None
        self.enabled = True
        self.hooks: list[Any] = []
        if self.auto:
            self.layers: dict[nn.Module, str] = {
                m: n for n, m in model.named_modules() if isinstance(m, nn.Linear)
            }
            if cfg.feature_source == "output":
                raise ValueError(
                    "Expected argument `feature_layer` to name a module when "
                    "feature_source='output' ('auto' is the input of the last nn.Linear): "
                    "pass inference={'feature_layer': NAME, 'feature_source': 'output'}."
                )
        else:
            assert cfg.feature_layer is not None
            self.layers = {find_feature_layer(model, cfg.feature_layer): cfg.feature_layer}
        self.called: Optional[nn.Module] = None
        for m in self.layers:
            self._hook(m)

    def _hook(self, module: nn.Module) -> None:
        if self.cfg.feature_source == "input":

            def pre(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
                if self.enabled:
                    self._take(m, _first_tensor((args, kwargs)))

            self.hooks.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        else:

            def post(m: nn.Module, _args: tuple[Any, ...], out: Any) -> None:
                if self.enabled:
                    self._take(m, out if isinstance(out, torch.Tensor) else _first_tensor(out))

            self.hooks.append(module.register_forward_hook(post))

    def _take(self, module: nn.Module, t: Optional[torch.Tensor]) -> None:
        if t is None:
            raise TypeError(
                f"The feature layer {self.layers[module]!r} has no tensor "
                f"{self.cfg.feature_source}; pass another inference={{'feature_layer': ...}}."
            )
        self.value, self.called = t, module

    def features(self) -> torch.Tensor:
        """The features of the last forward pass, pooled to ``(B, D)``; resets the tap."""
        if self.value is None:
            if self.auto:
                raise ValueError(
                    "feature_layer='auto' takes the input of the last nn.Linear called during "
                    "the forward pass, but the model called none. Pass "
                    "inference={'feature_layer': NAME} (a name from model.named_modules())."
                )
            raise ValueError(
                f"The feature layer {self.cfg.feature_layer!r} was not called during the "
                "forward pass, so it has no features. Pass inference={'feature_layer': NAME} "
                "naming a module that the model's forward calls."
            )
        t, self.value = self.value, None
        if self.auto and len(self.hooks) > 1:  # found on the first batch: keep only its hook
            assert self.called is not None
            self.remove()
            self.layers = {self.called: self.layers[self.called]}
            self._hook(self.called)
        if t.ndim == 1:
            return t.float().unsqueeze(1)
        if t.ndim > 2 and self.cfg.feature_pooling == "avg":
            return t.float().flatten(2).mean(dim=2)
        return t.float().flatten(1)

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks = []


# ------------------------------------------------------------------ device


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


def _resident(dataset: Dataset) -> Optional[tuple[tuple[torch.Tensor, ...], Optional[np.ndarray]]]:
    """The tensors of a ``TensorDataset`` (through any ``Subset`` chain) and the index map."""
    base: Optional[np.ndarray] = None
    while isinstance(dataset, Subset):
        idx = np.asarray(dataset.indices, dtype=np.int64)
        base = idx if base is None else idx[base]
        dataset = dataset.dataset
    if type(dataset) is TensorDataset:
        return dataset.tensors, base
    return None


def _batches(
    dataset: Dataset, indices: np.ndarray, cfg: InferenceConfig, dev: torch.device
) -> Iterator[Any]:
    """Collated batches of ``dataset[indices]``, in order."""
    resident = _resident(dataset) if cfg.num_workers == 0 else None
    if resident is not None:
        # Resident tensors: one gather per tensor and batch, as default collation would
        # produce (a list of stacked tensors), without a per-item Python loop.
        tensors, base = resident
        rows = torch.from_numpy(np.array(indices if base is None else base[indices]))
        pin = dev.type == "cuda"
        for start in range(0, rows.shape[0], cfg.batch_size):
            sel = rows[start : start + cfg.batch_size]
            batch = [t[sel.to(t.device)] for t in tensors]
            yield [t.pin_memory() if pin and t.device.type == "cpu" else t for t in batch]
        return
    yield from DataLoader(
        PoolSubset(dataset, indices),
        batch_size=cfg.batch_size,
        shuffle=False,
        num_workers=cfg.num_workers,
        pin_memory=dev.type == "cuda",
        # A private generator: iterating a DataLoader otherwise draws its base seed
        # from torch's global RNG, and samplers must leave that untouched.
        generator=torch.Generator().manual_seed(0),
    )


class _Pass:
    """One batch of the pass: model input, forward passes and what comes out of them."""

    def __init__(self, model: nn.Module, cfg: InferenceConfig, dev: torch.device) -> None:
        self.model, self.cfg, self.dev = model, cfg, dev
        self.non_blocking = dev.type == "cuda"
        self.checked_keys = False

    def inputs(self, batch: Any) -> tuple[Any, int]:
        cfg = self.cfg
        x = (
            cfg.input_fn(batch)
            if cfg.input_fn is not None
            else default_input_fn(batch, cfg.label_key)
        )
        x = _to_device(x, self.dev, self.non_blocking)
        if isinstance(x, Mapping) and not self.checked_keys:
            _check_forward_keys(self.model, list(x))
            self.checked_keys = True
        first = _first_tensor(x)
        if first is None or first.ndim == 0:
            raise TypeError(
                "Expected the model input to be a tensor, or a tuple, list or dict holding "
                f"batched tensors, but got {type(x).__name__} with none: pass "
                "inference={'input_fn': ...}."
            )
        return x, int(first.shape[0])

    def logits(self, x: Any, n: int) -> torch.Tensor:
        cfg = self.cfg
        with torch.autocast(self.dev.type, enabled=cfg.autocast):
            out = _call(self.model, x)
        if cfg.output_fn is not None:
            out = cfg.output_fn(out)
        return _as_logits(_scores_of(out), n, cfg.outputs)

    def targets(self, batch: Any, labels: Optional[np.ndarray], start: int, n: int) -> torch.Tensor:
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
    cfg = InferenceConfig.coerce(inference)
    if options:
        cfg = cfg.replace(**options)
    mc_samples = check_int(mc_samples, "mc_samples", minimum=0)
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"Expected argument `model` to be a torch.nn.Module, but got {type(model).__name__}."
        )
    dev = inference_device(model, cfg.device)
    indices = np.asarray(indices, dtype=np.int64)
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != indices.shape:
            raise ValueError(
                f"Expected argument `labels` to match `indices` in shape {indices.shape}, but "
                f"got {labels.shape}."
            )
    step = _Pass(model, cfg, dev)
    tap = _FeatureTap(model, cfg) if features else None
    deterministic = probs or features or losses
    bad_labels: list[torch.Tensor] = []
    start = 0
    try:
        with preserve_mode(model), torch.inference_mode():
            model.eval()
            for batch in _batches(dataset, indices, cfg, dev):
                x, n = step.inputs(batch)
                out = InferenceOutputs(indices=indices[start : start + n])
                if deterministic:
                    logits = step.logits(x, n)
                    if probs:
                        out.probs = logits.softmax(dim=-1)
                    if tap is not None:
                        out.features = tap.features()
                    if losses:
                        y = step.targets(batch, labels, start, n)
                        n_classes = logits.shape[1]
                        bad = (y < 0) | (y >= n_classes)
                        bad_labels.append(bad)
                        # Clamped so that an out-of-range label cannot trip a device-side
                        # assert; the pass raises after the last batch (one host sync).
                        out.losses = F.cross_entropy(
                            logits, y.clamp(0, n_classes - 1), reduction="none"
                        )
                if inputs:
                    if not isinstance(x, torch.Tensor):
                        raise TypeError(
                            "This sampler needs the raw model inputs as one tensor, but the "
                            f"model input is a {type(x).__name__}: pass "
                            "inference={'input_fn': ...} returning a tensor."
                        )
                    out.inputs = x
                if mc_samples:
                    if tap is not None:
                        tap.enabled = False
                    _set_mc_dropout(model, True)
                    draws = [step.logits(x, n).softmax(dim=-1) for _ in range(mc_samples)]
                    _set_mc_dropout(model, False)
                    if tap is not None:
                        tap.enabled = True
                    out.mc_probs = torch.stack(draws, dim=1)
                consume(out)
                start += n
    finally:
        if tap is not None:
            tap.remove()
    if bad_labels:
        _check_labels(torch.cat(bad_labels), indices, n_classes)


def _check_labels(bad: torch.Tensor, indices: np.ndarray, n_classes: int) -> None:
    if bool(bad.any()):
        where = indices[bad.cpu().numpy()]
        raise ValueError(
            f"{where.size} item(s) have a label outside the model's {n_classes} classes "
            f"[0, {n_classes}), e.g. dataset indices {where[:5].tolist()}: check the labels "
            "given to pool.label(..., labels=...) or the dataset's targets (`target_fn`)."
        )


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
        ``batch_size=64, device="cpu"``.

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
        inference=inference,
        **options,
    )
    return InferenceOutputs(
        indices=indices,
        probs=buffers.get("probs"),
        features=buffers.get("features"),
        losses=buffers.get("losses"),
        mc_probs=buffers.get("mc_probs"),
        inputs=buffers.get("inputs"),
    )

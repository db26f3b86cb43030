"""The configuration of the inference pass: one frozen :class:`InferenceConfig`.

How a pass reads batches, calls the model and reads its outputs is one value,
resolved once per call by :func:`resolve_config` from the two ways a caller may give
it: ``inference=`` (a config, a mapping of its fields or ``None``) and, for the public
:func:`~aalearn.collect` and :func:`~aalearn.stream` only, keyword overrides of its
fields (``batch_size=64, device="cpu"``). Samplers pass their own ``inference_`` and no
overrides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from aalearn._validation import Device, check_int, resolve_device
from aalearn.inference.adapters import OUTPUTS

__all__ = ["InferenceConfig", "resolve_config"]

_FEATURE_SOURCES = ("input", "output")
_FEATURE_POOLING = ("avg", "flatten")


@dataclass(frozen=True, repr=False)
class InferenceConfig:
    """How the inference pass reads batches, calls the model and reads its outputs.

    One frozen value handed to every sampler (``inference=``) and to
    :func:`collect` / :func:`stream`. A plain mapping with the same keys is accepted
    wherever a config is (``inference={"device": "cpu"}``); unknown keys are an error.
    The defaults of ``input_fn``, ``target_fn`` and ``output_fn``, and the kinds of
    ``outputs``, are the adapters of :mod:`aalearn.inference.adapters`.

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
            ("outputs", OUTPUTS),
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


def resolve_config(
    inference: Union[InferenceConfig, Mapping[str, Any], None] = None, **options: Any
) -> InferenceConfig:
    """The configuration of one call: ``inference`` with the fields in ``options`` replaced.

    The one place a pass's configuration is resolved. ``inference`` is a config, a
    mapping of its fields or ``None`` (the defaults); ``options`` are fields of
    :class:`InferenceConfig` that override it (the ``**options`` of :func:`aalearn.collect`
    and :func:`aalearn.stream`). Unknown fields are a ``TypeError``.

    Examples
    --------
    >>> from aalearn.inference import resolve_config
    >>> resolve_config({"batch_size": 64}, device="cpu")
    InferenceConfig(batch_size=64, device='cpu')
    >>> resolve_config(None, batchsize=64)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: Unexpected inference argument(s) ['batchsize']; the fields of ...
    """
    cfg = InferenceConfig.coerce(inference)
    return cfg.replace(**options) if options else cfg

"""The features of a pass: a forward hook on one named layer of the model.

:func:`find_feature_layer` resolves ``InferenceConfig.feature_layer`` to a module;
:class:`FeatureTap` hooks it (or, for ``"auto"``, every :class:`torch.nn.Linear` until
the first batch shows which one the forward pass calls last) and pools what it
captures to ``(B, D)``.
"""

from __future__ import annotations

import difflib
from typing import Any, Optional

import torch
from torch import nn

from aalearn.inference.adapters import first_tensor
from aalearn.inference.config import InferenceConfig

__all__ = ["FeatureTap", "find_feature_layer"]


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


class FeatureTap:
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
                    self._take(m, first_tensor((args, kwargs)))

            self.hooks.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        else:

            def post(m: nn.Module, _args: tuple[Any, ...], out: Any) -> None:
                if self.enabled:
                    self._take(m, out if isinstance(out, torch.Tensor) else first_tensor(out))

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

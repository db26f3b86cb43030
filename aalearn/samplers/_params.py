"""Constructor parameters of the samplers: scikit-learn's conventions, declared constraints.

A sampler stores its keyword arguments unchanged in ``__init__``; this mixin gives it
``get_params`` / ``set_params`` (so :func:`sklearn.base.clone` works), a ``repr`` that
shows the arguments that differ from the defaults, and the validation of every
parameter from the constraints its classes declare in ``_parameter_constraints``
(:mod:`aalearn._validation`: ``Int``, ``Real``, ``Options``, ``Bool``...). Private.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, ClassVar

from aalearn._validation import Constraint, validate_params
from aalearn.inference import InferenceConfig

__all__ = ["ParamsMixin"]


class ParamsMixin:
    """``get_params``, ``set_params``, ``repr`` and declared validation of ``__init__``'s arguments.

    Each class of the hierarchy declares the constraints of the parameters it
    introduces in ``_parameter_constraints`` (a name -> :class:`~aalearn._validation.Constraint`
    mapping); a subclass's entry replaces its parent's. :meth:`_validate_params`
    checks every parameter of the class's ``__init__`` that has a constraint, in
    signature order, then calls :meth:`_check_params` for rules that involve several
    parameters, and returns the normalised values. It changes nothing on the object.
    """

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {}

    # ------------------------------------------------------------ parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        # As in scikit-learn: the parameters are those of the class's own __init__.
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]

    @classmethod
    def _constraints(cls) -> dict[str, Constraint]:
        """The declared constraint of each ``__init__`` parameter, in signature order."""
        merged: dict[str, Constraint] = {}
        for klass in reversed(cls.__mro__):
            merged.update(getattr(klass, "_parameter_constraints", {}))
        return {name: merged[name] for name in cls._param_names() if name in merged}

    def _validate_params(self) -> dict[str, Any]:
        """Check the configuration (before any work); return the normalised values."""
        params = validate_params(self, self._constraints())
        self._check_params(params)
        return params

    def _check_params(self, params: dict[str, Any]) -> None:
        """Rules that involve several parameters; subclasses override it."""

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments, as stored (scikit-learn's convention).

        With ``deep=True`` the resolved inference configuration's fields are added as
        ``inference__<field>`` (what :meth:`set_params` accepts).
        """
        params = {name: getattr(self, name) for name in self._param_names()}
        if deep and "inference" in params:
            cfg = InferenceConfig.coerce(params["inference"])
            for f in dataclasses.fields(cfg):
                params[f"inference__{f.name}"] = getattr(cfg, f.name)
        return params

    def set_params(self, **params: Any) -> Any:
        """Set constructor arguments (``inference__<field>`` sets one inference field).

        Returns ``self``. An unknown name is a ``ValueError`` and changes nothing.
        """
        valid = self._param_names()
        nested: dict[str, Any] = {}
        plain: dict[str, Any] = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid or (sub and name != "inference"):
                raise ValueError(
                    f"Invalid parameter {key!r} for {type(self).__name__}; valid parameters "
                    f"are {sorted(valid)} (and inference__<field>)."
                )
            if sub:
                nested[sub] = value
            else:
                plain[name] = value
        cfg = None
        if nested:
            base = InferenceConfig.coerce(plain.get("inference", getattr(self, "inference", None)))
            cfg = base.replace(**nested)
        for name, value in plain.items():
            setattr(self, name, value)
        if cfg is not None:
            setattr(self, "inference", cfg)  # noqa: B010 (a parameter of the subclass)
        return self

    def _defaults(self) -> dict[str, Any]:
        sig = inspect.signature(type(self).__init__)
        return {
            p.name: p.default
            for p in sig.parameters.values()
            if p.default is not inspect.Parameter.empty
        }

    def __repr__(self) -> str:
        defaults = self._defaults()
        shown = []
        for name, value in self.get_params(deep=False).items():
            default = defaults.get(name, inspect.Parameter.empty)
            try:
                same = bool(value == default) and type(value) is type(default)
            except Exception:
                same = False
            if not same:
                shown.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

"""Argument checks and random-state helpers shared by every module.

Kept private: the public API validates through these so that every sampler and
the pool word their errors the same way.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import numpy as np
import torch

RandomState = Union[int, np.random.Generator, None]
Device = Union[str, torch.device, None]

__all__ = [
    "Bool",
    "Constraint",
    "Device",
    "FlagOrCallable",
    "Int",
    "Options",
    "RandomState",
    "Real",
    "Rule",
    "Widths",
    "check_bool",
    "check_generator",
    "check_int",
    "check_number",
    "check_options",
    "check_random_state",
    "check_widths",
    "resolve_device",
    "torch_generator",
    "validate_params",
]


def check_int(
    value: Any, name: str, *, minimum: Optional[int] = None, maximum: Optional[int] = None
) -> int:
    """Return ``value`` as an ``int`` after checking its type and range.

    ``bool`` is refused (``True`` is an ``int`` in Python, but never a budget).
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral,)):
        raise TypeError(
            f"Expected argument `{name}` to be an integer, but got {type(value).__name__} "
            f"({value!r})."
        )
    out = int(value)
    if minimum is not None and out < minimum:
        raise ValueError(f"Expected argument `{name}` to be >= {minimum}, but got {out}.")
    if maximum is not None and out > maximum:
        raise ValueError(f"Expected argument `{name}` to be <= {maximum}, but got {out}.")
    return out


def check_generator(value: Any, name: str = "generator") -> Optional[torch.Generator]:
    """``value`` if it is ``None`` or a :class:`torch.Generator`; else ``TypeError``."""
    if value is not None and not isinstance(value, torch.Generator):
        raise TypeError(
            f"Expected argument `{name}` to be a torch.Generator or None, but got "
            f"{type(value).__name__}."
        )
    return value


def check_number(
    value: Any,
    name: str,
    *,
    minimum: Optional[float] = None,
    maximum: Optional[float] = None,
    exclusive_minimum: bool = False,
) -> float:
    """Return ``value`` as a ``float`` after checking its type and range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Expected argument `{name}` to be a real number, but got "
            f"{type(value).__name__} ({value!r})."
        )
    out = float(value)
    if not np.isfinite(out):
        raise ValueError(f"Expected argument `{name}` to be finite, but got {out}.")
    if minimum is not None:
        if exclusive_minimum and out <= minimum:
            raise ValueError(f"Expected argument `{name}` to be > {minimum}, but got {out}.")
        if not exclusive_minimum and out < minimum:
            raise ValueError(f"Expected argument `{name}` to be >= {minimum}, but got {out}.")
    if maximum is not None and out > maximum:
        raise ValueError(f"Expected argument `{name}` to be <= {maximum}, but got {out}.")
    return out


def check_random_state(
    random_state: RandomState, name: str = "random_state"
) -> np.random.Generator:
    """Turn ``random_state`` into a :class:`numpy.random.Generator`.

    ``None`` gives fresh OS entropy, an ``int`` a generator seeded with it (so the
    same seed always gives the same draws), and a ``Generator`` is used as is
    (shared, so successive calls advance it). The global NumPy RNG is never used.
    """
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, (numbers.Integral,)) and not isinstance(random_state, bool):
        if int(random_state) < 0:
            raise ValueError(
                f"Expected argument `{name}` to be a non-negative integer seed, but got "
                f"{random_state}."
            )
        return np.random.default_rng(int(random_state))
    raise TypeError(
        f"Expected argument `{name}` to be None, an int or a numpy.random.Generator, but got "
        f"{type(random_state).__name__}."
    )


def torch_generator(rng: np.random.Generator, device: torch.device) -> torch.Generator:
    """Derive a :class:`torch.Generator` on ``device`` from a NumPy generator."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(rng.integers(0, 2**63 - 1)))
    return gen


def resolve_device(device: Device, name: str = "device") -> torch.device:
    """``None`` means CUDA when available, else CPU; strings go through ``torch.device``."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, torch.device):
        return device
    if isinstance(device, str):
        try:
            return torch.device(device)
        except RuntimeError as err:
            raise ValueError(
                f"Expected argument `{name}` to be a valid torch device string such as "
                f"'cpu' or 'cuda:0', but got {device!r}."
            ) from err
    raise TypeError(
        f"Expected argument `{name}` to be None, a str or a torch.device, but got "
        f"{type(device).__name__}."
    )


def check_bool(value: Any, name: str, *, allow_none: bool = False) -> bool:
    """``value`` if it is a ``bool`` (``None`` too with ``allow_none``, read as ``False``)."""
    if value is None and allow_none:
        return False
    if not isinstance(value, (bool, np.bool_)):
        expected = "a bool or None" if allow_none else "a bool"
        raise TypeError(
            f"Expected argument `{name}` to be {expected}, but got {type(value).__name__}."
        )
    return bool(value)


def check_options(value: Any, name: str, options: Sequence[str]) -> str:
    """``value`` if it is one of the strings ``options``.

    A value that is not a ``str`` is a ``TypeError``, a string not in ``options`` a
    ``ValueError``; both messages list the options.
    """
    if not isinstance(value, str):
        raise TypeError(
            f"Expected argument `{name}` to be a str, one of {list(options)}, but got "
            f"{type(value).__name__} ({value!r})."
        )
    if value not in options:
        raise ValueError(
            f"Expected argument `{name}` to be one of {list(options)}, but got {value!r}."
        )
    return value


def check_widths(value: Any, name: str = "hidden") -> tuple[int, ...]:
    """A non-empty sequence of positive ints (layer widths) as a tuple."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(
            f"Expected argument `{name}` to be a sequence of positive ints, but got "
            f"{type(value).__name__}."
        )
    if len(value) == 0:
        raise ValueError(f"Expected argument `{name}` to hold at least one width, but got ().")
    return tuple(check_int(h, name, minimum=1) for h in value)


# ------------------------------------------------------------ declared constraints


class Constraint:
    """One parameter's rule: :meth:`check` returns the value normalised, or raises.

    Wrong types raise ``TypeError`` and wrong values ``ValueError``, with the message
    "Expected argument `name` to be ..., but got ...". ``none=True`` also accepts ``None``
    (returned as is).
    """

    none: bool = False

    def check(self, value: Any, name: str) -> Any:
        if value is None and self.none:
            return None
        return self._check(value, name)

    def _check(self, value: Any, name: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Int(Constraint):
    """An integer (Python or NumPy, never a bool) in ``[low, high]``."""

    low: Optional[int] = None
    high: Optional[int] = None
    none: bool = False

    def _check(self, value: Any, name: str) -> int:
        return check_int(value, name, minimum=self.low, maximum=self.high)


@dataclass(frozen=True)
class Real(Constraint):
    """A finite real number (int or float, Python or NumPy) in the range given."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    none: bool = False

    def _check(self, value: Any, name: str) -> float:
        return check_number(
            value, name, minimum=self.low, maximum=self.high, exclusive_minimum=self.low_open
        )


@dataclass(frozen=True)
class Options(Constraint):
    """One of the strings ``values``."""

    values: tuple[str, ...]
    none: bool = False

    def _check(self, value: Any, name: str) -> str:
        return check_options(value, name, self.values)


@dataclass(frozen=True)
class Bool(Constraint):
    """A bool (``none=True``: or ``None``, kept as ``None``)."""

    none: bool = False

    def check(self, value: Any, name: str) -> Optional[bool]:
        if value is None and self.none:
            return None
        return check_bool(value, name, allow_none=self.none)


@dataclass(frozen=True)
class Widths(Constraint):
    """A non-empty sequence of positive ints, as a tuple."""

    none: bool = False

    def _check(self, value: Any, name: str) -> tuple[int, ...]:
        return check_widths(value, name)


@dataclass(frozen=True)
class FlagOrCallable(Constraint):
    """``None``, a bool or a callable (what ``progress=`` takes)."""

    def check(self, value: Any, name: str) -> Any:
        if value is not None and not isinstance(value, bool) and not callable(value):
            raise TypeError(
                f"Expected argument `{name}` to be a bool, a callable or None, but got "
                f"{type(value).__name__}."
            )
        return value


@dataclass(frozen=True)
class Rule(Constraint):
    """A check function ``fn(value, name)`` of this module (``check_random_state``...)."""

    fn: Callable[[Any, str], Any]

    def check(self, value: Any, name: str) -> Any:
        return self.fn(value, name)


def validate_params(obj: Any, constraints: Mapping[str, Constraint]) -> dict[str, Any]:
    """Check ``obj``'s attribute of each constrained name; return them normalised.

    The parameters are checked in the order of ``constraints``; the first bad one
    raises. Nothing is changed on ``obj``.
    """
    return {name: rule.check(getattr(obj, name), name) for name, rule in constraints.items()}

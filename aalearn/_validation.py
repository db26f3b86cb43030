"""Argument checks and random-state helpers shared by every module.

Kept private: the public API validates through these so that every sampler and
the pool word their errors the same way.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional, Union

import numpy as np
import torch

RandomState = Union[int, np.random.Generator, None]
Device = Union[str, torch.device, None]

__all__ = [
    "Device",
    "RandomState",
    "check_generator",
    "check_int",
    "check_number",
    "check_random_state",
    "resolve_device",
    "torch_generator",
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

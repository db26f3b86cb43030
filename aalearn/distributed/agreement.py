"""What every rank must agree on before a sharded call: digests of the pool, budget, sampler.

:func:`fingerprint` gives three 64-bit digests that are the same in every process
for the same pool state, budget and sampler configuration (devices left out: each
rank may use its own GPU); :meth:`aalearn.distributed.Shard.check_agreement` compares
them across the ranks.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["AGREE", "fingerprint"]


def _digest(*parts: bytes) -> int:
    """A signed 64-bit digest of ``parts`` (BLAKE2b), the same in every process."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return int.from_bytes(h.digest(), "little", signed=True)


def _canonical(value: Any) -> str:
    """A text of a configuration value that is the same in every process of a job.

    ``repr`` is not: it holds memory addresses (functions, generators) and per-rank
    devices. Devices are left out (each rank may use its own GPU), callables are
    named by their qualified name, NumPy generators by their state.
    """
    if isinstance(value, (str, int, float, bool, type(None))):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__}({', '.join(_canonical(v) for v in value)})"
    if isinstance(value, Mapping):
        items = sorted((str(k), v) for k, v in value.items() if k != "device")
        return "{" + ", ".join(f"{k}: {_canonical(v)}" for k, v in items) + "}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return f"{type(value).__qualname__}{_canonical(fields)}"
    if isinstance(value, np.random.Generator):
        return f"Generator({value.bit_generator.state!r})"
    if isinstance(value, torch.device):
        return "device"
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', '')}"
    return type(value).__qualname__


def _config_text(sampler: Any) -> str:
    get_params = getattr(sampler, "get_params", None)
    params = get_params() if callable(get_params) else {}
    return f"{type(sampler).__qualname__}{_canonical(params)}"


def fingerprint(pool: Any, budget: Any, sampler: Any) -> list[int]:
    """Digests of what every rank must agree on: the pool state, the budget, the sampler."""
    state = pool.state_dict()
    arrays = [np.ascontiguousarray(np.asarray(state[k])).tobytes() for k in sorted(state)]
    scalars = repr([(k, int(state[k])) for k in sorted(state) if np.ndim(state[k]) == 0])
    return [
        _digest(scalars.encode(), *arrays),
        _digest(repr(budget).encode()),
        _digest(_config_text(sampler).encode()),
    ]


#: What each digest of :func:`fingerprint` covers, for the error message.
AGREE = ("the pool state (labeled items, labels, round)", "the budget", "the configuration")

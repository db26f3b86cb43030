"""Where and how a pass runs: the device, the model's mode and the batches.

:func:`inference_device` checks the device against the model's own (the model is
never moved); :func:`preserve_mode` restores every submodule's training flag after
the pass, and :func:`set_mc_dropout` switches the dropout layers for MC passes;
:func:`batches` yields the collated batches, gathered straight from the resident
tensors of a :class:`~torch.utils.data.TensorDataset` or read through a
:class:`~torch.utils.data.DataLoader`.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from aalearn._validation import Device, resolve_device
from aalearn.inference.config import InferenceConfig
from aalearn.mc_dropout import dropout_modules

__all__ = ["batches", "inference_device", "preserve_mode", "set_mc_dropout"]


@contextlib.contextmanager
def preserve_mode(model: Any) -> Iterator[Any]:
    """Record every submodule's ``training`` flag and restore it exactly on exit.

    Anything that is not a :class:`torch.nn.Module` (``None`` for a sampler that reads
    no model) has no flags: the context does nothing.

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
    flags = [(m, m.training) for m in model.modules()] if isinstance(model, nn.Module) else []
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def set_mc_dropout(model: nn.Module, on: bool) -> None:
    """Switch the dropout layers of ``model`` on (MC dropout) or off; batch norm stays."""
    for m in dropout_modules(model):
        m.train(on)


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


def batches(
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
    # Imported here: the pool imports the label keys of aalearn.inference.adapters, so
    # the inference package does not import the pool when it is itself imported.
    from aalearn.pool import PoolSubset

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

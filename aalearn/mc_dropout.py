"""Monte-Carlo dropout: which modules are dropout layers, and consistent masks.

:func:`dropout_modules` is the one answer to "does this model have dropout?":
the MC pass of :mod:`aalearn.inference` and BALD's check both ask it.

:func:`consistent_mc_dropout` makes MC dropout *consistent*: the ``k``-th
stochastic forward pass uses the same dropout mask for every item of the pool,
whatever batch the item is in (Kirsch et al., NeurIPS 2019, need it for
BatchBALD: with a fresh mask per item, two copies of one image would look like
two different items). It works with a user's ordinary ``nn.Dropout`` layers.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from aalearn._validation import check_int

__all__ = ["ConsistentDropout", "consistent_mc_dropout", "dropout_modules"]

_DropoutNd = nn.modules.dropout._DropoutNd
#: Layers that drop whole channels (dimension 1); the others drop single elements.
_CHANNEL_WISE = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.FeatureAlphaDropout)
#: Layers that keep the self-normalising mean and variance (SELU networks).
_ALPHA = (nn.AlphaDropout, nn.FeatureAlphaDropout)
#: SELU's negative saturation value, -scale * alpha (Klambauer et al., 2017): the
#: value alpha dropout sets dropped units to, as in torch's ``alpha_dropout``.
_ALPHA_PRIME = -1.0507009873554804934193349852946 * 1.6732632423543772848170429916717


def dropout_modules(model: nn.Module) -> list[_DropoutNd]:
    """Every dropout layer of ``model``, in ``model.modules()`` order.

    A dropout layer is an instance of ``torch.nn.modules.dropout._DropoutNd``:
    :class:`~torch.nn.Dropout`, :class:`~torch.nn.Dropout1d`,
    :class:`~torch.nn.Dropout2d`, :class:`~torch.nn.Dropout3d`,
    :class:`~torch.nn.AlphaDropout` and :class:`~torch.nn.FeatureAlphaDropout`
    (and subclasses of them).

    Examples
    --------
    >>> from torch import nn
    >>> from aalearn.mc_dropout import dropout_modules
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.FeatureAlphaDropout(0.1), nn.Linear(8, 2))
    >>> dropout_modules(model)
    [FeatureAlphaDropout(p=0.1, inplace=False)]
    >>> dropout_modules(nn.Linear(2, 2))
    []
    """
    return [m for m in model.modules() if isinstance(m, _DropoutNd)]


class ConsistentDropout:
    """The state of a :func:`consistent_mc_dropout` block (what the ``with`` yields).

    Attributes
    ----------
    num_samples : int
        ``K``: the number of distinct masks per dropout layer.
    seed : int
        Masks are a function of ``(seed, k, layer position)`` only.
    modules : list of torch.nn.Module
        The patched dropout layers (:func:`dropout_modules`).
    """

    def __init__(self, modules: list[_DropoutNd], num_samples: int, seed: int) -> None:
        self.modules = modules
        self.num_samples = num_samples
        self.seed = seed
        self._calls = [0] * len(modules)
        self._masks: dict[tuple[int, int, tuple[int, ...], torch.device], Tensor] = {}

    def reset(self) -> None:
        """Start the mask cycle of every layer again at ``k = 0``."""
        self._calls = [0] * len(self.modules)

    def _mask(self, pos: int, k: int, module: _DropoutNd, x: Tensor) -> Tensor:
        """Mask ``k`` of layer ``pos`` for one item shaped like ``x[0]`` (broadcast over dim 0)."""
        if isinstance(module, _CHANNEL_WISE):
            shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        else:
            shape = (1, *x.shape[1:])
        key = (pos, k, shape, x.device)
        mask = self._masks.get(key)
        if mask is None:
            state = np.random.SeedSequence([self.seed, k, pos]).generate_state(2, np.uint32)
            gen = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
            p = float(module.p)
            keep = torch.rand(shape, generator=gen, dtype=torch.float64) >= p
            mask = keep.to(device=x.device)
            self._masks[key] = mask
        return mask

    def _forward_of(self, pos: int, module: _DropoutNd) -> Callable[[Tensor], Tensor]:
        def forward(x: Tensor) -> Tensor:
            if not module.training or module.p == 0.0:
                return x
            k = self._calls[pos] % self.num_samples
            self._calls[pos] += 1
            keep = self._mask(pos, k, module, x)
            p = float(module.p)
            if p == 1.0:
                return torch.zeros_like(x) if not isinstance(module, _ALPHA) else x * 0.0
            if isinstance(module, _ALPHA):
                a = 1.0 / math.sqrt((1.0 - p) * (1.0 + p * _ALPHA_PRIME**2))
                b = -a * _ALPHA_PRIME * p
                dropped = torch.where(keep, x, torch.full_like(x, _ALPHA_PRIME))
                return dropped * a + b
            return x * keep.to(x.dtype) / (1.0 - p)

        return forward


@contextlib.contextmanager
def consistent_mc_dropout(
    model: nn.Module, num_samples: int, *, seed: int = 0
) -> Iterator[ConsistentDropout]:
    """Make MC dropout use the same ``num_samples`` masks for every item.

    Inside the block, each dropout layer of ``model`` (:func:`dropout_modules`) that
    is in training mode cycles through ``num_samples`` fixed masks: its ``j``-th
    call uses mask ``j mod num_samples``. A mask has the shape of *one item*
    (``x.shape[1:]``, or ``(C, 1, ...)`` for the channel-wise layers
    ``Dropout1d/2d/3d`` and ``FeatureAlphaDropout``) and is broadcast over the batch,
    so every item of every batch sees the same mask ``k`` in the ``k``-th of
    ``num_samples`` passes, as in the consistent MC dropout of BatchBALD
    (Kirsch et al., NeurIPS 2019). Mask ``k`` of a layer is drawn from a private
    generator seeded by ``(seed, k, the layer's position)``: it does not depend on
    the batch, the process or the global RNG (which is left untouched), so every
    rank of a distributed job draws the same masks. Layers in eval mode are the
    identity, as usual. ``AlphaDropout`` keeps its affine correction.

    The layers are patched by setting an instance attribute ``forward`` (no module
    is replaced, so hooks, names and state dicts stay as they are); on exit each
    module's ``__dict__`` gets its previous ``forward`` entry back (or none).

    Use it around the ``num_samples`` passes of each batch, e.g. around
    :func:`aalearn.collect` with ``mc_samples=num_samples`` (which runs exactly that
    many passes per batch, in order). A dropout layer called twice in one forward
    pass advances its cycle twice; the masks are still the same for every item.

    Parameters
    ----------
    model : torch.nn.Module
        The model whose dropout layers to patch.
    num_samples : int
        ``K``, the number of masks per layer (the MC samples per item).
    seed : int
        Seed of the masks.

    Yields
    ------
    ConsistentDropout
        The cycle state; :meth:`ConsistentDropout.reset` restarts it at ``k = 0``.

    Examples
    --------
    Two copies of one input in different batches get the same ``K`` outputs:

    >>> import torch
    >>> from torch import nn
    >>> from aalearn.mc_dropout import consistent_mc_dropout
    >>> model = nn.Sequential(nn.Linear(3, 16), nn.Dropout(0.5), nn.Linear(16, 2)).train()
    >>> x = torch.randn(1, 3)
    >>> with torch.no_grad(), consistent_mc_dropout(model, num_samples=4, seed=0):
    ...     first = torch.stack([model(x) for _ in range(4)])
    ...     second = torch.stack([model(torch.cat([torch.randn(2, 3), x]))[2:] for _ in range(4)])
    >>> torch.allclose(first, second), bool((first[0] != first[1]).any())
    (True, True)
    >>> "forward" in model[1].__dict__  # restored
    False
    """
    num_samples = check_int(num_samples, "num_samples", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    modules = dropout_modules(model)
    state = ConsistentDropout(modules, num_samples, seed)
    saved: list[tuple[_DropoutNd, bool, Any]] = [
        (m, "forward" in m.__dict__, m.__dict__.get("forward")) for m in modules
    ]
    try:
        for pos, m in enumerate(modules):
            m.forward = state._forward_of(pos, m)
        yield state
    finally:
        for m, had, old in saved:
            if had:
                m.__dict__["forward"] = old
            else:
                m.__dict__.pop("forward", None)

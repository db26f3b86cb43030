"""The :class:`Sampler` protocol and the :class:`BaseSampler` that implements its checks."""

from __future__ import annotations

import inspect
from typing import Any, Callable, ClassVar, Optional, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from aalearn._validation import Device, RandomState, check_int, check_random_state, resolve_device
from aalearn.distributed import current_shard
from aalearn.inference import InferenceOutputs, collect, preserve_mode
from aalearn.pool import ActivePool

__all__ = ["BaseSampler", "Sampler"]


@runtime_checkable
class Sampler(Protocol):
    """What aalearn calls a sampler: a strategy that picks the next items to label.

    Not to be confused with :class:`torch.utils.data.Sampler`, which yields indices
    for a ``DataLoader``. An aalearn sampler is a *configuration object* with one
    method:

    ``select(model, pool, budget) -> numpy.ndarray``
        Return exactly ``budget`` **dataset** indices (``int64``, 1-D), unique, all
        currently unlabeled in ``pool``, **best first**. ``0 <= budget <=
        pool.n_unlabeled``; anything else raises ``ValueError`` (a non-int raises
        ``TypeError``). ``select`` does not label anything (call
        ``pool.label(picked)``), leaves ``pool`` unchanged, restores every
        submodule's ``training`` flag of ``model``, trains nothing but its own
        selector networks, and draws randomness only from its ``random_state``,
        never from a global RNG: the same seed on the same model and pool gives the
        same indices.

    Any object with such a ``select`` method satisfies the protocol
    (``isinstance(obj, aalearn.Sampler)`` is ``True``); subclassing
    :class:`BaseSampler` gives the checks for free.

    Examples
    --------
    >>> import numpy as np
    >>> import aalearn
    >>> class FirstUnlabeled:
    ...     def select(self, model, pool, budget):
    ...         return pool.unlabeled_indices[:budget].copy()
    >>> isinstance(FirstUnlabeled(), aalearn.Sampler)
    True
    """

    def select(self, model: Any, pool: ActivePool, budget: int) -> np.ndarray: ...


class BaseSampler:
    """Base class: validates ``select``'s arguments, then calls the ``_select`` hook.

    Subclasses store their keyword arguments unchanged in ``__init__`` (so the
    ``repr`` shows the configuration, as in scikit-learn), validate them in
    :meth:`_validate_params` (called at the start of every ``select``, before any
    work), and implement ``_select(model, pool, budget, rng)``. The base class
    checks the budget and pool, preserves the model's training flags, resolves
    ``random_state`` into a fresh :class:`numpy.random.Generator` for each call,
    and checks the result against the :class:`Sampler` contract.

    Common parameters
    -----------------
    batch_size : int
        Batch size of the inference pass.
    device : str, torch.device or None
        Where inference and selector training run. ``None`` (default) follows the
        model's parameters; an explicit device must be the model's (a clear
        ``ValueError`` otherwise: the model is never moved).
    num_workers : int
        ``DataLoader`` workers of the inference pass.
    random_state : int, numpy.random.Generator or None
        Seed of every random choice the sampler makes.
    input_fn, target_fn : callable, optional
        Map a collated batch to the model input / targets (default: element 0 / 1).
    autocast : bool
        Mixed-precision inference.

    Examples
    --------
    A sampler that picks the unlabeled items with the largest feature norm:

    >>> import numpy as np, torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> from aalearn import ActivePool, BaseSampler
    >>> class LargestNorm(BaseSampler):
    ...     def _select(self, model, pool, budget, rng):
    ...         out = self._collect(model, pool, pool.unlabeled_indices, features=True)
    ...         order = torch.argsort(out.features.norm(dim=1), descending=True, stable=True)
    ...         return out.indices[order[:budget].cpu().numpy()]
    >>> model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> pool = ActivePool(TensorDataset(torch.randn(20, 2), torch.zeros(20, dtype=torch.long)))
    >>> sampler = LargestNorm(device="cpu")
    >>> sampler
    LargestNorm(device='cpu')
    >>> sampler.select(model, pool, budget=3).shape
    (3,)
    """

    #: The sampler needs a model (``False`` for :class:`RandomSampler`).
    requires_model: ClassVar[bool] = True

    def __init__(
        self,
        *,
        batch_size: int = 256,
        device: Device = None,
        num_workers: int = 0,
        random_state: RandomState = None,
        input_fn: Optional[Callable[[Any], torch.Tensor]] = None,
        target_fn: Optional[Callable[[Any], torch.Tensor]] = None,
        autocast: bool = False,
    ) -> None:
        self.batch_size = batch_size
        self.device = device
        self.num_workers = num_workers
        self.random_state = random_state
        self.input_fn = input_fn
        self.target_fn = target_fn
        self.autocast = autocast

    # ------------------------------------------------------------ configuration
    @classmethod
    def _param_names(cls) -> list[str]:
        # As in scikit-learn: the parameters are those of the class's own __init__.
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, as stored."""
        return {name: getattr(self, name) for name in self._param_names()}

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
        for name, value in self.get_params().items():
            default = defaults.get(name, inspect.Parameter.empty)
            try:
                same = bool(value == default) and type(value) is type(default)
            except Exception:
                same = False
            if not same:
                shown.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def _validate_params(self) -> None:
        """Check the configuration; subclasses extend it (call ``super()``)."""
        check_int(self.batch_size, "batch_size", minimum=1)
        check_int(self.num_workers, "num_workers", minimum=0)
        resolve_device(self.device)
        check_random_state(self.random_state)
        for name in ("input_fn", "target_fn"):
            fn = getattr(self, name)
            if fn is not None and not callable(fn):
                raise TypeError(
                    f"Expected argument `{name}` to be callable or None, but got "
                    f"{type(fn).__name__}."
                )
        if not isinstance(self.autocast, bool):
            raise TypeError(
                f"Expected argument `autocast` to be a bool, but got "
                f"{type(self.autocast).__name__}."
            )

    @property
    def device_(self) -> torch.device:
        """``device`` as a :class:`torch.device`, resolved without a model.

        ``None`` gives CUDA when available, else CPU; at ``select`` time ``None``
        follows the model instead (:func:`aalearn.inference.inference_device`).
        """
        return resolve_device(self.device)

    # ------------------------------------------------------------------ select
    def select(self, model: Optional[nn.Module], pool: ActivePool, budget: int) -> np.ndarray:
        """Pick ``budget`` unlabeled dataset indices, best first (see :class:`Sampler`)."""
        if not isinstance(pool, ActivePool):
            raise TypeError(
                f"Expected argument `pool` to be an aalearn.ActivePool, but got "
                f"{type(pool).__name__}."
            )
        budget = check_int(budget, "budget", minimum=0)
        if budget > pool.n_unlabeled:
            raise ValueError(
                f"Expected argument `budget` to be at most the number of unlabeled items "
                f"({pool.n_unlabeled}), but got {budget}."
            )
        if self.requires_model and not isinstance(model, nn.Module):
            raise TypeError(
                f"Expected argument `model` to be a torch.nn.Module, but got "
                f"{type(model).__name__}."
            )
        self._validate_params()
        if budget == 0:
            return np.empty(0, dtype=np.int64)
        rng = check_random_state(self.random_state)
        if isinstance(model, nn.Module):
            with preserve_mode(model):
                picked = self._select(model, pool, budget, rng)
        else:
            picked = self._select(model, pool, budget, rng)
        return self._check_output(picked, pool, budget)

    def _select(
        self, model: Any, pool: ActivePool, budget: int, rng: np.random.Generator
    ) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def _check_output(picked: Any, pool: ActivePool, budget: int) -> np.ndarray:
        if isinstance(picked, torch.Tensor):
            picked = picked.detach().cpu().numpy()
        out = np.asarray(picked, dtype=np.int64).reshape(-1)
        if out.shape[0] != budget:
            raise RuntimeError(f"Sampler returned {out.shape[0]} indices instead of {budget}.")
        if np.unique(out).size != budget:
            raise RuntimeError("Sampler returned repeated indices.")
        if pool.labeled_mask[out].any():
            raise RuntimeError("Sampler returned an index that is already labeled.")
        return out

    # ------------------------------------------------------------ inference
    def _collect(
        self,
        model: nn.Module,
        pool: ActivePool,
        indices: np.ndarray,
        **what: Any,
    ) -> InferenceOutputs:
        """One inference pass over ``indices`` with this sampler's configuration.

        Inside :class:`aalearn.distributed.ShardedSampler`, each rank runs the pass
        over its block of ``indices`` and gets every row back (all-gathered).
        """
        if pool.dataset is None:
            raise ValueError("This sampler needs the pool's dataset, but the pool has none.")
        shard = current_shard()
        return (collect if shard is None else shard.collect)(
            model,
            pool.dataset,
            indices,
            batch_size=self.batch_size,
            device=self.device,
            num_workers=self.num_workers,
            input_fn=self.input_fn,
            target_fn=self.target_fn,
            autocast=self.autocast,
            **what,
        )

"""Lightning integration: the pool as a ``LightningDataModule``, selection as a ``Callback``.

:class:`ActivePoolDataModule` serves the pool's labeled items for ``Trainer.fit`` and
its unlabeled items for ``Trainer.predict``, read anew from the pool at each call, so
one data module follows the pool through the cycles. :class:`ActiveLearningCallback`
runs a sampler's ``select`` at the end of ``fit`` and labels the picks (or only keeps
them). Under a distributed strategy (``strategy="ddp"``, launched by Lightning or by
``torchrun``) the selection is sharded over the Trainer's own processes with
:class:`aalearn.distributed.ShardedSampler`: each rank scores its block of the
unlabeled items, and every rank gets (and labels) the same picks, those one process
would make with the same weights.

Needs the ``lightning`` extra (``pip install 'aalearn[lightning]'``); this module
imports ``lightning`` when it is imported, ``import aalearn`` never does.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader

from aalearn._validation import check_bool, check_int
from aalearn.distributed import Timeout
from aalearn.integrations._common import Oracle, check_loop_args, label_picks, select_sharded
from aalearn.pool import ActivePool

__all__ = ["ActiveLearningCallback", "ActivePoolDataModule", "select_after_fit"]


class ActivePoolDataModule(pl.LightningDataModule):
    """A ``LightningDataModule`` over an :class:`~aalearn.ActivePool`.

    ``train_dataloader`` iterates :meth:`ActivePool.labeled_dataset
    <aalearn.ActivePool.labeled_dataset>` (with the oracle's labels), ``predict_dataloader``
    :meth:`~aalearn.ActivePool.unlabeled_dataset` in ascending dataset index order. Both
    read the pool when Lightning asks for them, at every ``fit`` and ``predict``.

    Parameters
    ----------
    pool : aalearn.ActivePool
        A pool with a dataset.
    batch_size : int
        Batch size of both loaders.
    num_workers : int
        ``DataLoader`` worker processes.
    shuffle : bool
        Shuffle the labeled items (under DDP Lightning replaces the sampler with its
        ``DistributedSampler``, which shuffles with its own seed).
    random_state : int, optional
        Seed of the shuffling generator (a ``torch.Generator``); never the global RNG.
    collate_fn : callable, optional
        Passed to both loaders (e.g. a HuggingFace data collator).

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from aalearn import ActivePool
    >>> from aalearn.integrations.lightning import ActivePoolDataModule
    >>> pool = ActivePool(TensorDataset(torch.randn(10, 3), torch.arange(10) % 2))
    >>> pool.label([0, 4, 7])
    >>> dm = ActivePoolDataModule(pool, batch_size=2, random_state=0)
    >>> sum(len(x) for x, y in dm.train_dataloader()), len(dm.predict_dataloader().dataset)
    (3, 7)
    """

    def __init__(
        self,
        pool: ActivePool,
        *,
        batch_size: int = 32,
        num_workers: int = 0,
        shuffle: bool = True,
        random_state: Optional[int] = None,
        collate_fn: Optional[Callable[[list[Any]], Any]] = None,
    ) -> None:
        super().__init__()
        if not isinstance(pool, ActivePool):
            raise TypeError(
                "Expected argument `pool` to be an aalearn.ActivePool, but got "
                f"{type(pool).__name__}."
            )
        if pool.dataset is None:
            raise ValueError("Expected argument `pool` to have a dataset, but it has none.")
        self.pool = pool
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.num_workers = check_int(num_workers, "num_workers", minimum=0)
        self.shuffle = check_bool(shuffle, "shuffle")
        if random_state is not None:
            check_int(random_state, "random_state", minimum=0)
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(
                "Expected argument `collate_fn` to be callable or None, but got "
                f"{type(collate_fn).__name__}."
            )
        self.random_state = random_state
        self.collate_fn = collate_fn

    def _loader(self, dataset: Any, shuffle: bool) -> DataLoader:
        generator = None
        if shuffle and self.random_state is not None:
            generator = torch.Generator().manual_seed(self.random_state)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            generator=generator,
        )

    def train_dataloader(self) -> DataLoader:
        """The labeled items (``pool.labeled_dataset()``)."""
        if self.pool.n_labeled == 0:
            raise ValueError("The pool has no labeled item to train on: label a first set.")
        return self._loader(self.pool.labeled_dataset(), self.shuffle)

    def predict_dataloader(self) -> DataLoader:
        """The unlabeled items (``pool.unlabeled_dataset()``), in ascending index order."""
        return self._loader(self.pool.unlabeled_dataset(), False)


def select_after_fit(
    trainer: pl.Trainer,
    sampler: Any,
    pool: ActivePool,
    budget: int,
    *,
    model: Optional[torch.nn.Module] = None,
    timeout: Timeout = None,
) -> np.ndarray:
    """Pick ``budget`` unlabeled items with the model ``trainer`` fitted, sharded under DDP.

    Call it on every rank after ``trainer.fit``. With a process group of more than one
    rank (the one the Trainer's strategy initialised) the selection runs through
    :class:`~aalearn.distributed.ShardedSampler`; otherwise it is ``sampler.select``.
    The model is moved to the strategy's device first (Lightning moves it to the CPU
    when ``fit`` ends).

    Parameters
    ----------
    trainer : lightning.pytorch.Trainer
        The Trainer that ran ``fit``.
    sampler : aalearn.Sampler
    pool : aalearn.ActivePool
        The same pool state on every rank.
    budget : int
    model : torch.nn.Module, optional
        Default: ``trainer.lightning_module`` (its ``forward`` returns the logits).
    timeout : float, datetime.timedelta or None
        Longest wait for the other ranks (see ``ShardedSampler``).

    Returns
    -------
    numpy.ndarray
        Dataset indices, best first; the same on every rank.

    Examples
    --------
    >>> from aalearn.integrations.lightning import select_after_fit
    >>> callable(select_after_fit)
    True
    """
    if not isinstance(trainer, pl.Trainer):
        raise TypeError(
            "Expected argument `trainer` to be a lightning.pytorch.Trainer, but got "
            f"{type(trainer).__name__}."
        )
    budget = check_loop_args(sampler, pool, budget, None, True)
    module = trainer.lightning_module if model is None else model
    if not isinstance(module, torch.nn.Module):
        raise TypeError(
            "Expected argument `model` to be a torch.nn.Module (or a fitted trainer), but got "
            f"{type(module).__name__}."
        )
    module.to(trainer.strategy.root_device)
    return select_sharded(sampler, module, pool, budget, timeout=timeout)[0]


class ActiveLearningCallback(pl.Callback):
    """Run ``sampler.select`` when ``Trainer.fit`` ends, and label the picks.

    On every rank, :func:`select_after_fit` picks ``budget`` items (sharded across the
    Trainer's processes under DDP), then, with ``label=True``, ``pool.label(picks,
    labels=oracle(picks))`` (the dataset's own targets without an oracle) runs on every
    rank, so the pools stay identical. Add it to a new Trainer each cycle, or reuse it:
    every ``fit`` ends with one selection.

    Parameters
    ----------
    sampler : aalearn.Sampler
    pool : aalearn.ActivePool
        The pool the :class:`ActivePoolDataModule` reads (the same on every rank).
    budget : int
        Items to pick after each ``fit``.
    oracle : callable, optional
        ``oracle(picked) -> labels``, called on every rank with the same picks; it must
        return the same labels on every rank.
    label : bool
        Label the picks (default); ``False`` only keeps them in :attr:`picked_`.
    timeout : float, datetime.timedelta or None
        Longest wait for the other ranks during the sharded selection.

    Attributes
    ----------
    picked_ : numpy.ndarray
        The picks of the last ``fit``, best first.
    history_ : list of numpy.ndarray
        The picks of every ``fit`` so far.
    world_size_ : int
        Processes that shared the last selection (1 when not distributed).

    Examples
    --------
    >>> from aalearn import ActivePool, UncertaintySampler
    >>> from aalearn.integrations.lightning import ActiveLearningCallback
    >>> pool = ActivePool(None, n_items=100)
    >>> ActiveLearningCallback(UncertaintySampler("margin"), pool, budget=10)
    ActiveLearningCallback(UncertaintySampler(method='margin'), budget=10, label=True)
    """

    def __init__(
        self,
        sampler: Any,
        pool: ActivePool,
        budget: int,
        *,
        oracle: Optional[Oracle] = None,
        label: bool = True,
        timeout: Timeout = None,
    ) -> None:
        super().__init__()
        self.budget = check_loop_args(sampler, pool, budget, oracle, label)
        self.sampler, self.pool, self.oracle = sampler, pool, oracle
        self.label, self.timeout = bool(label), timeout
        self.history_: list[np.ndarray] = []

    def __repr__(self) -> str:
        return f"ActiveLearningCallback({self.sampler!r}, budget={self.budget}, label={self.label})"

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Select (sharded under DDP), then label the picks on every rank."""
        budget = min(self.budget, self.pool.n_unlabeled)
        if budget == 0:
            self.picked_ = np.empty(0, dtype=np.int64)
            return
        pl_module.to(trainer.strategy.root_device)
        picked, self.world_size_ = select_sharded(
            self.sampler, pl_module, self.pool, budget, timeout=self.timeout
        )
        self.picked_ = picked
        self.history_.append(picked)
        if self.label:
            label_picks(self.pool, picked, self.oracle)

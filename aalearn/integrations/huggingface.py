"""HuggingFace ``transformers.Trainer`` integration: pool views and selection after training.

:func:`pool_datasets` gives the pool's labeled items (the oracle's labels in the label
column) and its unlabeled items as ``datasets.Dataset`` views of a pool over a
``datasets.Dataset`` (``Dataset.select``; other datasets get
:class:`~aalearn.PoolSubset` views, which the Trainer takes as well).
:class:`ActiveLearningTrainerCallback` runs a sampler's ``select`` when
``Trainer.train`` ends and labels the picks; :func:`select_after_training` does the
selection alone. aalearn scores a transformers model as it is (``model(**batch)``,
``.logits``). Under ``torchrun`` (a process group of several ranks) the selection is
sharded over the ranks with :class:`aalearn.distributed.ShardedSampler`, as in
:mod:`aalearn.integrations.lightning`.

Needs the ``hf`` extra (``pip install 'aalearn[hf]'``); this module imports
``transformers`` and ``datasets`` when it is imported, ``import aalearn`` never does.
"""

from __future__ import annotations

from typing import Any, Optional

import datasets
import numpy as np
import torch
import transformers

from aalearn.distributed import Timeout
from aalearn.integrations._common import Oracle, check_loop_args, label_picks, select_sharded
from aalearn.pool import DEFAULT_LABEL_KEYS, ActivePool

__all__ = ["ActiveLearningTrainerCallback", "pool_datasets", "select_after_training"]


def _label_column(dataset: datasets.Dataset, label_key: Optional[str]) -> str:
    names = [label_key] if label_key is not None else list(DEFAULT_LABEL_KEYS)
    for name in names:
        if name in dataset.column_names:
            return name
    raise ValueError(
        f"Expected the pool's dataset to have a label column ({' or '.join(names)}), but its "
        f"columns are {dataset.column_names}."
    )


def pool_datasets(pool: ActivePool) -> tuple[Any, Any]:
    """The labeled and the unlabeled items of ``pool``, for ``Trainer(train_dataset=...)``.

    For a pool over a ``datasets.Dataset``: two ``datasets.Dataset`` (``dataset.select``
    of the labeled and of the unlabeled indices, ascending, in the dataset's format),
    the labeled one with the oracle's labels (``pool.label(..., labels=...)``) in its
    label column (the pool's ``label_key``, else ``"label"`` or ``"labels"``) and the
    dataset's own label elsewhere (that view is a copy: the labels are a new column).
    For any other dataset:
    ``pool.labeled_dataset()`` and ``pool.unlabeled_dataset()``.

    Examples
    --------
    >>> import datasets
    >>> from aalearn import ActivePool
    >>> from aalearn.integrations.huggingface import pool_datasets
    >>> data = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 0, 0]})
    >>> pool = ActivePool(data)
    >>> pool.label([2, 0], labels=[1, 0])
    >>> labeled, unlabeled = pool_datasets(pool)
    >>> labeled[:]["text"], labeled[:]["label"], unlabeled[:]["text"]
    (['a', 'c'], [0, 1], ['b'])
    """
    if not isinstance(pool, ActivePool):
        raise TypeError(
            f"Expected argument `pool` to be an aalearn.ActivePool, but got {type(pool).__name__}."
        )
    data = pool.dataset
    if data is None:
        raise ValueError("Expected argument `pool` to have a dataset, but it has none.")
    if not isinstance(data, datasets.Dataset):
        return pool.labeled_dataset(), pool.unlabeled_dataset()
    idx = pool.labeled_indices
    labeled = data.select(idx)
    oracle = pool.labels(idx)
    if (oracle >= 0).any():
        column = _label_column(data, pool.label_key)
        own = np.asarray(labeled.with_format("numpy", columns=[column])[:][column])
        merged = np.where(oracle >= 0, oracle, own).astype(own.dtype, copy=False)
        fmt = labeled.format
        features = labeled.features.copy()
        labeled = labeled.remove_columns(column).add_column(
            column, merged.tolist(), feature=features[column]
        )
        labeled = labeled.select_columns(list(features))  # the original column order
        labeled.set_format(fmt["type"], fmt["columns"], fmt["output_all_columns"],
                           **fmt["format_kwargs"])  # fmt: skip
    return labeled, data.select(pool.unlabeled_indices)


def select_after_training(
    trainer: transformers.Trainer,
    sampler: Any,
    pool: ActivePool,
    budget: int,
    *,
    timeout: Timeout = None,
) -> np.ndarray:
    """Pick ``budget`` unlabeled items with ``trainer.model``, sharded under ``torchrun``.

    Call it on every rank after ``trainer.train()``: with a process group of more than
    one rank the selection runs through :class:`~aalearn.distributed.ShardedSampler`,
    otherwise it is ``sampler.select(trainer.model, pool, budget)``.

    Examples
    --------
    >>> from aalearn.integrations.huggingface import select_after_training
    >>> callable(select_after_training)
    True
    """
    if not isinstance(trainer, transformers.Trainer):
        raise TypeError(
            "Expected argument `trainer` to be a transformers.Trainer, but got "
            f"{type(trainer).__name__}."
        )
    budget = check_loop_args(sampler, pool, budget, None, True)
    return select_sharded(sampler, trainer.model, pool, budget, timeout=timeout)[0]


class ActiveLearningTrainerCallback(transformers.TrainerCallback):
    """Run ``sampler.select`` when ``Trainer.train`` ends, and label the picks.

    On every rank the trained model picks ``budget`` items (sharded under ``torchrun``),
    then, with ``label=True``, ``pool.label(picks, labels=oracle(picks))`` runs on every
    rank (the dataset's own labels without an oracle). A Trainer's training set is
    fixed, so each cycle builds a new Trainer on :func:`pool_datasets`; the callback
    can be shared by all of them.

    Parameters
    ----------
    sampler : aalearn.Sampler
    pool : aalearn.ActivePool
    budget : int
        Items to pick after each ``train``.
    oracle : callable, optional
        ``oracle(picked) -> labels``, called on every rank with the same picks.
    label : bool
        Label the picks (default); ``False`` only keeps them in :attr:`picked_`.
    timeout : float, datetime.timedelta or None
        Longest wait for the other ranks during the sharded selection.

    Attributes
    ----------
    picked_ : numpy.ndarray
        The picks of the last ``train``, best first.
    history_ : list of numpy.ndarray
        The picks of every ``train`` so far.
    world_size_ : int
        Processes that shared the last selection (1 when not distributed).

    Examples
    --------
    >>> from aalearn import ActivePool, UncertaintySampler
    >>> from aalearn.integrations.huggingface import ActiveLearningTrainerCallback
    >>> pool = ActivePool(None, n_items=100)
    >>> ActiveLearningTrainerCallback(UncertaintySampler("margin"), pool, budget=10)
    ActiveLearningTrainerCallback(UncertaintySampler(method='margin'), budget=10, label=True)
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
        self.budget = check_loop_args(sampler, pool, budget, oracle, label)
        self.sampler, self.pool, self.oracle = sampler, pool, oracle
        self.label, self.timeout = bool(label), timeout
        self.history_: list[np.ndarray] = []

    def __repr__(self) -> str:
        return (
            f"ActiveLearningTrainerCallback({self.sampler!r}, budget={self.budget}, "
            f"label={self.label})"
        )

    def on_train_end(
        self,
        args: transformers.TrainingArguments,
        state: transformers.TrainerState,
        control: transformers.TrainerControl,
        model: Optional[torch.nn.Module] = None,
        **kwargs: Any,
    ) -> None:
        """Select with the trained ``model`` (sharded under ``torchrun``), then label."""
        if model is None:
            raise RuntimeError("The Trainer passed no model to the callback.")
        budget = min(self.budget, self.pool.n_unlabeled)
        if budget == 0:
            self.picked_ = np.empty(0, dtype=np.int64)
            return
        picked, self.world_size_ = select_sharded(
            self.sampler, model, self.pool, budget, timeout=self.timeout
        )
        self.picked_ = picked
        self.history_.append(picked)
        if self.label:
            label_picks(self.pool, picked, self.oracle)

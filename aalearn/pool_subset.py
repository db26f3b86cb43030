"""The dataset view of a pool's items: :class:`PoolSubset`, with the oracle's labels.

:meth:`ActivePool.labeled_dataset <aalearn.ActivePool.labeled_dataset>` and
:meth:`~aalearn.ActivePool.unlabeled_dataset` return these views; the inference pass
reads items through them too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

# The label keys of dict items are the inference adapters' (defined there, once).
from aalearn.inference.adapters import DEFAULT_LABEL_KEYS

__all__ = ["DEFAULT_LABEL_KEYS", "PoolSubset"]


class PoolSubset(Dataset):
    """A view of ``dataset`` restricted to ``indices``, like :class:`torch.utils.data.Subset`.

    Item ``i`` of the view is ``dataset[indices[i]]``. When ``labels`` is given (labels
    an oracle provided through :meth:`ActivePool.label`), the item's target is
    replaced: a tuple item ``(x, y, ...)`` becomes ``(x, label, ...)``, a dict item keeps
    its keys with its label key replaced (``label_key``, or ``"label"`` / ``"labels"``,
    whichever the item has; ``"label"`` is added when it has neither), and any other
    item ``x`` becomes ``(x, label)``. A label replacing a tensor target is a tensor of
    the same dtype, so a ``DataLoader`` batch has one structure. ``has_label`` says, per
    position, which of ``labels`` are real; the others keep the dataset's own target.

    The index array is a NumPy ``int64`` array computed once, so iterating a
    :class:`~torch.utils.data.DataLoader` over the view costs the same as over a
    plain ``Subset``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from torch.utils.data import TensorDataset
    >>> from aalearn import PoolSubset
    >>> data = TensorDataset(torch.arange(5.0), torch.zeros(5, dtype=torch.long))
    >>> view = PoolSubset(data, np.array([3, 1]), labels=np.array([7, -1]),
    ...                   has_label=np.array([True, False]))
    >>> len(view), view[0][0].item(), view[0][1].item(), view[1][1].item()
    (2, 3.0, 7, 0)
    >>> records = [{"text": "a", "label": 0}, {"text": "b", "label": 1}]
    >>> PoolSubset(records, np.array([1]), labels=np.array([0]), has_label=np.array([True]))[0]
    {'text': 'b', 'label': 0}
    """

    def __init__(
        self,
        dataset: Dataset,
        indices: np.ndarray,
        labels: Optional[np.ndarray] = None,
        has_label: Optional[np.ndarray] = None,
        label_key: Optional[str] = None,
    ) -> None:
        self.dataset = dataset
        self.indices = indices
        self.label_key = label_key
        self._labels = labels
        self._has_label = has_label
        # Python ints are faster to index with than NumPy scalars.
        self._index_list: list[int] = indices.tolist()
        self._any_label = bool(has_label is not None and has_label.any())
        self._label_list: Optional[list[int]] = (
            labels.tolist() if labels is not None and self._any_label else None
        )
        self._has_list: Optional[list[bool]] = (
            has_label.tolist() if has_label is not None and self._any_label else None
        )
        self._label_tensors: Optional[list[torch.Tensor]] = None

    def __len__(self) -> int:
        return len(self._index_list)

    def __getitem__(self, idx: int) -> Any:
        item = self.dataset[self._index_list[idx]]
        if self._has_list is None or not self._has_list[idx]:
            return item
        return self._relabel(item, idx)

    def _relabel(self, item: Any, idx: int) -> Any:
        assert self._label_list is not None
        if isinstance(item, Mapping):
            keys = DEFAULT_LABEL_KEYS if self.label_key is None else (self.label_key,)
            key = next((k for k in keys if k in item), keys[0])
            return {**item, key: self._label_like(item.get(key), idx)}
        old = item[1] if isinstance(item, (tuple, list)) and len(item) > 1 else None
        label = self._label_like(old, idx)
        if isinstance(item, tuple):
            return (item[0], label, *item[2:])
        if isinstance(item, list):
            return [item[0], label, *item[2:]]
        return (item, label)

    def _label_like(self, old: Any, idx: int) -> Any:
        """Label ``idx`` in the type of the dataset's own target ``old`` (tensor or int)."""
        assert self._label_list is not None
        if not isinstance(old, torch.Tensor):
            return self._label_list[idx]
        # Match the dataset's own target type so that default collation works. The
        # 0-d label tensors are made once, on first use, not per item and epoch.
        if self._label_tensors is None or self._label_tensors[0].dtype != old.dtype:
            self._label_tensors = list(torch.tensor(self._label_list, dtype=old.dtype).unbind())
        return self._label_tensors[idx]

    def __getitems__(self, idxs: list[int]) -> list[Any]:
        # DataLoader's batched fetch path: one list comprehension, and the dataset's
        # own __getitems__ when it has one, as torch.utils.data.Subset does.
        index_list = self._index_list
        dataset_idx = [index_list[i] for i in idxs]
        getitems = getattr(self.dataset, "__getitems__", None)
        if callable(getitems):
            items = getitems(dataset_idx)
        else:
            dataset = self.dataset
            items = [dataset[j] for j in dataset_idx]
        has = self._has_list
        if has is None:
            return items
        return [self._relabel(it, i) if has[i] else it for it, i in zip(items, idxs)]

    def __repr__(self) -> str:
        return f"PoolSubset(n_items={len(self)})"

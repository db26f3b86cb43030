"""The labeled and unlabeled pools over a map-style dataset."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from aalearn._validation import RandomState, check_int, check_random_state

__all__ = ["ActivePool", "PoolSubset"]

#: Label keys of dict items tried in order when none is configured (HuggingFace's names).
DEFAULT_LABEL_KEYS = ("label", "labels")

IndexLike = Union[Sequence[int], np.ndarray, torch.Tensor]

_STATE_VERSION = 1
_STATE_KEYS = ("version", "n_items", "labeled_round", "labels", "has_label", "round")
_UNLABELED = -1


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


class ActivePool:
    """Labeled and unlabeled indices over a map-style dataset of ``N`` items.

    Every index the pool takes or returns is a *dataset* index (an int in
    ``[0, N)``), never a position inside the unlabeled pool. State is three arrays
    of length ``N``: the round in which each item was labeled (``-1`` while
    unlabeled, as in baal's ``labelled_map``), the labels an oracle gave, and which
    of those labels are known. Every operation is vectorised: labeling ``k`` items of
    a 10-million item pool costs ``O(k)`` plus one ``O(N)`` NumPy pass to refresh
    the sorted index arrays, with no Python loop over the pool.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        Any map-style dataset (``__getitem__`` and ``__len__``). Its items are only
        read through :meth:`labeled_dataset` / :meth:`unlabeled_dataset` views.
    n_items : int, optional
        Pool size when no dataset is given (``ActivePool(None, n_items=...)``),
        e.g. to track indices of data that lives elsewhere.
    label_key : str, optional
        For dict items: the key that oracle labels replace in :meth:`labeled_dataset`
        (default: ``"label"`` or ``"labels"``, whichever the item has).

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from aalearn import ActivePool
    >>> data = TensorDataset(torch.randn(10, 3), torch.arange(10) % 2)
    >>> pool = ActivePool(data)
    >>> pool.label(pool.random_unlabeled(3, random_state=0))
    >>> pool.n_labeled, pool.n_unlabeled
    (3, 7)
    >>> pool.label(pool.unlabeled_indices[:1], labels=[1])  # labels from an oracle
    >>> pool.labeled_indices.dtype
    dtype('int64')
    >>> len(pool.labeled_dataset())
    4
    """

    def __init__(
        self,
        dataset: Optional[Dataset],
        *,
        n_items: Optional[int] = None,
        label_key: Optional[str] = None,
    ) -> None:
        if label_key is not None and not isinstance(label_key, str):
            raise TypeError(
                f"Expected argument `label_key` to be a str or None, but got "
                f"{type(label_key).__name__}."
            )
        if dataset is None:
            if n_items is None:
                raise ValueError("Expected argument `n_items` when `dataset` is None.")
            n = check_int(n_items, "n_items", minimum=0)
        else:
            if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
                raise TypeError(
                    "Expected argument `dataset` to be a map-style dataset with __getitem__ "
                    f"and __len__, but got {type(dataset).__name__}."
                )
            n = len(dataset)
            if n_items is not None and check_int(n_items, "n_items") != n:
                raise ValueError(
                    f"Expected argument `n_items` to equal len(dataset)={n}, but got {n_items}."
                )
        self.dataset = dataset
        self.label_key = label_key
        self._n = n
        self._labeled_round = np.full(n, _UNLABELED, dtype=np.int64)
        self._labels = np.full(n, -1, dtype=np.int64)
        self._has_label = np.zeros(n, dtype=bool)
        self._round = 0
        self._refresh()

    # ------------------------------------------------------------------ views
    def _refresh(self) -> None:
        mask = self._labeled_round >= 0
        self._labeled_idx = np.flatnonzero(mask).astype(np.int64, copy=False)
        self._unlabeled_idx = np.flatnonzero(~mask).astype(np.int64, copy=False)
        for arr in (self._labeled_idx, self._unlabeled_idx):
            arr.flags.writeable = False

    def __len__(self) -> int:
        return self._n

    @property
    def n_items(self) -> int:
        """Number of items in the pool, labeled or not."""
        return self._n

    @property
    def n_labeled(self) -> int:
        """Number of labeled items."""
        return int(self._labeled_idx.size)

    @property
    def n_unlabeled(self) -> int:
        """Number of unlabeled items."""
        return int(self._unlabeled_idx.size)

    @property
    def labeled_indices(self) -> np.ndarray:
        """Dataset indices of labeled items: read-only ``int64`` array, ascending.

        Read-only so that nobody can corrupt the pool through it; ``.copy()`` it
        before ``torch.from_numpy`` (which warns on read-only arrays) or writing.
        """
        return self._labeled_idx

    @property
    def unlabeled_indices(self) -> np.ndarray:
        """Dataset indices of unlabeled items: read-only ``int64`` array, ascending."""
        return self._unlabeled_idx

    @property
    def labeled_mask(self) -> np.ndarray:
        """Boolean array of length ``N``, ``True`` where the item is labeled (a copy)."""
        return self._labeled_round >= 0

    @property
    def labeled_round(self) -> np.ndarray:
        """Round in which each item was labeled, ``-1`` while unlabeled (a copy).

        Round ``r`` is the ``r``-th call of :meth:`label` (the first call is round 0).
        """
        return self._labeled_round.copy()

    @property
    def round(self) -> int:
        """Number of :meth:`label` calls so far."""
        return self._round

    def labels(self, indices: Optional[IndexLike] = None) -> np.ndarray:
        """Oracle labels of ``indices`` (default: the labeled items), ``-1`` where unknown.

        Labels are known only for items labeled with ``label(..., labels=...)``;
        items labeled without labels keep the dataset's own targets.
        """
        idx = self._labeled_idx if indices is None else self._check_indices(indices, "indices")
        return self._labels[idx].copy()

    def labeled_dataset(self) -> PoolSubset:
        """A dataset view of the labeled items, in ascending index order."""
        return self._subset(self._labeled_idx)

    def unlabeled_dataset(self) -> PoolSubset:
        """A dataset view of the unlabeled items, in ascending index order."""
        return self._subset(self._unlabeled_idx)

    def _subset(self, idx: np.ndarray) -> PoolSubset:
        if self.dataset is None:
            raise ValueError("This pool has no dataset (it was built with `n_items`).")
        has = self._has_label[idx]
        return PoolSubset(self.dataset, idx, self._labels[idx], has, label_key=self.label_key)

    # ------------------------------------------------------------ operations
    def _check_indices(self, indices: IndexLike, name: str) -> np.ndarray:
        if isinstance(indices, torch.Tensor):
            indices = indices.detach().cpu().numpy()
        arr = np.asarray(indices)
        if arr.ndim == 0:
            raise ValueError(
                f"Expected argument `{name}` to be a 1-D sequence of dataset indices, but got "
                f"a scalar {arr!r}; wrap it in a list."
            )
        if arr.ndim != 1:
            raise ValueError(
                f"Expected argument `{name}` to be a 1-D sequence of dataset indices, but got "
                f"shape {arr.shape}."
            )
        if arr.size == 0:
            return np.empty(0, dtype=np.int64)
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(
                f"Expected argument `{name}` to hold integer dataset indices, but got dtype "
                f"{arr.dtype}."
            )
        arr = arr.astype(np.int64, copy=False)
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= self._n:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"Expected argument `{name}` to hold indices in [0, {self._n}), but got {bad}."
            )
        return arr

    def label(self, indices: IndexLike, labels: Optional[IndexLike] = None) -> None:
        """Move ``indices`` from the unlabeled to the labeled pool.

        Parameters
        ----------
        indices : array-like of int
            Dataset indices, unique and currently unlabeled.
        labels : array-like of int, optional
            Labels from an oracle, one per index. When omitted the dataset's own
            targets are used by :meth:`labeled_dataset`.

        Raises
        ------
        ValueError
            On an index out of range, repeated, or already labeled, or when
            ``labels`` does not match ``indices``. Nothing changes when it raises.
        """
        idx = self._check_indices(indices, "indices")
        lab: Optional[np.ndarray] = None
        if labels is not None:
            if isinstance(labels, torch.Tensor):
                labels = labels.detach().cpu().numpy()
            lab = np.asarray(labels)
            if lab.ndim != 1 or lab.shape[0] != idx.shape[0]:
                raise ValueError(
                    "Expected argument `labels` to be 1-D with one label per index "
                    f"({idx.shape[0]}), but got shape {lab.shape}."
                )
            if lab.size and (lab.dtype == bool or not np.issubdtype(lab.dtype, np.integer)):
                raise TypeError(
                    f"Expected argument `labels` to hold integer class labels, but got dtype "
                    f"{lab.dtype}."
                )
            lab = lab.astype(np.int64, copy=False)
            if lab.size and int(lab.min()) < 0:
                raise ValueError(
                    f"Expected argument `labels` to be non-negative, but got {int(lab.min())}."
                )
        if idx.size == 0:
            return
        uniq = np.unique(idx)
        if uniq.size != idx.size:
            counts = np.bincount(np.searchsorted(uniq, idx))
            dup = int(uniq[np.argmax(counts)])
            raise ValueError(
                f"Expected argument `indices` to hold unique indices, but index {dup} appears "
                "more than once."
            )
        already = self._labeled_round[idx] >= 0
        if already.any():
            first = int(idx[np.argmax(already)])
            raise ValueError(
                f"Expected argument `indices` to hold unlabeled indices, but index {first} is "
                "already labeled."
            )
        # All checks passed: mutate.
        self._labeled_round[idx] = self._round
        if lab is not None:
            self._labels[idx] = lab
            self._has_label[idx] = True
        self._round += 1
        self._refresh()

    def random_unlabeled(self, n: int, *, random_state: RandomState = None) -> np.ndarray:
        """Draw ``n`` distinct unlabeled indices uniformly at random (does not label them).

        Parameters
        ----------
        n : int
            How many, ``0 <= n <= n_unlabeled``.
        random_state : int, numpy.random.Generator or None
            Seed or generator; the global RNG is never used.

        Examples
        --------
        >>> from aalearn import ActivePool
        >>> pool = ActivePool(None, n_items=100)
        >>> pool.random_unlabeled(3, random_state=0).tolist() == (
        ...     pool.random_unlabeled(3, random_state=0).tolist())
        True
        """
        n = check_int(n, "n", minimum=0)
        if n > self.n_unlabeled:
            raise ValueError(
                f"Expected argument `n` to be at most the number of unlabeled items "
                f"({self.n_unlabeled}), but got {n}."
            )
        rng = check_random_state(random_state)
        pos = rng.choice(self.n_unlabeled, size=n, replace=False)
        return self._unlabeled_idx[pos].astype(np.int64)

    # ------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """The pool's state as CPU tensors and ints (no dataset).

        Tensors and plain Python values only, so a checkpoint holding it loads under
        ``torch.load(..., weights_only=True)``.

        Examples
        --------
        >>> import io, torch
        >>> from aalearn import ActivePool
        >>> pool = ActivePool(None, n_items=5)
        >>> pool.label([3])
        >>> buf = io.BytesIO()
        >>> torch.save({"pool": pool.state_dict()}, buf)
        >>> _ = buf.seek(0)
        >>> restored = ActivePool(None, n_items=5)
        >>> restored.load_state_dict(torch.load(buf, weights_only=True)["pool"])
        >>> restored.labeled_indices.tolist()
        [3]
        """
        return {
            "version": _STATE_VERSION,
            "n_items": self._n,
            "labeled_round": torch.from_numpy(self._labeled_round.copy()),
            "labels": torch.from_numpy(self._labels.copy()),
            "has_label": torch.from_numpy(self._has_label.copy()),
            "round": self._round,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`; checks everything before changing anything."""
        if not isinstance(state, dict):
            raise TypeError(
                f"Expected argument `state` to be a dict, but got {type(state).__name__}."
            )
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ValueError(
                f"Expected argument `state` to have keys {missing}, but they are missing."
            )
        extra = sorted(set(state) - set(_STATE_KEYS))
        if extra:
            raise ValueError(f"Unexpected keys in argument `state`: {extra}.")
        if int(state["version"]) != _STATE_VERSION:
            raise ValueError(
                f"Unsupported pool state version {state['version']}; expected {_STATE_VERSION}."
            )
        if int(state["n_items"]) != self._n:
            raise ValueError(
                f"The state is for a pool of {int(state['n_items'])} items, but this pool has "
                f"{self._n}."
            )
        arrays = {}
        for key, dtype in (("labeled_round", np.int64), ("labels", np.int64), ("has_label", bool)):
            value = state[key]
            arr = (
                value.detach().cpu().numpy()
                if isinstance(value, torch.Tensor)
                else np.asarray(value)
            )
            if arr.shape != (self._n,):
                raise ValueError(
                    f"Expected state['{key}'] to have shape ({self._n},), but got {arr.shape}."
                )
            arrays[key] = arr.astype(dtype, copy=True)
        rnd = int(state["round"])
        if rnd < 0 or int(arrays["labeled_round"].max(initial=-1)) >= rnd:
            raise ValueError(
                "Inconsistent state: state['round'] must be >= 0 and greater than every "
                "labeled round."
            )
        if int(arrays["labeled_round"].min(initial=0)) < _UNLABELED:
            raise ValueError("Inconsistent state: state['labeled_round'] has values below -1.")
        self._labeled_round = arrays["labeled_round"]
        self._labels = arrays["labels"]
        self._has_label = arrays["has_label"]
        self._round = rnd
        self._refresh()

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the state to ``path`` as a NumPy ``.npz`` archive, atomically.

        The archive is written to a temporary file in the same directory, flushed
        to disk, then renamed over ``path``: a crash never leaves a half-written
        file. It holds plain arrays only and loads without executing code.
        """
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise FileNotFoundError(
                f"Cannot save the pool to {path!r}: its directory {directory!r} does not exist."
            )
        state = self.state_dict()
        fd, tmp = tempfile.mkstemp(prefix=".aalearn-pool-", suffix=".npz", dir=directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                arrays: dict[str, Any] = {
                    k: v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
                    for k, v in state.items()
                }
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def load(self, path: Union[str, os.PathLike]) -> None:
        """Restore the state written by :meth:`save` (``allow_pickle=False``)."""
        with np.load(os.fspath(path), allow_pickle=False) as data:
            state = {k: data[k] for k in data.files}
        for key in ("version", "n_items", "round"):
            if key in state:
                state[key] = int(state[key])
        self.load_state_dict(state)

    def __repr__(self) -> str:
        return (
            f"ActivePool(n_items={self._n}, n_labeled={self.n_labeled}, "
            f"n_unlabeled={self.n_unlabeled}, round={self._round})"
        )

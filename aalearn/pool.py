"""The labeled and unlabeled pools over a map-style dataset: :class:`ActivePool`.

Here: the state and its operations. Elsewhere: the view of items (:mod:`aalearn.pool_subset`),
state checks (:mod:`aalearn._pool_state`), atomic files (:mod:`aalearn._persistence`)."""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from aalearn._history_state import decode, encode
from aalearn._persistence import read_archive, write_atomically
from aalearn._pool_state import (
    MAX_ROUND,
    STATE_VERSION,
    UNLABELED,
    check_indices,
    check_labels,
    check_state,
)
from aalearn._validation import RandomState, check_int, check_random_state
from aalearn.history import History, check_history
from aalearn.pool_subset import DEFAULT_LABEL_KEYS, PoolSubset

__all__ = ["DEFAULT_LABEL_KEYS", "ActivePool", "IndexLike", "PoolSubset"]

IndexLike = Union[Sequence[int], np.ndarray, torch.Tensor]


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
        self._labeled_round = np.full(n, UNLABELED, dtype=np.int64)
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

    # The index arrays are derived, read-only and shared with dataset views: a copy or an
    # unpickled pool rebuilds them (NumPy would give writable copies) and never shares
    # the arrays that label() writes to.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_labeled_idx"], state["_unlabeled_idx"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._refresh()

    def __copy__(self) -> ActivePool:
        clone = self.__class__.__new__(self.__class__)
        clone.__dict__.update(self.__dict__)
        for name in ("_labeled_round", "_labels", "_has_label"):
            setattr(clone, name, getattr(self, name).copy())
        return clone

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
        """Dataset indices of labeled items: a fresh ``int64`` array, ascending.

        A copy (``O(n_labeled)``), yours to write to or hand to torch:
        ``train_x[pool.labeled_indices]`` and ``torch.from_numpy`` take it without the
        warning torch gives for read-only arrays, and writing to it never changes the pool.
        """
        return self._labeled_idx.copy()

    @property
    def unlabeled_indices(self) -> np.ndarray:
        """Dataset indices of unlabeled items: a fresh ``int64`` array, ascending (a copy)."""
        return self._unlabeled_idx.copy()

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
        idx = self._labeled_idx if indices is None else check_indices(indices, self._n, "indices")
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
        idx = check_indices(indices, self._n, "indices")
        lab = None if labels is None else check_labels(labels, idx.shape[0])
        if idx.size == 0:
            return
        if self._round >= MAX_ROUND:
            raise ValueError(
                f"This pool is at round {self._round}, the largest a pool state can hold; "
                "it cannot label more."
            )
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
        >>> a, b = (pool.random_unlabeled(3, random_state=0) for _ in range(2))
        >>> (a == b).all()
        np.True_
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
        >>> pool, restored = ActivePool(None, n_items=5), ActivePool(None, n_items=5)
        >>> pool.label([3])
        >>> buf = io.BytesIO()
        >>> torch.save({"pool": pool.state_dict()}, buf)
        >>> _ = buf.seek(0)
        >>> restored.load_state_dict(torch.load(buf, weights_only=True)["pool"])
        >>> restored.labeled_indices.tolist()
        [3]
        """
        return {
            "version": STATE_VERSION,
            "n_items": self._n,
            "labeled_round": torch.from_numpy(self._labeled_round.copy()),
            "labels": torch.from_numpy(self._labels.copy()),
            "has_label": torch.from_numpy(self._has_label.copy()),
            "round": self._round,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`; checks everything before changing anything.

        Arrays may be NumPy arrays or torch tensors, scalars Python or NumPy ints or
        0-d arrays/tensors, of any integer dtype (``has_label``: bool). A float, a bool
        where an int is expected, or a wrong shape is a :class:`TypeError` /
        :class:`ValueError`, and so is a state the pool could never reach: a round
        below -1 or not below ``round``, a value beyond int64 (checked in the stored
        dtype, so a uint64 ``2**64 - 1`` is reported as such, never as -1),
        ``has_label`` on an unlabeled item, a label other than ``-1`` without
        ``has_label`` or a negative one with it.
        """
        rounds, labels, has, rnd = check_state(state, self._n)
        self._labeled_round = rounds
        self._labels = labels
        self._has_label = has
        self._round = rnd
        self._refresh()

    def save(self, path: Union[str, os.PathLike], *, history: Optional[History] = None) -> None:
        """Write the state (and ``history``, if given) to ``path`` as an ``.npz``, atomically.

        The archive is written to a new temporary file next to ``path``
        (``.<digest of the name>.<pid>.<random>.aalearn-tmp``, short whatever the length
        of the name), created exclusively and never through a link planted at its name;
        it is flushed to disk, renamed over ``path``, and the directory is flushed too:
        a crash never leaves a half-written file, and once ``save`` returns the new file
        survives a power loss. A temporary left by a process killed during a save is
        removed by the next save to the same path. The file gets the mode of the file it
        replaces, or ``0o666`` less the umask for a new file. It holds plain arrays only
        and loads without executing code. A :class:`~aalearn.History` goes into the same
        file in the same write (JSON text as a ``history.npy`` member of bytes).
        """
        state = self.state_dict()
        arrays = {
            k: v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in state.items()
        }
        checked = check_history(history)
        if checked is not None:
            arrays["history"] = encode(checked.state_dict())
        write_atomically(os.fspath(path), arrays)

    def load(self, path: Union[str, os.PathLike], *, history: Optional[History] = None) -> None:
        """Restore the state written by :meth:`save`; nothing changes if it raises.

        ``history`` (a :class:`~aalearn.History`) gets the file's cycles, none if it has none.
        Everything is checked before it is read: ``path`` must be a regular file (a
        directory, device or FIFO is refused unread) no larger than an archive of this
        pool can be; the archive's directory must hold exactly the state's members (and
        maybe a history), stored or deflated, unencrypted, none larger than they can be;
        each member's ``.npy`` header must declare at most that many plain elements.
        Only then is each member read (no pickle) and the state checked by
        :meth:`load_state_dict`. Nothing beyond what a valid file needs is allocated.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            If ``path`` is not a pool archive (not a regular file, empty, truncated, a
            ``.npy``, another archive, a member declaring a larger shape than the pool
            has) or holds a state that does not fit this pool (the message says which).
        """
        path = os.fspath(path)
        check_history(history)
        try:
            state = read_archive(path, self._n)
            member = state.pop("history", None)
            cycles = decode(member) if history is not None else []  # checked first
            self.load_state_dict(state)
        except (TypeError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as err:
            raise ValueError(f"Cannot load the pool state from {path!r}: {err}") from err
        if history is not None:
            history._cycles = cycles

    def __repr__(self) -> str:
        return (
            f"ActivePool(n_items={self._n}, n_labeled={self.n_labeled}, "
            f"n_unlabeled={self.n_unlabeled}, round={self._round})"
        )

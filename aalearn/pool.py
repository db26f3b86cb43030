"""The labeled and unlabeled pools over a map-style dataset."""

from __future__ import annotations

import numbers
import os
import stat
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from aalearn._validation import RandomState, check_int, check_random_state
from aalearn.inference.adapters import DEFAULT_LABEL_KEYS

__all__ = ["ActivePool", "PoolSubset"]

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
        # Range first, in the input's own dtype: a uint64 above 2**63 would wrap to a
        # negative int64 and be reported as such.
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= self._n:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"Expected argument `{name}` to hold indices in [0, {self._n}), but got {bad}."
            )
        return arr.astype(np.int64, copy=False)

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
        """Restore a state from :meth:`state_dict`; checks everything before changing anything.

        Arrays may be NumPy arrays or torch tensors, scalars Python or NumPy ints or
        0-d arrays/tensors, of any integer dtype (``has_label``: bool). A float, a bool
        where an int is expected, or a wrong shape is a :class:`TypeError` /
        :class:`ValueError`, and so is a state the pool could never reach: a round
        below -1 or not below ``round``, ``has_label`` on an unlabeled item, a label
        other than ``-1`` without ``has_label`` or a negative one with it.
        """
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
        version = _state_int(state, "version")
        if version != _STATE_VERSION:
            raise ValueError(
                f"Unsupported pool state version {version}; expected {_STATE_VERSION}."
            )
        n_items = _state_int(state, "n_items")
        if n_items != self._n:
            raise ValueError(
                f"The state is for a pool of {n_items} items, but this pool has {self._n}."
            )
        rounds = _state_array(state, "labeled_round", self._n, integer=True)
        labels = _state_array(state, "labels", self._n, integer=True)
        has = _state_array(state, "has_label", self._n, integer=False)
        rnd = _state_int(state, "round")
        _check_state_contents(rounds, labels, has, rnd)
        self._labeled_round = rounds
        self._labels = labels
        self._has_label = has
        self._round = rnd
        self._refresh()

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the state to ``path`` as a NumPy ``.npz`` archive, atomically.

        The archive is written to a temporary file next to ``path``
        (``.<name>.<pid>.aalearn-tmp``), flushed to disk, renamed over ``path``, and
        the directory is flushed too: a crash never leaves a half-written file, and
        once ``save`` returns the new file survives a power loss. A temporary left by a
        process killed during a save is removed by the next save to the same path, so
        at most one stray temporary per path exists. The file gets the mode of the
        file it replaces, or ``0o666`` less the umask for a new file. It holds plain
        arrays only and loads without executing code.
        """
        path = os.fspath(path)
        directory, name = os.path.split(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise FileNotFoundError(
                f"Cannot save the pool to {path!r}: the directory {directory!r} does not exist."
            )
        state = self.state_dict()
        _remove_stale_temporaries(directory, name)
        tmp = os.path.join(directory, f".{name}.{os.getpid()}{_TMP_SUFFIX}")
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = None
        try:
            # O_TRUNC: a temporary this process left (a save interrupted by an
            # exception that could not clean up) is overwritten, never a second one.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            with os.fdopen(fd, "wb") as fh:
                if mode is not None and hasattr(os, "fchmod"):  # POSIX
                    os.fchmod(fh.fileno(), mode)
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
        _fsync_directory(directory)

    def load(self, path: Union[str, os.PathLike]) -> None:
        """Restore the state written by :meth:`save`; nothing changes if it raises.

        The archive's directory is checked first: exactly the state's members, none
        larger than a state of this pool's size can be; only then is each member read
        (``allow_pickle=False``) and the state checked by :meth:`load_state_dict`.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            If ``path`` is not a pool archive (empty, truncated, a ``.npy``, another
            archive) or holds a state that does not fit this pool; the message names
            the file.
        """
        path = os.fspath(path)
        try:
            state = _read_archive(path, self._n)
            self.load_state_dict(state)
        except (TypeError, ValueError, zipfile.BadZipFile, EOFError) as err:
            raise ValueError(f"Cannot load the pool state from {path!r}: {err}") from err

    def __repr__(self) -> str:
        return (
            f"ActivePool(n_items={self._n}, n_labeled={self.n_labeled}, "
            f"n_unlabeled={self.n_unlabeled}, round={self._round})"
        )


_TMP_SUFFIX = ".aalearn-tmp"
#: Largest ``.npy`` header :func:`numpy.save` writes for a 1-D array (format 1.0: 64-byte
#: aligned, usually 128 bytes), with room to spare.
_NPY_HEADER_BYTES = 4096


def _remove_stale_temporaries(directory: str, name: str) -> None:
    """Remove the temporaries of ``name`` whose writing process no longer runs."""
    prefix = f".{name}."
    try:
        entries = os.listdir(directory)
    except OSError:
        return
    for entry in entries:
        if not (entry.startswith(prefix) and entry.endswith(_TMP_SUFFIX)):
            continue
        pid_text = entry[len(prefix) : -len(_TMP_SUFFIX)]
        if not pid_text.isdigit() or _process_exists(int(pid_text)):
            continue
        try:
            os.unlink(os.path.join(directory, entry))
        except FileNotFoundError:
            pass


def _process_exists(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's live process (or no way to tell): leave its file
    return True


def _fsync_directory(directory: str) -> None:
    """Flush the directory entry of a rename to disk (a no-op where unsupported)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except OSError:
        return  # e.g. Windows, where directories cannot be opened
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_archive(path: str, n_items: int) -> dict[str, Any]:
    """The members of a pool archive, after checking its directory (names, sizes)."""
    with open(path, "rb") as fh:
        if not zipfile.is_zipfile(fh):
            raise ValueError("not a pool archive written by ActivePool.save (not a zip file).")
        fh.seek(0)
        with zipfile.ZipFile(fh) as zf:
            infos = {info.filename: info for info in zf.infolist()}
            expected = {f"{k}.npy" for k in _STATE_KEYS}
            extra = sorted(set(infos) - expected)
            if extra:
                raise ValueError(f"not a pool archive: unexpected member(s) {extra}.")
            missing = sorted(k for k in _STATE_KEYS if f"{k}.npy" not in infos)
            if missing:
                raise ValueError(f"not a pool archive: member(s) {missing} are missing.")
            for key in _STATE_KEYS:
                info = infos[f"{key}.npy"]
                rows = n_items if key in ("labeled_round", "labels", "has_label") else 1
                limit = _NPY_HEADER_BYTES + 8 * rows
                if info.file_size > limit:
                    raise ValueError(
                        f"corrupt pool archive: member {info.filename!r} holds "
                        f"{info.file_size} bytes, larger than a state of {n_items} items "
                        f"can be ({limit})."
                    )
            state: dict[str, Any] = {}
            for key in _STATE_KEYS:
                with zf.open(infos[f"{key}.npy"]) as member:
                    state[key] = np.lib.format.read_array(member, allow_pickle=False)
    return state


def _state_int(state: dict[str, Any], key: str) -> int:
    """``state[key]`` as an int: a Python/NumPy int or a 0-d integer array or tensor."""
    value = state[key]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"Expected state['{key}'] to be an integer, but got {type(value).__name__} ({value!r})."
        )
    return int(value)


def _state_array(state: dict[str, Any], key: str, n: int, *, integer: bool) -> np.ndarray:
    """``state[key]`` as a fresh int64 (``integer``) or bool array of shape ``(n,)``."""
    value = state[key]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(
            f"Expected state['{key}'] to be a NumPy array or a torch tensor, but got "
            f"{type(value).__name__}."
        )
    ok = (
        value.dtype != bool and np.issubdtype(value.dtype, np.integer)
        if integer
        else value.dtype == bool
    )
    if not ok:
        wanted = "an integer" if integer else "a bool"
        raise TypeError(
            f"Expected state['{key}'] to have {wanted} dtype, but got dtype {value.dtype}."
        )
    if value.shape != (n,):
        raise ValueError(f"Expected state['{key}'] to have shape ({n},), but got {value.shape}.")
    return value.astype(np.int64 if integer else bool, copy=True)


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _check_state_contents(
    rounds: np.ndarray, labels: np.ndarray, has: np.ndarray, rnd: int
) -> None:
    """Raise ``ValueError`` unless the arrays form a state :meth:`ActivePool.label` can reach."""
    if rnd < 0:
        raise ValueError(f"Expected state['round'] to be >= 0, but got {rnd}.")
    below = rounds < _UNLABELED
    if below.any():
        i = _first(below)
        raise ValueError(
            f"Expected state['labeled_round'] to be >= -1, but item {i} has {rounds[i]}."
        )
    late = rounds >= rnd
    if late.any():
        i = _first(late)
        raise ValueError(
            f"Inconsistent state: state['round'] ({rnd}) must be greater than every labeled "
            f"round, but item {i} was labeled in round {rounds[i]}."
        )
    orphan = has & (rounds < 0)
    if orphan.any():
        raise ValueError(
            f"Expected state['has_label'] to be set on labeled items only, but it is set on "
            f"unlabeled item {_first(orphan)}."
        )
    bad = (has & (labels < 0)) | (~has & (labels != _UNLABELED))
    if bad.any():
        i = _first(bad)
        expected = "a label >= 0 (has_label is set)" if has[i] else "-1 (has_label is unset)"
        raise ValueError(
            f"Expected state['labels'] to hold {expected} for item {i}, but got {labels[i]}."
        )

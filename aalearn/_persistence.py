"""Pool state files: atomic ``.npz`` writes, and reads that check the archive before inflating it.

:meth:`ActivePool.save <aalearn.ActivePool.save>` and
:meth:`~aalearn.ActivePool.load` are thin wrappers over :func:`write_atomically` and
:func:`read_archive`; the contents of a state are checked by :mod:`aalearn._pool_state`.
"""

from __future__ import annotations

import os
import stat
import zipfile
from typing import Any

import numpy as np

from aalearn._pool_state import STATE_KEYS

__all__ = ["read_archive", "write_atomically"]

_TMP_SUFFIX = ".aalearn-tmp"
#: Largest ``.npy`` header :func:`numpy.save` writes for a 1-D array (format 1.0: 64-byte
#: aligned, usually 128 bytes), with room to spare.
_NPY_HEADER_BYTES = 4096


def write_atomically(path: str, arrays: dict[str, Any]) -> None:
    """Write ``arrays`` to ``path`` as an ``.npz`` archive, atomically (see ActivePool.save)."""
    directory, name = os.path.split(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"Cannot save the pool to {path!r}: the directory {directory!r} does not exist."
        )
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
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


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


def read_archive(path: str, n_items: int) -> dict[str, Any]:
    """The members of a pool archive, after checking its directory (names, sizes)."""
    with open(path, "rb") as fh:
        if not zipfile.is_zipfile(fh):
            raise ValueError("not a pool archive written by ActivePool.save (not a zip file).")
        fh.seek(0)
        with zipfile.ZipFile(fh) as zf:
            infos = {info.filename: info for info in zf.infolist()}
            expected = {f"{k}.npy" for k in STATE_KEYS}
            extra = sorted(set(infos) - expected)
            if extra:
                raise ValueError(f"not a pool archive: unexpected member(s) {extra}.")
            missing = sorted(k for k in STATE_KEYS if f"{k}.npy" not in infos)
            if missing:
                raise ValueError(f"not a pool archive: member(s) {missing} are missing.")
            for key in STATE_KEYS:
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
            for key in STATE_KEYS:
                with zf.open(infos[f"{key}.npy"]) as member:
                    state[key] = np.lib.format.read_array(member, allow_pickle=False)
    return state

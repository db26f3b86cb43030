"""Pool state files: atomic ``.npz`` writes, and reads that check the archive before inflating it.

:meth:`ActivePool.save <aalearn.ActivePool.save>` and
:meth:`~aalearn.ActivePool.load` are thin wrappers over :func:`write_atomically` and
:func:`read_archive`; the contents of a state are checked by :mod:`aalearn._pool_state`.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
import stat
import struct
import zipfile
from typing import IO, Any, BinaryIO, Optional

import numpy as np

from aalearn._pool_state import STATE_KEYS

__all__ = ["HISTORY_MAX_BYTES", "read_archive", "write_atomically"]

_TMP_SUFFIX = ".aalearn-tmp"
#: Random temporary names tried before giving up (each is 48 random bits).
_TMP_ATTEMPTS = 100
#: Largest ``.npy`` header :func:`numpy.save` writes for a 1-D array (format 1.0: 64-byte
#: aligned, usually 128 bytes), with room to spare.
_NPY_HEADER_BYTES = 4096
#: Room for the zip headers of six members (about 150 bytes each, zip64 included), the end
#: records and the longest archive comment (65,535 bytes).
_ZIP_OVERHEAD_BYTES = 1 << 17
#: Largest zip directory of a pool archive: seven members of about 100 bytes each, with
#: room to spare. Checked before :mod:`zipfile` parses it (one object per listed member).
_ZIP_DIRECTORY_BYTES = 4096
#: The signature and size of a zip's end-of-central-directory record.
_ZIP_END = b"PK\x05\x06"
_ZIP_END_BYTES = 22
#: General-purpose flag bit 0 of a zip member: encrypted.
_ZIP_ENCRYPTED = 0x1
#: The largest :class:`~aalearn.History` a pool archive holds (its optional ``history.npy``
#: member, JSON text as bytes): 16 MiB, some 50,000 cycles with a few metrics each.
HISTORY_MAX_BYTES = 1 << 24


def write_atomically(path: str, arrays: dict[str, Any]) -> None:
    """Write ``arrays`` to ``path`` as an ``.npz`` archive, atomically (see ActivePool.save)."""
    directory, name = os.path.split(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"Cannot save the pool to {path!r}: the directory {directory!r} does not exist."
        )
    _remove_stale_temporaries(directory, name)
    try:
        mode: Optional[int] = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    fd, tmp = _create_temporary(directory, name)
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode is not None and hasattr(os, "fchmod"):  # POSIX
                os.fchmod(fh.fileno(), mode)
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _temporary_prefix(name: str) -> str:
    """``.<digest of name>.``: short whatever the length of ``name`` (NAME_MAX is 255)."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()
    return f".{digest[:16]}."


def _create_temporary(directory: str, name: str) -> tuple[int, str]:
    """Create ``.<digest>.<pid>.<random>.aalearn-tmp`` in ``directory``, exclusively.

    ``O_EXCL`` (and ``O_NOFOLLOW`` where it exists): the file is new, never an existing
    file or the target of a link planted at its name; a taken name is retried. Mode
    ``0o666`` less the umask, as ``open`` gives.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    for extra in ("O_NOFOLLOW", "O_CLOEXEC", "O_BINARY"):
        flags |= getattr(os, extra, 0)
    prefix = f"{_temporary_prefix(name)}{os.getpid()}."
    for _ in range(_TMP_ATTEMPTS):
        tmp = os.path.join(directory, f"{prefix}{secrets.token_hex(6)}{_TMP_SUFFIX}")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(
        f"Cannot save the pool next to {name!r}: {_TMP_ATTEMPTS} temporary names in "
        f"{directory!r} were all taken."
    )


def _remove_stale_temporaries(directory: str, name: str) -> None:
    """Remove the temporaries of ``name`` whose writing process no longer runs.

    Both ``.<digest>.<pid>.<random>.aalearn-tmp`` and the ``.<name>.<pid>.aalearn-tmp``
    of earlier versions.
    """
    prefixes = (_temporary_prefix(name), f".{name}.")
    try:
        entries = os.listdir(directory)
    except OSError:
        return
    for entry in entries:
        if not entry.endswith(_TMP_SUFFIX):
            continue
        prefix = next((p for p in prefixes if entry.startswith(p)), None)
        if prefix is None:
            continue
        pid_text = entry[len(prefix) : -len(_TMP_SUFFIX)].split(".")[0]
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
    """The members of a pool archive of ``n_items`` items, each checked before it is read.

    In order, each before anything larger is read or allocated: ``path`` is a regular
    file (not a directory, device or FIFO, which are never read) no larger than such an
    archive can be; its zip directory holds exactly the state's members, each stored or
    deflated, unencrypted and no larger than a state of ``n_items`` items needs; each
    member's ``.npy`` header declares at most that many plain (not object) elements;
    then exactly the declared bytes are read. The one optional member, ``history.npy``
    (a saved :class:`~aalearn.History`), is returned as ``state["history"]``, a ``uint8``
    array of at most :data:`HISTORY_MAX_BYTES`.
    """
    rows = {k: n_items if k in ("labeled_round", "labels", "has_label") else 1 for k in STATE_KEYS}
    limits = {k: _NPY_HEADER_BYTES + 8 * r for k, r in rows.items()}
    rows["history"] = HISTORY_MAX_BYTES  # bytes: read with itemsize 1
    limits["history"] = _NPY_HEADER_BYTES + HISTORY_MAX_BYTES
    with _open_regular_file(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        most = sum(limits.values()) * 2 + _ZIP_OVERHEAD_BYTES  # x2: deflate's worst case
        if size > most:
            raise ValueError(
                f"not a pool archive: the file holds {size} bytes, more than an archive of "
                f"{n_items} items can ({most})."
            )
        if not zipfile.is_zipfile(fh):
            raise ValueError("not a pool archive written by ActivePool.save (not a zip file).")
        _check_zip_directory(fh, size)
        fh.seek(0)
        with zipfile.ZipFile(fh) as zf:
            infos = {info.filename: info for info in zf.infolist()}
            expected = {f"{k}.npy" for k in (*STATE_KEYS, "history")}
            extra = sorted(set(infos) - expected)
            if extra:
                raise ValueError(f"not a pool archive: unexpected member(s) {extra}.")
            missing = sorted(k for k in STATE_KEYS if f"{k}.npy" not in infos)
            if missing:
                raise ValueError(f"not a pool archive: member(s) {missing} are missing.")
            keys = [k for k in (*STATE_KEYS, "history") if f"{k}.npy" in infos]
            for key in keys:
                _check_member(infos[f"{key}.npy"], limits[key], n_items)
            state: dict[str, Any] = {}
            for key in keys:
                with zf.open(infos[f"{key}.npy"]) as member:
                    itemsize = 1 if key == "history" else 8
                    state[key] = _read_npy(member, f"{key}.npy", rows[key], n_items, itemsize)
    return state


def _check_zip_directory(fh: BinaryIO, size: int) -> None:
    """Refuse a zip whose directory lists more than a pool archive's members, unparsed.

    Read from the end record, found where :mod:`zipfile` finds it: the last 22 bytes,
    else the last signature in the tail (a comment follows it).
    """
    tail_bytes = min(size, _ZIP_END_BYTES + 0xFFFF)
    fh.seek(size - tail_bytes)
    tail = fh.read(tail_bytes)
    at = tail.rfind(_ZIP_END)
    if tail[-_ZIP_END_BYTES:].startswith(_ZIP_END):
        at = len(tail) - _ZIP_END_BYTES
    if at < 0 or len(tail) - at < _ZIP_END_BYTES:
        return  # zipfile.ZipFile refuses it
    entries, directory = struct.unpack("<HI", tail[at + 10 : at + 16])
    if entries > len(STATE_KEYS) + 1 or directory > _ZIP_DIRECTORY_BYTES:
        raise ValueError(
            f"not a pool archive: its zip directory lists {entries} members in {directory} "
            f"bytes; a pool archive lists at most {len(STATE_KEYS) + 1} (history included) "
            f"in {_ZIP_DIRECTORY_BYTES}."
        )


def _open_regular_file(path: str) -> BinaryIO:
    """``path`` opened for reading, if it is a regular file; never blocks on a FIFO."""
    flags = os.O_RDONLY
    for extra in ("O_NONBLOCK", "O_CLOEXEC", "O_BINARY"):
        flags |= getattr(os, extra, 0)
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:
        raise ValueError("not a regular file (a directory).") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a device, FIFO or socket"
            raise ValueError(f"not a regular file ({kind}); a pool archive is one.")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_member(info: zipfile.ZipInfo, limit: int, n_items: int) -> None:
    """Refuse a member that is larger than ``limit``, encrypted or compressed unusually."""
    if info.file_size > limit:
        raise ValueError(
            f"corrupt pool archive: member {info.filename!r} holds {info.file_size} bytes, "
            f"larger than a state of {n_items} items can be ({limit})."
        )
    if info.flag_bits & _ZIP_ENCRYPTED:
        raise ValueError(f"member {info.filename!r} is encrypted; a pool archive never is.")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ValueError(
            f"member {info.filename!r} uses compression method {info.compress_type}; a pool "
            f"archive is stored ({zipfile.ZIP_STORED}) or deflated ({zipfile.ZIP_DEFLATED})."
        )


def _read_npy(
    member: IO[bytes], name: str, rows: int, n_items: int, itemsize: int = 8
) -> np.ndarray:
    """The array in ``member``, its header checked before its data is read (no pickle).

    At most ``rows`` elements and ``itemsize * rows`` bytes.
    """
    fmt = np.lib.format
    version = fmt.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(member, max_header_size=_NPY_HEADER_BYTES)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(member, max_header_size=_NPY_HEADER_BYTES)
    else:
        raise ValueError(f"member {name!r} is a .npy of format {version}, not 1.0 or 2.0.")
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if dtype.hasobject or len(shape) > 1 or min(shape, default=0) < 0:
        raise ValueError(
            f"member {name!r} declares shape {shape} of dtype {dtype}; a pool state holds "
            "plain 0-d and 1-d arrays."
        )
    if count > rows or nbytes > itemsize * rows:
        raise ValueError(
            f"corrupt pool archive: member {name!r} declares shape {shape} of dtype {dtype} "
            f"({nbytes} bytes), more than a state of {n_items} items holds ({itemsize * rows})."
        )
    data = member.read(nbytes)
    if len(data) != nbytes:
        raise ValueError(
            f"corrupt pool archive: member {name!r} holds {len(data)} bytes of data, but its "
            f"header declares {nbytes}."
        )
    return np.frombuffer(data, dtype=dtype, count=count).reshape(shape)

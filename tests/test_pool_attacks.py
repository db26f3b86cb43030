"""ActivePool under the attacks of issue 22 (items 6, 12-15): the common indexing idiom,
planted links and long names in ``save``, copies and pickles, out-of-range rounds, and files
and tensors that are not what they claim to be."""

from __future__ import annotations

import copy
import io
import os
import pickle
import subprocess
import sys
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from aalearn import ActivePool

ROOT = str(Path(__file__).resolve().parents[1])


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a
    )


def labeled_pool(n: int = 10) -> ActivePool:
    pool = ActivePool(None, n_items=n)
    pool.label([1, 2], labels=[4, 0])
    pool.label([5])
    return pool


# ------------------------------------------------------------- item 6: the idiom
def test_indexing_a_tensor_with_the_pool_indices_does_not_warn():
    pool = labeled_pool()
    train_x = torch.arange(10.0) * 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labeled = train_x[pool.labeled_indices]
        unlabeled = train_x[pool.unlabeled_indices]
        as_tensor = torch.from_numpy(pool.labeled_indices)
    assert labeled.tolist() == [10.0, 20.0, 50.0]
    assert unlabeled.tolist() == [0.0, 30.0, 40.0, 60.0, 70.0, 80.0, 90.0]
    assert as_tensor.tolist() == [1, 2, 5]
    # torch warns once per process, so a warning raised earlier would hide it here: check
    # the cause too (torch warns on every non-writable array it is given)
    assert pool.labeled_indices.flags.writeable and pool.unlabeled_indices.flags.writeable


def test_writing_to_the_indices_a_pool_gave_out_leaves_the_pool_intact():
    pool = labeled_pool()
    lab, unl = pool.labeled_indices, pool.unlabeled_indices
    lab[:] = 0
    unl[:] = 9
    as_tensor = torch.from_numpy(pool.labeled_indices)
    as_tensor[0] = 7
    assert pool.labeled_indices.tolist() == [1, 2, 5]
    assert pool.unlabeled_indices.tolist() == [0, 3, 4, 6, 7, 8, 9]
    assert pool.labeled_mask.nonzero()[0].tolist() == [1, 2, 5]
    pool.label([3])  # the pool's own checks still see the true state
    assert pool.labeled_indices.tolist() == [1, 2, 3, 5]
    assert pool.n_labeled == 4 and pool.n_unlabeled == 6


# --------------------------------------------- item 12: links and long names in save
def test_save_never_writes_through_a_link_planted_at_its_temporary(tmp_path, monkeypatch):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    target = tmp_path / "pool.npz"
    # the temporary name of earlier versions was predictable: plant a link there ...
    (tmp_path / f".pool.npz.{os.getpid()}.aalearn-tmp").symlink_to(victim)
    # ... and, racing the save, at whatever name it is about to create
    real_open, created = os.open, []

    def racing_open(file, flags, *args, **kwargs):
        file = os.fspath(file)
        if flags & os.O_CREAT and os.path.dirname(file) == str(tmp_path):
            created.append(flags)
            if not os.path.lexists(file) and len(created) == 1:
                os.symlink(victim, file)
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", racing_open)
    pool = labeled_pool()
    pool.save(target)
    monkeypatch.undo()
    assert victim.read_bytes() == b"precious"
    assert not target.is_symlink() and target.is_file()
    restored = ActivePool(None, n_items=10)
    restored.load(target)
    assert same(restored.state_dict(), pool.state_dict())
    assert created and all(flags & os.O_EXCL for flags in created)
    if hasattr(os, "O_NOFOLLOW"):
        assert all(flags & os.O_NOFOLLOW for flags in created)


def test_save_accepts_the_longest_legal_file_names(tmp_path):
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    for length in sorted({244, name_max}):
        target = tmp_path / ("p" * (length - 4) + ".npz")
        pool = labeled_pool()
        pool.save(target)
        pool.label([0])
        pool.save(target)  # replacing it too
        restored = ActivePool(None, n_items=10)
        restored.load(target)
        assert same(restored.state_dict(), pool.state_dict())
    assert len(os.listdir(tmp_path)) == len({244, name_max})


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_the_temporary_of_a_save_killed_before_its_rename_is_removed_by_the_next(tmp_path):
    target = tmp_path / "pool.npz"
    pool = labeled_pool()
    pid = os.fork()
    if pid == 0:  # the child dies between writing its temporary and renaming it
        try:
            os.replace = lambda *args: os._exit(0)
            pool.save(target)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert len(os.listdir(tmp_path)) == 1 and not target.exists()  # its temporary
    pool.save(target)
    assert os.listdir(tmp_path) == ["pool.npz"]


# ------------------------------------------------------- item 13: copies and pickles
def _copies(pool):
    return {
        "deepcopy": copy.deepcopy(pool),
        "pickle": pickle.loads(pickle.dumps(pool)),
        "copy": copy.copy(pool),
    }


@pytest.mark.parametrize("how", ["deepcopy", "pickle", "copy"])
def test_a_copied_pool_cannot_be_corrupted_through_its_views(how):
    data = TensorDataset(torch.arange(10.0), torch.zeros(10, dtype=torch.long))
    pool = ActivePool(data)
    pool.label([1, 2], labels=[4, 0])
    pool.label([5])
    before = pool.state_dict()
    clone = _copies(pool)[how]
    assert same(clone.state_dict(), before)
    for view in (clone.labeled_dataset(), clone.unlabeled_dataset()):
        with pytest.raises(ValueError, match="read-only"):
            view.indices[0] = 7
    assert clone.labeled_indices.tolist() == [1, 2, 5]
    assert clone.unlabeled_indices.tolist() == [0, 3, 4, 6, 7, 8, 9]
    assert [clone.labeled_dataset()[i][0].item() for i in range(3)] == [1.0, 2.0, 5.0]
    # the copy is its own pool: labeling it leaves the original as it was
    clone.label([3], labels=[2])
    assert clone.labeled_indices.tolist() == [1, 2, 3, 5] and clone.round == 3
    assert same(pool.state_dict(), before)
    assert pool.labeled_indices.tolist() == [1, 2, 5]


# ------------------------------------------------------ item 14: rounds out of range
def state_of(pool: ActivePool) -> dict:
    return {k: np.asarray(v) if np.ndim(v) else v for k, v in pool.state_dict().items()}


U64_MAX = 2**64 - 1


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("round", 2**70, str(2**70)),
        ("round", U64_MAX, str(U64_MAX)),
        ("round", np.uint64(U64_MAX), str(U64_MAX)),
        ("round", np.array(U64_MAX, dtype=np.uint64), str(U64_MAX)),
        ("round", 2**63, str(2**63)),
        # a uint64 round of an item that would wrap to -1 (unlabeled) in int64
        ("labeled_round", None, str(U64_MAX)),
    ],
)
def test_rounds_beyond_int64_are_refused_as_stored(key, value, shown):
    state = state_of(labeled_pool())
    if key == "labeled_round":
        value = state["labeled_round"].astype(np.uint64)
        value[5] = U64_MAX  # item 5 is labeled in round 1; as int64 this would be -1
    state[key] = value
    pool = ActivePool(None, n_items=10)
    pool.label([7])
    before = pool.state_dict()
    with pytest.raises(ValueError, match=rf"state\['{key}'\].*{shown}") as info:
        pool.load_state_dict(state)
    assert "-1." not in str(info.value)
    assert same(pool.state_dict(), before)


def test_labels_beyond_int64_are_refused_as_stored():
    full = ActivePool(None, n_items=10)
    full.label(range(10), labels=[3] * 10)  # every label known: a uint64 array can hold them
    state = state_of(full)
    state["labels"] = state["labels"].astype(np.uint64)
    state["labels"][1] = U64_MAX  # as int64 it would read -1
    pool = ActivePool(None, n_items=10)
    with pytest.raises(ValueError, match=rf"state\['labels'\].*item 1 has {U64_MAX}\."):
        pool.load_state_dict(state)
    with pytest.raises(ValueError, match=rf"`labels`.*{U64_MAX}"):
        pool.label([0], labels=np.array([U64_MAX], dtype=np.uint64))
    assert pool.n_labeled == 0 and pool.round == 0


def test_a_file_with_a_uint64_round_is_refused_as_stored(tmp_path):
    state = state_of(labeled_pool())
    state["round"] = np.uint64(U64_MAX)
    np.savez(tmp_path / "p.npz", **{k: np.asarray(v) for k, v in state.items()})
    pool = ActivePool(None, n_items=10)
    with pytest.raises(ValueError, match=rf"p.npz.*state\['round'\].*{U64_MAX}"):
        pool.load(tmp_path / "p.npz")
    assert pool.round == 0


def test_the_last_round_loads_saves_and_refuses_to_overflow(tmp_path):
    last = np.iinfo(np.int64).max
    state = state_of(labeled_pool())
    state["round"] = last
    state["labeled_round"][5] = last - 1
    pool = ActivePool(None, n_items=10)
    pool.load_state_dict(state)
    assert pool.round == last and pool.labeled_round[5] == last - 1
    before = pool.state_dict()
    with pytest.raises(ValueError, match=rf"round.*{last}"):
        pool.label([0])
    assert same(pool.state_dict(), before)
    pool.label([])  # an empty call is not a round, and is fine
    pool.save(tmp_path / "p.npz")
    restored = ActivePool(None, n_items=10)
    restored.load(tmp_path / "p.npz")
    assert same(restored.state_dict(), before)


# ------------------------------------- item 15: files and tensors that are not states
_NOT_REGULAR_SCRIPT = """
import os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))  # a runaway read dies here
from aalearn import ActivePool
for path in sys.argv[1:]:
    pool = ActivePool(None, n_items=10)
    pool.label([7])
    try:
        pool.load(path)
        print(path, "loaded")
    except ValueError as err:
        ok = path in str(err) and "not a regular file" in str(err) and pool.n_labeled == 1
        print(path, "ValueError", ok)
    except BaseException as err:
        print(path, type(err).__name__)
    sys.stdout.flush()
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"), reason="POSIX")
def test_load_refuses_directories_devices_and_fifos_without_reading_them(tmp_path):
    fifo = tmp_path / "pool.fifo"
    os.mkfifo(fifo)
    paths = [str(tmp_path), "/dev/zero", str(fifo)]
    # in a child with a memory limit and a timeout: a load that reads /dev/zero without end
    # or blocks on the FIFO must not take the test machine with it
    try:
        out = subprocess.run(
            [sys.executable, "-c", _NOT_REGULAR_SCRIPT, *paths],
            capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": ROOT},
        )  # fmt: skip
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"load blocked or read without end: {err.stdout!r}")
    assert out.stdout.splitlines() == [f"{p} ValueError True" for p in paths], out.stderr


def _members(state: dict) -> dict[str, bytes]:
    return {f"{k}.npy": _npy(np.asarray(v)) for k, v in state.items()}


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _npy_declaring(shape: tuple, descr: str, data: bytes) -> bytes:
    """A ``.npy`` member whose header declares ``shape`` and ``descr``, followed by ``data``."""
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + data


def _write_zip(path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)


@pytest.mark.parametrize(
    ("shape", "descr"),
    [
        ((10**15,), "<i8"),  # MemoryError before: NumPy allocates the declared shape first
        ((10**8,), "<i8"),  # 800 MB allocated before the read found the data missing
        ((10,), "<U100000"),  # 4 MB of a dtype no state has
        ((-3,), "<i8"),
        ((2, 5), "<i8"),
        ((10,), "|O"),  # objects: would need pickle
    ],
)
def test_load_checks_the_declared_shape_before_allocating(tmp_path, shape, descr):
    members = _members(state_of(labeled_pool()))
    members["labels.npy"] = _npy_declaring(shape, descr, bytes(80))
    _write_zip(tmp_path / "p.npz", members)
    pool = ActivePool(None, n_items=10)
    pool.label([7])
    before = pool.state_dict()
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"p.npz.*labels.npy"):
            pool.load(tmp_path / "p.npz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak  # a valid file of this pool needs a few KiB
    assert same(pool.state_dict(), before)


def _patch_member_headers(path, name: str, *, method=None, flag=None) -> None:
    """Set the compression method or a flag bit of ``name`` in its local and central headers."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        local = zf.getinfo(name).header_offset
    central = data.index(b"PK\x01\x02")
    while data[central + 46 : central + 46 + len(name)] != name.encode():
        central = data.index(b"PK\x01\x02", central + 4)
    for offset, method_at, flag_at in ((local, 8, 6), (central, 10, 8)):
        if method is not None:
            data[offset + method_at : offset + method_at + 2] = method.to_bytes(2, "little")
        if flag is not None:
            old = int.from_bytes(data[offset + flag_at : offset + flag_at + 2], "little")
            data[offset + flag_at : offset + flag_at + 2] = (old | flag).to_bytes(2, "little")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"method": 77}, r"p.npz.*labels.npy.*compression method 77"),
        ({"method": zipfile.ZIP_BZIP2}, r"p.npz.*labels.npy.*compression method 12"),
        ({"flag": 0x1}, r"p.npz.*labels.npy.*encrypted"),
    ],
)
def test_load_refuses_unknown_compression_and_encryption_before_reading(tmp_path, patch, match):
    path = tmp_path / "p.npz"
    _write_zip(path, _members(state_of(labeled_pool())))
    _patch_member_headers(path, "labels.npy", **patch)
    pool = ActivePool(None, n_items=10)
    pool.label([7])
    before = pool.state_dict()
    with pytest.raises(ValueError, match=match):
        pool.load(path)
    assert same(pool.state_dict(), before)


def test_load_refuses_a_file_larger_than_a_pool_archive_can_be(tmp_path):
    path = tmp_path / "p.npz"
    labeled_pool().save(path)
    with open(path, "ab") as fh:  # a huge central directory would be parsed in full
        fh.truncate(1 << 30)  # sparse: no disk used
    pool = ActivePool(None, n_items=10)
    with pytest.raises(ValueError, match=r"p.npz.*1073741824 bytes"):
        pool.load(path)


def _meta(t: torch.Tensor) -> torch.Tensor:
    return torch.empty(t.shape, dtype=t.dtype, device="meta")


@pytest.mark.parametrize(
    ("key", "convert"),
    [
        ("labels", _meta),
        ("labeled_round", _meta),
        ("round", lambda t: torch.empty((), dtype=torch.int64, device="meta")),
        ("labels", lambda t: t.to_sparse()),
        ("has_label", lambda t: t.to_sparse()),
        ("labels", lambda t: t.to(torch.bfloat16)),
        ("round", lambda t: torch.tensor(2).to_sparse()),
    ],
)
def test_load_state_dict_names_tensors_that_hold_no_plain_data(key, convert):
    state = labeled_pool().state_dict()
    value = state[key]
    state[key] = convert(value if isinstance(value, torch.Tensor) else torch.tensor(value))
    pool = ActivePool(None, n_items=10)
    pool.label([7])
    before = pool.state_dict()
    with pytest.raises((TypeError, ValueError), match=rf"state\['{key}'\]"):
        pool.load_state_dict(state)
    assert same(pool.state_dict(), before)

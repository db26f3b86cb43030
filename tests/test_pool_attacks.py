"""ActivePool under the attacks of issue 22 (items 6, 12-15): the common indexing idiom,
planted links and long names in ``save``, copies and pickles, out-of-range rounds, and files
and tensors that are not what they claim to be."""

from __future__ import annotations

import copy
import os
import pickle
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from aalearn import ActivePool


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

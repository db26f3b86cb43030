"""ActivePool state: contents validated all-or-nothing, files checked before inflating, saves
that survive kill -9 (issue 12)."""

from __future__ import annotations

import io
import os
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aalearn import ActivePool


def make_state(n: int = 10) -> dict:
    pool = ActivePool(None, n_items=n)
    pool.label([1, 2], labels=[4, 0])
    pool.label([5])
    # as NumPy arrays, whether state_dict() gives arrays or tensors
    return {k: np.asarray(v) if np.ndim(v) else v for k, v in pool.state_dict().items()}


def fresh(n: int = 10) -> ActivePool:
    pool = ActivePool(None, n_items=n)
    pool.label([7])
    return pool


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a
    )


def _set(key, index, value):
    def mutate(state):
        arr = np.array(state[key])
        arr[index] = value
        state[key] = arr

    return mutate


# ------------------------------------------------------------ load_state_dict
BAD_VALUES = [
    # a label of -5 on an item labeled with an oracle label: training would read target -5
    (_set("labels", 1, -5), r"state\['labels'\].*item 1.*-5"),
    # has_label on an item without a label (item 5 is labeled, with the dataset's target)
    (_set("has_label", 5, True), r"state\['labels'\].*item 5.*-1"),
    # has_label on an unlabeled item
    (_set("has_label", 3, True), r"state\['has_label'\].*unlabeled item 3"),
    # a label on an item without has_label
    (_set("labels", 0, 3), r"state\['labels'\].*item 0.*3"),
    (_set("labeled_round", 0, -2), r"state\['labeled_round'\].*-2"),
    (_set("labeled_round", 0, 2), r"state\['round'\]"),
    (lambda s: s.update(round=-1), r"state\['round'\]"),
]

BAD_TYPES = [
    # a float labeled_round: -0.9 would truncate to 0 and label the item
    (
        lambda s: s.update(labeled_round=np.where(s["labeled_round"] < 0, -0.9, 0.0)),
        "labeled_round",
    ),
    (lambda s: s.update(labels=np.where(np.arange(10) == 1, np.nan, -1.0)), "labels"),
    (lambda s: s.update(has_label=s["has_label"].astype(np.int64)), "has_label"),
    (lambda s: s.update(labels=s["labels"].astype(bool)), "labels"),
    (lambda s: s.update(n_items=10.0), "n_items"),
    (lambda s: s.update(n_items=20.9), "n_items"),
    (lambda s: s.update(round=2.0), "round"),
    (lambda s: s.update(version=True), "version"),
    (lambda s: s.update(labels=s["labels"].astype(str)), "labels"),
    (lambda s: s.update(labels=list(s["labels"])), "labels"),
]


@pytest.mark.parametrize(("mutate", "match"), BAD_VALUES)
def test_load_state_dict_rejects_bad_contents(mutate, match):
    state = make_state()
    mutate(state)
    pool = fresh()
    before = pool.state_dict()
    with pytest.raises(ValueError, match=match):
        pool.load_state_dict(state)
    assert same(before, pool.state_dict())


@pytest.mark.parametrize(("mutate", "key"), BAD_TYPES)
def test_load_state_dict_rejects_wrong_dtypes(mutate, key):
    state = make_state()
    mutate(state)
    pool = fresh()
    before = pool.state_dict()
    with pytest.raises(TypeError, match=rf"state\['{key}'\]"):
        pool.load_state_dict(state)
    assert same(before, pool.state_dict())


def test_load_state_dict_accepts_numpy_and_torch_integers():
    state = make_state()
    variants = [
        state,
        {k: torch.as_tensor(v) for k, v in state.items()},  # what torch.load gives back
        {k: (np.int32(v) if np.ndim(v) == 0 else np.asarray(v)) for k, v in state.items()},
        {
            **state,
            "labeled_round": state["labeled_round"].astype(np.int32),
            "labels": state["labels"].astype(np.int16),
        },
    ]
    for variant in variants:
        pool = fresh()
        pool.load_state_dict(variant)
        assert same(pool.state_dict(), state)
        assert pool.labels().tolist() == [4, 0, -1]


# ------------------------------------------------------------------- load
def test_load_names_the_file_for_files_that_are_not_pool_archives(tmp_path):
    good = tmp_path / "pool.npz"
    ActivePool(None, n_items=10).save(good)
    data = good.read_bytes()
    cases = {
        "empty.npz": b"",
        "truncated.npz": data[: len(data) // 2],
        "tail-cut.npz": data[:-10],
        "garbage.npz": b"not an archive at all" * 10,
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    np.save(tmp_path / "array.npy", np.arange(10))
    cases["array.npy"] = b""
    for name in cases:
        pool = fresh()
        before = pool.state_dict()
        with pytest.raises(ValueError, match=rf"{name}.*not a pool archive|{name}.*corrupt"):
            pool.load(tmp_path / name)
        assert same(before, pool.state_dict()), name
    with pytest.raises(FileNotFoundError):
        fresh().load(tmp_path / "missing.npz")


def _archive(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_load_checks_members_before_inflating_them(tmp_path, monkeypatch):
    state = make_state()
    members = {f"{k}.npy": _npy(np.asarray(v)) for k, v in state.items()}
    # an extra member (a 50 MB bomb that deflates to a few KiB) is refused unread
    _archive(tmp_path / "extra.npz", {**members, "bomb.npy": bytes(50_000_000)})
    big = {**members, "labels.npy": _npy(np.zeros(10_000_000, dtype=np.int64))}
    _archive(tmp_path / "big.npz", big)
    missing = dict(members)
    del missing["round.npy"]
    _archive(tmp_path / "missing.npz", missing)
    _archive(tmp_path / "ok.npz", members)
    read = []
    original = zipfile.ZipFile.open

    def spy(self, name, *args, **kwargs):
        read.append(getattr(name, "filename", name))
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    with pytest.raises(ValueError, match=r"extra.npz.*unexpected member.*bomb.npy"):
        fresh().load(tmp_path / "extra.npz")
    assert read == []
    # a member far larger than a pool of 10 items needs is refused unread
    with pytest.raises(ValueError, match=r"big.npz.*labels.npy.*larger than"):
        fresh().load(tmp_path / "big.npz")
    assert read == []
    with pytest.raises(ValueError, match=r"missing.npz.*round"):
        fresh().load(tmp_path / "missing.npz")
    # a well-formed compressed archive written by hand still loads
    pool = fresh()
    pool.load(tmp_path / "ok.npz")
    assert same(pool.state_dict(), state)


def test_load_names_the_file_for_bad_contents(tmp_path):
    state = make_state()
    state["labeled_round"] = state["labeled_round"].astype(np.float64)
    np.savez(tmp_path / "float.npz", **{k: np.asarray(v) for k, v in state.items()})
    with pytest.raises(ValueError, match=r"float.npz.*labeled_round"):
        fresh().load(tmp_path / "float.npz")


# ------------------------------------------------------------------- save
def test_save_follows_the_umask_and_keeps_an_existing_mode(tmp_path):
    pool = fresh()
    old = os.umask(0o022)
    try:
        pool.save(tmp_path / "a.npz")
        assert stat.S_IMODE(os.stat(tmp_path / "a.npz").st_mode) == 0o644
        os.umask(0o077)
        pool.save(tmp_path / "b.npz")
        assert stat.S_IMODE(os.stat(tmp_path / "b.npz").st_mode) == 0o600
        os.chmod(tmp_path / "a.npz", 0o640)
        pool.save(tmp_path / "a.npz")  # replacing keeps the existing file's mode
        assert stat.S_IMODE(os.stat(tmp_path / "a.npz").st_mode) == 0o640
    finally:
        os.umask(old)


def test_save_fsyncs_the_directory_after_the_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode)))
        real_fsync(fd)

    def replace(a, b):
        calls.append(("replace", None))
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    fresh().save(tmp_path / "p.npz")
    assert calls == [("fsync", False), ("replace", None), ("fsync", True)]


def test_save_into_a_missing_directory_names_the_path(tmp_path):
    target = tmp_path / "nope" / "pool.npz"
    with pytest.raises(FileNotFoundError, match=r"nope/pool.npz"):
        fresh().save(target)


def test_save_cleans_the_temporary_of_a_killed_save(tmp_path):
    # what a kill -9 during a save leaves: a temporary of a process that no longer exists
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stray = tmp_path / f".pool.npz.{int(dead.stdout)}.aalearn-tmp"
    stray.write_bytes(b"half")
    other = tmp_path / f".other.npz.{int(dead.stdout)}.aalearn-tmp"  # another target's: kept
    other.write_bytes(b"half")
    fresh().save(tmp_path / "pool.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "pool.npz"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_kill_9_during_a_loop_of_saves_leaves_a_loadable_file(tmp_path):
    target = tmp_path / "pool.npz"
    pool = ActivePool(None, n_items=300_000)
    pool.label(range(0, 300_000, 3))
    pool.save(target)
    rng = np.random.default_rng(0)
    kills = 0
    for _ in range(12):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child saves in a loop until killed (NumPy only, no torch op)
            try:
                os.close(read)
                os.write(write, b"r")
                while True:
                    pool.save(target)
            finally:
                os._exit(1)
        os.close(write)
        assert os.read(read, 1) == b"r"
        os.close(read)
        time.sleep(float(rng.uniform(0.0, 0.05)))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        kills += os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        restored = ActivePool(None, n_items=300_000)
        restored.load(target)  # always a complete archive
        assert same(restored.state_dict(), pool.state_dict())
        strays = [p.name for p in tmp_path.iterdir() if p.name != "pool.npz"]
        assert len(strays) <= 1, strays
    assert kills == 12


# ------------------------------------------------------------ tampered states
@settings(max_examples=80, deadline=None)
@given(
    key=st.sampled_from(["labeled_round", "labels", "has_label"]),
    index=st.integers(0, 9),
    value=st.integers(-8, 8),
)
def test_tampered_states_load_only_when_consistent(key, index, value):
    state = make_state()
    arr = np.array(state[key])
    arr[index] = bool(value % 2) if key == "has_label" else value
    state[key] = arr
    pool = fresh()
    before = pool.state_dict()
    try:
        pool.load_state_dict(state)
    except ValueError:
        assert same(before, pool.state_dict())
        return
    # accepted: every invariant the pool relies on holds
    rounds, labels, has = pool.labeled_round, pool._labels, pool._has_label
    assert rounds.min() >= -1 and rounds.max() < pool.round
    assert ((labels >= 0) == has).all() and not has[rounds < 0].any()
    assert (pool.labels() >= -1).all()


def test_uint64_indices_are_reported_as_given():
    pool = ActivePool(None, n_items=10)
    big = np.array([3, 2**64 - 1], dtype=np.uint64)
    with pytest.raises(ValueError, match=r"\[0, 10\), but got 18446744073709551615"):
        pool.label(big)
    with pytest.raises(ValueError, match=r"\[0, 10\), but got 18446744073709551615"):
        pool.labels(big)
    pool.label(np.array([3, 4], dtype=np.uint64))
    assert pool.labeled_indices.tolist() == [3, 4]

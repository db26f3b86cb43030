"""ActivePool: invariants, errors (that change nothing), views and persistence."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, Subset, TensorDataset

from aalearn import ActivePool


def make_pool(n: int = 20) -> ActivePool:
    data = TensorDataset(torch.arange(n, dtype=torch.float32).unsqueeze(1), torch.arange(n) % 3)
    return ActivePool(data)


def snapshot(pool: ActivePool) -> dict:
    return pool.state_dict()


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))


def test_initial_state():
    pool = make_pool(7)
    assert len(pool) == 7 and pool.n_items == 7
    assert pool.n_labeled == 0 and pool.n_unlabeled == 7
    np.testing.assert_array_equal(pool.unlabeled_indices, np.arange(7))
    assert pool.labeled_indices.dtype == np.int64 and pool.unlabeled_indices.dtype == np.int64
    assert repr(pool) == "ActivePool(n_items=7, n_labeled=0, n_unlabeled=7, round=0)"


def test_label_moves_indices_and_records_round():
    pool = make_pool(10)
    pool.label([7, 2])
    pool.label(np.array([5]), labels=[1])
    np.testing.assert_array_equal(pool.labeled_indices, [2, 5, 7])
    np.testing.assert_array_equal(pool.unlabeled_indices, [0, 1, 3, 4, 6, 8, 9])
    expected_round = np.full(10, -1)
    expected_round[[7, 2]] = 0
    expected_round[5] = 1
    np.testing.assert_array_equal(pool.labeled_round, expected_round)
    np.testing.assert_array_equal(pool.labels(), [-1, 1, -1])
    assert pool.round == 2


def test_index_arrays_are_copies_that_cannot_change_the_pool():
    # They were read-only views (issue 22 item 6: torch warns on those); now copies.
    pool = make_pool(5)
    pool.unlabeled_indices[0] = 3
    assert pool.unlabeled_indices.tolist() == [0, 1, 2, 3, 4]


def test_label_accepts_tensor_and_empty():
    pool = make_pool(5)
    pool.label(torch.tensor([1, 3]))
    pool.label([])
    np.testing.assert_array_equal(pool.labeled_indices, [1, 3])
    assert pool.round == 1  # an empty call is not a round


@pytest.mark.parametrize(
    ("indices", "labels", "exc", "match"),
    [
        ([3, 3], None, ValueError, r"`indices` to hold unique indices, but index 3 appears"),
        ([20], None, ValueError, r"`indices` to hold indices in \[0, 20\), but got 20"),
        ([-1], None, ValueError, r"`indices` to hold indices in \[0, 20\), but got -1"),
        ([1], None, ValueError, r"but index 1 is already labeled"),
        ([4, 5], [1], ValueError, r"`labels` to be 1-D with one label per index \(2\)"),
        ([4], [-2], ValueError, r"`labels` to be non-negative"),
        ([4], [0.5], TypeError, r"`labels` to hold integer class labels"),
        ([1.5], None, TypeError, r"`indices` to hold integer dataset indices"),
        (5, None, ValueError, r"`indices` to be a 1-D sequence"),
        ([[1, 2]], None, ValueError, r"`indices` to be a 1-D sequence .* shape \(1, 2\)"),
    ],
)
def test_label_errors_change_nothing(indices, labels, exc, match):
    pool = make_pool(20)
    pool.label([1, 2], labels=[0, 1])
    before = snapshot(pool)
    with pytest.raises(exc, match=match):
        pool.label(indices, labels=labels)
    assert_same_state(before, snapshot(pool))


def test_random_unlabeled_is_seeded_and_valid():
    pool = make_pool(50)
    pool.label(np.arange(10))
    a = pool.random_unlabeled(8, random_state=3)
    b = pool.random_unlabeled(8, random_state=3)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.int64 and np.unique(a).size == 8
    assert not pool.labeled_mask[a].any()
    gen = np.random.default_rng(0)
    c, d = pool.random_unlabeled(8, random_state=gen), pool.random_unlabeled(8, random_state=gen)
    assert not np.array_equal(c, d)  # a shared Generator advances


def test_random_unlabeled_does_not_touch_global_rng():
    pool = make_pool(50)
    np.random.seed(0)
    expected = np.random.rand()
    np.random.seed(0)
    pool.random_unlabeled(5, random_state=1)
    assert np.random.rand() == expected


@pytest.mark.parametrize(
    ("n", "exc", "match"),
    [
        (-1, ValueError, r"`n` to be >= 0, but got -1"),
        (51, ValueError, r"`n` to be at most the number of unlabeled items \(50\), but got 51"),
        (2.0, TypeError, r"`n` to be an integer"),
        (True, TypeError, r"`n` to be an integer"),
    ],
)
def test_random_unlabeled_errors(n, exc, match):
    pool = make_pool(50)
    with pytest.raises(exc, match=match):
        pool.random_unlabeled(n, random_state=0)


def test_random_state_errors():
    pool = make_pool(5)
    with pytest.raises(TypeError, match="`random_state` to be None, an int"):
        pool.random_unlabeled(1, random_state="x")
    with pytest.raises(ValueError, match="`random_state` to be a non-negative"):
        pool.random_unlabeled(1, random_state=-3)


def test_views_return_dataset_items_and_oracle_labels():
    pool = make_pool(6)
    pool.label([4, 1])
    pool.label([3], labels=[2])
    view = pool.labeled_dataset()
    assert len(view) == 3
    x, y = view[0]  # index 1, dataset label 1 % 3
    assert float(x) == 1.0 and int(y) == 1
    x, y = view[1]  # index 3, oracle label 2 (dataset says 0)
    assert float(x) == 3.0 and y == 2
    un = pool.unlabeled_dataset()
    assert [float(un[i][0]) for i in range(len(un))] == [0.0, 2.0, 5.0]
    batch = next(iter(DataLoader(view, batch_size=3)))
    assert batch[1].tolist() == [1, 2, 1]


def test_view_wraps_non_tuple_items_with_oracle_labels():
    pool = ActivePool(torch.arange(5.0).unsqueeze(1))  # a tensor is a map-style dataset
    pool.label([2], labels=[7])
    x, y = pool.labeled_dataset()[0]
    assert float(x) == 2.0 and y == 7


def test_constructor_errors():
    with pytest.raises(TypeError, match="`dataset` to be a map-style dataset"):
        ActivePool(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`n_items` when `dataset` is None"):
        ActivePool(None)
    with pytest.raises(ValueError, match=r"`n_items` to equal len\(dataset\)=3"):
        ActivePool(torch.zeros(3, 1), n_items=4)
    pool = ActivePool(None, n_items=4)
    with pytest.raises(ValueError, match="no dataset"):
        pool.labeled_dataset()


def test_state_dict_round_trip():
    pool = make_pool(30)
    pool.label([1, 5, 9], labels=[0, 2, 1])
    pool.label([0])
    other = make_pool(30)
    other.load_state_dict(pool.state_dict())
    assert_same_state(pool.state_dict(), other.state_dict())
    np.testing.assert_array_equal(other.labeled_indices, [0, 1, 5, 9])
    assert other.round == 2


def test_save_load_round_trip(tmp_path):
    pool = make_pool(30)
    pool.label([1, 5, 9], labels=[0, 2, 1])
    path = tmp_path / "pool.npz"
    pool.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["pool.npz"]  # no temp file left
    other = make_pool(30)
    other.load(path)
    assert_same_state(pool.state_dict(), other.state_dict())
    # the file holds plain arrays: it loads with pickling disabled
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == sorted(pool.state_dict())


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    pool = make_pool(10)
    path = tmp_path / "pool.npz"
    pool.save(path)
    before = path.read_bytes()
    pool.label([3])

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        pool.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["pool.npz"]


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda s: s.pop("labels"), r"to have keys \['labels'\]"),
        (lambda s: s.update(extra=1), r"Unexpected keys .*'extra'"),
        (lambda s: s.update(n_items=31), "pool of 31 items, but this pool has 30"),
        (lambda s: s.update(version=99), "Unsupported pool state version 99"),
        (
            lambda s: s.update(labels=np.zeros(3, dtype=np.int64)),
            r"state\['labels'\] to have shape",
        ),
        (lambda s: s.update(round=0), "Inconsistent state"),
    ],
)
def test_load_state_dict_rejects_bad_state_and_changes_nothing(mutate, match):
    src = make_pool(30)
    src.label([1, 2])
    state = src.state_dict()
    mutate(state)
    pool = make_pool(30)
    pool.label([7])
    before = snapshot(pool)
    with pytest.raises(ValueError, match=match):
        pool.load_state_dict(state)
    assert_same_state(before, snapshot(pool))


def test_labeled_view_iterates_like_subset():
    pool = make_pool(40)
    pool.label(pool.random_unlabeled(15, random_state=0))
    ours = [b for b in DataLoader(pool.labeled_dataset(), batch_size=4)]
    ref = [b for b in DataLoader(Subset(pool.dataset, pool.labeled_indices.tolist()), batch_size=4)]
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a[0], b[0])
        torch.testing.assert_close(a[1], b[1])


def test_large_pool_is_vectorised():
    # 10 million items: construction, labeling and index queries are NumPy passes.
    pool = ActivePool(None, n_items=10_000_000)
    picked = pool.random_unlabeled(100_000, random_state=0)
    pool.label(picked)
    assert pool.n_labeled == 100_000
    assert pool.n_unlabeled == 9_900_000
    np.testing.assert_array_equal(pool.labeled_indices, np.sort(picked))


# --------------------------------------------------------------- properties
operations = st.lists(
    st.tuples(st.sampled_from(["label", "bad_label", "random"]), st.integers(0, 2**16)),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), ops=operations)
def test_invariants_under_random_operations(n, ops):
    pool = ActivePool(None, n_items=n)
    reference_labeled: set[int] = set()
    for op, seed in ops:
        rng = np.random.default_rng(seed)
        if op == "label" and pool.n_unlabeled:
            k = int(rng.integers(0, pool.n_unlabeled + 1))
            picked = pool.random_unlabeled(k, random_state=rng)
            pool.label(picked)
            reference_labeled.update(picked.tolist())
        elif op == "bad_label":
            before = pool.state_dict()
            bad = [int(rng.integers(n, n + 5))]
            if reference_labeled:
                bad = [sorted(reference_labeled)[0]]
            with pytest.raises(ValueError):
                pool.label(bad)
            assert_same_state(before, pool.state_dict())
        else:
            k = int(rng.integers(0, pool.n_unlabeled + 1))
            drawn = pool.random_unlabeled(k, random_state=seed)
            assert np.unique(drawn).size == k and not pool.labeled_mask[drawn].any()
        lab, unl = pool.labeled_indices, pool.unlabeled_indices
        assert lab.tolist() == sorted(reference_labeled)
        assert np.all(np.diff(lab) > 0) and np.all(np.diff(unl) > 0)
        assert lab.size + unl.size == n
        np.testing.assert_array_equal(np.union1d(lab, unl), np.arange(n))
        assert np.intersect1d(lab, unl).size == 0
        assert ((pool.labeled_round >= 0) == pool.labeled_mask).all()


def test_every_public_name_of_the_pool_module_is_still_importable_from_it():
    # issue 19 part 4 split the view and the persistence out of aalearn.pool
    import aalearn.pool as pool_module
    from aalearn import pool_subset

    assert pool_module.PoolSubset is pool_subset.PoolSubset
    assert pool_module.DEFAULT_LABEL_KEYS == ("label", "labels")
    assert {"ActivePool", "PoolSubset", "DEFAULT_LABEL_KEYS", "IndexLike"} <= set(
        pool_module.__all__
    )

"""ActivePool under the attacks of issue 22 (items 6, 12-15): the common indexing idiom,
planted links and long names in ``save``, copies and pickles, out-of-range rounds, and files
and tensors that are not what they claim to be."""

from __future__ import annotations

import warnings

import torch

from aalearn import ActivePool


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

"""BatchBALD: brute-force joint enumeration, batchbald_redux, the sampled joint, copies."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import aalearn
from aalearn.functional import bald, batchbald
from aalearn.functional.batchbald_greedy import _Joint

from .conftest import DEVICES, TinyNet, trained_model


def _mc_probs(n, k, c, seed, sharp=2.0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, c, generator=gen, dtype=torch.float64).mul(sharp).softmax(-1)


def _brute_force(p, k):
    """Greedy BatchBALD with the joint enumerated configuration by configuration."""
    p = p.numpy()
    n, _, n_classes = p.shape
    cond = -(p * np.log(p)).sum(2).mean(1)
    picks: list[int] = []
    for _ in range(k):
        best, best_i = -np.inf, -1
        for i in range(n):
            if i in picks:
                continue
            batch = [*picks, i]
            h = 0.0
            for ys in itertools.product(range(n_classes), repeat=len(batch)):
                joint = np.prod([p[j, :, y] for j, y in zip(batch, ys)], axis=0).mean()
                h -= joint * np.log(joint)
            mi = h - cond[batch].sum()
            if mi > best + 1e-12:
                best, best_i = mi, i
        picks.append(best_i)
    return picks


@pytest.mark.parametrize(("n", "k", "c", "budget"), [(7, 5, 3, 4), (9, 8, 2, 6), (5, 3, 4, 3)])
def test_equals_brute_force_enumeration(n, k, c, budget):
    p = _mc_probs(n, k, c, seed=n)
    assert batchbald(p, budget, num_samples=10**6).tolist() == _brute_force(p, budget)
    assert batchbald(p.float(), budget, num_samples=10**6).tolist() == _brute_force(p, budget)


@pytest.mark.slow
def test_equals_batchbald_redux_with_the_exact_joint():
    redux = pytest.importorskip(
        "batchbald_redux.batchbald",
        reason="the comparison with baal and batchbald-redux: pip install -e '.[dev,compare]' "
        "&& pip install --no-deps baal==2.1.0 batchbald-redux==2.0.5 (see README)",
    )
    p = _mc_probs(300, 10, 4, seed=0)
    # C^n <= num_samples for every n < 6: the joint stays exact in both
    expected = redux.get_batchbald_batch(p.log(), 6, num_samples=4**5, dtype=torch.float64)
    assert batchbald(p, 6, num_samples=4**5).tolist() == expected.indices


@pytest.mark.slow
def test_first_pick_is_bald_and_copies_are_skipped():
    # The joint MI is at most log K: once a batch has nearly told the K samples apart
    # every gain is ~0 and copies tie with the rest. K = 48 keeps 12 picks short of it.
    p = _mc_probs(30, 48, 5, seed=3)
    assert batchbald(p, 1).item() == int(bald(p).argmax())
    gen = torch.Generator().manual_seed(0)
    picks = batchbald(p.repeat(5, 1, 1), 12, num_samples=3000, generator=gen)
    assert len(set((picks % 30).tolist())) == 12


def test_sampled_joint_entropy_matches_the_exact_one():
    p = _mc_probs(8, 6, 3, seed=5)
    exact, sampled = _Joint(6, p.device), _Joint(6, p.device)
    picked = [p[0], p[1], p[2]]
    for q in picked:
        exact.add_exact(q)
    sampled.start_sampling(picked, 20000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(sampled.entropies(p[3:]), exact.entropies(p[3:]), atol=0.02, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_sampled_regime_is_deterministic_and_on_device(device):
    p = _mc_probs(60, 8, 3, seed=2).to(device)
    run = [
        batchbald(p, 10, num_samples=40, generator=torch.Generator(device).manual_seed(1))
        for _ in range(2)
    ]
    assert torch.equal(run[0], run[1]) and run[0].device.type == device
    assert len(set(run[0].tolist())) == 10


def test_max_candidates_keeps_the_top_bald_items():
    p = _mc_probs(100, 6, 3, seed=4)
    picks = batchbald(p, 5, max_candidates=12)
    top = set(aalearn.functional.topk_indices(bald(p), torch.arange(100), 12)[1].tolist())
    assert set(picks.tolist()) <= top
    with pytest.raises(ValueError, match=r"`k` to be at most the number of candidates \(12\)"):
        batchbald(p, 13, max_candidates=12)


def test_batchbald_validation():
    p = _mc_probs(5, 3, 2, seed=0)
    with pytest.raises(TypeError, match="`mc_probs` to be a torch.Tensor"):
        batchbald(p.numpy(), 2)
    with pytest.raises(
        ValueError, match=r"`mc_probs` to be a 3-D floating point tensor \(N, K, C\)"
    ):
        batchbald(p[:, 0], 2)
    with pytest.raises(ValueError, match="`num_samples` to be >= 1"):
        batchbald(p, 2, num_samples=0)
    with pytest.raises(TypeError, match="`generator` to be a torch.Generator"):
        batchbald(p, 2, generator=1)
    assert batchbald(p, 0).shape == (0,)


@pytest.fixture(scope="module")
def repeated(digits):
    """60 digits, each present 5 times (dataset index = copy * 60 + item)."""
    x, y = digits.tensors
    base = torch.arange(60) + 500
    data = torch.utils.data.TensorDataset(x[base].repeat(5, 1, 1, 1), y[base].repeat(5))
    model = trained_model(digits, np.arange(100), epochs=20)
    pool = aalearn.ActivePool(data)
    pool.label(np.arange(0, 300, 60))  # all copies of one item: samplers need a label
    return model, pool


def _sharp_model(digits):
    """TinyNet with dropout 0.5 fitted hard: sharp per-mask predictions that disagree.

    With soft per-mask predictions a copy is a second noisy look at the same
    unknown and BatchBALD rightly takes it; the copies argument of the paper
    holds when each mask's prediction is confident.
    """
    torch.manual_seed(0)
    model = TinyNet(dropout=0.5)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = digits.tensors[0][:100], digits.tensors[1][:100]
    model.train()
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


@pytest.mark.slow
def test_sampler_picks_no_two_copies(repeated, digits, one_thread):
    # The joint entropy is a Monte-Carlo estimate (1,000 configurations): its float
    # reductions, and so a near-tie among copies, depend on torch's thread count (with 2
    # threads on a loaded machine 8 of 10 picks were distinct): `one_thread` fixes it.
    _, pool = repeated
    model = _sharp_model(digits)
    sampler = aalearn.BatchBALDSampler(
        mc_samples=40, num_samples=1000, inference={"device": "cpu"}, random_state=0
    )
    picked = sampler.select(model, pool, 10)
    assert len(set((picked % 60).tolist())) >= 9
    top = aalearn.UncertaintySampler(
        "bald", mc_samples=40, inference={"device": "cpu"}, random_state=0
    )
    assert len(set((top.select(model, pool, 10) % 60).tolist())) <= 6


def test_sampler_needs_dropout(repeated):
    _, pool = repeated
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with pytest.raises(ValueError, match="needs MC dropout, but the model has no dropout layer"):
        aalearn.BatchBALDSampler(inference={"device": "cpu"}).select(model, pool, 3)

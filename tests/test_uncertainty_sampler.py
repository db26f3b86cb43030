"""UncertaintySampler against an independent NumPy computation on real digits."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import aalearn

from .conftest import DEVICES, trained_model


def numpy_scores(probs: np.ndarray, method: str) -> np.ndarray:
    p = probs.astype(np.float64)
    if method == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            return -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=1)
    s = np.sort(p, axis=1)
    if method == "margin":
        return -(s[:, -1] - s[:, -2])
    return 1.0 - s[:, -1]


@pytest.fixture(scope="module")
def setup(digits):
    pool = aalearn.ActivePool(digits)
    pool.label(pool.random_unlabeled(100, random_state=1))
    return trained_model(digits, pool.labeled_indices, epochs=25), pool


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["entropy", "margin", "least_confidence"])
def test_selection_is_the_top_k_of_independent_scores(setup, digits, method, device):
    model, pool = setup
    model = copy.deepcopy(model).to(device)
    sampler = aalearn.UncertaintySampler(method, inference={"batch_size": 128, "device": device})
    picked = sampler.select(model, pool, 50)
    model.eval()
    with torch.no_grad():
        x = digits.tensors[0][pool.unlabeled_indices.copy()].to(device)
        probs = model(x).softmax(-1).cpu().numpy()
    ref = numpy_scores(probs, method)
    # best first, ties by smaller index: a stable sort on -score over ascending indices
    order = np.argsort(-ref, kind="stable")
    expected = pool.unlabeled_indices[order[:50]]
    # float32 vs float64 can swap near-equal neighbours: compare the score sets
    got_scores = ref[np.searchsorted(pool.unlabeled_indices, picked)]
    np.testing.assert_allclose(np.sort(got_scores), np.sort(ref[order[:50]]), rtol=1e-5)
    assert len(np.intersect1d(picked, expected)) >= 48
    np.testing.assert_allclose(sampler.score(model, pool), ref, rtol=1e-4, atol=1e-6)


def test_bald_scores_match_numpy_mutual_information(setup, digits):
    model, pool = setup
    sampler = aalearn.UncertaintySampler(
        "bald", mc_samples=8, random_state=0, inference={"device": "cpu"}
    )
    idx = pool.unlabeled_indices[:40]
    scores = sampler.score(model, pool, idx)
    # Recompute with the same dropout masks: same seed, same order of RNG use.
    rng = np.random.default_rng(0)
    out = None
    with torch.random.fork_rng():
        torch.manual_seed(int(rng.integers(0, 2**63 - 1)))
        out = aalearn.collect(model, digits, idx, mc_samples=8, device="cpu", probs=False)
    p = out.mc_probs.double().numpy()
    mean = p.mean(1)
    h_mean = -(mean * np.log(np.clip(mean, 1e-300, None))).sum(-1)
    mean_h = -(p * np.log(np.clip(p, 1e-300, None))).sum(-1).mean(1)
    np.testing.assert_allclose(scores, h_mean - mean_h, rtol=1e-4, atol=1e-6)
    assert (scores >= -1e-6).all()


def test_bald_needs_dropout(digits):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    pool = aalearn.ActivePool(digits)
    pool.label([0])  # a model-based sampler refuses a pool with no label
    with pytest.raises(ValueError, match="method='bald' needs MC dropout"):
        aalearn.UncertaintySampler("bald", inference={"device": "cpu"}).select(model, pool, 3)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"method": "variance"}, ValueError, r"`method` to be one of \['entropy', 'margin'"),
        ({"mc_samples": 0}, ValueError, r"`mc_samples` to be >= 1, but got 0"),
        ({"inference": {"batch_size": 0}}, ValueError, r"`batch_size` to be >= 1, but got 0"),
        ({"inference": {"num_workers": -1}}, ValueError, r"`num_workers` to be >= 0"),
        ({"inference": {"device": 3}}, TypeError, r"`device` to be None, a str or a torch.device"),
        ({"random_state": "seed"}, TypeError, r"`random_state` to be None, an int"),
        ({"inference": {"input_fn": 5}}, TypeError, r"`input_fn` to be callable or None"),
    ],
)
def test_configuration_errors_raise_at_select_before_any_work(setup, kwargs, exc, match):
    model, pool = setup
    sampler = aalearn.UncertaintySampler(**kwargs)
    before = pool.state_dict()
    with pytest.raises(exc, match=match):
        sampler.select(model, pool, 3)
    assert pool.state_dict()["round"] == before["round"]


def test_repr_shows_non_default_configuration():
    assert repr(aalearn.UncertaintySampler()) == "UncertaintySampler()"
    assert (
        repr(aalearn.UncertaintySampler("bald", mc_samples=5, inference={"device": "cpu"}))
        == "UncertaintySampler(method='bald', mc_samples=5, inference={'device': 'cpu'})"
    )


def test_model_on_another_device_is_a_clear_error(setup):
    model, pool = setup
    before = pool.state_dict()
    sampler = aalearn.UncertaintySampler("entropy", inference={"device": "meta"})
    with pytest.raises(ValueError, match=r"Expected the model to be on `device` \(meta\)"):
        sampler.select(model, pool, 5)
    after = pool.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(np.asarray(before[key]), np.asarray(after[key]))

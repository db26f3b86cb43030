"""TypiClustSampler and ProbCoverSampler: the kernels' picks, delta, labels and real digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

import aalearn
from aalearn._validation import torch_generator
from aalearn.functional import probcover, probcover_delta, typiclust
from aalearn.testing import check_sampler

from .conftest import DEVICES

CPU = torch.device("cpu")


def _generators(seed: int, n: int) -> list[torch.Generator]:
    """The generators a sampler with ``random_state=seed`` hands its kernel, in order."""
    rng = np.random.default_rng(seed)
    return [torch_generator(rng, CPU) for _ in range(n)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("labeled", [0, 25])
def test_typiclust_sampler_picks_what_the_function_picks(digits, labeled, device):
    pool = aalearn.ActivePool(Subset(digits, range(600)))
    pool.label(np.arange(0, 600, 24)[:labeled])
    sampler = aalearn.TypiClustSampler(n_neighbors=10, device=device, random_state=7)
    picked = sampler.select(None, pool, 20)
    x = sampler.embed(pool)
    mask = torch.from_numpy(pool.labeled_mask).to(x.device)
    (g,) = _generators(7, 1)
    expected = typiclust(x, mask, 20, n_neighbors=10, generator=g).cpu().numpy()
    assert np.array_equal(picked, expected)
    # the function is not trivially reproducing itself: another seed clusters otherwise
    (other,) = _generators(8, 1)
    assert not np.array_equal(typiclust(x, mask, 20, n_neighbors=10, generator=other), expected)


@pytest.mark.parametrize("device", DEVICES)
def test_probcover_sampler_picks_what_the_function_picks(digits, device):
    x = digits.tensors[0][:500].flatten(1).numpy()
    pool = aalearn.ActivePool(None, n_items=500)
    pool.label([3, 40, 77])
    given = aalearn.ProbCoverSampler(x, delta=0.35, device=device, random_state=1)
    emb = given.embed(pool)
    mask = torch.from_numpy(pool.labeled_mask).to(emb.device)
    _, g_cover = _generators(1, 2)
    picked = given.select(None, pool, 15)
    assert np.array_equal(picked, probcover(emb, mask, 15, delta=0.35, generator=g_cover).cpu())
    assert given.delta_ == 0.35
    rule = aalearn.ProbCoverSampler(x, n_classes=10, device=device, random_state=1)
    picked = rule.select(None, pool, 15)
    g_delta, g_cover = _generators(1, 2)
    delta = probcover_delta(emb, 10, generator=g_delta)
    assert rule.delta_ == delta and 0 < delta < 2
    assert np.array_equal(picked, probcover(emb, mask, 15, delta=delta, generator=g_cover).cpu())


def test_probcover_counts_the_classes_of_the_labels(digits):
    x = digits.tensors[0][:300]
    y = digits.tensors[1][:300]
    pool = aalearn.ActivePool(TensorDataset(x, y))
    sampler = aalearn.ProbCoverSampler(random_state=0)
    with pytest.raises(ValueError, match=r"n_classes=None and the pool has no labeled item"):
        sampler.select(None, pool, 5)
    assert pool.n_labeled == 0
    first = np.flatnonzero(y.numpy() == 9)[:1]  # the dataset's own target: 9
    pool.label(first)
    pool.label([0, 1], labels=[4, 2])  # an oracle's labels
    sampler.select(None, pool, 5)
    emb = sampler.embed(pool)
    g_delta, _ = _generators(0, 2)
    assert sampler.delta_ == probcover_delta(emb, 10, generator=g_delta)  # 9 + 1 classes


def test_probcover_computes_delta_once(digits, monkeypatch):
    import aalearn.samplers.probcover as module

    calls = []
    real = module.probcover_delta
    monkeypatch.setattr(module, "probcover_delta", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = digits.tensors[0][:300].flatten(1).numpy()
    pool = aalearn.ActivePool(None, n_items=300)
    sampler = aalearn.ProbCoverSampler(x, n_classes=10, random_state=0)
    first = sampler.select(None, pool, 10)
    pool.label(first)
    second = sampler.select(None, pool, 10)
    assert len(calls) == 1 and not np.intersect1d(first, second).size
    fresh = aalearn.ProbCoverSampler(x, n_classes=10, random_state=0)
    assert np.array_equal(fresh.select(None, pool, 10), second)  # cached = recomputed
    sampler.set_params(n_classes=5)
    sampler.select(None, pool, 10)
    assert len(calls) == 3


def test_parameters_are_checked_before_any_work(digits):
    pool = aalearn.ActivePool(None, n_items=20)
    x = np.random.default_rng(0).normal(size=(20, 3))
    cases = [
        (aalearn.TypiClustSampler(x, max_clusters=0), ValueError, "`max_clusters` to be >= 1"),
        (aalearn.TypiClustSampler(x, n_neighbors=1.5), TypeError, "`n_neighbors` to be an int"),
        (aalearn.ProbCoverSampler(x, delta=0.0), ValueError, "`delta` to be > 0"),
        (aalearn.ProbCoverSampler(x, n_classes=1), ValueError, "`n_classes` to be >= 2"),
        (aalearn.ProbCoverSampler(x, alpha=1.5), ValueError, "`alpha` to be <= 1"),
    ]
    for sampler, error, message in cases:
        with pytest.raises(error, match=message):
            sampler.select(None, pool, 3)
        assert "_embedding_cache" not in vars(sampler)


def test_repr_and_api():
    assert repr(aalearn.TypiClustSampler(max_clusters=50)) == "TypiClustSampler(max_clusters=50)"
    s = aalearn.ProbCoverSampler(delta=0.6, random_state=0)
    assert repr(s) == "ProbCoverSampler(delta=0.6, random_state=0)"
    assert not s.requires_model and not s.needs_labels and s.ranking
    assert aalearn.samplers.TypiClustSampler is aalearn.TypiClustSampler


def test_conformance_with_an_array_and_with_an_encoder(digits):
    x = digits.tensors[0][:150].flatten(1).numpy() + 0.01  # the check pool: 150 digits
    check_sampler(aalearn.TypiClustSampler(x, random_state=0))
    check_sampler(aalearn.ProbCoverSampler(torch.from_numpy(x), n_classes=10, random_state=0))
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 12), nn.Tanh(), nn.Linear(12, 6))
    check_sampler(aalearn.TypiClustSampler(encoder, layer="2", random_state=0))


def _accuracy(x, y, picked, x_test, y_test):
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=2000).fit(x[picked], y[picked])
    return clf.score(x_test, y_test)


def test_from_zero_labels_typiclust_beats_random_on_digits():
    """The issue's probe: 10 labels on digits, logistic regression on the pixels."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    test = np.arange(0, len(y), 5)  # every fifth digit
    train = np.setdiff1d(np.arange(len(y)), test)
    images = TensorDataset(torch.tensor(x[train] / 16.0, dtype=torch.float32))
    gains, classes = [], []
    for seed in range(3):
        pool = aalearn.ActivePool(images)
        picked = aalearn.TypiClustSampler(random_state=seed).select(None, pool, 10)
        rand = aalearn.RandomSampler(random_state=seed).select(None, pool, 10)
        classes.append(len(set(y[train][picked].tolist())))
        gains.append(
            _accuracy(x[train], y[train], picked, x[test], y[test])
            - _accuracy(x[train], y[train], rand, x[test], y[test])
        )
    assert min(classes) >= 8  # typical items of 10 clusters: nearly one per digit
    assert np.mean(gains) > 0.10  # the probe measured +23 points

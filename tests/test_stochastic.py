"""StochasticBatchSampler: each mode's sampling law against its definition; copies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

import aalearn

SCORES = np.array([0.05, 0.4, 1.0, 0.0, 2.5, 0.7, 1.3])


class _Fixed:
    """A scorer with fixed scores that needs no model."""

    requires_model = False

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=np.float64)

    def score(self, model, pool, indices=None):
        return self.scores.copy()


def _law(mode, beta, s=SCORES):
    """The first-pick law of the issue's definitions (Kirsch et al., TMLR 2023)."""
    if mode == "power":
        w = s**beta
    elif mode == "softmax":
        w = np.exp(beta * (s - s.max()))
    else:
        ranks = np.empty(len(s))
        ranks[np.argsort(-s, kind="stable")] = np.arange(1, len(s) + 1)
        w = ranks**-beta
    return w / w.sum()


def _draws(mode, beta, n, budget=1, seed=0):
    pool = aalearn.ActivePool(None, n_items=len(SCORES))
    sampler = aalearn.StochasticBatchSampler(
        _Fixed(SCORES), mode=mode, beta=beta, random_state=np.random.default_rng(seed)
    )
    return np.stack([sampler.select(None, pool, budget) for _ in range(n)])


@pytest.mark.parametrize(("mode", "beta"), [("power", 2.0), ("softmax", 1.5), ("softrank", 1.0)])
def test_first_pick_follows_the_law(mode, beta):
    n = 6000
    p = _law(mode, beta)
    counts = np.bincount(_draws(mode, beta, n)[:, 0], minlength=len(SCORES))
    keep = p > 0
    assert counts[~keep].sum() == 0  # a zero score is never drawn first in power mode
    _, pvalue = stats.chisquare(counts[keep], n * p[keep])
    assert pvalue > 1e-3, (counts, n * p)


def test_second_pick_is_without_replacement():
    n, p = 6000, _law("softmax", 1.0)
    picks = _draws("softmax", 1.0, n, budget=2, seed=1)
    assert (picks[:, 0] != picks[:, 1]).all()
    expected = p[:, None] * p[None, :] / (1 - p[:, None])  # P(first = i, second = j)
    np.fill_diagonal(expected, 0)
    observed = np.zeros_like(expected)
    np.add.at(observed, (picks[:, 0], picks[:, 1]), 1)
    mask = expected * n >= 5
    e = expected[mask] / expected[mask].sum() * observed[mask].sum()
    _, pvalue = stats.chisquare(observed[mask], e)
    assert pvalue > 1e-3


def test_beta_zero_is_uniform_and_large_beta_is_topk():
    counts = np.bincount(_draws("softrank", 0.0, 3000)[:, 0], minlength=7)
    _, pvalue = stats.chisquare(counts)
    assert pvalue > 1e-3
    top = _draws("softmax", 200.0, 5, budget=3)
    assert (top == [4, 6, 2]).all()


def test_default_is_softrank_and_takes_signed_scores():
    """The default law depends on the order only: negated scores give the reversed ranks."""
    n = 6000
    pool = aalearn.ActivePool(None, n_items=len(SCORES))
    sampler = aalearn.StochasticBatchSampler(_Fixed(-SCORES), random_state=np.random.default_rng(3))
    assert sampler.mode == "softrank"
    counts = np.bincount(
        [sampler.select(None, pool, 1)[0] for _ in range(n)], minlength=len(SCORES)
    )
    _, pvalue = stats.chisquare(counts, n * _law("softrank", 1.0, -SCORES))
    assert pvalue > 1e-3, counts


@pytest.mark.parametrize("method", ["entropy", "margin", "least_confidence", "bald"])
def test_default_mode_works_for_every_uncertainty(digits, method):
    from .conftest import trained_model

    model = trained_model(digits, np.arange(60), epochs=10)
    pool = aalearn.ActivePool(torch.utils.data.Subset(digits, range(300)))
    pool.label(np.arange(0, 300, 10))
    scorer = aalearn.UncertaintySampler(
        method, mc_samples=4, inference={"device": "cpu"}, random_state=0
    )
    picked = aalearn.StochasticBatchSampler(scorer, random_state=0).select(model, pool, 20)
    assert picked.dtype == np.int64 and len(set(picked.tolist())) == 20
    assert np.isin(picked, pool.unlabeled_indices).all()


def test_checks():
    pool = aalearn.ActivePool(None, n_items=3)
    bad = aalearn.StochasticBatchSampler(_Fixed([0.1, -0.2, 0.3]), mode="power", random_state=0)
    with pytest.raises(ValueError, match="scores to be >= 0 for mode='power'"):
        bad.select(None, pool, 1)
    ok = aalearn.StochasticBatchSampler(_Fixed([0.1, -0.2, 0.3]), mode="softmax", random_state=0)
    assert ok.select(None, pool, 3).shape == (3,)
    with pytest.raises(
        ValueError, match="Non-finite values .* in the wrapped sampler's scores of 1 item"
    ):
        aalearn.StochasticBatchSampler(_Fixed([0.1, np.nan, 0.3])).select(None, pool, 1)
    with pytest.raises(ValueError, match=r"`mode` to be one of \['power', 'softmax', 'softrank'\]"):
        aalearn.StochasticBatchSampler(_Fixed([1, 2, 3]), mode="gumbel").select(None, pool, 1)
    with pytest.raises(ValueError, match="`beta` to be >= 0.0, but got -1.0"):
        aalearn.StochasticBatchSampler(_Fixed([1, 2, 3]), beta=-1).select(None, pool, 1)
    with pytest.raises(TypeError, match="`sampler` to have a score"):
        aalearn.StochasticBatchSampler(aalearn.RandomSampler()).select(None, pool, 1)
    with pytest.raises(ValueError, match="return 3 scores, one per unlabeled item"):
        aalearn.StochasticBatchSampler(_Fixed([1.0, 2.0])).select(None, pool, 1)
    power_bald = aalearn.StochasticBatchSampler(aalearn.UncertaintySampler("bald"))
    assert power_bald.requires_model and not bad.requires_model


@pytest.fixture(scope="module")
def repeated(digits):
    """60 digits, each present 5 times (dataset index = copy * 60 + item)."""
    from .conftest import trained_model

    x, y = digits.tensors
    base = torch.arange(60) + 500
    data = torch.utils.data.TensorDataset(x[base].repeat(5, 1, 1, 1), y[base].repeat(5))
    pool = aalearn.ActivePool(data)
    pool.label(np.arange(0, 300, 60))  # all copies of one item: samplers need a label
    return trained_model(digits, np.arange(100), epochs=20), pool


@pytest.mark.parametrize("method", ["entropy", "bald"])
@pytest.mark.slow
def test_power_sampling_picks_fewer_copies_than_topk(repeated, method):
    model, pool = repeated
    scorer = aalearn.UncertaintySampler(
        method, mc_samples=10, inference={"device": "cpu"}, random_state=0
    )

    def copies(picked):
        return len(picked) - len(set((picked % 60).tolist()))

    top = copies(scorer.select(model, pool, 20))
    power = [
        copies(
            aalearn.StochasticBatchSampler(scorer, mode="power", random_state=s).select(
                model, pool, 20
            )
        )
        for s in range(3)
    ]
    assert top >= 5 and max(power) < top, (top, power)

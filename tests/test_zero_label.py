"""A pool with no labeled item: the samplers that need labels refuse it, the others pick."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

import aalearn
from aalearn.samplers._zero import ZERO_LABEL_SAMPLERS
from aalearn.testing import all_samplers, check_sampler
from aalearn.testing._checks import CHECKS, check_zero_labels
from aalearn.testing._setup import Context

from .conftest import TinyNet


def _instance(cls: type) -> aalearn.BaseSampler:
    kwargs = dict(cls._test_params[0])
    kwargs.setdefault("random_state", 0)
    if "inference" in cls._param_names():
        kwargs.setdefault("inference", {"device": "cpu"})
    return cls(**kwargs)


NEEDS_LABELS = [(n, c) for n, c in all_samplers() if _instance(c).needs_labels]
FROM_ZERO = [(n, c) for n, c in all_samplers() if not _instance(c).needs_labels]


def test_the_split_of_samplers():
    """Model-based samplers need labels; Random, TypiClust and ProbCover start from zero."""
    assert {n for n, _ in FROM_ZERO} >= {"RandomSampler", "TypiClustSampler", "ProbCoverSampler"}
    assert {"UncertaintySampler", "BADGESampler", "CoreSetSampler"} <= {n for n, _ in NEEDS_LABELS}
    for _, cls in NEEDS_LABELS:
        assert cls.requires_model, cls  # needs_labels defaults to requires_model


def test_needs_labels_defaults_to_requires_model():
    class NoModel(aalearn.BaseSampler):
        requires_model = False

    class Model(aalearn.BaseSampler):
        pass

    assert not NoModel().needs_labels and Model().needs_labels
    assert aalearn.StochasticBatchSampler(Model()).needs_labels


@pytest.mark.parametrize("cls", [c for _, c in NEEDS_LABELS], ids=[n for n, _ in NEEDS_LABELS])
def test_samplers_that_need_labels_refuse_before_any_work(cls, digits):
    pool = aalearn.ActivePool(Subset(digits, range(60)))
    model = TinyNet()
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    before = pool.state_dict()  # copies
    sampler = _instance(cls)
    with pytest.raises(ValueError) as err:
        sampler.select(model, pool, 5)
    text = str(err.value)
    assert text.startswith(f"The pool has no labeled item, and {cls.__name__} needs a model")
    assert all(name in text for name in ZERO_LABEL_SAMPLERS)
    assert not calls  # refused before any forward pass
    after = pool.state_dict()
    assert all(
        torch.equal(v, after[k]) if torch.is_tensor(v) else v == after[k] for k, v in before.items()
    )
    if sampler.has_score:
        with pytest.raises(ValueError, match="The pool has no labeled item"):
            sampler.score(model, pool)
    pool.label(np.arange(0, 60, 6))  # with labels, the same call picks
    assert sampler.select(model, pool, 5).shape == (5,)


@pytest.mark.parametrize("cls", [c for _, c in FROM_ZERO], ids=[n for n, _ in FROM_ZERO])
def test_zero_label_samplers_pick_on_real_digits(cls, digits):
    pool = aalearn.ActivePool(Subset(digits, range(300)))
    sampler = _instance(cls)
    if cls is aalearn.BudgetAwareSampler:  # its defaults: TypiClust on the default embedding
        sampler = aalearn.BudgetAwareSampler(n_classes=10, random_state=0)
    elif "embedding" in cls._param_names():
        sampler.set_params(embedding=None)  # the default embedding of these 300 items
    picked = sampler.select(None, pool, 10)
    assert picked.dtype == np.int64 and np.unique(picked).size == 10
    assert pool.n_labeled == 0 and ((picked >= 0) & (picked < 300)).all()


def test_stochastic_wrapper_follows_the_wrapped_sampler():
    wrapped = aalearn.StochasticBatchSampler(aalearn.UncertaintySampler())
    assert wrapped.needs_labels
    wrapped.sampler = aalearn.RandomSampler()
    assert not wrapped.needs_labels


class _LiesAboutZero(aalearn.BaseSampler):
    """Claims to work from zero labels, but divides by the number of labels."""

    requires_model = False
    needs_labels = False

    def _select(self, model, pool, budget, rng):
        step = len(pool) // pool.n_labeled  # ZeroDivisionError from zero labels
        return pool.unlabeled_indices[::step][:budget]


class _DuckNeedsLabels:
    """Says it needs labels, but picks anyway on a pool with none."""

    needs_labels = True
    requires_model = False

    def select(self, model, pool, budget):
        return pool.unlabeled_indices[:budget].copy()


def test_the_zero_label_check_catches_both_lies():
    cpu = torch.device("cpu")
    with pytest.raises(AssertionError, match=r"check_zero_labels failed for _LiesAboutZero"):
        check_zero_labels(Context(_LiesAboutZero(), cpu))
    with pytest.raises(AssertionError, match=r"check_zero_labels failed .*instead of raising"):
        check_zero_labels(Context(_DuckNeedsLabels(), cpu))
    check_zero_labels(Context(aalearn.RandomSampler(random_state=0), cpu))  # the truth passes
    assert check_zero_labels in CHECKS


def test_check_sampler_runs_the_zero_label_check_on_the_new_samplers():
    check_sampler(aalearn.ProbCoverSampler(n_classes=10, delta=0.4, random_state=0))


def test_refusal_keeps_bad_argument_errors_first(digits):
    pool = aalearn.ActivePool(Subset(digits, range(30)))
    sampler = aalearn.UncertaintySampler()
    with pytest.raises(ValueError, match="Expected argument `budget` to be >= 0"):
        sampler.select(TinyNet(), pool, -1)
    with pytest.raises(TypeError, match="Expected argument `model`"):
        sampler.select("model", pool, 3)
    with pytest.raises(ValueError, match="no labeled item"):
        sampler.select(TinyNet(), pool, 0)  # even an empty batch: the state is refused
    assert torch.is_tensor(pool.dataset[0][0])

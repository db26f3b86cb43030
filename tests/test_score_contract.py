"""``score`` validates as ``select`` does, with the same messages, for every scoring sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Subset

import aalearn

CPU = {"device": "cpu"}
SCORERS = {
    **{
        m: (lambda m=m: aalearn.UncertaintySampler(m, mc_samples=2, inference=CPU, random_state=0))
        for m in aalearn.UncertaintySampler.methods
    },
    "aalu": lambda: aalearn.AALUSampler(
        epochs=1, min_iterations=0, hidden=(8,), latent_dim=4, inference=CPU, random_state=0
    ),
    "adversarial[features]": lambda: aalearn.AdversarialSampler(
        epochs=1, min_iterations=0, hidden=(8,), latent_dim=4, inference=CPU, random_state=0
    ),
    "adversarial[raw]": lambda: aalearn.AdversarialSampler(
        representation="raw", epochs=0.2, vae_channels=4, inference=CPU, random_state=0
    ),
    "vaal": lambda: aalearn.VAALSampler(epochs=0.2, vae_channels=4, inference=CPU, random_state=0),
}


@pytest.fixture(scope="module")
def setup(digits):
    pool = aalearn.ActivePool(Subset(digits, range(90)))
    pool.label(np.arange(0, 90, 3))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.2))
    model.append(nn.Linear(16, 10))
    return model, pool


@pytest.mark.parametrize("name", list(SCORERS))
@pytest.mark.parametrize(
    ("indices", "exc", "match"),
    [
        ([-1], ValueError, r"`indices` to hold indices in \[0, 90\), but got -1\."),
        ([95], ValueError, r"`indices` to hold indices in \[0, 90\), but got 95\."),
        ([1.7], TypeError, "`indices` to hold integer dataset indices, but got dtype float64"),
        ([True], TypeError, "`indices` to hold integer dataset indices, but got dtype bool"),
        ([[1, 2]], ValueError, r"`indices` to be a 1-D sequence of dataset indices, but got shape"),
        ([0, 1], ValueError, r"`indices` to hold unlabeled dataset indices, but got \[0\]"),
    ],
)
def test_score_refuses_bad_indices(setup, name, indices, exc, match):
    model, pool = setup
    with pytest.raises(exc, match=match):
        SCORERS[name]().score(model, pool, indices)


@pytest.mark.parametrize("name", list(SCORERS))
def test_score_checks_pool_and_model_with_selects_messages(setup, name):
    model, pool = setup
    sampler = SCORERS[name]()
    for call in (sampler.select, sampler.score):
        args = (model, None, 2) if call == sampler.select else (model, None)
        with pytest.raises(TypeError, match="Expected argument `pool` to be an aalearn.ActivePool"):
            call(*args)
        args = ("m", pool, 2) if call == sampler.select else ("m", pool)
        with pytest.raises(TypeError, match="Expected argument `model` to be a torch.nn.Module"):
            call(*args)


@pytest.mark.parametrize("name", list(SCORERS))
def test_score_of_chosen_items_equals_the_full_scores_there(setup, name):
    model, pool = setup
    full = SCORERS[name]().score(model, pool)
    assert full.shape == (pool.n_unlabeled,)
    some = pool.unlabeled_indices[[7, 2, 30]]
    part = SCORERS[name]().score(model, pool, some)
    if name == "bald":  # MC-dropout masks are drawn per batch: another batch, other masks
        assert part.shape == (3,) and np.isfinite(part).all()
    else:
        np.testing.assert_allclose(part, full[[7, 2, 30]])
    empty = SCORERS[name]().score(model, pool, np.array([], dtype=np.int64))
    assert empty.shape == (0,)


def test_batch_samplers_have_no_score(setup):
    model, pool = setup
    for sampler in (aalearn.BADGESampler(), aalearn.CoreSetSampler(), aalearn.RandomSampler()):
        assert not sampler.has_score
        with pytest.raises(TypeError, match="does not score items one by one"):
            sampler.score(model, pool)
    assert all(SCORERS[name]().has_score for name in SCORERS)

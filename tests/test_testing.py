"""aalearn.testing: check_sampler fails on broken samplers, naming the check; passes correct ones.

Each broken sampler below breaks one clause of the Sampler contract and nothing
before it in the order of the checks, so the expected message is exact.
"""

from __future__ import annotations

import re
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

import aalearn
from aalearn import functional as AF
from aalearn.testing import all_samplers, check_sampler


class _Random(aalearn.BaseSampler):
    """A correct model-free sampler: the base of the broken ones."""

    requires_model = False

    def _select(self, model, pool, budget, rng):
        return pool.random_unlabeled(budget, random_state=rng)


class ReturnsLabeled(_Random):
    def select(self, model, pool, budget):
        picked = super().select(model, pool, budget)
        if picked.size:
            picked[0] = pool.labeled_indices[0]  # dataset index 0 is labeled in the checks
        return picked


class ShortByOne(_Random):
    def select(self, model, pool, budget):
        return super().select(model, pool, budget)[:-1]


class GlobalRNG(_Random):
    def _select(self, model, pool, budget, rng):
        return np.random.choice(pool.unlabeled_indices, budget, replace=False)


class FreshEntropy(_Random):
    """Draws from OS entropy instead of ``rng``: no global RNG touched, but not reproducible."""

    def _select(self, model, pool, budget, rng):
        return pool.random_unlabeled(budget, random_state=np.random.default_rng())


class LeavesEval(_Random):
    def select(self, model, pool, budget):
        if isinstance(model, torch.nn.Module):
            model.eval()
        return super().select(model, pool, budget)


class LabelsItsPicks(_Random):
    def _select(self, model, pool, budget, rng):
        picked = pool.random_unlabeled(budget, random_state=rng)
        pool.label(picked)
        return picked


class FirstUnlabeled:
    """Duck-typed, and checks nothing: a budget of -1 returns all but one item."""

    requires_model = False

    def select(self, model, pool, budget):
        return pool.unlabeled_indices[:budget].copy()


class OwnBudgetMessage(_Random):
    def select(self, model, pool, budget):
        if isinstance(budget, int) and budget < 0:
            raise ValueError("negative budget")
        return super().select(model, pool, budget)


class NanToNum(aalearn.BaseSampler):
    """Reads the model's outputs without the inference pass and hides NaN: breaks the policy."""

    def _select(self, model, pool, budget, rng):
        unl = pool.unlabeled_indices
        x = torch.stack([pool.dataset[int(i)][0] for i in unl])
        dev = next(model.parameters()).device
        model.eval()
        with torch.no_grad():
            probs = model(x.to(dev)).softmax(dim=1)
        scores = torch.nan_to_num(AF.entropy(probs, validate_args=False), nan=0.0, posinf=0.0)
        _, top = AF.topk_indices(scores.cpu(), torch.from_numpy(unl.copy()), budget)
        return top.numpy()


class DoublesFactor(_Random):
    """Changes an argument in ``__init__``: ``clone`` cannot rebuild it."""

    def __init__(self, *, factor=2, inference=None, random_state=None):
        super().__init__(inference=inference, random_state=random_state)
        self.factor = [factor, factor]


class LastFirst(_Random):
    """Claims to rank, but a smaller budget is not a prefix."""

    ranking = True

    def _select(self, model, pool, budget, rng):
        return pool.unlabeled_indices[-budget:].copy()


class NeedsArgument(_Random):
    def __init__(self, width, *, random_state=None):
        super().__init__(random_state=random_state)
        self.width = width


class EntropyTopK(aalearn.BaseSampler):
    """A correct user sampler: the most uncertain items, streamed, a ranking."""

    ranking = True

    def __init__(self, *, temperature=1.0, inference=None, random_state=None):
        super().__init__(inference=inference, random_state=random_state)
        self.temperature = temperature

    def _score(self, out):
        return AF.entropy(out.probs, validate_args=False) / self.temperature

    def _select(self, model, pool, budget, rng):
        return self._select_topk(model, pool, budget, self._score, probs=True)

    def score(self, model, pool, indices=None):
        idx = pool.unlabeled_indices if indices is None else np.asarray(indices, dtype=np.int64)
        return self._score(self._collect(model, pool, idx, probs=True)).cpu().numpy()


class ScoreDisagrees(EntropyTopK):
    """Its ``score`` is not what ``select`` ranks."""

    def score(self, model, pool, indices=None):
        return -super().score(model, pool, indices)


#: How check_sampler configures a class that takes `inference` and `random_state`.
CFG = "inference={'device': 'cpu'}, random_state=0"
BROKEN = [
    (
        ReturnsLabeled,
        f"check_select_output failed for ReturnsLabeled({CFG}): "
        "select(model, pool, 10) returned labeled indices: [0]",
    ),
    (
        ShortByOne,
        f"check_select_output failed for ShortByOne({CFG}): "
        "select(model, pool, 10) returned 9 indices, not 10",
    ),
    (
        GlobalRNG,
        f"check_global_rng_untouched failed for GlobalRNG({CFG}): "
        "select(model, pool, 10) changed NumPy's global RNG",
    ),
    (
        FreshEntropy,
        f"check_deterministic failed for FreshEntropy({CFG}): the same random_state "
        "gave other picks: a fresh instance (budget as numpy.int64)",
    ),
    (
        LeavesEval,
        f"check_model_untouched failed for LeavesEval({CFG}): "
        "select(model, pool, 10) left submodule '<model>' with training=False (was True)",
    ),
    (
        LabelsItsPicks,
        f"check_pool_untouched failed for LabelsItsPicks({CFG}): "
        "select(model, pool, 10) changed the pool's 'labeled_round'",
    ),
    (
        FirstUnlabeled(),
        "check_bad_budget failed for FirstUnlabeled: select(model, pool, -1) returned an array "
        "of shape (119,) ([1, 2, 3, 4, 6, ...]) instead of raising ValueError",
    ),
    (
        OwnBudgetMessage,
        f"check_bad_budget failed for OwnBudgetMessage({CFG}): select(model, pool, -1) "
        "raised ValueError('negative budget'), whose message does not match",
    ),
    (
        NanToNum,
        f"check_non_finite failed for NanToNum({CFG}): "
        "select(model, pool, 10) on a pool whose items [1, 7, 12, 13, 14, 16, 18] are NaN or "
        "inf returned an array of shape (10,)",
    ),
    (
        DoublesFactor,
        f"check_params failed for DoublesFactor(factor=[2, 2], {CFG}): "
        "sklearn.base.clone raised RuntimeError(",
    ),
    (
        LastFirst,
        f"check_ranking failed for LastFirst({CFG}): select(model, pool, 5) picked",
    ),
    (
        ScoreDisagrees,
        f"check_score failed for ScoreDisagrees({CFG}): select(model, pool, 10) picked",
    ),
    (
        NeedsArgument,
        "check_sampler failed for NeedsArgument: NeedsArgument(**{'random_state': 0}) raised "
        "TypeError(",
    ),
]


@pytest.mark.parametrize(
    ("sampler", "message"),
    BROKEN,
    ids=[getattr(s, "__name__", type(s).__name__) for s, _ in BROKEN],
)
def test_check_sampler_fails_on_a_broken_sampler(sampler, message):
    torch_rng, np_rng = torch.random.get_rng_state(), np.random.get_state()
    threads = torch.get_num_threads()
    with pytest.raises(AssertionError, match="^" + re.escape(message)):
        check_sampler(sampler)
    # The check leaves the caller's global state as it was, even when it fails.
    assert torch.equal(torch.random.get_rng_state(), torch_rng)
    assert np.random.get_state()[1].tolist() == np_rng[1].tolist()
    assert torch.get_num_threads() == threads


class EntropyThenRandom(aalearn.BaseSampler):
    """A correct user sampler: random picks among the 3 x budget most uncertain (not a ranking)."""

    def _select(self, model, pool, budget, rng):
        out = self._collect(model, pool, pool.unlabeled_indices, probs=True)
        scores = AF.entropy(out.probs)
        k = min(3 * budget, scores.shape[0])
        _, top = AF.topk_indices(scores, torch.arange(scores.shape[0]), k)
        keep = np.sort(rng.choice(k, size=budget, replace=False))
        return out.indices[top.numpy()[keep]]


@pytest.mark.parametrize(
    "sampler", [EntropyTopK, EntropyThenRandom, _Random], ids=lambda c: c.__name__
)
def test_check_sampler_passes_a_correct_user_sampler(sampler):
    check_sampler(sampler)


def test_an_instance_is_checked_as_configured_and_left_unchanged():
    sampler = EntropyTopK(temperature=2.0, inference={"batch_size": 16})  # random_state=None
    check_sampler(sampler)
    assert sampler.random_state is None and sampler.temperature == 2.0
    broken = GlobalRNG(random_state=np.random.default_rng(0))
    with pytest.raises(AssertionError, match=r"^check_global_rng_untouched failed for GlobalRNG\("):
        check_sampler(broken)
    assert isinstance(broken.random_state, np.random.Generator)


def test_all_samplers_walks_the_subclasses():
    found = dict(all_samplers())
    assert found["RandomSampler"] is aalearn.RandomSampler
    assert "BaseSampler" not in found
    # Only classes that a module of aalearn defines: not these tests' samplers ...
    assert "EntropyTopK" not in found and "_Random" not in found
    # ... and a new sampler in an aalearn module is found without being listed.
    module = types.ModuleType("aalearn.samplers.extra")
    exec(
        "from aalearn.samplers.random import RandomSampler\n"
        "class ExtraSampler(RandomSampler):\n    pass\n"
        "def make():\n    class Local(RandomSampler):\n        pass\n    return Local\n",
        module.__dict__,
    )
    sys.modules[module.__name__] = module
    try:
        local = module.make()  # made in a function (as a doctest does): no module attribute
        found = dict(all_samplers())
        assert found["ExtraSampler"] is module.ExtraSampler
        assert "Local" not in found and local.__module__ == module.__name__
    finally:
        del sys.modules[module.__name__]


def test_imports_stay_light():
    code = (
        "import sys, aalearn\n"
        "assert 'aalearn.testing' not in sys.modules\n"
        "import aalearn.testing\n"
        "assert 'pytest' not in sys.modules, 'aalearn.testing imports pytest'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

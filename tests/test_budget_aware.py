"""BudgetAwareSampler: the regime rule, the switch on real data, the reported decision, errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from aalearn import ActivePool, BudgetAwareSampler, RandomSampler, UncertaintySampler
from aalearn.functional import ball_coverage, probcover_delta
from aalearn.samplers.budget_aware import BudgetDecision


def _brute_coverage(x: np.ndarray, labeled: np.ndarray, delta: float) -> float:
    """Fraction of rows with a labeled row closer than delta: every distance, by numpy."""
    if not labeled.any():
        return 0.0
    x = np.asarray(x, dtype=np.float64)
    d = np.sqrt(((x[:, None, :] - x[None, labeled, :]) ** 2).sum(-1))
    return float((d < delta).any(axis=1).mean())


@pytest.mark.parametrize("n_labeled", [0, 1, 7, 40])
def test_ball_coverage_against_brute_force(n_labeled: int) -> None:
    rng = np.random.default_rng(n_labeled)
    x = rng.normal(size=(120, 3))
    labeled = np.zeros(120, dtype=bool)
    labeled[rng.choice(120, n_labeled, replace=False)] = True
    for delta in (0.3, 1.0, 2.5):
        got = ball_coverage(torch.from_numpy(x), torch.from_numpy(labeled), delta)
        assert got == pytest.approx(_brute_coverage(x, labeled, delta), abs=1e-12)


def test_ball_coverage_is_strict() -> None:
    x = torch.tensor([[0.0], [1.0], [0.999]])
    mask = torch.tensor([True, False, False])
    assert ball_coverage(x, mask, 1.0) == pytest.approx(2 / 3)  # the item at exactly 1.0 is out


def _pool(n: int = 60, seed: int = 0) -> tuple[ActivePool, torch.Tensor]:
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    return ActivePool(TensorDataset(x, (x[:, 0] > 0).long())), x


def test_decision_coverage_is_the_hand_computation() -> None:
    pool, x = _pool()
    pool.label(np.arange(0, 60, 6))
    sampler = BudgetAwareSampler(
        RandomSampler(random_state=0), UncertaintySampler("margin"), embedding=x.numpy(),
        rule="coverage", delta=0.5, threshold=0.9, random_state=0,
    )  # fmt: skip
    sampler.select(None, pool, 3)
    expected = _brute_coverage(x.numpy(), pool.labeled_mask, 0.5)
    d = sampler.last_decision_
    assert 0 < expected < 0.9
    assert (d.regime, d.rule, d.n_labeled, d.delta) == ("low", "coverage", 10, 0.5)
    assert d.value == pytest.approx(expected)
    assert sampler.delta_ == 0.5


def test_delta_by_the_purity_rule() -> None:
    pool, x = _pool()
    sampler = BudgetAwareSampler(
        RandomSampler(random_state=0), UncertaintySampler("margin"), embedding=x,
        rule="coverage", n_classes=3, random_state=0,
    )  # fmt: skip
    sampler.select(None, pool, 2)
    rng = np.random.default_rng(0)  # what random_state=0 resolves to
    rng.integers(2**31)  # the default samplers' seed
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    assert sampler.delta_ == probcover_delta(x, 3, generator=gen)
    assert sampler.last_decision_.delta == sampler.delta_


def _digits_setup() -> tuple[ActivePool, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    d = load_digits()
    x = torch.tensor(d.data[:600] / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target[:600])
    emb = PCA(16, random_state=0).fit_transform(d.data[:600] / 16.0)
    emb = torch.nn.functional.normalize(torch.tensor(emb, dtype=torch.float32), dim=1)
    return ActivePool(TensorDataset(x, y)), x, y, emb


def _train(x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Linear(64, 10)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(50):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def test_switches_from_low_to_high_on_digits() -> None:
    """Zero labels to 200 on digits: the cold-start sampler first, then margin, once."""
    pool, x, y, emb = _digits_setup()
    low, high = RandomSampler(random_state=1), UncertaintySampler("margin")
    sampler = BudgetAwareSampler(
        low, high, embedding=emb, rule="coverage", threshold=0.5, n_classes=10
    )
    model = None
    regimes, values = [], []
    for cycle in range(10):
        twin_low = low.select(model, pool, 20)  # what each part would pick, called directly
        twin_high = high.select(model, pool, 20) if model is not None else None
        picked = sampler.select(model, pool, 20)
        d = sampler.last_decision_
        regimes.append(d.regime)
        values.append(d.value)
        # The purity rule's delta is itself a pairwise distance (float32), so an item can
        # sit on the ball's edge: the float64 brute force may count it either way.
        lo, hi = (
            _brute_coverage(emb.numpy(), pool.labeled_mask, sampler.delta_ * (1 + e))
            for e in (-1e-5, 1e-5)
        )
        assert lo <= d.value <= hi and hi - lo <= 2 / len(pool)
        assert np.array_equal(picked, twin_high if d.regime == "high" else twin_low)
        assert d.method == ("UncertaintySampler" if d.regime == "high" else "RandomSampler")
        pool.label(picked)
        lab = torch.from_numpy(pool.labeled_indices)
        model = _train(x[lab], y[lab], cycle)
    assert regimes[0] == "low" and values[0] == 0.0
    assert regimes[-1] == "high"
    first_high = regimes.index("high")
    assert set(regimes[first_high:]) == {"high"}  # the switch happens once
    assert all(a <= b for a, b in zip(values, values[1:]))  # coverage only grows


def test_per_class_rule_switches_at_the_threshold() -> None:
    pool, _ = _pool(60)
    sampler = BudgetAwareSampler(
        RandomSampler(random_state=0), RandomSampler(random_state=1), rule="per_class",
        threshold=2, n_classes=5,
    )  # fmt: skip
    seen = []
    for _ in range(4):
        picked = sampler.select(None, pool, 3)
        seen.append((sampler.last_decision_.regime, sampler.last_decision_.value))
        pool.label(picked)
    # 0, 3, 6, 9 labeled over 5 classes: the switch at 10 labels, never before.
    assert seen == [("low", 0.0), ("low", 0.6), ("low", 1.2), ("low", 1.8)]
    picked = sampler.select(None, pool, 1)  # 12 labeled: 2.4 per class
    assert (sampler.last_decision_.regime, sampler.last_decision_.value) == ("high", 2.4)
    assert np.array_equal(picked, RandomSampler(random_state=1).select(None, pool, 1))
    assert sampler.last_decision_.delta is None and sampler.delta_ is None


def test_decision_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    pool, x = _pool()
    sampler = BudgetAwareSampler(
        RandomSampler(random_state=0), UncertaintySampler("margin"), embedding=x,
        rule="coverage", delta=0.5, threshold=0.25,
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="aalearn.samplers.budget_aware"):
        sampler.select(None, pool, 2)
    d = sampler.last_decision_
    assert isinstance(d, BudgetDecision)
    text = str(d)
    assert text.startswith("RandomSampler ran (low-budget regime): the 0 labeled items' balls")
    assert "cover 0.0% of the pool, < the threshold 25%" in text
    assert [r.getMessage() for r in caplog.records] == [text]
    pool.label(np.arange(0, 60, 2))
    with caplog.at_level(logging.INFO, logger="aalearn.samplers.budget_aware"):
        sampler.select(nn.Linear(2, 2), pool, 2)
    assert str(sampler.last_decision_).startswith("UncertaintySampler ran (high-budget regime)")
    assert ">= the threshold 25%" in caplog.records[-1].getMessage()


def test_repr_is_readable() -> None:
    sampler = BudgetAwareSampler(RandomSampler(random_state=0), n_classes=10)
    assert repr(sampler) == "BudgetAwareSampler(low=RandomSampler(random_state=0), n_classes=10)"
    sampler = BudgetAwareSampler(rule="coverage", threshold=0.4)
    assert repr(sampler) == "BudgetAwareSampler(rule='coverage', threshold=0.4)"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"threshold": 1.5}, ValueError, "Expected argument `threshold` to be <= 1"),
        ({"threshold": -0.1}, ValueError, "Expected argument `threshold` to be >= 0"),
        ({"rule": "labels"}, ValueError, "Expected argument `rule`"),
        ({"low": "typiclust"}, TypeError, "Expected argument `low` to be a sampler"),
        ({"high": 3}, TypeError, "Expected argument `high` to be a sampler"),
        ({"embedding": [1.0, 2.0]}, TypeError, "Expected argument `embedding` to be an (N, D)"),
        ({"embedding": np.zeros(60)}, ValueError, "Expected argument `embedding` to be a 2-D"),
        ({"embedding": np.zeros((59, 2))}, ValueError, "one row per pool item (60)"),
        ({"delta": 0.0}, ValueError, "Expected argument `delta` to be > 0"),
        ({"delta": None}, ValueError, "Expected argument `n_classes`"),
        ({"alpha": 0.0}, ValueError, "Expected argument `alpha`"),
        (
            {"rule": "per_class", "n_classes": 2},
            ValueError,
            "Expected argument `delta` to be None with rule='per_class'",
        ),
        ({"rule": "per_class", "delta": None}, ValueError, "Expected argument `n_classes`"),
    ],
)
def test_bad_input(kwargs: dict, error: type, message: str) -> None:
    pool, x = _pool()
    params = {
        "embedding": x, "rule": "coverage", "delta": 0.5, "low": RandomSampler(random_state=0),
        **kwargs,
    }  # fmt: skip
    sampler = BudgetAwareSampler(**params)
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        sampler.select(None, pool, 2)
    assert not hasattr(sampler, "last_decision_") and pool.n_labeled == 0


def test_model_is_required_after_the_switch_and_checked() -> None:
    pool, x = _pool()
    pool.label(np.arange(0, 60, 2))
    sampler = BudgetAwareSampler(
        RandomSampler(random_state=0), UncertaintySampler("margin"), embedding=x,
        rule="coverage", delta=0.5, threshold=0.1,
    )  # fmt: skip
    with pytest.raises(ValueError, match="Expected argument `model` to be a trained model"):
        sampler.select(None, pool, 2)
    assert not hasattr(sampler, "last_decision_")
    with pytest.raises(TypeError, match="Expected argument `model` to be a torch.nn.Module"):
        sampler.select("model", pool, 2)


def test_no_embedding_and_no_embed_method() -> None:
    pool, _ = _pool()
    sampler = BudgetAwareSampler(RandomSampler(random_state=0), rule="coverage", delta=0.5)
    with pytest.raises(ValueError, match="Expected argument `embedding`.*no embed"):
        sampler.select(None, pool, 2)


def test_defaults_typiclust_then_margin_from_zero_labels() -> None:
    """No low/high given: TypiClust on the embedding from zero labels, margin after the switch."""
    from aalearn import TypiClustSampler

    pool, x, y, emb = _digits_setup()
    sampler = BudgetAwareSampler(embedding=emb, n_classes=10, random_state=0)
    picked = sampler.select(None, pool, 10)
    d = sampler.last_decision_
    assert (d.regime, d.method, d.rule, d.value, d.threshold) == (
        "low", "TypiClustSampler", "per_class", 0.0, 7.0,
    )  # fmt: skip
    low = sampler._made_samplers[1]
    assert isinstance(low, TypiClustSampler) and low.embedding is emb
    assert np.array_equal(picked, low.select(None, pool, 10))  # the default low's own picks
    assert len(set(y[picked].tolist())) >= 7  # typical digits of most classes
    pool.label(np.arange(0, 600, 2))
    model = _train(x[::2], y[::2], 0)
    picked = sampler.select(model, pool, 10)
    d = sampler.last_decision_
    assert (d.method, d.regime, d.value) == ("UncertaintySampler", "high", 30.0)  # 300 / 10
    assert np.array_equal(picked, UncertaintySampler("margin").select(model, pool, 10))


def test_default_rule_switches_at_seven_labels_per_class() -> None:
    """The default: 69 labels over 10 classes run ``low``, 70 run ``high``."""
    pool, _ = _pool(200)
    sampler = BudgetAwareSampler(
        RandomSampler(random_state=0), RandomSampler(random_state=1), n_classes=10
    )
    pool.label(np.arange(69))
    sampler.select(None, pool, 1)
    d = sampler.last_decision_
    assert (d.regime, d.rule, d.threshold, d.delta) == ("low", "per_class", 7.0, None)
    assert d.value == pytest.approx(6.9)
    assert str(d) == (
        "RandomSampler ran (low-budget regime): 69 labeled items are 6.9 per class, < the "
        "threshold 7"
    )
    pool.label([69])
    picked = sampler.select(None, pool, 3)
    assert (sampler.last_decision_.regime, sampler.last_decision_.value) == ("high", 7.0)
    assert np.array_equal(picked, RandomSampler(random_state=1).select(None, pool, 3))


def test_coverage_in_the_low_samplers_embedding() -> None:
    """embedding=None: the coverage is measured on low.embed(pool) (L2-normalised rows)."""
    from aalearn import TypiClustSampler

    pool, _, _, emb = _digits_setup()
    pool.label(np.arange(0, 600, 10))
    low = TypiClustSampler(emb * 3.0, random_state=0)  # the sampler normalises the rows
    sampler = BudgetAwareSampler(
        low, UncertaintySampler("margin"), rule="coverage", delta=0.4, threshold=0.99
    )
    sampler.select(None, pool, 5)
    space = low.embed(pool).numpy()
    assert np.allclose(np.linalg.norm(space, axis=1), 1.0, atol=1e-5)
    expected = _brute_coverage(space, pool.labeled_mask, 0.4)
    assert sampler.last_decision_.value == pytest.approx(expected)


def test_zero_labels_run_the_low_sampler_whatever_the_threshold() -> None:
    pool, x = _pool()
    sampler = BudgetAwareSampler(
        RandomSampler(random_state=0), UncertaintySampler("margin"), embedding=x,
        rule="coverage", delta=0.5, threshold=0.0,
    )  # fmt: skip
    picked = sampler.select(None, pool, 4)
    assert sampler.last_decision_.regime == "low"
    assert np.array_equal(picked, RandomSampler(random_state=0).select(None, pool, 4))
    pool.label(picked)
    sampler.select(nn.Linear(2, 2), pool, 4)  # one label is enough for threshold 0
    assert sampler.last_decision_.regime == "high"

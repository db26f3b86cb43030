"""One policy for non-finite model outputs and selector scores, over every sampler (issue 12).

Items whose inputs are NaN or inf make the model emit NaN/inf probabilities and
features; every sampler that reads model outputs must raise ``ValueError`` that
counts them and names the first few dataset indices, before returning anything.
The samplers are found in ``aalearn.samplers.__all__``, so a new one is covered.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import aalearn
import aalearn.samplers
from aalearn._finite import FiniteCheck, check_finite, nonfinite_rows

from .conftest import trained_model

#: Small settings for the samplers that train a selector (a few seconds each).
SMALL: dict[str, dict[str, Any]] = {
    "AALUSampler": {"epochs": 1, "min_iterations": 0, "hidden": (16,), "latent_dim": 4},
    "AdversarialSampler": {"epochs": 1, "min_iterations": 0, "hidden": (16,), "latent_dim": 4},
    "VAALSampler": {"epochs": 0.2, "vae_channels": 4},
    # The per-class rule (its default) divides by the number of classes.
    "BudgetAwareSampler": {"n_classes": 10},
    # The stochastic batches wrap a scoring sampler: the policy reaches it through score().
    "StochasticBatchSampler": {
        "sampler": aalearn.UncertaintySampler(
            "entropy", inference={"device": "cpu", "batch_size": 64}
        )
    },
}
POISONED = [3, 17, 40, 41, 42, 43, 44, 99]  # dataset indices of the bad items


def _sampler_classes() -> list[type]:
    out = []
    for name in aalearn.samplers.__all__:
        obj = getattr(aalearn.samplers, name)
        if isinstance(obj, type) and issubclass(obj, aalearn.BaseSampler):
            if obj is not aalearn.BaseSampler and not inspect.isabstract(obj):
                out.append(obj)
    return out


def _make(cls: type, **extra: Any) -> Any:
    params = inspect.signature(cls).parameters
    kwargs = {**SMALL.get(cls.__name__, {}), **extra, "random_state": 0}
    if "inference" in params:
        kwargs["inference"] = {"device": "cpu", "batch_size": 64}
    elif "device" in params:
        kwargs.update(device="cpu", batch_size=64)
    required = [
        n for n, p in params.items()
        if p.default is inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD and n not in kwargs
    ]  # fmt: skip
    if required:
        pytest.fail(f"{cls.__name__} needs {required}: add it to SMALL in this file")
    return cls(**kwargs)


@pytest.fixture(scope="module")
def setup(digits):
    x, y = digits.tensors
    x = x[:300].clone()
    x[POISONED[:4]] = float("nan")
    x[POISONED[4:]] = float("inf")
    pool = aalearn.ActivePool(TensorDataset(x, y[:300]))
    labeled = [i for i in range(100, 140)]
    pool.label(labeled, labels=y[labeled].numpy())
    model = trained_model(digits, np.array(labeled), epochs=10)
    return model, pool


def _expect_named(err: pytest.ExceptionInfo, count: int, shown: list[int]) -> None:
    text = str(err.value)
    assert f"of {count} item(s), dataset indices {shown}" in text, text


@pytest.mark.parametrize("cls", _sampler_classes(), ids=lambda c: c.__name__)
def test_every_sampler_refuses_non_finite_outputs(cls, setup):
    model, pool = setup
    before = pool.state_dict()
    sampler = _make(cls)
    # reads no model output nor an embedding of the inputs: the policy does not apply
    if not (sampler.requires_model or getattr(sampler, "reads_inputs", False)):
        picked = sampler.select(model, pool, 5)
        assert len(set(picked.tolist())) == 5
        return
    with pytest.raises(ValueError, match="Non-finite values") as err:
        sampler.select(model, pool, 5)
    if "selector scores" not in str(err.value):  # model outputs: the 8 poisoned items
        _expect_named(err, len(POISONED), POISONED[:5])
        assert "..." in str(err.value)
    for key, value in before.items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(pool.state_dict()[key]))


@pytest.mark.parametrize("method", ["entropy", "margin", "least_confidence", "bald"])
def test_uncertainty_methods_and_score_refuse_non_finite_outputs(method, setup):
    model, pool = setup
    sampler = _make(aalearn.UncertaintySampler, method=method, mc_samples=2)
    field = "mc_probs" if method == "bald" else "probs"
    with pytest.raises(ValueError, match=f"Non-finite values .*in {field} of 8 item") as err:
        sampler.select(model, pool, 5)
    _expect_named(err, 8, POISONED[:5])
    with pytest.raises(ValueError, match="Non-finite values"):
        sampler.score(model, pool, np.array([0, 1, 17]))
    assert sampler.score(model, pool, np.array([0, 1, 2])).shape == (3,)  # finite items: fine


class _MinusInf(nn.Module):
    """Logits with -inf in class 0 for every row: legitimate (probability 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x.flatten(1))
        return torch.cat([torch.full_like(out[:, :1], float("-inf")), out[:, 1:]], dim=1)


def test_minus_inf_logits_are_legitimate(digits):
    torch.manual_seed(0)
    pool = aalearn.ActivePool(torch.utils.data.Subset(digits, range(100)))
    pool.label([0, 1, 2])
    for cls in (aalearn.UncertaintySampler, aalearn.CoreSetSampler):
        picked = _make(cls).select(_MinusInf(), pool, 4)
        assert len(set(picked.tolist())) == 4


def test_selector_scores_are_checked(digits, monkeypatch):
    """A selector that scores NaN (diverged training) is refused, naming the items."""
    from aalearn.samplers import _selector

    clean_pool = aalearn.ActivePool(torch.utils.data.Subset(digits, range(200)))
    clean_pool.label(np.arange(40), labels=digits.tensors[1][:40].numpy())
    model = trained_model(digits, np.arange(40), epochs=5)
    original = _selector._FeatureSelector.score

    def nan_score(self, f, p):
        s = original(self, f, p).clone()
        s[[2, 5]] = float("nan")
        return s

    monkeypatch.setattr(_selector._FeatureSelector, "score", nan_score)
    unlabeled = clean_pool.unlabeled_indices
    with pytest.raises(ValueError, match="in selector scores of 2 item") as err:
        _make(aalearn.AALUSampler).select(model, clean_pool, 5)
    assert f"dataset indices {[int(unlabeled[2]), int(unlabeled[5])]}" in str(err.value)


def test_check_helpers():
    rows = torch.tensor([[0.0, 1.0], [float("-inf"), 0.0], [float("nan"), 0.0]])
    assert nonfinite_rows(rows).tolist() == [False, True, True]
    assert nonfinite_rows(torch.tensor([1.0, float("inf")])).tolist() == [False, True]
    idx = np.arange(100, 120)
    scores = torch.zeros(20)
    scores[[1, 4, 6, 8, 10, 12, 19]] = float("nan")
    with pytest.raises(ValueError, match=re.escape("7 item(s), dataset indices [101, 104, 106")):
        check_finite(scores, idx, "scores")
    check_finite(torch.zeros(20), idx, "scores")  # finite: no error
    check = FiniteCheck()
    check.update(probs=torch.zeros(3, 2), features=None)
    check.update(probs=torch.tensor([[0.0, float("inf")]]), features=None)
    with pytest.raises(ValueError, match=re.escape("probs of 1 item(s), dataset indices [13]")):
        check.check(np.array([10, 11, 12, 13]))
    FiniteCheck().check(np.array([], dtype=np.int64))  # nothing recorded: no error

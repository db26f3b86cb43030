"""One inference configuration: InferenceConfig, every sampler's `inference=`, sklearn clone."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

import aalearn
from aalearn import InferenceConfig

from .conftest import trained_model

SAMPLERS = [
    aalearn.RandomSampler,
    aalearn.UncertaintySampler,
    aalearn.CoreSetSampler,
    aalearn.AALUSampler,
    aalearn.AdversarialSampler,
]
INFERENCE_FIELDS = ("batch_size", "device", "num_workers", "input_fn", "target_fn", "autocast")


@pytest.fixture(scope="module")
def setup(digits):
    pool = aalearn.ActivePool(torch.utils.data.Subset(digits, range(200)))
    pool.label(pool.random_unlabeled(20, random_state=0))
    return trained_model(digits, pool.labeled_indices, epochs=10), pool


@pytest.mark.parametrize("cls", SAMPLERS, ids=lambda c: c.__name__)
def test_every_sampler_takes_inference_and_random_state_only(cls):
    params = inspect.signature(cls.__init__).parameters
    assert "inference" in params and "random_state" in params
    assert not {*INFERENCE_FIELDS, "feature_layer"} & set(params)
    assert params["inference"].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("cls", SAMPLERS, ids=lambda c: c.__name__)
@pytest.mark.slow
def test_sklearn_clone(cls, setup):
    base = pytest.importorskip("sklearn.base")
    model, pool = setup
    trains = cls in (aalearn.AALUSampler, aalearn.AdversarialSampler)
    kwargs = {"epochs": 1, "min_iterations": 0} if trains else {}
    sampler = cls(inference={"device": "cpu", "batch_size": 64}, random_state=3, **kwargs)
    twin = base.clone(sampler)
    assert twin is not sampler and type(twin) is cls
    assert repr(twin) == repr(sampler)
    assert twin.get_params(deep=False) == sampler.get_params(deep=False)
    np.testing.assert_array_equal(twin.select(model, pool, 5), sampler.select(model, pool, 5))


def test_get_params_deep_and_set_params():
    sampler = aalearn.UncertaintySampler("margin", inference={"device": "cpu"})
    shallow = sampler.get_params(deep=False)
    assert shallow == {
        "method": "margin",
        "mc_samples": 20,
        "inference": {"device": "cpu"},
        "random_state": None,
    }
    deep = sampler.get_params()
    assert deep["inference__device"] == "cpu" and deep["inference__batch_size"] == 256
    assert sampler.set_params(method="entropy", inference__batch_size=8) is sampler
    assert sampler.method == "entropy"
    assert sampler.inference == InferenceConfig(device="cpu", batch_size=8)
    with pytest.raises(ValueError, match=r"Invalid parameter 'bogus' for UncertaintySampler"):
        sampler.set_params(bogus=1, method="bald")
    assert sampler.method == "entropy"  # nothing changed
    with pytest.raises(TypeError, match=r"Unexpected inference argument\(s\) \['size'\]"):
        sampler.set_params(inference__size=3)


def test_dict_and_config_give_the_same_picks(setup):
    model, pool = setup
    as_dict = aalearn.CoreSetSampler(inference={"batch_size": 16, "device": "cpu"})
    as_config = aalearn.CoreSetSampler(inference=InferenceConfig(batch_size=16, device="cpu"))
    np.testing.assert_array_equal(as_dict.select(model, pool, 7), as_config.select(model, pool, 7))
    assert as_dict.inference_ == as_config.inference_
    assert (
        repr(as_config) == "CoreSetSampler(inference=InferenceConfig(batch_size=16, device='cpu'))"
    )


def test_bad_inference_argument_raises_at_select(setup):
    model, pool = setup
    with pytest.raises(TypeError, match=r"Unexpected inference argument\(s\) \['batchsize'\]; the"):
        aalearn.UncertaintySampler(inference={"batchsize": 4}).select(model, pool, 3)
    with pytest.raises(TypeError, match="`inference` to be an aalearn.InferenceConfig, a dict"):
        aalearn.UncertaintySampler(inference=4).select(model, pool, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`inference` to be an aalearn.InferenceConfig"):
        aalearn.RandomSampler(inference=[1]).select(None, pool, 3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"batch_size": 0}, ValueError, r"`batch_size` to be >= 1, but got 0"),
        ({"num_workers": -1}, ValueError, r"`num_workers` to be >= 0, but got -1"),
        ({"device": 3}, TypeError, r"`device` to be None, a str or a torch.device"),
        ({"output_fn": 1}, TypeError, r"`output_fn` to be callable or None"),
        ({"outputs": "softmax"}, ValueError, r"`outputs` to be one of \['logits', 'probs'"),
        ({"feature_source": "in"}, ValueError, r"`feature_source` to be one of \['input'"),
        ({"feature_pooling": "max"}, ValueError, r"`feature_pooling` to be one of \['avg'"),
        ({"label_key": 1}, TypeError, r"`label_key` to be a str or None, but got int"),
        ({"autocast": 1}, TypeError, r"`autocast` to be a bool, but got int"),
    ],
)
def test_config_validation(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        InferenceConfig(**kwargs)


def test_config_is_frozen_and_collect_takes_it(digits):
    cfg = InferenceConfig(batch_size=4, device="cpu")
    with pytest.raises(AttributeError):
        cfg.batch_size = 8  # type: ignore[misc]
    sizes: list[int] = []
    model = trained_model(digits, np.arange(20), epochs=1)
    aalearn.stream(
        model, digits, np.arange(10), lambda o: sizes.append(len(o.indices)), inference=cfg
    )
    assert sizes == [4, 4, 2]
    sizes.clear()
    aalearn.stream(
        model, digits, np.arange(10), lambda o: sizes.append(len(o.indices)), inference=cfg,
        batch_size=3,
    )  # fmt: skip
    assert sizes == [3, 3, 3, 1]

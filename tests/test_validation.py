"""Declared parameter constraints: one rule per concept, checked by the base class."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

import aalearn
from aalearn._validation import (
    Bool,
    FlagOrCallable,
    Int,
    Options,
    Real,
    Widths,
    check_bool,
    check_options,
    validate_params,
)
from aalearn.networks import Assistant, ConvVAE, FeatureVAE
from aalearn.samplers.base import BaseSampler


def _sampler_classes() -> list[type]:
    seen, todo = [], [BaseSampler]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("aalearn.") and sub not in seen:
                seen.append(sub)
                todo.append(sub)
    return [c for c in seen if not inspect.isabstract(c) and "_select" in _own_or_inherited(c)]


def _own_or_inherited(cls: type) -> set[str]:
    return {name for klass in cls.__mro__ if klass is not BaseSampler for name in vars(klass)}


@pytest.mark.parametrize("cls", _sampler_classes(), ids=lambda c: c.__name__)
def test_every_parameter_of_every_sampler_has_a_declared_constraint(cls):
    params = cls._param_names()
    assert set(cls._constraints()) == set(params), set(params) - set(cls._constraints())


@pytest.mark.parametrize(
    ("rule", "value", "expected"),
    [
        (Int(1), np.int64(3), 3),
        (Int(1), np.uint8(2), 2),
        (Int(0, none=True), None, None),
        (Real(0, low_open=True), np.float32(0.5), 0.5),
        (Real(0), np.int32(2), 2.0),
        (Options(("a", "b")), "b", "b"),
        (Bool(), np.bool_(True), True),
        (Bool(none=True), None, None),
        (Widths(), [np.int64(4), 2], (4, 2)),
        (FlagOrCallable(), print, print),
    ],
)
def test_constraints_accept_and_normalise(rule, value, expected):
    out = rule.check(value, "x")
    assert out == expected
    if isinstance(expected, int) and not isinstance(expected, bool):
        assert type(out) is int  # NumPy integers become Python ints


@pytest.mark.parametrize(
    ("rule", "value", "exc", "match"),
    [
        (Int(1), 1.5, TypeError, r"`x` to be an integer, but got float \(1.5\)"),
        (Int(1), True, TypeError, "`x` to be an integer, but got bool"),
        (Int(1), 0, ValueError, r"`x` to be >= 1, but got 0\."),
        (Int(0, 3), np.int64(4), ValueError, r"`x` to be <= 3, but got 4\."),
        (Int(1), None, TypeError, "`x` to be an integer, but got NoneType"),
        (Real(0, low_open=True), 0.0, ValueError, r"`x` to be > 0, but got 0.0"),
        (Real(0), "1", TypeError, "`x` to be a real number"),
        (Real(0), float("inf"), ValueError, "`x` to be finite"),
        (Options(("a", "b")), "c", ValueError, r"`x` to be one of \['a', 'b'\], but got 'c'"),
        (Options(("a", "b")), 3, TypeError, r"`x` to be a str, one of \['a', 'b'\], but got int"),
        (Bool(), 1, TypeError, r"`x` to be a bool, but got int\."),
        (Bool(none=True), "no", TypeError, r"`x` to be a bool or None, but got str\."),
        (Widths(), "64", TypeError, "`x` to be a sequence of positive ints"),
        (Widths(), (), ValueError, "`x` to hold at least one width"),
        (Widths(), (8, 0), ValueError, r"`x` to be >= 1, but got 0"),
        (FlagOrCallable(), "log", TypeError, "`x` to be a bool, a callable or None"),
    ],
)
def test_constraints_raise_type_error_for_types_and_value_error_for_values(rule, value, exc, match):
    with pytest.raises(exc, match=match):
        rule.check(value, "x")


def test_check_helpers_and_validate_params_change_nothing():
    assert check_bool(False, "b") is False
    assert check_options("y", "o", ("x", "y")) == "y"

    class Obj:
        a = np.int64(2)
        b = "x"

    obj = Obj()
    assert validate_params(obj, {"a": Int(1), "b": Options(("x",))}) == {"a": 2, "b": "x"}
    assert type(obj.a) is np.int64  # normalised values are returned, not written back


def test_networks_take_numpy_ints_and_raise_the_shared_errors():
    vae = FeatureVAE(np.int64(6), latent_dim=np.int32(3), hidden=(np.int64(8),))
    assert vae(torch.randn(4, 6))[0].shape == (4, 6)
    assert ConvVAE(np.int64(1), np.int64(4), np.int64(8), np.int64(4))
    with pytest.raises(TypeError, match="`in_features` to be an integer"):
        FeatureVAE(6.0)
    with pytest.raises(ValueError, match=r"`hidden` to be >= 1, but got -1"):
        Assistant(4, hidden=(8, -1))


def test_samplers_accept_numpy_integers_wherever_ints_are_taken(digits):
    from torch.utils.data import Subset

    pool = aalearn.ActivePool(Subset(digits, range(120)))
    pool.label(np.arange(0, 120, 3))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    sampler = aalearn.AALUSampler(
        epochs=np.int64(1),
        min_iterations=np.int64(0),
        selector_batch_size=np.int64(16),
        latent_dim=np.int64(4),
        hidden=(np.int64(8),),
        inference={"device": "cpu", "batch_size": np.int64(32)},
        random_state=np.int64(0),
    )
    assert sampler.select(model, pool, np.int64(5)).shape == (5,)
    batchbald = aalearn.BatchBALDSampler(mc_samples=np.int64(2), num_samples=np.int64(10))
    assert batchbald._validate_params()["mc_samples"] == 2


def test_a_failed_validation_changes_nothing(digits):
    from torch.utils.data import Subset

    pool = aalearn.ActivePool(Subset(digits, range(60)))
    pool.label(np.arange(0, 60, 3))
    sampler = aalearn.AALUSampler(batch="random")
    before = dict(vars(sampler))
    state = pool.state_dict()
    with pytest.raises(ValueError, match="`batch` to be one of"):
        sampler.select(torch.nn.Linear(64, 10), pool, 3)
    assert vars(sampler) == before
    for key, value in state.items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(pool.state_dict()[key]))

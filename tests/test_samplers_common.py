"""One conformance suite over every sampler aalearn ships (the Sampler contract).

The samplers are found by walking the subclasses of :class:`aalearn.BaseSampler`
(:func:`aalearn.testing.all_samplers`), so a new one is covered without being
listed here, and each runs :func:`aalearn.testing.check_sampler` once per entry of
its ``_test_params`` (cheap settings declared on the class): ``budget`` unique
unlabeled int64 indices, deterministic under a seed, the model (parameters and
every training flag), the pool and the global RNGs left unchanged, the same
messages for bad budgets, pools and models, the non-finite policy, a prefix for a
smaller budget where the ``ranking`` flag says so, and clone / get_params /
set_params. What each check asserts is in ``aalearn/testing/_checks.py``.
"""

from __future__ import annotations

import inspect

import pytest

import aalearn
from aalearn.samplers import AALU_VARIANTS
from aalearn.testing import all_samplers, check_sampler

from .conftest import DEVICES

SAMPLERS = all_samplers()


def _exported_sampler_classes() -> list[type]:
    """Every concrete sampler class that :mod:`aalearn.samplers` exports."""
    found = []
    for name in aalearn.samplers.__all__:
        obj = getattr(aalearn.samplers, name)
        if (
            inspect.isclass(obj)
            and obj not in (aalearn.BaseSampler, aalearn.Sampler)
            and not inspect.isabstract(obj)  # bases such as SelectorSampler
            and callable(getattr(obj, "select", None))
        ):
            found.append(obj)
    return found


def test_discovery_finds_every_exported_sampler():
    classes = _exported_sampler_classes()
    assert aalearn.BADGESampler in classes and aalearn.RandomSampler in classes
    found = {cls for _, cls in SAMPLERS}
    missing = [c.__name__ for c in classes if c not in found]
    assert not missing, f"samplers exported but not found by all_samplers(): {missing}"
    assert aalearn.BaseSampler not in found
    assert [name for name, _ in SAMPLERS] == sorted(cls.__name__ for cls in found)


def test_test_params_cover_every_configuration():
    """The configurations the hand-kept FACTORIES list covered, now declared on the classes."""
    methods = {p.get("method", "entropy") for p in aalearn.UncertaintySampler._test_params}
    assert methods == set(aalearn.UncertaintySampler.methods)
    assert {p["variant"] for p in aalearn.AALUSampler._test_params} == set(AALU_VARIANTS)
    representations = {p["representation"] for p in aalearn.AdversarialSampler._test_params}
    assert representations == {"features", "raw"}
    modes = {p["mode"] for p in aalearn.StochasticBatchSampler._test_params}
    assert modes == set(aalearn.StochasticBatchSampler.modes)
    assert any("max_candidates" in p for p in aalearn.BatchBALDSampler._test_params)
    total = sum(len(cls._test_params) for _, cls in SAMPLERS)
    assert total >= 19  # as many as the former FACTORIES had


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cls", [cls for _, cls in SAMPLERS], ids=[name for name, _ in SAMPLERS])
def test_check_sampler(cls, device):
    check_sampler(cls, device=device)

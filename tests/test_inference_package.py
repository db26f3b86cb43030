"""The inference package's one-definition rules: request, output fields, config, label keys."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import aalearn
import aalearn.pool
from aalearn.inference import (
    OUTPUT_FIELDS,
    InferenceConfig,
    InferenceOutputs,
    PassRequest,
    collect,
    resolve_config,
)
from aalearn.inference.adapters import DEFAULT_LABEL_KEYS
from aalearn.inference.outputs import FINITE_FIELDS

ROOT = Path(aalearn.__file__).parent


def _data(n: int = 12) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 4, generator=g), torch.arange(n) % 3)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))


def test_output_fields_are_the_outputs_dataclass_fields():
    assert OUTPUT_FIELDS == ("probs", "features", "losses", "mc_probs", "inputs")
    assert OUTPUT_FIELDS == tuple(f.name for f in dataclasses.fields(InferenceOutputs))[1:]
    assert FINITE_FIELDS == ("probs", "features", "mc_probs")
    assert not hasattr(InferenceOutputs(indices=np.arange(2)), "extras")


def test_collect_fills_every_output_field_it_is_asked_for():
    out = collect(
        _model(), _data(), np.arange(12), features=True, losses=True, inputs=True,
        mc_samples=2, batch_size=5, device="cpu",
    )  # fmt: skip
    shapes = {name: tuple(getattr(out, name).shape) for name in OUTPUT_FIELDS}
    assert shapes == {
        "probs": (12, 3),
        "features": (12, 8),
        "losses": (12,),
        "mc_probs": (12, 2, 3),
        "inputs": (12, 4),
    }


def test_pass_request_is_frozen_and_validated():
    request = PassRequest(features=True, mc_samples=np.int64(3))
    assert request.mc_samples == 3 and type(request.mc_samples) is int
    assert request.deterministic and not PassRequest(probs=False, mc_samples=2).deterministic
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.probs = False
    with pytest.raises(ValueError, match="`mc_samples` to be >= 0, but got -1"):
        PassRequest(mc_samples=-1)
    with pytest.raises(TypeError, match="`mc_samples` to be an integer"):
        PassRequest(mc_samples=1.5)


def test_resolve_config_is_the_one_override_channel():
    base = InferenceConfig(batch_size=8)
    assert resolve_config(base) is base
    assert resolve_config(base, device="cpu") == InferenceConfig(batch_size=8, device="cpu")
    assert resolve_config({"batch_size": 8}) == base
    assert resolve_config() == InferenceConfig()
    with pytest.raises(TypeError, match=r"Unexpected inference argument\(s\) \['batchsize'\]"):
        resolve_config(base, batchsize=4)


def test_collect_options_override_inference():
    data, model = _data(), _model()
    sizes: list[int] = []
    aalearn.stream(
        model, data, np.arange(12), lambda out: sizes.append(len(out.indices)),
        inference={"batch_size": 8, "device": "cpu"}, batch_size=5,
    )  # fmt: skip
    assert sizes == [5, 5, 2]


class _PassesConfigField(aalearn.BaseSampler):
    """Hands a configuration field to ``_collect``, which takes request fields only."""

    def _select(self, model, pool, budget, rng):
        self._collect(model, pool, pool.unlabeled_indices, features=True, feature_layer="0")
        return pool.unlabeled_indices[:budget]


def test_sampler_plumbing_takes_request_fields_only():
    pool = aalearn.ActivePool(_data())
    pool.label([0])  # a model-based sampler refuses a pool with no label
    with pytest.raises(TypeError, match="feature_layer"):
        _PassesConfigField(inference={"device": "cpu"}).select(_model(), pool, 2)


def test_label_keys_are_defined_once():
    assert aalearn.pool.DEFAULT_LABEL_KEYS is DEFAULT_LABEL_KEYS


@pytest.mark.parametrize("package", ["inference", "distributed"])
def test_package_modules_stay_small(package: str):
    for path in sorted((ROOT / package).glob("*.py")):
        n = len(path.read_text().splitlines())
        assert n <= 400, f"{path.name} has {n} lines"

"""The single inference pass: values against direct computation, modes, hooks, errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aalearn.inference import (
    collect,
    find_feature_layer,
    inference_device,
    preserve_mode,
    stream,
)

from .conftest import DEVICES, TinyNet


@pytest.mark.parametrize("device", DEVICES)
def test_collect_matches_direct_forward(digits, tiny_model, device):
    idx = np.array([5, 0, 17, 3, 100, 42, 7])
    model = copy.deepcopy(tiny_model).to(device)
    out = collect(model, digits, idx, features=True, losses=True, batch_size=3, device=device)
    x, y = digits.tensors[0][idx], digits.tensors[1][idx]
    tiny_model.eval()
    with torch.no_grad():
        feats = tiny_model.body(x.flatten(1))
        logits = tiny_model.fc(feats)
    np.testing.assert_array_equal(out.indices, idx)
    torch.testing.assert_close(out.probs.cpu(), logits.softmax(-1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.features.cpu(), feats, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        out.losses.cpu(), F.cross_entropy(logits, y, reduction="none"), rtol=1e-5, atol=1e-6
    )
    assert out.probs.device.type == device
    assert out.mc_probs is None and out.inputs is None


def test_labels_override_dataset_targets(digits, tiny_model):
    idx = np.array([1, 2, 3])
    labels = np.array([9, -1, 0])  # -1: use the dataset's target
    out = collect(tiny_model, digits, idx, losses=True, labels=labels, device="cpu")
    tiny_model.eval()
    with torch.no_grad():
        logits = tiny_model(digits.tensors[0][idx])
    y = torch.tensor([9, int(digits.tensors[1][2]), 0])
    torch.testing.assert_close(out.losses, F.cross_entropy(logits, y, reduction="none"))


def test_results_are_trainable_tensors(digits, tiny_model):
    out = collect(tiny_model, digits, np.arange(8), features=True, device="cpu")
    assert not out.features.is_inference()
    head = nn.Linear(out.features.shape[1], 2)
    head(out.features).sum().backward()  # would fail on an inference tensor
    assert head.weight.grad is not None


def test_training_flags_are_restored_exactly(digits, tiny_model):
    tiny_model.train()
    tiny_model.body[2].eval()  # a mixed state must come back as it was
    flags = [m.training for m in tiny_model.modules()]
    collect(tiny_model, digits, np.arange(10), mc_samples=3, features=True, device="cpu")
    assert [m.training for m in tiny_model.modules()] == flags


def test_restores_flags_when_the_model_raises(digits):
    class Boom(TinyNet):
        def forward(self, x):
            raise RuntimeError("boom")

    model = Boom()
    model.train()
    with pytest.raises(RuntimeError, match="boom"):
        collect(model, digits, np.arange(4), device="cpu")
    assert all(m.training for m in model.modules())


def test_mc_dropout_passes_differ_and_batchnorm_stays_in_eval(digits, tiny_model):
    # train-mode batch norm would use batch statistics: a batch of one would be NaN/constant
    torch.manual_seed(0)
    out = collect(tiny_model, digits, np.arange(6), mc_samples=5, batch_size=1, device="cpu")
    assert out.mc_probs.shape == (6, 5, 10)
    assert torch.isfinite(out.mc_probs).all()
    assert not torch.allclose(out.mc_probs[:, 0], out.mc_probs[:, 1])
    torch.testing.assert_close(out.mc_probs.sum(-1), torch.ones(6, 5))
    # the deterministic probabilities are the eval-mode ones, unaffected by MC passes
    ref = collect(tiny_model, digits, np.arange(6), device="cpu")
    torch.testing.assert_close(out.probs, ref.probs)


def test_named_feature_layer_and_inputs(digits, tiny_model):
    out = collect(
        tiny_model,
        digits,
        np.arange(4),
        features=True,
        inputs=True,
        feature_layer="body.2",
        device="cpu",
        probs=False,
    )
    with torch.no_grad():
        ref = tiny_model.body[1](tiny_model.body[0](digits.tensors[0][:4].flatten(1)))
    torch.testing.assert_close(out.features, ref)
    torch.testing.assert_close(out.inputs, digits.tensors[0][:4])
    assert out.probs is None


def test_feature_layer_errors(digits):
    model = TinyNet()
    assert find_feature_layer(model, "fc") is model.fc
    with pytest.raises(ValueError, match=r"name a module of the model, but got 'bdy.0'; close "
                       r"matches: \['body.0'"):  # fmt: skip
        find_feature_layer(model, "bdy.0")
    with pytest.raises(ValueError, match="the last nn.Linear called during the forward pass, "
                       "but the model called none"):  # fmt: skip
        collect(nn.Sequential(nn.Flatten(), nn.Identity()), digits, np.arange(4), features=True)


def test_stream_batches_and_argument_errors(digits, tiny_model):
    sizes = []
    stream(
        tiny_model,
        digits,
        np.arange(10),
        lambda o: sizes.append(len(o.indices)),
        batch_size=4,
        device="cpu",
    )
    assert sizes == [4, 4, 2]
    with pytest.raises(ValueError, match="`batch_size` to be >= 1, but got 0"):
        collect(tiny_model, digits, np.arange(3), batch_size=0)
    with pytest.raises(TypeError, match="`model` to be a torch.nn.Module"):
        collect(lambda x: x, digits, np.arange(3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`labels` to match `indices`"):
        collect(tiny_model, digits, np.arange(3), losses=True, labels=np.zeros(2))
    with pytest.raises(ValueError, match="`device` to be a valid torch device"):
        collect(tiny_model, digits, np.arange(3), device="gpu-please")


def test_preserve_mode_context():
    model = TinyNet()
    model.train()
    with preserve_mode(model):
        model.eval()
    assert model.training and model.fc.training


def test_device_none_follows_the_model():
    assert inference_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert inference_device(nn.Linear(2, 2, device="meta")) == torch.device("meta")
    only_buffers = nn.BatchNorm1d(2, affine=False).to("meta")
    assert inference_device(only_buffers) == torch.device("meta")
    assert inference_device(nn.ReLU(), "cpu") == torch.device("cpu")  # no parameters


def test_device_mismatch_is_a_clear_error_before_any_work(digits, tiny_model):
    calls = []
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10, device="meta"))
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    msg = r"Expected the model to be on `device` \(cpu\), but its parameters are on meta"
    with pytest.raises(ValueError, match=msg):
        collect(model, digits, np.arange(4), device="cpu")
    with pytest.raises(ValueError, match=r"model.to\('meta'\)"):
        inference_device(tiny_model, "meta")
    assert calls == []

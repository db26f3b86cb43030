"""One dropout detection, and consistent MC dropout (the same K masks for every item)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import aalearn
from aalearn.mc_dropout import consistent_mc_dropout, dropout_modules

from .conftest import DEVICES

DROPOUTS = [
    nn.Dropout(0.3),
    nn.Dropout1d(0.3),
    nn.Dropout2d(0.3),
    nn.Dropout3d(0.3),
    nn.AlphaDropout(0.3),
    nn.FeatureAlphaDropout(0.3),
]


def test_dropout_modules_finds_every_kind_and_nothing_else():
    model = nn.Sequential(nn.Linear(2, 2), *DROPOUTS, nn.BatchNorm1d(2), nn.ReLU())
    assert dropout_modules(model) == DROPOUTS
    assert dropout_modules(nn.Sequential(nn.Linear(2, 2), nn.ReLU())) == []


class _SeluNet(nn.Module):
    """Its only dropout is FeatureAlphaDropout, which inference.py missed before."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 32), nn.SELU())
        self.drop = nn.FeatureAlphaDropout(0.3)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.body(x.flatten(1))))


def test_bald_sees_feature_alpha_dropout(digits):
    torch.manual_seed(0)
    pool = aalearn.ActivePool(torch.utils.data.Subset(digits, range(100)))
    pool.label([0])  # a model-based sampler refuses a pool with no label
    sampler = aalearn.UncertaintySampler(
        "bald", mc_samples=8, inference={"device": "cpu"}, random_state=0
    )
    scores = sampler.score(_SeluNet(), pool)
    assert scores.shape == (99,)
    assert (scores > 1e-4).mean() > 0.9  # all 0 when the layer stayed in eval mode


def _mc(model, x, k, batch_size, seed=0):
    data = TensorDataset(x, torch.zeros(len(x), dtype=torch.long))
    with consistent_mc_dropout(model, k, seed=seed):
        out = aalearn.collect(
            model, data, np.arange(len(x)), probs=False, mc_samples=k, batch_size=batch_size
        )
    return out.mc_probs


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layer", ["Dropout", "Dropout1d", "AlphaDropout", "FeatureAlphaDropout"])
def test_every_item_sees_the_same_masks(device, layer):
    torch.manual_seed(0)
    seq = layer.endswith("1d")
    model = nn.Sequential(
        nn.Unflatten(1, (4, 4)) if seq else nn.Identity(),
        getattr(nn, layer)(0.5),
        nn.Flatten(),
        nn.Linear(16, 3),
    ).to(device)
    x = torch.randn(12, 16, device=device)
    x[7] = x[2]  # a copy, in another batch
    a = _mc(model, x, 6, batch_size=5)
    b = _mc(model, x.flip(0), 6, batch_size=4).flip(0)  # other batches, other positions
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[7], a[2])
    assert not torch.allclose(a[:, 0], a[:, 1])  # masks differ between passes
    assert not torch.allclose(a, _mc(model, x, 6, batch_size=5, seed=1))


def test_mask_laws():
    x = torch.ones(1, 20000)
    drop = nn.Dropout(0.3).train()
    with consistent_mc_dropout(drop, 1):
        y = drop(x)
    np.testing.assert_allclose(np.unique(y.numpy()), [0.0, 1 / 0.7], rtol=1e-6)
    assert abs((y == 0).float().mean().item() - 0.3) < 0.02
    chan = nn.Dropout2d(0.5).train()
    with consistent_mc_dropout(chan, 1):
        z = chan(torch.ones(3, 400, 2, 2))
    per_channel = z[0].reshape(400, 4)
    assert ((per_channel == 0).all(1) | (per_channel == 2).all(1)).all()
    assert torch.equal(z[0], z[2])  # one mask, broadcast over the batch
    alpha = nn.AlphaDropout(0.2).train()
    with consistent_mc_dropout(alpha, 1):
        w = alpha(torch.randn(1, 200000, generator=torch.Generator().manual_seed(0)))
    assert abs(w.mean().item()) < 0.02 and abs(w.std().item() - 1) < 0.02  # self-normalising


def test_restores_the_modules_and_leaves_the_global_rng():
    drop = nn.Dropout(0.5)
    own = nn.Dropout(0.5)
    own.forward = lambda x: x + 1  # a user's own patch survives
    model = nn.Sequential(nn.Linear(3, 3), drop, own)
    before = [dict(m.__dict__) for m in model.modules()]
    rng = torch.random.get_rng_state()
    with pytest.raises(RuntimeError, match="inside"):
        with consistent_mc_dropout(model, 3) as mc:
            assert mc.modules == [drop, own] and "forward" in drop.__dict__
            model.train()(torch.ones(2, 3))
            raise RuntimeError("inside")
    model.eval()
    for m, old in zip(model.modules(), before):
        assert m.__dict__.keys() == old.keys()
        assert m.__dict__.get("forward") is old.get("forward")
    assert torch.equal(torch.random.get_rng_state(), rng)
    with pytest.raises(ValueError, match="Expected argument `num_samples` to be >= 1"):
        with consistent_mc_dropout(model, 0):
            pass


def test_eval_mode_layers_stay_the_identity():
    drop = nn.Dropout(0.9).eval()
    x = torch.randn(4, 5)
    with consistent_mc_dropout(drop, 2) as mc:
        assert torch.equal(drop(x), x)
        assert mc._calls == [0]

"""BADGE: factorised distances against the explicit gradient embedding; diversity on copies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import aalearn
from aalearn.functional import badge

from .conftest import DEVICES, trained_model


def _explicit_badge(features, probs, k, generator):
    """k-means++ seeding on the explicit (N, C * D) embedding, in float64 NumPy.

    The draws read the generator as ``badge`` documents it: one float64 uniform per
    pick after the first, inverse CDF over the squared distances.
    """
    h = features.double().cpu().numpy()
    p = probs.double().cpu().numpy()
    q = -p
    q[np.arange(len(p)), p.argmax(1)] += 1.0
    g = (q[:, :, None] * h[:, None, :]).reshape(len(p), -1)
    picks = [int(np.argmax((g**2).sum(1)))]
    d2 = ((g - g[picks[0]]) ** 2).sum(1)
    for _ in range(1, k):
        u = torch.rand(1, generator=generator, dtype=torch.float64).item()
        cdf = np.cumsum(d2)
        i = int(np.searchsorted(cdf, u * cdf[-1], side="right"))
        picks.append(i)
        d2 = np.minimum(d2, ((g - g[i]) ** 2).sum(1))
    return picks


def _inputs(n, c, d, seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n, d, generator=gen, dtype=dtype)
    probs = torch.randn(n, c, generator=gen, dtype=dtype).mul(2).softmax(1)
    return features, probs


@pytest.mark.parametrize(("n", "c", "d", "k"), [(200, 5, 8, 40), (60, 2, 3, 60), (300, 10, 16, 25)])
def test_factorised_equals_explicit_embedding(n, c, d, k):
    features, probs = _inputs(n, c, d, seed=n)
    expected = _explicit_badge(features, probs, k, torch.Generator().manual_seed(7))
    got = badge(features, probs, k, generator=torch.Generator().manual_seed(7))
    assert got.dtype == torch.int64 and got.tolist() == expected
    # float32 inputs: same picks (distances agree to rounding, far from any boundary)
    got32 = badge(features.float(), probs.float(), k, generator=torch.Generator().manual_seed(7))
    assert got32.tolist() == expected


@pytest.mark.parametrize("device", DEVICES)
def test_copies_are_not_picked_twice(device):
    features, probs = _inputs(40, 4, 6, seed=1, dtype=torch.float32)
    features, probs = features.repeat(5, 1).to(device), probs.repeat(5, 1).to(device)
    picks = badge(features, probs, 40, generator=torch.Generator(device).manual_seed(0))
    assert picks.device.type == device
    assert sorted((picks % 40).tolist()) == list(range(40))  # never two copies of one item
    everything = badge(features, probs, 200, generator=torch.Generator(device).manual_seed(0))
    assert sorted(everything.tolist()) == list(range(200))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_copies_of_a_pick_have_draw_weight_zero(dtype, monkeypatch):
    """The documented claim, exactly: every D^2 draw gives copies of a pick weight 0.

    The factorised distance of a copy leaves a rounding residue (up to 5e-7 of the draw's
    mass in float32 and 1e-18 in float64 before it was zeroed). Items near a pick but
    not copies (1 % apart) keep a positive weight.
    """
    import aalearn.functional.badge_seeding as seeding

    features, probs = _inputs(30, 10, 16, seed=4, dtype=dtype)
    features = features.mul(3).repeat(3, 1)
    probs = probs.repeat(3, 1)
    features[60:] *= 1.01  # the third "copy" of each item is a near neighbour, not a copy
    draws = []
    real_draw = seeding._d2_draw

    def spy(weights, chosen, generator):
        draws.append((weights.clone(), chosen.clone()))
        return real_draw(weights, chosen, generator)

    monkeypatch.setattr(seeding, "_d2_draw", spy)
    picks = badge(features, probs, 30, generator=torch.Generator().manual_seed(0))
    assert len(draws) == 29
    rows = torch.arange(90)
    twin = torch.where(rows < 60, (rows + 30) % 60, rows)  # rows i and i + 30 are equal
    for weights, chosen in draws:
        copies = (rows < 60) & ~chosen & chosen[twin]  # an exact copy of a pick
        assert (weights[copies] == 0).all(), weights[copies]
        assert (weights[~copies & ~chosen] > 0).all()  # the rest, near neighbours included
    exact = picks[picks < 60] % 30
    assert len(set(exact.tolist())) == len(exact)


def test_deterministic_and_edge_cases():
    features, probs = _inputs(30, 3, 4, seed=2)
    a = badge(features, probs, 10, generator=torch.Generator().manual_seed(3))
    b = badge(features, probs, 10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert badge(features, probs, 0).shape == (0,)
    first = int(((probs.argmax(1, keepdim=True) == torch.arange(3)).double() - probs)
                .square().sum(1).mul(features.square().sum(1)).argmax())  # fmt: skip
    assert badge(features, probs, 1).tolist() == [first]


def test_badge_validation():
    features, probs = _inputs(5, 3, 4, seed=0)
    with pytest.raises(TypeError, match="`features` to be a torch.Tensor"):
        badge(features.numpy(), probs, 2)
    with pytest.raises(ValueError, match="`probs` to be a 2-D floating point tensor"):
        badge(features, probs[:, 0], 2)
    with pytest.raises(ValueError, match="same number of rows, but got 5 and 4"):
        badge(features, probs[:4], 2)
    with pytest.raises(ValueError, match=r"`k` to be at most the number of rows \(5\), but got 6"):
        badge(features, probs, 6)
    with pytest.raises(ValueError, match="`k` to be >= 0"):
        badge(features, probs, -1)
    with pytest.raises(TypeError, match="`generator` to be a torch.Generator"):
        badge(features, probs, 2, generator=0)


@pytest.fixture(scope="module")
def repeated(digits):
    """60 digits, each present 5 times (dataset index = copy * 60 + item)."""
    x, y = digits.tensors
    base = torch.arange(60) + 500
    data = torch.utils.data.TensorDataset(x[base].repeat(5, 1, 1, 1), y[base].repeat(5))
    model = trained_model(digits, np.arange(100), epochs=20)
    pool = aalearn.ActivePool(data)
    pool.label(np.arange(0, 300, 60))  # all copies of one item: samplers need a label
    return model, pool


def test_sampler_picks_no_two_copies(repeated):
    model, pool = repeated
    picked = aalearn.BADGESampler(inference={"device": "cpu"}, random_state=0).select(
        model, pool, 30
    )
    assert len(set((picked % 60).tolist())) >= 29
    top = aalearn.UncertaintySampler("entropy", inference={"device": "cpu"}).select(model, pool, 30)
    assert len(set((top % 60).tolist())) <= 6  # top-k takes whole groups of copies

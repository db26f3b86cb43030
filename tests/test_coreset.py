"""k-center greedy against a brute-force reference, and the Core-Set sampler."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

import aalearn
from aalearn.functional.coreset import k_center_greedy
from aalearn.inference import collect
from aalearn.samplers.coreset import CoreSetSampler

from .conftest import DEVICES, trained_model


def brute_force_k_center(x: np.ndarray, centers: np.ndarray, budget: int) -> list[int]:
    """Reference: the full float64 distance matrix, the rule written out step by step."""
    x = x.astype(np.float64)
    dist = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    chosen = list(np.flatnonzero(centers))
    picks: list[int] = []
    if not chosen:  # no center: the point farthest from the mean goes first
        first = int(np.argmax(np.sqrt(((x - x.mean(0)) ** 2).sum(1))))
        picks.append(first)
        chosen.append(first)
    while len(picks) < budget:
        nearest = dist[:, chosen].min(axis=1)
        nearest[chosen] = -np.inf
        best = int(np.flatnonzero(nearest == nearest.max())[0])  # ties: smallest position
        picks.append(best)
        chosen.append(best)
    return picks


def _random_case(seed: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 60))
    d = int(rng.integers(1, 6))
    if kind == "gauss":
        x = rng.normal(size=(n, d))
    else:  # small integers: many exact ties, arithmetic exact in float32
        x = rng.integers(0, 3, size=(n, d)).astype(np.float64)
        dup = rng.integers(0, n, size=n // 3)
        x[rng.integers(0, n, size=n // 3)] = x[dup]  # duplicate points
    n_centers = int(rng.integers(0, n // 2))
    centers = np.zeros(n, dtype=bool)
    centers[rng.choice(n, n_centers, replace=False)] = True
    return x, centers


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["gauss", "grid"])
@pytest.mark.slow
def test_matches_brute_force(device, kind):
    for seed in range(30):
        x, centers = _random_case(seed, kind)
        if kind == "grid" and not centers.any():
            x = x[: 2 ** int(np.log2(len(x)))]  # power-of-2 rows: the mean is exact
            centers = centers[: len(x)]
        budget = int((~centers).sum()) if seed % 2 else int((~centers).sum()) // 2
        dtype = torch.float64 if kind == "gauss" else torch.float32
        feats = torch.tensor(x, dtype=dtype, device=device)
        mask = torch.tensor(centers, device=device)
        expected = brute_force_k_center(x, centers, budget)
        for chunk_size in (3, 7, None):
            got = k_center_greedy(feats, mask, budget, chunk_size=chunk_size)
            assert got.dtype == torch.int64 and got.device.type == device
            assert got.tolist() == expected, (seed, chunk_size)


def test_ties_and_duplicates_exact():
    # every point duplicated: after the distinct ones, all remaining are at 0 and
    # must come in increasing position order.
    base = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 4.0]])
    x = np.concatenate([base, base, base])
    centers = np.zeros(12, dtype=bool)
    centers[0] = True
    got = k_center_greedy(torch.tensor(x), torch.tensor(centers), 11, chunk_size=5)
    assert got.tolist() == brute_force_k_center(x, centers, 11)
    assert got.tolist() == [3, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11]


def test_chunk_size_does_not_change_result():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 32, generator=g)
    mask = torch.zeros(3000, dtype=torch.bool)
    mask[torch.randperm(3000, generator=g)[:700]] = True
    ref = k_center_greedy(x, mask, 150)  # default: 1024 rows on CPU
    for chunk_size in (50, 333, 1000, 4096):
        assert torch.equal(k_center_greedy(x, mask, 150, chunk_size=chunk_size), ref)


def test_first_pick_and_generator():
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(1))
    none = torch.zeros(40, dtype=torch.bool)
    far = int((x - x.mean(0)).norm(dim=1).argmax())
    assert int(k_center_greedy(x, none, 1)[0]) == far
    a = k_center_greedy(x, none, 10, generator=torch.Generator().manual_seed(5))
    b = k_center_greedy(x, none, 10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert int(a[0]) == int(torch.randint(40, (1,), generator=torch.Generator().manual_seed(5)))
    centers = torch.zeros(40, dtype=torch.bool)
    centers[a[0]] = True
    assert torch.equal(k_center_greedy(x, centers, 9), a[1:])


def test_dtypes_metric_and_edge_cases():
    x = torch.randint(0, 5, (30, 4))
    mask = torch.zeros(30, dtype=torch.bool)
    mask[:5] = True
    expected = k_center_greedy(x.double(), mask, 10)
    assert torch.equal(k_center_greedy(x, mask, 10), expected)  # int features -> float32
    assert k_center_greedy(x.float(), mask, 0).shape == (0,)
    assert sorted(k_center_greedy(x.float(), mask, 25).tolist()) == list(range(5, 30))
    # cosine == euclidean on L2-normalised rows; scaling a row does not change it
    y = torch.randn(30, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    scaled = y * torch.linspace(1, 7, 30, dtype=torch.float64)[:, None]
    cos = k_center_greedy(scaled, mask, 10, metric="cosine")
    assert cos.tolist() == brute_force_k_center(
        (y / y.norm(dim=1, keepdim=True)).numpy(), mask.numpy(), 10
    )
    # gradients are neither needed nor tracked
    z = y.clone().requires_grad_(True)
    assert torch.equal(k_center_greedy(z, mask, 5), k_center_greedy(y, mask, 5))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"features": [[0.0]]}, TypeError, "`features` to be a torch.Tensor"),
        ({"features": torch.zeros(4)}, ValueError, "`features` to be a real 2-D tensor"),
        ({"centers_mask": torch.zeros(4)}, TypeError, "`centers_mask` to be a bool"),
        ({"centers_mask": torch.zeros(3, dtype=torch.bool)}, ValueError, r"shape \(4,\)"),
        ({"budget": 4}, ValueError, r"`budget` to be at most .* \(3\), but got 4"),
        ({"budget": -1}, ValueError, "`budget` to be >= 0"),
        ({"budget": 1.0}, TypeError, "`budget` to be an integer"),
        ({"chunk_size": 0}, ValueError, "`chunk_size` to be >= 1"),
        ({"chunk_size": "8"}, TypeError, "`chunk_size` to be an integer"),
        ({"metric": "manhattan"}, ValueError, "`metric` to be one of"),
        ({"generator": 3}, TypeError, "`generator` to be a torch.Generator"),
        ({"features": torch.tensor([[0.0], [1.0], [np.nan], [2.0]])}, ValueError, "finite"),
    ],
)
def test_errors(kwargs, error, match):
    args = {
        "features": torch.zeros(4, 2),
        "centers_mask": torch.tensor([True, False, False, False]),
        "budget": 2,
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        k_center_greedy(**args)


def test_validate_args_false_skips_finite_check():
    x = torch.tensor([[0.0], [1.0], [np.inf], [2.0]])
    mask = torch.tensor([True, False, False, False])
    assert k_center_greedy(x, mask, 1, validate_args=False).tolist() == [2]


# ------------------------------------------------------------------ the sampler
@pytest.fixture(scope="module")
def setup(digits):
    pool = aalearn.ActivePool(Subset(digits, range(400)))
    pool.label(pool.random_unlabeled(40, random_state=0))
    model = trained_model(digits, pool.labeled_indices, epochs=20)
    return model, pool


@pytest.mark.parametrize("device", DEVICES)
def test_sampler_contract(setup, device):
    model, pool = setup
    model = copy.deepcopy(model).to(device)  # the sampler runs the model where it is
    model.train()
    model.fc.eval()
    flags = [m.training for m in model.modules()]
    state = pool.state_dict()
    sampler = CoreSetSampler(inference={"batch_size": 64, "device": device}, chunk_size=16)
    assert isinstance(sampler, aalearn.Sampler)
    assert repr(sampler) == (
        f"CoreSetSampler(chunk_size=16, inference={{'batch_size': 64, 'device': {device!r}}})"
    )
    picked = sampler.select(model, pool, 30)
    assert picked.dtype == np.int64 and picked.shape == (30,)
    assert np.unique(picked).size == 30 and not pool.labeled_mask[picked].any()
    np.testing.assert_array_equal(
        picked,
        CoreSetSampler(inference={"batch_size": 64, "device": device}).select(model, pool, 30),
    )
    np.testing.assert_array_equal(sampler.select(model, pool, 10), picked[:10])  # best first
    assert [m.training for m in model.modules()] == flags
    new = pool.state_dict()
    assert all(np.array_equal(np.asarray(state[k]), np.asarray(new[k])) for k in state)
    # the same as the kernel on the collected features, mapped to dataset indices
    idx = np.concatenate([pool.unlabeled_indices, pool.labeled_indices])
    feats = collect(model, pool.dataset, idx, probs=False, features=True, device=device).features
    centers = torch.arange(len(idx), device=device) >= pool.n_unlabeled
    np.testing.assert_array_equal(idx[k_center_greedy(feats, centers, 30).cpu().numpy()], picked)


def test_sampler_covers_better_than_random(setup):
    model, pool = setup
    picked = CoreSetSampler(inference={"device": "cpu"}).select(model, pool, 40)
    random = aalearn.RandomSampler(random_state=0).select(model, pool, 40)
    feats = collect(
        model, pool.dataset, np.arange(len(pool)), probs=False, features=True, device="cpu"
    ).features

    def radius(chosen):  # max distance of a pool item to its nearest labeled/chosen item
        centers = np.concatenate([pool.labeled_indices, chosen])
        return torch.cdist(feats, feats[centers]).min(dim=1).values.max().item()

    assert radius(picked) < radius(random)


def test_sampler_cold_start_and_errors(digits):
    pool = aalearn.ActivePool(Subset(digits, range(100)))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    with pytest.raises(ValueError, match="The pool has no labeled item, and CoreSetSampler"):
        CoreSetSampler().select(model, pool, 5)
    pool.label([0])
    picked = CoreSetSampler(inference={"device": "cpu", "feature_layer": "3"}).select(
        model, pool, 5
    )
    assert np.unique(picked).size == 5
    with pytest.raises(ValueError, match="`chunk_size` to be >= 1"):
        CoreSetSampler(chunk_size=0).select(model, pool, 5)
    with pytest.raises(ValueError, match="`metric` to be one of"):
        CoreSetSampler(metric="l1").select(model, pool, 5)
    with pytest.raises(TypeError, match="`feature_layer` to be a str or None"):
        CoreSetSampler(inference={"feature_layer": 3}).select(model, pool, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`budget` to be at most"):
        CoreSetSampler().select(model, pool, 100)
    empty = aalearn.ActivePool(TensorDataset(torch.randn(5, 64)))
    empty.label([0])
    assert CoreSetSampler(inference={"device": "cpu"}).select(model, empty, 0).shape == (0,)

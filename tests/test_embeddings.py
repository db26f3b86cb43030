"""aalearn.embeddings: every path of the samplers' embedding (encoder, layer, array, default)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

import aalearn
from aalearn.embeddings import (
    DEFAULT_COMPONENTS,
    EmbeddingCache,
    default_embedding,
    pca_embedding,
    precomputed_embedding,
)

from .conftest import DEVICES


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


class CountingEncoder(nn.Module):
    """1x8x8 -> 16 -> ReLU -> 4, counting its forward calls and the items it saw."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU())
        self.head = nn.Linear(16, 4)
        self.calls = 0
        self.items = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.items += x.shape[0]
        return self.head(self.body(x))


@pytest.fixture()
def small(digits) -> TensorDataset:
    x, y = digits.tensors
    return TensorDataset(x[:200].clone(), y[:200].clone())


# ---------------------------------------------------------------------- arrays
def test_array_and_tensor_rows_are_normalised_in_place_of_the_items():
    values = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, -2.0]])
    expected = torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    assert torch.equal(precomputed_embedding(values, 3), expected)  # float64 kept
    out = precomputed_embedding(torch.tensor(values, dtype=torch.float16), 3)
    assert out.dtype == torch.float32 and torch.allclose(out, expected.float(), atol=1e-3)
    ints = precomputed_embedding(np.array([[3, 4], [1, 0], [0, -2]]), 3)
    assert ints.dtype == torch.float32 and torch.allclose(ints, expected.float())


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (
            np.zeros((4, 2)),
            ValueError,
            r"`embedding` to have one row per pool item, shape \(5, D\)",
        ),
        (np.zeros(5), ValueError, r"shape \(5, D\) with D >= 1, but got shape \(5,\)"),
        (np.zeros((5, 0)), ValueError, r"but got shape \(5, 0\)"),
        (np.ones((5, 2), dtype=bool), TypeError, r"`embedding` to hold real numbers"),
        (np.array([[object()]] * 5), TypeError, r"`embedding` to hold real numbers"),
        (
            np.array([[0.0, 1.0]] * 3 + [[np.nan, 1.0], [np.inf, 0.0]]),
            ValueError,
            r"Non-finite values .* argument `embedding` of 2 item\(s\), dataset indices \[3, 4\]",
        ),
    ],
)
def test_bad_arrays_name_the_argument(bad, error, message):
    with pytest.raises(error, match=message):
        precomputed_embedding(bad, 5)
    pool = aalearn.ActivePool(None, n_items=5)
    with pytest.raises(error, match=message):
        aalearn.TypiClustSampler(bad).select(None, pool, 2)  # the same check in select


def test_a_wrong_type_of_embedding_is_a_type_error_before_any_work():
    pool = aalearn.ActivePool(None, n_items=5)
    for sampler in (aalearn.TypiClustSampler([[0.0]] * 5), aalearn.ProbCoverSampler("pca")):
        with pytest.raises(TypeError, match=r"Expected argument `embedding` to be None .* got"):
            sampler.select(None, pool, 2)
    with pytest.raises(ValueError, match=r"`layer` to be None unless `embedding` is an nn.Module"):
        aalearn.TypiClustSampler(np.ones((5, 2)), layer="fc").select(None, pool, 2)
    with pytest.raises(TypeError, match=r"`layer` to be a module name"):
        aalearn.TypiClustSampler(nn.Linear(2, 2), layer=3).select(None, pool, 2)
    with pytest.raises(ValueError, match=r"`device` to be a valid torch device"):
        aalearn.TypiClustSampler(np.ones((5, 2)), device="gpu9").select(None, pool, 2)


def test_a_precomputed_embedding_needs_no_dataset_and_the_sampler_keeps_it(digits):
    x = digits.tensors[0].flatten(1)
    pool = aalearn.ActivePool(None, n_items=len(x))
    sampler = aalearn.TypiClustSampler(x.numpy(), random_state=0)
    sampler.select(None, pool, 5)
    emb = sampler.embed(pool)
    assert torch.allclose(emb, _unit(x))
    assert sampler.embed(pool) is emb  # cached: the same tensor


# --------------------------------------------------------------------- encoder
def test_encoder_output_and_named_layer_equal_a_direct_forward(small):
    encoder = CountingEncoder()
    x = small.tensors[0]
    with torch.no_grad():
        hidden = encoder.body(x)
        out = encoder.head(hidden)
    pool = aalearn.ActivePool(small)
    whole = aalearn.TypiClustSampler(encoder, inference={"batch_size": 64}).embed(pool)
    assert torch.allclose(whole, _unit(out), atol=1e-6)
    layer = aalearn.TypiClustSampler(encoder, layer="body.2").embed(pool)  # the ReLU's output
    assert torch.allclose(layer, nn.functional.normalize(hidden, dim=1), atol=1e-6)
    assert encoder.training  # the flags are restored


def test_the_encoder_runs_once_over_several_selects(small):
    encoder = CountingEncoder()
    pool = aalearn.ActivePool(small)
    sampler = aalearn.ProbCoverSampler(
        encoder, n_classes=10, inference={"batch_size": 50}, random_state=0
    )
    for _ in range(3):
        pool.label(sampler.select(None, pool, 10))
    assert (encoder.calls, encoder.items) == (4, 200)  # one pass of 4 batches
    assert pool.n_labeled == 30
    # another dataset (the same length) or a longer one recomputes
    other = aalearn.ActivePool(TensorDataset(*small.tensors))
    sampler.select(None, other, 10)
    assert encoder.items == 400
    grown = aalearn.ActivePool(
        TensorDataset(*(t.repeat(2, *[1] * (t.ndim - 1)) for t in small.tensors))
    )
    sampler.select(None, grown, 10)
    assert encoder.items == 800
    sampler.set_params(embedding=CountingEncoder())  # another encoder recomputes
    sampler.select(None, grown, 10)
    assert sampler.embedding.items == 400 and encoder.items == 800


def test_a_conv_encoder_is_averaged_over_space(small):
    conv = nn.Conv2d(1, 5, 3, padding=1)
    pool = aalearn.ActivePool(small)
    emb = aalearn.TypiClustSampler(conv).embed(pool)
    with torch.no_grad():
        expected = conv(small.tensors[0]).mean(dim=(2, 3))
    assert emb.shape == (200, 5) and torch.allclose(emb, _unit(expected), atol=1e-5)


def test_encoder_errors_name_what_is_wrong(small):
    pool = aalearn.ActivePool(small)
    encoder = CountingEncoder()
    with pytest.raises(ValueError, match=r"`layer` to name a module .* close matches: \['body'"):
        aalearn.TypiClustSampler(encoder, layer="bodyy").select(None, pool, 3)
    assert encoder.calls == 0
    bad = small.tensors[0].clone()
    bad[[3, 9]] = float("nan")
    nan_pool = aalearn.ActivePool(TensorDataset(bad, small.tensors[1]))
    with pytest.raises(ValueError, match=r"of 2 item\(s\), dataset indices \[3, 9\]"):
        aalearn.TypiClustSampler(encoder).select(None, nan_pool, 3)
    with pytest.raises(ValueError, match=r"needs the pool's dataset"):
        aalearn.TypiClustSampler(encoder).select(None, aalearn.ActivePool(None, n_items=9), 3)
    with pytest.raises(ValueError, match=r"Expected the model to be on `device` \(meta\)"):
        aalearn.TypiClustSampler(encoder, device="meta").select(None, pool, 3)


class DictEncoder(nn.Module):
    """Returns a dict, as HuggingFace models return output objects."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(64, 6)

    def forward(self, x: torch.Tensor) -> dict:
        return {"pooler_output": self.proj(x.flatten(1))}


def test_an_encoder_returning_a_mapping_gives_its_first_tensor(small):
    encoder = DictEncoder()
    emb = aalearn.TypiClustSampler(encoder).embed(aalearn.ActivePool(small))
    with torch.no_grad():
        expected = encoder.proj(small.tensors[0].flatten(1))
    assert torch.allclose(emb, _unit(expected), atol=1e-6)


# --------------------------------------------------------------------- default
def test_pca_embedding_matches_an_svd(digits):
    x = digits.tensors[0][:300].flatten(1).double()
    centred = x - x.mean(0)
    std = centred.std(0)
    for standardise, z in [
        (False, centred),
        (True, centred / torch.where(std > 0, std, torch.ones_like(std))),
    ]:
        emb = pca_embedding(x, 16, standardise=standardise)
        u, s, _ = torch.linalg.svd(z, full_matrices=False)
        ref = _unit(u[:, :16] * s[:16])
        # rows agree up to the sign of each component: compare the Gram matrices
        assert emb.shape == (300, 16) and emb.dtype == torch.float32
        assert torch.allclose(emb.double() @ emb.double().T, ref @ ref.T, atol=1e-4)
        no_pca = pca_embedding(x, 200, standardise=standardise)  # P <= k: no PCA
        assert torch.allclose(no_pca, _unit(z).float(), atol=1e-5)


def test_the_default_embedding_is_the_pca_of_the_inputs(small):
    pool = aalearn.ActivePool(small)
    sampler = aalearn.TypiClustSampler(random_state=0)
    emb = sampler.embed(pool)
    expected = pca_embedding(small.tensors[0].flatten(1), DEFAULT_COMPONENTS)
    assert emb.shape == (200, DEFAULT_COMPONENTS) and torch.equal(emb, expected)
    assert torch.equal(default_embedding(small, 200), expected)
    assert sampler.embed(aalearn.ActivePool(Subset(small, range(200)))) is not emb  # recomputed


def test_the_default_embedding_refuses_non_finite_inputs_and_a_pool_without_data(small):
    bad = small.tensors[0].clone()
    bad[7, 0, 0, 0] = float("inf")
    pool = aalearn.ActivePool(TensorDataset(bad, small.tensors[1]))
    with pytest.raises(
        ValueError, match=r"inputs of the default embedding of 1 item\(s\), .*\[7\]"
    ):
        aalearn.ProbCoverSampler(delta=0.5).select(None, pool, 3)
    with pytest.raises(ValueError, match="needs the pool's dataset"):
        aalearn.TypiClustSampler().select(None, aalearn.ActivePool(None, n_items=10), 3)


def test_the_cache_key():
    cache = EmbeddingCache()
    values = np.eye(4)
    data = object()
    first = cache.get(values, data, 4)
    assert cache.get(values, data, 4) is first and cache.computed == 1
    assert cache.get(values.copy(), data, 4) is not first  # another array object
    assert cache.get(values, object(), 4) is not None and cache.computed == 3
    cache.get(values, data, 4, device="cpu")
    assert cache.computed == 4


@pytest.mark.parametrize("device", DEVICES)
def test_device_places_the_embedding_and_the_picks_do_not_depend_on_it(device, digits):
    x = digits.tensors[0][:300].flatten(1).numpy()
    pool = aalearn.ActivePool(None, n_items=300)
    sampler = aalearn.TypiClustSampler(x, device=device, random_state=0)
    assert sampler.embed(pool).device.type == torch.device(device).type
    cpu = aalearn.TypiClustSampler(x, device="cpu", random_state=0).select(None, pool, 10)
    assert np.array_equal(sampler.select(None, pool, 10), cpu)

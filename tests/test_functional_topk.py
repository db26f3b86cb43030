"""Tests of aalearn.functional.topk against a full stable sort, over batch splits and orders."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aalearn.functional import StreamingTopK, topk_indices

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
NAN, INF = float("nan"), float("inf")


def _reference(scores: list[float], indices: list[int], k: int) -> tuple[list[float], list[int]]:
    """Full sort by (NaN last, higher score first, smaller index first)."""
    order = sorted(
        range(len(scores)),
        key=lambda i: (
            math.isnan(scores[i]),
            -scores[i] if not math.isnan(scores[i]) else 0.0,
            indices[i],
        ),
    )[:k]
    return [scores[i] for i in order], [indices[i] for i in order]


def _stream(
    scores: torch.Tensor, indices: torch.Tensor, k: int, cuts: list[int], order: list[int], **kw
) -> tuple[torch.Tensor, torch.Tensor]:
    bounds = [0, *sorted(cuts), len(scores)]
    batches = [(scores[a:b], indices[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    topk = StreamingTopK(k, **kw)
    for j in order:
        if j < len(batches):
            topk.update(*batches[j])
    return topk.compute()


def _assert_same(
    got: tuple[torch.Tensor, torch.Tensor], ref: tuple[list[float], list[int]]
) -> None:
    s, i = got
    assert i.dtype == torch.int64
    assert i.cpu().tolist() == ref[1]
    np.testing.assert_array_equal(s.double().cpu().numpy(), np.array(ref[0], dtype=np.float64))


# ---------------------------------------------------------------------------- hand cases


def test_hand_example() -> None:
    scores = torch.tensor([0.5, NAN, 0.9, -INF, 0.5, INF, 0.1, NAN])
    indices = torch.tensor([7, 3, 5, 1, 2, 9, 0, 4])
    s, i = topk_indices(scores, indices, 8)
    assert i.tolist() == [9, 5, 2, 7, 0, 1, 3, 4]  # +inf, 0.9, 0.5 (2 < 7), 0.1, -inf, NaN (3 < 4)
    assert s[:5].tolist() == [INF, 0.8999999761581421, 0.5, 0.5, 0.10000000149011612]
    assert s[5].item() == -INF and torch.isnan(s[6:]).all()
    _, i3 = topk_indices(scores, indices, 3)
    assert i3.tolist() == [9, 5, 2]


def test_negative_zero_ties_with_zero() -> None:
    _, i = topk_indices(torch.tensor([-0.0, 0.0, -0.0]), torch.tensor([5, 4, 3]), 3)
    assert i.tolist() == [3, 4, 5]


def test_fewer_than_k_returns_all_and_empty_compute() -> None:
    topk = StreamingTopK(10)
    s, i = topk.compute()
    assert s.shape == (0,) and i.shape == (0,) and i.dtype == torch.int64
    topk.update(torch.tensor([0.1, 0.3]), torch.tensor([1, 0], dtype=torch.int32))
    s, i = topk.compute()
    assert i.tolist() == [0, 1] and i.dtype == torch.int64
    topk.update(torch.tensor([]), torch.tensor([], dtype=torch.int64))  # an empty batch is fine
    assert topk.compute()[1].tolist() == [0, 1]


def test_reset_and_repr() -> None:
    topk = StreamingTopK(2, device="cpu")
    assert repr(topk) == "StreamingTopK(k=2, device='cpu')"
    assert repr(StreamingTopK(3)) == "StreamingTopK(k=3, device=None)"
    topk.update(torch.tensor([1.0, 2.0, 3.0]), torch.arange(3))
    assert topk.compute()[1].tolist() == [2, 1]
    topk.reset()
    assert topk.compute()[1].numel() == 0
    topk.update(torch.tensor([5.0]), torch.tensor([8]))
    assert topk.compute()[1].tolist() == [8]


def test_mixed_dtypes_promote() -> None:
    topk = StreamingTopK(2)
    topk.update(torch.tensor([0.5], dtype=torch.float16), torch.tensor([1]))
    topk.update(torch.tensor([0.5 + 1e-9], dtype=torch.float64), torch.tensor([0]))
    s, i = topk.compute()
    assert s.dtype == torch.float64 and i.tolist() == [0, 1]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_total_order_every_dtype(dtype: torch.dtype) -> None:
    finfo = torch.finfo(dtype)
    values = [NAN, -INF, -finfo.max, -1.0, -finfo.tiny, -0.0, 0.0, finfo.tiny, 1.0, finfo.max, INF]
    values += [-NAN]  # a NaN with the sign bit set
    perm = np.random.default_rng(0).permutation(len(values))
    scores = torch.tensor([values[j] for j in perm], dtype=dtype)
    s, i = topk_indices(scores, torch.as_tensor(perm), len(values))
    # An item's index is its position in `values` (ascending order), so best first is
    # descending, except that 0.0 (6) and -0.0 (5) tie (smaller index first) and the two
    # NaNs (0, 11) rank last, by index.
    assert i.tolist() == [10, 9, 8, 7, 5, 6, 4, 3, 2, 1, 0, 11]
    assert torch.isnan(s[-2:]).all()


# ---------------------------------------------------------------------------- vs full sort


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(4))
def test_random_batches_match_full_sort(device: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 3_000
    # Many ties: 20 distinct values, plus NaN and infinities; unique, shuffled indices.
    vals = rng.integers(0, 20, size=n).astype(np.float32) / 4
    special = rng.random(n)
    vals[special < 0.05] = np.nan
    vals[(special >= 0.05) & (special < 0.07)] = np.inf
    vals[(special >= 0.07) & (special < 0.09)] = -np.inf
    idx = rng.permutation(10 * n)[:n].astype(np.int64)
    scores, indices = torch.from_numpy(vals).to(device), torch.from_numpy(idx).to(device)
    for k in (1, 7, 250, n, n + 5):
        ref = _reference(vals.tolist(), idx.tolist(), k)
        _assert_same(topk_indices(scores, indices, k), ref)
        for _ in range(3):
            cuts = rng.integers(0, n, size=rng.integers(0, 30)).tolist()
            order = rng.permutation(len(cuts) + 1).tolist()
            got = _stream(scores, indices, k, cuts, order, device=device)
            assert got[0].device.type == device
            _assert_same(got, ref)


@settings(max_examples=80, deadline=None)
@given(
    scores=st.lists(
        st.sampled_from([0.0, -0.0, 0.25, 0.5, 1.0, -1.0, NAN, INF, -INF]), max_size=60
    ),
    k=st.integers(1, 70),
    data=st.data(),
)
def test_streaming_hypothesis(scores: list[float], k: int, data: st.DataObject) -> None:
    n = len(scores)
    idx = data.draw(st.permutations(list(range(n))))
    cuts = data.draw(st.lists(st.integers(0, n), max_size=8))
    order = data.draw(st.permutations(list(range(len(cuts) + 1))))
    ref = _reference([s + 0.0 for s in scores], idx, k)
    got = _stream(torch.tensor(scores), torch.tensor(idx, dtype=torch.int64), k, cuts, order)
    assert got[1].tolist() == ref[1]
    one = topk_indices(torch.tensor(scores), torch.tensor(idx, dtype=torch.int64), k)
    assert one[1].tolist() == ref[1]


def test_state_is_o_k() -> None:
    topk = StreamingTopK(5)
    for start in range(0, 10_000, 1_000):
        topk.update(torch.rand(1_000), torch.arange(start, start + 1_000))
        s, i = topk.compute()
        assert s.shape == (5,) and i.shape == (5,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_argument_moves_batches() -> None:
    topk = StreamingTopK(3, device="cuda")
    topk.update(torch.tensor([0.1, 0.9, 0.5]), torch.tensor([0, 1, 2]))
    s, i = topk.compute()
    assert s.device.type == "cuda" and i.device.type == "cuda"
    assert i.cpu().tolist() == [1, 2, 0]


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("k", [0, -3])
def test_k_value_error(k: int) -> None:
    with pytest.raises(
        ValueError, match=f"Expected argument `k` to be a positive integer, but got {k}."
    ):
        StreamingTopK(k)
    with pytest.raises(ValueError, match="`k` to be a positive integer"):
        topk_indices(torch.rand(3), torch.arange(3), k)


@pytest.mark.parametrize("k", [True, 2.0, "3", None])
def test_k_type_error(k: object) -> None:
    with pytest.raises(TypeError, match="Expected argument `k` to be an integer, but got"):
        StreamingTopK(k)  # type: ignore[arg-type]


def test_update_errors() -> None:
    topk = StreamingTopK(2)
    with pytest.raises(TypeError, match="`scores` to be a torch.Tensor, but got list"):
        topk.update([0.1], torch.tensor([0]))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`indices` to be a torch.Tensor, but got ndarray"):
        topk.update(torch.tensor([0.1]), np.array([0]))  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match="`scores` to be a floating point tensor, but got dtype torch.int64"
    ):
        topk.update(torch.tensor([1]), torch.tensor([0]))
    with pytest.raises(
        TypeError, match="`indices` to be an integer tensor, but got dtype torch.float32"
    ):
        topk.update(torch.tensor([0.1]), torch.tensor([0.0]))
    with pytest.raises(
        ValueError, match=r"`scores` to be a 1-D tensor of shape \(B,\), but got shape \(2, 1\)"
    ):
        topk.update(torch.rand(2, 1), torch.tensor([0, 1]))
    with pytest.raises(
        ValueError, match=r"`indices` to have the same shape as `scores`, but got \(3,\) and \(2,\)"
    ):
        topk.update(torch.rand(2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="`scores` to be a 1-D tensor"):
        topk_indices(torch.rand(2, 2), torch.arange(4), 1)


def test_validate_args_skips_only_the_tensor_checks() -> None:
    """The same meaning in every kernel: False skips type/shape/value checks of tensors only."""
    from aalearn.functional import bald, k_center_greedy

    feats, mask = torch.zeros(3, 2), torch.tensor([True, False, False])
    for call, match in [
        (lambda: topk_indices(torch.rand(3), torch.arange(3), 0, validate_args=False), "`k`"),
        (lambda: StreamingTopK(np.int64(0)), "`k`"),
        (lambda: k_center_greedy(feats, mask, 5, validate_args=False), "`budget`"),
        (lambda: k_center_greedy(feats, mask, 1, metric="l3", validate_args=False), "`metric`"),
    ]:
        with pytest.raises(ValueError, match=match):
            call()
    # the tensor checks are skipped: NaN features and a wrongly shaped mask go through
    bad = torch.tensor([[0.0], [float("nan")], [1.0]])
    with pytest.raises(ValueError, match="`features` to be finite"):
        k_center_greedy(bad, mask, 1)
    assert k_center_greedy(bad, mask, 1, validate_args=False).shape == (1,)
    with pytest.raises(ValueError, match="`mc_probs` to be a 3-D"):
        bald(torch.full((2, 3), 0.5))
    with pytest.raises(TypeError, match="`indices` to be a torch.Tensor"):
        topk_indices(torch.rand(3), [0, 1, 2], 2)  # type: ignore[arg-type]

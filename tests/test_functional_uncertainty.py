"""Tests of aalearn.functional.uncertainty: hand values, SciPy references, extremes, errors.

The references are independent formulas in NumPy and SciPy (``scipy.stats.entropy``)
and baal's heuristics; every kernel is covered on CPU (and on CUDA when present).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aalearn.functional import bald, entropy, least_confidence, margin

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
KERNELS_2D = [entropy, least_confidence, margin]


def _dirichlet(
    shape: tuple[int, ...], alpha: float, seed: int, dtype=torch.float32
) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    x = rng.dirichlet(np.full(shape[-1], alpha), size=shape[:-1])
    return torch.as_tensor(x, dtype=dtype)


def _ref_entropy(p: np.ndarray) -> np.ndarray:
    return scipy.stats.entropy(p, axis=-1)


def _ref_margin(p: np.ndarray) -> np.ndarray:
    s = np.sort(p, axis=-1)
    return -(s[..., -1] - s[..., -2])


def _ref_least_confidence(p: np.ndarray) -> np.ndarray:
    return 1.0 - p.max(axis=-1)


def _ref_bald(mc: np.ndarray) -> np.ndarray:
    return scipy.stats.entropy(mc.mean(axis=1), axis=-1) - scipy.stats.entropy(mc, axis=-1).mean(1)


# ---------------------------------------------------------------------------- hand values


@pytest.mark.parametrize("device", DEVICES)
def test_hand_values(device: str) -> None:
    p = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.25, 0.75]], device=device)
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))  # 0.5623351446...
    torch.testing.assert_close(entropy(p).cpu(), torch.tensor([math.log(2), 0.0, h]))
    torch.testing.assert_close(least_confidence(p).cpu(), torch.tensor([0.5, 0.0, 0.25]))
    torch.testing.assert_close(margin(p).cpu(), torch.tensor([0.0, -1.0, -0.5]))
    q = torch.tensor([[0.1, 0.6, 0.3], [0.4, 0.2, 0.4], [0.2, 0.2, 0.6]], device=device)
    torch.testing.assert_close(margin(q).cpu(), torch.tensor([-0.3, 0.0, -0.4]))
    torch.testing.assert_close(least_confidence(q).cpu(), torch.tensor([0.4, 0.6, 0.4]))


@pytest.mark.parametrize("device", DEVICES)
def test_bald_hand_values(device: str) -> None:
    mc = torch.tensor(
        [
            [[0.5, 0.5], [0.5, 0.5]],  # agree: 0
            [[1.0, 0.0], [0.0, 1.0]],  # confident and opposite: log 2
            [[0.9, 0.1], [0.1, 0.9]],  # log 2 - H(0.9, 0.1)
        ],
        device=device,
    )
    h09 = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    expected = torch.tensor([0.0, math.log(2), math.log(2) - h09])
    torch.testing.assert_close(bald(mc).cpu(), expected)


# ---------------------------------------------------------------------------- references


@pytest.mark.parametrize("n_classes", [2, 3, 10, 31, 32, 33, 100])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_against_scipy_numpy(n_classes: int, dtype: torch.dtype) -> None:
    p = _dirichlet((1_003, n_classes), 0.3, seed=n_classes, dtype=dtype)
    ref = p.double().numpy()
    tol = {"rtol": 1e-5, "atol": 2e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    for fn, ref_fn in [
        (entropy, _ref_entropy),
        (margin, _ref_margin),
        (least_confidence, _ref_least_confidence),
    ]:
        out = fn(p)
        assert out.dtype == dtype and out.shape == (1_003,)
        np.testing.assert_allclose(out.double().numpy(), ref_fn(ref), **tol)


@pytest.mark.parametrize("shape", [(501, 20, 10), (64, 1, 3), (33, 7, 100)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bald_against_scipy(shape: tuple[int, int, int], dtype) -> None:
    mc = _dirichlet(shape, 0.5, seed=sum(shape), dtype=dtype)
    out = bald(mc)
    assert out.dtype == dtype and out.shape == (shape[0],)
    assert (out >= 0).all()
    atol = 2e-6 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(out.double().numpy(), _ref_bald(mc.double().numpy()), atol=atol)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.lists(st.sampled_from([0.0, 0.0, 0.1, 0.25, 0.5, 1.0, 3.0]), min_size=2, max_size=40),
        min_size=1,
        max_size=12,
    ),
    data=st.data(),
)
def test_margin_ties_hypothesis(rows: list[list[float]], data: st.DataObject) -> None:
    """Many exact ties (at the top too), every width from 2 to 40, both margin branches."""
    width = data.draw(st.integers(2, 40))
    mat = np.array([(r * width)[:width] for r in rows], dtype=np.float64)
    for dtype in (torch.float32, torch.float64):
        out = margin(torch.as_tensor(mat, dtype=dtype)).double().numpy()
        np.testing.assert_allclose(
            out, _ref_margin(mat.astype(np.float32).astype(np.float64)), rtol=1e-6
        )
        lc = least_confidence(torch.as_tensor(mat, dtype=dtype)).double().numpy()
        np.testing.assert_allclose(lc, _ref_least_confidence(mat.astype(np.float32)), rtol=1e-6)


# ---------------------------------------------------------------------------- extremes


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n_classes", [2, 10, 100])
def test_one_hot_is_exactly_zero(device: str, n_classes: int) -> None:
    p = torch.eye(n_classes, device=device)
    for fn in KERNELS_2D:
        out = fn(p)
        assert out.dtype == torch.float32 and out.device.type == device
        assert not torch.isnan(out).any()
        if fn is margin:
            assert (out == -1).all()
            continue
        assert (out == 0).all(), fn.__name__
        assert not torch.signbit(out).any(), fn.__name__  # +0.0, not -0.0
    mc = torch.eye(n_classes, device=device).unsqueeze(1).expand(n_classes, 5, n_classes)
    assert (bald(mc) == 0).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n_classes", [2, 10, 100, 1000])
def test_uniform(device: str, n_classes: int) -> None:
    p = torch.full((4, n_classes), 1.0 / n_classes, device=device)
    torch.testing.assert_close(
        entropy(p).cpu(), torch.full((4,), math.log(n_classes)), rtol=1e-6, atol=0
    )
    torch.testing.assert_close(least_confidence(p).cpu(), torch.full((4,), 1 - 1 / n_classes))
    assert (margin(p) == 0).all()
    mc = p.unsqueeze(1).expand(4, 20, n_classes)
    torch.testing.assert_close(bald(mc).cpu(), torch.zeros(4), atol=1e-6, rtol=0)


def test_tiny_and_zero_probabilities_no_nan() -> None:
    p = torch.tensor([[1e-45, 1.0 - 1e-7, 1e-7], [0.0, 0.0, 1.0], [1e-38, 0.5, 0.5]])
    for fn in [*KERNELS_2D]:
        assert torch.isfinite(fn(p)).all()
    assert torch.isfinite(bald(p.unsqueeze(1).repeat(1, 3, 1))).all()


@pytest.mark.parametrize("fn", [*KERNELS_2D, bald])
def test_empty_batch(fn) -> None:
    shape = (0, 4, 3) if fn is bald else (0, 3)
    out = fn(torch.empty(shape))
    assert out.shape == (0,) and out.dtype == torch.float32


def test_half_precision_is_computed_in_float32() -> None:
    p = _dirichlet((50, 10), 1.0, seed=0)
    for fn in KERNELS_2D:
        out = fn(p.half())
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, fn(p.half().float()))
    assert bald(p.view(10, 5, 10).bfloat16()).dtype == torch.float32


def test_non_contiguous_and_requires_grad() -> None:
    p = _dirichlet((300, 12), 0.5, seed=1)
    strided = p.t().contiguous().t()[::2]
    assert not strided.is_contiguous()
    for fn in KERNELS_2D:
        torch.testing.assert_close(fn(strided), fn(p[::2].contiguous()))
        torch.testing.assert_close(fn(p.clone().requires_grad_()), fn(p))
    mc = _dirichlet((40, 6, 5), 0.5, seed=2)
    torch.testing.assert_close(bald(mc.transpose(0, 1).contiguous().transpose(0, 1)), bald(mc))


@pytest.mark.parametrize("device", DEVICES)
def test_device_matches_cpu(device: str) -> None:
    p = _dirichlet((2_000, 37), 0.3, seed=3)
    for fn in KERNELS_2D:
        out = fn(p.to(device))
        assert out.device.type == device
        torch.testing.assert_close(out.cpu(), fn(p), rtol=1e-5, atol=1e-6)
    mc = _dirichlet((300, 8, 10), 0.3, seed=4)
    torch.testing.assert_close(bald(mc.to(device)).cpu(), bald(mc), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("fn", KERNELS_2D)
def test_errors_2d(fn) -> None:
    with pytest.raises(
        TypeError, match="Expected argument `probs` to be a torch.Tensor, but got list"
    ):
        fn([[0.5, 0.5]])
    with pytest.raises(TypeError, match="`probs` to be a floating point tensor.*torch.int64"):
        fn(torch.ones(2, 3, dtype=torch.int64))
    msg = r"Expected argument `probs` to be a 2-D tensor of shape \(N, C\), but got shape \(3,\)."
    with pytest.raises(ValueError, match=msg):
        fn(torch.ones(3))
    with pytest.raises(ValueError, match=r"2-D tensor .* got shape \(2, 3, 4\)"):
        fn(torch.ones(2, 3, 4))
    with pytest.raises(ValueError, match=r"`probs` to have at least \d classes"):
        fn(torch.ones(3, 0))


def test_margin_needs_two_classes() -> None:
    with pytest.raises(
        ValueError, match=r"at least 2 classes .* for margin, but got shape \(4, 1\)"
    ):
        margin(torch.ones(4, 1))
    # Entropy and least confidence accept one class (score 0).
    assert (entropy(torch.ones(4, 1)) == 0).all()
    assert (least_confidence(torch.ones(4, 1)) == 0).all()


def test_errors_bald() -> None:
    with pytest.raises(TypeError, match="`mc_probs` to be a torch.Tensor, but got ndarray"):
        bald(np.ones((2, 3, 4)))
    with pytest.raises(TypeError, match="`mc_probs` to be a floating point tensor"):
        bald(torch.ones(2, 3, 4, dtype=torch.bool))
    msg = r"`mc_probs` to be a 3-D tensor of shape \(N, K, C\), but got shape \(5, 3\)."
    with pytest.raises(ValueError, match=msg):
        bald(torch.full((5, 3), 1 / 3))


@pytest.mark.parametrize("fn", [*KERNELS_2D, bald])
def test_validate_args_false_gives_same_result(fn) -> None:
    shape = (20, 4, 6) if fn is bald else (20, 6)
    p = _dirichlet(shape, 0.7, seed=5)
    torch.testing.assert_close(fn(p, validate_args=False), fn(p))


# ------------------------------------------------------------------ issue 12 regressions


def test_bald_needs_at_least_one_sample() -> None:
    with pytest.raises(ValueError, match=r"`mc_probs` to have at least 1 sample .*\(4, 0, 3\)"):
        bald(torch.empty(4, 0, 3))


@pytest.mark.parametrize("bits", [0x7FC00000, -0x00400000])  # NaN, and 0xFFC00000 (-NaN)
def test_margin_of_a_nan_row_is_nan_whatever_the_sign(bits: int) -> None:
    nan = torch.tensor([bits], dtype=torch.int32).view(torch.float32)
    assert torch.isnan(nan).all()
    p = torch.tensor([[0.2, 0.5, 0.3]]).repeat(70, 1)
    p[5, 1] = nan[0]
    out = margin(p)
    assert torch.isnan(out[5]) and torch.isfinite(out[torch.arange(70) != 5]).all()


def _tiny_gap_probs() -> torch.Tensor:
    """100 rows whose top-2 gaps are distinct and all below 3e-8 (rows sum to 1)."""
    rng = np.random.default_rng(0)
    n, c = 100, 1001  # rows sum to 1 (baal softmaxes rows that do not)
    p = np.full((n, c), 0.000999, dtype=np.float32)
    p[:, 1] = 0.001
    for i, k in enumerate(rng.permutation(n)):  # the top entry k float32 steps above
        p[i, 0] = p[i, 1]
        for _ in range(k):
            p[i, 0] = np.nextafter(p[i, 0], np.float32(1))
    return torch.from_numpy(p)


def test_margin_ranks_tiny_gaps_at_full_precision() -> None:
    """100 items whose top-2 gaps differ by less than 3e-8 rank in gap order (float64 NumPy)."""
    probs = _tiny_gap_probs()
    n = probs.shape[0]
    got = torch.topk(margin(probs).double(), n).indices.numpy()  # highest score first
    exact = np.sort(probs.numpy(), axis=1)
    exact_gap = exact[:, -1].astype(np.float64) - exact[:, -2]
    assert np.unique(exact_gap).size == n and exact_gap.max() < 3e-8  # distinct, all tiny
    np.testing.assert_array_equal(got, np.argsort(exact_gap, kind="stable"))


def test_margin_tiny_gaps_rank_as_baal() -> None:
    """The same ranking as baal's Margin heuristic (when baal is installed)."""
    heuristics = pytest.importorskip(
        "baal.active.heuristics",
        reason="the comparison with baal and batchbald-redux: pip install -e '.[dev,compare]' "
        "&& pip install --no-deps baal==2.1.0 batchbald-redux==2.0.5 (see README)",
    )
    probs = _tiny_gap_probs()
    got = torch.topk(margin(probs).double(), probs.shape[0]).indices.numpy()
    np.testing.assert_array_equal(got, heuristics.Margin()(probs.numpy()))  # smallest gap first


def test_topk_indices_accepts_numpy_integers() -> None:
    from aalearn.functional import StreamingTopK, topk_indices

    scores, idx = torch.tensor([0.1, 0.9, 0.5]), torch.tensor([7, 8, 9])
    assert topk_indices(scores, idx, np.int64(2))[1].tolist() == [8, 9]
    assert StreamingTopK(np.int32(1)).k == 1
    with pytest.raises(TypeError, match="`k` to be an integer"):
        topk_indices(scores, idx, 2.0)
    with pytest.raises(TypeError, match="`k` to be an integer"):
        topk_indices(scores, idx, np.bool_(True))

"""The fused numba kernels: their logarithm, agreement with the torch kernels, the
threading paths, and when they are used. Skipped when numba is not installed."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("numba")

from aalearn.functional import _fused, bald, entropy, margin
from aalearn.functional import _numba_kernels as K
from aalearn.functional import uncertainty as U


def _dirichlet(shape: tuple[int, ...], alpha: float, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    x = rng.dirichlet(np.full(shape[-1], alpha), size=shape[:-1])
    return torch.as_tensor(x, dtype=torch.float32)


def _ulps(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|got - ref| in units of the float32 spacing at ``ref`` (ref in float64)."""
    spacing = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    return np.abs(got.astype(np.float64) - ref) / spacing


@pytest.fixture(autouse=True)
def _fused_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_fused.DISABLE_ENV, raising=False)


# ---------------------------------------------------------------------------- the logarithm


def test_log_within_two_ulps_over_every_exponent() -> None:
    # Every 4099th positive normal float32: all 254 exponents, mantissas spread evenly.
    bits = np.arange(0x00800000, 0x7F800000, 4099, dtype=np.int64).astype(np.int32)
    x = bits.view(np.float32)
    out = np.empty_like(x)
    K.log_into(x, out)
    ref = np.log(x.astype(np.float64))
    nonzero = ref != 0
    assert _ulps(out[nonzero], ref[nonzero]).max() <= 2.0
    # Near 1, where log x is small and the reduction matters most.
    near_one = np.float32(1.0) + np.arange(-2000, 2001, dtype=np.float32) * np.float32(2**-23)
    out = np.empty_like(near_one)
    K.log_into(near_one, out)
    ref = np.log(near_one.astype(np.float64))
    assert out[2000] == 0.0  # log 1 is exactly 0
    mask = ref != 0
    assert _ulps(out[mask], ref[mask]).max() <= 2.0


def test_entropy_of_zeros_subnormals_nan_inf() -> None:
    p = torch.tensor(
        [
            [0.0, 1.0, 0.0],  # one-hot: +0.0
            [1e-45, 0.5, 0.5],  # a subnormal: its term is ~1e-43, invisible
            [0.0, 0.0, 0.0],  # no mass: 0
            [float("nan"), 0.5, 0.5],  # NaN stays NaN (ranks last in the top-k)
            [float("inf"), 0.5, 0.5],  # invalid: not finite (NaN here, -inf in torch)
        ]
    )
    out = entropy(p)
    assert out[0] == 0 and not torch.signbit(out[0])
    assert out[1] == pytest.approx(np.log(2.0), rel=1e-6)
    assert out[2] == 0 and not torch.signbit(out[2])
    assert torch.isnan(out[3])
    # inf log inf splits into inf * log z + inf * k ln 2 of opposite signs: NaN. Both NaN
    # and -inf rank below every finite score.
    assert not torch.isfinite(out[4])
    torch.testing.assert_close(out[:4], U._entropy_torch(p)[:4], equal_nan=True)


# ---------------------------------------------------------------------------- agreement


@pytest.mark.parametrize("n_classes", [2, 3, 10, 17, 100, 257, 1000])
def test_fused_matches_torch_kernels(n_classes: int) -> None:
    p = _dirichlet((3000, n_classes), 0.3, seed=n_classes)
    p[::7, 0] = p[::7].amax(-1)  # ties at the top
    p[::11] = 0.0
    p[::11, 1] = 1.0  # one-hot rows
    p[::13, 0] = 0.0  # exact zeros
    torch.testing.assert_close(entropy(p), U._entropy_torch(p), rtol=1e-5, atol=2e-6)
    assert torch.equal(margin(p), U._margin_torch(p))  # margin is exact on both paths


@pytest.mark.parametrize("shape", [(500, 20, 10), (300, 3, 2), (100, 7, 1000)])
def test_fused_bald_matches_torch(shape: tuple[int, int, int]) -> None:
    mc = _dirichlet(shape, 0.5, seed=sum(shape))
    mc[::5] = mc[::5, :1]  # all samples agree: BALD 0
    out = bald(mc)
    torch.testing.assert_close(out, U._bald_torch(mc), rtol=1e-5, atol=2e-6)
    assert (out >= 0).all()
    # The mean of identical samples is exact in float64, so every class cancels exactly.
    assert (out[::5] == 0).all()


def test_a_row_scores_the_same_wherever_it_is() -> None:
    """Scores depend on the row only: not on its offset, the batch size or the split."""
    p = _dirichlet((20_000, 37), 0.5, seed=3)
    mc = _dirichlet((4_000, 6, 11), 0.5, seed=4)
    for fn, x in ((entropy, p), (margin, p), (bald, mc)):
        full = fn(x)
        for start in (1, 7, 999):
            assert torch.equal(fn(x[start:]), full[start:]), fn.__name__
        assert torch.equal(fn(x[5:6]), full[5:6]), fn.__name__


# ---------------------------------------------------------------------------- threading


def _all_paths(fn, x: torch.Tensor, monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    results = [fn(x)]  # OpenMP when torch's runtime exports GOMP_parallel
    with monkeypatch.context() as m:
        m.setattr(_fused, "_openmp", lambda: None)  # the Python thread pool
        results.append(fn(x))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # one thread, in the caller
        results.append(fn(x))
        torch.set_num_threads(3)  # more threads than rows per chunk would need
        results.append(fn(x))
    finally:
        torch.set_num_threads(threads)
    return results


def test_every_threading_path_gives_the_same_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    p = _dirichlet((70_000, 10), 0.5, seed=5)
    mc = _dirichlet((9_000, 8, 10), 0.5, seed=6)
    for fn, x in ((entropy, p), (margin, p), (bald, mc)):
        first, *others = _all_paths(fn, x, monkeypatch)
        for other in others:
            assert torch.equal(first, other), fn.__name__


def test_openmp_runtime_of_torch_is_found_on_linux() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("torch's Linux wheels ship libgomp; elsewhere the pool is the fallback")
    lib = os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp.so.1")
    if not os.path.exists(lib):
        pytest.skip("this torch build has no bundled libgomp")
    assert _fused._find_gomp_parallel() is not None


def test_after_fork_the_pool_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    p = _dirichlet((50_000, 10), 0.5, seed=7)
    expected = entropy(p)
    monkeypatch.setattr(_fused, "_pool", None)
    monkeypatch.setattr(_fused, "_lock", _fused._lock)
    monkeypatch.setattr(_fused, "_gomp_parallel", _fused._gomp_parallel)
    monkeypatch.setattr(_fused, "_gomp_searched", _fused._gomp_searched)
    _fused._reset_after_fork()
    assert _fused._openmp() is None
    assert torch.equal(entropy(p), expected)


def test_concurrent_calls_from_several_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four Python threads scoring at once (OpenMP regions, then the pool) get serial bits."""
    from concurrent.futures import ThreadPoolExecutor

    inputs = [_dirichlet((60_000, 10 + 7 * i), 0.5, seed=20 + i) for i in range(4)]
    expected = [(entropy(p), margin(p)) for p in inputs]

    def score(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return entropy(p), margin(p)

    for openmp in (True, False):
        with monkeypatch.context() as m:
            if not openmp:
                m.setattr(_fused, "_openmp", lambda: None)
            with ThreadPoolExecutor(4) as pool:
                results = list(pool.map(score, inputs * 3))
        for (got_h, got_m), (exp_h, exp_m) in zip(results, expected * 3):
            assert torch.equal(got_h, exp_h) and torch.equal(got_m, exp_m)


def test_sampler_selects_the_same_with_either_kernels(
    digits, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On real digits, UncertaintySampler picks the same items with numba or torch kernels."""
    import aalearn

    from .conftest import trained_model

    pool = aalearn.ActivePool(digits)
    pool.label(pool.random_unlabeled(100, random_state=2))
    model = trained_model(digits, pool.labeled_indices, epochs=20)
    for method, kwargs in (("entropy", {}), ("margin", {}), ("bald", {"mc_samples": 6})):
        sampler = aalearn.UncertaintySampler(
            method, random_state=0, inference={"device": "cpu"}, **kwargs
        )
        fused = sampler.select(model, pool, 60)
        with monkeypatch.context() as m:
            m.setenv(_fused.DISABLE_ENV, "1")
            plain = sampler.select(model, pool, 60)
        assert np.array_equal(fused, plain), method


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_in_a_forked_worker_with_one_thread() -> None:
    """A forked child (a DataLoader worker, say) after OpenMP work gets the same bits."""
    code = (
        "import os, torch\n"
        "from aalearn.functional import entropy, margin, bald\n"
        "p = torch.softmax(torch.randn(200_000, 10), -1)\n"
        "mc = torch.softmax(torch.randn(20_000, 8, 10), -1)\n"
        "expected = [entropy(p), margin(p), bald(mc)]\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    torch.set_num_threads(1)  # as torch's DataLoader workers do\n"
        "    got = [entropy(p), margin(p), bald(mc)]\n"
        "    os._exit(0 if all(map(torch.equal, got, expected)) else 1)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "assert os.waitstatus_to_exitcode(status) == 0, status\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---------------------------------------------------------------------------- dispatch


def test_when_the_fused_kernels_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    p = _dirichlet((10, 4), 1.0, seed=8)
    assert _fused.enabled(p)
    assert not _fused.enabled(p.double())  # float64: torch kernels
    assert not _fused.enabled(torch.empty(3, 4, device="meta"))
    monkeypatch.setenv(_fused.DISABLE_ENV, "1")
    assert not _fused.enabled(p)
    monkeypatch.setenv(_fused.DISABLE_ENV, "0")
    assert _fused.enabled(p)


def test_without_numba_the_torch_kernels_run(monkeypatch: pytest.MonkeyPatch) -> None:
    p = _dirichlet((100, 5), 1.0, seed=9)
    expected = U._entropy_torch(p)
    monkeypatch.setattr(_fused, "_kernels", None)
    monkeypatch.setattr(_fused, "_import_failed", True)
    assert not _fused.enabled(p)
    assert torch.equal(entropy(p), expected)


def test_without_numba_installed_no_warning_and_torch_kernels() -> None:
    code = (
        "import sys, warnings; sys.modules['numba'] = None; warnings.simplefilter('error')\n"
        "import torch\n"
        "from aalearn.functional import _fused, entropy, margin, bald\n"
        "from aalearn.functional import uncertainty as U\n"
        "p = torch.softmax(torch.randn(300, 7), -1)\n"
        "assert not _fused.enabled(p)\n"
        "assert torch.equal(entropy(p), U._entropy_torch(p))\n"
        "assert torch.equal(margin(p), U._margin_torch(p))\n"
        "mc = torch.softmax(torch.randn(30, 4, 7), -1)\n"
        "assert torch.equal(bald(mc), U._bald_torch(mc))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_failing_numba_warns_once_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    p = _dirichlet((100, 5), 1.0, seed=10)
    expected = U._entropy_torch(p)

    def broken(name: str) -> None:
        raise ImportError("Numba needs NumPy 2.3 or less")

    monkeypatch.setattr(_fused, "_kernels", None)
    monkeypatch.setattr(_fused, "_import_failed", False)
    monkeypatch.setattr(_fused.importlib, "import_module", broken)
    with pytest.warns(RuntimeWarning, match="numba is installed but its kernels failed"):
        assert torch.equal(entropy(p), expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(entropy(p), expected)  # no second warning


def test_import_aalearn_does_not_import_numba() -> None:
    code = "import sys, aalearn; assert 'numba' not in sys.modules, 'numba imported'"
    subprocess.run([sys.executable, "-c", code], check=True)

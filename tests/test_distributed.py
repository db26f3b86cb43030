"""Sharded selection on torch.distributed: 2 and 3 gloo processes on 127.0.0.1.

Each launch spawns the ranks with ``torch.multiprocessing`` and a hard deadline, so
a hang fails the test instead of blocking the suite. The references are computed
in this process, unsharded.
"""

from __future__ import annotations

import datetime
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import aalearn
from aalearn.distributed import (
    RankFailedError,
    ShardedSampler,
    current_shard,
    save_on_rank0,
    shard_indices,
)
from aalearn.distributed.sampler import _check_timeout
from aalearn.samplers import AALUSampler, AdversarialSampler, CoreSetSampler

from .conftest import TinyNet, trained_model

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo"
)

#: Hard limit of one launch: start-up (imports) plus the work, on 2 cores.
LAUNCH_TIMEOUT = 150.0
#: How long a rank waits for one that never calls ``select``.
ABSENT_TIMEOUT = 1.5
BUDGET = {"entropy": 40, "coreset": 30, "aalu": 20, "adversarial": 20, "vaal": 20}
BUDGET.update({"badge": 30, "batchbald": 10, "power-entropy": 30})


def _samplers() -> dict[str, Any]:
    out: dict[str, Any] = {
        "entropy": aalearn.UncertaintySampler(
            "entropy", inference={"batch_size": 64, "device": "cpu"}
        )
    }
    small = {"epochs": 2, "hidden": (32, 16), "latent_dim": 8, "selector_batch_size": 64,
             "inference": {"batch_size": 64, "device": "cpu"}, "random_state": 0}  # fmt: skip
    out["coreset"] = CoreSetSampler(inference={"batch_size": 64, "device": "cpu"})
    out["aalu"] = AALUSampler(min_iterations=0, **small)
    # VAAL's feature-space form, and raw VAAL kept tiny
    out["adversarial"] = AdversarialSampler(representation="features", min_iterations=0, **small)
    out["vaal"] = AdversarialSampler(
        representation="raw", epochs=0.15, vae_channels=4, hidden=(16,), latent_dim=8,
        selector_batch_size=64, inference={"batch_size": 64, "device": "cpu"},
        random_state=0,
    )  # fmt: skip
    # Batch-aware samplers: BADGE and BatchBALD gather features and probabilities /
    # consistent MC-dropout probabilities (masks seeded per pass, not per batch); the
    # stochastic sampler's wrapped scorer scores every item on every rank.
    out["badge"] = aalearn.BADGESampler(
        inference={"batch_size": 64, "device": "cpu"}, random_state=0
    )
    out["batchbald"] = aalearn.BatchBALDSampler(
        mc_samples=4, num_samples=100, max_candidates=200, random_state=0,
        inference={"batch_size": 64, "device": "cpu"},
    )  # fmt: skip
    out["power-entropy"] = aalearn.StochasticBatchSampler(
        aalearn.UncertaintySampler("entropy", inference={"batch_size": 64, "device": "cpu"}),
        mode="power",
        random_state=0,
    )
    return out


class _AllFields(aalearn.BaseSampler):
    """Collects every field (losses from the oracle's labels) and keeps the outputs."""

    def __init__(self) -> None:
        super().__init__(inference={"device": "cpu", "batch_size": 64})

    def _select(self, model: Any, pool: Any, budget: int, rng: Any) -> np.ndarray:
        idx = pool.labeled_indices
        kw = {"features": True, "losses": True, "inputs": True, "labels": pool.labels(idx)}
        self.outputs_ = self._collect(model, pool, idx, **kw)
        return pool.unlabeled_indices[:budget].copy()


# ------------------------------------------------------------------ the launcher
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry(rank: int, fn: Callable[..., Any], world: int, port: int, out: str, args: tuple) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=30),
    )
    try:
        torch.save(fn(rank, world, *args), Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _launch(fn: Callable[..., Any], world: int, tmp: Path, *args: Any) -> list[Any]:
    ctx = mp.start_processes(
        _entry,
        args=(fn, world, _free_port(), str(tmp), args),
        nprocs=world,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    try:
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                pytest.fail(f"{world} distributed ranks did not finish in {LAUNCH_TIMEOUT} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(world)]


def _setup(data: dict) -> tuple[TinyNet, Any]:
    model = TinyNet()
    model.load_state_dict(data["state"])
    pool = aalearn.ActivePool(torch.utils.data.TensorDataset(data["x"], data["y"]))
    pool.label(data["labeled"], labels=data["labels"])
    return model, pool


# ---------------------------------------------------------------------- workers
def _selections(data: dict, out: Path, group: Any) -> dict:
    model, pool = _setup(data)
    res: dict[str, Any] = {"picked": {}, "bytes": {}}
    for name, sampler in _samplers().items():
        wrapped = ShardedSampler(sampler, group=group, timeout=30)
        res["picked"][name] = wrapped.select(model, pool, BUDGET[name])
        res["bytes"][name] = wrapped.bytes_communicated_
    fields = _AllFields()
    ShardedSampler(fields, group=group).select(model, pool, 1)
    res["fields"] = {
        k: getattr(fields.outputs_, k) for k in ("probs", "features", "losses", "inputs")
    }
    pool.label(res["picked"]["entropy"])
    path = out / "pool.npz"
    save_on_rank0(pool, path, group=group)
    reloaded = aalearn.ActivePool(None, n_items=len(pool))
    reloaded.load(path)  # written by rank 0, complete once save_on_rank0 returns
    res["pool"] = pool.state_dict()
    res["reloaded"] = reloaded.state_dict()
    return res


class _Faulty(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, fail: bool) -> None:
        super().__init__()
        self.model, self.fail = model, fail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail:
            raise ValueError("boom in the inference pass")
        return self.model(x)


class _FailsAfterCollect(aalearn.BaseSampler):
    """Gathers the features, then raises on one rank: a failure between collectives."""

    def __init__(self) -> None:
        super().__init__(inference={"device": "cpu", "batch_size": 64})
        self.fail = False  # not a parameter: the ranks agree on the configuration

    def _select(self, model: Any, pool: Any, budget: int, rng: Any) -> np.ndarray:
        self._collect(model, pool, pool.unlabeled_indices, features=True)
        if self.fail:
            raise ValueError("boom after the gather")
        return pool.unlabeled_indices[:budget].copy()


def _outcome(fn: Callable[[], Any]) -> dict:
    start = time.monotonic()
    try:
        fn()
        error = None
    except Exception as err:
        error = (type(err).__name__, str(err))
    return {"error": error, "seconds": time.monotonic() - start}


def _diverged(data: dict, rank: int) -> Any:
    """The pool of ``data``, with one more item labeled on rank 1: the pools disagree."""
    pool = _setup(data)[1]
    if rank == 1:
        pool.label(pool.unlabeled_indices[:1])
    return pool


def _failures(rank: int, data: dict, out: Path, group: Any) -> dict:
    model, pool = _setup(data)
    fail = rank == 1
    uncertainty = aalearn.UncertaintySampler(inference={"batch_size": 64, "device": "cpu"})
    entropy = ShardedSampler(uncertainty, group=group, timeout=20)
    fails_after = _FailsAfterCollect()
    fails_after.fail = fail
    after_gather = ShardedSampler(fails_after, group=group, timeout=20)
    res = {
        "in_pass": _outcome(lambda: entropy.select(_Faulty(model, fail), pool, 10)),
        "after_gather": _outcome(lambda: after_gather.select(model, pool, 10)),
        "save": _outcome(
            lambda: save_on_rank0(pool, out / ("missing/p.npz" if rank == 0 else "x"), group=group)
        ),
        # ranks that disagree: a clear ValueError on every rank, the group still usable
        "pool_differs": _outcome(lambda: entropy.select(model, _diverged(data, rank), 10)),
        "budget_differs": _outcome(lambda: entropy.select(model, pool, 10 + rank)),
        "config_differs": _outcome(
            lambda: ShardedSampler(
                aalearn.UncertaintySampler(
                    "margin" if fail else "entropy", inference={"device": "cpu"}
                ),
                group=group,
                timeout=20,
            ).select(model, pool, 10)
        ),
        # still usable after the failures above: the flags kept the ranks in step
        "after": entropy.select(model, pool, 10),
    }
    # Last, as it leaves the group broken: rank 1 never calls select.
    if fail:
        time.sleep(3 * ABSENT_TIMEOUT)
    else:
        absent = ShardedSampler(uncertainty, group=group, timeout=ABSENT_TIMEOUT)
        res["absent"] = _outcome(lambda: absent.select(model, pool, 10))
    return res


def _worker(rank: int, world: int, data: dict, out: str) -> dict:
    """Selections on all three ranks, then selections and failures on ranks 0 and 1."""
    res = {3: _selections(data, Path(out) / "world3", None)}
    group = dist.new_group([0, 1])  # every rank takes part in creating it
    if rank < 2:
        res[2] = _selections(data, Path(out) / "world2", group)
        res["failures"] = _failures(rank, data, Path(out), group)
    return res


class _Dies(torch.nn.Module):
    """Exits the process in its first forward pass on the rank that ``dies``: a kill -9."""

    def __init__(self, model: torch.nn.Module, dies: bool) -> None:
        super().__init__()
        self.model, self.dies = model, dies

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dies:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.model(x)


def _killed(rank: int, world: int, data: dict) -> dict:
    model, pool = _setup(data)
    uncertainty = aalearn.UncertaintySampler(inference={"batch_size": 64, "device": "cpu"})
    sampler = ShardedSampler(uncertainty, timeout=20)
    return _outcome(lambda: sampler.select(_Dies(model, rank == 1), pool, 10))


def _launch_some_die(fn: Callable[..., Any], world: int, tmp: Path, *args: Any) -> dict:
    """Like :func:`_launch`, for jobs where ranks die: the results of the ranks that lived."""
    ctx = mp.start_processes(
        _entry,
        args=(fn, world, _free_port(), str(tmp), args),
        nprocs=world,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    try:
        while any(p.is_alive() for p in ctx.processes):
            if time.monotonic() > deadline:
                pytest.fail(f"{world} distributed ranks did not finish in {LAUNCH_TIMEOUT} s")
            time.sleep(0.2)
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    paths = {r: tmp / f"rank{r}.pt" for r in range(world)}
    return {r: torch.load(p, weights_only=False) for r, p in paths.items() if p.exists()}


# ------------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def data(digits):
    pool = aalearn.ActivePool(digits)
    labeled = pool.random_unlabeled(100, random_state=1)
    x, y = digits.tensors
    model = trained_model(digits, labeled, epochs=25)
    return {"state": model.state_dict(), "labeled": labeled, "labels": y[labeled].numpy(),
            "x": x, "y": y}  # fmt: skip


@pytest.fixture(scope="module")
def reference(data):
    model, pool = _setup(data)
    return {name: s.select(model, pool, BUDGET[name]) for name, s in _samplers().items()}


@pytest.fixture(scope="module")
def launched(data, tmp_path_factory):
    """One launch of three ranks (the whole job, then a group of two): spawns cost most."""
    tmp = tmp_path_factory.mktemp("ranks")
    for world in (2, 3):
        (tmp / f"world{world}").mkdir()
    start = time.monotonic()
    results = _launch(_worker, 3, tmp, data, str(tmp))
    return results, time.monotonic() - start


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.slow
def test_sharded_selection_equals_single_process(data, reference, launched, world):
    results = [res[world] for res in launched[0][:world]]
    model, pool = _setup(data)
    sampler = _AllFields()
    sampler.select(model, pool, 1)
    fields = {k: getattr(sampler.outputs_, k) for k in ("probs", "features", "losses", "inputs")}
    n_items, n_labeled = len(data["y"]), len(data["labeled"])
    for rank, res in enumerate(results):
        for name, expected in reference.items():
            np.testing.assert_array_equal(res["picked"][name], expected, err_msg=f"{name} {rank}")
        # top-k: world * k * (4 + 8) bytes of candidates, plus the agreement check (4 int64
        # per rank), the flags and the check of the picks
        flags, agree = 4 * world, 32 * world
        assert res["bytes"]["entropy"] == agree + world * 40 * 12 + 2 * flags + 16 * 40
        rows = -(-n_items // world)  # every row's features (32 floats), padded per rank
        assert res["bytes"]["coreset"] == agree + world * rows * 32 * 4 + 2 * flags + 16 * 30
        for field, value in res["fields"].items():  # every row, bit for bit
            torch.testing.assert_close(value, fields[field], rtol=0, atol=0, msg=field)
        for key in ("pool", "reloaded"):
            for field, value in res[key].items():
                np.testing.assert_array_equal(value, results[0]["pool"][field])
        assert res["pool"]["round"] == 2
        assert (res["pool"]["labeled_round"] < 0).sum() == n_items - n_labeled - 40


@pytest.mark.slow
def test_a_failing_rank_makes_the_others_fail_fast(launched):
    results, seconds = launched
    assert seconds < LAUNCH_TIMEOUT
    r0, r1 = (res["failures"] for res in results[:2])
    for phase, own in (("in_pass", "boom in the inference pass"), ("after_gather", "boom after")):
        assert r1[phase]["error"][0] == "ValueError" and own in r1[phase]["error"][1]
        kind, message = r0[phase]["error"]
        assert kind == "RankFailedError", (phase, message)
        assert "rank(s) [1] of 2 raised" in message and "rank 0 stops too" in message
        assert r0[phase]["seconds"] < 5.0
    assert r0["save"]["error"][0] == "FileNotFoundError"
    assert r1["save"]["error"][0] == "RankFailedError" and "save_on_rank0" in r1["save"]["error"][1]
    for phase, what in (("pool_differs", "the pool state"), ("budget_differs", "the budget"),
                        ("config_differs", "the configuration")):  # fmt: skip
        for rank, res in enumerate((r0, r1)):
            kind, message = res[phase]["error"]
            assert kind == "ValueError", (phase, rank, message)
            assert f"the ranks disagree on {what}" in message and "[[0], [1]]" in message
            assert res[phase]["seconds"] < 5.0
    np.testing.assert_array_equal(r0["after"], r1["after"])
    kind, message = r0["absent"]["error"]
    assert kind == "RankFailedError" and "gave up waiting" in message
    assert r0["absent"]["seconds"] < ABSENT_TIMEOUT + 3.0


@pytest.mark.slow
def test_a_rank_killed_mid_selection_makes_the_others_fail_fast(data, tmp_path):
    start = time.monotonic()
    results = _launch_some_die(_killed, 2, tmp_path, data)
    assert sorted(results) == [0]  # rank 1 was killed in its inference pass
    kind, message = results[0]["error"]
    assert kind == "RankFailedError", message
    assert results[0]["seconds"] < 10.0  # well before the 20 s timeout
    assert time.monotonic() - start < LAUNCH_TIMEOUT


# ------------------------------------------------------------- in one process
def test_shard_indices_partitions_without_padding():
    idx = np.arange(100, 117)
    for world in (1, 2, 3, 5, 17, 20):
        parts = [shard_indices(idx, r, world) for r in range(world)]
        np.testing.assert_array_equal(np.concatenate(parts), idx)
        sizes = [p.size for p in parts]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    np.testing.assert_array_equal(shard_indices(torch.arange(5), 1, 2), [3, 4])
    with pytest.raises(ValueError, match=r"`rank` to be in \[0, 2\), but got 2"):
        shard_indices(idx, 2, 2)
    with pytest.raises(ValueError, match="`world_size` to be >= 1"):
        shard_indices(idx, 0, 0)
    with pytest.raises(ValueError, match="`indices` to be 1-D"):
        shard_indices(idx.reshape(1, -1), 0, 1)


def test_sharded_sampler_checks_its_arguments(tiny_model, digits):
    pool = aalearn.ActivePool(digits)
    pool.label([0])  # a model-based sampler refuses a pool with no label
    sampler = aalearn.UncertaintySampler("margin", inference={"device": "cpu"})
    assert isinstance(ShardedSampler(sampler), aalearn.Sampler)
    assert repr(ShardedSampler(sampler, timeout=5)) == (
        "ShardedSampler(UncertaintySampler(method='margin', inference={'device': 'cpu'}), "
        "timeout=5)"
    )
    if not dist.is_initialized():
        with pytest.raises(RuntimeError, match="call torch.distributed.init_process_group"):
            ShardedSampler(sampler).select(tiny_model, pool, 3)
    with pytest.raises(ValueError, match="`timeout` to be > 0 seconds, but got 0.0"):
        ShardedSampler(sampler, timeout=0).select(tiny_model, pool, 3)
    # no limit of our own (the process group's applies), not an OverflowError
    assert _check_timeout(float("inf")) is None and _check_timeout(1e300) is None
    assert _check_timeout(datetime.timedelta.max) is None
    assert _check_timeout(2.5) == datetime.timedelta(seconds=2.5)
    if not dist.is_initialized():
        with pytest.raises(RuntimeError, match="call torch.distributed.init_process_group"):
            ShardedSampler(sampler, timeout=float("inf")).select(tiny_model, pool, 3)
    with pytest.raises(ValueError, match="`timeout` to be > 0 seconds, but got nan"):
        ShardedSampler(sampler, timeout=float("nan")).select(tiny_model, pool, 3)
    with pytest.raises(TypeError, match="`timeout` to be a number of seconds"):
        ShardedSampler(sampler, timeout="1").select(tiny_model, pool, 3)
    with pytest.raises(TypeError, match="`sampler` to have a select"):
        ShardedSampler(object()).select(tiny_model, pool, 3)
    assert current_shard() is None
    assert issubclass(RankFailedError, RuntimeError)

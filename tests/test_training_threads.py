"""The selector training runs on one CPU thread and gives the caller's setting back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from aalearn.samplers._training import _cpu_threads

from .test_aalu import FAST, novel_cluster_pool


@pytest.fixture
def two_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_limit_inside_and_restored_after(two_threads):
    with _cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_restored_on_error(two_threads):
    with pytest.raises(KeyError), _cpu_threads(1):
        assert torch.get_num_threads() == 1
        raise KeyError("boom")
    assert torch.get_num_threads() == 2


def test_never_raises_a_lower_setting(two_threads):
    with _cpu_threads(4):
        assert torch.get_num_threads() == 2
    torch.set_num_threads(1)
    with _cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 1


def _kw(progress):
    return {
        "epochs": 2,
        "selector_batch_size": 32,
        "inference": {"device": "cpu"},
        "random_state": 0,
        "progress": progress,
        **FAST,
    }


def test_aalu_trains_on_one_thread_and_restores(two_threads):
    from aalearn.samplers.aalu import AALUSampler

    pool, model, _ = novel_cluster_pool(seed=1, per=30, n_labeled=10)
    seen: list[int] = []
    picked = AALUSampler(**_kw(lambda e, d: seen.append(torch.get_num_threads()))).select(
        model, pool, 3
    )
    assert seen == [1, 1]  # the callback runs inside the loop, after each epoch
    assert torch.get_num_threads() == 2
    # The picks are those of a caller who set one thread himself.
    torch.set_num_threads(1)
    assert AALUSampler(**_kw(False)).select(model, pool, 3).tolist() == picked.tolist()


def test_aalu_restores_the_setting_when_training_fails(two_threads):
    from aalearn.samplers.aalu import AALUSampler

    pool, model, _ = novel_cluster_pool(seed=1, per=30, n_labeled=10)

    def fail(epoch: int, losses: dict[str, float]) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        AALUSampler(**_kw(fail)).select(model, pool, 3)
    assert torch.get_num_threads() == 2

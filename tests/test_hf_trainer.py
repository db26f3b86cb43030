"""The HuggingFace ``transformers.Trainer`` integration: a 3-cycle loop on a tiny BERT.

The model is built from a ``BertConfig`` (2 layers, a 30-token vocabulary; no download)
and trained by a real ``Trainer`` on the CPU on a ``datasets.Dataset``. Skipped without
the ``hf`` extra (``pip install 'aalearn[hf]'``).
"""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import aalearn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip(
    "transformers", reason="needs transformers: pip install 'aalearn[hf]'"
)
datasets = pytest.importorskip("datasets", reason="needs datasets: pip install 'aalearn[hf]'")
pytest.importorskip(
    "accelerate", reason="transformers.Trainer needs accelerate: pip install 'aalearn[hf]'"
)
from aalearn.integrations.huggingface import (  # noqa: E402
    ActiveLearningTrainerCallback,
    pool_datasets,
    select_after_training,
)

from .test_distributed import _free_port  # noqa: E402

N, T, VOCAB, CLASSES, BUDGET, CYCLES = 120, 8, 30, 3, 12, 3
#: Hard limit of the 2-rank launch: start-up (imports of transformers) plus 3 trainings.
LAUNCH_TIMEOUT = 240.0


def tiny_bert(seed: int) -> Any:
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=T, num_labels=CLASSES,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config)


def token_dataset() -> Any:
    """Token sequences whose class is the first token modulo 3."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, T + 1, size=N)
    mask = (np.arange(T) < lengths[:, None]).astype(np.int64)
    ids = rng.integers(1, VOCAB, size=(N, T)) * mask
    data = {"input_ids": ids.tolist(), "attention_mask": mask.tolist()}
    data["label"] = (ids[:, 0] % CLASSES).tolist()
    return datasets.Dataset.from_dict(data).with_format("torch")


def _oracle(data: Any):
    labels = data.with_format("numpy")[:]["label"]
    return lambda idx: labels[np.asarray(idx)]


def _sampler() -> aalearn.UncertaintySampler:
    return aalearn.UncertaintySampler("margin", inference={"batch_size": 32, "device": "cpu"})


def _args(path: Path, **kwargs: Any) -> Any:
    options: dict[str, Any] = {"output_dir": str(path), "use_cpu": True, "report_to": "none"}
    options.update(num_train_epochs=4, per_device_train_batch_size=16, learning_rate=5e-3)
    options.update(save_strategy="no", logging_strategy="no", disable_tqdm=True, seed=0)
    options.update(kwargs)
    return transformers.TrainingArguments(**options)


# ------------------------------------------------------------------ views
def test_pool_datasets_are_datasets_views_with_the_oracle_labels():
    data = token_dataset()
    pool = aalearn.ActivePool(data)
    pool.label([7, 2])  # the dataset's own labels
    own = int(data[5]["label"])
    pool.label([5], labels=[(own + 1) % CLASSES])  # an oracle that disagrees
    labeled, unlabeled = pool_datasets(pool)
    assert isinstance(labeled, datasets.Dataset) and isinstance(unlabeled, datasets.Dataset)
    assert labeled.column_names == data.column_names and labeled.format == data.format
    rows, everything = labeled[:], data[:]
    torch.testing.assert_close(rows["input_ids"], everything["input_ids"][[2, 5, 7]])
    want = everything["label"][[2, 5, 7]].clone()
    want[1] = (own + 1) % CLASSES
    torch.testing.assert_close(rows["label"], want)
    assert len(unlabeled) == N - 3
    torch.testing.assert_close(unlabeled[:2]["input_ids"], everything["input_ids"][[0, 1]])
    # a pool over another dataset: its PoolSubset views
    other = aalearn.ActivePool(torch.utils.data.TensorDataset(torch.zeros(4, 2)))
    other.label([1])
    views = pool_datasets(other)
    assert [type(v).__name__ for v in views] == ["PoolSubset", "PoolSubset"]
    assert views[0].indices.tolist() == [1] and views[1].indices.tolist() == [0, 2, 3]


def test_pool_datasets_bad_arguments():
    with pytest.raises(TypeError, match="Expected argument `pool` to be an aalearn.ActivePool"):
        pool_datasets(token_dataset())
    with pytest.raises(ValueError, match="to have a dataset"):
        pool_datasets(aalearn.ActivePool(None, n_items=3))
    nolabel = aalearn.ActivePool(datasets.Dataset.from_dict({"text": ["a", "b"]}))
    nolabel.label([0], labels=[1])
    with pytest.raises(ValueError, match=re.escape("label column (label or labels)")):
        pool_datasets(nolabel)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"sampler": None}, TypeError, "Expected argument `sampler` to have a select"),
        ({"pool": "pool"}, TypeError, "Expected argument `pool` to be an aalearn.ActivePool"),
        ({"budget": -1}, ValueError, "Expected argument `budget` to be >= 1, but got -1."),
        ({"oracle": 3}, TypeError, "Expected argument `oracle` to be callable or None"),
        ({"label": "no"}, TypeError, "Expected argument `label` to be a bool"),
    ],
)
def test_callback_bad_arguments(kwargs, error, match):
    args = {"sampler": _sampler(), "pool": aalearn.ActivePool(None, n_items=5), "budget": 2}
    args.update(kwargs)
    with pytest.raises(error, match=re.escape(match)):
        ActiveLearningTrainerCallback(
            args.pop("sampler"), args.pop("pool"), args.pop("budget"), **args
        )


# ------------------------------------------------------------------- loop
def _loop(out: Path) -> dict:
    """The user's loop: one callback, a new model and Trainer per cycle on pool_datasets."""
    data = token_dataset()
    pool = aalearn.ActivePool(data)
    pool.label(pool.random_unlabeled(24, random_state=0))
    callback = ActiveLearningTrainerCallback(_sampler(), pool, BUDGET, oracle=_oracle(data))
    run: dict[str, list] = {"before": [], "weights": [], "steps": [], "sizes": [], "world": []}
    for cycle in range(CYCLES):
        run["before"].append(pool.state_dict())
        labeled, _ = pool_datasets(pool)
        trainer = transformers.Trainer(
            model=tiny_bert(cycle), args=_args(out), train_dataset=labeled, callbacks=[callback]
        )
        trainer.train()
        run["weights"].append({k: v.clone() for k, v in trainer.model.state_dict().items()})
        run["steps"].append(trainer.state.global_step)
        run["sizes"].append(len(labeled))
        run["world"].append(callback.world_size_)
    run["picked"] = list(callback.history_)
    run["after"] = pool.state_dict()
    return run


def _check_loop(run: dict) -> None:
    """Each cycle's picks are the sampler's, run unsharded on that cycle's weights and pool."""
    data = token_dataset()
    for cycle, (before, weights) in enumerate(zip(run["before"], run["weights"])):
        model = tiny_bert(cycle)
        assert any(not torch.equal(v, weights[k]) for k, v in model.state_dict().items())
        model.load_state_dict(weights)
        reference = aalearn.ActivePool(data)
        reference.load_state_dict(before)
        want = _sampler().select(model, reference, BUDGET)
        np.testing.assert_array_equal(run["picked"][cycle], want)
        assert not reference.labeled_mask[want].any()
    picked = np.concatenate(run["picked"])
    pool = aalearn.ActivePool(data)
    pool.load_state_dict(run["after"])
    assert np.unique(picked).size == CYCLES * BUDGET and pool.n_labeled == 24 + CYCLES * BUDGET
    np.testing.assert_array_equal(pool.labels(picked), data[:]["label"].numpy()[picked])
    np.testing.assert_array_equal(
        pool.labeled_round[picked], np.repeat(np.arange(1, 1 + CYCLES), BUDGET)
    )
    assert run["sizes"] == [24 + c * BUDGET for c in range(CYCLES)]


def test_three_cycles_with_a_real_trainer(tmp_path):
    run = _loop(tmp_path)
    assert run["world"] == [1] * CYCLES
    assert run["steps"] == [4 * math.ceil(n / 16) for n in run["sizes"]]  # every labeled item
    _check_loop(run)
    # select_after_training: the same selection as a function
    data = token_dataset()
    pool = aalearn.ActivePool(data)
    pool.load_state_dict(run["before"][-1])
    model = tiny_bert(0)
    model.load_state_dict(run["weights"][-1])
    trainer = transformers.Trainer(model=model, args=_args(tmp_path))
    picked = select_after_training(trainer, _sampler(), pool, 5)
    np.testing.assert_array_equal(picked, run["picked"][-1][:5])


def _ddp_rank(rank: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
        WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", GROUP_RANK="0", TORCHELASTIC_RUN_ID="aalearn-test",
        GLOO_SOCKET_IFNAME="lo", HF_HUB_OFFLINE="1",
    )  # fmt: skip
    torch.set_num_threads(1)
    run = _loop(Path(out))
    torch.save(run, Path(out) / f"rank{rank}.pt")
    if dist.is_initialized():
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_gloo_available(), reason="needs torch.distributed gloo")
@pytest.mark.slow
def test_torchrun_ranks_share_the_selection(tmp_path):
    """2 ranks launched as torchrun does: the Trainer's process group shards the selection."""
    ctx = mp.start_processes(
        _ddp_rank, args=(_free_port(), str(tmp_path)), nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    try:
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                pytest.fail(f"the 2 ranks did not finish in {LAUNCH_TIMEOUT} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    runs = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert runs[0]["world"] == runs[1]["world"] == [2] * CYCLES  # sharded over the 2 ranks
    for a, b in zip(runs[0]["picked"], runs[1]["picked"]):
        np.testing.assert_array_equal(a, b)
    for key in runs[0]["after"]:  # the pools stayed identical
        np.testing.assert_array_equal(runs[0]["after"][key], runs[1]["after"][key])
    for wa, wb in zip(runs[0]["weights"], runs[1]["weights"]):  # DDP kept the weights in sync
        for key in wa:
            torch.testing.assert_close(wa[key], wb[key])
    # each rank trained on its half of the labeled items
    assert runs[0]["steps"] == [4 * math.ceil(math.ceil(n / 2) / 16) for n in runs[0]["sizes"]]
    _check_loop(runs[0])  # the picks equal one unsharded process's, cycle by cycle


def test_label_false_leaves_the_pool(tmp_path):
    data = token_dataset()
    pool = aalearn.ActivePool(data)
    pool.label(np.arange(0, N, 6))
    before = pool.labeled_indices.copy()
    callback = ActiveLearningTrainerCallback(_sampler(), pool, 7, label=False)
    trainer = transformers.Trainer(
        model=tiny_bert(0),
        args=_args(tmp_path, num_train_epochs=1),
        train_dataset=pool_datasets(pool)[0],
        callbacks=[callback],
    )
    trainer.train()
    np.testing.assert_array_equal(pool.labeled_indices, before)
    assert callback.picked_.shape == (7,) and not pool.labeled_mask[callback.picked_].any()
    with pytest.raises(TypeError, match="Expected argument `trainer` to be a transformers"):
        select_after_training(trainer.model, _sampler(), pool, 3)


def test_docs_page_runs(capsys):
    page = Path(__file__).resolve().parent.parent / "docs" / "huggingface-trainer.md"
    blocks = re.findall(r"^```python\n(.*?)^```", page.read_text(), re.MULTILINE | re.DOTALL)
    assert blocks
    exec(compile("\n\n".join(blocks), str(page), "exec"), {"__name__": "docs_page"})
    capsys.readouterr()

"""The Lightning integration with a real ``lightning`` Trainer on the CPU.

A 3-cycle loop in this process, and the same loop over 2 DDP processes (gloo on
127.0.0.1, launched the way ``torchrun`` launches them, with a hard deadline), whose
picks must equal those one process makes with the same weights. Skipped without the
``lightning`` extra (``pip install 'aalearn[lightning]'``).
"""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import TensorDataset

import aalearn

pl = pytest.importorskip(
    "lightning.pytorch", reason="needs lightning: pip install 'aalearn[lightning]'"
)
from aalearn.integrations.lightning import (  # noqa: E402
    ActiveLearningCallback,
    ActivePoolDataModule,
    select_after_fit,
)

from .test_distributed import _free_port  # noqa: E402

BUDGET, CYCLES, N = 30, 3, 600
#: Hard limit of the DDP launch: start-up (imports of lightning) plus 3 fits, on 2 cores.
LAUNCH_TIMEOUT = 240.0


class LitNet(pl.LightningModule):
    """64 -> 32 -> 10 on 1x8x8 digits; ``forward`` returns the logits aalearn scores."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def _digits() -> TensorDataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data[:N] / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    return TensorDataset(x, torch.tensor(d.target[:N], dtype=torch.int64))


def _oracle(data: TensorDataset):  # the true digit, as an annotator would give it
    return lambda idx: data.tensors[1][torch.as_tensor(idx)].numpy()


def _sampler() -> aalearn.UncertaintySampler:
    return aalearn.UncertaintySampler("entropy", inference={"batch_size": 128, "device": "cpu"})


def _trainer(callback: Any, **kwargs: Any) -> Any:
    options = {"max_epochs": 15, "accelerator": "cpu", "logger": False}
    options.update(enable_checkpointing=False, enable_progress_bar=False)
    options.update(enable_model_summary=False, **kwargs)
    return pl.Trainer(callbacks=[callback], **options)


def _loop(trainer_kwargs: dict) -> dict:
    """The user's loop: one data module, one callback, a new model and Trainer per cycle.

    A callable value of ``trainer_kwargs`` is called for each Trainer (a strategy object
    serves one Trainer only).
    """
    data = _digits()
    pool = aalearn.ActivePool(data)
    pool.label(pool.random_unlabeled(40, random_state=0), labels=None)
    dm = ActivePoolDataModule(pool, batch_size=32, random_state=0)
    callback = ActiveLearningCallback(_sampler(), pool, BUDGET, oracle=_oracle(data))
    out: dict[str, list] = {"before": [], "weights": [], "picked": [], "world": []}
    for cycle in range(CYCLES):
        out["before"].append(pool.state_dict())
        torch.manual_seed(cycle)
        model = LitNet()
        kwargs = {k: v() if callable(v) else v for k, v in trainer_kwargs.items()}
        _trainer(callback, **kwargs).fit(model, datamodule=dm)
        out["weights"].append({k: v.detach().clone() for k, v in model.state_dict().items()})
        out["picked"].append(callback.picked_.copy())
        out["world"].append(callback.world_size_)
    out["after"] = pool.state_dict()
    return out


def _replay(run: dict) -> list[np.ndarray]:
    """The picks of one unsharded process with the weights and pools of ``run``."""
    expected = []
    for before, weights in zip(run["before"], run["weights"]):
        model = LitNet()
        model.load_state_dict(weights)
        pool = aalearn.ActivePool(_digits())
        pool.load_state_dict(before)
        expected.append(_sampler().select(model, pool, BUDGET))
    return expected


def _check_loop(run: dict) -> None:
    data = _digits()
    for picked, want in zip(run["picked"], _replay(run)):
        np.testing.assert_array_equal(picked, want)
    all_picked = np.concatenate(run["picked"])
    assert np.unique(all_picked).size == CYCLES * BUDGET
    final = aalearn.ActivePool(data)
    final.load_state_dict(run["after"])
    assert final.n_labeled == 40 + CYCLES * BUDGET
    assert final.labeled_mask[all_picked].all()
    # the oracle's labels, recorded in the round of their cycle
    np.testing.assert_array_equal(final.labels(all_picked), data.tensors[1][all_picked].numpy())
    rounds = final.labeled_round[np.concatenate(run["picked"])]
    np.testing.assert_array_equal(rounds, np.repeat(np.arange(1, 1 + CYCLES), BUDGET))
    for before, picked in zip(run["before"], run["picked"]):  # picked only unlabeled items
        assert not (np.asarray(before["labeled_round"])[picked] >= 0).any()


# ----------------------------------------------------------------- data module
def test_data_module_serves_the_labeled_then_the_unlabeled_items():
    data = _digits()
    pool = aalearn.ActivePool(data)
    pool.label([5, 1, 9])
    pool.label([3], labels=[7])  # an oracle label that differs from the digit
    dm = ActivePoolDataModule(pool, batch_size=2, random_state=0)
    xs, ys = zip(*dm.train_dataloader())
    x, y = torch.cat(xs), torch.cat(ys)
    order = [int(np.flatnonzero((data.tensors[0][:10] == xi).all(dim=(1, 2, 3)))[0]) for xi in x]
    assert sorted(order) == [1, 3, 5, 9]
    expect = {1: int(data.tensors[1][1]), 3: 7, 5: int(data.tensors[1][5]), 9: 9}
    assert {i: int(t) for i, t in zip(order, y)} == expect
    again = [int(np.flatnonzero((data.tensors[0][:10] == xi).all(dim=(1, 2, 3)))[0])
             for xi in torch.cat([b[0] for b in dm.train_dataloader()])]  # fmt: skip
    assert again == order  # a fresh loader with the same seed: the same order
    predict = dm.predict_dataloader()
    assert len(predict.dataset) == N - 4
    first = next(iter(predict))[0]
    torch.testing.assert_close(first, data.tensors[0][[0, 2]])  # ascending, unshuffled
    pool.label([0])  # the next loaders follow the pool
    assert len(dm.train_dataloader().dataset) == 5 and len(dm.predict_dataloader().dataset) == N - 5


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"pool": [1, 2]}, TypeError, "Expected argument `pool` to be an aalearn.ActivePool"),
        ({"batch_size": 0}, ValueError, "Expected argument `batch_size` to be >= 1, but got 0."),
        ({"num_workers": 1.5}, TypeError, "Expected argument `num_workers` to be an integer"),
        ({"shuffle": "yes"}, TypeError, "Expected argument `shuffle` to be a bool"),
        ({"collate_fn": 3}, TypeError, "Expected argument `collate_fn` to be callable"),
    ],
)
def test_data_module_bad_arguments(kwargs, error, match):
    args = {"pool": aalearn.ActivePool(_digits()), **kwargs}
    with pytest.raises(error, match=re.escape(match)):
        ActivePoolDataModule(args.pop("pool"), **args)


def test_data_module_needs_a_dataset_and_a_labeled_item():
    with pytest.raises(ValueError, match="to have a dataset"):
        ActivePoolDataModule(aalearn.ActivePool(None, n_items=3))
    with pytest.raises(ValueError, match="no labeled item"):
        ActivePoolDataModule(aalearn.ActivePool(_digits())).train_dataloader()


# ------------------------------------------------------------------- callback
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"sampler": "entropy"}, TypeError, "Expected argument `sampler` to have a select"),
        ({"pool": None}, TypeError, "Expected argument `pool` to be an aalearn.ActivePool"),
        ({"budget": 0}, ValueError, "Expected argument `budget` to be >= 1, but got 0."),
        ({"budget": True}, TypeError, "Expected argument `budget` to be an integer"),
        ({"oracle": [1]}, TypeError, "Expected argument `oracle` to be callable or None"),
        ({"label": 1}, TypeError, "Expected argument `label` to be a bool"),
    ],
)
def test_callback_bad_arguments(kwargs, error, match):
    args = {"sampler": _sampler(), "pool": aalearn.ActivePool(None, n_items=5), "budget": 2}
    args.update(kwargs)
    with pytest.raises(error, match=re.escape(match)):
        ActiveLearningCallback(args.pop("sampler"), args.pop("pool"), args.pop("budget"), **args)


def test_three_cycles_with_a_real_trainer():
    run = _loop({"devices": 1})
    assert run["world"] == [1, 1, 1]
    _check_loop(run)
    # the weights were trained on the labeled items: better than chance on all items
    model = LitNet()
    model.load_state_dict(run["weights"][-1])
    data = _digits()
    with torch.no_grad():
        accuracy = (model(data.tensors[0]).argmax(1) == data.tensors[1]).float().mean()
    assert accuracy > 0.7


def test_label_false_hands_the_picks_back_and_select_after_fit():
    data = _digits()
    pool = aalearn.ActivePool(data)
    pool.label(np.arange(0, N, 10))
    before = pool.state_dict()
    callback = ActiveLearningCallback(_sampler(), pool, 12, label=False)
    torch.manual_seed(0)
    model = LitNet()
    trainer = _trainer(callback, devices=1, max_epochs=1)
    trainer.fit(model, datamodule=ActivePoolDataModule(pool, random_state=0))
    for key, value in pool.state_dict().items():  # the pool is untouched
        np.testing.assert_array_equal(value, before[key])
    want = _sampler().select(model, pool, 12)
    np.testing.assert_array_equal(callback.picked_, want)
    np.testing.assert_array_equal(select_after_fit(trainer, _sampler(), pool, 12), want)
    with pytest.raises(TypeError, match="Expected argument `trainer` to be a lightning"):
        select_after_fit(model, _sampler(), pool, 12)


# ------------------------------------------------------------------------ DDP
def _ddp_rank(rank: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
        WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", GROUP_RANK="0", TORCHELASTIC_RUN_ID="aalearn-test",
        GLOO_SOCKET_IFNAME="lo",
    )  # fmt: skip
    torch.set_num_threads(1)
    from lightning.pytorch.strategies import DDPStrategy

    timeout = datetime.timedelta(seconds=60)
    strategy = lambda: DDPStrategy(process_group_backend="gloo", timeout=timeout)  # noqa: E731
    run = _loop({"devices": 2, "strategy": strategy})
    torch.save(run, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_gloo_available(), reason="needs torch.distributed gloo")
@pytest.mark.slow
def test_ddp_picks_equal_the_single_process_picks(tmp_path):
    ctx = mp.start_processes(
        _ddp_rank, args=(_free_port(), str(tmp_path)), nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    try:
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                pytest.fail(f"the 2 DDP ranks did not finish in {LAUNCH_TIMEOUT} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    runs = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert runs[0]["world"] == runs[1]["world"] == [2, 2, 2]  # sharded over the 2 ranks
    for a, b in zip(runs[0]["picked"], runs[1]["picked"]):
        np.testing.assert_array_equal(a, b)
    for key in runs[0]["after"]:  # the pools stayed identical
        np.testing.assert_array_equal(runs[0]["after"][key], runs[1]["after"][key])
    for wa, wb in zip(runs[0]["weights"], runs[1]["weights"]):  # DDP kept the weights in sync
        for key in wa:
            torch.testing.assert_close(wa[key], wb[key])
    _check_loop(runs[0])  # the picks equal one unsharded process's, cycle by cycle


# --------------------------------------------------------------- import, docs
@pytest.mark.skipif(sys.version_info < (3, 10), reason="sys.stdlib_module_names is 3.10+")
def test_import_aalearn_imports_only_torch_numpy_and_aalearn():
    """Neither ``import aalearn`` nor ``import aalearn.integrations`` imports an extra."""
    code = (
        "import sys, torch, numpy\n"
        "before = {m.split('.')[0] for m in sys.modules}\n"
        "import aalearn, aalearn.integrations\n"
        "new = {m.split('.')[0] for m in sys.modules} - before - set(sys.stdlib_module_names)\n"
        "# Cython's runtime modules come with numpy's compiled parts (numpy.random)\n"
        "new = {m for m in new if not m.startswith(('_cython_', 'cython_runtime'))}\n"
        "assert new == {'aalearn'}, sorted(new)\n"
        "assert 'lightning' not in sys.modules and 'transformers' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_docs_page_runs(capsys):
    page = Path(__file__).resolve().parent.parent / "docs" / "lightning.md"
    blocks = re.findall(r"^```python\n(.*?)^```", page.read_text(), re.MULTILINE | re.DOTALL)
    assert blocks
    exec(compile("\n\n".join(blocks), str(page), "exec"), {"__name__": "docs_page"})
    capsys.readouterr()

"""Sharded selection with torch.distributed: every rank scores its part of the pool.

Active learning on scikit-learn's digits where the selection runs on several
processes (or GPUs). Each rank scores its block of the unlabeled pool; the ranks
merge their candidates (uncertainty) or gather the features (Core-Set, AALU), and
every rank gets the same indices, the ones a single process would pick. gloo on
CPUs, nccl when every rank has a GPU.

    torchrun --nproc_per_node=2 examples/distributed_selection.py --fast
    torchrun --nproc_per_node=2 examples/distributed_selection.py --sampler coreset
    python examples/distributed_selection.py --fast     # one process, same result
"""

from __future__ import annotations

import argparse
import datetime
import os
import socket
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import aalearn
from aalearn.distributed import ShardedSampler, save_on_rank0


def make_model() -> nn.Module:
    # The input of the last nn.Linear is the feature vector of Core-Set and AALU.
    return nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )  # fmt: skip


def train(model: nn.Module, dataset: TensorDataset, epochs: int, seed: int) -> nn.Module:
    """An ordinary training loop (aalearn is not involved); here it runs on rank 0 only."""
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=32, shuffle=True, generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return model


def broadcast_weights(model: nn.Module, device: torch.device) -> None:
    """Give every rank rank 0's weights (with DDP training they are already equal)."""
    for tensor in model.state_dict().values():
        buf = tensor.to(device)
        dist.broadcast(buf, src=0)
        tensor.copy_(buf)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())


def make_sampler(name: str, device: str, seed: int, fast: bool) -> aalearn.Sampler:
    if name == "entropy":
        return aalearn.UncertaintySampler(
            "entropy", inference={"batch_size": 128, "device": device}
        )
    if name == "coreset":
        from aalearn.samplers.coreset import CoreSetSampler

        return CoreSetSampler(inference={"batch_size": 128, "device": device})
    from aalearn.samplers.aalu import AALUSampler

    if fast:  # a smoke run: 2 epochs, no floor on the iterations
        return AALUSampler(
            epochs=2, min_iterations=0, inference={"device": device}, random_state=seed
        )
    return AALUSampler(epochs=20, inference={"device": device}, random_state=seed)


def init_distributed() -> tuple[int, int, torch.device]:
    """Join the job torchrun started; without torchrun, a job of one process."""
    if "RANK" not in os.environ:  # plain `python`: a world of one
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    use_cuda = torch.cuda.is_available()
    if use_cuda:  # one GPU per rank
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(
        "nccl" if use_cuda else "gloo",
        # A rank that hangs outside select makes the others fail after this long.
        timeout=datetime.timedelta(minutes=5),
    )
    device = torch.device("cuda", torch.cuda.current_device()) if use_cuda else torch.device("cpu")
    return dist.get_rank(), dist.get_world_size(), device


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sampler", choices=["entropy", "coreset", "aalu"], default="entropy")
    parser.add_argument("--cycles", type=int, default=4, help="acquisition cycles (default 4)")
    parser.add_argument("--epochs", type=int, default=40, help="training epochs per cycle")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="2 cycles, 5 epochs: a smoke run")
    args = parser.parse_args(argv)
    if args.fast:
        args.cycles, args.epochs = 2, 5
    rank, world, device = init_distributed()
    try:
        digits = load_digits()  # the same data and split on every rank
        x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
        y = torch.tensor(digits.target)
        train_idx, test_idx = train_test_split(
            np.arange(len(y)), test_size=0.2, stratify=digits.target, random_state=0
        )
        pool = aalearn.ActivePool(TensorDataset(x[train_idx], y[train_idx]))
        pool.label(pool.random_unlabeled(int(0.1 * len(pool)), random_state=args.seed))
        budget = int(0.05 * len(pool))
        sampler = ShardedSampler(make_sampler(args.sampler, str(device), args.seed, args.fast))
        out_dir = tempfile.gettempdir()
        if rank == 0:
            print(f"{world} rank(s), backend {dist.get_backend()}, {sampler}")
        for cycle in range(args.cycles + 1):
            torch.manual_seed(args.seed + cycle)
            model = make_model()
            if rank == 0:
                train(model, pool.labeled_dataset(), args.epochs, args.seed + cycle)
            model.to(device)
            broadcast_weights(model, device)
            if rank == 0:
                acc = accuracy(model.cpu(), x[test_idx], y[test_idx])
                print(f"cycle {cycle}: {pool.n_labeled:4d} labeled, test accuracy {acc:.3f}")
                model.to(device)
            if cycle == args.cycles:
                break
            start = time.perf_counter()
            picked = sampler.select(model, pool, budget)  # the same on every rank
            pool.label(picked)  # so every rank's pool stays the same
            save_on_rank0(pool, os.path.join(out_dir, "aalearn-distributed-pool.npz"))
            if rank == 0:
                print(
                    f"  selected {budget} in {time.perf_counter() - start:.2f} s, "
                    f"{sampler.bytes_communicated_} bytes exchanged by each rank"
                )
        # Every rank reaches the end before any tears the group down: a rank that
        # destroyed it while rank 0 still evaluated made rank 0 abort in gloo.
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

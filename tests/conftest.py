"""Shared fixtures: small real data (scikit-learn's digits) and tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class TinyNet(nn.Module):
    """(1x8x8 or 64) -> 32 -> (dropout) -> 10; the classifier's input is the feature vector."""

    def __init__(self, in_features: int = 64, n_classes: int = 10, dropout: float = 0.3):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, 32), nn.ReLU(), nn.BatchNorm1d(32))
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(32, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.body(x.flatten(1))))


@pytest.fixture(scope="session")
def digits() -> TensorDataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    # 1x8x8 images, so that raw-input selectors (VAAL) see images; TinyNet flattens.
    x = torch.tensor(d.data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(d.target, dtype=torch.int64)
    return TensorDataset(x, y)


@pytest.fixture()
def tiny_model() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


def trained_model(dataset: TensorDataset, indices: np.ndarray, epochs: int = 30) -> TinyNet:
    """A few epochs of full-batch Adam on ``dataset[indices]``: deterministic and fast."""
    torch.manual_seed(0)
    model = TinyNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    idx = torch.as_tensor(np.array(indices, dtype=np.int64))
    x, y = dataset.tensors[0][idx], dataset.tensors[1][idx]
    model.train()
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


@pytest.fixture()
def one_thread():
    """torch on one thread for the test (float reductions in one fixed order), then restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)

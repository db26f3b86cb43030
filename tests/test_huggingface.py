"""The real ecosystem: a tiny HuggingFace BERT on a `datasets.Dataset` (no download).

`BertForSequenceClassification` takes `model(input_ids=..., attention_mask=...)` and
returns a `SequenceClassifierOutput`; the dataset's items are dicts of tensors with a
`label` key. Skipped without the `hf` extra (`pip install -e '.[hf]'`).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import aalearn

from .conftest import DEVICES

transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")

N, T, VOCAB, CLASSES = 48, 10, 30, 3


def tiny_bert(device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=T,
        num_labels=CLASSES,
    )
    return transformers.BertForSequenceClassification(config).to(device).eval()


def token_dataset():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, T + 1, size=N)
    ids = rng.integers(1, VOCAB, size=(N, T)) * (np.arange(T) < lengths[:, None])
    mask = (np.arange(T) < lengths[:, None]).astype(np.int64)
    data = {
        "input_ids": ids.tolist(),
        "attention_mask": mask.tolist(),
        "label": (ids[:, 0] % CLASSES).tolist(),
    }
    return datasets.Dataset.from_dict(data).with_format("torch")


@pytest.fixture(scope="module")
def pool() -> aalearn.ActivePool:
    pool = aalearn.ActivePool(token_dataset())
    pool.label(np.arange(0, N, 4))  # the dataset's labels
    pool.label([1, 2], labels=[2, 0])  # the oracle's
    return pool


def _check(picked: np.ndarray, pool: aalearn.ActivePool, budget: int) -> None:
    assert picked.dtype == np.int64 and picked.shape == (budget,)
    assert np.unique(picked).size == budget and not pool.labeled_mask[picked].any()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["entropy", "bald", "coreset", "aalu"])
@pytest.mark.slow
def test_samplers_on_bert_and_a_datasets_dataset(pool, name, device):
    model = tiny_bert(device)
    inference = {"device": device, "batch_size": 16}
    sampler = {
        "entropy": aalearn.UncertaintySampler("entropy", inference=inference),
        "bald": aalearn.UncertaintySampler(
            "bald", mc_samples=3, inference=inference, random_state=0
        ),
        "coreset": aalearn.CoreSetSampler(inference=inference),
        "aalu": aalearn.AALUSampler(epochs=1, hidden=(16,), inference=inference, random_state=0),
    }[name]
    picked = sampler.select(model, pool, 6)
    _check(picked, pool, 6)
    assert not model.training
    if name in ("entropy", "bald"):  # the picks are the top scores of that pass
        scores = sampler.score(model, pool)
        order = np.lexsort((pool.unlabeled_indices, -scores))[:6]
        np.testing.assert_array_equal(picked, pool.unlabeled_indices[order])


def test_bert_probabilities_and_features_are_its_own(pool):
    model = tiny_bert("cpu")
    data = pool.dataset
    idx = np.array([5, 0, 9])
    out = aalearn.collect(model, data, idx, features=True, losses=True, batch_size=2)
    batch = data[idx.tolist()]
    with torch.no_grad():
        ref = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        pooled = model.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    torch.testing.assert_close(out.probs, ref.logits.softmax(-1), rtol=1e-5, atol=1e-6)
    # "auto": the input of the last nn.Linear called, the classifier's: the pooled output
    torch.testing.assert_close(out.features, pooled.pooler_output, rtol=1e-5, atol=1e-6)
    expected = torch.nn.functional.cross_entropy(ref.logits, batch["label"], reduction="none")
    torch.testing.assert_close(out.losses, expected, rtol=1e-5, atol=1e-6)


def test_oracle_labels_keep_the_dict_items(pool):
    loader = torch.utils.data.DataLoader(pool.labeled_dataset(), batch_size=64)
    batch = next(iter(loader))
    assert set(batch) == {"input_ids", "attention_mask", "label"}
    labeled = pool.labeled_indices.tolist()
    assert batch["label"][labeled.index(1)] == 2 and batch["label"][labeled.index(2)] == 0

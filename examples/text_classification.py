"""Active learning for text classification with a HuggingFace model and dataset.

Real text that ships with Python itself, no download: the docstrings of the standard
library's functions and classes, labeled by what their module is about (numbers,
files and the OS, text, dates and times). A tiny ``BertForSequenceClassification``
(built from a ``BertConfig``, trained from scratch; no pretrained weights) on a
``datasets.Dataset.with_format("torch")``: the batches are dicts, the model is called
as ``model(input_ids=..., attention_mask=...)`` and returns an output object with
``.logits``. aalearn needs no adapter for any of it.

    pip install -e '.[hf]'
    python examples/text_classification.py            # a few minutes on 2 CPU cores
    python examples/text_classification.py --fast     # seconds (used by the tests)
"""

from __future__ import annotations

import argparse
import collections
import importlib
import inspect
import re
import sys
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

import aalearn

#: Standard-library modules by topic: the classes of the task.
TOPICS = {
    "numbers": ["math", "cmath", "statistics", "decimal", "fractions", "random", "numbers"],
    "files": ["os", "os.path", "shutil", "pathlib", "tempfile", "glob", "io", "zipfile"],
    "text": ["string", "re", "textwrap", "difflib", "unicodedata", "html", "codecs"],
    "time": ["datetime", "time", "calendar", "zoneinfo", "sched"],
}
PAD, UNK = 0, 1


def docstrings() -> tuple[list[str], list[int]]:
    """(docstring, topic) of every public function, class and method, deduplicated."""
    seen: set[str] = set()
    texts, labels = [], []
    for label, modules in enumerate(TOPICS.values()):
        for name in modules:
            module = importlib.import_module(name)
            for _, obj in inspect.getmembers(module):
                members = [obj]
                if inspect.isclass(obj) and obj.__module__ == module.__name__:
                    members += [m for n, m in vars(obj).items() if not n.startswith("_")]
                for member in members:
                    doc = inspect.getdoc(member) if callable(member) else None
                    if doc and len(doc) > 40 and doc not in seen:
                        seen.add(doc)
                        texts.append(doc)
                        labels.append(label)
    return texts, labels


def tokenize(texts: list[str], vocab_size: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower-case words, the ``vocab_size - 2`` most frequent kept; padded to ``length``."""
    words = [re.findall(r"[a-z]+", t.lower()) for t in texts]
    counts = collections.Counter(w for ws in words for w in ws)
    vocab = {w: i + 2 for i, (w, _) in enumerate(counts.most_common(vocab_size - 2))}
    ids = np.full((len(texts), length), PAD, dtype=np.int64)
    for row, ws in enumerate(words):
        tokens = [vocab.get(w, UNK) for w in ws[:length]]
        ids[row, : len(tokens)] = tokens
    return ids, (ids != PAD).astype(np.int64)


def make_model(transformers: Any, args: argparse.Namespace) -> torch.nn.Module:
    config = transformers.BertConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=2,
        intermediate_size=2 * args.hidden,
        max_position_embeddings=args.length,
        num_labels=len(TOPICS),
    )
    return transformers.BertForSequenceClassification(config)


def train(model: torch.nn.Module, dataset, epochs: int, seed: int) -> torch.nn.Module:
    """An ordinary training loop over dict batches: aalearn is not involved."""
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=16, shuffle=True, generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(epochs):
        for batch in loader:
            opt.zero_grad()
            out = model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                labels=batch["label"],
            )
            out.loss.backward()
            opt.step()
    return model


@torch.no_grad()
def accuracy(model: torch.nn.Module, dataset) -> float:
    model.eval()
    batch = dataset[:]
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return float((logits.argmax(1) == batch["label"]).float().mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny settings, for the tests")
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=2000)
    parser.add_argument("--length", type=int, default=48)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.fast:
        args.cycles, args.budget, args.epochs = 2, 30, 2
        args.vocab, args.length, args.hidden, args.layers = 500, 24, 16, 1
    try:
        import datasets
        import transformers
    except ImportError:
        print(
            "text_classification.py: needs transformers and datasets: pip install -e '.[hf]'",
            file=sys.stderr,
        )
        return 1
    transformers.logging.set_verbosity_error()
    torch.manual_seed(args.seed)

    texts, labels = docstrings()
    ids, mask = tokenize(texts, args.vocab, args.length)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(texts))
    n_test = len(texts) // 5
    table = {"input_ids": ids, "attention_mask": mask, "label": np.asarray(labels)}
    test_set, train_set = (
        datasets.Dataset.from_dict({k: v[part] for k, v in table.items()}).with_format("torch")
        for part in (order[:n_test], order[n_test:])
    )
    counts = np.bincount(labels, minlength=len(TOPICS)).tolist()
    print(f"{len(texts)} standard-library docstrings, {dict(zip(TOPICS, counts))}")
    print(f"train {len(train_set)}, test {len(test_set)}")

    samplers = {
        "random": aalearn.RandomSampler(random_state=args.seed),
        "entropy": aalearn.UncertaintySampler("entropy", inference={"batch_size": 64}),
    }
    curves: dict[str, list[tuple[int, float]]] = {}
    for name, sampler in samplers.items():
        pool = aalearn.ActivePool(train_set)
        pool.label(pool.random_unlabeled(args.budget, random_state=args.seed))
        curve = []
        for cycle in range(args.cycles + 1):
            torch.manual_seed(args.seed + cycle)
            model = train(
                make_model(transformers, args), pool.labeled_dataset(), args.epochs, cycle
            )
            curve.append((pool.n_labeled, accuracy(model, test_set)))
            if cycle < args.cycles:
                pool.label(sampler.select(model, pool, args.budget))  # dict items, no adapter
        curves[name] = curve

    print("labeled " + " ".join(f"{name:>8}" for name in samplers))
    for i, (n, _) in enumerate(curves["random"]):
        print(f"{n:7d} " + " ".join(f"{curves[name][i][1]:8.3f}" for name in samplers))
    return 0


if __name__ == "__main__":
    sys.exit(main())

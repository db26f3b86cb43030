"""Active learning with people in the loop: aalearn picks, Label Studio's annotators label.

Each cycle trains a small model on the labeled digits, picks the most uncertain
unlabeled ones, sends them to a Label Studio project as image tasks, waits for the
annotations and imports them into the pool. Start a server first (docs/labelstudio.md):

    label-studio start --port 8080 --username you@example.com --password ... \
        --user-token MY-TOKEN          # with LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true

    python examples/labelstudio_loop.py --url http://localhost:8080 --token MY-TOKEN

Label the tasks in your browser, press Enter, and the next cycle starts. With
``--scripted-annotator`` the script answers the tasks itself through the REST API with
the digits' true labels (how tests/test_labelstudio.py runs it). A re-run with
``--project-id`` resumes a project: nothing is sent or labeled twice.
"""

from __future__ import annotations

import argparse
from typing import Optional

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

import aalearn
from aalearn.integrations.labelstudio import LabelStudioProject

CLASS_NAMES = [str(d) for d in range(10)]


def train(x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
    """Your own training loop; here a linear model, full batch."""
    torch.manual_seed(seed)
    model = nn.Linear(64, 10)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def scripted_annotator(project: LabelStudioProject, truth: np.ndarray) -> int:
    """Answer every task without an annotation with its true label, through the REST API."""
    answered = 0
    for task in project.tasks():
        if task["annotations"]:
            continue
        name = CLASS_NAMES[int(truth[task["data"]["aalearn_index"]])]
        value = {"choices": [name]}
        result = [{"from_name": "label", "to_name": "image", "type": "choices", "value": value}]
        project.request("POST", f"/api/tasks/{task['id']}/annotations/", {"result": result})
        answered += 1
    return answered


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--url", default="http://localhost:8080", help="Label Studio server")
    parser.add_argument("--token", required=True, help="API token (legacy or personal)")
    parser.add_argument("--project-id", type=int, help="resume this project (default: new)")
    parser.add_argument("--cycles", type=int, default=2)
    parser.add_argument("--budget", type=int, default=10, help="items sent per cycle")
    parser.add_argument("--initial", type=int, default=20, help="random items labeled first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scripted-annotator", action="store_true", help="answer by script")
    args = parser.parse_args(argv)

    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)  # 1,797 images of 8x8
    truth = digits.target  # used only by the initial set and the scripted annotator
    pool = aalearn.ActivePool(TensorDataset(x, torch.tensor(truth)))
    first = pool.random_unlabeled(args.initial, random_state=args.seed)
    pool.label(first, labels=truth[first])  # e.g. a set labeled before the project

    if args.project_id is None:
        project = LabelStudioProject.create(
            args.url, args.token, CLASS_NAMES, kind="image", title="aalearn digits"
        )
    else:
        project = LabelStudioProject(
            args.url, args.token, args.project_id, CLASS_NAMES, kind="image"
        )
        project.import_labels(pool)  # what was labeled before the re-run
    print(f"project {project.project_id}: {args.url}/projects/{project.project_id}/data")

    sampler = aalearn.UncertaintySampler("margin")
    for cycle in range(args.cycles):
        labeled = pool.labeled_indices.copy()
        model = train(x[labeled], torch.from_numpy(pool.labels(labeled)), args.seed)
        acc = float((model(x).argmax(1).numpy() == truth).mean())
        print(f"cycle {cycle}: {pool.n_labeled} labeled, accuracy on all digits {acc:.3f}")
        picked = sampler.select(model, pool, budget=args.budget)
        # 8x8 is tiny on screen: each pixel becomes an 8x8 block of a 64x64 PNG.
        images = [np.kron(x[i].reshape(8, 8).numpy(), np.ones((8, 8))) for i in picked]
        sent = project.send(picked, images)
        print(f"  sent {sent.size} tasks (dataset indices {sent.tolist()})")
        if args.scripted_annotator:
            scripted_annotator(project, truth)
        else:
            input("  label them in Label Studio, then press Enter ")
        found = project.import_labels(pool)
        print(
            f"  imported {found.indices.size} labels; pending {found.pending.tolist()}, "
            f"skipped {found.skipped.tolist()}"
        )
        wrong = int((found.labels != truth[found.indices]).sum())
        print(f"  annotators disagreed with the dataset on {wrong} of them")
    print(f"done: {pool.n_labeled} labeled in {pool.round} rounds")


if __name__ == "__main__":
    main()

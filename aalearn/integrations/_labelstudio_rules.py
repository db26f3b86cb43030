"""The rules that turn Label Studio's exported tasks into pool labels (no network here).

:meth:`aalearn.integrations.labelstudio.LabelStudioProject.import_labels` reads the
project's JSON export and hands it to :func:`collect_labels`; the rules are listed in
:mod:`aalearn.integrations.labelstudio`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from aalearn.pool import ActivePool

__all__ = [
    "CONTROL_NAME",
    "INDEX_KEY",
    "LabelImport",
    "check_class_names",
    "check_collect_args",
    "collect_labels",
    "task_index",
]

#: Key of the dataset index in each task's ``data``.
INDEX_KEY = "aalearn_index"
#: Name of the ``<Choices>`` control whose answer is the label.
CONTROL_NAME = "label"


def check_class_names(class_names: Any) -> tuple[str, ...]:
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise TypeError(
            "Expected argument `class_names` to be a sequence of str, but got "
            f"{type(class_names).__name__}."
        )
    names = tuple(class_names)
    bad = [n for n in names if not isinstance(n, str) or not n]
    if not names or bad:
        raise ValueError(
            "Expected argument `class_names` to hold at least one non-empty str, but got "
            f"{list(names)!r}."
        )
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"Expected argument `class_names` to be unique, but {dup!r} repeats.")
    return names


@dataclass(frozen=True)
class LabelImport:
    """What :meth:`LabelStudioProject.import_labels` found, as sorted ``int64`` index arrays.

    Attributes
    ----------
    indices, labels : numpy.ndarray
        Indices labeled by this call and their class ints (``class_names`` positions).
    already_labeled : numpy.ndarray
        Annotated indices the pool had labeled before, with the same label.
    pending, skipped : numpy.ndarray
        Indices whose tasks have no annotation yet, or only skipped ones.
    conflicts : numpy.ndarray
        Indices left unlabeled by ``on_conflict="skip"`` (empty otherwise).

    Examples
    --------
    >>> import numpy as np
    >>> from aalearn.integrations.labelstudio import LabelImport
    >>> empty = np.zeros(0, dtype=np.int64)
    >>> LabelImport(np.array([3]), np.array([1]), empty, empty, empty, empty).indices
    array([3])
    """

    indices: np.ndarray
    labels: np.ndarray
    already_labeled: np.ndarray
    pending: np.ndarray
    skipped: np.ndarray
    conflicts: np.ndarray


def task_index(task: dict[str, Any], n_items: Optional[int]) -> int:
    data = task.get("data")
    value = data.get(INDEX_KEY) if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(
            f"Expected task {task.get('id')} to hold an int dataset index in "
            f"data[{INDEX_KEY!r}], but got {value!r}; was it created by "
            "LabelStudioProject.send?"
        )
    value = int(value)
    if value < 0 or (n_items is not None and value >= n_items):
        raise ValueError(
            f"Expected task {task.get('id')} to hold a dataset index in [0, {n_items}), "
            f"but got {value}."
        )
    return value


def _label_of(
    annotation: dict[str, Any], task: dict[str, Any], class_names: tuple[str, ...]
) -> int:
    """The class int of an annotation's one choice."""
    where = f"annotation {annotation.get('id')} of task {task.get('id')}"
    choices = [
        choice
        for region in annotation.get("result") or []
        if region.get("from_name") == CONTROL_NAME and region.get("type") == "choices"
        for choice in region.get("value", {}).get("choices", [])
    ]
    if len(choices) != 1:
        raise ValueError(f"Expected {where} to hold exactly one choice, but got {choices!r}.")
    if choices[0] not in class_names:
        raise ValueError(
            f"Expected {where} to choose one of `class_names` {list(class_names)!r}, "
            f"but got the unknown label {choices[0]!r}."
        )
    return class_names.index(choices[0])


def check_collect_args(pool: Any, on_conflict: Any) -> None:
    """``TypeError`` / ``ValueError`` on a wrong ``pool`` or ``on_conflict``."""
    if not isinstance(pool, ActivePool):
        raise TypeError(
            f"Expected argument `pool` to be an ActivePool, but got {type(pool).__name__}."
        )
    if on_conflict not in ("raise", "skip"):
        raise ValueError(
            f"Expected argument `on_conflict` to be 'raise' or 'skip', but got {on_conflict!r}."
        )


def collect_labels(
    tasks: Sequence[dict[str, Any]],
    class_names: tuple[str, ...],
    pool: ActivePool,
    on_conflict: str = "raise",
) -> LabelImport:
    """Check every annotation of ``tasks`` against ``pool``; the pool is not changed.

    Examples
    --------
    >>> from aalearn import ActivePool
    >>> from aalearn.integrations._labelstudio_rules import collect_labels
    >>> answer = {"result": [{"from_name": "label", "type": "choices",
    ...                       "value": {"choices": ["dog"]}}]}
    >>> tasks = [{"id": 1, "data": {"aalearn_index": 3}, "annotations": [answer]},
    ...          {"id": 2, "data": {"aalearn_index": 5}, "annotations": []}]
    >>> found = collect_labels(tasks, ("cat", "dog"), ActivePool(None, n_items=8))
    >>> found.indices, found.labels, found.pending
    (array([3]), array([1]), array([5]))
    """
    check_collect_args(pool, on_conflict)
    answers: dict[int, dict[int, list[str]]] = {}  # index -> class -> where
    seen: set[int] = set()
    for task in tasks:
        i = task_index(task, pool.n_items)
        seen.add(i)
        per_class = answers.setdefault(i, {})
        for ann in task.get("annotations") or []:
            if not ann.get("was_cancelled"):
                where = f"annotation {ann.get('id')} of task {task.get('id')}"
                per_class.setdefault(_label_of(ann, task, class_names), []).append(where)
        if task.get("annotations") and not per_class:
            per_class.setdefault(-1, [])  # only skipped so far
    known = pool.labels(sorted(seen)) if seen else np.zeros(0, np.int64)
    known_of = dict(zip(sorted(seen), known.tolist()))
    labeled = pool.labeled_mask
    out: dict[str, list[int]] = {
        k: [] for k in ("new", "labels", "already", "pending", "skipped", "conflicts")
    }
    for i in sorted(seen):
        per_class = answers[i]
        classes = [c for c in per_class if c >= 0]
        if not per_class:
            out["pending"].append(i)
        elif not classes:
            out["skipped"].append(i)
        elif len(classes) > 1 or (labeled[i] and known_of[i] not in (-1, classes[0])):
            found = [f"{class_names[c]!r} ({', '.join(per_class[c])})" for c in classes]
            if len(classes) == 1:
                k = known_of[i]
                name = repr(class_names[k]) if k < len(class_names) else str(k)
                found.append(f"{name} (the pool's label)")
            if on_conflict == "raise":
                raise ValueError(
                    f"Conflicting labels for dataset index {i}: {'; '.join(found)}. Resolve "
                    "them in Label Studio, or pass on_conflict='skip'. The pool is unchanged."
                )
            out["conflicts"].append(i)
        elif labeled[i]:
            out["already"].append(i)
        else:
            out["new"].append(i)
            out["labels"].append(classes[0])
    arr = {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}
    return LabelImport(
        arr["new"],
        arr["labels"],
        arr["already"],
        arr["pending"],
        arr["skipped"],
        arr["conflicts"],
    )

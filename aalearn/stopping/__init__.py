"""Stopping criteria: when to stop buying labels.

Each criterion is a small object built once with keyword arguments and updated once
per cycle with what the loop already has: the model's ``predictions`` or
``probabilities`` on a fixed stop set (a few hundred unlabeled items drawn once), and
the labeled count ``n_labeled``. All take the same keywords, so one line feeds them
all::

    stops = [c.update(probabilities=proba, n_labeled=pool.n_labeled) for c in criteria]

Each answers :attr:`~StoppingCriterion.should_stop` and shows the numbers behind the
answer in :attr:`~StoppingCriterion.evidence`; ``state_dict``/``load_state_dict`` save
and restore it as JSON-able values. Inputs may be NumPy arrays or torch tensors on any
device (the arithmetic runs in NumPy on the CPU: a stop set is small).

``import aalearn`` does not import this package; ``import aalearn.stopping`` does.
"""

from aalearn.stopping._base import StoppingCriterion
from aalearn.stopping.agreement import (
    ClassificationChange,
    DeltaFScore,
    KappaAverage,
    cohen_kappa,
    delta_f,
)
from aalearn.stopping.budget import MaxIterations, MaxLabeled
from aalearn.stopping.recorded import replay
from aalearn.stopping.uncertainty import OverallUncertainty, normalized_entropy

__all__ = [
    "ClassificationChange",
    "DeltaFScore",
    "KappaAverage",
    "MaxIterations",
    "MaxLabeled",
    "OverallUncertainty",
    "StoppingCriterion",
    "cohen_kappa",
    "delta_f",
    "normalized_entropy",
    "replay",
]

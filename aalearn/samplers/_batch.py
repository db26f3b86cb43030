"""How the feature samplers form a batch from their scores: top-k, per class, k-center.

``"topk"`` returns the best scores; ``"per_class"`` walks the ranking round robin over
the task model's predicted classes; ``"kcenter"`` runs k-center greedy (Core-Set's
rule, labeled items as centers) over the best-scored candidates. Private.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from aalearn.functional.coreset import k_center_greedy

from ._training import _ranked

#: How a batch is formed from the scores (see ``AALUSampler``'s ``batch``).
BATCH_RULES = ("topk", "per_class", "kcenter")


def _per_class(scores: torch.Tensor, classes: torch.Tensor, budget: int) -> torch.Tensor:
    """Round robin over predicted classes: each class's best, then each class's second...

    Positions into ``scores``; within a round the classes' picks are in rank order.
    """
    n = scores.shape[0]
    positions = torch.arange(n, device=scores.device)
    order = torch.from_numpy(_ranked(scores, positions.cpu().numpy(), n)).to(scores.device)
    cls = classes[order]
    within = torch.empty_like(order)
    for c in torch.unique(cls):
        at = torch.nonzero(cls == c).squeeze(1)
        within[at] = torch.arange(at.numel(), device=scores.device)
    rank = torch.arange(n, device=scores.device)
    key = within * n + rank  # by round, then by rank: unique, no ties
    return order[torch.argsort(key)[:budget]]


def _kcenter(
    scores: torch.Tensor,
    features_u: torch.Tensor,
    features_l: torch.Tensor,
    budget: int,
    factor: float,
) -> torch.Tensor:
    """k-center greedy (labeled items as centers) over the ``factor * budget`` best."""
    n = scores.shape[0]
    m = min(n, max(budget, round(factor * budget)))
    top = torch.from_numpy(_ranked(scores, np.arange(n), m)).to(scores.device)
    feats = torch.cat([features_l, features_u[top]])
    centers = torch.zeros(feats.shape[0], dtype=torch.bool, device=feats.device)
    centers[: features_l.shape[0]] = True
    picked = k_center_greedy(feats, centers, budget, validate_args=False)
    return top[picked - features_l.shape[0]]


def pick(
    rule: str,
    candidates: float,
    scores: torch.Tensor,
    unl: np.ndarray,
    budget: int,
    probs_u: Optional[torch.Tensor],
    f_l: torch.Tensor,
    f_u: torch.Tensor,
) -> np.ndarray:
    """The batch ``rule`` forms from the scores of the unlabeled items ``unl``."""
    if rule == "topk":
        return _ranked(scores, unl, budget)
    if rule == "per_class":
        assert probs_u is not None
        positions = _per_class(scores, probs_u.argmax(dim=1), budget)
    else:
        positions = _kcenter(scores, f_u, f_l, budget, candidates)
    return unl[positions.cpu().numpy()]

"""Zero labels: the refusal of the samplers that need a model trained on labels."""

from __future__ import annotations

from typing import Any

from aalearn.pool import ActivePool

__all__ = ["ZERO_LABEL_SAMPLERS", "check_has_labels"]

#: The samplers that work on a pool with no labeled item (named in the refusal of the others).
ZERO_LABEL_SAMPLERS = (
    "RandomSampler",
    "TypiClustSampler",
    "ProbCoverSampler",
    "BudgetAwareSampler",
)


def check_has_labels(sampler: Any, pool: ActivePool) -> None:
    """Raise ``ValueError`` if ``pool`` has no labeled item and ``sampler.needs_labels``.

    Examples
    --------
    >>> from aalearn import ActivePool, UncertaintySampler
    >>> from aalearn.samplers._zero import check_has_labels
    >>> check_has_labels(UncertaintySampler(), ActivePool(None, n_items=5))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: The pool has no labeled item, and UncertaintySampler needs a model trained on ...
    """
    if getattr(sampler, "needs_labels", True) and pool.n_labeled == 0:
        raise ValueError(
            f"The pool has no labeled item, and {type(sampler).__name__} needs a model trained "
            f"on labels. From zero labels, use {', '.join(ZERO_LABEL_SAMPLERS)} (see "
            "docs/zero-labels.md)."
        )

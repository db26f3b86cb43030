"""One policy for non-finite values: model outputs and selector scores raise ``ValueError``.

A NaN or infinite probability (after the softmax: a ``-inf`` logit is legitimate and
gives probability 0, but a ``+inf`` or NaN logit, or a row of ``-inf`` logits, gives
NaN), feature or MC-dropout probability, and a NaN or infinite selector score, make
the sampler raise a :class:`ValueError` that says how many items are affected and
names the first few dataset indices, before any result is returned. Ranking such
items anywhere (first or last) would be silently wrong: a NaN spreads through
standardisation and distances, and an item that scores NaN tells nothing about
its informativeness.

The inference pass accumulates one boolean per row on the device, batch by batch
(:class:`FiniteCheck`, no host sync per batch) and checks once at the end of the
pass; selector scores are checked once (:func:`check_finite`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

__all__ = ["FiniteCheck", "check_finite", "nonfinite_rows"]

#: How many dataset indices an error message names.
SHOWN = 5


def nonfinite_rows(values: torch.Tensor) -> torch.Tensor:
    """A bool tensor ``(N,)``, on ``values``' device: rows holding a NaN or an infinity.

    Examples
    --------
    >>> import torch
    >>> from aalearn._finite import nonfinite_rows
    >>> nonfinite_rows(torch.tensor([[0.5, 0.5], [float("nan"), 1.0], [0.0, float("inf")]]))
    tensor([False,  True,  True])
    """
    finite = torch.isfinite(values)
    if values.ndim > 1:
        finite = finite.flatten(1).all(dim=1)
    return ~finite


def _message(what: list[tuple[str, np.ndarray]], indices: np.ndarray) -> str:
    parts = []
    for name, bad in what:
        shown = indices[bad][:SHOWN].tolist()
        more = ", ..." if int(bad.sum()) > SHOWN else ""
        parts.append(f"{name} of {int(bad.sum())} item(s), dataset indices {shown}{more}")
    return (
        f"Non-finite values (NaN or inf) in {'; '.join(parts)}, out of {indices.shape[0]} "
        "item(s). aalearn refuses to rank them (see docs/reliability.md): check the model "
        "(diverged weights, a +inf or NaN logit, a row of -inf logits) and those inputs."
    )


def check_finite(values: torch.Tensor, indices: np.ndarray, what: str) -> None:
    """Raise ``ValueError`` naming the items of ``indices`` whose row of ``values`` is not finite.

    Parameters
    ----------
    values : torch.Tensor
        ``(N, ...)``, row ``i`` belonging to dataset index ``indices[i]``.
    indices : numpy.ndarray
        ``(N,)`` dataset indices.
    what : str
        What ``values`` are, for the message (e.g. ``"selector scores"``).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from aalearn._finite import check_finite
    >>> check_finite(torch.tensor([0.1, float("nan")]), np.array([7, 9]), "scores")
    Traceback (most recent call last):
    ...
    ValueError: Non-finite values (NaN or inf) in scores of 1 item(s), dataset indices [9], ...
    """
    bad = nonfinite_rows(values)
    if bool(bad.any()):
        mask = bad.cpu().numpy()
        raise ValueError(_message([(what, mask)], np.asarray(indices)))


class FiniteCheck:
    """Accumulate, batch by batch and on the device, which rows of named outputs are not finite.

    :meth:`update` costs one elementwise pass per tensor and no host sync;
    :meth:`check` synchronises once and raises ``ValueError`` if any row was bad.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from aalearn._finite import FiniteCheck
    >>> check = FiniteCheck()
    >>> check.update(probs=torch.tensor([[0.5, 0.5], [1.0, 0.0]]))
    >>> check.update(probs=torch.tensor([[float("nan"), 0.5]]))
    >>> check.check(np.array([10, 11, 12]))
    Traceback (most recent call last):
    ...
    ValueError: Non-finite values (NaN or inf) in probs of 1 item(s), dataset indices [12], ...
    """

    def __init__(self) -> None:
        self._masks: dict[str, list[torch.Tensor]] = {}

    def update(self, **outputs: Optional[torch.Tensor]) -> None:
        """Record one batch: each keyword a named ``(B, ...)`` tensor (``None`` is skipped).

        Every batch of a pass names the same outputs, so the masks of a name line up
        with the rows of the pass.
        """
        for name, values in outputs.items():
            if values is not None:
                self._masks.setdefault(name, []).append(nonfinite_rows(values))

    def check(self, indices: np.ndarray) -> None:
        """Raise ``ValueError`` if a recorded row was not finite (``indices``: the rows' items)."""
        found = []
        for name, masks in self._masks.items():
            bad = torch.cat(masks)
            if bool(bad.any()):
                found.append((name, bad.cpu().numpy()))
        if found:
            raise ValueError(_message(found, np.asarray(indices)))

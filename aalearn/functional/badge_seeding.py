"""BADGE: k-means++ seeding on gradient embeddings, without building them (Ash et al., 2020)."""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor

from aalearn._validation import check_generator, check_int

__all__ = ["badge"]


def _badge_tensor_validation(features: Any, probs: Any, k: Any, generator: Any) -> int:
    for name, t in (("features", features), ("probs", probs)):
        if not isinstance(t, Tensor):
            raise TypeError(
                f"Expected argument `{name}` to be a torch.Tensor, but got {type(t).__name__}."
            )
        if t.ndim != 2 or not t.is_floating_point():
            raise ValueError(
                f"Expected argument `{name}` to be a 2-D floating point tensor, but got shape "
                f"{tuple(t.shape)} and dtype {t.dtype}."
            )
    if features.shape[0] != probs.shape[0]:
        raise ValueError(
            "Expected arguments `features` and `probs` to have the same number of rows, but "
            f"got {features.shape[0]} and {probs.shape[0]}."
        )
    if features.device != probs.device:
        raise ValueError(
            f"Expected arguments `features` and `probs` on one device, but got "
            f"{features.device} and {probs.device}."
        )
    check_generator(generator)
    k = check_int(k, "k", minimum=0)
    if k > features.shape[0]:
        raise ValueError(
            f"Expected argument `k` to be at most the number of rows ({features.shape[0]}), "
            f"but got {k}."
        )
    return k


def _d2_draw(weights: Tensor, chosen: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    """One index drawn with probability ``weights / weights.sum()`` (inverse CDF, float64).

    One uniform number from ``generator`` per draw; when every weight is 0 (the rest
    duplicates the centers), uniformly among the rows not ``chosen``. No host sync.
    """
    w = weights.double()
    free = (~chosen).double()
    total = w.sum()
    w = torch.where(total > 0, w, free)
    cdf = torch.cumsum(w, dim=0)
    device = generator.device if generator is not None else w.device
    u = torch.rand(1, generator=generator, dtype=torch.float64, device=device).to(w.device)
    pick = torch.searchsorted(cdf, u * cdf[-1], right=True)
    return pick.clamp_(max=w.shape[0] - 1)


def badge(
    features: Tensor,
    probs: Tensor,
    k: int,
    *,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    r"""BADGE selection: k-means++ seeding on the gradient embeddings (Ash et al., ICLR 2020).

    The gradient embedding of item ``i``, the gradient of the cross-entropy at the
    predicted label with respect to the last layer's weights, is
    :math:`g_i = q_i \otimes h_i` with :math:`q_i = \mathrm{onehot}(\arg\max p_i) - p_i`
    and :math:`h_i` the item's feature vector (the last layer's input). It is never
    built: the squared distances factorise,

    .. math::

        \lVert g_i - g_j \rVert^2 = \lVert q_i \rVert^2 \lVert h_i \rVert^2
        + \lVert q_j \rVert^2 \lVert h_j \rVert^2
        - 2\, (q_i \cdot q_j)(h_i \cdot h_j),

    so each step costs ``O(N (C + D))`` and memory is ``O(N (C + D))`` (``q`` and a
    few vectors of length ``N``), against ``O(N C D)`` for the explicit embedding.

    The seeding is that of the authors' code (JordanAsh/badge): the first pick is
    the item with the largest :math:`\lVert g \rVert` (ties: the smaller row), each
    further pick is drawn with probability proportional to :math:`D(i)^2`, the
    squared distance to the nearest pick so far (one uniform number from
    ``generator`` per pick, inverse CDF in float64). Copies of a pick are never drawn,
    unless only such items are left, which are then drawn uniformly: the factorised
    distance of a copy is not exactly 0 in floating point (it leaves a rounding residue
    of a few :math:`\varepsilon (\lVert g_i \rVert^2 + \lVert g_c \rVert^2)`), so a
    squared distance of at most :math:`4 \sqrt{C + D}\, \varepsilon (\lVert g_i
    \rVert^2 + \lVert g_c \rVert^2)` to a pick :math:`c` counts as 0, with
    :math:`\varepsilon` the machine epsilon of the computation's dtype (float32 or
    float64). An item that close to a pick without being a copy loses a probability of
    that order: about ``1e-5`` of a distant item's in float32 for ``C + D`` near 1,000,
    ``1e-14`` in float64.
    Everything stays on the input's device; no host sync per step.

    Parameters
    ----------
    features : torch.Tensor
        ``(N, D)`` floating features :math:`h` (the input of the classifier layer).
    probs : torch.Tensor
        ``(N, C)`` class probabilities, on the device of ``features``.
    k : int
        Number of picks, ``0 <= k <= N``.
    generator : torch.Generator, optional
        Source of the ``D^2`` draws (``k - 1`` uniform numbers); ``None`` uses torch's
        global RNG.

    Returns
    -------
    torch.Tensor
        ``(k,)`` ``int64`` row indices in pick order, on the input's device.

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional import badge
    >>> h = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.5, 0.5]])
    >>> p = torch.tensor([[0.6, 0.4], [0.6, 0.4], [0.3, 0.7], [0.9, 0.1]])
    >>> badge(h, p, 3, generator=torch.Generator().manual_seed(0))  # row 2: largest ||g||
    tensor([2, 3, 1])
    """
    k = _badge_tensor_validation(features, probs, k, generator)
    device = features.device
    picks = torch.empty(k, dtype=torch.long, device=device)
    if k == 0:
        return picks
    with torch.no_grad():
        dtype = torch.promote_types(features.dtype, probs.dtype)
        if dtype not in (torch.float32, torch.float64):
            dtype = torch.float32
        # relative rounding error of the factorised distance (measured: <= 7 eps up to
        # C + D = 3048, growing like sqrt(C + D)); below it, a distance counts as 0
        rounding = 4.0 * math.sqrt(probs.shape[1] + features.shape[1]) * torch.finfo(dtype).eps
        h = features.detach().to(dtype)
        q = -probs.detach().to(dtype)
        q.scatter_add_(1, probs.argmax(dim=1, keepdim=True), torch.ones_like(q[:, :1]))
        # ||g_i||^2 = ||q_i||^2 ||h_i||^2; vector_norm makes no (N, D) temporary
        sq = (
            torch.linalg.vector_norm(q, dim=1).square_()
            * torch.linalg.vector_norm(h, dim=1).square_()
        )
        chosen = torch.zeros(h.shape[0], dtype=torch.bool, device=device)
        pick = sq.argmax().view(1)
        min_d2 = torch.full_like(sq, float("inf"))
        for step in range(k):
            if step:
                pick = _d2_draw(min_d2, chosen, generator)
            picks[step : step + 1] = pick
            chosen.index_fill_(0, pick, True)
            qc, hc = q.index_select(0, pick), h.index_select(0, pick)
            sq_c = sq.index_select(0, pick)
            d2 = sq + sq_c - 2.0 * (q @ qc.T).squeeze(1) * (h @ hc.T).squeeze(1)
            d2.masked_fill_(d2 <= (sq + sq_c).mul_(rounding), 0.0)  # copies of the pick: 0
            torch.minimum(min_d2, d2, out=min_d2)
            min_d2.masked_fill_(chosen, 0.0)
    return picks

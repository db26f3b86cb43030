"""BatchBALD: greedy joint mutual information of a batch (Kirsch et al., NeurIPS 2019)."""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor

from aalearn._validation import check_generator, check_int
from aalearn.functional.topk import topk_indices

__all__ = ["batchbald"]

#: Bytes of the ``(M, B, C)`` float64 block of candidate joints computed at once.
_BLOCK_BYTES = 64 * 2**20


def _batchbald_tensor_validation(
    mc_probs: Any, k: Any, num_samples: Any, max_candidates: Any, generator: Any
) -> tuple[int, int, Optional[int]]:
    if not isinstance(mc_probs, Tensor):
        raise TypeError(
            f"Expected argument `mc_probs` to be a torch.Tensor, but got {type(mc_probs).__name__}."
        )
    if mc_probs.ndim != 3 or not mc_probs.is_floating_point() or 0 in mc_probs.shape[1:]:
        raise ValueError(
            "Expected argument `mc_probs` to be a 3-D floating point tensor (N, K, C) with "
            f"K, C >= 1, but got shape {tuple(mc_probs.shape)} and dtype {mc_probs.dtype}."
        )
    check_generator(generator)
    num_samples = check_int(num_samples, "num_samples", minimum=1)
    if max_candidates is not None:
        max_candidates = check_int(max_candidates, "max_candidates", minimum=1)
    k = check_int(k, "k", minimum=0)
    limit = mc_probs.shape[0] if max_candidates is None else min(max_candidates, len(mc_probs))
    if k > limit:
        raise ValueError(
            f"Expected argument `k` to be at most the number of candidates ({limit}), but got {k}."
        )
    return k, num_samples, max_candidates


class _Joint:
    """The joint distribution of the picked items' labels, as ``(K, M)`` configurations.

    ``P[k, m]`` is proportional to ``p(config m | w_k)``. The joint entropy with a
    candidate ``b`` is ``-sum_m weight[m] sum_c q log q + offset`` with
    ``q[m, c] = mean_k P[k, m] p_b[k, c]``. Exact: every configuration, weight 1.
    Sampled (Kirsch et al., 2019, appendix): ``S`` configurations per ``w_k`` drawn
    from ``p(. | w_k)``, importance weights ``1 / (M mean_k P[k, m])``; each column
    is rescaled to a maximum of 1 (``log_scale`` keeps what was divided out, which
    only shifts every candidate by the same ``offset``).
    """

    def __init__(self, n_models: int, device: torch.device) -> None:
        self.P = torch.ones(n_models, 1, dtype=torch.float64, device=device)
        self.log_scale = torch.zeros(1, dtype=torch.float64, device=device)
        self.sampled = False
        self.origin: Optional[Tensor] = None  # sampled: the w_k each configuration came from

    def add_exact(self, p: Tensor) -> None:
        K = p.shape[0]
        self.P = (self.P[:, :, None] * p[:, None, :]).reshape(K, -1)

    def start_sampling(
        self, picked: list[Tensor], n_per_model: int, generator: Optional[torch.Generator]
    ) -> None:
        K = picked[0].shape[0]
        device = picked[0].device
        self.sampled = True
        self.origin = torch.arange(K, device=device).repeat_interleave(n_per_model)
        self.P = torch.ones(K, K * n_per_model, dtype=torch.float64, device=device)
        self.log_scale = torch.zeros(K * n_per_model, dtype=torch.float64, device=device)
        for p in picked:
            self.add_sampled(p, generator)

    def add_sampled(self, p: Tensor, generator: Optional[torch.Generator]) -> None:
        assert self.origin is not None
        rows = p.index_select(0, self.origin)  # (M, C): p(. | w of each configuration)
        cdf = torch.cumsum(rows, dim=1)
        gen_device = generator.device if generator is not None else p.device
        u = torch.rand(
            rows.shape[0], 1, generator=generator, dtype=torch.float64, device=gen_device
        )
        labels = torch.searchsorted(cdf, u.to(p.device) * cdf[:, -1:], right=True)
        labels = labels.clamp_(max=p.shape[1] - 1).squeeze(1)
        self.P = self.P * p[:, labels]  # (K, M)
        top = self.P.amax(dim=0).clamp_(min=torch.finfo(torch.float64).tiny)
        self.P = self.P / top
        self.log_scale = self.log_scale + top.log()

    def entropies(self, probs: Tensor) -> Tensor:
        """Joint entropy of the picked items with each candidate of ``probs`` ``(B, K, C)``."""
        K, M = self.P.shape
        B, _, C = probs.shape
        if self.sampled:
            weight = 1.0 / (M * self.P.mean(dim=0))
            offset = -self.log_scale.mean()
        else:
            weight = torch.ones(M, dtype=torch.float64, device=probs.device)
            offset = torch.zeros((), dtype=torch.float64, device=probs.device)
        out = torch.empty(B, dtype=torch.float64, device=probs.device)
        # Sampled, the estimate's own error (~ M ** -0.5) dwarfs float32 rounding, and
        # float32 logs are 2.3x faster on CPU; exact joints stay in float64.
        dtype = torch.float32 if self.sampled else torch.float64
        tiny = torch.finfo(dtype).tiny
        block = max(1, _BLOCK_BYTES // (8 * M * C))
        Pt = (self.P.T / K).to(dtype)
        for start in range(0, B, block):
            part = probs[start : start + block].to(dtype)
            b = part.shape[0]
            q = Pt @ part.permute(1, 0, 2).reshape(K, b * C)  # (M, b * C)
            # q log q (q = 0 gives 0); a third faster than torch.special.xlogy on CPU
            t = q.clamp(min=tiny).log_().mul_(q).view(M, b, C).sum(dim=2)  # (M, b)
            out[start : start + b] = offset - weight @ t.double()
        return out


def batchbald(
    mc_probs: Tensor,
    k: int,
    *,
    num_samples: int = 10_000,
    max_candidates: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    r"""BatchBALD: the batch with the greedily maximised joint mutual information.

    Kirsch, van Amersfoort and Gal (NeurIPS 2019). With :math:`y_{1:n-1}` the labels
    of the items picked so far and :math:`\omega` the model (``K`` MC-dropout
    samples), step ``n`` picks

    .. math::

        \arg\max_{i} \; H(y_{1:n-1}, y_i) - \sum_{j \in \{1..n-1, i\}}
        \mathbb{E}_{\omega} H(y_j \mid \omega),

    the first step being BALD. The joint entropy is computed **exactly** (every one
    of the ``C^(n-1)`` label configurations of the picks, as ``(K, C^(n-1))``
    products) while ``C^(n-1) <= num_samples``, and estimated beyond from
    ``num_samples // K`` configurations drawn per ``\omega_k`` from ``generator``
    (the importance-weighted estimator of the paper's appendix), as
    ``batchbald_redux`` does. The joint is kept in float64, with each sampled
    configuration rescaled so products of many probabilities do not underflow; the
    exact joint entropies are computed in float64, the sampled ones in float32 (their
    sampling error, about ``num_samples ** -0.5``, dwarfs float32 rounding).
    Memory: the ``(K, M)`` configurations plus blocks of ``(M, B, C)`` float64
    numbers of at most 64 MiB; compute ``O(k N M K C)`` for ``M`` configurations.

    Parameters
    ----------
    mc_probs : torch.Tensor
        ``(N, K, C)`` class probabilities of ``K`` *consistent* MC-dropout passes
        (the same ``K`` dropout masks for every item: see
        :func:`aalearn.mc_dropout.consistent_mc_dropout`).
    k : int
        Batch size, ``0 <= k <= N`` (or ``<= max_candidates``).
    num_samples : int
        ``M``: the most label configurations of the joint (exact or sampled).
    max_candidates : int, optional
        Only the ``max_candidates`` items of highest BALD score are candidates (the
        paper's practice for large pools); ``None`` considers every item.
    generator : torch.Generator, optional
        Source of the sampled configurations (used only once the joint is sampled).

    Returns
    -------
    torch.Tensor
        ``(k,)`` ``int64`` row indices in pick order, on ``mc_probs``' device. Ties go
        to the smaller row.

    Examples
    --------
    Four MC samples; item 1 is a copy of item 0, which tells samples 1-2 from 3-4;
    item 2 tells samples 1, 3 from 2, 4. BALD ranks the copy second, BatchBALD
    takes item 2 instead:

    >>> import torch
    >>> from aalearn.functional import bald, batchbald
    >>> a = [[0.95, 0.05], [0.95, 0.05], [0.05, 0.95], [0.05, 0.95]]
    >>> b = [[0.8, 0.2], [0.2, 0.8], [0.8, 0.2], [0.2, 0.8]]
    >>> p = torch.tensor([a, a, b])
    >>> bald(p)
    tensor([0.4946, 0.4946, 0.1927])
    >>> batchbald(p, 2)
    tensor([0, 2])
    """
    k, num_samples, max_candidates = _batchbald_tensor_validation(
        mc_probs, k, num_samples, max_candidates, generator
    )
    device = mc_probs.device
    picks = torch.empty(k, dtype=torch.long, device=device)
    if k == 0:
        return picks
    with torch.no_grad():
        probs = mc_probs.detach().to(torch.float64)
        n_models, n_classes = probs.shape[1], probs.shape[2]
        cond = -torch.special.xlogy(probs, probs).sum(dim=2).mean(dim=1)  # E_w H(y | w)
        rows = torch.arange(probs.shape[0], device=device)
        if max_candidates is not None and max_candidates < probs.shape[0]:
            marginal = probs.mean(dim=1)
            bald = -torch.special.xlogy(marginal, marginal).sum(dim=1) - cond
            _, rows = topk_indices(bald, rows, max_candidates, validate_args=False)
            rows = rows.sort().values
            probs, cond = probs.index_select(0, rows), cond.index_select(0, rows)
        joint = _Joint(n_models, device)
        picked: list[Tensor] = []
        taken = torch.zeros(probs.shape[0], dtype=torch.bool, device=device)
        picked_cond = torch.zeros((), dtype=torch.float64, device=device)
        n_per_model = max(1, num_samples // n_models)
        for step in range(k):
            scores = joint.entropies(probs) - cond - picked_cond
            scores.masked_fill_(taken, float("-inf"))
            pick = scores.argmax().view(1)
            picks[step : step + 1] = pick
            taken.index_fill_(0, pick, True)
            picked_cond = picked_cond + cond.index_select(0, pick).squeeze(0)
            p = probs.index_select(0, pick).squeeze(0)  # (K, C)
            picked.append(p)
            if step + 1 == k:
                break
            if joint.sampled:
                joint.add_sampled(p, generator)
            elif math.pow(n_classes, step + 1) <= num_samples:
                joint.add_exact(p)
            else:
                joint.start_sampling(picked, n_per_model, generator)
        return rows.index_select(0, picks)

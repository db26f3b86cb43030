"""Uncertainty scores of predicted class probabilities: entropy, least confidence, margin, BALD.

Every kernel maps a batch of probability vectors to one score per item, and every
score follows the same convention: **higher = more informative** (so the samplers
always take the top-k). Outputs are 1-D, on the input's device, ``float32``
(``float64`` for ``float64`` input; ``float16``/``bfloat16`` are computed in
``float32``). Each kernel is one plain torch expression that runs unchanged on CPU
and CUDA; they are not differentiable (the input is detached). A row's score never
depends on the other rows, and a row holding NaN scores NaN.

``validate_args`` means the same in every kernel of :mod:`aalearn.functional`: the
checks of the tensors (type, dtype, shape) run when it is ``True`` and are skipped
when it is ``False``; the checks of the other arguments always run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["bald", "entropy", "least_confidence", "margin"]


def _tensor_validation(
    value: Any, name: str, shape_text: str, *, min_classes: int = 1, purpose: str = ""
) -> None:
    """Check that ``value`` is a floating tensor with as many dims as ``shape_text`` names."""
    if not isinstance(value, Tensor):
        raise TypeError(
            f"Expected argument `{name}` to be a torch.Tensor, but got {type(value).__name__}."
        )
    if not value.is_floating_point():
        raise TypeError(
            f"Expected argument `{name}` to be a floating point tensor of probabilities, but got "
            f"dtype {value.dtype}."
        )
    ndim = shape_text.count(",") + 1
    if value.ndim != ndim:
        raise ValueError(
            f"Expected argument `{name}` to be a {ndim}-D tensor of shape {shape_text}, but got "
            f"shape {tuple(value.shape)}."
        )
    if value.shape[-1] < min_classes:
        raise ValueError(
            f"Expected argument `{name}` to have at least {min_classes} classes in its last "
            f"dimension{purpose}, but got shape {tuple(value.shape)}."
        )


def _prepare(probs: Tensor) -> Tensor:
    """Detach, and compute half precision in float32."""
    probs = probs.detach()
    if probs.dtype in (torch.float16, torch.bfloat16):
        probs = probs.float()
    return probs


def _xlogx_sum(p: Tensor) -> Tensor:
    """``sum(p * log p)`` over the last dim, with ``0 log 0 = 0``.

    Clamping at the smallest normal number keeps ``0 * log(0)`` at exactly 0, never
    NaN, and changes no normal probability.
    """
    return (p * p.clamp(min=torch.finfo(p.dtype).tiny).log()).sum(dim=-1)


def _entropy_compute(probs: Tensor) -> Tensor:
    # sum(p log p) <= 0; adding 0.0 after negating turns -0.0 (one-hot rows) into +0.0.
    return _xlogx_sum(probs).neg().add(0.0)


def entropy(probs: Tensor, *, validate_args: bool = True) -> Tensor:
    r"""Predictive entropy of each row of class probabilities, in nats.

    .. math:: H(p) = -\sum_{c=1}^{C} p_c \log p_c, \qquad 0 \log 0 = 0.

    Ranges from 0 (one-hot) to :math:`\log C` (uniform); higher = more informative.

    Parameters
    ----------
    probs : Tensor
        Floating tensor of shape ``(N, C)``; each row a probability vector (not checked).
    validate_args : bool
        Check type and shape (default). ``False`` skips the checks, for hot loops.

    Returns
    -------
    Tensor
        Shape ``(N,)``, on ``probs``' device; float32, or float64 for float64 input.

    Raises
    ------
    TypeError
        If ``probs`` is not a floating point tensor.
    ValueError
        If ``probs`` is not 2-D or has no class.

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional import entropy
    >>> entropy(torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.25, 0.75]]))
    tensor([0.6931, 0.0000, 0.5623])
    >>> entropy(torch.full((1, 10), 0.1, dtype=torch.float64))
    tensor([2.3026], dtype=torch.float64)
    """
    if validate_args:
        _tensor_validation(probs, "probs", "(N, C)")
    return _entropy_compute(_prepare(probs))


def _least_confidence_compute(probs: Tensor) -> Tensor:
    return 1.0 - probs.amax(dim=-1)


def least_confidence(probs: Tensor, *, validate_args: bool = True) -> Tensor:
    r"""Least confidence: one minus the largest class probability of each row.

    .. math:: s(p) = 1 - \max_c p_c

    Ranges from 0 (one-hot) to :math:`1 - 1/C` (uniform); higher = more informative.

    Parameters
    ----------
    probs : Tensor
        Floating tensor of shape ``(N, C)``; each row a probability vector (not checked).
    validate_args : bool
        Check type and shape (default). ``False`` skips the checks, for hot loops.

    Returns
    -------
    Tensor
        Shape ``(N,)``, on ``probs``' device; float32, or float64 for float64 input.

    Raises
    ------
    TypeError
        If ``probs`` is not a floating point tensor.
    ValueError
        If ``probs`` is not 2-D or has no class.

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional import least_confidence
    >>> least_confidence(torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.3, 0.7]]))
    tensor([0.5000, 0.0000, 0.3000])
    """
    if validate_args:
        _tensor_validation(probs, "probs", "(N, C)")
    return _least_confidence_compute(_prepare(probs))


def _margin_compute(probs: Tensor) -> Tensor:
    top2 = probs.topk(2, dim=-1).values  # a NaN entry is the largest: the row scores NaN
    return top2[:, 1] - top2[:, 0]


def margin(probs: Tensor, *, validate_args: bool = True) -> Tensor:
    r"""Margin score: minus the gap between the two largest class probabilities.

    .. math:: s(p) = -\left(p_{(1)} - p_{(2)}\right)

    where :math:`p_{(1)} \ge p_{(2)}` are the two largest entries of the row (equal
    when the top is tied). Ranges from -1 (one-hot) to 0 (tie at the top); higher =
    more informative, so the smallest margins rank first. The gap is returned as it
    is, not as ``1 - gap``: in float32, ``1 - gap`` rounds every gap below about
    3e-8 to 1.0, while the gap itself keeps full precision near 0 (the subtraction
    of two close floats is exact), so tiny gaps still rank in gap order.

    Parameters
    ----------
    probs : Tensor
        Floating tensor of shape ``(N, C)`` with ``C >= 2``; each row a probability
        vector (not checked).
    validate_args : bool
        Check type and shape (default). ``False`` skips the checks, for hot loops.

    Returns
    -------
    Tensor
        Shape ``(N,)``, on ``probs``' device; float32, or float64 for float64 input.

    Raises
    ------
    TypeError
        If ``probs`` is not a floating point tensor.
    ValueError
        If ``probs`` is not 2-D or has fewer than 2 classes.

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional import margin
    >>> margin(torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.2, 0.7]]))
    tensor([ 0.0000, -1.0000, -0.5000])
    >>> margin(torch.tensor([[0.1, 0.6, 0.3]]))
    tensor([-0.3000])
    """
    if validate_args:
        _tensor_validation(probs, "probs", "(N, C)", min_classes=2, purpose=" for margin")
    return _margin_compute(_prepare(probs))


def _bald_compute(mc_probs: Tensor) -> Tensor:
    # I = H(mean_k p_k) - mean_k H(p_k) = -sum(pbar log pbar) + mean_k sum_c p log p
    mutual_information = _xlogx_sum(mc_probs).mean(dim=-1) - _xlogx_sum(mc_probs.mean(dim=1))
    # Mathematically >= 0 (Jensen); rounding can dip a hair below for identical samples.
    return mutual_information.clamp(min=0.0)


def bald(mc_probs: Tensor, *, validate_args: bool = True) -> Tensor:
    r"""BALD: mutual information between the prediction and the model, from MC samples.

    .. math::

        I(p) = H\Big(\frac{1}{K}\sum_{k=1}^{K} p_k\Big) - \frac{1}{K}\sum_{k=1}^{K} H(p_k)

    in nats, with :math:`H` the entropy (:func:`entropy`) and :math:`p_k` the class
    probabilities of the ``k``-th stochastic (MC-dropout) forward pass. Zero when all
    passes agree; higher = more informative (the passes disagree). Tiny negative
    values from rounding are clamped to 0.

    Parameters
    ----------
    mc_probs : Tensor
        Floating tensor of shape ``(N, K, C)``: ``K`` probability vectors per item.
        Note that baal uses ``(N, C, K)``.
    validate_args : bool
        Check type and shape (default). ``False`` skips the checks, for hot loops.

    Returns
    -------
    Tensor
        Shape ``(N,)``, on ``mc_probs``' device; float32, or float64 for float64 input.

    Raises
    ------
    TypeError
        If ``mc_probs`` is not a floating point tensor.
    ValueError
        If ``mc_probs`` is not 3-D, or has no sample or no class.

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional import bald
    >>> agree = torch.tensor([[[0.5, 0.5], [0.5, 0.5]]])      # two passes, same answer
    >>> disagree = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])   # two confident, opposite passes
    >>> bald(torch.cat([agree, disagree]))                    # 0 and log 2
    tensor([0.0000, 0.6931])
    """
    if validate_args:
        _tensor_validation(mc_probs, "mc_probs", "(N, K, C)")
        if mc_probs.shape[1] < 1:
            raise ValueError(
                "Expected argument `mc_probs` to have at least 1 sample (K >= 1) in its second "
                f"dimension, but got shape {tuple(mc_probs.shape)}."
            )
    return _bald_compute(_prepare(mc_probs))

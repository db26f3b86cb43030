"""Uncertainty scores of predicted class probabilities: entropy, least confidence, margin, BALD.

Every kernel maps a batch of probability vectors to one score per item, and every
score follows the same convention: **higher = more informative** (so the samplers
always take the top-k). Outputs are 1-D, on the input's device, ``float32``
(``float64`` for ``float64`` input; ``float16``/``bfloat16`` are computed in
``float32``). The kernels are written once in torch and run unchanged on CPU and
CUDA; they are not differentiable (the input is detached).

Speed: with numba installed (``pip install aalearn[fast]``), entropy, margin and BALD
of float32 CPU tensors run fused numba kernels instead (``aalearn.functional._fused``):
one pass over each row, on torch's own threads. Margin gives the same bits on both paths; entropy
and BALD agree with the torch kernels to about 1e-6 (a different logarithm and
summation order); on either path a row's score never depends on the other rows.
Set ``AALEARN_DISABLE_NUMBA=1`` to force the torch kernels. The torch kernels work on
CPU in chunks of rows that stay in cache, with preallocated buffers and ``out=``
arguments; on other devices a chunk is the whole tensor (the kernels are memory bound
there). ``benchmarks/kernels.py`` measures both against the floor ``probs.sum(-1)``.
"""

from __future__ import annotations

from typing import Any, Callable, Tuple

import torch
from torch import Tensor

from aalearn.functional import _fused

__all__ = ["bald", "entropy", "least_confidence", "margin"]

# Elements per row chunk on CPU (4 MiB of float32): small enough for a chunk and its
# buffer to stay in a core's L2/L3 share, large enough for each torch op to split over
# threads and to amortise the per-op overhead. Every op on a chunk is one OpenMP region
# that waits for all threads, so fewer, larger chunks are also far less fragile on an
# oversubscribed CPU. Chosen by sweeps (64 Ki to 4 Mi elements) on an idle 2-thread
# Xeon and on a 2-core AMD EPYC: 256 Ki to 1 Mi measured the same idle, and 1 Mi lost
# 3 to 4x less under load; see benchmarks/kernels.py and docs/benchmarks.md.
_CPU_CHUNK_ELEMENTS = 1 << 20
_CPU_MARGIN_CHUNK_ELEMENTS = 1 << 20
# Up to this many classes, margin transposes each chunk and finds the two largest
# values with elementwise max/min over contiguous columns (row reductions over a
# short last dimension are slow on CPU); above it, it uses two row reductions.
# Measured crossover on a 2-core AMD EPYC: columns 2x faster up to 24 classes, rows
# faster from 32.
_COLUMN_TREE_MAX_CLASSES = 24


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


Workspace = Tuple[Tensor, ...]


def _for_each_chunk(
    data: Tensor,
    chunk_elements: int,
    make_workspace: Callable[[int], Workspace],
    body: Callable[[int, int, Workspace], None],
) -> None:
    """Call ``body(start, stop, workspace)`` on consecutive row ranges that cover ``data``.

    On CPU a range holds about ``chunk_elements`` elements; elsewhere every row (the
    kernels are memory bound there). ``make_workspace(rows)`` preallocates the buffers
    for ranges of up to ``rows`` rows, once.
    """
    n_rows = data.shape[0]
    if n_rows == 0:
        return
    step = n_rows
    if data.device.type == "cpu":
        step = max(1, chunk_elements // max(1, data[:1].numel()))
    workspace = make_workspace(min(step, n_rows))
    for start in range(0, n_rows, step):
        body(start, min(start + step, n_rows), workspace)


def _xlogx_sum(rows: Tensor, buf: Tensor, out: Tensor) -> None:
    """``out = sum(p * log p)`` over the last dim of 2-D ``rows`` (0 log 0 = 0), via ``buf``.

    Clamping at the smallest normal number keeps ``0 * log(0)`` at exactly 0, never NaN,
    and changes no normal probability. The product goes into ``buf`` and is summed
    with ``out=``: no temporary is allocated per chunk.
    """
    torch.clamp(rows, min=torch.finfo(rows.dtype).tiny, out=buf)
    torch.log(buf, out=buf)
    buf.mul_(rows)
    torch.sum(buf, dim=-1, out=out)


def _entropy_compute(probs: Tensor) -> Tensor:
    if _fused.enabled(probs):
        return _fused.entropy(probs)
    return _entropy_torch(probs)


def _entropy_torch(probs: Tensor) -> Tensor:
    n_rows, n_cols = probs.shape
    out = probs.new_empty(n_rows)

    def body(start: int, stop: int, ws: Workspace) -> None:
        _xlogx_sum(probs[start:stop], ws[0][: stop - start], out[start:stop])

    def workspace(rows: int) -> Workspace:
        return (probs.new_empty(rows, n_cols),)

    _for_each_chunk(probs, _CPU_CHUNK_ELEMENTS, workspace, body)
    # sum(p log p) <= 0; adding 0.0 after negating turns -0.0 (one-hot rows) into +0.0.
    return out.neg_().add_(0.0)


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
    # amax is a single pass with a small output: no chunking needed.
    return torch.amax(probs, dim=-1).neg_().add_(1.0)


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


def _top2_of_columns(cols: Tensor) -> Tuple[Tensor, Tensor]:
    """Largest and second largest value (ties count twice) of each column of ``(C, R)`` data.

    A tournament over halves: ``hi``/``lo`` hold the larger/smaller of each pair of
    rows of ``cols``, then ``hi`` is halved again while ``lo`` keeps the best loser.
    Every op is elementwise over contiguous rows of length ``R``.
    """
    n = cols.shape[0]
    half = n // 2
    hi = torch.maximum(cols[:half], cols[half : 2 * half])
    lo = torch.minimum(cols[:half], cols[half : 2 * half])
    if n % 2:
        _merge_pair(hi[0], lo[0], cols[2 * half], None)
    while hi.shape[0] > 1:
        n = hi.shape[0]
        half = n // 2
        a, b = hi[:half], hi[half : 2 * half]
        new_lo = torch.minimum(a, b)
        torch.maximum(new_lo, lo[:half], out=new_lo)
        torch.maximum(new_lo, lo[half : 2 * half], out=new_lo)
        if n % 2:
            odd_hi, odd_lo = hi[2 * half], lo[2 * half]
        torch.maximum(a, b, out=a)
        hi, lo = a, new_lo
        if n % 2:
            _merge_pair(hi[0], lo[0], odd_hi, odd_lo)
    return hi[0], lo[0]


def _merge_pair(t1: Tensor, t2: Tensor, e1: Tensor, e2: Tensor | None) -> None:
    """In place: ``(t1, t2)`` := the top two of the multiset ``{t1, t2, e1, e2}``.

    Requires ``t2 <= t1`` and ``e2 <= e1`` elementwise (``e2`` may be absent).
    """
    cross = torch.minimum(t1, e1)
    torch.maximum(t2, cross, out=t2)
    if e2 is not None:
        torch.maximum(t2, e2, out=t2)
    torch.maximum(t1, e1, out=t1)


def _exact_matmul_transpose(t: Tensor) -> bool:
    """Whether :func:`_transpose_into` may use a product with the identity for ``t``.

    Only on CPU, and only when float32 products run in full precision: with
    ``torch.set_float32_matmul_precision("high")`` or lower a product may round its
    inputs (TF32 or bfloat16), and the transpose would no longer be exact.
    """
    if t.device.type != "cpu":
        return False
    return t.dtype == torch.float64 or (
        t.dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest"
    )


def _transpose_into(rows: Tensor, cols: Tensor) -> None:
    """``cols = rows.T``, exactly, for a finite 2-D ``rows`` and a contiguous ``cols``.

    On CPU ``cols.copy_(rows.t())`` is a strided copy that costs about 1 ns per element;
    a product with the identity, ``I @ rows.T``, goes through the BLAS's blocked
    transposition and was 2x faster end to end for margin at 10 classes. It is exact:
    each output is ``1 * x`` plus products ``0 * y``, which are zeros for finite ``y``
    (under ``torch.set_flush_denormal(True)`` subnormal inputs read as zero, as in any
    arithmetic; a probability row's largest entry is at least ``1/C``, so a subnormal
    runner-up read as zero leaves its margin unchanged).
    """
    if _exact_matmul_transpose(rows):
        eye = torch.eye(rows.shape[1], dtype=rows.dtype)
        torch.mm(eye, rows.t(), out=cols)
    else:
        cols.copy_(rows.t())


def _margin_by_columns(rows: Tensor, buf: Tensor, out: Tensor) -> None:
    n_rows, n_cols = rows.shape
    cols = buf.view(-1)[: n_rows * n_cols].view(n_cols, n_rows)
    _transpose_into(rows, cols)
    top1, top2 = _top2_of_columns(cols)
    torch.sub(top2, top1, out=out)


def _margin_by_rows(rows: Tensor, buf: Tensor, out: Tensor) -> None:
    top1 = torch.amax(rows, dim=-1, keepdim=True)
    # buf = 1 where a row reaches its maximum; a count above 1 means a tie for the top.
    torch.ge(rows, top1, out=buf)
    n_top = buf.sum(-1)
    # Zero the maxima (probabilities are >= 0), then the row maximum is the runner-up.
    torch.addcmul(rows, rows, buf, value=-1.0, out=buf)
    top2 = torch.amax(buf, dim=-1)
    top1 = top1.squeeze(-1)
    torch.where(n_top > 1.5, top1, top2, out=top2)
    torch.sub(top2, top1, out=out)


def _margin_compute(probs: Tensor) -> Tensor:
    if _fused.enabled(probs):
        return _fused.margin(probs)
    return _margin_torch(probs)


def _margin_torch(probs: Tensor) -> Tensor:
    n_rows, n_cols = probs.shape
    out = probs.new_empty(n_rows)
    kernel = _margin_by_columns if n_cols <= _COLUMN_TREE_MAX_CLASSES else _margin_by_rows

    def body(start: int, stop: int, ws: Workspace) -> None:
        kernel(probs[start:stop], ws[0][: stop - start], out[start:stop])

    def workspace(rows: int) -> Workspace:
        return (probs.new_empty(rows, n_cols),)

    _for_each_chunk(probs, _CPU_MARGIN_CHUNK_ELEMENTS, workspace, body)
    return out.add_(1.0)


def margin(probs: Tensor, *, validate_args: bool = True) -> Tensor:
    r"""Margin score: one minus the gap between the two largest class probabilities.

    .. math:: s(p) = 1 - \left(p_{(1)} - p_{(2)}\right)

    where :math:`p_{(1)} \ge p_{(2)}` are the two largest entries of the row (equal
    when the top is tied). Ranges from 0 (one-hot) to 1 (tie at the top); higher =
    more informative, so the smallest margins rank first.

    Parameters
    ----------
    probs : Tensor
        Floating tensor of shape ``(N, C)`` with ``C >= 2``; each row a probability
        vector (not checked; the entries must be finite and non-negative).
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
    tensor([1.0000, 0.0000, 0.5000])
    >>> margin(torch.tensor([[0.1, 0.6, 0.3]]))
    tensor([0.7000])
    """
    if validate_args:
        _tensor_validation(probs, "probs", "(N, C)", min_classes=2, purpose=" for margin")
    return _margin_compute(_prepare(probs))


def _bald_compute(mc_probs: Tensor) -> Tensor:
    if _fused.enabled(mc_probs):
        return _fused.bald(mc_probs)
    return _bald_torch(mc_probs)


def _bald_torch(mc_probs: Tensor) -> Tensor:
    n_rows, n_samples, n_cols = mc_probs.shape
    out = mc_probs.new_empty(n_rows)
    mean_term = mc_probs.new_empty(n_rows)

    def make_workspace(rows: int) -> Workspace:
        new = mc_probs.new_empty
        return new(rows, n_samples * n_cols), new(rows, n_cols), new(rows, n_cols)

    def body(start: int, stop: int, ws: Workspace) -> None:
        rows, m = mc_probs[start:stop], stop - start
        buf, mean, mean_buf = ws[0][:m], ws[1][:m], ws[2][:m]
        # sum_k sum_c p log p over the flattened (K * C) samples of each item.
        _xlogx_sum(rows.reshape(m, -1), buf, out[start:stop])
        torch.mean(rows, dim=1, out=mean)
        _xlogx_sum(mean, mean_buf, mean_term[start:stop])

    _for_each_chunk(mc_probs, _CPU_CHUNK_ELEMENTS, make_workspace, body)
    # I = H(mean_k p_k) - mean_k H(p_k) = -sum(pbar log pbar) + sum_k sum_c(p log p) / K
    out.div_(n_samples).sub_(mean_term)
    # Mathematically >= 0 (Jensen); rounding can dip a hair below for identical samples.
    return out.clamp_(min=0.0)


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
        If ``mc_probs`` is not 3-D or has no class.

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
    return _bald_compute(_prepare(mc_probs))

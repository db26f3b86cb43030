"""Fused CPU scoring kernels compiled with numba: one pass over the data per row.

Imported only by :mod:`aalearn.functional._fused`, and only when a float32 CPU tensor
is scored with numba installed; ``import aalearn`` never imports this module.

Each kernel is a C callback ``*_task(void *header)``: ``GOMP_parallel`` runs it on
torch's own OpenMP threads, or Python threads call it through ctypes (see
:mod:`aalearn.functional._fused` for when and why). Every thread claims chunks of rows
from a shared atomic counter in the header until none is left, and scores them with
the matching ``*_rows(data, out, start, stop)``. Python never calls ``*_rows``
directly: all paths run the same machine code, so a row's score depends on that row
only (its values and the number of classes), never on the rows around it, on the
number of threads, or on the path.

Why a hand-written logarithm: torch's ``log`` (MKL's vector log on x86) and numba's
``math.log`` (a scalar libm call per element, which stops the loop from being
vectorised) both cost several times the memory read of the data on CPU.
:func:`_log_parts` is branch-free integer and float arithmetic that LLVM vectorises
inside the fused loop.
"""

from __future__ import annotations

from typing import Any, Tuple

import numba
import numpy as np
from numba import carray, cfunc, types
from numba.core import cgutils
from numba.extending import intrinsic

# Reassociation lets LLVM vectorise the row sums (8 partial sums per row); contraction
# fuses multiply-adds; "nsz" (the sign of a zero may change) saved another 8 %. So the
# kernels return sums whose zeros may be -0.0, and the callers finish with torch ops
# that give +0.0 (as the torch kernels do). No "nnan"/"ninf": NaN rows must stay NaN
# (they rank last in the top-k).
_FASTMATH = {"reassoc", "contract", "nsz"}

_f32 = np.float32
_i32 = np.int32


def _bitcast(source: Any, target: Any) -> Any:
    """An intrinsic that reinterprets a ``source`` register as ``target`` (no conversion)."""

    @intrinsic
    def bitcast(typingctx: Any, x: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return builder.bitcast(args[0], context.get_value_type(target))

        return target(source), codegen

    return bitcast


_float_bits = _bitcast(types.float32, types.int32)  # the bit pattern of a float32
_bits_float = _bitcast(types.int32, types.float32)  # the float32 with a bit pattern


@intrinsic
def _fetch_increment(typingctx: Any, array: Any, index: Any) -> Any:
    """Atomically add 1 to ``array[index]`` (int64) and return the value before."""
    sig = types.int64(array, index)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        array_type = signature.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, view, [args[1]])
        one = context.get_constant(types.int64, 1)
        return builder.atomic_rmw("add", pointer, one, "monotonic")

    return sig, codegen


@intrinsic
def _address_pointer(typingctx: Any, address: Any) -> Any:
    """The ``void *`` at an int64 address."""
    sig = types.voidptr(types.int64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], context.get_value_type(types.voidptr))

    return sig, codegen


_SQRT_HALF_BITS = _i32(0x3F3504F3)  # bits of sqrt(1/2), rounded down
_EXPONENT_MASK = _i32(-(1 << 23))  # 0xFF800000: sign and exponent bits
_LN2 = _f32(0.6931471805599453)
# ln 2 split in two, so that k * ln2 stays exact to float32 rounding for |k| <= 128.
_LN2_HI = _f32(0.693359375)
_LN2_LO = _f32(-2.12194440e-4)
# log(1 + f) = f + f**2 * R(f) on f in [sqrt(1/2) - 1, sqrt(2) - 1], R of degree 7,
# fitted by iteratively reweighted least squares for the smallest maximum relative
# error of log(1 + f): 1.0e-7 in float32 (about one ulp). tests/test_fused_kernels.py
# checks the logarithm against float64 over every exponent.
_R0 = _f32(0.08733994513750076)
_R1 = _f32(-0.14306406676769257)
_R2 = _f32(0.14917783439159393)
_R3 = _f32(-0.16570642590522766)
_R4 = _f32(0.19962100684642792)
_R5 = _f32(-0.2500174939632416)
_R6 = _f32(0.33333948254585266)
_R7 = _f32(-0.49999991059303284)


@numba.njit(inline="always", fastmath=_FASTMATH)
def _log_parts(x: float) -> Tuple[float, float]:
    """``(log z, k)`` with ``log x = k ln 2 + log z``, for a positive normal float32 ``x``.

    ``x = z * 2**k`` with ``z`` in ``[sqrt(1/2), sqrt(2))`` comes from integer
    operations on the bit pattern, then ``log z = f + f**2 R(f)`` with ``f = z - 1``.
    Exact at ``x = 1`` (``f = 0``, ``k = 0``). Zeros, subnormals, infinities and NaNs
    give finite values (0 gives ``k = -127``, ``z = 1``): the callers multiply by ``x``
    itself, so that ``0 log 0 = 0`` and NaN and infinity carry on, with no clamp.
    """
    b = _float_bits(x)
    shifted = b - _SQRT_HALF_BITS
    k = _f32(shifted >> 23)
    f = _bits_float(b - (shifted & _EXPONENT_MASK)) - _f32(1.0)
    r = _R0
    r = r * f + _R1
    r = r * f + _R2
    r = r * f + _R3
    r = r * f + _R4
    r = r * f + _R5
    r = r * f + _R6
    r = r * f + _R7
    return f + (f * f) * r, k


@numba.njit(nogil=True, fastmath=_FASTMATH, cache=True)
def log_into(x: np.ndarray, out: np.ndarray) -> None:
    """``out = log(x)`` for 1-D float32 arrays of positive normal numbers (for the tests)."""
    for i in range(x.shape[0]):
        log_z, k = _log_parts(x[i])
        out[i] = k * _LN2_HI + (log_z + k * _LN2_LO)


# Row sums add blocks of this many terms: within a block LLVM keeps 8 partial sums (32
# terms each at most); the blocks add up in order. Without blocks a long row (10^4
# terms of one sign) drifts by tens of ulps; torch's cascade sums do not.
_SUM_BLOCK = 256


@numba.njit(inline="always", fastmath=_FASTMATH)
def _xlogx_block(block: np.ndarray) -> float:
    # sum p (log z + k ln 2) = sum p log z + ln 2 * sum p k: two accumulators.
    of_z = _f32(0.0)
    of_k = _f32(0.0)
    for c in range(block.shape[0]):
        p = block[c]
        log_z, k = _log_parts(p)
        of_z += p * log_z
        of_k += p * k
    return of_z + of_k * _LN2


@numba.njit(inline="always", fastmath=_FASTMATH)
def _xlogx_sum(row: np.ndarray) -> float:
    """``sum(p log p)`` over a 1-D float32 array (``0 log 0 = 0``), in blocks.

    Each block is a slice with its own loop from 0: written with offsets into ``row``
    instead, LLVM did not vectorise the loop (2.5x slower).
    """
    n = row.shape[0]
    total = _f32(0.0)
    for start in range(0, n, _SUM_BLOCK):
        total += _xlogx_block(row[start : min(start + _SUM_BLOCK, n)])
    return total


@numba.njit(fastmath=_FASTMATH)
def xlogx_rows(probs: np.ndarray, out: np.ndarray, start: int, stop: int) -> None:
    """``out[i] = sum_c p log p`` (minus the entropy) for rows ``start <= i < stop``."""
    for i in range(start, stop):
        out[i] = _xlogx_sum(probs[i])


@numba.njit(fastmath=_FASTMATH)
def bald_rows(mc_probs: np.ndarray, out: np.ndarray, start: int, stop: int) -> None:
    """BALD of rows ``start <= i < stop`` of an ``(N, K, C)`` array (not clamped at 0).

    ``sum_c [mean_k(p_kc log p_kc) - m_c log m_c]`` with ``m_c = mean_k p_kc``: the terms
    ``p log p`` in one vectorised pass over the item's ``K * C`` values, then the sums
    over samples in float64. When all samples agree, ``m_c`` is exactly ``p_c`` and
    each class's difference is exactly 0, so BALD is exactly 0.
    """
    n_rows, n_samples, n_classes = mc_probs.shape
    flat = mc_probs.reshape(n_rows, n_samples * n_classes)
    terms = np.empty(n_samples * n_classes, np.float32)
    of_samples = np.empty(n_classes, np.float64)
    mean = np.empty(n_classes, np.float64)
    for i in range(start, stop):
        row = flat[i]
        for j in range(row.shape[0]):
            p = row[j]
            log_z, k = _log_parts(p)
            terms[j] = p * (log_z + k * _LN2)
        of_samples[:] = 0.0
        mean[:] = 0.0
        for s in range(n_samples):
            for c in range(n_classes):
                of_samples[c] += terms[s * n_classes + c]
                mean[c] += row[s * n_classes + c]
        total = 0.0
        for c in range(n_classes):
            m = _f32(mean[c] / n_samples)
            log_z, k = _log_parts(m)
            total += of_samples[c] / n_samples - m * (log_z + k * _LN2)
        out[i] = total


_INT32_MIN = _i32(-(2**31))


@numba.njit
def margin_rows(bits: np.ndarray, out: np.ndarray, start: int, stop: int) -> None:
    """``out[i] = 1 - (top1 - top2)`` for rows of a 2-D float32 array viewed as int32.

    For non-negative floats the order of the bit patterns is the order of the values,
    so both passes are integer max reductions, which vectorise without fast-math and
    are exact. A NaN (bits above every finite value and infinity) becomes the top and
    the score is NaN. A tie at the top (the maximum seen twice) gives a margin of 1.
    """
    n_classes = bits.shape[1]
    for i in range(start, stop):
        top1 = _INT32_MIN
        for c in range(n_classes):
            top1 = max(top1, bits[i, c])
        top2 = _INT32_MIN
        n_top = 0
        for c in range(n_classes):
            b = bits[i, c]
            n_top += _i32(b == top1)
            top2 = max(top2, b if b < top1 else _INT32_MIN)
        if n_top > 1:
            top2 = top1
        out[i] = _f32(1.0) - (_bits_float(top1) - _bits_float(top2))


# The header a task reads, int64: [counter, n_rows, dim1, dim2, chunk_rows,
# address of the input, address of the output, unused]. The counter starts at 0; each
# thread takes chunk number ``counter++`` until the chunks run out.
HEADER_SIZE = 8


@numba.njit(inline="always")
def _claim_chunks(header: np.ndarray, score_rows: Any, data: np.ndarray, out: np.ndarray) -> None:
    """Score chunks of rows, taking chunk number ``header[0]++`` until none is left."""
    n_rows, chunk = header[1], header[4]
    while True:
        start = _fetch_increment(header, 0) * chunk
        if start >= n_rows:
            break
        score_rows(data, out, start, min(start + chunk, n_rows))


@cfunc(types.void(types.voidptr), cache=True)
def xlogx_task(header_address: Any) -> None:
    header = carray(header_address, HEADER_SIZE, np.int64)
    probs = carray(_address_pointer(header[5]), (header[1], header[2]), np.float32)
    out = carray(_address_pointer(header[6]), header[1], np.float32)
    _claim_chunks(header, xlogx_rows, probs, out)


@cfunc(types.void(types.voidptr), cache=True)
def bald_task(header_address: Any) -> None:
    header = carray(header_address, HEADER_SIZE, np.int64)
    shape = (header[1], header[2], header[3])
    mc_probs = carray(_address_pointer(header[5]), shape, np.float32)
    out = carray(_address_pointer(header[6]), header[1], np.float32)
    _claim_chunks(header, bald_rows, mc_probs, out)


@cfunc(types.void(types.voidptr), cache=True)
def margin_task(header_address: Any) -> None:
    header = carray(header_address, HEADER_SIZE, np.int64)
    bits = carray(_address_pointer(header[5]), (header[1], header[2]), np.int32)
    out = carray(_address_pointer(header[6]), header[1], np.float32)
    _claim_chunks(header, margin_rows, bits, out)

"""Dispatch to the fused numba kernels for float32 CPU tensors, when numba is installed.

The uncertainty kernels in :mod:`aalearn.functional.uncertainty` call :func:`enabled`
first; when it is true they hand the tensor to :func:`entropy`, :func:`margin` or
:func:`bald` here, which run :mod:`aalearn.functional._numba_kernels` on the tensor's
memory (no copy for contiguous input) over ``torch.get_num_threads()`` threads.

numba is optional (``pip install aalearn[fast]``): without it, or with the environment
variable ``AALEARN_DISABLE_NUMBA`` set to anything but ``""`` or ``"0"``, every kernel
runs its torch implementation. numba is imported on the first fused call, never by
``import aalearn``.

Which threads: torch's OpenMP threads when they can be reached. After every parallel
torch op (a model's forward pass, say), GNU OpenMP keeps its worker threads spinning
for a few milliseconds. Threads of our own would compete with them for the cores:
measured on 2 cores, a fused entropy right after a ``probs.sum(-1)`` took twice as
long. So when torch's OpenMP runtime exports ``GOMP_parallel`` (the libgomp that Linux
wheels of torch load, or LLVM's libomp, which implements it too), the kernels run as
one parallel region of that runtime, on the very threads that spin. Otherwise they run
on a small pool of Python threads. In a process forked after a parallel region, GNU
OpenMP's threads are gone (even torch's own parallel ops hang there unless the child
calls ``torch.set_num_threads(1)``, as DataLoader workers do): the kernels never use
OpenMP in a forked child, and with one thread they run in the calling thread.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import threading
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from types import ModuleType
from typing import Any, List, Optional

import numpy as np
import torch
from torch import Tensor

DISABLE_ENV = "AALEARN_DISABLE_NUMBA"

# Below this many elements per thread, one thread does all the rows: handing work to
# another thread costs tens of microseconds.
_MIN_ELEMENTS_PER_THREAD = 1 << 16
# Rows per chunk claimed by an OpenMP thread: about this many elements (64 KiB).
_CHUNK_ELEMENTS = 1 << 14

_kernels: Optional[ModuleType] = None
_import_failed = False
_lock = threading.Lock()
_pool: Optional[ThreadPoolExecutor] = None
_pool_workers = 0
_gomp_parallel: Optional[Any] = None
_gomp_searched = False


def _load() -> Optional[ModuleType]:
    """The compiled kernels module, or None (numba missing, or failing: warned once)."""
    global _kernels, _import_failed
    if _kernels is None and not _import_failed:
        try:
            _kernels = importlib.import_module("aalearn.functional._numba_kernels")
        except ModuleNotFoundError as err:
            _import_failed = True
            if err.name not in ("numba", "llvmlite"):
                raise
        except Exception as err:  # numba built for another NumPy, or failing to compile
            _import_failed = True
            warnings.warn(
                f"aalearn: numba is installed but its kernels failed to load "
                f"({type(err).__name__}: {err}); using the torch kernels instead. Set "
                f"{DISABLE_ENV}=1 to silence this.",
                RuntimeWarning,
                stacklevel=3,
            )
    return _kernels


def enabled(t: Tensor) -> bool:
    """Whether ``t`` is scored by the fused kernels: a float32 CPU tensor, numba importable."""
    if t.device.type != "cpu" or t.dtype != torch.float32:
        return False
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return False
    return _load() is not None


def _find_gomp_parallel() -> Optional[Any]:
    """``GOMP_parallel`` of the OpenMP runtime torch has loaded, or None.

    Only a library already loaded is opened (``RTLD_NOLOAD``), from torch's own
    ``lib`` folder: never a second OpenMP runtime.
    """
    lib_dir = os.path.join(os.path.dirname(torch.__file__), "lib")
    for name in ("libgomp.so.1", "libomp.so", "libomp.dylib", "libgomp.1.dylib"):
        path = os.path.join(lib_dir, name)
        if not os.path.exists(path):
            continue
        try:
            library = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_LOCAL)
            function = library.GOMP_parallel
        except (OSError, AttributeError):
            continue
        # void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags)
        function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        function.restype = None
        return function
    return None


def _openmp() -> Optional[Any]:
    global _gomp_parallel, _gomp_searched
    with _lock:
        if not _gomp_searched:
            _gomp_parallel = _find_gomp_parallel()
            _gomp_searched = True
        return _gomp_parallel


def _reset_after_fork() -> None:
    # A forked child inherits the executor object but none of its threads, a lock that
    # another thread may have held, and an OpenMP runtime whose threads are gone: use
    # a fresh lock and a fresh Python pool there.
    global _lock, _pool, _pool_workers, _gomp_parallel, _gomp_searched
    _lock = threading.Lock()
    _pool, _pool_workers = None, 0
    _gomp_parallel, _gomp_searched = None, True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_workers
    with _lock:
        if _pool is None or _pool_workers < workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="aalearn-kernel")
            _pool_workers = workers
        return _pool


def _threads(n_rows: int, row_elements: int) -> int:
    total = n_rows * max(1, row_elements)
    return max(1, min(torch.get_num_threads(), total // _MIN_ELEMENTS_PER_THREAD, n_rows))


def _header(data: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The int64 header the ``*_task`` callbacks read (layout in ``_numba_kernels``)."""
    row_elements = max(1, data[:1].size)
    header = np.zeros(8, dtype=np.int64)
    header[1] = data.shape[0]
    header[2] = data.shape[1]
    header[3] = data.shape[2] if data.ndim == 3 else 1
    header[4] = max(1, _CHUNK_ELEMENTS // row_elements)
    header[5] = data.ctypes.data
    header[6] = out.ctypes.data
    return header


def _run(name: str, data: np.ndarray, out: np.ndarray) -> None:
    """Score every row of ``data`` into ``out`` with the task ``name`` (xlogx, margin, bald).

    Every path runs the same compiled callback, so the scores do not depend on the
    path: one OpenMP region of torch's runtime; or the calling thread plus pool
    threads, each calling the callback through ctypes (which releases the GIL); or the
    calling thread alone. The threads share the header's chunk counter.
    """
    kernels = _load()
    assert kernels is not None
    task = getattr(kernels, f"{name}_task")
    header = _header(data, out)
    address = header.ctypes.data
    n_threads = _threads(data.shape[0], data[:1].size)
    parallel = _openmp() if n_threads > 1 else None
    # data, out and header stay referenced here until every thread is done.
    if parallel is not None:
        parallel(task.address, address, n_threads, 0)
        return
    futures: List[Future[None]] = []
    if n_threads > 1:
        pool = _executor(n_threads - 1)
        futures = [pool.submit(task.ctypes, address) for _ in range(n_threads - 1)]
    task.ctypes(address)
    for future in futures:
        future.result()


def entropy(probs: Tensor) -> Tensor:
    """Entropy of each row of a 2-D float32 CPU tensor (see ``enabled``)."""
    data = probs.contiguous().numpy()
    out = np.empty(data.shape[0], dtype=np.float32)
    _run("xlogx", data, out)
    # sum(p log p) <= 0; adding 0.0 after negating turns -0.0 (one-hot rows) into +0.0.
    return torch.from_numpy(out).neg_().add_(0.0)


def margin(probs: Tensor) -> Tensor:
    """Margin score of each row of a 2-D float32 CPU tensor (see ``enabled``)."""
    bits = probs.contiguous().numpy().view(np.int32)
    out = np.empty(bits.shape[0], dtype=np.float32)
    _run("margin", bits, out)
    return torch.from_numpy(out)


def bald(mc_probs: Tensor) -> Tensor:
    """BALD of each item of an ``(N, K, C)`` float32 CPU tensor (see ``enabled``)."""
    data = mc_probs.contiguous().numpy()
    out = np.empty(data.shape[0], dtype=np.float32)
    _run("bald", data, out)
    # Mathematically >= 0 (Jensen); rounding can dip a hair below for identical samples.
    return torch.from_numpy(out).clamp_(min=0.0)

"""The training loop shared by the samplers that train networks of their own.

AALU, its Table 1 variants, the feature-space adversarial sampler and VAAL differ in
their networks and losses, not in how they are trained: per iteration some steps of
a generator (the VAE) and some steps of a critic (the assistant or discriminator),
mini-batches drawn from index streams on the device, loss terms summed on the
device, a schedule of epochs, a progress report. This module holds that loop and
its parts; the samplers supply the steps. Private: nothing here is public API.

On CUDA a step can be captured once as a CUDA graph and replayed (:class:`_Step`):
the MLPs are so small that launching their few hundred kernels from Python would
otherwise cost more than running them.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar, Union

import numpy as np
import torch
from torch import nn

from aalearn.functional.topk import topk_indices

from ._progress import ProgressFn, TrainingProgress

#: Eager steps before a CUDA graph is captured (PyTorch's recipe warms up on a side stream).
_GRAPH_WARMUP = 3

#: At most this many CPU threads while a selector trains (see :func:`_cpu_threads`).
_TRAIN_THREADS = 1

T = TypeVar("T")

#: What ``progress=`` accepts: ``None`` (a bar when stderr is a terminal), a bool, a callable.
Progress = Union[None, bool, ProgressFn]


# ------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class _TrainingConfig:
    """How long and how a selector trains: the settings every training sampler shares."""

    lr: float
    batch_size: int
    epochs: float
    min_iterations: int = 0
    progress: Progress = None


def _epoch_schedule(
    n_items: int, epochs: float, batch_size: int, min_iterations: int = 0
) -> list[int]:
    """Iterations in each epoch, VAAL's way: ``n_items * epochs // batch_size`` in all.

    An epoch is ``n_items / batch_size`` iterations (``n_items`` = labeled +
    unlabeled); a fractional ``epochs`` ends with a partial epoch. At least
    ``max(1, min_iterations)`` iterations run: below that, the number of epochs is
    raised until the floor is reached.
    """
    total = int(n_items * epochs // batch_size)
    if total < min_iterations:
        total, epochs = min_iterations, min_iterations * batch_size / n_items
    total = max(1, total)
    n_epochs = max(1, math.ceil(epochs))
    bounds = [min(total, int(n_items * e // batch_size)) for e in range(1, n_epochs)] + [total]
    counts, previous = [], 0
    for bound in bounds:
        counts.append(bound - previous)
        previous = bound
    return counts


# ------------------------------------------------------------------ the parts


class _IndexStream:
    """Shuffled mini-batches of ``range(n)`` drawn on ``device``, reshuffled after each pass.

    Like a ``DataLoader(shuffle=True, drop_last=True)`` over positions, without a
    loader: a permutation is drawn with ``generator`` on the device and sliced, so no
    step touches the host. The batch size is ``min(batch_size, n)``.
    """

    def __init__(
        self, n: int, batch_size: int, generator: torch.Generator, device: torch.device
    ) -> None:
        self.n = n
        self.batch_size = min(batch_size, n)
        self.generator = generator
        self.device = device
        self._perm = torch.empty(0, dtype=torch.int64, device=device)
        self._pos = n  # forces a shuffle on the first call

    def next(self) -> torch.Tensor:
        if self._pos + self.batch_size > self.n:
            self._perm = torch.randperm(self.n, generator=self.generator, device=self.device)
            self._pos = 0
        out = self._perm[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return out


class _LossMeter:
    """Sums loss terms on the device, in place; reads them back once per epoch, when asked.

    Sums and counts live in preallocated device tensors updated in place, so the
    updates can be recorded in a CUDA graph and replayed.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, torch.Tensor] = {}

    def add(self, parts: dict[str, torch.Tensor]) -> None:
        if not self.enabled:
            return
        for key, value in parts.items():
            if key not in self._sums:
                self._sums[key] = torch.zeros((), dtype=value.dtype, device=value.device)
                self._counts[key] = torch.zeros((), dtype=value.dtype, device=value.device)
            self._sums[key].add_(value.detach())
            self._counts[key].add_(1)

    def pop(self) -> dict[str, float]:
        out = {k: float(self._sums[k] / self._counts[k]) for k in self._sums}
        for t in (*self._sums.values(), *self._counts.values()):
            t.zero_()
        return out


class _Step:
    """One optimisation step, run eagerly or, on CUDA, captured once in a CUDA graph.

    ``fn`` reads only static tensors (index and noise buffers the caller refills
    before each call) and performs forward, backward and ``optimizer.step()``. On
    CUDA with ``graphs=True``, the first :data:`_GRAPH_WARMUP` calls run eagerly on
    a side stream (PyTorch's capture recipe), the next one is captured and every
    later call replays the graph: one launch instead of a few hundred dispatches
    from Python, which dominate the cost of these small MLPs. The gradients are
    set to ``None`` before the capture so that the captured backward writes them
    rather than accumulating. If the capture fails the step falls back to eager.
    """

    def __init__(
        self, fn: Callable[[], None], optimizer: torch.optim.Optimizer, graphs: bool = False
    ) -> None:
        self.fn = fn
        self.optimizer = optimizer
        self.graphs = graphs
        self.graph: Optional[Any] = None
        self.calls = 0

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
            return
        self.optimizer.zero_grad(set_to_none=True)
        if not self.graphs:
            self.fn()
            return
        self.calls += 1
        current = torch.cuda.current_stream()
        if self.calls <= _GRAPH_WARMUP:
            side = torch.cuda.Stream()
            side.wait_stream(current)
            with torch.cuda.stream(side):
                self.fn()
            current.wait_stream(side)
            return
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self.fn()
        except RuntimeError as err:  # pragma: no cover - depends on the CUDA build
            warnings.warn(
                f"CUDA graph capture of the selector's training step failed ({err}); "
                "training continues without graphs.",
                RuntimeWarning,
                stacklevel=2,
            )
            self.graphs = False
            self.optimizer.zero_grad(set_to_none=True)
            self.fn()
            return
        self.graph = graph
        graph.replay()


@dataclass
class _Phase:
    """``repeats`` calls of ``step`` per iteration, each after ``before`` (noise refills)."""

    step: Callable[[], None]
    repeats: int = 1
    before: Optional[Callable[[], None]] = None


def _train(
    schedule: list[int],
    draw: Callable[[], None],
    phases: Sequence[_Phase],
    meter: _LossMeter,
    progress: TrainingProgress,
) -> None:
    """Run ``schedule`` (iterations per epoch); one iteration runs every phase in turn.

    Each step draws a fresh pair of batches (``draw``), except the first step of a
    phase that follows another: it reuses the last batch, as VAAL's reference trains
    its discriminator on the VAE's last batch. The loop runs on at most
    :data:`_TRAIN_THREADS` CPU threads (:func:`_cpu_threads`).
    """
    progress.start()
    with _cpu_threads(_TRAIN_THREADS):
        for epoch, n_iter in enumerate(schedule, 1):
            for _ in range(n_iter):
                for p, phase in enumerate(phases):
                    for r in range(phase.repeats):
                        if r or not p:
                            draw()
                        if phase.before is not None:
                            phase.before()
                        phase.step()
            if n_iter:
                progress.update(epoch, n_iter, meter)
    progress.close()


@contextlib.contextmanager
def _cpu_threads(limit: int) -> Iterator[None]:
    """Run the block on at most ``limit`` intra-op CPU threads, then restore the caller's count.

    The selectors' networks are MLPs of a few hundred units on batches of a few
    hundred rows: each operation takes tens of microseconds, too little to share
    between threads. On a loaded machine every operation split over two threads
    waits for the slower one (OpenMP's barrier): 300 iterations of AALU's default
    selector took 7 to 15x longer on two threads than on one (``docs/benchmarks.md``,
    *AALU select time*). The caller's setting is restored exactly, also on error;
    a lower setting is never raised. On CUDA the loop runs no CPU kernels, so the
    limit changes nothing there. The thread count changes the float results (the
    reductions split differently): the label-efficiency benchmark always trained on
    one thread, so its figures are those of this path.
    """
    before = torch.get_num_threads()
    if before <= limit:
        yield
        return
    torch.set_num_threads(limit)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------- helpers


def _seeded(rng: np.random.Generator, build: Callable[[], T]) -> T:
    """Build networks with weights drawn from ``rng``, leaving torch's global RNG untouched."""
    seed = int(rng.integers(0, 2**63 - 1))
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return build()


def _adam(
    params: Iterable[nn.Parameter], lr: float, device: torch.device, capturable: bool = False
) -> torch.optim.Adam:
    # The fused kernel is one launch per step on CUDA; CPU keeps the default.
    if device.type != "cuda":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, fused=True, capturable=capturable)


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Run ``module`` without recording gradients for its parameters (inputs still get them)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _ranked(scores: torch.Tensor, candidates: np.ndarray, budget: int) -> np.ndarray:
    """The ``budget`` candidates of highest score, best first, in the library's one order.

    :func:`~aalearn.functional.topk_indices`: NaN last, ties to the smaller position
    (``candidates`` ascending: the smaller dataset index).
    """
    if budget <= 0 or scores.numel() == 0:
        return candidates[:0].copy()
    positions = torch.arange(scores.shape[0], device=scores.device)
    order = topk_indices(scores, positions, budget)[1]
    return candidates[order.cpu().numpy()]

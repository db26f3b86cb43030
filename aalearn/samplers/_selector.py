"""The feature selector shared by AALU and the feature-space adversarial sampler.

A VAE over task-model features and an assistant (or adversary) ``A``, co-trained on
feature matrices resident on the device: mini-batches are indexed from them with a
:class:`torch.Generator`, the loss terms are summed on the device, and on CUDA each
training step is captured once as a CUDA graph and replayed. Used by
:class:`aalearn.samplers.aalu.AALUSampler` and
:class:`aalearn.samplers.adversarial.AdversarialSampler` (``representation="features"``);
the VAAL trainer on raw images (in ``adversarial.py``) reuses its helpers. Private:
nothing here is public API.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

import numpy as np
import torch
from torch import nn

from aalearn._finite import check_finite
from aalearn._validation import check_int, torch_generator
from aalearn.functional.losses import (
    assistant_adversarial_loss,
    ranking_loss,
    representation_loss,
    vae_adversarial_loss,
)
from aalearn.networks import Assistant, FeatureVAE, reparameterize
from aalearn.pool import ActivePool

from .base import BaseSampler

#: ``progress(epoch, losses)``: called after each epoch (from 1) with the mean of each
#: loss term over the epoch's steps.
ProgressFn = Callable[[int, dict[str, float]], None]

#: Rows scored at once at selection time (memory bound only; any value gives the same result).
_SCORE_CHUNK = 16384
#: Record the feature selector's training steps in CUDA graphs on CUDA devices.
_CUDA_GRAPHS = True
#: Eager steps before a CUDA graph is captured (PyTorch's recipe warms up on a side stream).
_GRAPH_WARMUP = 3

T = TypeVar("T")


# --------------------------------------------------------------------------- helpers
# Shared with adversarial.py.


def _check_bool(value: Any, name: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, bool):
        expected = "a bool or None" if allow_none else "a bool"
        raise TypeError(
            f"Expected argument `{name}` to be {expected}, but got {type(value).__name__}."
        )


def _check_hidden(hidden: Any, name: str = "hidden") -> tuple[int, ...]:
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
        raise TypeError(
            f"Expected argument `{name}` to be a sequence of positive ints, but got "
            f"{type(hidden).__name__}."
        )
    if len(hidden) == 0:
        raise ValueError(f"Expected argument `{name}` to hold at least one width, but got ().")
    return tuple(check_int(h, name, minimum=1) for h in hidden)


def _check_progress(progress: Any) -> None:
    if progress is not None and not callable(progress):
        raise TypeError(
            f"Expected argument `progress` to be callable or None, but got "
            f"{type(progress).__name__}."
        )


def _check_feature_layer(feature_layer: Any) -> None:
    if feature_layer is not None and not isinstance(feature_layer, str):
        raise TypeError(
            f"Expected argument `feature_layer` to be a module name or 'auto', but got "
            f"{type(feature_layer).__name__}."
        )


def _epoch_schedule(n_items: int, epochs: float, batch_size: int) -> list[int]:
    """Iterations in each epoch, VAAL's way: ``n_items * epochs // batch_size`` in all.

    An epoch is ``n_items / batch_size`` iterations (``n_items`` = labeled +
    unlabeled); a fractional ``epochs`` ends with a partial epoch. At least one
    iteration runs.
    """
    total = max(1, int(n_items * epochs // batch_size))
    n_epochs = max(1, math.ceil(epochs))
    bounds = [min(total, int(n_items * e // batch_size)) for e in range(1, n_epochs)] + [total]
    counts, previous = [], 0
    for bound in bounds:
        counts.append(bound - previous)
        previous = bound
    return counts


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
        self, fn: Callable[[], None], optimizer: torch.optim.Optimizer, graphs: bool
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


def _standardize_(*parts: torch.Tensor) -> None:
    """Z-score every column in place, with the mean and std over all ``parts`` together."""
    n = sum(p.shape[0] for p in parts)
    mean = torch.stack([p.sum(dim=0) for p in parts]).sum(dim=0) / n
    var = torch.stack([(p - mean).pow(2).sum(dim=0) for p in parts]).sum(dim=0) / n
    std = var.sqrt()
    std = torch.where(std > 1e-6, std, torch.ones_like(std))  # constant columns become 0
    for p in parts:
        p.sub_(mean).div_(std)


def _with(code: torch.Tensor, probs: Optional[torch.Tensor]) -> torch.Tensor:
    return code if probs is None else torch.cat([code, probs], dim=1)


def _top(scores: torch.Tensor, candidates: np.ndarray, budget: int) -> np.ndarray:
    """The ``budget`` candidates of highest score, best first; ties go to the lower position."""
    check_finite(scores, candidates, "selector scores")  # the non-finite policy
    order = torch.sort(scores, descending=True, stable=True).indices[:budget]
    return candidates[order.cpu().numpy()]


# ---------------------------------------------------------------- the trainer


@dataclass(frozen=True)
class _FeatureSelectorConfig:
    use_adversarial: bool
    use_predictions: bool
    use_ranking: bool
    adversarial_weight: float  # AALU's beta (Eq. 6), VAAL's adversary_param
    kl_weight: float  # 1 in AALU's Eq. 1, VAAL's beta
    xi: float
    ranking_weight: float
    lr: float
    batch_size: int
    epochs: float
    latent_dim: int
    hidden: tuple[int, ...]
    standardize: bool
    vae_steps: int = 1
    assistant_steps: int = 1
    progress: Optional[ProgressFn] = None


@dataclass
class _Batch:
    f_l: torch.Tensor
    f_u: Optional[torch.Tensor]
    p_l: Optional[torch.Tensor]
    p_u: Optional[torch.Tensor]
    l_l: Optional[torch.Tensor]


@dataclass
class _FeatureData:
    """The resident inputs of training: every tensor on the training device."""

    f_l: torch.Tensor
    f_u: torch.Tensor
    p_l: Optional[torch.Tensor]
    p_u: Optional[torch.Tensor]
    l_l: Optional[torch.Tensor]

    def __post_init__(self) -> None:
        if self.p_l is None or self.p_u is None:
            self.p_l = self.p_u = None

    def batch(self, il: torch.Tensor, iu: Optional[torch.Tensor]) -> _Batch:
        def take(t: Optional[torch.Tensor], i: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            return None if t is None or i is None else t[i]

        return _Batch(
            self.f_l[il],
            take(self.f_u, iu),
            take(self.p_l, il),
            take(self.p_u, iu),
            take(self.l_l, il),
        )


class _FeatureSelector:
    """The VAE and assistant of AALU (and of the feature-space adversarial sampler).

    Without the adversarial game there is no VAE and ``A`` reads the (standardised)
    features themselves; with it, ``A`` reads the VAE's latent code. Either is
    concatenated with the predictions when ``use_predictions``.
    """

    def __init__(
        self,
        cfg: _FeatureSelectorConfig,
        n_features: int,
        n_classes: int,
        device: torch.device,
        rng: np.random.Generator,
    ) -> None:
        self.cfg = cfg
        self.device = device

        def build() -> tuple[Optional[FeatureVAE], Assistant]:
            vae = (
                FeatureVAE(n_features, cfg.latent_dim, cfg.hidden) if cfg.use_adversarial else None
            )
            code = cfg.latent_dim if cfg.use_adversarial else n_features
            extra = n_classes if cfg.use_predictions else 0
            return vae, Assistant(code + extra, cfg.hidden)

        vae, assistant = _seeded(rng, build)
        self.vae = None if vae is None else vae.to(device)
        self.assistant = assistant.to(device)
        self.generator = torch_generator(rng, device)

    def _probs(self, *parts: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The predictions that go into ``m``: none unless ``use_predictions``."""
        present = [p for p in parts if p is not None]
        if not self.cfg.use_predictions or len(present) != len(parts):
            return None
        return present[0] if len(present) == 1 else torch.cat(present)

    # ---------------------------------------------------------------- objectives
    def vae_objective(
        self, batch: _Batch, eps: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. (6): Eq. (1) on the labeled and on the unlabeled batch plus ``beta`` * Eq. (5).

        Gradients reach the VAE only: ``A`` runs with its parameters frozen. ``eps`` is
        the reparameterisation noise (drawn from the selector's generator if omitted).
        """
        if self.vae is None or batch.f_u is None:
            raise RuntimeError("The VAE objective needs the adversarial game.")
        n_l = batch.f_l.shape[0]
        f = torch.cat([batch.f_l, batch.f_u])
        recon, z, mu, logvar = self.vae(f, generator=self.generator, eps=eps)
        per_sample = representation_loss(
            recon, f, mu, logvar, kl_weight=self.cfg.kl_weight, reduction="none"
        )
        rep = per_sample[:n_l].mean() + per_sample[n_l:].mean()
        with _frozen(self.assistant):
            logits = self.assistant(_with(z, self._probs(batch.p_l, batch.p_u)))
        adv = vae_adversarial_loss(logits[:n_l], logits[n_l:])
        loss = rep + self.cfg.adversarial_weight * adv
        return loss, {"representation": rep, "vae_adversarial": adv}

    def assistant_objective(
        self, batch: _Batch, eps: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. (9), or the terms the switches keep: Eq. (7) and/or ``lambda`` * Eq. (8).

        The VAE runs under ``no_grad``: gradients reach ``A`` only.
        """
        cfg = self.cfg
        n_l = batch.f_l.shape[0]
        parts: dict[str, torch.Tensor] = {}
        terms: list[torch.Tensor] = []
        if self.vae is not None and batch.f_u is not None:
            with torch.no_grad():
                mu, logvar = self.vae.encode(torch.cat([batch.f_l, batch.f_u]))
                z = reparameterize(mu, logvar, self.generator, eps=eps)
            logits = self.assistant(_with(z, self._probs(batch.p_l, batch.p_u)))
            logits_l = logits[:n_l]
            parts["assistant_adversarial"] = assistant_adversarial_loss(logits_l, logits[n_l:])
            terms.append(parts["assistant_adversarial"])
        else:
            logits_l = self.assistant(_with(batch.f_l, self._probs(batch.p_l)))
        if cfg.use_ranking:
            if batch.l_l is None:
                raise RuntimeError("The ranking loss needs the task losses.")
            parts["ranking"] = ranking_loss(torch.sigmoid(logits_l), batch.l_l, cfg.xi)
            terms.append(cfg.ranking_weight * parts["ranking"])
        loss = terms[0] if len(terms) == 1 else terms[0] + terms[1]
        return loss, parts

    # ------------------------------------------------------------------ training
    def fit(self, data: _FeatureData) -> None:
        """Co-train the VAE and ``A`` for ``cfg.epochs`` epochs over the resident data.

        Each step reads its batch through index buffers and its noise from noise
        buffers, refilled before the step from the selector's generator; the step
        itself is a :class:`_Step` (a replayed CUDA graph on CUDA).
        """
        cfg = self.cfg
        dev = self.device
        n_l, n_u = data.f_l.shape[0], data.f_u.shape[0]
        graphs = _CUDA_GRAPHS and dev.type == "cuda"
        lab = _IndexStream(n_l, cfg.batch_size, self.generator, dev)
        unl = _IndexStream(n_u, cfg.batch_size, self.generator, dev)
        vae = self.vae
        idx_l = torch.empty(lab.batch_size, dtype=torch.int64, device=dev)
        idx_u = None if vae is None else torch.empty(unl.batch_size, dtype=torch.int64, device=dev)
        n_batch = lab.batch_size + (0 if vae is None else unl.batch_size)
        eps_v = None if vae is None else torch.empty(n_batch, cfg.latent_dim, device=dev)
        eps_a = None if vae is None else torch.empty(n_batch, cfg.latent_dim, device=dev)
        opt_a = _adam(self.assistant.parameters(), cfg.lr, dev, capturable=graphs)
        meter = _LossMeter(cfg.progress is not None)
        self.assistant.train()

        def draw() -> None:
            idx_l.copy_(lab.next())
            if idx_u is not None:
                idx_u.copy_(unl.next())

        def assistant_step() -> None:
            loss, parts = self.assistant_objective(data.batch(idx_l, idx_u), eps_a)
            loss.backward()
            opt_a.step()
            meter.add(parts)

        run_assistant = _Step(assistant_step, opt_a, graphs)
        run_vae: Optional[_Step] = None
        if vae is not None:
            vae.train()
            opt_v = _adam(vae.parameters(), cfg.lr, dev, capturable=graphs)

            def vae_step() -> None:
                loss, parts = self.vae_objective(data.batch(idx_l, idx_u), eps_v)
                loss.backward()
                opt_v.step()
                meter.add(parts)

            run_vae = _Step(vae_step, opt_v, graphs)

        schedule = _epoch_schedule(n_l + n_u, cfg.epochs, cfg.batch_size)
        with torch.cuda.device(dev) if graphs else contextlib.nullcontext():
            self._loop(schedule, draw, run_vae, run_assistant, eps_v, eps_a, meter)

    def _loop(
        self,
        schedule: list[int],
        draw: Callable[[], None],
        run_vae: Optional[_Step],
        run_assistant: _Step,
        eps_v: Optional[torch.Tensor],
        eps_a: Optional[torch.Tensor],
        meter: _LossMeter,
    ) -> None:
        cfg = self.cfg
        for epoch, n_iter in enumerate(schedule, 1):
            for _ in range(n_iter):
                if run_vae is not None and eps_v is not None:
                    for _step in range(cfg.vae_steps):
                        draw()
                        eps_v.normal_(generator=self.generator)
                        run_vae()
                # The first A step reuses the last VAE step's batch (as VAAL does).
                for step in range(cfg.assistant_steps):
                    if step or run_vae is None:
                        draw()
                    if eps_a is not None:
                        eps_a.normal_(generator=self.generator)
                    run_assistant()
            if cfg.progress is not None and n_iter:
                cfg.progress(epoch, meter.pop())

    @torch.no_grad()
    def score(self, f: torch.Tensor, p: Optional[torch.Tensor]) -> torch.Tensor:
        """``A``'s logits on ``m = [mu, p]`` (``mu``: the latent mean, no sampling)."""
        self.assistant.eval()
        if self.vae is not None:
            self.vae.eval()
        out = []
        for start in range(0, f.shape[0], _SCORE_CHUNK):
            chunk = f[start : start + _SCORE_CHUNK]
            code = chunk if self.vae is None else self.vae.encode(chunk)[0]
            probs = None if p is None else self._probs(p[start : start + _SCORE_CHUNK])
            out.append(self.assistant(_with(code, probs)))
        return torch.cat(out) if out else torch.empty(0, device=f.device)


def _select_by_features(
    sampler: BaseSampler,
    cfg: _FeatureSelectorConfig,
    feature_layer: Optional[str],
    model: nn.Module,
    pool: ActivePool,
    budget: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Algorithm 1: one inference pass, co-training, the ``budget`` highest ``A`` logits."""
    lab, unl = pool.labeled_indices, pool.unlabeled_indices
    need = 2 if cfg.use_ranking else 1
    if lab.size < need:
        raise ValueError(
            f"{type(sampler).__name__} needs at least {need} labeled item(s) "
            f"({'ranking loss' if cfg.use_ranking else 'adversarial training'}), but the pool "
            f"has {lab.size}."
        )
    # One pass over the pool, in its labeled part (with the task losses, from the
    # oracle's labels) and its unlabeled part (no label is read for those).
    out_l = sampler._collect(
        model,
        pool,
        lab,
        features=True,
        probs=cfg.use_predictions,
        losses=cfg.use_ranking,
        labels=pool.labels(lab) if cfg.use_ranking else None,
        feature_layer=feature_layer,
    )
    out_u = sampler._collect(
        model, pool, unl, features=True, probs=cfg.use_predictions, feature_layer=feature_layer
    )
    assert out_l.features is not None and out_u.features is not None
    f_l, f_u = out_l.features, out_u.features
    if cfg.standardize:
        _standardize_(f_l, f_u)
    n_classes = 0 if out_l.probs is None else out_l.probs.shape[1]
    data = _FeatureData(f_l, f_u, out_l.probs, out_u.probs, out_l.losses)
    selector = _FeatureSelector(cfg, f_l.shape[1], n_classes, f_l.device, rng)
    selector.fit(data)
    return _top(selector.score(f_u, out_u.probs), unl, budget)

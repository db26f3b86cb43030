"""The feature selector of AALU and of the feature-space adversarial sampler.

A VAE over task-model features and an assistant (or adversary) ``A``, co-trained on
feature matrices resident on the device: mini-batches are indexed from them with a
:class:`torch.Generator`, the loss terms are summed on the device, and on CUDA each
training step is captured once as a CUDA graph and replayed. The loop, the steps
and the schedule are those of :mod:`aalearn.samplers._training`, shared with VAAL.
Used by :class:`aalearn.samplers.aalu.AALUSampler` and
:class:`aalearn.samplers.adversarial.AdversarialSampler` (``representation="features"``).
Private: nothing here is public API.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from aalearn._finite import check_finite
from aalearn._validation import check_random_state, torch_generator
from aalearn.functional.coreset import k_center_greedy
from aalearn.functional.losses import (
    assistant_adversarial_loss,
    ranking_loss,
    representation_loss,
    vae_adversarial_loss,
)
from aalearn.inference import preserve_mode
from aalearn.networks import Assistant, FeatureVAE, reparameterize
from aalearn.pool import ActivePool

from ._progress import TrainingProgress
from ._training import (
    _adam,
    _epoch_schedule,
    _frozen,
    _IndexStream,
    _LossMeter,
    _Phase,
    _ranked,
    _seeded,
    _Step,
    _train,
    _TrainingConfig,
)
from .base import BaseSampler

#: Rows scored at once at selection time (memory bound only; any value gives the same result).
_SCORE_CHUNK = 16384
#: Record the feature selector's training steps in CUDA graphs on CUDA devices.
_CUDA_GRAPHS = True
#: How a batch is formed from the scores (see ``AALUSampler``'s ``batch``).
BATCH_RULES = ("topk", "per_class", "kcenter")


@dataclass(frozen=True)
class _FeatureSelectorConfig:
    use_adversarial: bool
    use_predictions: bool
    use_ranking: bool
    adversarial_weight: float  # AALU's beta (Eq. 6), VAAL's adversary_param
    kl_weight: float  # 1 in AALU's Eq. 1, VAAL's beta
    xi: float
    ranking_weight: float
    latent_dim: int
    hidden: tuple[int, ...]
    standardize: bool
    training: _TrainingConfig
    vae_steps: int = 1
    assistant_steps: int = 1
    ties: str = "zero"
    batch: str = "topk"
    kcenter_candidates: float = 4.0


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
        name: str = "selector",
    ) -> None:
        self.cfg = cfg
        self.device = device
        self.name = name

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
            scores = torch.sigmoid(logits_l)
            parts["ranking"] = ranking_loss(scores, batch.l_l, cfg.xi, ties=cfg.ties)
            terms.append(cfg.ranking_weight * parts["ranking"])
        loss = terms[0] if len(terms) == 1 else terms[0] + terms[1]
        return loss, parts

    # ------------------------------------------------------------------ training
    def fit(self, data: _FeatureData) -> None:
        """Co-train the VAE and ``A`` over the resident data, on the shared loop.

        Each step reads its batch through index buffers and its noise from noise
        buffers, refilled before the step from the selector's generator; the step
        itself is a :class:`~aalearn.samplers._training._Step` (a replayed CUDA graph
        on CUDA).
        """
        cfg, train = self.cfg, self.cfg.training
        dev = self.device
        n_l, n_u = data.f_l.shape[0], data.f_u.shape[0]
        graphs = _CUDA_GRAPHS and dev.type == "cuda"
        vae = self.vae
        lab = _IndexStream(n_l, train.batch_size, self.generator, dev)
        unl = _IndexStream(n_u, train.batch_size, self.generator, dev)
        idx_l = torch.empty(lab.batch_size, dtype=torch.int64, device=dev)
        idx_u = None if vae is None else torch.empty(unl.batch_size, dtype=torch.int64, device=dev)
        schedule = _epoch_schedule(n_l + n_u, train.epochs, train.batch_size, train.min_iterations)
        detail = f"{n_l + n_u:,} items, batch {train.batch_size}"
        progress = TrainingProgress(train.progress, self.name, schedule, detail)
        meter = _LossMeter(progress.active)

        def draw() -> None:
            idx_l.copy_(lab.next())
            if idx_u is not None:
                idx_u.copy_(unl.next())

        def step(objective: Any, opt: torch.optim.Optimizer, eps: Any) -> _Step:
            def fn() -> None:
                loss, parts = objective(data.batch(idx_l, idx_u), eps)
                loss.backward()
                opt.step()
                meter.add(parts)

            return _Step(fn, opt, graphs)

        def noise(eps: Optional[torch.Tensor]) -> Optional[Any]:
            return None if eps is None else lambda: eps.normal_(generator=self.generator)

        phases = []
        n_batch = lab.batch_size + (0 if vae is None else unl.batch_size)
        if vae is not None:
            vae.train()
            eps_v = torch.empty(n_batch, cfg.latent_dim, device=dev)
            opt_v = _adam(vae.parameters(), train.lr, dev, capturable=graphs)
            phases.append(
                _Phase(step(self.vae_objective, opt_v, eps_v), cfg.vae_steps, noise(eps_v))
            )
        eps_a = None if vae is None else torch.empty(n_batch, cfg.latent_dim, device=dev)
        opt_a = _adam(self.assistant.parameters(), train.lr, dev, capturable=graphs)
        self.assistant.train()
        phases.append(
            _Phase(step(self.assistant_objective, opt_a, eps_a), cfg.assistant_steps, noise(eps_a))
        )
        with torch.cuda.device(dev) if graphs else contextlib.nullcontext():
            _train(schedule, draw, phases, meter, progress)

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


# ---------------------------------------------------------------- the batch


def _per_class(scores: torch.Tensor, classes: torch.Tensor, budget: int) -> torch.Tensor:
    """Round robin over predicted classes: each class's best, then each class's second...

    Positions into ``scores``; within a round the classes' picks are in rank order.
    """
    n = scores.shape[0]
    positions = torch.arange(n, device=scores.device)
    order = torch.from_numpy(_ranked(scores, positions.cpu().numpy(), n)).to(scores.device)
    cls = classes[order]
    within = torch.empty_like(order)
    for c in torch.unique(cls):
        at = torch.nonzero(cls == c).squeeze(1)
        within[at] = torch.arange(at.numel(), device=scores.device)
    rank = torch.arange(n, device=scores.device)
    key = within * n + rank  # by round, then by rank: unique, no ties
    return order[torch.argsort(key)[:budget]]


def _kcenter(
    scores: torch.Tensor,
    features_u: torch.Tensor,
    features_l: torch.Tensor,
    budget: int,
    factor: float,
) -> torch.Tensor:
    """k-center greedy (labeled items as centers) over the ``factor * budget`` best."""
    n = scores.shape[0]
    m = min(n, max(budget, round(factor * budget)))
    top = torch.from_numpy(_ranked(scores, np.arange(n), m)).to(scores.device)
    feats = torch.cat([features_l, features_u[top]])
    centers = torch.zeros(feats.shape[0], dtype=torch.bool, device=feats.device)
    centers[: features_l.shape[0]] = True
    picked = k_center_greedy(feats, centers, budget, validate_args=False)
    return top[picked - features_l.shape[0]]


def _pick(
    cfg: _FeatureSelectorConfig,
    scores: torch.Tensor,
    unl: np.ndarray,
    budget: int,
    probs_u: Optional[torch.Tensor],
    f_l: torch.Tensor,
    f_u: torch.Tensor,
) -> np.ndarray:
    """The batch ``cfg.batch`` forms from the scores of the unlabeled items ``unl``."""
    if cfg.batch == "topk":
        return _ranked(scores, unl, budget)
    if cfg.batch == "per_class":
        assert probs_u is not None
        positions = _per_class(scores, probs_u.argmax(dim=1), budget)
    else:
        positions = _kcenter(scores, f_u, f_l, budget, cfg.kcenter_candidates)
    return unl[positions.cpu().numpy()]


# ------------------------------------------------------------- one selection


@dataclass
class _Trained:
    """A selector trained on one pool, with the unlabeled items' inputs and scores."""

    scores: torch.Tensor
    unlabeled: np.ndarray
    probs_u: Optional[torch.Tensor]
    f_l: torch.Tensor
    f_u: torch.Tensor


def _fit_on_pool(
    sampler: BaseSampler,
    cfg: _FeatureSelectorConfig,
    feature_layer: Optional[str],
    model: nn.Module,
    pool: ActivePool,
    rng: np.random.Generator,
) -> _Trained:
    """Algorithm 1 up to the scores: one inference pass, co-training, ``A``'s logits."""
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
    probs = cfg.use_predictions or cfg.batch == "per_class"
    out_l = sampler._collect(
        model,
        pool,
        lab,
        features=True,
        probs=cfg.use_predictions,
        losses=cfg.use_ranking,
        labels=pool.labels(lab) if cfg.use_ranking else None,
    )
    out_u = sampler._collect(model, pool, unl, features=True, probs=probs)
    assert out_l.features is not None and out_u.features is not None
    f_l, f_u = out_l.features, out_u.features
    if cfg.standardize:
        _standardize_(f_l, f_u)
    p_u = out_u.probs if cfg.use_predictions else None
    n_classes = 0 if out_l.probs is None else out_l.probs.shape[1]
    data = _FeatureData(f_l, f_u, out_l.probs, p_u, out_l.losses)
    name = type(sampler).__name__
    selector = _FeatureSelector(cfg, f_l.shape[1], n_classes, f_l.device, rng, name)
    selector.fit(data)
    scores = selector.score(f_u, p_u)
    check_finite(scores, unl, "selector scores")  # the non-finite policy (aalearn._finite)
    return _Trained(scores, unl, out_u.probs, f_l, f_u)


def _select_by_features(
    sampler: BaseSampler,
    cfg: _FeatureSelectorConfig,
    feature_layer: Optional[str],
    model: nn.Module,
    pool: ActivePool,
    budget: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """The ``budget`` picks: the highest ``A`` logits, formed into a batch by ``cfg.batch``."""
    t = _fit_on_pool(sampler, cfg, feature_layer, model, pool, rng)
    return _pick(cfg, t.scores, t.unlabeled, budget, t.probs_u, t.f_l, t.f_u)


def _score_indices(
    scores: torch.Tensor, unlabeled: np.ndarray, indices: Optional[np.ndarray]
) -> np.ndarray:
    """``scores`` (of ``unlabeled``, ascending) for ``indices`` (default: all of them)."""
    out = scores.detach().float().cpu().numpy()
    if indices is None:
        return out
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    pos = np.searchsorted(unlabeled, idx)
    ok = (pos < unlabeled.size) & (unlabeled[np.minimum(pos, unlabeled.size - 1)] == idx)
    if unlabeled.size == 0 or not ok.all():
        bad = idx[~ok][:5].tolist() if unlabeled.size else idx[:5].tolist()
        raise ValueError(
            f"Expected argument `indices` to hold unlabeled dataset indices, but got {bad}."
        )
    return out[pos]


def _score_sampler(
    sampler: BaseSampler, train: Any, model: nn.Module, pool: ActivePool, indices: Any
) -> np.ndarray:
    """``score`` of a training sampler: validate, train as ``select`` would, read the scores.

    ``train(model, pool, rng)`` returns ``(scores, unlabeled)``; the model's train/eval
    flags are restored afterwards.
    """
    if not isinstance(pool, ActivePool):
        raise TypeError(
            f"Expected argument `pool` to be an aalearn.ActivePool, but got {type(pool).__name__}."
        )
    sampler._validate_params()
    rng = check_random_state(sampler.random_state)
    with preserve_mode(model):
        scores, unlabeled = train(model, pool, rng)
    return _score_indices(scores, unlabeled, indices)

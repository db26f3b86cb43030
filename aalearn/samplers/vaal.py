"""VAAL (Sinha, Ebrahimi and Darrell, ICCV 2019) as its reference code trains it.

A convolutional VAE on the images and a discriminator on the latent mean, trained
adversarially on the shared loop (:mod:`aalearn.samplers._training`);
:class:`VAALSampler` picks the unlabeled images the discriminator finds least like
the labeled ones. ``AdversarialSampler(representation="raw")`` is this sampler.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Union

import numpy as np
import torch
from torch import nn

from aalearn._finite import check_finite
from aalearn._validation import Constraint, Int, RandomState, Real, Widths, torch_generator
from aalearn.functional.losses import (
    vaal_discriminator_loss,
    vaal_representation_loss,
    vaal_vae_adversarial_loss,
)
from aalearn.inference import InferenceConfig
from aalearn.networks import (
    DEFAULT_LATENT_DIM,
    VAAL_BASE_CHANNELS,
    VAAL_DISCRIMINATOR_HIDDEN,
    ConvVAE,
    Discriminator,
)
from aalearn.pool import ActivePool

from ._progress import TrainingProgress
from ._training import (
    Progress,
    _adam,
    _epoch_schedule,
    _frozen,
    _IndexStream,
    _LossMeter,
    _Phase,
    _seeded,
    _Step,
    _train,
    _TrainingConfig,
)
from .trained import Fitted, SelectorSampler

__all__ = ["VAALSampler"]


def _as_images(x: Optional[torch.Tensor]) -> torch.Tensor:
    if x is None:
        raise RuntimeError("The inference pass returned no inputs.")
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4:
        raise ValueError(
            "representation='raw' needs image inputs of shape (N, C, H, W) or (N, H, W), but "
            f"the model's inputs have shape {tuple(x.shape)}; use representation='features'."
        )
    return x if x.is_floating_point() else x.float()


@dataclass(frozen=True)
class _VAALConfig:
    """VAAL's settings: its losses' weights, networks and steps, and the training."""

    beta: float
    adversary_param: float
    latent_dim: int
    hidden: tuple[int, ...]
    vae_channels: int
    vae_steps: int
    discriminator_steps: int
    training: _TrainingConfig


class _VAALSelector:
    """VAAL's convolutional VAE and discriminator, trained as ``sinhasam/vaal`` does."""

    def __init__(
        self,
        cfg: _VAALConfig,
        in_channels: int,
        image_size: tuple[int, int],
        device: torch.device,
        rng: np.random.Generator,
    ) -> None:
        self.cfg = cfg
        self.device = device

        def build() -> tuple[ConvVAE, Discriminator]:
            vae = ConvVAE(in_channels, cfg.latent_dim, image_size, cfg.vae_channels)
            return vae, Discriminator(cfg.latent_dim, cfg.hidden)

        vae, disc = _seeded(rng, build)
        self.vae = vae.to(device)
        self.discriminator = disc.to(device)
        self.generator = torch_generator(rng, device)

    def vae_objective(
        self, x_l: torch.Tensor, x_u: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """VAAL's VAE loss: the two VAE losses plus ``adversary_param`` * BCE(D(mu), labeled)."""
        beta = self.cfg.beta
        recon_l, _, mu_l, logvar_l = self.vae(x_l, generator=self.generator)
        recon_u, _, mu_u, logvar_u = self.vae(x_u, generator=self.generator)
        rep = vaal_representation_loss(recon_l, x_l, mu_l, logvar_l, beta=beta)
        rep = rep + vaal_representation_loss(recon_u, x_u, mu_u, logvar_u, beta=beta)
        with _frozen(self.discriminator):
            adv = vaal_vae_adversarial_loss(self.discriminator(mu_l), self.discriminator(mu_u))
        loss = rep + self.cfg.adversary_param * adv
        return loss, {"representation": rep, "vae_adversarial": adv}

    def discriminator_objective(
        self, x_l: torch.Tensor, x_u: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """BCE(D(mu_L), 1) + BCE(D(mu_U), 0), with ``mu`` from the VAE under ``no_grad``."""
        with torch.no_grad():
            mu_l = self.vae.encode(x_l)[0]
            mu_u = self.vae.encode(x_u)[0]
        loss = vaal_discriminator_loss(self.discriminator(mu_l), self.discriminator(mu_u))
        return loss, {"discriminator": loss}

    def fit(self, x_l: torch.Tensor, x_u: torch.Tensor) -> None:
        """Train on the shared loop: ``vae_steps`` VAE steps, each on a fresh batch pair,
        then ``discriminator_steps`` discriminator steps, the first on the last pair."""
        cfg, train = self.cfg, self.cfg.training
        n_l, n_u = x_l.shape[0], x_u.shape[0]
        lab = _IndexStream(n_l, train.batch_size, self.generator, self.device)
        unl = _IndexStream(n_u, train.batch_size, self.generator, self.device)
        schedule = _epoch_schedule(n_l + n_u, train.epochs, train.batch_size, train.min_iterations)
        detail = f"{n_l + n_u:,} images, batch {train.batch_size}"
        progress = TrainingProgress(train.progress, "VAAL", schedule, detail)
        meter = _LossMeter(progress.active)
        pair: list[torch.Tensor] = []

        def draw() -> None:
            pair[:] = [x_l[lab.next()], x_u[unl.next()]]

        def step(objective: Any, opt: torch.optim.Optimizer) -> _Step:
            def fn() -> None:
                loss, parts = objective(*pair)
                loss.backward()
                opt.step()
                meter.add(parts)

            return _Step(fn, opt)

        opt_v = _adam(self.vae.parameters(), train.lr, self.device)
        opt_d = _adam(self.discriminator.parameters(), train.lr, self.device)
        self.vae.train()
        self.discriminator.train()
        phases = [
            _Phase(step(self.vae_objective, opt_v), cfg.vae_steps),
            _Phase(step(self.discriminator_objective, opt_d), cfg.discriminator_steps),
        ]
        _train(schedule, draw, phases, meter, progress)

    @torch.no_grad()
    def score(self, x: torch.Tensor, chunk: int) -> torch.Tensor:
        """The discriminator's logits on ``mu`` (eval mode: batch norm's running statistics)."""
        self.vae.eval()
        self.discriminator.eval()
        out = [
            self.discriminator(self.vae.encode(x[s : s + chunk])[0])
            for s in range(0, x.shape[0], chunk)
        ]
        return torch.cat(out) if out else torch.empty(0, device=x.device)


class VAALSampler(SelectorSampler):
    r"""VAAL: a convolutional VAE on the images and a discriminator on its latent mean.

    As ``sinhasam/vaal`` trains it:

    * :class:`~aalearn.networks.ConvVAE` on the model's inputs (``(N, C, H, W)`` or
      ``(N, H, W)``, obtained from the single inference pass) and a
      :class:`~aalearn.networks.Discriminator` on the latent mean ``mu``;
    * VAE loss: for the labeled and the unlabeled batch, ``MSE + beta * KL`` (KL
      summed over the batch), plus ``adversary_param * [BCE(D(mu_L), 1) + BCE(D(mu_U), 1)]``;
      discriminator loss ``BCE(D(mu_L), 1) + BCE(D(mu_U), 0)``: **labeled is 1**;
    * per iteration ``vae_steps=2`` VAE steps (each on a fresh batch pair) and
      ``discriminator_steps=1`` discriminator step (on the last pair, with ``mu``
      recomputed under ``no_grad``); Adam, ``lr=5e-4`` for both; batch 128;
      ``(n_labeled + n_unlabeled) * epochs // selector_batch_size`` iterations;
    * selection: the unlabeled items with the **lowest** ``D(mu)``; :meth:`score` is
      minus the discriminator's logit (higher = pick first).

    Differences from the reference, all deliberate: the task model is not trained
    inside the loop (the user trains it); batches are reshuffled with
    ``drop_last`` for both parts (the reference keeps the unlabeled remainder);
    the discriminator outputs a logit and the losses take logits (same values,
    stable); at selection the networks are in eval mode (the reference scores in
    train mode, so its batch-norm statistics depend on the batch); inputs are used
    as the dataset gives them (the reference normalises CIFAR to ``[-1, 1]``).

    Non-finite scores of the discriminator raise ``ValueError`` naming the items.

    Parameters
    ----------
    beta : float
        Weight of the KL term (VAAL's ``beta``, 1).
    adversary_param : float
        Weight of the VAE's adversarial term (VAAL's ``adversary_param``, 1).
    lr : float
        Adam's learning rate for both networks (5e-4).
    selector_batch_size : int
        Batch size of each of the labeled and unlabeled batches (128).
    epochs : int or float
        Training epochs in VAAL's sense (100, the value the AALU paper uses for
        VAAL); a fraction runs part of an epoch.
    min_iterations : int
        The least number of training iterations (0: VAAL's schedule).
    latent_dim : int
        Size of the latent code (32).
    hidden : sequence of int or None
        The discriminator's widths (``None``: ``(512, 512)``, VAAL's).
    vae_steps, discriminator_steps : int
        Steps of each network per iteration (2 and 1, VAAL's).
    vae_channels : int
        Width of the ConvVAE's first convolution (128, VAAL's; the others are 2x, 4x
        and 8x). Smaller values make a cheaper network of the same shape.
    progress : bool, callable or None
        As :class:`~aalearn.samplers.aalu.AALUSampler`.
    inference : aalearn.InferenceConfig, mapping or None
        The inference pass; its ``batch_size`` is also the chunk size when the ConvVAE
        scores the unlabeled images.
    random_state : int, numpy.random.Generator or None
        Seeds the networks and their batches.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> from aalearn import ActivePool
    >>> from aalearn.samplers.vaal import VAALSampler
    >>> pool = ActivePool(TensorDataset(torch.rand(120, 1, 8, 8), torch.arange(120) % 2))
    >>> pool.label(pool.random_unlabeled(30, random_state=0))
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    >>> vaal = VAALSampler(epochs=1, vae_channels=4, inference={"device": "cpu"},
    ...                    random_state=0)
    >>> vaal.select(model, pool, 5).shape
    (5,)
    >>> vaal.score(model, pool).shape  # higher = less like the labeled items
    (90,)
    """

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "beta": Real(0),
        "adversary_param": Real(0),
        "latent_dim": Int(1),
        "hidden": Widths(none=True),
        "vae_steps": Int(1),
        "discriminator_steps": Int(1),
        "vae_channels": Int(1),
    }
    _test_params = ({"epochs": 0.2, "vae_channels": 4},)

    def __init__(
        self,
        *,
        beta: float = 1.0,
        adversary_param: float = 1.0,
        lr: float = 5e-4,
        selector_batch_size: int = 128,
        epochs: Union[int, float] = 100,
        min_iterations: int = 0,
        latent_dim: int = DEFAULT_LATENT_DIM,
        hidden: Optional[Sequence[int]] = None,
        vae_steps: int = 2,
        discriminator_steps: int = 1,
        vae_channels: int = VAAL_BASE_CHANNELS,
        progress: Progress = None,
        inference: Union[InferenceConfig, Mapping[str, Any], None] = None,
        random_state: RandomState = None,
    ) -> None:
        super().__init__(inference=inference, random_state=random_state)
        self.beta = beta
        self.adversary_param = adversary_param
        self.lr = lr
        self.selector_batch_size = selector_batch_size
        self.epochs = epochs
        self.min_iterations = min_iterations
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.vae_steps = vae_steps
        self.discriminator_steps = discriminator_steps
        self.vae_channels = vae_channels
        self.progress = progress

    def _vaal_config(self, params: Optional[dict[str, Any]] = None) -> _VAALConfig:
        p = self._validate_params() if params is None else params
        return _VAALConfig(
            beta=p["beta"],
            adversary_param=p["adversary_param"],
            latent_dim=p["latent_dim"],
            hidden=VAAL_DISCRIMINATOR_HIDDEN if p["hidden"] is None else p["hidden"],
            vae_channels=p["vae_channels"],
            vae_steps=p["vae_steps"],
            discriminator_steps=p["discriminator_steps"],
            training=self._training(p),
        )

    def _fit(
        self, model: nn.Module, pool: ActivePool, params: dict[str, Any], rng: np.random.Generator
    ) -> Fitted:
        """Train on the images, score the unlabeled ones (minus ``D(mu)``'s logit)."""
        lab, unl = pool.labeled_indices, pool.unlabeled_indices
        self._need_labeled(pool, 1, "adversarial training")
        x_l = _as_images(self._collect(model, pool, lab, inputs=True, probs=False).inputs)
        x_u = _as_images(self._collect(model, pool, unl, inputs=True, probs=False).inputs)
        size = (int(x_l.shape[2]), int(x_l.shape[3]))
        selector = _VAALSelector(
            self._vaal_config(params), int(x_l.shape[1]), size, x_l.device, rng
        )
        selector.fit(x_l, x_u)
        # Lowest D(mu) first: VAAL's "most likely unlabeled".
        scores = -selector.score(x_u, self.inference_.batch_size)
        check_finite(scores, unl, "selector scores")  # the non-finite policy (aalearn._finite)
        return Fitted(scores, unl)

"""Adversarial samplers: VAAL on raw inputs, and its feature-space form (AALU's advVAE).

* ``representation="raw"``: VAAL (Sinha, Ebrahimi and Darrell, ICCV 2019) as its
  reference code ``sinhasam/vaal`` trains it: a convolutional VAE on the images and
  a discriminator on the latent mean.
* ``representation="features"``: the same game on the task model's feature vectors
  with AALU's MLPs, the ``advVAE`` row of AALU's Table 1, trained by the machinery of
  :class:`~aalearn.samplers.aalu.AALUSampler` with VAAL's step schedule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from aalearn._validation import RandomState, check_int, check_number, torch_generator
from aalearn.functional.losses import (
    vaal_discriminator_loss,
    vaal_representation_loss,
    vaal_vae_adversarial_loss,
)
from aalearn.inference import InferenceConfig
from aalearn.networks import (
    DEFAULT_HIDDEN,
    DEFAULT_LATENT_DIM,
    VAAL_BASE_CHANNELS,
    VAAL_DISCRIMINATOR_HIDDEN,
    ConvVAE,
    Discriminator,
)
from aalearn.pool import ActivePool

from ._selector import (
    ProgressFn,
    _adam,
    _check_bool,
    _check_hidden,
    _check_progress,
    _epoch_schedule,
    _FeatureSelectorConfig,
    _frozen,
    _IndexStream,
    _LossMeter,
    _seeded,
    _select_by_features,
    _top,
)
from .base import BaseSampler

__all__ = ["AdversarialSampler"]

_REPRESENTATIONS = ("features", "raw")


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


class _VAALSelector:
    """VAAL's convolutional VAE and discriminator, trained as ``sinhasam/vaal`` does."""

    def __init__(
        self,
        sampler: AdversarialSampler,
        in_channels: int,
        image_size: tuple[int, int],
        device: torch.device,
        rng: np.random.Generator,
    ) -> None:
        self.beta = float(sampler.beta)
        self.adversary_param = float(sampler.adversary_param)
        self.lr = float(sampler.lr)
        self.batch_size = int(sampler.selector_batch_size)
        self.epochs = float(sampler.epochs)
        self.vae_steps = int(sampler.vae_steps)
        self.discriminator_steps = int(sampler.discriminator_steps)
        self.progress = sampler.progress
        self.device = device
        hidden = VAAL_DISCRIMINATOR_HIDDEN if sampler.hidden is None else tuple(sampler.hidden)

        def build() -> tuple[ConvVAE, Discriminator]:
            vae = ConvVAE(in_channels, sampler.latent_dim, image_size, sampler.vae_channels)
            return vae, Discriminator(sampler.latent_dim, hidden)

        vae, disc = _seeded(rng, build)
        self.vae = vae.to(device)
        self.discriminator = disc.to(device)
        self.generator = torch_generator(rng, device)

    def vae_objective(
        self, x_l: torch.Tensor, x_u: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """VAAL's VAE loss: the two VAE losses plus ``adversary_param`` * BCE(D(mu), labeled)."""
        recon_l, _, mu_l, logvar_l = self.vae(x_l, generator=self.generator)
        recon_u, _, mu_u, logvar_u = self.vae(x_u, generator=self.generator)
        rep = vaal_representation_loss(recon_l, x_l, mu_l, logvar_l, beta=self.beta)
        rep = rep + vaal_representation_loss(recon_u, x_u, mu_u, logvar_u, beta=self.beta)
        with _frozen(self.discriminator):
            adv = vaal_vae_adversarial_loss(self.discriminator(mu_l), self.discriminator(mu_u))
        return rep + self.adversary_param * adv, {"representation": rep, "vae_adversarial": adv}

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
        n_l, n_u = x_l.shape[0], x_u.shape[0]
        lab = _IndexStream(n_l, self.batch_size, self.generator, self.device)
        unl = _IndexStream(n_u, self.batch_size, self.generator, self.device)
        opt_v = _adam(self.vae.parameters(), self.lr, self.device)
        opt_d = _adam(self.discriminator.parameters(), self.lr, self.device)
        meter = _LossMeter(self.progress is not None)
        self.vae.train()
        self.discriminator.train()
        for epoch, n_iter in enumerate(_epoch_schedule(n_l + n_u, self.epochs, self.batch_size), 1):
            for _ in range(n_iter):
                # As the reference: a fresh batch pair for every VAE step; the first
                # discriminator step reuses the last VAE step's pair.
                for _step in range(self.vae_steps):
                    xb_l, xb_u = x_l[lab.next()], x_u[unl.next()]
                    loss, parts = self.vae_objective(xb_l, xb_u)
                    opt_v.zero_grad(set_to_none=True)
                    loss.backward()
                    opt_v.step()
                    meter.add(parts)
                for step in range(self.discriminator_steps):
                    if step:
                        xb_l, xb_u = x_l[lab.next()], x_u[unl.next()]
                    loss, parts = self.discriminator_objective(xb_l, xb_u)
                    opt_d.zero_grad(set_to_none=True)
                    loss.backward()
                    opt_d.step()
                    meter.add(parts)
            if self.progress is not None and n_iter:
                self.progress(epoch, meter.pop())

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


class AdversarialSampler(BaseSampler):
    r"""Adversarial selection: VAAL on raw images, or its feature-space form (advVAE).

    A VAE embeds labeled and unlabeled items; an adversary learns to tell them apart
    from the embedding while the VAE learns to fool it. The unlabeled items the
    adversary finds least like labeled ones are selected, best first.

    ``representation="raw"`` is **VAAL** as ``sinhasam/vaal`` trains it:

    * :class:`~aalearn.networks.ConvVAE` on the model's inputs (``(N, C, H, W)``,
      obtained from the single inference pass) and a
      :class:`~aalearn.networks.Discriminator` on the latent mean ``mu``;
    * VAE loss: for the labeled and the unlabeled batch, ``MSE + beta * KL`` (KL
      summed over the batch), plus ``adversary_param * [BCE(D(mu_L), 1) + BCE(D(mu_U), 1)]``;
      discriminator loss ``BCE(D(mu_L), 1) + BCE(D(mu_U), 0)``: **labeled is 1**;
    * per iteration ``vae_steps=2`` VAE steps (each on a fresh batch pair) and
      ``discriminator_steps=1`` discriminator step (on the last pair, with ``mu``
      recomputed under ``no_grad``); Adam, ``lr=5e-4`` for both; batch 128;
      ``(n_labeled + n_unlabeled) * epochs // selector_batch_size`` iterations;
    * selection: the unlabeled items with the **lowest** ``D(mu)``.

    Differences from the reference, all deliberate: the task model is not trained
    inside the loop (the user trains it); batches are reshuffled with
    ``drop_last`` for both parts (the reference keeps the unlabeled remainder);
    the discriminator outputs a logit and the losses take logits (same values,
    stable); at selection the networks are in eval mode (the reference scores in
    train mode, so its batch-norm statistics depend on the batch); inputs are used
    as the dataset gives them (the reference normalises CIFAR to ``[-1, 1]``).

    ``representation="features"`` plays the same game on the task model's
    (standardised) feature vectors with AALU's MLPs: the ``advVAE`` row of AALU's
    Table 1 (``A`` on ``z``, AALU's convention labeled = 0 and highest score
    picked, which is VAAL's up to the sign of the logit), trained by the shared
    AALU machinery with VAAL's schedule (``vae_steps`` / ``discriminator_steps``)
    and weights (``beta`` on the KL term, ``adversary_param`` on the adversarial
    term). It is far cheaper than ``"raw"``: MLPs over ``D``-dimensional vectors.

    Non-finite features of the task model and non-finite scores of the
    discriminator raise ``ValueError`` naming the items (see ``docs/reliability.md``).

    Parameters
    ----------
    representation : {"features", "raw"}
        What the VAE embeds.
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
    latent_dim : int
        Size of the latent code (32).
    hidden : sequence of int or None
        ``"raw"``: the discriminator's widths (default ``(512, 512)``, VAAL's).
        ``"features"``: the widths of the VAE's encoder and of ``A`` (default
        ``(512, 256)``, as :class:`~aalearn.samplers.aalu.AALUSampler`).
    vae_steps, discriminator_steps : int
        Steps of each network per iteration (2 and 1, VAAL's).
    vae_channels : int
        ``"raw"`` only: width of the ConvVAE's first convolution (128, VAAL's; the
        others are 2x, 4x and 8x). Smaller values make a cheaper network of the same shape.
    standardize : bool
        ``"features"`` only: standardise the features first.
    progress : callable or None
        ``progress(epoch, losses)`` after each epoch; ``None`` is silent.
    inference : aalearn.InferenceConfig, mapping or None
        The inference pass (see :class:`~aalearn.InferenceConfig`); its ``feature_layer``
        (``"features"`` only) names the module whose input is the feature vector, and its
        ``batch_size`` is also the chunk size when the ConvVAE scores the unlabeled images.
    random_state : int, numpy.random.Generator or None
        Seeds the selector networks and their batches.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> from aalearn import ActivePool
    >>> from aalearn.samplers.adversarial import AdversarialSampler
    >>> data = TensorDataset(torch.rand(120, 1, 8, 8), torch.arange(120) % 2)
    >>> pool = ActivePool(data)
    >>> pool.label(pool.random_unlabeled(30, random_state=0))
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    >>> vaal = AdversarialSampler(representation="raw", epochs=1, vae_channels=4,
    ...                           inference={"device": "cpu"}, random_state=0)
    >>> vaal.select(model, pool, 5).shape
    (5,)
    """

    def __init__(
        self,
        *,
        representation: str = "features",
        beta: float = 1.0,
        adversary_param: float = 1.0,
        lr: float = 5e-4,
        selector_batch_size: int = 128,
        epochs: Union[int, float] = 100,
        latent_dim: int = DEFAULT_LATENT_DIM,
        hidden: Optional[Sequence[int]] = None,
        vae_steps: int = 2,
        discriminator_steps: int = 1,
        vae_channels: int = VAAL_BASE_CHANNELS,
        standardize: bool = True,
        progress: Optional[ProgressFn] = None,
        inference: Union[InferenceConfig, Mapping[str, Any], None] = None,
        random_state: RandomState = None,
    ) -> None:
        super().__init__(inference=inference, random_state=random_state)
        self.representation = representation
        self.beta = beta
        self.adversary_param = adversary_param
        self.lr = lr
        self.selector_batch_size = selector_batch_size
        self.epochs = epochs
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.vae_steps = vae_steps
        self.discriminator_steps = discriminator_steps
        self.vae_channels = vae_channels
        self.standardize = standardize
        self.progress = progress

    def _validate_params(self) -> None:
        super()._validate_params()
        if not isinstance(self.representation, str):
            raise TypeError(
                f"Expected argument `representation` to be a str, but got "
                f"{type(self.representation).__name__}."
            )
        if self.representation not in _REPRESENTATIONS:
            raise ValueError(
                f"Expected argument `representation` to be one of {list(_REPRESENTATIONS)}, "
                f"but got {self.representation!r}."
            )
        check_number(self.beta, "beta", minimum=0)
        check_number(self.adversary_param, "adversary_param", minimum=0)
        check_number(self.lr, "lr", minimum=0, exclusive_minimum=True)
        check_int(self.selector_batch_size, "selector_batch_size", minimum=1)
        check_number(self.epochs, "epochs", minimum=0, exclusive_minimum=True)
        check_int(self.latent_dim, "latent_dim", minimum=1)
        if self.hidden is not None:
            _check_hidden(self.hidden)
        check_int(self.vae_steps, "vae_steps", minimum=1)
        check_int(self.discriminator_steps, "discriminator_steps", minimum=1)
        check_int(self.vae_channels, "vae_channels", minimum=1)
        _check_bool(self.standardize, "standardize")
        _check_progress(self.progress)

    def _feature_config(self) -> _FeatureSelectorConfig:
        return _FeatureSelectorConfig(
            use_adversarial=True,
            use_predictions=False,
            use_ranking=False,
            adversarial_weight=float(self.adversary_param),
            kl_weight=float(self.beta),
            xi=0.0,
            ranking_weight=0.0,
            lr=float(self.lr),
            batch_size=int(self.selector_batch_size),
            epochs=float(self.epochs),
            latent_dim=int(self.latent_dim),
            hidden=DEFAULT_HIDDEN if self.hidden is None else _check_hidden(self.hidden),
            standardize=self.standardize,
            vae_steps=int(self.vae_steps),
            assistant_steps=int(self.discriminator_steps),
            progress=self.progress,
        )

    def _select(
        self, model: Any, pool: ActivePool, budget: int, rng: np.random.Generator
    ) -> np.ndarray:
        if self.representation == "features":
            return _select_by_features(
                self,
                self._feature_config(),
                self.inference_.feature_layer,
                model,
                pool,
                budget,
                rng,
            )
        return self._select_raw(model, pool, budget, rng)

    def _select_raw(
        self, model: nn.Module, pool: ActivePool, budget: int, rng: np.random.Generator
    ) -> np.ndarray:
        lab, unl = pool.labeled_indices, pool.unlabeled_indices
        if lab.size < 1:
            raise ValueError(
                "AdversarialSampler needs at least 1 labeled item (adversarial training), but "
                "the pool has 0."
            )
        x_l = _as_images(self._collect(model, pool, lab, inputs=True, probs=False).inputs)
        x_u = _as_images(self._collect(model, pool, unl, inputs=True, probs=False).inputs)
        size = (int(x_l.shape[2]), int(x_l.shape[3]))
        selector = _VAALSelector(self, int(x_l.shape[1]), size, x_l.device, rng)
        selector.fit(x_l, x_u)
        # Lowest D(mu) first: VAAL's "most likely unlabeled".
        return _top(-selector.score(x_u, self.inference_.batch_size), unl, budget)

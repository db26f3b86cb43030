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
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from aalearn._finite import check_finite
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

from ._progress import TrainingProgress
from ._selector import (
    _FeatureSelectorConfig,
    _fit_on_pool,
    _score_sampler,
    _select_by_features,
)
from ._training import (
    Progress,
    _adam,
    _check_bool,
    _check_hidden,
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
        ``(256, 128)``, as :class:`~aalearn.samplers.aalu.AALUSampler`).
    vae_steps, discriminator_steps : int
        Steps of each network per iteration (2 and 1, VAAL's).
    vae_channels : int
        ``"raw"`` only: width of the ConvVAE's first convolution (128, VAAL's; the
        others are 2x, 4x and 8x). Smaller values make a cheaper network of the same shape.
    standardize : bool
        ``"features"`` only: standardise the features first.
    progress : bool, callable or None
        As :class:`~aalearn.samplers.aalu.AALUSampler`: ``None`` (default) a
        progress bar when stderr is a terminal, ``True`` always, ``False`` silent,
        a callable ``progress(epoch, losses)`` after each epoch.
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
    >>> vaal.score(model, pool).shape  # higher = less like the labeled items
    (90,)
    """

    _test_params = (
        {"representation": "features", "epochs": 2},
        {"representation": "raw", "epochs": 0.2, "vae_channels": 4},
    )

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
        progress: Progress = None,
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
        _check_bool(self.standardize, "standardize")
        if self.representation == "features":
            self._feature_config()
        else:
            self._vaal_config()

    def _training(self) -> _TrainingConfig:
        return _TrainingConfig.of(self)

    def _steps(self) -> tuple[int, int]:
        return (
            check_int(self.vae_steps, "vae_steps", minimum=1),
            check_int(self.discriminator_steps, "discriminator_steps", minimum=1),
        )

    def _vaal_config(self) -> _VAALConfig:
        vae_steps, disc_steps = self._steps()
        hidden = VAAL_DISCRIMINATOR_HIDDEN if self.hidden is None else _check_hidden(self.hidden)
        return _VAALConfig(
            beta=check_number(self.beta, "beta", minimum=0),
            adversary_param=check_number(self.adversary_param, "adversary_param", minimum=0),
            latent_dim=check_int(self.latent_dim, "latent_dim", minimum=1),
            hidden=hidden,
            vae_channels=check_int(self.vae_channels, "vae_channels", minimum=1),
            vae_steps=vae_steps,
            discriminator_steps=disc_steps,
            training=self._training(),
        )

    def _feature_config(self) -> _FeatureSelectorConfig:
        vae_steps, disc_steps = self._steps()
        check_int(self.vae_channels, "vae_channels", minimum=1)
        return _FeatureSelectorConfig(
            use_adversarial=True,
            use_predictions=False,
            use_ranking=False,
            adversarial_weight=check_number(self.adversary_param, "adversary_param", minimum=0),
            kl_weight=check_number(self.beta, "beta", minimum=0),
            xi=0.0,
            ranking_weight=0.0,
            latent_dim=check_int(self.latent_dim, "latent_dim", minimum=1),
            hidden=DEFAULT_HIDDEN if self.hidden is None else _check_hidden(self.hidden),
            standardize=self.standardize,
            training=self._training(),
            vae_steps=vae_steps,
            assistant_steps=disc_steps,
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
        scores, unl = self._raw_scores(model, pool, rng)
        return _ranked(scores, unl, budget)

    def score(
        self, model: Any, pool: ActivePool, indices: Optional[np.ndarray] = None
    ) -> np.ndarray:
        """Scores of ``indices`` (default: the unlabeled items, ascending), higher = pick first.

        Trains as :meth:`select` does (same ``random_state``, same networks): for
        ``"features"`` the adversary's logit, for ``"raw"`` minus the discriminator's
        logit (VAAL picks the lowest ``D(mu)``). ``select`` is
        :func:`~aalearn.functional.topk_indices` of these scores. ``indices`` must be
        unlabeled.
        """

        def train(model: Any, pool: ActivePool, rng: np.random.Generator) -> Any:
            if self.representation == "features":
                cfg = self._feature_config()
                t = _fit_on_pool(self, cfg, self.inference_.feature_layer, model, pool, rng)
                return t.scores, t.unlabeled
            return self._raw_scores(model, pool, rng)

        return _score_sampler(self, train, model, pool, indices)

    def _raw_scores(
        self, model: nn.Module, pool: ActivePool, rng: np.random.Generator
    ) -> tuple[torch.Tensor, np.ndarray]:
        """VAAL: train on the images, score the unlabeled ones (minus ``D(mu)``'s logit)."""
        lab, unl = pool.labeled_indices, pool.unlabeled_indices
        if lab.size < 1:
            raise ValueError(
                "AdversarialSampler needs at least 1 labeled item (adversarial training), but "
                "the pool has 0."
            )
        x_l = _as_images(self._collect(model, pool, lab, inputs=True, probs=False).inputs)
        x_u = _as_images(self._collect(model, pool, unl, inputs=True, probs=False).inputs)
        size = (int(x_l.shape[2]), int(x_l.shape[3]))
        selector = _VAALSelector(self._vaal_config(), int(x_l.shape[1]), size, x_l.device, rng)
        selector.fit(x_l, x_u)
        # Lowest D(mu) first: VAAL's "most likely unlabeled".
        scores = -selector.score(x_u, self.inference_.batch_size)
        check_finite(scores, unl, "selector scores")  # the non-finite policy (aalearn._finite)
        return scores, unl

"""Adversarial selection by representation: VAAL on raw images, or advVAE on features.

:class:`AdversarialSampler` names the two forms of one idea under one class:
``representation="raw"`` is :class:`~aalearn.samplers.vaal.VAALSampler` and
``representation="features"`` is ``AALUSampler(variant="advVAE")``, the ``advVAE``
row of AALU's Table 1, with AALU's defaults (its iteration floor and batch rule
included). :meth:`AdversarialSampler.resolve` returns the sampler that does the work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Optional, Union

import numpy as np

from aalearn._validation import (
    Bool,
    Constraint,
    FlagOrCallable,
    Int,
    Options,
    RandomState,
    Real,
    Widths,
)
from aalearn.inference import InferenceConfig
from aalearn.networks import DEFAULT_LATENT_DIM, VAAL_BASE_CHANNELS
from aalearn.pool import ActivePool

from ._batch import BATCH_RULES
from ._training import Progress
from .aalu import AALUSampler
from .base import BaseSampler
from .vaal import VAALSampler

__all__ = ["AdversarialSampler"]

#: The parameters that only one representation reads (a value for the other is an error).
_ONLY = {"raw": ("vae_channels",), "features": ("batch",)}


class AdversarialSampler(BaseSampler):
    r"""Adversarial selection: VAAL on raw images, or its feature-space form (advVAE).

    A VAE embeds labeled and unlabeled items; an adversary learns to tell them apart
    from the embedding while the VAE learns to fool it. The unlabeled items the
    adversary finds least like labeled ones are selected, best first.

    * ``representation="raw"`` is **VAAL** as ``sinhasam/vaal`` trains it:
      :class:`~aalearn.samplers.vaal.VAALSampler` (see it for the networks, losses,
      schedule and the differences from the reference).
    * ``representation="features"`` plays the same game on the task model's
      (standardised) feature vectors with AALU's MLPs: the ``advVAE`` row of AALU's
      Table 1, which is ``AALUSampler(variant="advVAE")``, with **AALU's defaults**
      (the 1,000-iteration floor, the k-center batch, widths ``(64, 32)``, one VAE
      and one adversary step per iteration). It is far cheaper than ``"raw"``: MLPs
      over ``D``-dimensional vectors.

    The parameters are those of the two forms under VAAL's names: ``beta`` weighs the
    KL term and ``adversary_param`` the VAE's adversarial term (AALU's ``kl_weight``
    and ``beta``). A parameter left at ``None`` takes the form's own default; a
    parameter only one form reads (``vae_channels``: raw; ``batch``: features) is an
    error with the other when it is set (``standardize`` is ignored by ``"raw"``).
    :meth:`resolve` returns the configured sampler that runs.

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
        Training epochs in VAAL's sense (100); a fraction runs part of an epoch.
    min_iterations : int or None
        The least number of iterations (``None``: 1000 for ``"features"``, AALU's
        floor; 0 for ``"raw"``, VAAL's schedule).
    batch : {"kcenter", "per_class", "topk"} or None
        ``"features"`` only: how the batch is formed (``None``: AALU's ``"kcenter"``).
    latent_dim : int
        Size of the latent code (32).
    hidden : sequence of int or None
        ``"raw"``: the discriminator's widths (``None``: ``(512, 512)``, VAAL's).
        ``"features"``: the widths of the VAE's encoder and of the adversary
        (``None``: ``(64, 32)``, AALU's).
    vae_steps, discriminator_steps : int or None
        Steps of each network per iteration (``None``: 2 and 1 for ``"raw"``, VAAL's;
        1 and 1 for ``"features"``, AALU's).
    vae_channels : int
        ``"raw"`` only: width of the ConvVAE's first convolution (128, VAAL's).
    standardize : bool
        ``"features"`` only: standardise the features first.
    progress : bool, callable or None
        As :class:`~aalearn.samplers.aalu.AALUSampler`.
    inference : aalearn.InferenceConfig, mapping or None
        The inference pass (see :class:`~aalearn.InferenceConfig`).
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
    >>> vaal.resolve()
    VAALSampler(epochs=1, vae_channels=4, inference={'device': 'cpu'}, random_state=0)
    >>> vaal.select(model, pool, 5).shape
    (5,)
    >>> vaal.score(model, pool).shape  # higher = less like the labeled items
    (90,)
    >>> AdversarialSampler(representation="features").resolve()
    AALUSampler(variant='advVAE')
    """

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "representation": Options(("features", "raw")),
        "beta": Real(0),
        "adversary_param": Real(0),
        "lr": Real(0, low_open=True),
        "selector_batch_size": Int(1),
        "epochs": Real(0, low_open=True),
        "min_iterations": Int(0, none=True),
        "batch": Options(BATCH_RULES, none=True),
        "latent_dim": Int(1),
        "hidden": Widths(none=True),
        "vae_steps": Int(1, none=True),
        "discriminator_steps": Int(1, none=True),
        "vae_channels": Int(1),
        "standardize": Bool(),
        "progress": FlagOrCallable(),
    }
    _test_params = (
        {"representation": "features", "epochs": 2, "min_iterations": 0},
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
        min_iterations: Optional[int] = None,
        batch: Optional[str] = None,
        latent_dim: int = DEFAULT_LATENT_DIM,
        hidden: Optional[Sequence[int]] = None,
        vae_steps: Optional[int] = None,
        discriminator_steps: Optional[int] = None,
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
        self.min_iterations = min_iterations
        self.batch = batch
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.vae_steps = vae_steps
        self.discriminator_steps = discriminator_steps
        self.vae_channels = vae_channels
        self.standardize = standardize
        self.progress = progress

    def _check_params(self, params: dict[str, Any]) -> None:
        rep = params["representation"]
        other = "features" if rep == "raw" else "raw"
        defaults = self._defaults()
        for name in _ONLY[other]:
            if getattr(self, name) != defaults[name]:
                raise ValueError(
                    f"Expected argument `{name}` to be left at its default with "
                    f"representation={rep!r} (it applies to representation={other!r} only), "
                    f"but got {getattr(self, name)!r}."
                )

    def resolve(self) -> BaseSampler:
        """The sampler that runs: a :class:`~aalearn.samplers.vaal.VAALSampler` for
        ``"raw"``, ``AALUSampler(variant="advVAE")`` for ``"features"``, configured
        with this sampler's parameters (those left at ``None`` take its defaults)."""
        p = self._validate_params()
        # The values as given (not normalised), so that the repr reads as they were set.
        given = {k: getattr(self, k) for k in p if getattr(self, k) is not None}
        pick = lambda *names: {k: given[k] for k in names if k in given}  # noqa: E731
        common = {
            **pick("lr", "selector_batch_size", "epochs", "min_iterations", "latent_dim", "hidden"),
            "progress": self.progress,
            "inference": self.inference,
            "random_state": self.random_state,
        }
        if p["representation"] == "raw":
            return VAALSampler(
                beta=self.beta,
                adversary_param=self.adversary_param,
                vae_channels=self.vae_channels,
                **pick("vae_steps", "discriminator_steps"),
                **common,
            )
        if "discriminator_steps" in given:
            common["assistant_steps"] = given["discriminator_steps"]
        return AALUSampler(
            variant="advVAE",
            beta=self.adversary_param,
            kl_weight=self.beta,
            standardize=self.standardize,
            **pick("vae_steps", "batch"),
            **common,
        )

    def _select(
        self, model: Any, pool: ActivePool, budget: int, rng: np.random.Generator
    ) -> np.ndarray:
        return self.resolve().select(model, pool, budget)

    def _score(
        self, model: Any, pool: ActivePool, indices: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        return self.resolve().score(model, pool, indices)

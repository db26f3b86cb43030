"""AALU: adversarial active learning with model uncertainty (Zhu and Wang, ICIP 2020).

Algorithm 1 of the paper, after the user has trained the task model: one inference
pass gives the feature vectors ``f`` (and the predictions ``p``, and the task losses
``l`` of the labeled items); a VAE over ``f`` and the active assistant ``A`` are
co-trained adversarially; the unlabeled items ``A`` scores highest are selected.

The feature selector (the VAE and assistant, trained on the resident features)
lives in :mod:`aalearn.samplers._selector`, its fitting in
:class:`aalearn.samplers.trained.FeatureSelectorSampler` (this class's base); the
training loop in :mod:`aalearn.samplers._training`, shared with VAAL too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Optional, Union

from aalearn._validation import (
    Bool,
    Constraint,
    Int,
    Options,
    RandomState,
    Real,
    Rule,
    Widths,
    check_options,
)
from aalearn.functional.losses import RANKING_TIES
from aalearn.inference import InferenceConfig
from aalearn.networks import DEFAULT_HIDDEN, DEFAULT_LATENT_DIM

from ._batch import BATCH_RULES
from ._selector import _FeatureSelectorConfig
from ._training import Progress
from .trained import FeatureSelectorSampler

__all__ = ["AALU_VARIANTS", "AALUSampler"]

#: The rows of the paper's Table 1, by name, as the three switches of :class:`AALUSampler`.
AALU_VARIANTS: dict[str, dict[str, bool]] = {
    "advVAE": {"use_adversarial": True, "use_predictions": False, "use_ranking": False},
    "advVAE+prediction": {"use_adversarial": True, "use_predictions": True, "use_ranking": False},
    "lossLearn": {"use_adversarial": False, "use_predictions": False, "use_ranking": True},
    "advVAE+lossLearn": {"use_adversarial": True, "use_predictions": False, "use_ranking": True},
    "aalu": {"use_adversarial": True, "use_predictions": True, "use_ranking": True},
}
_VARIANT_BY_KEY = {name.lower(): name for name in AALU_VARIANTS}
_SWITCHES = ("use_adversarial", "use_predictions", "use_ranking")


def _check_variant(value: Any, name: str) -> str:
    """The canonical name of the variant ``value`` (matched case-insensitively)."""
    if isinstance(value, str) and value.lower() in _VARIANT_BY_KEY:
        return _VARIANT_BY_KEY[value.lower()]
    return check_options(value, name, tuple(AALU_VARIANTS))  # raises: not a variant


#: The floor on selector iterations of the default schedule (see ``min_iterations``).
DEFAULT_MIN_ITERATIONS = 1000
#: How the default batch is formed from the assistant's scores (see ``batch``).
DEFAULT_BATCH = "kcenter"
#: The ranking loss's sign for tied task losses by default (see ``ties``).
DEFAULT_TIES = "zero"
#: ``batch="kcenter"``: k-center greedy runs over this many times ``budget`` best items.
KCENTER_CANDIDATES = 4.0
#: The settings the paper specifies, on top of the defaults: :meth:`AALUSampler.paper`.
PAPER_SETTINGS: dict[str, Any] = {
    "beta": 1.0,
    "xi": 0.1,
    "ranking_weight": 10.0,
    "lr": 5e-4,
    "selector_batch_size": 128,
    "epochs": 100,
    "min_iterations": 0,
    "batch": "topk",
    "ties": "zero",
}

# ------------------------------------------------------------------- the sampler


class AALUSampler(FeatureSelectorSampler):
    r"""AALU (Zhu and Wang, ICIP 2020): a feature VAE and an active assistant, co-trained.

    After the task model is trained, one inference pass gives each item's feature
    vector ``f`` (the input of ``feature_layer``), prediction ``p`` and, for labeled
    items, task loss ``l``. A :class:`~aalearn.networks.FeatureVAE` over ``f`` and an
    :class:`~aalearn.networks.Assistant` ``A`` over ``m = [z, p]`` are trained for
    ``epochs`` epochs, alternating one VAE step (Eq. 6) and one ``A`` step (Eq. 9);
    the ``budget`` unlabeled items with the highest ``A(m_U)`` are returned, best first.

    **Direction.** ``A`` learns labeled = 0, unlabeled = 1 (Eq. 7), and the ranking
    loss (Eq. 8) orders its scores like the task losses. A high score means "unlike
    anything labeled" and "hard for the task model": the items to pick. At selection
    ``z`` is the posterior mean ``mu`` (no sampling), so the scores are deterministic;
    items are ranked by ``A``'s logit, the same order as its sigmoid without the ties
    of a saturated sigmoid.

    **Variants.** ``variant`` names a row of the paper's Table 1; the three switches
    override its settings one by one (``None`` keeps the variant's):

    =======================  ===============  ===============  ===========  ==========
    ``variant``              use_adversarial  use_predictions  use_ranking  ``A`` reads
    =======================  ===============  ===============  ===========  ==========
    ``"advVAE"``             True             False            False        ``z``
    ``"advVAE+prediction"``  True             True             False        ``[z, p]``
    ``"lossLearn"``          False            False            True         ``f``
    ``"advVAE+lossLearn"``   True             False            True         ``z``
    ``"aalu"``               True             True             True         ``[z, p]``
    =======================  ===============  ===============  ===========  ==========

    ``use_adversarial=False`` trains no VAE: ``A`` then reads the standardised
    features ``f`` (and ``p``) and learns from Eq. (8) alone. That is the paper's
    ``lossLearn`` baseline, the loss-prediction module of Yoo and Kweon (CVPR 2019),
    which also predicts the loss from the task model's features. Names are matched
    case-insensitively (``"AALU"`` works).

    **Training schedule.** An *epoch* is ``(n_labeled + n_unlabeled) /
    selector_batch_size`` iterations, VAAL's convention (its reference code trains
    ``n_items * epochs // batch_size`` iterations, counting the whole training set).
    The selector trains ``max(min_iterations, n_items * epochs // selector_batch_size)``
    iterations: the paper's 100 epochs are 39,000 iterations on CIFAR-10 but only
    about 1,100 on a pool of 1,437 digits, and a few hundred on a smaller pool, where
    the selector is under-trained (600 iterations fell below random sampling on
    digits: see the findings in ``docs/aalu-findings.md``); the floor (``1000`` by
    default) only acts on pools of fewer than 1,280 items.
    From very few labels (about 10 per class or fewer) ``hidden=(256, 128),
    min_iterations=1800``, the defaults until December 2026, scored higher on the
    low-budget benchmark (3 to 4 times the time; ``docs/aalu-findings.md``).
    ``min_iterations=0`` is the paper's schedule. Each iteration draws a labeled and
    an unlabeled batch of ``selector_batch_size`` (fewer if a part is smaller),
    reshuffled on each pass, from the feature matrix that stays on ``device``: no
    ``DataLoader``, and no host synchronisation inside the loop (losses are read back
    once per epoch, unless ``progress=False``). On CUDA each kind of step (VAE,
    ``A``) is recorded once in a CUDA graph and replayed: the MLPs are so small that
    launching their few hundred kernels from Python would otherwise cost more than
    running them (7x on an H200). The results match eager training; a failed capture
    warns and falls back to eager. The training runs on one CPU thread whatever
    ``torch.get_num_threads()`` says (restored after, also on error): these MLPs gain
    nothing from a second thread and lose up to 15x on a loaded machine.

    **The batch.** ``batch="topk"`` (the paper) returns the ``budget`` highest scores.
    Their picks pile up in a few classes (the adversarial term prefers what looks
    least like the labeled set), so the default ``batch="kcenter"`` runs k-center
    greedy (Core-Set's rule, the labeled items as centers, on the standardised
    features) over the ``4 * budget`` best items: the batch covers the feature space
    around the most informative items. ``batch="per_class"`` walks the same ranking
    round robin over the task model's predicted classes: the best item of each
    predicted class, then the second best of each, and so on (a round in rank
    order). Only ``"topk"`` returns exactly the top of :meth:`score`. On the
    label-efficiency benchmark k-center scored above the round robin, which scored
    above top-k (``docs/aalu-findings.md``).

    **The paper's configuration** is :meth:`AALUSampler.paper` (equivalently
    ``AALUSampler(**PAPER_SETTINGS)``): 100 epochs and no floor, plain top-k, ties
    counted as in Eq. (8) (``sign(0) = 0``), the paper's weights and learning rate.

    **Features** are standardised (zero mean, unit variance per dimension, over
    labeled and unlabeled items together) when ``standardize=True``: the paper does
    not say, but the reconstruction error and the KL term are then on a fixed scale
    whatever the task model's activations. The reconstruction term is a squared
    error (see :func:`aalearn.functional.losses.representation_loss`).

    Non-finite features or probabilities of the task model, and non-finite scores of
    ``A``, raise ``ValueError`` naming the items (see ``docs/reliability.md``).

    Parameters
    ----------
    variant : str
        ``"aalu"`` (default), ``"advVAE"``, ``"advVAE+prediction"``, ``"lossLearn"``
        or ``"advVAE+lossLearn"``.
    use_adversarial, use_predictions, use_ranking : bool or None
        Override the variant's switches.
    beta : float
        Weight of the VAE's adversarial loss in Eq. (6) (the paper's ``beta``, 1).
    xi : float
        Margin of the ranking loss, Eq. (8) (the paper's ``xi``, 0.1), on ``A``'s
        outputs in ``(0, 1)``.
    ranking_weight : float
        Weight of the ranking loss in Eq. (9) (the paper's ``lambda``, 10).
    kl_weight : float
        Weight of the KL term of the VAE's loss, Eq. (1) (1 in the paper; VAAL's ``beta``).
    lr : float
        Adam's learning rate for the VAE and ``A`` (5e-4).
    selector_batch_size : int
        Batch size of selector training (128), for each of the two batches.
    epochs : int or float
        Training epochs (100 in the paper); a fraction runs part of an epoch.
    min_iterations : int
        The least number of training iterations (1000; 0 is the paper's schedule).
    batch : {"kcenter", "per_class", "topk"}
        How the batch is formed from the scores (see above; the paper: ``"topk"``).
    kcenter_candidates : float
        With ``batch="kcenter"``: k-center greedy runs over the
        ``kcenter_candidates * budget`` best-scored items (4; 1 picks the top-k set).
    vae_steps, assistant_steps : int
        Steps of the VAE and of ``A`` per iteration (1 and 1, Algorithm 1's alternation).
    ties : {"zero", "not_greater"}
        The ranking loss's sign of a pair of equal task losses: 0 as Eq. (8) is
        written (default), or -1 as the Learning Loss reference code counts it (see
        :func:`aalearn.functional.losses.ranking_loss`).
    latent_dim : int
        Size of ``z`` (32, VAAL's).
    hidden : sequence of int
        Hidden widths of the VAE's encoder (its decoder mirrors them) and of ``A``;
        two widths give the paper's 3-layer MLPs (the paper does not give the widths;
        ``(64, 32)`` is aalearn's choice, measured in ``docs/aalu-findings.md``).
    standardize : bool
        Standardise the features before training.
    progress : bool, callable or None
        ``None`` (default): a progress bar on stderr (iterations, losses, time left)
        when stderr is a terminal; otherwise plain lines, but only once the training
        has run for 3 s (short selections stay silent); the first line says how many
        iterations the schedule implies, the last one the time taken. ``True``: from
        the start (plain lines without a terminal or without ``tqdm``, the
        ``progress`` extra). ``False``: silent.
        A callable is called as ``progress(epoch, losses)`` after each epoch,
        ``losses`` the mean of each loss term over the epoch. Silent training reads
        nothing back from the device.
    inference : aalearn.InferenceConfig, mapping or None
        The inference pass (see :class:`~aalearn.InferenceConfig`): ``feature_layer``
        names the module whose input is ``f`` (``"auto"``: the last ``nn.Linear``
        called); ``target_fn`` gives the task losses of labeled items without oracle labels.
    random_state : int, numpy.random.Generator or None
        Seeds the selector networks and their batches.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> from aalearn import ActivePool
    >>> from aalearn.samplers.aalu import AALUSampler
    >>> data = TensorDataset(torch.randn(200, 8), torch.arange(200) % 3)
    >>> pool = ActivePool(data)
    >>> pool.label(pool.random_unlabeled(40, random_state=0))
    >>> model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    >>> sampler = AALUSampler(epochs=2, hidden=(32, 16), inference={"device": "cpu"},
    ...                       random_state=0)
    >>> picked = sampler.select(model, pool, 10)
    >>> picked.shape, bool(pool.labeled_mask[picked].any())
    ((10,), False)
    >>> sampler.score(model, pool).shape  # A's logit for each unlabeled item
    (160,)
    >>> AALUSampler(variant="lossLearn").switches
    {'use_adversarial': False, 'use_predictions': False, 'use_ranking': True}
    >>> AALUSampler.paper()  # the paper's exact configuration
    AALUSampler(min_iterations=0, batch='topk')
    """

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "variant": Rule(_check_variant),
        **{name: Bool(none=True) for name in _SWITCHES},
        "beta": Real(0),
        "xi": Real(0),
        "ranking_weight": Real(0),
        "kl_weight": Real(0),
        "selector_batch_size": Int(2),  # the ranking loss compares pairs
        "batch": Options(BATCH_RULES),
        "kcenter_candidates": Real(1),
        "vae_steps": Int(1),
        "assistant_steps": Int(1),
        "ties": Options(RANKING_TIES),
        "latent_dim": Int(1),
        "hidden": Widths(),
        "standardize": Bool(),
    }
    _test_params = tuple({"variant": v, "epochs": 2, "min_iterations": 0} for v in AALU_VARIANTS)

    def __init__(
        self,
        *,
        variant: str = "aalu",
        use_adversarial: Optional[bool] = None,
        use_predictions: Optional[bool] = None,
        use_ranking: Optional[bool] = None,
        beta: float = 1.0,
        xi: float = 0.1,
        ranking_weight: float = 10.0,
        kl_weight: float = 1.0,
        lr: float = 5e-4,
        selector_batch_size: int = 128,
        epochs: Union[int, float] = 100,
        min_iterations: int = DEFAULT_MIN_ITERATIONS,
        batch: str = DEFAULT_BATCH,
        kcenter_candidates: float = KCENTER_CANDIDATES,
        vae_steps: int = 1,
        assistant_steps: int = 1,
        ties: str = DEFAULT_TIES,
        latent_dim: int = DEFAULT_LATENT_DIM,
        hidden: Sequence[int] = DEFAULT_HIDDEN,
        standardize: bool = True,
        progress: Progress = None,
        inference: Union[InferenceConfig, Mapping[str, Any], None] = None,
        random_state: RandomState = None,
    ) -> None:
        super().__init__(inference=inference, random_state=random_state)
        self.variant = variant
        self.use_adversarial = use_adversarial
        self.use_predictions = use_predictions
        self.use_ranking = use_ranking
        self.beta = beta
        self.xi = xi
        self.ranking_weight = ranking_weight
        self.kl_weight = kl_weight
        self.lr = lr
        self.selector_batch_size = selector_batch_size
        self.epochs = epochs
        self.min_iterations = min_iterations
        self.batch = batch
        self.kcenter_candidates = kcenter_candidates
        self.vae_steps = vae_steps
        self.assistant_steps = assistant_steps
        self.ties = ties
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.standardize = standardize
        self.progress = progress

    @classmethod
    def paper(cls, variant: str = "aalu", **kwargs: Any) -> AALUSampler:
        """The paper's configuration (:data:`PAPER_SETTINGS`), ``kwargs`` on top.

        Zhu and Wang's Section 4: beta 1, xi 0.1, lambda 10, Adam 5e-4, batch 128,
        100 epochs (no floor), the ``budget`` highest scores, Eq. (8) as written.
        """
        return cls(variant=variant, **{**PAPER_SETTINGS, **kwargs})

    @property
    def switches(self) -> dict[str, bool]:
        """The three switches in effect: the variant's, overridden by any given explicitly."""
        out = dict(AALU_VARIANTS[_check_variant(self.variant, "variant")])
        for name in _SWITCHES:
            value = Bool(none=True).check(getattr(self, name), name)
            if value is not None:
                out[name] = value
        if not (out["use_adversarial"] or out["use_ranking"]):
            raise ValueError(
                "Expected `use_adversarial` or `use_ranking` to be True: with neither, the "
                "assistant has nothing to learn from."
            )
        return out

    def _check_params(self, params: dict[str, Any]) -> None:
        self.switches  # noqa: B018 (checks the variant and the switches together)

    def _selector_config(self, params: dict[str, Any]) -> _FeatureSelectorConfig:
        return _FeatureSelectorConfig(
            **self.switches,
            adversarial_weight=params["beta"],
            kl_weight=params["kl_weight"],
            xi=params["xi"],
            ranking_weight=params["ranking_weight"],
            latent_dim=params["latent_dim"],
            hidden=params["hidden"],
            standardize=params["standardize"],
            training=self._training(params),
            vae_steps=params["vae_steps"],
            assistant_steps=params["assistant_steps"],
            ties=params["ties"],
            batch=params["batch"],
            kcenter_candidates=params["kcenter_candidates"],
        )

"""The losses of AALU (Zhu and Wang, ICIP 2020, Eqs. 1 and 5 to 9) and of VAAL.

Stateless kernels: tensors in, a scalar tensor out. Conventions:

* **AALU**: the active assistant ``A`` labels *labeled* samples ``0`` and *unlabeled*
  samples ``1``; a higher ``A(m)`` means "looks unlabeled / hard", the samples to pick.
* **VAAL** (functions prefixed ``vaal_``): the discriminator labels *labeled* samples
  ``1``, the opposite; the samples to pick have the lowest ``D``.

Every adversarial term takes **logits** (the networks' outputs before the sigmoid) and
goes through :func:`torch.nn.functional.binary_cross_entropy_with_logits`: the
paper's ``-log(1 - A(m))`` is computed as ``softplus(logit)`` without ever forming
``log(sigmoid(.))``, which overflows for confident networks. Each expectation
``E[.]`` of the paper is a **mean over the batch**.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "assistant_adversarial_loss",
    "assistant_loss",
    "kl_divergence",
    "ranking_loss",
    "representation_loss",
    "vaal_discriminator_loss",
    "vaal_representation_loss",
    "vaal_vae_adversarial_loss",
    "vae_adversarial_loss",
    "vae_loss",
]


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _check_pair(logits_l: torch.Tensor, logits_u: torch.Tensor) -> None:
    if logits_l.ndim != 1 or logits_u.ndim != 1:
        raise ValueError(
            "Expected `logits_l` and `logits_u` to be 1-D tensors of logits, but got shapes "
            f"{tuple(logits_l.shape)} and {tuple(logits_u.shape)}."
        )


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    r"""Per-sample ``KL(N(mu, exp(logvar)) || N(0, I))``, summed over the latent dimensions.

    .. math:: \mathrm{KL}_i = -\tfrac12 \sum_j (1 + \log\sigma_{ij}^2 - \mu_{ij}^2 - \sigma_{ij}^2)

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional.losses import kl_divergence
    >>> kl_divergence(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2))
    tensor([0.5000])
    """
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).flatten(1).sum(dim=1)


def representation_loss(
    recon: torch.Tensor,
    f: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    *,
    kl_weight: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Eq. (1): the VAE's reconstruction term plus its KL term, on feature vectors.

    .. math:: L^{rep}_{vae} = \mathrm{KL}(q(z|f) \,\|\, N(0, I)) - E[\log p(f|z)]

    The reconstruction term is the **squared error summed over the feature
    dimensions** (a mean squared error up to the factor ``D``): ``-log p(f|z)`` for a
    Gaussian decoder with fixed variance, up to constants. A squared error and not
    a binary cross-entropy because features are real valued (post-ReLU
    activations, or standardised ones), not intensities in ``[0, 1]``; summed over
    the dimensions rather than averaged so that the two terms keep the ELBO's
    proportions (an average would make the KL term ``D`` times heavier and collapse
    the posterior onto the prior). Both terms are per sample, then averaged over the
    batch (``reduction="mean"``) or returned per sample (``"none"``).

    Parameters
    ----------
    recon, f : torch.Tensor
        Reconstruction and target, ``(N, D)``.
    mu, logvar : torch.Tensor
        Posterior parameters, ``(N, K)``.
    kl_weight : float
        Weight of the KL term (1 in Eq. 1).
    reduction : {"mean", "none"}

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional.losses import representation_loss
    >>> f = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    >>> recon = torch.tensor([[1.0, 1.0], [1.0, 1.0]])     # squared errors 1 and 2
    >>> mu, logvar = torch.tensor([[1.0], [0.0]]), torch.zeros(2, 1)   # KL 0.5 and 0
    >>> representation_loss(recon, f, mu, logvar)              # ((1 + 0.5) + (2 + 0)) / 2
    tensor(1.7500)
    """
    if recon.shape != f.shape:
        raise ValueError(
            "Reconstruction and target are expected to have the same shape, but got "
            f"{tuple(recon.shape)} and {tuple(f.shape)}."
        )
    if reduction not in ("mean", "none"):
        raise ValueError(
            f"Expected argument `reduction` to be 'mean' or 'none', but got {reduction!r}."
        )
    per_sample = (recon - f).pow(2).flatten(1).sum(dim=1) + kl_weight * kl_divergence(mu, logvar)
    return per_sample.mean() if reduction == "mean" else per_sample


def vae_adversarial_loss(logits_l: torch.Tensor, logits_u: torch.Tensor) -> torch.Tensor:
    r"""Eq. (5): the VAE's adversarial loss, making every sample look labeled (``0``) to ``A``.

    .. math:: L^{adv}_{vae} = -E[\log(1 - A(m_L))] - E[\log(1 - A(m_U))]

    ``logits_l`` and ``logits_u`` are ``A``'s logits on a labeled and an unlabeled
    batch; each expectation is a batch mean.

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional.losses import vae_adversarial_loss
    >>> vae_adversarial_loss(torch.zeros(3), torch.zeros(2))   # 2 * log 2
    tensor(1.3863)
    """
    _check_pair(logits_l, logits_u)
    return _bce(logits_l, 0.0) + _bce(logits_u, 0.0)


def vae_loss(
    recon: torch.Tensor,
    f: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    logits_l: torch.Tensor,
    logits_u: torch.Tensor,
    *,
    beta: float = 1.0,
) -> torch.Tensor:
    r"""Eq. (6): ``L_vae = L_rep_vae + beta * L_adv_vae``.

    ``recon, f, mu, logvar`` are the VAE's outputs on the samples of the step (labeled
    and unlabeled together); ``logits_l, logits_u`` are ``A``'s logits on them. The
    paper uses ``beta = 1``.

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional.losses import vae_loss
    >>> f, latent, logits = torch.zeros(2, 3), torch.zeros(2, 1), torch.zeros(1)
    >>> vae_loss(f, f, latent, latent, logits, logits, beta=0.5)  # 0 + 0.5 * 2 log 2
    tensor(0.6931)
    """
    return representation_loss(recon, f, mu, logvar) + beta * vae_adversarial_loss(
        logits_l, logits_u
    )


def assistant_adversarial_loss(logits_l: torch.Tensor, logits_u: torch.Tensor) -> torch.Tensor:
    r"""Eq. (7): ``A`` separates labeled (``0``) from unlabeled (``1``) samples.

    .. math:: L^{adv}_{A} = -E[\log(1 - A(m_L))] - E[\log A(m_U)]

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional.losses import assistant_adversarial_loss
    >>> assistant_adversarial_loss(torch.tensor([-5.0]), torch.tensor([5.0]))  # 2 * log(1 + e^-5)
    tensor(0.0134)
    """
    _check_pair(logits_l, logits_u)
    return _bce(logits_l, 0.0) + _bce(logits_u, 1.0)


#: How :func:`ranking_loss` counts a pair of equal task losses.
RANKING_TIES = ("zero", "not_greater")


def ranking_loss(
    scores: torch.Tensor, task_losses: torch.Tensor, margin: float = 0.1, *, ties: str = "zero"
) -> torch.Tensor:
    r"""Eq. (8): the pairwise ranking loss of "Learning Loss for Active Learning".

    .. math::
        L^{loss}_A = \frac1n \sum_{i=1}^{n}
        \max\bigl(0, -\operatorname{sign}(l_i - l_{n+i}) \, (A(m_i) - A(m_{n+i})) + \xi\bigr)

    A labeled batch of ``2n`` samples is split into the pairs ``(i, n + i)``; an odd
    batch drops its last sample. Each pair is penalised unless the score of the
    sample with the larger task loss exceeds the other's by at least ``margin``
    (``xi``). The loss is the mean over the ``n`` pairs. ``task_losses`` is a target:
    it is detached.

    **Ties.** A float32 cross-entropy of a confident right prediction is exactly 0, so
    pairs of equal losses happen. ``ties="zero"`` takes the formula literally:
    ``sign(0) = 0``, the pair costs ``margin`` and gives no gradient.
    ``ties="not_greater"`` is the Learning Loss reference code (Yoo and Kweon; its
    public re-implementation computes ``2 * sign(clamp(l_i - l_{n+i}, min=0)) - 1``):
    a tied pair counts as "``l_i`` not greater", sign ``-1``, and pushes
    ``A(m_{n+i})`` above ``A(m_i)`` by the margin.

    AALU passes ``scores = A(m) = sigmoid(logit)``, the **probabilities** the paper
    writes, so that the margin ``xi = 0.1`` lives on the same ``(0, 1)`` scale as in
    the paper (on logits any margin could be met by scaling the logits up).

    Parameters
    ----------
    scores : torch.Tensor
        ``(2n,)`` or ``(2n + 1,)`` scores of a labeled batch.
    task_losses : torch.Tensor
        The task model's per-sample losses of the same samples.
    margin : float
        The margin ``xi`` (0.1 in the paper).
    ties : {"zero", "not_greater"}
        The sign of a pair of equal task losses: 0 (default) or -1 (the Learning
        Loss reference code).

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional.losses import ranking_loss
    >>> scores = torch.tensor([0.9, 0.2, 0.5, 0.4])   # pairs (0.9, 0.5) and (0.2, 0.4)
    >>> losses = torch.tensor([2.0, 1.0, 1.0, 3.0])   # first right by 0.4, second right by 0.2
    >>> ranking_loss(scores, losses)
    tensor(0.)
    >>> # first pair now wrong by 0.4 (costs 0.4 + 0.1), second right by 0.2 >= 0.1 (costs 0)
    >>> ranking_loss(scores, torch.tensor([1.0, 1.0, 2.0, 3.0]))
    tensor(0.2500)
    >>> tied = torch.tensor([0.0, 0.0])                  # one pair, equal losses
    >>> ranking_loss(torch.tensor([0.6, 0.3]), tied)     # sign 0: the margin, no gradient
    tensor(0.1000)
    >>> ranking_loss(torch.tensor([0.6, 0.3]), tied, ties="not_greater")  # 0.6 - 0.3 + 0.1
    tensor(0.4000)
    """
    if ties not in RANKING_TIES:
        raise ValueError(
            f"Expected argument `ties` to be one of {list(RANKING_TIES)}, but got {ties!r}."
        )
    if scores.ndim != 1 or scores.shape != task_losses.shape:
        raise ValueError(
            "Scores and task losses are expected to be 1-D with the same shape, but got "
            f"{tuple(scores.shape)} and {tuple(task_losses.shape)}."
        )
    n = scores.shape[0] // 2
    if n == 0:
        raise ValueError(
            f"The ranking loss needs a batch of at least 2 samples, but got {scores.shape[0]}."
        )
    target = task_losses.detach()
    diff = target[:n] - target[n : 2 * n]
    if ties == "zero":
        sign = torch.sign(diff)
    else:
        sign = 2 * torch.sign(torch.clamp(diff, min=0)) - 1
    return torch.clamp(-sign * (scores[:n] - scores[n : 2 * n]) + margin, min=0).mean()


def assistant_loss(
    logits_l: torch.Tensor,
    logits_u: torch.Tensor,
    task_losses: torch.Tensor,
    *,
    ranking_weight: float = 10.0,
    margin: float = 0.1,
) -> torch.Tensor:
    r"""Eq. (9): ``L_A = L_adv_A + lambda * L_loss_A``.

    The ranking term (Eq. 8) is taken on ``sigmoid(logits_l)`` (``A``'s outputs on the
    labeled batch, probabilities) against ``task_losses``. ``ranking_weight`` is the
    paper's ``lambda`` (10), ``margin`` its ``xi`` (0.1).

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional.losses import assistant_loss
    >>> # 2 log 2 (both logits 0) + 10 * 0.1 (equal scores: the margin)
    >>> assistant_loss(torch.zeros(2), torch.zeros(2), torch.tensor([1.0, 2.0]))
    tensor(2.3863)
    """
    adversarial = assistant_adversarial_loss(logits_l, logits_u)
    ranking = ranking_loss(torch.sigmoid(logits_l), task_losses, margin)
    return adversarial + ranking_weight * ranking


def vaal_representation_loss(
    recon: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    *,
    beta: float = 1.0,
) -> torch.Tensor:
    r"""VAAL's VAE loss on one batch: ``MSE(recon, x) + beta * KL``, as ``sinhasam/vaal`` has it.

    The mean squared error is averaged over every element (``nn.MSELoss()``), the KL
    **summed** over the batch and the latent dimensions (the reference's
    ``-0.5 * torch.sum(1 + logvar - mu^2 - exp(logvar))``).

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional.losses import vaal_representation_loss
    >>> x = torch.zeros(2, 1, 2, 2)
    >>> vaal_representation_loss(x + 1, x, torch.ones(2, 3), torch.zeros(2, 3))  # 1 + 6 * 0.5
    tensor(4.)
    """
    if recon.shape != x.shape:
        raise ValueError(
            "Reconstruction and target are expected to have the same shape, but got "
            f"{tuple(recon.shape)} and {tuple(x.shape)}."
        )
    return F.mse_loss(recon, x) + beta * kl_divergence(mu, logvar).sum()


def vaal_vae_adversarial_loss(logits_l: torch.Tensor, logits_u: torch.Tensor) -> torch.Tensor:
    r"""VAAL's adversarial term for the VAE: ``BCE(D(mu_L), 1) + BCE(D(mu_U), 1)``.

    In VAAL ``1`` means labeled: the VAE tries to make every sample look labeled.

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional.losses import vaal_vae_adversarial_loss
    >>> vaal_vae_adversarial_loss(torch.zeros(2), torch.zeros(2))
    tensor(1.3863)
    """
    _check_pair(logits_l, logits_u)
    return _bce(logits_l, 1.0) + _bce(logits_u, 1.0)


def vaal_discriminator_loss(logits_l: torch.Tensor, logits_u: torch.Tensor) -> torch.Tensor:
    r"""VAAL's discriminator loss: ``BCE(D(mu_L), 1) + BCE(D(mu_U), 0)`` (labeled is ``1``).

    Examples
    --------
    >>> import torch
    >>> from aalearn.functional.losses import vaal_discriminator_loss
    >>> vaal_discriminator_loss(torch.tensor([5.0]), torch.tensor([-5.0]))  # 2 * log(1 + e^-5)
    tensor(0.0134)
    """
    _check_pair(logits_l, logits_u)
    return _bce(logits_l, 1.0) + _bce(logits_u, 0.0)

"""The losses of AALU (Eqs. 1, 5-9) and VAAL against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from aalearn.functional import losses as L
from aalearn.networks import Assistant, FeatureVAE

LOG2 = math.log(2.0)


def softplus(x: float) -> float:
    """-log(1 - sigmoid(x)) = log(1 + e^x), written out."""
    return math.log1p(math.exp(x))


def test_kl_divergence_by_hand():
    mu = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    # sample 0: dim 0: -0.5 (1 + 0 - 1 - 1) = 0.5; dim 1: -0.5 (1 + log 2 - 4 - 2) = 2.5 - log(2)/2
    expected = torch.tensor([0.5 + 2.5 - LOG2 / 2, 0.0])
    torch.testing.assert_close(L.kl_divergence(mu, logvar), expected)


def test_representation_loss_by_hand():
    f = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    recon = torch.tensor([[1.0, 0.0, 3.0], [1.0, 1.0, 1.0]])  # squared errors: 4 and 3
    mu = torch.tensor([[2.0], [0.0]])  # KL: 2 and 0
    logvar = torch.zeros(2, 1)
    per = L.representation_loss(recon, f, mu, logvar, reduction="none")
    torch.testing.assert_close(per, torch.tensor([6.0, 3.0]))
    torch.testing.assert_close(L.representation_loss(recon, f, mu, logvar), torch.tensor(4.5))
    weighted = L.representation_loss(recon, f, mu, logvar, kl_weight=0.5)
    torch.testing.assert_close(weighted, torch.tensor((5.0 + 3.0) / 2))


def test_vae_adversarial_loss_by_hand():
    ll, lu = torch.tensor([0.0, 2.0]), torch.tensor([-1.0])
    # -E log(1 - A(m_L)) - E log(1 - A(m_U)) with A = sigmoid
    expected = (softplus(0.0) + softplus(2.0)) / 2 + softplus(-1.0)
    torch.testing.assert_close(L.vae_adversarial_loss(ll, lu), torch.tensor(expected))


def test_assistant_adversarial_loss_by_hand():
    ll, lu = torch.tensor([0.0, 2.0]), torch.tensor([-1.0, 3.0])
    # -E log(1 - A(m_L)) - E log A(m_U);  -log sigmoid(x) = softplus(-x)
    expected = (softplus(0.0) + softplus(2.0)) / 2 + (softplus(1.0) + softplus(-3.0)) / 2
    torch.testing.assert_close(L.assistant_adversarial_loss(ll, lu), torch.tensor(expected))


def test_vae_loss_is_eq6():
    torch.manual_seed(0)
    recon, f = torch.randn(4, 5), torch.randn(4, 5)
    mu, logvar = torch.randn(4, 2), torch.randn(4, 2)
    ll, lu = torch.randn(2), torch.randn(2)
    expected = L.representation_loss(recon, f, mu, logvar) + 0.3 * L.vae_adversarial_loss(ll, lu)
    torch.testing.assert_close(L.vae_loss(recon, f, mu, logvar, ll, lu, beta=0.3), expected)


def test_assistant_loss_is_eq9():
    ll, lu = torch.tensor([0.5, -0.5, 1.0, 0.0]), torch.tensor([2.0])
    tl = torch.tensor([1.0, 2.0, 0.5, 3.0])
    expected = L.assistant_adversarial_loss(ll, lu) + 7.0 * L.ranking_loss(
        torch.sigmoid(ll), tl, margin=0.2
    )
    got = L.assistant_loss(ll, lu, tl, ranking_weight=7.0, margin=0.2)
    torch.testing.assert_close(got, expected)


def _ranking_loop(scores: list[float], losses: list[float], margin: float) -> float:
    n = len(scores) // 2
    total = 0.0
    for i in range(n):
        diff = losses[i] - losses[n + i]
        sign = (diff > 0) - (diff < 0)
        total += max(0.0, -sign * (scores[i] - scores[n + i]) + margin)
    return total / n


def test_ranking_loss_by_hand():
    scores = torch.tensor([0.9, 0.2, 0.5, 0.4])
    # pairs (0, 2) and (1, 3): l0 > l2 and A0 - A2 = 0.4 >= 0.1: 0; l1 < l3 and
    # A1 - A3 = -0.2 <= -0.1: 0.
    torch.testing.assert_close(
        L.ranking_loss(scores, torch.tensor([2.0, 1.0, 1.0, 3.0])), torch.tensor(0.0)
    )
    # reversed first pair: max(0, 0.4 + 0.1) = 0.5; mean over 2 pairs: 0.25
    torch.testing.assert_close(
        L.ranking_loss(scores, torch.tensor([1.0, 1.0, 2.0, 3.0])), torch.tensor(0.25)
    )


@pytest.mark.parametrize("n", [2, 3, 8, 9, 31])
@pytest.mark.parametrize("margin", [0.0, 0.1, 0.5])
def test_ranking_loss_matches_loop(n, margin):
    g = torch.Generator().manual_seed(n)
    scores = torch.rand(n, generator=g, dtype=torch.float64)
    losses = torch.randint(0, 4, (n,), generator=g).double()  # ties included
    expected = _ranking_loop(scores.tolist(), losses.tolist(), margin)
    got = L.ranking_loss(scores, losses, margin)
    assert got.item() == pytest.approx(expected, abs=1e-12)


def test_ranking_loss_odd_batch_drops_last():
    scores, losses = torch.tensor([0.1, 0.9, 100.0]), torch.tensor([2.0, 1.0, -5.0])
    # one pair (0, 1): l0 > l1 but A0 - A1 = -0.8: 0.8 + 0.1
    torch.testing.assert_close(L.ranking_loss(scores, losses), torch.tensor(0.9))


def test_ranking_loss_gradient_and_detached_target():
    scores = torch.tensor([0.2, 0.6], requires_grad=True)
    losses = torch.tensor([3.0, 1.0], requires_grad=True)
    L.ranking_loss(scores, losses).backward()
    # d/dA0 of (-(A0 - A1) + 0.1) = -1, averaged over 1 pair
    torch.testing.assert_close(scores.grad, torch.tensor([-1.0, 1.0]))
    assert losses.grad is None


def test_losses_stable_for_huge_logits():
    big = torch.tensor([1e4, -1e4])
    for fn in (
        L.vae_adversarial_loss,
        L.assistant_adversarial_loss,
        L.vaal_vae_adversarial_loss,
        L.vaal_discriminator_loss,
    ):
        value = fn(big, -big)
        assert torch.isfinite(value)
    torch.testing.assert_close(
        L.assistant_adversarial_loss(torch.tensor([-1e4]), torch.tensor([1e4])), torch.tensor(0.0)
    )


def test_vaal_losses_by_hand():
    x = torch.zeros(2, 1, 2, 2)
    recon = torch.full_like(x, 2.0)  # MSE 4 (mean over all 8 elements)
    mu, logvar = torch.ones(2, 3), torch.zeros(2, 3)  # KL 0.5 per dim: 3 in all
    torch.testing.assert_close(
        L.vaal_representation_loss(recon, x, mu, logvar, beta=2.0), torch.tensor(4.0 + 2.0 * 3.0)
    )
    ll, lu = torch.tensor([1.0]), torch.tensor([-2.0, 0.0])
    # labeled is 1: BCE(x, 1) = softplus(-x), BCE(x, 0) = softplus(x)
    torch.testing.assert_close(
        L.vaal_vae_adversarial_loss(ll, lu),
        torch.tensor(softplus(-1.0) + (softplus(2.0) + softplus(0.0)) / 2),
    )
    torch.testing.assert_close(
        L.vaal_discriminator_loss(ll, lu),
        torch.tensor(softplus(-1.0) + (softplus(-2.0) + softplus(0.0)) / 2),
    )


def test_conventions_are_mirrors():
    ll, lu = torch.randn(5), torch.randn(7)
    # AALU (labeled 0) and VAAL (labeled 1) are the same game up to the logit's sign.
    torch.testing.assert_close(
        L.assistant_adversarial_loss(ll, lu), L.vaal_discriminator_loss(-ll, -lu)
    )
    torch.testing.assert_close(
        L.vae_adversarial_loss(ll, lu), L.vaal_vae_adversarial_loss(-ll, -lu)
    )


def test_gradients_reach_only_the_network_being_trained():
    torch.manual_seed(0)
    vae, assistant = FeatureVAE(6, latent_dim=3, hidden=(8,)), Assistant(3, hidden=(8,))
    f_l, f_u, task = torch.randn(4, 6), torch.randn(5, 6), torch.rand(4)

    # VAE step (Eq. 6): A's parameters frozen, as in training.
    f = torch.cat([f_l, f_u])
    recon, z, mu, logvar = vae(f)
    for p in assistant.parameters():
        p.requires_grad_(False)
    logits = assistant(z)
    for p in assistant.parameters():
        p.requires_grad_(True)
    L.vae_loss(recon, f, mu, logvar, logits[:4], logits[4:]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vae.parameters())
    assert all(p.grad is None for p in assistant.parameters())

    # A step (Eq. 9): the VAE's outputs detached.
    vae.zero_grad(set_to_none=True)
    with torch.no_grad():
        z = vae(f)[1]
    logits = assistant(z)
    L.assistant_loss(logits[:4], logits[4:], task).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in assistant.parameters())
    assert all(p.grad is None for p in vae.parameters())


def test_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        L.representation_loss(
            torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 1), torch.zeros(2, 1)
        )
    with pytest.raises(ValueError, match="Expected argument `reduction`"):
        L.representation_loss(
            torch.zeros(2, 3),
            torch.zeros(2, 3),
            torch.zeros(2, 1),
            torch.zeros(2, 1),
            reduction="sum",
        )
    with pytest.raises(ValueError, match="1-D tensors of logits"):
        L.vae_adversarial_loss(torch.zeros(2, 1), torch.zeros(2))
    with pytest.raises(ValueError, match="at least 2 samples"):
        L.ranking_loss(torch.zeros(1), torch.zeros(1))
    with pytest.raises(ValueError, match="same shape"):
        L.ranking_loss(torch.zeros(4), torch.zeros(3))
    with pytest.raises(ValueError, match="same shape"):
        L.vaal_representation_loss(
            torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 3), torch.zeros(1, 1), torch.zeros(1, 1)
        )


def test_ranking_loss_ties_follow_the_learning_loss_reference():
    from aalearn.functional.losses import ranking_loss

    scores = torch.tensor([0.6, 0.9, 0.3, 0.2], requires_grad=True)  # pairs (0.6, 0.3), (0.9, 0.2)
    losses = torch.tensor([0.0, 2.0, 0.0, 1.0])  # first pair tied, second right by 0.7
    zero = ranking_loss(scores, losses)
    # sign 0: the tied pair costs the margin and gives no gradient
    assert zero.item() == pytest.approx((0.1 + 0.0) / 2)
    (grad,) = torch.autograd.grad(zero, scores)
    assert grad.abs().sum() == 0
    # reference: 2 * sign(clamp(l_i - l_j, min=0)) - 1 = -1, so the pair costs 0.6 - 0.3 + 0.1
    ref = ranking_loss(scores, losses, ties="not_greater")
    assert ref.item() == pytest.approx((0.4 + 0.0) / 2)
    (grad,) = torch.autograd.grad(ref, scores)
    torch.testing.assert_close(grad, torch.tensor([0.5, 0.0, -0.5, 0.0]))
    # without ties both agree
    untied = torch.tensor([1.0, 2.0, 0.5, 1.0])
    assert ranking_loss(scores, untied) == ranking_loss(scores, untied, ties="not_greater")
    with pytest.raises(ValueError, match=r"Expected argument `ties` to be one of \['zero'"):
        ranking_loss(scores, losses, ties="minus_one")

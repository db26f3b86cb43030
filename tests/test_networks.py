"""Selector networks: AALU's MLPs and VAAL's reference architecture."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aalearn.networks import Assistant, ConvVAE, Discriminator, FeatureVAE, reparameterize


def test_feature_vae_shapes_and_depth():
    vae = FeatureVAE(40, latent_dim=6, hidden=(512, 256))
    linears = [m for m in vae.encoder if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(40, 512), (512, 256), (256, 12)]
    linears = [m for m in vae.decoder if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(6, 256), (256, 512), (512, 40)]
    recon, z, mu, logvar = vae(torch.randn(3, 40))
    assert recon.shape == (3, 40) and z.shape == mu.shape == logvar.shape == (3, 6)


def test_reparameterisation_uses_the_generator():
    vae = FeatureVAE(10, latent_dim=4, hidden=(16,))
    f = torch.randn(5, 10)
    a = vae(f, generator=torch.Generator().manual_seed(1))[1]
    b = vae(f, generator=torch.Generator().manual_seed(1))[1]
    c = vae(f, generator=torch.Generator().manual_seed(2))[1]
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    mu, logvar = vae.encode(f)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, mu + torch.exp(0.5 * logvar) * eps)
    # zero variance: z is mu
    torch.testing.assert_close(reparameterize(mu, torch.full_like(mu, -1e4)), mu)


def test_assistant_returns_logits_and_sigmoid_score():
    a = Assistant(7, (512, 256))
    assert [m.out_features for m in a.net if isinstance(m, nn.Linear)] == [512, 256, 1]
    m = torch.randn(4, 7)
    assert a(m).shape == (4,)
    torch.testing.assert_close(a.score(m), torch.sigmoid(a(m)))


def _reference_vae_param_count(nc: int = 3, z: int = 32) -> int:
    """Parameter count of sinhasam/vaal's VAE, layer by layer."""
    conv = 16 * (nc * 128 + 128 * 256 + 256 * 512 + 512 * 1024)  # 4x4 kernels, no bias
    bn = 2 * (128 + 256 + 512 + 1024) + 2 * (512 + 256 + 128)
    heads = 2 * (1024 * 2 * 2 * z + z)
    dec_fc = z * 1024 * 4 * 4 + 1024 * 4 * 4
    deconv = 16 * (1024 * 512 + 512 * 256 + 256 * 128)  # no bias
    last = 128 * nc + nc  # 1x1 transposed convolution with bias
    return conv + bn + heads + dec_fc + deconv + last


def test_conv_vae_matches_the_reference_on_cifar_size():
    vae = ConvVAE()
    assert sum(p.numel() for p in vae.parameters()) == _reference_vae_param_count()
    convs = [m for m in vae.encoder if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [128, 256, 512, 1024]
    assert all(m.kernel_size == (4, 4) and m.stride == (2, 2) and m.bias is None for m in convs)
    x = torch.randn(2, 3, 32, 32)
    assert vae.encoder(x).shape == (2, 1024 * 2 * 2)
    assert vae.decoder[1](vae.decoder[0](torch.randn(2, 32))).shape == (2, 1024, 4, 4)
    recon, z, _, _ = vae(x)
    assert recon.shape == x.shape and z.shape == (2, 32)


@pytest.mark.parametrize(
    ("channels", "size", "padded"), [(1, 28, (32, 32)), (1, 8, (16, 16)), (3, (20, 36), (32, 48))]
)
def test_conv_vae_other_sizes(channels, size, padded):
    vae = ConvVAE(in_channels=channels, image_size=size, base_channels=4)
    assert vae.padded_size == padded
    h, w = (size, size) if isinstance(size, int) else size
    x = torch.randn(3, channels, h, w)
    recon, _, mu, _ = vae(x)
    assert recon.shape == x.shape and mu.shape == (3, 32)
    with pytest.raises(ValueError, match="Expected images of size"):
        vae(torch.randn(3, channels, h + 1, w))


def test_discriminator_matches_the_reference():
    d = Discriminator()
    sizes = [(m.in_features, m.out_features) for m in d.net if isinstance(m, nn.Linear)]
    assert sizes == [(32, 512), (512, 512), (512, 1)]
    assert all(not m.bias.detach().any() for m in d.net if isinstance(m, nn.Linear))
    z = torch.randn(5, 32)
    assert d(z).shape == (5,)
    torch.testing.assert_close(d.score(z), torch.sigmoid(d(z)))


def test_bad_sizes():
    with pytest.raises(ValueError, match="Expected argument `in_features` to be >= 1"):
        FeatureVAE(0)
    with pytest.raises(ValueError, match="Expected argument `latent_dim` to be >= 1"):
        FeatureVAE(4, latent_dim=0)
    with pytest.raises(ValueError, match="Expected argument `hidden`"):
        Assistant(4, hidden=(8, -1))
    with pytest.raises(ValueError, match="Expected argument `image_size`"):
        ConvVAE(image_size=0)
    with pytest.raises(ValueError, match="Expected argument `latent_dim`"):
        Discriminator(0)


def test_default_widths_are_64_then_32():
    linears = [m for m in FeatureVAE(40, latent_dim=6).encoder if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [64, 32, 12]
    assert [m.out_features for m in Assistant(7).net if isinstance(m, nn.Linear)] == [64, 32, 1]

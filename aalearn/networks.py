"""Selector networks: the feature VAE and assistant of AALU, VAAL's VAE and discriminator.

Two families live here:

* :class:`FeatureVAE` and :class:`Assistant`, the small MLPs of AALU (Zhu and Wang,
  ICIP 2020) that work on the task model's feature vectors, and
* :class:`ConvVAE` and :class:`Discriminator`, the networks of VAAL (Sinha et al.,
  ICCV 2019) as its reference code ``sinhasam/vaal`` builds them, working on raw images.

Every scoring head returns a **logit**: the sigmoid the papers put at the output is
folded into :func:`torch.nn.functional.binary_cross_entropy_with_logits` by the losses
in :mod:`aalearn.functional.losses`, which is numerically stable where
``log(sigmoid(x))`` is not. ``.score()`` applies the sigmoid for callers that want the
paper's output in ``(0, 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import torch
from torch import nn

from aalearn._validation import check_int, check_widths

__all__ = ["Assistant", "ConvVAE", "Discriminator", "FeatureVAE", "reparameterize"]

#: Hidden widths of AALU's MLPs. The paper says "3-layer MLP" and gives no widths
#: (a choice of aalearn). (64, 32) scored as (256, 128) in the label-efficiency
#: benchmark (paired AUC -0.24 +- 0.40 on digits, -0.00 +- 0.22 on mnist5k, 5 seeds,
#: with the 1,000-iteration floor) and makes a default select on the quickstart's pool
#: several times faster on a CPU; see docs/aalu-findings.md.
DEFAULT_HIDDEN = (64, 32)
#: Latent size of both VAEs: VAAL's reference uses 32 and AALU builds on VAAL.
DEFAULT_LATENT_DIM = 32
#: VAAL's discriminator widths (sinhasam/vaal, model.py: z -> 512 -> 512 -> 1).
VAAL_DISCRIMINATOR_HIDDEN = (512, 512)
#: Channels of the first convolution of VAAL's VAE; the others are 2x, 4x, 8x (1024).
VAAL_BASE_CHANNELS = 128


def reparameterize(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    generator: Optional[torch.Generator] = None,
    eps: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Draw ``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)`` from ``generator``.

    ``eps`` passes the noise in instead (drawn beforehand, e.g. outside a CUDA graph).

    Examples
    --------
    >>> import torch
    >>> from aalearn.networks import reparameterize
    >>> g = torch.Generator().manual_seed(0)
    >>> reparameterize(torch.zeros(2, 3), torch.full((2, 3), -1e4), g)
    tensor([[0., 0., 0.],
            [0., 0., 0.]])
    """
    if eps is None:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _check_sizes(
    in_features: int, hidden: Sequence[int], latent_dim: Optional[int], in_name: str = "in_features"
) -> None:
    check_int(in_features, in_name, minimum=1)
    if latent_dim is not None:
        check_int(latent_dim, "latent_dim", minimum=1)
    check_widths(hidden, "hidden")


class FeatureVAE(nn.Module):
    """AALU's VAE over feature vectors: MLP encoder ``f -> (mu, logvar)``, MLP decoder ``z -> f``.

    With ``hidden=(512, 256)`` the encoder is the 3-layer MLP
    ``in_features -> 512 -> 256 -> 2 * latent_dim`` (the last layer's output is split
    into ``mu`` and ``logvar``) and the decoder the mirrored 3-layer MLP
    ``latent_dim -> 256 -> 512 -> in_features``, ReLU between layers, a linear output
    (features are real valued). The paper fixes the depth (3 layers) but not the
    widths: 512/256 and ``latent_dim=32`` (VAAL's latent size) are aalearn's choices.

    Parameters
    ----------
    in_features : int
        Size of the feature vector ``f``.
    latent_dim : int
        Size of ``z``.
    hidden : sequence of int
        Hidden widths of the encoder; the decoder uses them reversed.

    Examples
    --------
    >>> import torch
    >>> from aalearn.networks import FeatureVAE
    >>> vae = FeatureVAE(64, latent_dim=8, hidden=(32, 16))
    >>> recon, z, mu, logvar = vae(torch.randn(5, 64), generator=torch.Generator().manual_seed(0))
    >>> recon.shape, z.shape, mu.shape, logvar.shape
    (torch.Size([5, 64]), torch.Size([5, 8]), torch.Size([5, 8]), torch.Size([5, 8]))
    """

    def __init__(
        self,
        in_features: int,
        latent_dim: int = DEFAULT_LATENT_DIM,
        hidden: Sequence[int] = DEFAULT_HIDDEN,
    ) -> None:
        super().__init__()
        _check_sizes(in_features, hidden, latent_dim)
        self.in_features = in_features
        self.latent_dim = latent_dim
        self.encoder = _mlp([in_features, *hidden, 2 * latent_dim])
        self.decoder = _mlp([latent_dim, *reversed(tuple(hidden)), in_features])

    def encode(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of ``q(z | f)``."""
        mu, logvar = self.encoder(f).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The reconstruction ``f_hat`` of a latent code."""
        out: torch.Tensor = self.decoder(z)
        return out

    def forward(
        self,
        f: torch.Tensor,
        generator: Optional[torch.Generator] = None,
        eps: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(recon, z, mu, logvar)``, with ``z`` drawn by reparameterisation.

        The noise comes from ``generator``, or is ``eps`` when given.
        """
        mu, logvar = self.encode(f)
        z = reparameterize(mu, logvar, generator, eps)
        return self.decode(z), z, mu, logvar


class Assistant(nn.Module):
    """AALU's active assistant ``A``: an MLP ``m -> logit`` (the paper's ``A(m)`` is its sigmoid).

    With ``hidden=(512, 256)`` it is the 3-layer MLP ``in_features -> 512 -> 256 -> 1``
    with ReLU. ``forward`` returns the logit, shape ``(N,)``; :meth:`score` returns
    ``sigmoid(logit)``, the paper's output in ``(0, 1)``. Convention of AALU: ``0``
    means labeled, ``1`` unlabeled, and a higher score a sample to pick.

    Examples
    --------
    >>> import torch
    >>> from aalearn.networks import Assistant
    >>> a = Assistant(10, hidden=(16, 8))
    >>> m = torch.randn(4, 10)
    >>> a(m).shape
    torch.Size([4])
    >>> torch.equal(a.score(m), torch.sigmoid(a(m)))
    True
    """

    def __init__(self, in_features: int, hidden: Sequence[int] = DEFAULT_HIDDEN) -> None:
        super().__init__()
        _check_sizes(in_features, hidden, None)
        self.in_features = in_features
        self.net = _mlp([in_features, *hidden, 1])

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        """The logit of ``A(m)``, shape ``(N,)``."""
        out: torch.Tensor = self.net(m)
        return out.squeeze(-1)

    def score(self, m: torch.Tensor) -> torch.Tensor:
        """``A(m) = sigmoid(logit)`` in ``(0, 1)``."""
        return torch.sigmoid(self(m))


def _kaiming_init(module: nn.Module) -> None:
    # sinhasam/vaal model.py `kaiming_init`: Kaiming-normal weights and zero biases
    # for Linear and Conv2d (ConvTranspose2d keeps PyTorch's default), BN to (1, 0).
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.kaiming_normal_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _padded(size: int) -> int:
    # The next multiple of 16 (four stride-2 convolutions), at least 16.
    return max(16, -(-size // 16) * 16)


class ConvVAE(nn.Module):
    """VAAL's convolutional VAE, as ``sinhasam/vaal`` (``model.py``, class ``VAE``) builds it.

    Encoder: four ``4x4`` stride-2 convolutions (``base_channels`` x 1, 2, 4, 8, i.e.
    128, 256, 512, 1024 by default), each with batch norm and ReLU and no bias,
    flattened, then two linear heads for ``mu`` and ``logvar``. Decoder: a linear
    layer to ``8 * base_channels`` maps of twice the encoder's last spatial size,
    three ``4x4`` stride-2 transposed convolutions (512, 256, 128) with batch norm and
    ReLU, and a final ``1x1`` transposed convolution to ``in_channels``. Weights are
    initialised as the reference does (Kaiming normal for the ``Linear`` and
    ``Conv2d`` layers of the encoder and decoder, zero biases; the ``mu``/``logvar``
    heads and the transposed convolutions keep PyTorch's default, as in the reference).

    For a ``3x32x32`` input this is exactly the reference network (encoder output
    ``1024x2x2``, decoder from ``1024x4x4``). Other sizes: the input is **zero-padded**
    (centred) to the next multiple of 16 (at least 16) on each side, the flattened
    sizes are computed from that padded size, and the reconstruction is cropped back
    to the input's size, so the loss is computed on the original pixels only. MNIST's
    ``28x28`` becomes ``32x32`` (exactly the reference layout), scikit-learn's ``8x8``
    digits ``16x16`` (encoder output ``1024x1x1``).

    Parameters
    ----------
    in_channels : int
        Image channels.
    latent_dim : int
        Size of ``z`` (32 in the reference).
    image_size : int or (int, int)
        Input height and width.
    base_channels : int
        Width of the first convolution (128 in the reference). Smaller values give a
        cheaper network of the same shape (used in tests).

    Examples
    --------
    >>> import torch
    >>> from aalearn.networks import ConvVAE
    >>> vae = ConvVAE(in_channels=1, image_size=8, base_channels=4)
    >>> recon, z, mu, logvar = vae(torch.randn(2, 1, 8, 8))
    >>> recon.shape, mu.shape
    (torch.Size([2, 1, 8, 8]), torch.Size([2, 32]))
    """

    def __init__(
        self,
        in_channels: int = 3,
        latent_dim: int = DEFAULT_LATENT_DIM,
        image_size: Union[int, tuple[int, int]] = 32,
        base_channels: int = VAAL_BASE_CHANNELS,
    ) -> None:
        super().__init__()
        if isinstance(image_size, (tuple, list)):
            h, w = image_size
        else:
            h = w = image_size
        for name, value in (
            ("in_channels", in_channels),
            ("latent_dim", latent_dim),
            ("image_size", h),
            ("image_size", w),
            ("base_channels", base_channels),
        ):
            check_int(value, name, minimum=1)
        # Python ints from here on (NumPy integers are accepted above; torch wants ints).
        in_channels, latent_dim, base_channels = (
            int(in_channels),
            int(latent_dim),
            int(base_channels),
        )
        h, w = int(h), int(w)
        self.in_channels = in_channels
        self.latent_dim = latent_dim
        self.image_size = (h, w)
        self.padded_size = (_padded(h), _padded(w))
        c = base_channels
        eh, ew = self.padded_size[0] // 16, self.padded_size[1] // 16
        self._dec_shape = (8 * c, 2 * eh, 2 * ew)
        enc: list[nn.Module] = []
        chans = [in_channels, c, 2 * c, 4 * c, 8 * c]
        for cin, cout in zip(chans[:-1], chans[1:]):
            enc += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
        enc.append(nn.Flatten())
        self.encoder = nn.Sequential(*enc)
        self.fc_mu = nn.Linear(8 * c * eh * ew, latent_dim)
        self.fc_logvar = nn.Linear(8 * c * eh * ew, latent_dim)
        dec: list[nn.Module] = [
            nn.Linear(latent_dim, 8 * c * 4 * eh * ew),
            nn.Unflatten(1, self._dec_shape),
        ]
        for cin, cout in ((8 * c, 4 * c), (4 * c, 2 * c), (2 * c, c)):
            dec += [
                nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(True),
            ]
        dec.append(nn.ConvTranspose2d(c, in_channels, 1))
        self.decoder = nn.Sequential(*dec)
        for block in (self.encoder, self.decoder):
            for m in block:
                _kaiming_init(m)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if (h, w) != self.image_size:
            raise ValueError(f"Expected images of size {self.image_size}, but got {(h, w)}.")
        ph, pw = self.padded_size
        if (ph, pw) == (h, w):
            return x
        top, left = (ph - h) // 2, (pw - w) // 2
        return nn.functional.pad(x, (left, pw - w - left, top, ph - h - top))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of ``q(z | x)``."""
        hidden = self.encoder(self._pad(x))
        return self.fc_mu(hidden), self.fc_logvar(hidden)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The reconstruction, cropped to ``image_size``."""
        out: torch.Tensor = self.decoder(z)
        h, w = self.image_size
        ph, pw = self.padded_size
        top, left = (ph - h) // 2, (pw - w) // 2
        return out[..., top : top + h, left : left + w]

    def forward(
        self, x: torch.Tensor, generator: Optional[torch.Generator] = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(recon, z, mu, logvar)``, as the reference's ``VAE.forward``."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, generator)
        return self.decode(z), z, mu, logvar


class Discriminator(nn.Module):
    """VAAL's discriminator: MLP ``z -> 512 -> 512 -> 1`` with ReLU, returning the **logit**.

    The reference (``sinhasam/vaal``, ``model.py``) ends with ``nn.Sigmoid`` and
    trains with ``nn.BCELoss``; here the sigmoid is folded into the loss
    (``binary_cross_entropy_with_logits``, the same value without the overflow) and
    :meth:`score` gives the probability. VAAL's convention: ``1`` means labeled,
    and the selection takes the unlabeled items with the *lowest* output. Weights:
    Kaiming normal, zero biases, as in the reference. (One earlier revision of the
    reference has two more 512-wide layers: pass ``hidden=(512,) * 4`` for it.)

    Examples
    --------
    >>> import torch
    >>> from aalearn.networks import Discriminator
    >>> Discriminator(32)(torch.randn(3, 32)).shape
    torch.Size([3])
    """

    def __init__(
        self,
        latent_dim: int = DEFAULT_LATENT_DIM,
        hidden: Sequence[int] = VAAL_DISCRIMINATOR_HIDDEN,
    ) -> None:
        super().__init__()
        _check_sizes(latent_dim, hidden, None, in_name="latent_dim")
        self.latent_dim = latent_dim
        self.net = _mlp([latent_dim, *hidden, 1])
        for m in self.net:
            _kaiming_init(m)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The logit of ``D(z)``, shape ``(N,)``."""
        out: torch.Tensor = self.net(z)
        return out.squeeze(-1)

    def score(self, z: torch.Tensor) -> torch.Tensor:
        """``D(z) = sigmoid(logit)``: the probability that ``z`` comes from a labeled item."""
        return torch.sigmoid(self(z))

r"""The variational auto-encoder of Arcelin (2021), trained noisy → noiseless.

Architecture (Arcelin 2021, §3; ``docs/models.md``), latent size 32, images
``(B, 6, 64, 64)`` normalised to (−1, 1) by :class:`~cosmobench.models.normalize.BandNormalizer`::

    encoder: BatchNorm → the shape CNN's 8-conv PReLU stack → Flatten (4096)
             → Dense 256 + PReLU → μ = Dense 32, σ = softplus(Dense 32)
    decoder: Dense 256 + PReLU → Dense 4096 + PReLU → reshape (256, 4, 4)
             → for f in 256, 128, 64, 32:
                   ConvTranspose 3×3 stride 2 'same' (f) + PReLU,
                   ConvTranspose 3×3 'same' (f) + PReLU
             → Conv 3×3 'same' (6) → sigmoid

Loss per image (Kingma & Welling 2014, arXiv:1312.6114), averaged over the batch:

.. math:: \mathcal L = \sum_\text{pixels} \mathrm{BCE}(\hat x, x_\text{clean})
          + \beta\, \mathrm{KL}(\mathcal N(\mu, \sigma^2) \Vert \mathcal N(0, 1)),
          \quad \beta = 0.01,

with :math:`\hat x` decoded from :math:`z = \mu + \sigma\varepsilon` (one sample). The binary
cross-entropy is evaluated from the decoder's logits (``binary_cross_entropy_with_logits``):
the same function as sigmoid followed by BCE, without the log(0) of a saturated sigmoid.
σ gets a floor of 1e-6 so that log σ in the KL stays finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cosmobench.config import Config
from cosmobench.errors import CosmobenchError, check_choice, check_positive
from cosmobench.models.layers import SameConv2d, SameConvTranspose2d, keras_linear, make_prelu
from cosmobench.models.shape import PRELU_KINDS, conv_trunk

__all__ = ["VAE", "VAEConfig"]

SIGMA_FLOOR = 1e-6


@dataclass(frozen=True)
class VAEConfig(Config):
    """Configuration of :class:`VAE` (defaults: the paper's).

    Attributes:
        latent: Latent dimension (32).
        in_channels: Bands (6).
        image_size: Stamp size in pixels (64).
        filters: Encoder conv filters; the decoder mirrors them (256, 128, 64, 32).
        hidden: Width of the dense layer between convolutions and latent (256).
        prelu: ``"element"`` (Keras default) or ``"channel"``.
        kl_weight: β, the weight of the KL term (0.01).
    """

    latent: int = 32
    in_channels: int = 6
    image_size: int = 64
    filters: tuple[int, ...] = (32, 64, 128, 256)
    hidden: int = 256
    prelu: str = "element"
    kl_weight: float = 0.01

    def __post_init__(self) -> None:
        for name in ("latent", "in_channels", "image_size", "hidden"):
            check_positive(name, getattr(self, name))
        if not self.filters or any(f <= 0 for f in self.filters):
            raise CosmobenchError(f"filters must be positive integers; got {self.filters}")
        if self.image_size % 2 ** len(self.filters):
            raise CosmobenchError(
                f"image_size must be a multiple of {2 ** len(self.filters)} for "
                f"{len(self.filters)} stride-2 blocks (the decoder doubles back exactly); "
                f"got {self.image_size}"
            )
        check_choice("prelu", self.prelu, PRELU_KINDS)
        check_positive("kl_weight", self.kl_weight, strict=False)


class VAE(nn.Module):
    """Arcelin (2021)'s galaxy VAE.

    Arguments:
        config: A :class:`VAEConfig`; ``VAEConfig()`` is the paper's network.

    Example:
        >>> vae = VAE(VAEConfig(latent=8))
        >>> mu, sigma = vae.encode(torch.zeros(2, 6, 64, 64))
        >>> tuple(vae.decode(mu).shape)
        (2, 6, 64, 64)
    """

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else VAEConfig()
        self.config = cfg
        conv = lambda ci, co, s: SameConv2d(ci, co, 3, s)  # noqa: E731
        trunk, flat = conv_trunk(cfg.in_channels, cfg.image_size, cfg.filters, cfg.prelu, conv)
        self.encoder = nn.Sequential(
            trunk, nn.Flatten(), keras_linear(flat, cfg.hidden), make_prelu(cfg.prelu, cfg.hidden)
        )
        self.to_mu = keras_linear(cfg.hidden, cfg.latent)
        self.to_sigma = keras_linear(cfg.hidden, cfg.latent)

        size = cfg.image_size // 2 ** len(cfg.filters)  # 4
        c = cfg.filters[-1]
        layers: list[nn.Module] = [
            keras_linear(cfg.latent, cfg.hidden),
            make_prelu(cfg.prelu, cfg.hidden),
            keras_linear(cfg.hidden, c * size * size),
            make_prelu(cfg.prelu, c * size * size),
            nn.Unflatten(1, (c, size, size)),  # (B, 256, 4, 4)
        ]
        for f in reversed(cfg.filters):
            size *= 2
            layers += [SameConvTranspose2d(c, f, 3, 2), make_prelu(cfg.prelu, f, size)]
            layers += [SameConvTranspose2d(f, f, 3, 1), make_prelu(cfg.prelu, f, size)]
            c = f
        layers.append(SameConv2d(c, cfg.in_channels, 3, 1))  # logits (B, 6, 64, 64)
        self.decoder = nn.Sequential(*layers)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised images ``(B, C, H, W)`` → posterior ``(μ (B, L), σ (B, L))``."""
        h = self.encoder(x)  # (B, 256)
        return self.to_mu(h), F.softplus(self.to_sigma(h)) + SIGMA_FLOOR

    def decode_logits(self, z: Tensor) -> Tensor:
        """Latents ``(B, L)`` → pre-sigmoid images ``(B, C, H, W)``."""
        return self.decoder(z)

    def decode(self, z: Tensor) -> Tensor:
        """Latents ``(B, L)`` → normalised images in (0, 1), ``(B, C, H, W)``."""
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: Tensor) -> Tensor:
        """Deterministic reconstruction: ``decode(μ(x))``."""
        return self.decode(self.encode(x)[0])

    def loss(self, x_noisy: Tensor, x_clean: Tensor, n_train: int | None = None) -> Tensor:
        """Summed BCE + β·KL per image, averaged over the batch (one reparameterised sample).

        Arguments:
            x_noisy: Normalised noisy images (encoder input).
            x_clean: Normalised noiseless images (reconstruction target).
            n_train: Ignored (uniform ``loss(x, y, n_train)`` signature for the trainer).
        """
        mu, sigma = self.encode(x_noisy)
        z = mu + sigma * torch.randn_like(sigma)
        logits = self.decode_logits(z)
        bce = F.binary_cross_entropy_with_logits(logits, x_clean.to(logits.dtype), reduction="none")
        kl = 0.5 * (mu.square() + sigma.square() - 1.0) - sigma.log()
        return bce.flatten(1).sum(1).mean() + self.config.kl_weight * kl.sum(1).mean()

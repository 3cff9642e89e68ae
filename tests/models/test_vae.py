"""The VAE: architecture, loss = summed BCE + 0.01 KL, configuration."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from cosmobench.errors import CosmobenchError
from cosmobench.models import VAE, VAEConfig
from cosmobench.models.layers import SameConvTranspose2d


def test_decoder_doubles_to_64():
    vae = VAE()
    sizes = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: sizes.append(tuple(out.shape[1:])))
        for m in vae.decoder
        if isinstance(m, SameConvTranspose2d)
    ]
    out = vae.decode(torch.randn(2, 32))
    for h in hooks:
        h.remove()
    assert sizes == [
        (256, 8, 8), (256, 8, 8), (128, 16, 16), (128, 16, 16),
        (64, 32, 32), (64, 32, 32), (32, 64, 64), (32, 64, 64),
    ]  # fmt: skip
    assert out.shape == (2, 6, 64, 64)


def test_loss_is_summed_bce_plus_weighted_kl():
    vae = VAE(VAEConfig(latent=8, filters=(4, 8, 8, 8), hidden=32))
    g = torch.Generator().manual_seed(0)
    noisy = torch.randn(3, 6, 64, 64, generator=g).tanh()
    clean = torch.rand(3, 6, 64, 64, generator=g)
    torch.manual_seed(4)
    loss = vae.loss(noisy, clean)
    torch.manual_seed(4)
    mu, sigma = vae.encode(noisy)
    recon = vae.decode(mu + sigma * torch.randn_like(sigma)).double()
    c = clean.double()
    bce = -(c * recon.log() + (1 - c) * (1 - recon).log()).sum((1, 2, 3))
    kl = kl_divergence(Normal(mu, sigma), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(loss.double(), (bce + 0.01 * kl).mean(), rtol=1e-5, atol=0)


def test_forward_is_deterministic_reconstruction():
    vae = VAE(VAEConfig(filters=(4, 8, 8, 8))).eval()
    x = torch.randn(2, 6, 64, 64)
    torch.testing.assert_close(vae(x), vae.decode(vae.encode(x)[0]))


@pytest.mark.parametrize(
    ("change", "match"),
    [({"image_size": 60}, "multiple of 16"), ({"latent": 0}, "latent"), ({"prelu": "x"}, "prelu")],
)
def test_config_errors(change, match):
    with pytest.raises(CosmobenchError, match=match):
        VAEConfig(**change)

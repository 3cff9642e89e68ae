"""Transposed convolutions recast as plain ones (cosmobench.models.deconv): same function."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cosmobench.models import VAE, VAEConfig
from cosmobench.models.deconv import (
    FlippedConv,
    FrozenElementPReLU,
    PhaseConv,
    inference_decoder,
)
from cosmobench.models.layers import ElementPReLU, SameConv2d, SameConvTranspose2d
from cosmobench.models.onednn import PACK_LINEAR_MIN


def _perturbed(layer: nn.Module, seed: int = 0, scale: float = 1.0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))
    return layer


@pytest.mark.parametrize("batch", [1, 2])  # the sub-pixel form, then the four phases
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size", [(1, 1), (3, 5), (8, 8)])
def test_phase_convs_equal_the_stride_2_transposed_convolution(size, channels_last, batch):
    assert PhaseConv.SUB_PIXEL_MAX_BATCH == 1
    layer = _perturbed(SameConvTranspose2d(5, 7, 3, 2))
    x = torch.randn(batch, 5, *size)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    with torch.no_grad():
        ref, got = layer(x), PhaseConv(layer)(x)
    assert got.shape == ref.shape == (batch, 7, 2 * size[0], 2 * size[1])
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_every_output_phase_uses_its_own_taps():
    """A single input pixel spreads to the 3x3 block of its transposed kernel (cropped)."""
    layer = SameConvTranspose2d(1, 1, 3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(1.0, 10.0).view(1, 1, 3, 3))
        layer.bias.zero_()
    x = torch.zeros(2, 1, 4, 4)
    x[:, 0, 1, 1] = 1.0
    expect = torch.zeros(8, 8)
    expect[2:5, 2:5] = torch.arange(1.0, 10.0).view(3, 3)
    with torch.no_grad():
        phase = PhaseConv(layer)
        torch.testing.assert_close(phase(x[:1])[0, 0], expect)  # sub-pixel form
        torch.testing.assert_close(phase(x)[1, 0], expect)  # four phases


@pytest.mark.parametrize("kernel", [3, 5])
def test_flipped_conv_equals_the_stride_1_transposed_convolution(kernel):
    layer = _perturbed(SameConvTranspose2d(4, 6, kernel, 1))
    x = torch.randn(3, 4, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(FlippedConv(layer)(x), layer(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("plain_convs", [True, False])
def test_inference_decoder_decodes_as_the_vae_and_leaves_it_alone(plain_convs, channels_last):
    torch.manual_seed(0)
    vae = VAE(VAEConfig(latent=8, filters=(4, 4, 8, 8), hidden=16)).eval()
    _perturbed(vae.decoder, seed=1, scale=0.3)
    if channels_last:
        vae.to(memory_format=torch.channels_last)
    fast = inference_decoder(vae.decoder, plain_convs=plain_convs)
    kinds = [type(m).__name__ for m in fast]
    assert kinds.count("PhaseConv") == kinds.count("FlippedConv") == (4 if plain_convs else 0)
    assert kinds.count("SameConvTranspose2d") == (0 if plain_convs else 8)
    assert kinds.count("PlainConv") == (1 if plain_convs else 0)  # the last, 'same' conv
    assert kinds.count("FrozenElementPReLU") == 10 and "ElementPReLU" not in kinds
    assert sum(isinstance(m, SameConvTranspose2d) for m in vae.decoder) == 8  # a copy
    assert sum(isinstance(m, ElementPReLU) for m in vae.decoder) == 10
    recast = (SameConvTranspose2d, SameConv2d, ElementPReLU) if plain_convs else (ElementPReLU,)
    n_derived = sum(p.numel() for p in fast.parameters())
    n_kept = sum(p.numel() for m in vae.decoder if not isinstance(m, recast)
                 for p in m.parameters())  # fmt: skip
    assert n_derived == n_kept  # recast kernels and frozen slopes are buffers, not parameters
    z = torch.randn(5, 8)
    with torch.no_grad():
        got, ref = fast(z), vae.decode_logits(z)
    assert ref.std() > 1.0  # a decoder that does something
    assert ((got - ref).norm() / ref.norm()) < 1e-5  # the same sums, in another order


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_inference_decoder_packs_large_dense_layers_only(dtype):
    torch.manual_seed(0)
    # hidden 256 -> 16 x 4 x 4: the second dense layer has exactly PACK_LINEAR_MIN weights
    vae = VAE(VAEConfig(latent=8, filters=(4, 4, 8, 16), hidden=256)).eval()
    _perturbed(vae.decoder, seed=2, scale=0.2)
    fast = inference_decoder(vae.decoder).to(dtype)
    kinds = [type(m).__name__ for m in fast]
    assert kinds.count("PackedLinear") == 1 and kinds.count("Linear") == 1
    packed = next(m for m in fast if type(m).__name__ == "PackedLinear")
    assert packed.weight.numel() == PACK_LINEAR_MIN
    for batch in (1, 6):  # one layout serves every batch size
        z = torch.randn(batch, 8)
        with torch.no_grad():
            ref = vae.decode_logits(z)
            got = fast(z.to(dtype)).float()
        tol = 1e-5 if dtype == torch.float32 else 3e-2
        assert ((got - ref).norm() / ref.norm()) < tol


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_frozen_prelu_equals_the_training_one_in_either_layout(channels_last, dtype):
    layer = _perturbed(ElementPReLU((6, 5, 4)), scale=0.5)
    frozen = FrozenElementPReLU(layer)
    x = torch.randn(3, 6, 5, 4).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = layer(x)
        got = frozen(x)
    assert got.dtype == dtype
    torch.testing.assert_close(got, ref, rtol=0, atol=0)  # the same products, bit for bit
    assert not list(frozen.parameters())
    dense = FrozenElementPReLU(_perturbed(ElementPReLU((7,))))
    v = torch.randn(2, 7)
    torch.testing.assert_close(dense(v), torch.where(v > 0, v, dense.weight * v))


def test_wrong_layers_are_refused():
    with pytest.raises(ValueError, match="stride-2 3x3"):
        PhaseConv(SameConvTranspose2d(2, 2, 3, 1))
    with pytest.raises(ValueError, match="stride-1"):
        FlippedConv(SameConvTranspose2d(2, 2, 3, 2))

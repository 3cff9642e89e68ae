"""GalaxySampler: flow -> decoder -> counts; reproducible per galaxy; finite, non-negative."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.generate.conftest import small_models

from cosmobench.errors import CosmobenchError
from cosmobench.generate.sampler import GalaxySampler, galaxy_noise, galaxy_seeds
from cosmobench.models.deconv import inference_decoder


@pytest.fixture(scope="module")
def models():
    return small_models()


def _reference(vae, flow, norm, eps):
    """The composition written out with zuko's own sampling and the VAE's own decode."""
    with torch.no_grad():
        dist = flow.flow()
        z = dist.transform.inv(dist.base.mean + dist.base.stddev * eps)
        return z, norm.inverse(vae.decode(z))


def test_galaxy_seeds_are_the_spawned_children():
    kids = np.random.SeedSequence(42).spawn(5)
    expect = [k.generate_state(1, np.uint64)[0] for k in kids]
    np.testing.assert_array_equal(galaxy_seeds(42, range(5)), expect)
    np.testing.assert_array_equal(galaxy_seeds(42, [3]), expect[3:4])
    noise = galaxy_noise(galaxy_seeds(42, range(5)), 8)
    torch.testing.assert_close(noise[3:4], galaxy_noise(galaxy_seeds(42, [3]), 8))
    assert not torch.allclose(noise[0], noise[1])


@pytest.mark.parametrize("fast", [True, False])
def test_equals_the_written_out_composition(models, fast):
    vae, flow, norm = models
    sampler = GalaxySampler(vae, flow, norm, fast=fast)
    eps = torch.randn(5, 8)
    z, x = sampler.sample_noise(eps)
    z_ref, x_ref = _reference(vae, flow, norm, eps)
    torch.testing.assert_close(z, z_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(x, x_ref, rtol=1e-4, atol=1e-3)
    assert x.shape == (5, 6, 64, 64) and x.dtype == torch.float32


def test_images_in_counts_finite_and_non_negative(models):
    vae, flow, norm = models
    x = GalaxySampler(vae, flow, norm)(12, seed=1)
    assert torch.isfinite(x).all() and (x >= 0).all()
    # counts, not the (0, 1) normalised values: band b is scaled by I_b / 2.5
    y = norm(x)
    assert (y > 0).all() and (y < 1).all()
    assert x.amax() > 1.5


def test_saturated_decoder_stays_finite(models):
    vae, flow, norm = small_models(seed=3)
    with torch.no_grad():
        vae.decoder[-1].bias.fill_(60.0)  # sigmoid rounds to exactly 1.0 in float32
    x = GalaxySampler(vae, flow, norm)(3, seed=0)
    assert torch.isfinite(x).all() and (x > 0).all()


def test_galaxy_depends_only_on_seed_and_index(models):
    vae, flow, norm = models
    a = GalaxySampler(vae, flow, norm, batch_size=3)(7, seed=5)
    b = GalaxySampler(vae, flow, norm, batch_size=100)(7, seed=5)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-3)
    sampler = GalaxySampler(vae, flow, norm)
    one = sampler.from_noise(sampler.noise(1, seed=5, start=4))  # galaxy 4 alone
    torch.testing.assert_close(one[0], a[4], rtol=1e-5, atol=1e-3)
    assert not torch.allclose(a[0], a[1])


def test_bf16_decoder_is_close_to_fp32(models):
    vae, flow, norm = models
    eps = torch.randn(4, 8)
    x32 = GalaxySampler(vae, flow, norm).from_noise(eps)
    x16 = GalaxySampler(vae, flow, norm, precision="bf16").from_noise(eps)
    assert torch.isfinite(x16).all() and (x16 >= 0).all()
    rel = (x16 - x32).norm() / x32.norm()
    assert 0 < rel < 0.05


def test_bad_input(models):
    vae, flow, norm = models
    with pytest.raises(CosmobenchError, match="n must be > 0"):
        GalaxySampler(vae, flow, norm)(0)
    with pytest.raises(CosmobenchError, match="precision must be one of fp32, bf16"):
        GalaxySampler(vae, flow, norm, precision="fp16")
    with pytest.raises(CosmobenchError, match="latent size is 8"):
        GalaxySampler(vae, small_models(latent=4)[1], norm)
    if not torch.cuda.is_available():
        with pytest.raises(CosmobenchError, match="cuda_graph needs a CUDA device"):
            GalaxySampler(vae, flow, norm, cuda_graph=True)
    with pytest.raises(CosmobenchError, match=r"shape \(n, 8\)"):
        GalaxySampler(vae, flow, norm).from_noise(torch.randn(2, 3))


def test_on_device(models, device):
    vae, flow, norm = small_models()
    eps = torch.randn(6, 8)
    _, ref = _reference(vae, flow, norm, eps)
    x = GalaxySampler(vae, flow, norm, device=device).from_noise(eps)
    assert x.device.type == torch.device(device).type
    torch.testing.assert_close(x.cpu(), ref, rtol=1e-3, atol=1e-2)


def test_cuda_graph_equals_eager(device):
    if not device.startswith("cuda"):
        pytest.skip("CUDA graphs need --device cuda")
    vae, flow, norm = small_models()
    eager = GalaxySampler(vae, flow, norm, device=device, batch_size=4)
    graph = GalaxySampler(vae, flow, norm, device=device, batch_size=4, cuda_graph=True)
    eps = torch.randn(10, 8)  # two full batches and a remainder: two captured sizes
    z1, x1 = eager.sample_noise(eps)
    z2, x2 = graph.sample_noise(eps)
    z3, x3 = graph.sample_noise(eps)  # replays, not recaptures
    assert len(graph._graphs) == 2
    for z, x in ((z2, x2), (z3, x3)):
        torch.testing.assert_close(z, z1, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(x, x1, rtol=1e-4, atol=1e-2)
    assert x2.data_ptr() != x3.data_ptr()  # results are copies, not the graph's buffer


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit, inside torch.compile
def test_compiled_decoder_equals_eager(models):
    """Batches of changing size, each after memory full of NaNs is freed: compiled code
    that reads memory it never wrote, or writes past its buffers (torch 2.13's 512-bit CPU
    code did both), fails or aborts."""
    vae, flow, norm = models
    eager, compiled = GalaxySampler(vae, flow, norm), GalaxySampler(vae, flow, norm, compile=True)
    for n in (3, 1, 3):
        eps = torch.randn(n, 8)
        stale = eps.new_full((1 << 22,), float("nan"))
        del stale  # 16 MB of NaNs back to the allocator, for the next buffers to reuse
        got, ref = compiled.from_noise(eps), eager.from_noise(eps)
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-2)
    with pytest.raises(CosmobenchError, match="not both"):
        GalaxySampler(vae, flow, norm, device="cuda", compile=True, cuda_graph=True)


def test_channels_last_decoder_gives_the_nchw_images():
    import copy

    vae, flow, norm = small_models(seed=4)
    nchw = copy.deepcopy(vae).eval()
    sampler = GalaxySampler(vae, flow, norm)
    assert vae.decoder[-1].weight.is_contiguous(memory_format=torch.channels_last)
    z = torch.randn(3, 8)
    x = sampler.decode(z)
    with torch.no_grad():
        ref = norm.inverse(nchw.decode(z).clamp(0.0, float(np.nextafter(np.float32(1), 0))))
    assert x.is_contiguous()
    torch.testing.assert_close(x, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kind", ["eager", "other normaliser"])
def test_decode_into_rows_of_an_output_is_decode(models, kind):
    """``decode(z, out=rows)`` writes the same bits ``decode(z)`` returns into those rows
    and nothing else, whatever the normaliser offers (in-place ``inverse_`` or not)."""
    vae, flow, norm = models
    if kind == "other normaliser":
        class Plain(torch.nn.Module):  # only the out-of-place inverse
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def inverse(self, y):
                return self.inner.inverse(y)

        norm = Plain(norm)
    sampler = GalaxySampler(vae, flow, norm)
    z = torch.randn(3, 8)
    ref = sampler.decode(z)
    buf = torch.full((6, *ref.shape[1:]), -7.0)
    got = sampler.decode(z, out=buf[2:5])
    assert got.data_ptr() == buf[2:5].data_ptr()
    torch.testing.assert_close(buf[2:5], ref, rtol=0, atol=0)
    assert bool((buf[:2] == -7.0).all()) and bool((buf[5:] == -7.0).all())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_batches_use_the_plain_convolution_decoder(models, monkeypatch, precision):
    """On the CPU, every batch decodes through the recast decoder (the same function up to
    rounding); the VAE's own decoder is not called."""
    vae, flow, norm = models
    sampler = GalaxySampler(vae, flow, norm, precision=precision, batch_size=16)
    plain = sampler._plain_decoder
    kinds = {type(m).__name__ for m in plain.modules()}
    assert {"PhaseConv", "FlippedConv", "FrozenElementPReLU"} <= kinds
    assert "SameConvTranspose2d" not in kinds and "ElementPReLU" not in kinds
    calls = []
    monkeypatch.setattr(sampler, "_plain_decoder", lambda z: calls.append(len(z)) or plain(z))
    monkeypatch.setattr(vae, "decode_logits", lambda z: pytest.fail("the training decoder ran"))
    eps = torch.randn(21, 8)
    x = sampler.from_noise(eps)  # batches of 16 and 5
    assert calls == [16, 5]
    ref = _reference(vae, flow, norm, eps)[1]  # zuko's sampling and the VAE's own decode
    rel = (x - ref).norm() / ref.norm()
    assert rel < (0.05 if precision == "bf16" else 1e-5)
    one = sampler.from_noise(eps[:1])  # one galaxy: the same decoder
    assert calls[-1] == 1
    torch.testing.assert_close(one, x[:1], rtol=1e-5 if precision == "fp32" else 0.05,
                               atol=1e-3 if precision == "fp32" else 1.0)


def test_latents_in_flow_blocks_decoded_in_batches(models, monkeypatch):
    """The flow samples blocks of up to max(batch_size, _FLOW_BATCH) galaxies (its passes'
    overhead does not grow with the batch); the decoder takes batch_size at a time, across
    the blocks' boundaries, each batch written into its rows of one output; the images are
    the same as one batch's."""
    import cosmobench.generate.sampler as sampler_module

    vae, flow, norm = models
    monkeypatch.setattr(sampler_module, "_FLOW_BATCH", 5)
    sampler = GalaxySampler(vae, flow, norm, batch_size=2)
    sizes: dict[str, list[int]] = {"latents": [], "decode": []}
    for name in sizes:
        fn = getattr(sampler, name)
        monkeypatch.setattr(
            sampler, name,
            lambda z, fn=fn, name=name, **out: sizes[name].append(len(z)) or fn(z, **out),
        )
    eps = torch.randn(12, 8)
    z, x = sampler.sample_noise(eps)
    assert sizes == {"latents": [5, 5, 2], "decode": [2] * 6}
    assert x.is_contiguous() and x.shape == (12, 6, 64, 64)
    z1, x1 = GalaxySampler(vae, flow, norm, batch_size=100).sample_noise(eps)
    torch.testing.assert_close(z, z1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x, x1, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("batch", [1, 3, 12])  # bf16 decodes every batch plainly
def test_bf16_decoders_hold_their_weights_in_bf16_and_decode_as_autocast(models, batch):
    """The bf16 sampler's inference decoder is cast once at construction; autocast of the
    fp32 copy casts the same weights to the same bf16 values on every call: same images."""
    vae, flow, norm = models
    sampler = GalaxySampler(vae, flow, norm, precision="bf16")
    dec = sampler._plain_decoder
    assert {t.dtype for t in (*dec.parameters(), *dec.buffers())} == {torch.bfloat16}
    fp32 = inference_decoder(vae.decoder, plain_convs=True)
    z = torch.randn(batch, 8)
    with torch.inference_mode():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = fp32(z)
        y = torch.sigmoid(logits.float()).clamp_(0.0, float(np.nextafter(np.float32(1), 0)))
        ref = norm.inverse(y).clamp_(min=0.0)
        got = sampler.decode(z)
    assert vae.decoder[0].weight.dtype == torch.float32  # the VAE itself is left in fp32
    assert torch.equal(got, ref)

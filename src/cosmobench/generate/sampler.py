"""Galaxy sampler: flow latent -> VAE decoder -> images in counts, fast at every n.

Generation in Arcelin (2021) §2.3 samples latent vectors from a masked autoregressive flow and
decodes them with the VAE's decoder; here the decoded images, normalised per band as
``tanh(arcsinh(x / (I_b / 2.5)))``, are turned back into electrons with the VAE's
:class:`~cosmobench.models.BandNormalizer` inverse.

:class:`GalaxySampler` is what ``cosmobench generate`` and the benchmark's ``generate`` workload
run. Its latent sampler is :class:`~cosmobench.generate.maf.FastMAF` (the same function as
zuko's, without the per-pass overhead) unless ``fast=False``; the decoder runs in fp32 or
under bf16 autocast, eagerly or through ``torch.compile``; on CUDA, ``cuda_graph=True``
captures the whole sample — 256 autoregressive passes, the decoder and the un-normalisation —
as one CUDA graph per batch size, so a sample costs one graph launch instead of thousands of
kernel launches.

Reproducibility: :func:`galaxy_seeds` gives galaxy *i* of a run with seed *s* its own seed
(``numpy.random.SeedSequence(s, spawn_key=(i,))``, i.e. the *i*-th child of
``SeedSequence(s).spawn``) and :func:`galaxy_noise` its own base noise from a
``torch.Generator`` seeded with it, so a galaxy depends only on ``(s, i)`` — not on the batch,
the chunk, the number of ranks or the device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from cosmobench.allocator import retain_freed_memory
from cosmobench.devices import PRECISIONS, autocast, inductor_options
from cosmobench.errors import CosmobenchError, check_choice, check_positive
from cosmobench.generate.maf import FastMAF
from cosmobench.models.deconv import inference_decoder

__all__ = ["GalaxySampler", "galaxy_seeds", "galaxy_noise", "PRECISIONS"]

# Largest float32 below 1: the decoder's sigmoid can round to exactly 1.0, whose inverse
# normalisation (artanh) is infinite. Clamping the decoded value into [0, 1) is the
# documented choice that keeps every pixel finite and non-negative.
_BELOW_ONE = float(np.nextafter(np.float32(1.0), np.float32(0.0)))
# Most galaxies whose latents are drawn in one flow call (not under CUDA graphs).
_FLOW_BATCH = 1024


def galaxy_seeds(seed: int, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Per-galaxy seeds (uint64): galaxy ``i`` gets ``SeedSequence(seed, spawn_key=(i,))``."""
    return np.array(
        [
            np.random.SeedSequence(seed, spawn_key=(int(i),)).generate_state(1, np.uint64)[0]
            for i in indices
        ],
        dtype=np.uint64,
    )


def galaxy_noise(seeds: np.ndarray, features: int) -> Tensor:
    """Standard-normal base noise (n, features) on the CPU, row ``i`` drawn from ``seeds[i]``."""
    out = torch.empty(len(seeds), features)
    gen = torch.Generator()
    for row, s in zip(out, seeds, strict=True):
        gen.manual_seed(int(s))
        torch.randn(features, generator=gen, out=row)
    return out


class GalaxySampler:
    """Sample galaxy images in counts from a trained VAE decoder and latent flow.

    Arguments:
        vae: the VAE (anything with ``decode(z) -> (B, 6, H, W)`` in (0, 1)); put in eval mode
            and moved to ``device``.
        flow: a :class:`~cosmobench.models.LatentFlow` (its ``.flow`` is used) or a zuko MAF.
        normalizer: the VAE's :class:`~cosmobench.models.BandNormalizer`; ``inverse`` maps the
            decoded values back to electrons per pixel.
        device: torch device for everything.
        precision: ``"fp32"`` or ``"bf16"`` (autocast of the decoder; the flow stays fp32).
        cuda_graph: capture each batch's whole sample as a CUDA graph (CUDA only).
        fast: use :class:`~cosmobench.generate.maf.FastMAF`; ``False`` runs zuko's own
            ``transform.inv`` (the reference, and the baseline of the benchmark).
        batch_size: largest batch sent through the networks at once; default 32 on the
            CPU, where the decoder's activations of a larger batch fall out of cache (2
            EPYC cores: 298 images/s at 32, 191 at 64, 153 at 500;
            ``benchmarks/generation_batch.py``), and 2048 on accelerators (a larger batch
            feeds a GPU better).
        compile: ``torch.compile`` the decoder and the inverse normalisation (~20 s per
            batch size on a CPU, with 256-bit code: ``cosmobench.devices.inductor_options``).
            On a CPU it gains nothing over the eager decoder: 100 galaxies took 311 ms either
            way in fp32 and 290 against 195 ms in bf16 on 2 Zen 4 cores (ad hoc). Not with
            ``cuda_graph``.

    The flow's weights (:class:`~cosmobench.generate.maf.FastMAF`; on a CPU it solves batches
    of up to 256 by Jacobi sweeps) and, on a CPU, the decoder prepared for inference
    (:func:`~cosmobench.models.deconv.inference_decoder`: frozen PReLU slopes and plain
    convolutions) are copied at construction: build a new sampler after training either
    further.

    Example:
        >>> from cosmobench.models import VAE, BandNormalizer, FlowConfig, LatentFlow, VAEConfig
        >>> vae, flow = VAE(VAEConfig(latent=8)), LatentFlow(FlowConfig(features=8))
        >>> sampler = GalaxySampler(vae, flow, BandNormalizer([1e3] * 6))
        >>> images = sampler(4, seed=0)  # electrons, on the device
        >>> tuple(images.shape), bool((images >= 0).all())
        ((4, 6, 64, 64), True)
    """

    def __init__(
        self,
        vae: nn.Module,
        flow: nn.Module,
        normalizer: nn.Module,
        *,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        cuda_graph: bool = False,
        fast: bool = True,
        batch_size: int | None = None,
        compile: bool = False,
    ) -> None:
        check_choice("precision", precision, PRECISIONS)
        self.device = torch.device(device)
        if batch_size is None:
            batch_size = 32 if self.device.type == "cpu" else 2048
        check_positive("batch_size", batch_size)
        if cuda_graph and self.device.type != "cuda":
            raise CosmobenchError(
                f"cuda_graph needs a CUDA device; got {self.device} (use cuda_graph=False)"
            )
        if cuda_graph and compile:
            raise CosmobenchError("choose cuda_graph or compile, not both")
        self.precision = precision
        self.cuda_graph = cuda_graph
        self.compiled = compile
        self.batch_size = int(batch_size)
        self.vae = vae.to(self.device).eval()
        if self.device.type == "cpu":
            retain_freed_memory()  # reuse freed pages instead of faulting them in again
            # oneDNN's channels-last (NHWC) transposed convolutions skip the per-call layout
            # reorders of NCHW: 26 % less CPU time per decoded batch of 32, 13 % for one
            # galaxy (benchmarks/small_batch.py); the same numbers to rounding (tested)
            self.vae.to(memory_format=torch.channels_last)
        # On the CPU oneDNN runs stride-2 transposed convolutions at a fraction of a plain
        # convolution's rate; the same decoder recast as plain convolutions
        # (cosmobench.models.deconv: the stride-2 layers as four phase convolutions with only
        # their own taps) samples 32 and 100 galaxies 1.06-1.12x faster than with the single
        # sub-pixel convolution, in fp32 and bf16 (2 Zen 4 cores, interleaved, ad hoc); a
        # single galaxy takes one sub-pixel convolution per layer instead. The copy also
        # freezes the PReLU slopes in the activations' layout (one copy of the slopes per call
        # less: 9.5 -> 7.6 ms for one galaxy) and lays its weights out once for oneDNN
        # (cosmobench.models.onednn: one galaxy 1.24-1.32x faster,
        # benchmarks/one_galaxy_profile.py). One decoder serves every batch size.
        self._plain_decoder: nn.Module | None = None
        decoder = getattr(self.vae, "decoder", None)  # logits, as VAE.decode_logits
        if self.device.type == "cpu" and decoder is not None and hasattr(self.vae, "decode_logits"):
            self._plain_decoder = inference_decoder(decoder)
            if precision == "bf16":
                # Autocast would cast every weight to bf16 again on every batch (its cache is
                # off, see _autocast): the inference copy holds them in bf16 once, the
                # same values, so the same images.
                self._plain_decoder.to(torch.bfloat16)
        self.normalizer = normalizer.to(self.device).eval()
        self.zflow = getattr(flow, "flow", flow).to(self.device).eval()
        with torch.inference_mode():
            self.features = int(self.zflow().base.event_shape[-1])
        latent = getattr(getattr(vae, "config", None), "latent", None)
        if latent is not None and int(latent) != self.features:
            raise CosmobenchError(
                f"the flow samples {self.features}-d latents but the VAE's latent size is "
                f"{latent}: train the flow on this VAE (cosmobench train flow --vae RUN)"
            )
        self.maf = FastMAF(self.zflow, self.device) if fast else None
        self._decode = (
            torch.compile(self._decode_eager, options=inductor_options(self.device.type) or None)
            if compile else self._decode_eager
        )
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, object, Tensor]] = {}

    def __repr__(self) -> str:
        return (
            f"GalaxySampler(latent={self.features}, device={self.device}, "
            f"precision={self.precision}, fast={self.maf is not None}, "
            f"cuda_graph={self.cuda_graph}, compile={self.compiled}, "
            f"batch_size={self.batch_size})"
        )

    def __call__(self, n: int, seed: int | None = None) -> Tensor:
        """``n`` images (n, 6, H, W) in electrons on the device.

        With ``seed``, galaxy ``i`` is drawn from :func:`galaxy_seeds` ``(seed, i)`` and is the
        same whatever the device or batch size; without, from torch's default generator.
        """
        if int(n) <= 0:
            raise CosmobenchError(f"n must be > 0; got {n}")
        return self.from_noise(self.noise(int(n), seed))

    def noise(self, n: int, seed: int | None = None, start: int = 0) -> Tensor:
        """Base noise (n, latent) for galaxies ``start .. start + n - 1`` on the device."""
        if seed is None:
            return torch.randn(n, self.features, device=self.device)
        seeds = galaxy_seeds(seed, range(start, start + n))
        return galaxy_noise(seeds, self.features).to(self.device)

    def from_noise(self, eps: Tensor) -> Tensor:
        """Images in electrons (B, 6, H, W) for base noise ``eps`` (B, latent), batched."""
        return self.sample_noise(eps)[1]

    def sample_noise(self, eps: Tensor) -> tuple[Tensor, Tensor]:
        """Latents (B, latent) and images in electrons (B, 6, H, W) for base noise ``eps``."""
        eps = eps.to(self.device, torch.float32)
        if eps.ndim != 2 or eps.shape[1] != self.features:
            raise CosmobenchError(
                f"base noise must have shape (n, {self.features}); got {tuple(eps.shape)}"
            )
        n = eps.shape[0]
        if self.cuda_graph:  # one captured graph per batch: flow and decoder together
            parts = [
                self._graph_batch(eps[i : i + self.batch_size])
                for i in range(0, n, self.batch_size)
            ]
            if len(parts) == 1:
                return parts[0]
            return torch.cat([z for z, _ in parts]), torch.cat([x for _, x in parts])
        # The flow's autoregressive passes cost the same few microseconds of dispatch
        # whatever the batch, so latents are drawn in blocks of up to _FLOW_BATCH galaxies
        # (on 2 Xeon cores: 0.6 ms a galaxy at 32, 0.2 at 1,024) and decoded in batches of
        # ``batch_size``, each written straight into its rows of one output tensor (no
        # concatenation at the end: one copy of the images less, and half the peak memory).
        flow_batch = max(self.batch_size, _FLOW_BATCH)
        latents = [self.latents(eps[i : i + flow_batch]) for i in range(0, n, flow_batch)]
        z = latents[0] if len(latents) == 1 else torch.cat(latents)
        first = self.decode(z[: self.batch_size])
        if n <= self.batch_size:
            return z, first
        images = first.new_empty((n, *first.shape[1:]))
        images[: self.batch_size] = first
        del first
        for j in range(self.batch_size, n, self.batch_size):
            self.decode(z[j : j + self.batch_size], out=images[j : j + self.batch_size])
        return z, images

    def latents(self, eps: Tensor) -> Tensor:
        """Flow samples z (B, latent) for base noise ``eps`` (zuko's ``rsample`` for it)."""
        with torch.inference_mode():
            eps = eps.to(self.device, torch.float32)
            if self.maf is not None:
                return self.maf(eps)
            dist = self.zflow()  # zuko's NormalizingFlow
            return dist.transform.inv(dist.base.mean + dist.base.stddev * eps)

    def decode(self, z: Tensor, out: Tensor | None = None) -> Tensor:
        """Decode latents (B, latent) to images in electrons (B, 6, H, W), finite and >= 0;
        written into ``out`` (contiguous, float32, on the device) when given."""
        with torch.inference_mode():
            z = z.to(self.device, torch.float32)
            if out is None:
                return self._decode(z)
            if not self.compiled:
                return self._decode_eager(z, out)
            out.copy_(self._decode(z))  # one compiled graph, whatever the output rows
            return out

    # -- internals -------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        # No cast cache: each weight is cast once per sample anyway, and cached casts made
        # during a CUDA-graph capture would be freed when the context exits.
        return autocast(self.device.type, self.precision, cache_enabled=False)

    def _decode_eager(self, z: Tensor, out: Tensor | None = None) -> Tensor:
        logits = self._plain_decoder
        if logits is None:
            logits = getattr(self.vae, "decode_logits", None)
        with self._autocast():
            y = self.vae.decode(z) if logits is None else logits(z)  # (B, 6, H, W)
        # The sigmoid runs in fp32 even under bf16 autocast: bf16 has 8 bits of mantissa, and
        # near 1 (bright pixels) the inverse normalisation magnifies that rounding ~1000×.
        y = y.float() if logits is None else torch.sigmoid(y.float())
        # electrons per pixel, in the usual (NCHW-contiguous) layout whatever the decoder's:
        # the clamp writes one contiguous copy (into ``out`` if given), then in place
        inverse_ = getattr(self.normalizer, "inverse_", None)
        if inverse_ is None:  # a normaliser of another kind
            y = self.normalizer.inverse(y.clamp(0.0, _BELOW_ONE)).clamp_(min=0.0)
            return y.contiguous() if out is None else out.copy_(y)
        if out is None:
            out = torch.empty(y.shape, dtype=y.dtype, device=y.device)  # NCHW-contiguous
        return inverse_(torch.clamp(y, 0.0, _BELOW_ONE, out=out)).clamp_(min=0.0)

    def _graph_batch(self, eps: Tensor) -> tuple[Tensor, Tensor]:
        """Latents and images of one batch by replaying its captured CUDA graph."""
        with torch.inference_mode():
            graph, buf, out = self._graph(eps.shape[0])
            buf.nat.copy_(eps)
            graph.replay()
            # The graph's buffers are overwritten by the next replay: hand out copies.
            return buf.nat.clone(), out.clone()

    def _graph(self, batch: int) -> tuple[torch.cuda.CUDAGraph, object, Tensor]:
        """The captured whole sample (flow inverse, decoder, inverse normalisation)."""
        if batch in self._graphs:
            return self._graphs[batch]
        if len(self._graphs) >= 4:  # a few batch sizes (full batches and one remainder)
            self._graphs.pop(next(iter(self._graphs)))
        if self.maf is None:
            raise CosmobenchError("cuda_graph needs the fast sampler (fast=True)")
        buf = self.maf.workspace(batch)

        def sample() -> Tensor:
            torch.addcmul(self.maf.loc, self.maf.scale, buf.nat, out=buf.nat)  # base sample
            return self._decode(self.maf.run(buf))  # leaves the latents in buf.nat

        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):  # warm-up outside the graph (cuDNN, allocator)
            for _ in range(2):
                buf.nat.normal_()
                sample()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = sample()
        self._graphs[batch] = (graph, buf, out)
        return self._graphs[batch]

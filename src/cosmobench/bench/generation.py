"""The generation and simulation workloads.

* ``generate`` -- n galaxies sampled from the latent flow and decoded by the VAE, in counts,
  by :class:`cosmobench.generate.sampler.GalaxySampler` (what ``cosmobench generate`` runs),
  the paper's Figure 4 (n = 1 ... 5000 after a warm-up). Networks of the paper's size with
  their initial weights: the cost of a sample does not depend on the weights' values, except
  for n ≤ 256 on a CPU, where the flow is solved by Jacobi sweeps whose number depends on how
  strongly the trained flow chains its features (5–8 per transform with the initial weights,
  up to 16 before falling back to the sequential passes): the result records the sweeps
  taken (``flow_sweeps``).
* ``simulate`` -- GalSim images of ``n`` galaxies written to a store by
  :func:`cosmobench.sim.simulate` with one worker: the cost of making training data. GalSim
  runs on the CPU whatever the benchmarked device; without GalSim it is ``unsupported``.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cosmobench.bench.modes import Mode
from cosmobench.bench.workloads import BuildContext, Case, Workload, count_flops

__all__ = ["GenerateWorkload", "SimulateWorkload", "sample_flops"]

#: A plausible I_b per band (electrons): the scale does not change the cost of a sample.
_BAND_MAX = (300.0, 2_000.0, 6_000.0, 8_000.0, 9_000.0, 10_000.0)
#: FLOPs are counted on at most this many galaxies and scaled linearly to n.
_FLOP_COUNT_MAX_N = 500


def sample_flops(sampler: Any, n: int) -> float | None:
    """FLOPs of sampling ``n`` galaxies with a ``GalaxySampler``: the flow's latents as the
    sampler solves them for that batch, and the decoder counted through the paper's layers
    (``VAE.decode_logits``), not through the sampler's recast inference decoder, whose
    batch-1 sub-pixel form multiplies zero taps (``cosmobench.models.deconv``) that are not
    the model's work. ``None`` if nothing was counted."""
    latents: list[Tensor] = []  # the counted call's output, decoded next
    with torch.inference_mode():
        eps = sampler.noise(n, seed=0)
        flow = count_flops(lambda: latents.append(sampler.latents(eps))) or 0.0
        decode = getattr(sampler.vae, "decode_logits", None) or sampler.vae.decode
        decoder = count_flops(lambda: decode(latents[0])) or 0.0
    return (flow + decoder) or None


class GenerateWorkload(Workload):
    """``GalaxySampler(n)``: flow sample, decoder, inverse normalisation (Arcelin 2021, §3.3)."""

    name = "generate"
    size_name = "n"

    def __init__(self, vae_config: dict | None = None, flow_config: dict | None = None) -> None:
        self.vae_config = dict(vae_config or {})
        self.flow_config = dict(flow_config or {})

    def unsupported(self, mode: Mode, device: torch.device) -> str | None:
        """The sampler has fp32/bf16 and CUDA-graph paths; no torch.compile path."""
        if mode.compile:
            return "GalaxySampler has no torch.compile path; use cudagraph (CUDA) or eager"
        return None

    def build(self, mode: Mode, size: int, ctx: BuildContext) -> Case:
        """A sampler on the device in the mode's precision (and CUDA graph)."""
        from cosmobench.generate.sampler import GalaxySampler
        from cosmobench.models import VAE, BandNormalizer, FlowConfig, LatentFlow, VAEConfig

        torch.manual_seed(ctx.seed)
        vae_cfg = VAEConfig(**self.vae_config)
        flow_cfg = FlowConfig(**{"features": vae_cfg.latent, **self.flow_config})
        vae, flow = VAE(vae_cfg), LatentFlow(flow_cfg)
        normalizer = BandNormalizer(list(_BAND_MAX[: vae_cfg.in_channels]))
        if mode.channels_last:
            vae = vae.to(memory_format=torch.channels_last)
        common = {"device": ctx.device, "precision": mode.precision}
        eager = GalaxySampler(vae, flow, normalizer, **common)
        # the cost is linear in n: count a bounded call and scale (counting is slow Python)
        counted = min(size, _FLOP_COUNT_MAX_N)
        flops = sample_flops(eager, counted)
        flops = flops * size / counted if flops else None
        sampler = GalaxySampler(vae, flow, normalizer, cuda_graph=mode.cudagraph, **common)
        info: dict[str, Any] = {
            "parameters": sum(p.numel() for m in (vae, flow) for p in m.parameters()),
            "sampler": repr(sampler),
        }
        if eager.maf is not None and eager.maf.last_sweeps:  # n ≤ 256 on a CPU: Jacobi sweeps
            info["flow_sweeps"] = list(eager.maf.last_sweeps)
        return Case(call=lambda: sampler(size), items_per_call=size, flops_per_call=flops,
                    info=info)


class SimulateWorkload(Workload):
    """GalSim simulation of ``size`` galaxies into a fresh store, one worker
    (``docs/physics.md``)."""

    name = "simulate"
    size_name = "galaxies"

    def __init__(self, sim_config: dict | None = None) -> None:
        self.sim_config = dict(sim_config or {})

    def unsupported(self, mode: Mode, device: torch.device) -> str | None:
        """Needs GalSim; only the eager mode applies (GalSim is not a torch program)."""
        missing = [m for m in ("galsim", "zarr") if importlib.util.find_spec(m) is None]
        if missing:
            return (f"{' and '.join(missing)} not importable here (pip install "
                    f"{' '.join(missing)}); simulation not timed")
        if mode != Mode():
            return f"simulation is GalSim on the CPU: mode {mode} does not apply (use eager)"
        return None

    def build(self, mode: Mode, size: int, ctx: BuildContext) -> Case:
        """Each call simulates ``size`` galaxies into a new temporary store."""
        from cosmobench.sim import SimConfig, simulate

        root = Path(tempfile.mkdtemp(prefix="cosmobench-bench-sim-"))
        counter = iter(range(1 << 30))

        def call() -> None:
            out = root / f"run{next(counter)}.zarr"
            cfg = SimConfig(**{"n": size, "seed": ctx.seed, **self.sim_config})
            simulate(cfg, out, workers=1, progress=False)
            shutil.rmtree(out, ignore_errors=True)

        return Case(
            call=call, items_per_call=size, info={"device_used": "cpu", "workers": 1},
            cleanup=lambda: shutil.rmtree(root, ignore_errors=True),
        )

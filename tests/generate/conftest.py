"""Small models and run folders for the generation tests (random weights, made in a blink)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cosmobench.files import save_checkpoint
from cosmobench.models import VAE, BandNormalizer, FlowConfig, LatentFlow, VAEConfig

# A small VAE (same layers as the paper's, fewer filters) and flow: fast on 2 cores.
SMALL_VAE = {"latent": 8, "filters": [4, 4, 8, 8], "hidden": 16}
SMALL_FLOW = {"features": 8, "transforms": 3, "hidden": [32, 32]}
I_B = [120.0, 900.0, 2500.0, 3600.0, 4100.0, 3000.0]


def perturb(module: torch.nn.Module, scale: float = 0.05, seed: int = 0) -> torch.nn.Module:
    """Move every weight off its initialisation, as training would (non-trivial flows)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return module


def small_models(latent: int = 8, seed: int = 0) -> tuple[VAE, LatentFlow, BandNormalizer]:
    torch.manual_seed(seed)
    vae = VAE(VAEConfig.from_dict({**SMALL_VAE, "latent": latent})).eval()
    flow = perturb(LatentFlow(FlowConfig.from_dict({**SMALL_FLOW, "features": latent})), seed=seed)
    return vae, flow, BandNormalizer(I_B)


def write_runs(root: Path, latent: int = 8, seed: int = 0, flow_vae_fp: str | None = None
               ) -> tuple[Path, Path]:
    """VAE and flow run folders in the training engineer's ``model.pt`` format."""
    from cosmobench.train.runs import MODEL_FILE, RUN_FORMAT, RUN_VERSION, vae_fingerprint

    vae, flow, norm = small_models(latent, seed)
    vae_dir, flow_dir = root / f"vae{seed}-{latent}", root / f"flow{seed}-{latent}"
    common = {"format": RUN_FORMAT, "version": RUN_VERSION, "train_config": {}}
    save_checkpoint(vae_dir / MODEL_FILE, {
        **common, "kind": "vae", "model_config": vae.config.to_dict(),
        "state_dict": vae.state_dict(), "normalizer": norm.to_dict(),
    })
    fp = vae_fingerprint(vae, norm) if flow_vae_fp is None else flow_vae_fp
    save_checkpoint(flow_dir / MODEL_FILE, {
        **common, "kind": "flow", "model_config": flow.config.to_dict(),
        "state_dict": flow.state_dict(), "vae_run": str(vae_dir), "vae_fingerprint": fp,
    })
    return vae_dir, flow_dir


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A matching (VAE run, flow run) pair of small random models."""
    return write_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: these tests' small matrices gain nothing from more, and on a
    shared 2-core machine spinning OpenMP threads make them many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

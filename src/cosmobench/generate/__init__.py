"""Galaxy generation (Arcelin 2021 §2.3): latent flow -> VAE decoder -> galaxies in counts.

- :mod:`~cosmobench.generate.maf` — :class:`FastMAF`, zuko's MAF sampling without overhead;
- :mod:`~cosmobench.generate.sampler` — :class:`GalaxySampler` (what the benchmark times),
  per-galaxy seeds and noise;
- :mod:`~cosmobench.generate.run` — :func:`generate`: the store, batched, resumable,
  rank-sharded under torchrun;
- :mod:`~cosmobench.generate.fidelity` — :func:`evaluate_generation`: HSM moments of
  generated vs simulated galaxies, Wasserstein distances and their floor;
- :mod:`~cosmobench.generate.figures` — colour grids of galaxies.
"""

from cosmobench.generate.fidelity import evaluate_generation, fidelity_table, wasserstein_1d
from cosmobench.generate.maf import FastMAF
from cosmobench.generate.run import GenerateConfig, generate, load_generator
from cosmobench.generate.sampler import GalaxySampler, galaxy_noise, galaxy_seeds

__all__ = [
    "FastMAF",
    "GalaxySampler",
    "GenerateConfig",
    "evaluate_generation",
    "fidelity_table",
    "galaxy_noise",
    "galaxy_seeds",
    "generate",
    "load_generator",
    "wasserstein_1d",
]

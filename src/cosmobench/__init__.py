"""cosmobench: the deep-learning workloads of galaxy surveys, simulated, trained and timed.

Reproduces and extends Arcelin (2021), "Comparison of Graphcore IPUs and Nvidia GPUs for
cosmology applications" (arXiv:2106.02465): LSST-like galaxy images (GalSim), shape
estimation with a CNN and a Bayesian CNN, galaxy generation with a VAE and a masked
autoregressive flow, and a benchmark of all of them on any torch device.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"

"""Fakes for the shape evaluation: a data set object and an oracle network whose
predictive normals are known exactly (calibrated by construction)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cosmobench.models import ShapeConfig, ShapePrediction

SIGMA = np.array([0.05, 0.08, 0.2])  # true noise of the oracle's estimates of e1, e2, z


class FakeDataset:
    """The reader API evaluate_shape uses: n, bands, columns, column(), iter_chunks()."""

    def __init__(self, images: np.ndarray, columns: dict[str, np.ndarray], chunk_size: int = 100):
        self.path = Path("fake.zarr")
        self.n = len(images)
        self.bands = ("u", "g", "r", "i", "z", "y")
        self.chunk_size = chunk_size
        self.image_names = ("noisy",)
        self._images = images
        self._columns = columns
        self.columns = tuple(columns)

    def column(self, name: str) -> np.ndarray:
        return self._columns[name]

    def iter_chunks(self, name: str = "noisy"):
        assert name == "noisy"
        for s in range(0, self.n, self.chunk_size):
            yield s, self._images[s : s + self.chunk_size]


class OracleNet(nn.Module):
    """Reads its estimates from the pixels: row 0 = truth + σ ε, row 1 = σ.

    ``scale`` multiplies the reported σ (1: calibrated); ``bayesian`` splits the variance
    evenly between aleatoric and epistemic parts.
    """

    def __init__(self, targets=("e1", "e2", "z"), scale: float = 1.0, bayesian: bool = False):
        super().__init__()
        self.config = ShapeConfig(targets=tuple(targets), bayesian=bayesian)
        self.scale = scale
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the module a device

    def predict(self, x: torch.Tensor, samples: int = 1) -> ShapePrediction:
        t = len(self.config.targets)
        mean = x[:, 0, 0, :t].double()
        var = (self.scale * x[:, 0, 1, :t].double()) ** 2
        cov = torch.diag_embed(var)
        if self.config.bayesian:
            return ShapePrediction(mean, cov, cov / 2, cov / 2)
        return ShapePrediction(mean, cov, cov, torch.zeros_like(cov))


def make_fake(n: int = 2000, seed: int = 0, targets=("e1", "e2", "z")) -> FakeDataset:
    """A fake store whose galaxies carry the oracle's noisy estimates in their pixels."""
    rng = np.random.default_rng(seed)
    names = {"e1": "e1", "e2": "e2", "z": "redshift"}
    truth = {
        "e1": rng.normal(0, 0.25, n),
        "e2": rng.normal(0, 0.25, n),
        "z": rng.uniform(0.2, 3, n),
    }
    images = np.zeros((n, 6, 4, 4), dtype=np.float32)
    for i, t in enumerate(targets):
        k = ("e1", "e2", "z").index(t)
        images[:, 0, 0, i] = truth[t] + SIGMA[k] * rng.standard_normal(n)
        images[:, 0, 1, i] = SIGMA[k]
    snr = np.tile(rng.lognormal(3.0, 1.0, n)[:, None], (1, 6))
    cols = {names[t]: truth[t] for t in ("e1", "e2", "z")}
    cols["snr"] = snr
    # classical estimators: noisier, a 5 % multiplicative bias, 10 % (KSB) / 2 % failures
    for name, fail, m in (("ksb", 0.10, 0.05), ("regauss", 0.02, -0.05)):
        failed = rng.random(n) < fail  # HSM fails for both components at once
        for c in ("e1", "e2"):
            v = (1 + m) * truth[c] + 0.1 * rng.standard_normal(n)
            v[failed] = np.nan
            cols[f"{name}_{c}"] = v
    return FakeDataset(images, cols)


@pytest.fixture
def fake() -> FakeDataset:
    return make_fake()


@pytest.fixture
def fakes():
    """The helpers, for tests that vary them: ``fakes.make``, ``fakes.Oracle``, ``fakes.SIGMA``."""

    class Helpers:
        make = staticmethod(make_fake)
        Oracle = OracleNet

    Helpers.SIGMA = SIGMA
    return Helpers
